//! Storage faults: the real binary with its data directory on the power-cut file system, which
//! fails writes or fsyncs on demand (EIO, ENOSPC). As spec/api.md §4.1 promises, a failed batch
//! write fails that batch and every batch built on it with `500 storage_failed`, every later
//! append too, `/healthz` answers 503 with `sequencer_alive: false`, and the checkpoint does not
//! move; no answer acknowledges an entry. After the fault is cleared, a SIGKILL, a power cut and
//! a restart serve the last durable tree with every acknowledged entry, and appends work again.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use countersign_powercut::{Failure, Op, PowerCutMount, Times};
use countersign_verifier::{Checkpoint, Hash, VerifierKey};
use serde_json::{json, Value};

use crate::common::Api;
use crate::log_common::hashes;
use crate::log_crash::ARGS;
use crate::process::{free_port, Process};

struct Log {
    api: Api,
    vkey: VerifierKey,
}

/// The binary with its data directory on a fresh power-cut mount below `tmp`, ready; the mount
/// is returned first so that it outlives the server. Its standard error goes to a file on the
/// same mount, as a log file on a disk that fills up would: the log must fail closed as
/// specified, not lose its writer thread to a log line it cannot write.
async fn start(tmp: &Path) -> (PowerCutMount, Process, Arc<Log>) {
    let fs: PowerCutMount = crate::powercut::mount(&tmp.join("mnt"));
    let server = Process::spawn_logging_to(
        &fs.path().join("data"),
        free_port(),
        &ARGS,
        &fs.path().join("server.log"),
    );
    server.wait_ready(&reqwest::Client::new()).await;
    let api = Api::of(&server);
    let vkey = VerifierKey::parse(&server.read("log.vkey")).unwrap();
    (fs, server, Arc::new(Log { api, vkey }))
}

impl Log {
    /// `POST /v1/log/enrolments` of a fresh credential: the status and the JSON body.
    async fn enrol(&self, n: u64) -> (u16, Value) {
        let pk = crate::log_common::passkey(10_000 + n);
        let body = crate::log_common::enrolment_body(&pk, &format!("fault-{n}"));
        self.api.admin_post("/v1/log/enrolments", body).await
    }

    async fn checkpoint(&self) -> Checkpoint {
        self.api.checkpoint(&self.vkey).await
    }

