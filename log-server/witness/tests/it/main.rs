//! The witness over HTTP (the router, in process) and its core under concurrency and restarts:
//! every status of c2sp.org/tlog-witness "add-checkpoint", the cosignatures checked with the
//! verifier crate, and the state kept across a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../support/testlog.rs"]
mod testlog;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use countersign_verifier::{verify_checkpoint_with_policy, Note, Policy};
use countersign_witness::{router, Witness, WitnessKey, MAX_REQUEST_BYTES};
use ed25519_dalek::SigningKey;
use testlog::{body_with, TestLog};
use tower::ServiceExt;

const ORIGIN: &str = "example.com/witnessed-log";

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

fn witness_key() -> WitnessKey {
    WitnessKey::from_seed("witness.example/w1", &[42; 32]).unwrap()
}

fn open(dir: &Path, logs: &[&TestLog]) -> Arc<Witness> {
    let mut policy = String::from("# logs witnessed\n");
    for l in logs {
        policy.push_str(&l.policy_line());
    }
    policy.push_str("quorum none\n");
    let policy = Policy::parse(policy.as_bytes()).unwrap();
    Arc::new(Witness::open(witness_key(), &policy, dir).unwrap())
}

async fn call(w: &Arc<Witness>, method: &str, path: &str, body: impl Into<Body>) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(body.into())
        .unwrap();
    let resp = router(w.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn add(w: &Arc<Witness>, body: String) -> Answer {
    call(w, "POST", "/add-checkpoint", body).await
}

/// Checks a 200 answer: one cosignature line by the witness key over the checkpoint at `n`,
/// and the note with it verifies under a policy requiring this witness.
fn assert_cosigned(a: &Answer, log: &TestLog, n: u64) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body.matches('\n').count(), 1, "{}", a.body);
    assert!(
        a.body.starts_with("\u{2014} witness.example/w1 "),
        "{}",
        a.body
    );
    let note = format!("{}{}", log.note(n), a.body);
    let policy = format!(
        "{}witness w1 {}\nquorum w1\n",
        log.policy_line(),
        witness_key().verifier().to_vkey()
    );
    let v =
        verify_checkpoint_with_policy(note.as_bytes(), &Policy::parse(policy.as_bytes()).unwrap())
            .unwrap();
    assert_eq!(v.checkpoint.size, n);
    let ts = v.cosignatures[0].timestamp.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(ts <= now && ts + 60 > now, "timestamp {ts}, now {now}");
}

fn assert_conflict(a: &Answer, size: u64) {
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.content_type, "text/x.tlog.size");
    assert_eq!(a.body, format!("{size}\n"));
}

#[tokio::test]
async fn first_checkpoint_from_size_zero_then_consistent_growth() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = TestLog::new(ORIGIN, 1, 5, "main");
    let w = open(dir.path(), &[&log]);
    assert_cosigned(&add(&w, log.body(0, 5)).await, &log, 5);
    // Every kind of step: to a power of two, across one, by one, and the same size again.
    for (old, new) in [(5, 8), (8, 9), (9, 23), (23, 23), (23, 64), (64, 100)] {
        log.grow(new, "main");
        assert_cosigned(&add(&w, log.body(old, new)).await, &log, new);
    }
    let latest = call(&w, "GET", &format!("/checkpoint/{ORIGIN}"), Body::empty()).await;
    assert_eq!(latest.status, 200);
    let note = Note::parse(latest.body.as_bytes()).unwrap();
    assert_eq!(note.text(), log.text(100));
    note.verify(&[log.vkey()]).unwrap();
    note.verify(&[witness_key().verifier().clone()]).unwrap();
    let encoded = call(
        &w,
        "GET",
        "/checkpoint/example.com%2Fwitnessed-log",
        Body::empty(),
    )
    .await;
    assert_eq!(encoded.body, latest.body);
}

