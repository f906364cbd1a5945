//! Power-cut test: the crash harness of `log_crash.rs` with the data directory on the
//! power-cut file system (`tools/powercut`). After each SIGKILL (also during start-up) the file
//! system loses everything not fsynced, as a machine losing power would, and every acknowledged
//! entry must still be there. A SIGKILL alone keeps the page cache, so only this test shows that
//! "acknowledged" means "durable"; the second test proves it can tell by turning the store's
//! fsyncs off. Seeds are printed (`COUNTERSIGN_SEED` replays one); `COUNTERSIGN_SOAK=1` runs
//! more rounds.

use std::path::Path;
use std::time::Duration;

use countersign_powercut::PowerCutMount;
use rand::Rng;

use crate::log_crash::{Harness, ARGS};
use crate::process::{free_port, Process};

/// Mounts the power-cut file system at `path`, or fails the test: a machine that cannot mount
/// it (no /dev/fuse, no permission to mount) must not pass by skipping, in CI or elsewhere.
pub(crate) fn mount(path: &Path) -> PowerCutMount {
    PowerCutMount::mount(path).unwrap_or_else(|e| {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        panic!(
            "{e}{}",
            if ci {
                " (CI must be able to mount FUSE: run it as root with /dev/fuse)"
            } else {
                ""
            }
        )
    })
}

/// Kills the harness's server at a random moment of load, cuts the power, restarts (and half
/// the time kills it again during start-up and cuts the power once more), then checks.
async fn round(fs: &PowerCutMount, h: &mut Harness, round: usize) -> Result<u64, String> {
    let seen = h.load_then_kill(round).await;
    fs.power_cut();
    h.server.restart();
    if h.rng.gen_bool(0.5) {
        // Cut during its recovery or its cache warm-up.
        tokio::time::sleep(Duration::from_millis(h.rng.gen_range(0..300))).await;
        h.server.kill();
        fs.power_cut();
        h.server.restart();
    }
    h.server.wait_ready(&h.client).await;
    h.verify(round, seen).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cut_loses_nothing_acknowledged() {
    let rounds = crate::process::rounds(5, 25);
    let tmp = tempfile::tempdir().unwrap();
    // Declared before the server, so dropped after it: the mount unmounts once nothing uses it.
    let fs = mount(&tmp.path().join("mnt"));
    let server = Process::spawn(&fs.path().join("data"), free_port(), &ARGS);
    let mut h = Harness::start(server, "power_cut_loses_nothing_acknowledged").await;
    for r in 0..rounds {
        round(&fs, &mut h, r)
            .await
            .unwrap_or_else(|e| panic!("round {r}: {e}"));
    }
    h.server.kill();
    let stats = fs.stats();
    eprintln!("power cut: {stats:?}");
    assert!(stats.power_cuts >= rounds as u64, "{stats:?}");
    assert!(stats.file_syncs > 0 && stats.dir_syncs > 0, "{stats:?}");
}

/// The same harness against a store whose fsyncs are turned off: acknowledged entries are then
/// lost at the first power cut, and the harness must say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cut_detects_a_store_that_does_not_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = mount(&tmp.path().join("mnt"));
    let server = Process::spawn_with_env(
        &fs.path().join("data"),
        free_port(),
        &ARGS,
        &[("COUNTERSIGN_UNSAFE_NO_SYNC", "1")],
    );
    let mut h = Harness::start(server, "power_cut_detects_a_store_that_does_not_sync").await;
    let mut detected = None;
    for r in 0..3 {
        if let Err(e) = round(&fs, &mut h, r).await {
            detected = Some(e);
            break;
        }
    }
    h.server.kill();
    let loss = detected.expect("a store without fsync lost nothing at three power cuts");
    eprintln!("without fsync, as expected: {loss}");
    assert!(
        loss.contains("went back") || loss.contains("lost") || loss.contains("changed"),
        "{loss}"
    );
}
