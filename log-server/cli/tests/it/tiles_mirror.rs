//! `countersign serve --tiles URL` with the real binary (spec/tiles-mirror.md): a directory
//! mirror holds the served checkpoint and survives a kill -9 and restart; an unusable URL stops
//! the start before anything is created; a second log pointed at the same directory is refused
//! at start and writes nothing there.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{free_port, Process};
use crate::web::get_text;

/// `countersign serve` run to its exit with `args`: exit code and standard error.
fn serve_to_exit(data: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["serve", "--log-only", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(args)
        .env_remove("COUNTERSIGN_TILES")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `dir/checkpoint` is the checkpoint `p` serves.
async fn mirrored(p: &Process, http: &reqwest::Client, dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let served = get_text(http, &format!("{}/checkpoint", p.url)).await;
        if std::fs::read_to_string(dir.join("checkpoint"))
            .ok()
            .as_deref()
            == Some(&*served)
        {
            return served;
        }
        assert!(Instant::now() < deadline, "the mirror did not follow");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn serve_mirrors_tiles_to_a_directory_and_refuses_another_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let tiles = tmp.path().join("tiles");
    let url = format!("file://{}", tiles.display());
    let http = reqwest::Client::new();

    // An unusable URL: refused before the data directory is made.
    let data = tmp.path().join("data");
    let (code, err) = serve_to_exit(&data, &["--tiles", "ftp://example/tiles"]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("unsupported scheme"), "{err}");
    assert!(!data.exists(), "the refused start made the data directory");

    // A log mirrored to the directory; checkpoints follow, also after a kill -9.
    let mut p = Process::spawn(&data, free_port(), &["--log-only", "--tiles", &url]);
    p.wait_ready(&http).await;
    let first = mirrored(&p, &http, &tiles).await;
    assert!(first.starts_with("localhost/countersign\n0\n"), "{first}");
    // The mirror's state on /metrics.
    let metrics = get_text(&http, &format!("{}/metrics", p.url)).await;
    for line in [
        "countersign_tiles_mirror_size 0",
        "countersign_tiles_mirror_stopped 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
    p.kill();
    p.restart();
    p.wait_ready(&http).await;
    mirrored(&p, &http, &tiles).await;

    // A second log on the same directory: refused at start, nothing written over.
    let before = std::fs::read(tiles.join("checkpoint")).unwrap();
    let (code, err) = serve_to_exit(&tmp.path().join("other"), &["--tiles", &url]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("is not this log's"), "{err}");
    assert_eq!(std::fs::read(tiles.join("checkpoint")).unwrap(), before);
    p.terminate();
}