#[tokio::test]
async fn stale_old_size_gets_409_with_the_witness_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 20, "main");
    let w = open(dir.path(), &[&log]);
    // Never cosigned: the witness's size is 0.
    assert_conflict(&add(&w, log.body(3, 10)).await, 0);
    assert_cosigned(&add(&w, log.body(0, 10)).await, &log, 10);
    for old in [0, 3, 9, 11, 15] {
        assert_conflict(&add(&w, log.body(old, 20)).await, 10);
    }
    // The client retries from the size it was told.
    assert_cosigned(&add(&w, log.body(10, 20)).await, &log, 20);
    // A smaller tree after a larger: refused as stale whatever the old size says.
    assert_conflict(&add(&w, log.body(0, 15)).await, 20);
    assert_conflict(&add(&w, log.body(10, 15)).await, 20);
}

#[tokio::test]
async fn bad_proofs_get_422() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 40, "main");
    let w = open(dir.path(), &[&log]);
    assert_cosigned(&add(&w, log.body(0, 13)).await, &log, 13);
    let good = log.proof(13, 40);
    let note = log.note(40);
    let mut flipped = good.clone();
    flipped[1].0[0] ^= 1;
    let mut swapped = good.clone();
    swapped.swap(0, 1);
    for (what, proof) in [
        ("bit-flip", flipped),
        ("swapped", swapped),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("extended", [good.clone(), vec![good[0]]].concat()),
        ("empty", Vec::new()),
    ] {
        let a = add(&w, body_with(13, &proof, &note)).await;
        assert_eq!(a.status, 422, "{what}: {}", a.body);
        assert!(a.body.contains("consistency proof"), "{what}: {}", a.body);
    }
    // A fork at a larger size: its own proof is valid for its history, not for what was cosigned.
    let fork = log.fork(10, 40, "fork");
    let a = add(&w, body_with(13, &fork.proof(13, 40), &fork.note(40))).await;
    assert_eq!(a.status, 422, "{}", a.body);
    // Nothing changed: the honest log goes on.
    assert_cosigned(&add(&w, log.body(13, 40)).await, &log, 40);
}

#[tokio::test]
async fn another_root_at_the_cosigned_size_gets_409() {
    // tlog-witness: "If the old size matches the checkpoint size, the witness MUST check that the
    // root hashes are also identical. If they don't match ... 409 Conflict".
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 16, "main");
    let w = open(dir.path(), &[&log]);
    assert_cosigned(&add(&w, log.body(0, 16)).await, &log, 16);
    let fork = log.fork(15, 16, "fork");
    let a = add(&w, fork.body(16, 16)).await;
    assert_conflict(&a, 16);
    let latest = w.latest(ORIGIN).unwrap();
    assert!(latest.starts_with(&log.text(16)));
}

#[tokio::test]
async fn unknown_logs_get_404_and_bad_signatures_403() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 4, "main");
    let w = open(dir.path(), &[&log]);
    let stranger = TestLog::new("example.com/other-log", 2, 4, "main");
    let a = add(&w, stranger.body(0, 4)).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.body.contains("does not witness"), "{}", a.body);

    // The right name, another key.
    let impostor = TestLog::new(ORIGIN, 3, 4, "main");
    let a = add(&w, impostor.body(0, 4)).await;
    assert_eq!(a.status, 403, "{}", a.body);
    // The right key name and ID, a signature that does not verify.
    let other = SigningKey::from_bytes(&[9; 32]);
    let forged = log.sign_text_with(&other, &log.text(4));
    let a = add(&w, body_with(0, &[], &forged)).await;
    assert_eq!(a.status, 403, "{}", a.body);
    // The log's signature on another text.
    let moved = log.note(4).replacen("\n4\n", "\n5\n", 1);
    let a = add(&w, body_with(0, &[], &moved)).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(w.latest(ORIGIN).is_none());
    assert_cosigned(&add(&w, log.body(0, 4)).await, &log, 4);
    let a = call(
        &w,
        "GET",
        "/checkpoint/example.com/other-log",
        Body::empty(),
    )
    .await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_400() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 8, "main");
    let w = open(dir.path(), &[&log]);
    let note = log.note(8);
    let proof_line = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n";
    for (what, body) in [
        ("empty", String::new()),
        (
            "no blank line",
            format!("old 0\n{note}").replacen("\n\n", "\n", 1),
        ),
        ("leading zero", format!("old 00\n\n{note}")),
        ("not old", format!("new 0\n\n{note}")),
        ("bad hash", format!("old 0\nabc\n\n{note}")),
        (
            "64 proof lines",
            format!("old 0\n{}\n{note}", proof_line.repeat(64)),
        ),
        (
            "old above size",
            log.body(0, 8).replacen("old 0", "old 9", 1),
        ),
        ("unsigned note", format!("old 0\n\n{}\n", log.text(8))),
        (
            "bad checkpoint",
            body_with(0, &[], &log.sign_text(&format!("{ORIGIN}\nnot a size\n"))),
        ),
        (
            "oversized",
            format!("old 0\n\n{}", "a".repeat(MAX_REQUEST_BYTES + 1)),
        ),
    ] {
        let a = add(&w, body).await;
        assert_eq!(a.status, 400, "{what}: {}", a.body);
        assert!(
            a.body.starts_with("malformed request") || a.body.contains("old size"),
            "{what}: {}",
            a.body
        );
    }
    assert!(w.latest(ORIGIN).is_none());
    assert_eq!(
        call(&w, "GET", "/add-checkpoint", Body::empty())
            .await
            .status,
        405
    );
    let h = call(&w, "GET", "/health", Body::empty()).await;
    assert_eq!(
        h.body,
        format!("ok {}\n", witness_key().verifier().to_vkey())
    );
}

