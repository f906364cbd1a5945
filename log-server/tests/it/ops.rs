//! Operations: health, metrics, backpressure, backups, restarts and first-start files.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use countersign_verifier::{Entry, Revocation};

use crate::common::{config, TestLog};

fn revocation(n: u64) -> Vec<u8> {
    Entry::Revocation(Revocation {
        approver_id: "approver-1".into(),
        credential_id: vec![1; 16],
        enrolment_index: 0,
        reason: "lost".into(),
        time_ms: n,
    })
    .encode()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_first_start_files() {
    let log = TestLog::start().await;
    let (s, v) = log.get("/healthz").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "ok");
    log.state
        .log
        .append_verified_entry(revocation(1))
        .await
        .unwrap();
    // The idle sequencer re-signs (interval 500 ms in tests), so health stays fresh.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, v) = log.get("/healthz").await;
    assert_eq!(s, 200, "{v}");
    assert!(v["checkpoint_age_ms"].as_u64().unwrap() < 1000, "{v}");
    let text = crate::web::get_text(&log.client, &format!("{}/metrics", log.url)).await;
    for m in [
        "countersign_tree_size 1",
        "countersign_queue_depth",
        "countersign_batch_size_bucket",
        "countersign_integration_latency_seconds_bucket",
        "countersign_fsync_seconds_count",
    ] {
        assert!(text.contains(m), "missing {m} in metrics");
    }
    // The values follow what happened: one new leaf, then the same entry again (a dedup).
    let again = log
        .state
        .log
        .append_verified_entry(revocation(1))
        .await
        .unwrap();
    assert!(again.existing);
    let text = crate::web::get_text(&log.client, &format!("{}/metrics", log.url)).await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no value for {name} in\n{text}"))
    };
    assert_eq!(value("countersign_tree_size"), 1.0);
    assert_eq!(value("countersign_appended_entries_total"), 1.0);
    assert_eq!(value("countersign_deduplicated_appends_total"), 1.0);
    assert_eq!(value("countersign_queue_full_rejections_total"), 0.0);
    assert_eq!(value("countersign_queue_depth"), 0.0);
    // Two batches were built (the new leaf, the dedup); only the first wrote a leaf.
    assert_eq!(value("countersign_batch_size_count"), 2.0);
    assert!(value("countersign_fsync_seconds_count") >= 1.0);
    assert_eq!(value("countersign_integration_latency_seconds_count"), 2.0);
    let (s, v) = log.get("/v1/log/vkey").await;
    assert_eq!(s, 200);
    assert_eq!(v["vkey"].as_str().unwrap(), log.vkey.to_vkey());
    let data = log._dir.path().join("data");
    for f in ["log.key", "admin.token"] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let vkey_file = std::fs::read_to_string(data.join("log.vkey")).unwrap();
    assert_eq!(vkey_file.trim(), log.vkey.to_vkey());
    // The admin token is stored hashed only.
    let token_hex = log.admin.clone();
    let _dir = log.stop_keep().await;
    let mut found = false;
    for e in std::fs::read_dir(data.join("db")).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
        if bytes
            .windows(token_hex.len())
            .any(|w| w == token_hex.as_bytes())
        {
            found = true;
        }
    }
    assert!(!found, "the plain admin token is in the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_with_retry_after() {
    let log = TestLog::start_with(|mut c| {
        c.sequencer.queue_capacity = 1;
        c.sequencer.batch_max_entries = 1;
        c
    })
    .await;
    // Many at once: on a loaded machine a few tasks may each start after the one before was
    // already taken from the queue and written (with 6, all six once were).
    let mut tasks = Vec::new();
    for n in 0..64 {
        let h = log.state.log.clone();
        tasks.push(tokio::spawn(async move {
            h.append_verified_entry(revocation(n)).await
        }));
    }
    let mut full = 0;
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(countersign_log::AppendError::QueueFull) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(full >= 1 && ok >= 1, "ok {ok}, full {full}");
    // Over HTTP: bursts of enrolments against a one-slot queue; some must get 503 + Retry-After,
    // and those append nothing.
    let mut saw_503 = false;
    for burst in 0..10u64 {
        let size_before = log.checkpoint().await.size;
        let mut reqs = Vec::new();
        for k in 0..40u64 {
            let pk = crate::common::passkey(1000 + burst * 100 + k);
            let (client, url, admin) = (log.client.clone(), log.url.clone(), log.admin.clone());
            reqs.push(tokio::spawn(async move {
                let r = client
                    .post(format!("{url}/v1/log/enrolments"))
                    .bearer_auth(&admin)
                    .json(&crate::common::enrolment_body(&pk, "approver-q"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let v: serde_json::Value = r.json().await.unwrap();
                (status, retry, v)
            }));
        }
        let mut created = 0;
        for r in reqs {
            let (status, retry, v) = r.await.unwrap();
            match status {
                201 => created += 1,
                503 => {
                    assert_eq!(retry.as_deref(), Some("1"));
                    assert_eq!(v["error"], "queue_full");
                    saw_503 = true;
                }
                other => panic!("{other} {v}"),
            }
        }
        assert_eq!(log.checkpoint().await.size, size_before + created);
        if saw_503 {
            break;
        }
    }
    assert!(saw_503, "a one-slot queue never filled");
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_and_backups_work() {
    let log = TestLog::start().await;
    for n in 0..10 {
        log.state
            .log
            .append_verified_entry(revocation(n))
            .await
            .unwrap();
    }
    let before = log.checkpoint().await;
    let online = log._dir.path().join("online-backup");
    let r = log
        .client
        .post(format!("{}/v1/admin/backup", log.url))
        .bearer_auth(&log.admin)
        .json(&serde_json::json!({"to": online}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data = log._dir.path().join("data");
    let tmp = log._dir.path().to_owned();
    let vkey = log.vkey.clone();
    // Keep the directory alive across the restart.
    let dir = log.stop_keep().await;
    // Same data dir, a different origin: refused.
    let mut other = config(data.clone());
    other.origin = Some("other.example/log".into());
    let err = tokio::task::spawn_blocking(move || countersign_log::start(other))
        .await
        .unwrap();
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("refusing to start"), "{msg}");
    // The backups open as logs of their own with the same checkpoint.
    let offline = tmp.join("offline-backup");
    for b in [online, offline.clone()] {
        if b == offline {
            let (d, o) = (data.clone(), offline.clone());
            tokio::task::spawn_blocking(move || countersign_log::backup_offline(&d, &o))
                .await
                .unwrap()
                .unwrap();
        }
        let started = tokio::task::spawn_blocking(move || countersign_log::start(config(b)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(started.vkey, vkey.to_vkey());
        let p = started.api.log.published();
        assert_eq!((p.size, p.root), (before.size, before.root));
        started.api.log.shutdown().await;
    }
    drop(dir);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused_with_a_clear_error() {
    let log = TestLog::start().await;
    let data = log._dir.path().join("data");
    let err = tokio::task::spawn_blocking(move || countersign_log::start(config(data)))
        .await
        .unwrap();
    let msg = err.unwrap_err().to_string();
    assert!(
        msg.contains("in use by another countersign process"),
        "{msg}"
    );
    // The running server is unaffected.
    let (status, _) = log.get("/healthz").await;
    assert_eq!(status, 200);
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_is_a_consistent_prefix_of_the_log() {
    let log = TestLog::start().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (h, stop) = (log.state.log.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                h.append_verified_entry(revocation((t << 32) | n))
                    .await
                    .unwrap();
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let backup = log._dir.path().join("backup-under-load");
    let (status, v) = log
        .post(
            "/v1/admin/backup",
            &log.admin,
            &serde_json::json!({ "to": backup }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut appended = 0;
    for t in tasks {
        appended += t.await.unwrap();
    }
    let after = log.checkpoint().await;
    let backed_up = v["tree_size"].as_u64().unwrap();
    assert!(
        0 < backed_up && backed_up < after.size,
        "the backup ({backed_up}) was taken while {appended} entries were appended (final size {})",
        after.size
    );
    // The copy opens as a log of its own whose tree is one the live log had: its root is proved
    // consistent with the live log's latest by the live log's own consistency proof.
    let b = backup.clone();
    let started = tokio::task::spawn_blocking(move || countersign_log::start(config(b)))
        .await
        .unwrap()
        .unwrap();
    let copy = started.api.log.published();
    assert_eq!(copy.size, backed_up);
    let (status, v) = log
        .get(&format!(
            "/v1/log/proof/consistency?first={}&second={}",
            copy.size, after.size
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    let proof = crate::common::hashes(&v["consistency_proof"]);
    countersign_verifier::verify_consistency(
        copy.size,
        after.size,
        &copy.root,
        &after.root,
        &proof,
    )
    .unwrap();
    started.api.log.shutdown().await;
    log.stop().await;
}