    async fn health(&self) -> (u16, Value) {
        let r = self
            .api
            .http
            .get(format!("{}/healthz", self.api.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }
}

fn assert_storage_failed(status: u16, v: &Value) {
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["error"], "storage_failed", "{v}");
    assert_eq!(
        v["error_description"], "the log could not store the entry; nothing was appended",
        "{v}"
    );
}

async fn fails_closed_and_recovers(op: Op, failure: Failure) {
    let tmp = tempfile::tempdir().unwrap();
    let (fs, mut server, log) = start(tmp.path()).await;

    let mut acks = Vec::new();
    for n in 0..5 {
        let (status, v) = log.enrol(n).await;
        assert_eq!(status, 201, "{v}");
        acks.push((
            v["index"].as_u64().unwrap(),
            v["leaf_hash"].as_str().unwrap().to_owned(),
        ));
    }
    let before = log.checkpoint().await;
    assert_eq!(before.size, 5);

    fs.fail(op, failure, Times::UntilCleared);
    // Many appends at once, so that batches are built on the one that fails.
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (log, answers) = (log.clone(), answers.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..4 {
                let answer = log.enrol(100 + t * 10 + i).await;
                answers.lock().unwrap().push(answer);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let answers = Arc::try_unwrap(answers).unwrap().into_inner().unwrap();
    assert_eq!(answers.len(), 32);
    for (status, v) in &answers {
        assert_storage_failed(*status, v);
    }
    let injected = fs.stats().injected;
    assert!(injected > 0, "the fault was never hit");

    let (status, v) = log.health().await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(v["sequencer_alive"], false, "{v}");
    // Longer than the re-signing interval: no checkpoint is signed past the failure.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during = log.checkpoint().await;
    assert_eq!((during.size, during.root), (before.size, before.root));

    // Clearing the fault does not revive the sequencer: its state may not match the store's.
    fs.clear_faults();
    let (status, v) = log.enrol(999).await;
    assert_storage_failed(status, &v);
    assert_eq!(log.health().await.1["sequencer_alive"], false);

    server.kill();
    fs.power_cut();
    server.restart();
    server.wait_ready(&log.api.http).await;
    let after = log.checkpoint().await;
    assert_eq!(
        (after.size, after.root),
        (before.size, before.root),
        "the restarted log serves another tree than the last durable one"
    );
    for (index, leaf) in &acks {
        let v = crate::web::get_json(
            &log.api.http,
            &format!("{}/v1/log/proof/inclusion?index={index}", log.api.url),
        )
        .await;
        assert_eq!(
            v["leaf_hash"].as_str(),
            Some(leaf.as_str()),
            "entry {index}"
        );
        let proof = hashes(&v["inclusion_proof"]);
        let leaf = Hash::from_hex(leaf).unwrap();
        countersign_verifier::verify_inclusion(&leaf, *index, after.size, &proof, &after.root)
            .unwrap_or_else(|e| panic!("entry {index}: {e}"));
    }
    let (status, v) = log.health().await;
    assert_eq!((status, &v["sequencer_alive"]), (200, &json!(true)), "{v}");
    // Appends work again, right after the last durable entry.
    let (status, v) = log.enrol(1000).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["index"], before.size, "{v}");
    eprintln!(
        "{op:?} {failure:?}: {injected} injected errors; {:?}",
        fs.stats()
    );
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_eio_fails_closed_and_a_restart_serves_the_durable_tree() {
    fails_closed_and_recovers(Op::Write, Failure::Eio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_eio_fails_closed_and_a_restart_serves_the_durable_tree() {
    fails_closed_and_recovers(Op::Fsync, Failure::Eio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_enospc_fails_closed_and_a_restart_serves_the_durable_tree() {
    fails_closed_and_recovers(Op::Write, Failure::Enospc).await;
}

/// A disk that hangs instead of failing: with every fsync held back, the sequencer is alive but
/// signs no checkpoint, so `/healthz` answers 503 once the checkpoint is older than three
/// re-signing intervals (spec/api.md §4.1), while `sequencer_alive` stays true. An append sent
/// meanwhile is not answered before its entry is durable; once the disk answers again, the append
/// is acknowledged and `/healthz` is 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_a_stale_checkpoint_while_the_disk_hangs() {
    let tmp = tempfile::tempdir().unwrap();
    let (fs, mut server, log) = start(tmp.path()).await;
    let (status, v) = log.health().await;
    assert_eq!(status, 200, "{v}");
    let before = log.checkpoint().await;

    fs.hold_syncs();
    let append = tokio::spawn({
        let log = log.clone();
        async move { log.enrol(1).await }
    });
    // --checkpoint-interval-ms 300: stale after 3 x 300 ms + the 2 s allowance.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let stale = loop {
        let (status, v) = log.health().await;
        if status != 200 {
            break (status, v);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz still 200 with fsyncs held: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, v) = stale;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(v["sequencer_alive"], true, "{v}");
    assert!(v["checkpoint_age_ms"].as_u64().unwrap() > 2900, "{v}");
    assert!(
        !append.is_finished(),
        "an append was answered before it was durable"
    );
    let during = log.checkpoint().await;
    assert_eq!((during.size, during.root), (before.size, before.root));

    fs.release_syncs();
    let (status, v) = tokio::time::timeout(Duration::from_secs(10), append)
        .await
        .expect("the append is answered once the disk answers")
        .unwrap();
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["index"], before.size, "{v}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = log.health().await;
        if status == 200 {
            assert_eq!(v["sequencer_alive"], true, "{v}");
            assert!(v["checkpoint_age_ms"].as_u64().unwrap() < 2900, "{v}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz not 200 again: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill();
}