#[tokio::test]
async fn restart_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 30, "main");
    let second = TestLog::new("example.com/second", 5, 30, "second");
    {
        let w = open(dir.path(), &[&log, &second]);
        assert_cosigned(&add(&w, log.body(0, 21)).await, &log, 21);
        assert_cosigned(&add(&w, second.body(0, 7)).await, &second, 7);
    }
    let w = open(dir.path(), &[&log, &second]);
    assert_conflict(&add(&w, log.body(0, 30)).await, 21);
    assert_conflict(&add(&w, second.body(0, 30)).await, 7);
    let fork = log.fork(20, 21, "fork");
    assert_conflict(&add(&w, fork.body(21, 21)).await, 21);
    assert_cosigned(&add(&w, log.body(21, 30)).await, &log, 30);
    assert_cosigned(&add(&w, second.body(7, 30)).await, &second, 30);
    // A log dropped from the file and added back keeps its state too.
    drop(w);
    let w = open(dir.path(), &[&second]);
    assert_eq!(add(&w, log.body(30, 30)).await.status, 404);
    drop(w);
    let w = open(dir.path(), &[&log]);
    assert_conflict(&add(&w, log.body(0, 30)).await, 30);
}

#[test]
fn corrupt_state_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 3, "main");
    let w = open(dir.path(), &[&log]);
    w.add_checkpoint(log.body(0, 3).as_bytes()).unwrap();
    drop(w);
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "checkpoint"))
        .unwrap();
    std::fs::write(&file, b"garbage").unwrap();
    let policy = Policy::parse(format!("{}quorum none\n", log.policy_line()).as_bytes()).unwrap();
    let err = Witness::open(witness_key(), &policy, dir.path()).unwrap_err();
    assert!(err.to_string().contains("unreadable"), "{err}");
}

#[test]
fn concurrent_submissions_from_one_old_size_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let mut current = TestLog::new(ORIGIN, 1, 10, "main");
    let w = open(dir.path(), &[&current]);
    w.add_checkpoint(current.body(0, 10).as_bytes()).unwrap();
    for round in 0..20u64 {
        let base = current.leaves.len() as u64;
        // Eight different trees grown from the cosigned one, and one exact duplicate.
        let mut branches: Vec<TestLog> = (0..8u64)
            .map(|b| current.fork(base, base + 1 + b, &format!("round {round} branch {b}")))
            .collect();
        branches.push(branches[0].fork(base + 1, base + 1, "unused"));
        let barrier = std::sync::Barrier::new(branches.len());
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = branches
                .iter()
                .map(|b| {
                    let (w, barrier) = (&w, &barrier);
                    let body = b.body(base, b.leaves.len() as u64);
                    s.spawn(move || {
                        barrier.wait();
                        w.add_checkpoint(body.as_bytes())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(countersign_witness::AddError::StaleOldSize { .. })),
                "{r:?}"
            );
        }
        current = branches.swap_remove(winners[0]);
        let size = current.leaves.len() as u64;
        assert!(w.latest(ORIGIN).unwrap().starts_with(&current.text(size)));
    }
}

#[test]
fn spec_example_holds() {
    // spec/witness.md's example: the log of seed 1 with 8 leaves, the witness of seed 42.
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/witness.md"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new("example.com/log", 1, 8, "example");
    let w = open(dir.path(), &[&log]);
    w.add_checkpoint(log.body(0, 5).as_bytes()).unwrap();
    let body = log.body(5, 8);
    assert!(spec.contains(&format!("POST /add-checkpoint\n\n{body}```")));
    assert!(spec.contains(&log.vkey().to_vkey()));
    assert!(spec.contains(&witness_key().verifier().to_vkey()));
    let key_line = spec
        .lines()
        .find(|l| l.starts_with("PRIVATE+KEY+"))
        .unwrap();
    let key = WitnessKey::parse(key_line).unwrap();
    assert_eq!(key.verifier(), witness_key().verifier());
    // The cosignature in the spec is one the witness made (its timestamp was the time then).
    let line = spec
        .lines()
        .find(|l| l.starts_with("\u{2014} witness.example/w1 "))
        .unwrap();
    let note = format!("{}{line}\n", log.note(8));
    Note::parse(note.as_bytes())
        .unwrap()
        .verify(&[witness_key().verifier().clone()])
        .unwrap();
    let cosig = w.add_checkpoint(body.as_bytes()).unwrap();
    assert!(cosig.starts_with("\u{2014} witness.example/w1 "));
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with(".checkpoint"))
        .unwrap();
    assert_eq!(
        file,
        format!(
            "{}.checkpoint",
            hex::encode(countersign_verifier::sha256(b"example.com/log"))
        )
    );
}

#[tokio::test]
async fn cosignature_timestamps_never_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 6, "main");
    let w = open(dir.path(), &[&log]);
    w.add_checkpoint(log.body(0, 3).as_bytes()).unwrap();
    drop(w);
    // A stored cosignature from a clock an hour ahead (or one set back since).
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut note = Note::parse(log.note(3).as_bytes()).unwrap();
    note.push_signature(witness_key().cosign(ahead, &log.text(3)))
        .unwrap();
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "checkpoint"))
        .unwrap();
    std::fs::write(&file, note.to_text()).unwrap();
    let w = open(dir.path(), &[&log]);
    let line = w.add_checkpoint(log.body(3, 6).as_bytes()).unwrap();
    let v = Note::parse(format!("{}{line}", log.note(6)).as_bytes())
        .unwrap()
        .verify(&[witness_key().verifier().clone()])
        .unwrap();
    assert_eq!(v[0].timestamp, Some(ahead));
}

#[tokio::test]
async fn a_failed_write_cosigns_nothing_and_holds_the_log_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new(ORIGIN, 1, 9, "main");
    let w = open(dir.path(), &[&log]);
    assert_cosigned(&add(&w, log.body(0, 4)).await, &log, 4);
    // A directory where the temporary file goes makes the next write fail.
    let tmp = dir.path().join(format!(
        "{}.checkpoint.tmp",
        hex::encode(countersign_verifier::sha256(ORIGIN.as_bytes()))
    ));
    std::fs::create_dir(&tmp).unwrap();
    let a = add(&w, log.body(4, 6)).await;
    assert_eq!(a.status, 500, "{}", a.body);
    assert_eq!(a.body, "the witness could not store its state\n");
    std::fs::remove_dir(&tmp).unwrap();
    // Held back even though the disk works again: only a restart re-reads the state.
    assert_eq!(add(&w, log.body(4, 6)).await.status, 500);
    assert!(w.latest(ORIGIN).unwrap().starts_with(&log.text(4)));
    drop(w);
    let w = open(dir.path(), &[&log]);
    assert_cosigned(&add(&w, log.body(4, 9)).await, &log, 9);
}
