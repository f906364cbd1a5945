//! `countersign monitor` against a real log on loopback: the real binary with `--once`, its
//! exit status, its alert lines, its state directory and its webhook; a fake witness serving a
//! checkpoint of the log forked at the log's size; state edited to a checkpoint the log does
//! not extend.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use countersign_log::signer::LogSigner;
use countersign_verifier::{sha256, Checkpoint, Hash, Note, VerifierKey};
use hmac::Mac;
use serde_json::{json, Value};

use crate::common::*;

/// The binary under test: `COUNTERSIGN_BIN` if set (a target directory shared by several
/// checkouts can hold another checkout's build at the uplifted path), else cargo's.
fn bin() -> PathBuf {
    std::env::var_os("COUNTERSIGN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_countersign").into())
}

/// What a `countersign monitor --once` run printed and returned.
struct Run {
    code: i32,
    stderr: String,
}

impl Run {
    /// The alert kinds it printed, in order.
    fn kinds(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("countersign monitor: ALERT "))
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    }
}

/// `countersign monitor --once --log URL --policy DIR/policy --state DIR/state ARGS...` on the
/// server's log.
async fn monitor(s: &Server, dir: &Path, args: &[&str]) -> Run {
    monitor_log(&s.url, dir, args).await
}

/// [`monitor`] on the log at `url`.
async fn monitor_log(url: &str, dir: &Path, args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["monitor", "--once", "--log", url, "--policy"])
        .arg(dir.join("policy"))
        .arg("--state")
        .arg(dir.join("state"))
        .args(args)
        .env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("monitor exited {}:\n{}", run.code, run.stderr);
    run
}

/// Writes DIR/policy: the server's log, `quorum none`, and the given witness lines.
fn policy(s: &Server, dir: &Path, witnesses: &str) {
    std::fs::write(
        dir.join("policy"),
        format!(
            "log {} {}\n{witnesses}quorum none\n",
            s.vkey.to_vkey(),
            s.url
        ),
    )
    .unwrap();
}

/// The server's log key, from its data directory.
fn log_signer(s: &Server) -> LogSigner {
    let hex_seed = std::fs::read_to_string(s.data_dir.join(countersign_log::KEY_FILE)).unwrap();
    let seed: [u8; 32] = hex::decode(hex_seed.trim()).unwrap().try_into().unwrap();
    LogSigner::new(s.vkey.name(), &seed).unwrap()
}

/// The log's current checkpoint body.
async fn log_checkpoint(s: &Server) -> Checkpoint {
    s.checkpoint(&s.vkey).await
}

fn state_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("state/state.json")).unwrap()).unwrap()
}

fn alerts_jsonl(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("state/alerts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn root_of(note: &str) -> Hash {
    let n = Note::parse(note.as_bytes()).unwrap();
    Checkpoint::parse(n.text()).unwrap().root
}

#[tokio::test]
async fn a_clean_log_exits_0_and_the_next_run_reads_only_new_entries() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    policy(&s, dir.path(), "");
    s.add_approver("apv_one", 61).await;
    s.add_approver("apv_two", 62).await;
    let size = s.tree_size();

    let r = monitor(&s, dir.path(), &["--verbose"]).await;
    assert_eq!(r.code, 0);
    assert!(r.kinds().is_empty());
    assert!(
        r.stderr
            .contains(&format!("tree size {size}, {size} entries read")),
        "{}",
        r.stderr
    );
    let st = state_json(dir.path());
    assert_eq!(st["entries_read"], size);
    assert!(st["checkpoint"]
        .as_str()
        .unwrap()
        .contains(&format!("\n{size}\n")));

    // Quiet for cron: no output at all when nothing is wrong.
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));

    s.add_approver("apv_three", 63).await;
    let r = monitor(&s, dir.path(), &["--verbose"]).await;
    assert_eq!(r.code, 0);
    assert!(
        r.stderr
            .contains(&format!("tree size {}, 1 entries read", size + 1)),
        "{}",
        r.stderr
    );
    let table = std::fs::read_to_string(dir.path().join("state/enrolments.jsonl")).unwrap();
    assert_eq!(table.lines().count(), 3, "{table}");

    // Unusable input is exit status 2 with a clear error; so is a log that does not answer.
    std::fs::write(dir.path().join("policy"), "quorum nobody\n").unwrap();
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("policy line 1"), "{}", r.stderr);
    policy(&s, dir.path(), "");
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "monitor",
        "--once",
        "--log",
        "http://127.0.0.1:9",
        "--policy",
    ])
    .arg(dir.path().join("policy"))
    .arg("--state")
    .arg(dir.path().join("state"));
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ALERT log-unreachable"));
}

#[tokio::test]
async fn enrolments_and_revocations_of_a_watched_approver_are_reported() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    policy(&s, dir.path(), "");
    let watch = ["--watch-approver", "apv_alice"];
    let r = monitor(&s, dir.path(), &watch).await;
    assert_eq!(r.code, 0);

    // Alice enrols and decides; Bob, not watched, enrols too.
    let client = s.add_client("agent-m", "poll", None).await;
    let alice = s.add_approver("apv_alice", 71).await;
    s.add_approver("apv_bob", 72).await;
    client.ask("apv_alice", &[]).await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let r = monitor(&s, dir.path(), &watch).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.kinds(), ["watched-enrolment"]);
    assert!(r.stderr.contains("apv_alice"), "{}", r.stderr);
    let a = alerts_jsonl(dir.path());
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["kind"], "watched-enrolment");
    assert_eq!(a[0]["index"], alice.enrolment_index);
    assert_eq!(a[0]["approver_id"], "apv_alice");

    // Reported once: the next run has nothing new.
    let r = monitor(&s, dir.path(), &watch).await;
    assert_eq!((r.code, r.kinds().len()), (0, 0));

    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_alice/disable", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let r = monitor(&s, dir.path(), &watch).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.kinds(), ["watched-revocation"]);
    let a = alerts_jsonl(dir.path());
    assert_eq!(a[1]["kind"], "watched-revocation");
    assert_eq!(a[1]["approver_id"], "apv_alice");
    let r = monitor(&s, dir.path(), &watch).await;
    assert_eq!(r.code, 0);
}

/// A witness's monitoring endpoint on loopback (`GET /checkpoint/<origin>`) serving `note` for
/// the test logs' origin.
async fn fake_witness(note: Arc<Mutex<String>>) -> String {
    let app = axum::Router::new().route(
        "/checkpoint/{*origin}",
        axum::routing::get(
            move |axum::extract::Path(origin): axum::extract::Path<String>| {
                let note = note.lock().unwrap().clone();
                async move {
                    if origin == "flow.example/log" {
                        (axum::http::StatusCode::OK, note)
                    } else {
                        (axum::http::StatusCode::NOT_FOUND, String::new())
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_witness_holding_another_root_at_the_same_size_is_a_split_view() {
    let s = Server::start().await;
    s.add_approver("apv_one", 81).await;
    s.add_approver("apv_two", 82).await;
    let dir = tempfile::tempdir().unwrap();
    let signer = log_signer(&s);
    let cp = log_checkpoint(&s).await;

    // An honest witness first: it holds the log's own checkpoint.
    let served = Arc::new(Mutex::new(signer.sign(cp.size, cp.root).unwrap()));
    let witness_url = fake_witness(served.clone()).await;
    let wkey = VerifierKey::cosignature("witness.test/w", [9; 32]).unwrap();
    policy(
        &s,
        dir.path(),
        &format!("witness w {} {witness_url}\n", wkey.to_vkey()),
    );
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!((r.code, r.kinds().len()), (0, 0));

    // An older checkpoint of the same tree is consistent: no alert either.
    let entry0 = s.log_api.log.store().unwrap().entry(0).unwrap().unwrap();
    let leaf0 = countersign_verifier::leaf_hash(&entry0);
    *served.lock().unwrap() = signer.sign(1, leaf0).unwrap();
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!((r.code, r.kinds().len()), (0, 0));

    // The log key signed another root at the log's size, and the witness holds it.
    let forked = Hash(sha256(b"a forked tree"));
    let fork_note = signer.sign(cp.size, forked).unwrap();
    *served.lock().unwrap() = fork_note.clone();
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.kinds(), ["split-view"]);
    let a = alerts_jsonl(dir.path());
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["witness"], "w");
    // Both signed notes, as proof: the log's and the conflicting one.
    let ours = a[0]["checkpoint"].as_str().unwrap();
    let theirs = a[0]["conflicting_checkpoint"].as_str().unwrap();
    assert_eq!(theirs, fork_note);
    assert_eq!(root_of(ours), cp.root);
    assert_eq!(root_of(theirs), forked);
    countersign_verifier::verify_checkpoint(ours.as_bytes(), &s.vkey, &[]).unwrap();
    countersign_verifier::verify_checkpoint(theirs.as_bytes(), &s.vkey, &[]).unwrap();

    // A smaller tree the log does not extend is a split view too.
    *served.lock().unwrap() = signer.sign(1, forked).unwrap();
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!((r.code, r.kinds()), (1, vec!["split-view".to_owned()]));
}

/// Rewrites the stored checkpoint of DIR/state to `note`.
fn store_checkpoint(dir: &Path, note: &str) {
    let path: PathBuf = dir.join("state/state.json");
    let mut st = state_json(dir);
    st["checkpoint"] = Value::String(note.to_owned());
    std::fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();
}

#[tokio::test]
async fn a_checkpoint_that_does_not_extend_the_last_one_seen_is_an_alert() {
    let s = Server::start().await;
    s.add_approver("apv_one", 91).await;
    s.add_approver("apv_two", 92).await;
    let dir = tempfile::tempdir().unwrap();
    policy(&s, dir.path(), "");
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!(r.code, 0);
    let signer = log_signer(&s);
    let cp = log_checkpoint(&s).await;
    let forked = Hash(sha256(b"another history"));

    // The last one seen is a smaller tree with a root the log's tree does not extend.
    let seen = signer.sign(1, forked).unwrap();
    store_checkpoint(dir.path(), &seen);
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.kinds(), ["inconsistent-checkpoint"]);
    assert!(r.stderr.contains("consistency proof"), "{}", r.stderr);
    let a = alerts_jsonl(dir.path());
    assert_eq!(a[0]["conflicting_checkpoint"], seen);
    assert_eq!(root_of(a[0]["checkpoint"].as_str().unwrap()), cp.root);
    // The state keeps the checkpoint the log failed to extend: the alert stands.
    assert_eq!(state_json(dir.path())["checkpoint"], seen);

    // Another root at the same size; a larger tree than the log now shows (a rollback).
    store_checkpoint(dir.path(), &signer.sign(cp.size, forked).unwrap());
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!(
        (r.code, r.kinds()),
        (1, vec!["inconsistent-checkpoint".to_owned()])
    );
    assert!(r.stderr.contains("another root"), "{}", r.stderr);
    store_checkpoint(dir.path(), &signer.sign(cp.size + 5, forked).unwrap());
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!(
        (r.code, r.kinds()),
        (1, vec!["inconsistent-checkpoint".to_owned()])
    );
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);

    // The state of one log is not used for another: unusable input.
    let (url, vkey) = fake_log(Arc::default()).await;
    fake_policy(dir.path(), &vkey);
    let r = monitor_log(&url, dir.path(), &[]).await;
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("its own --state directory"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn alerts_reach_the_webhook_signed_like_the_servers_notifications() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    policy(&s, dir.path(), "");
    let receiver = Receiver::start().await;
    std::fs::write(dir.path().join("secret"), "monitor-hook-key\n").unwrap();
    s.add_approver("apv_carol", 101).await;
    let secret = dir.path().join("secret");
    let args = [
        "--watch-approver",
        "apv_carol",
        "--webhook",
        &receiver.url,
        "--webhook-secret-file",
        secret.to_str().unwrap(),
    ];
    let r = monitor(&s, dir.path(), &args).await;
    assert_eq!(
        (r.code, r.kinds()),
        (1, vec!["watched-enrolment".to_owned()])
    );
    let (auth, body) = receiver.wait(1).await;
    assert_eq!(body["kind"], "watched-enrolment");
    assert_eq!(body["approver_id"], "apv_carol");
    assert_eq!(body["log"], s.url);
    let auth = auth.unwrap();
    let mut parts = auth.splitn(3, ' ');
    let (ts, sig, raw) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"monitor-hook-key").unwrap();
    mac.update(format!("{ts}.{raw}").as_bytes());
    assert_eq!(
        sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    // Delivered: nothing is left to send.
    let st = state_json(dir.path());
    assert_eq!(st["webhook_pending"], json!([]));
    assert_eq!(st["pending"], json!([]));
}

/// What a fake log serves: its checkpoint and hash tiles commit to `.0`, its entry bundles
/// serve `.1` (the same entries for an honest log).
type FakeEntries = Arc<Mutex<(Vec<Vec<u8>>, Vec<Vec<u8>>)>>;

/// A C2SP tiles log on loopback, signed with its own key, serving what `entries` holds when
/// asked (any size, every tile level).
async fn fake_log(entries: FakeEntries) -> (String, VerifierKey) {
    let signer = Arc::new(LogSigner::new("fake.example/log", &[5; 32]).unwrap());
    let vkey = signer.verifier_key().clone();
    let leaves_of = |tree: &[Vec<u8>]| -> Vec<Hash> {
        tree.iter()
            .map(|e| countersign_verifier::leaf_hash(e))
            .collect()
    };
    let (e1, e2) = (entries.clone(), entries);
    let app = axum::Router::new()
        .route(
            "/checkpoint",
            axum::routing::get(move || {
                let leaves = leaves_of(&e1.lock().unwrap().0);
                let root = countersign_verifier::root_from_leaf_hashes(&leaves);
                let note = signer.sign(leaves.len() as u64, root).unwrap();
                async move { note }
            }),
        )
        .route(
            "/tile/{*path}",
            axum::routing::get(
                move |axum::extract::Path(path): axum::extract::Path<String>| {
                    let (tree, bundle) = e2.lock().unwrap().clone();
                    async move {
                        let not_found = (axum::http::StatusCode::NOT_FOUND, Vec::new());
                        let Ok(t) = countersign_log::tiles::parse_tile_path(&path) else {
                            return not_found;
                        };
                        let w = t.partial.map_or(256, usize::from);
                        let first = t.index as usize * 256;
                        let body = match t.level {
                            Some(l) => {
                                let span = 1usize << (8 * u32::from(l));
                                let leaves = leaves_of(&tree);
                                if first + w > leaves.len() / span {
                                    return not_found;
                                }
                                (first..first + w)
                                    .flat_map(|i| {
                                        countersign_verifier::root_from_leaf_hashes(
                                            &leaves[i * span..(i + 1) * span],
                                        )
                                        .0
                                    })
                                    .collect()
                            }
                            None => {
                                if first + w > tree.len() {
                                    return not_found;
                                }
                                bundle[first..first + w]
                                    .iter()
                                    .flat_map(|e| {
                                        let mut b = (e.len() as u16).to_be_bytes().to_vec();
                                        b.extend_from_slice(e);
                                        b
                                    })
                                    .collect()
                            }
                        };
                        (axum::http::StatusCode::OK, body)
                    }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, vkey)
}

/// Writes DIR/policy for the fake log's key.
fn fake_policy(dir: &Path, vkey: &VerifierKey) {
    std::fs::write(
        dir.join("policy"),
        format!("log {}\nquorum none\n", vkey.to_vkey()),
    )
    .unwrap();
}

/// A real log's entries: Alice's enrolment (0), her decision (1) and its revocation (2).
async fn real_entries() -> Vec<Vec<u8>> {
    let s = Server::start().await;
    let client = s.add_client("agent-f", "poll", None).await;
    let alice = s.add_approver("apv_alice", 111).await;
    client.ask("apv_alice", &[]).await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_alice/disable", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let store = s.log_api.log.store().unwrap();
    (0..3).map(|i| store.entry(i).unwrap().unwrap()).collect()
}

async fn monitor_fake(tree: Vec<Vec<u8>>, bundle: Vec<Vec<u8>>) -> (Run, Vec<Value>) {
    let (url, vkey) = fake_log(Arc::new(Mutex::new((tree, bundle)))).await;
    let dir = tempfile::tempdir().unwrap();
    fake_policy(dir.path(), &vkey);
    let r = monitor_log(&url, dir.path(), &[]).await;
    let alerts = alerts_jsonl(dir.path());
    (r, alerts)
}

#[tokio::test]
async fn decisions_by_unenrolled_or_revoked_credentials_and_bad_entries_are_alerts() {
    let e = real_entries().await;
    let (enrol, decision, revocation) = (e[0].clone(), e[1].clone(), e[2].clone());

    // As logged: nothing wrong.
    let (r, _) = monitor_fake(e.clone(), e.clone()).await;
    assert_eq!((r.code, r.kinds().len()), (0, 0));

    // The decision before its enrolment: it names index 0, which is not an enrolment.
    let (r, a) = monitor_fake(vec![decision.clone()], vec![decision.clone()]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.kinds(), ["decision-without-enrolment"]);
    assert_eq!(a[0]["index"], 0);
    assert_eq!(a[0]["approver_id"], "apv_alice");

    // The decision after the revocation of its credential, then bytes that are no entry.
    let tree = vec![
        enrol,
        revocation,
        decision,
        b"\x01\x09not an entry".to_vec(),
    ];
    let (r, a) = monitor_fake(tree.clone(), tree).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.kinds(), ["decision-by-revoked-credential", "bad-entry"]);
    assert_eq!(
        (a[0]["index"].as_u64(), a[1]["index"].as_u64()),
        (Some(2), Some(3))
    );
}

#[tokio::test]
async fn entries_the_checkpoint_does_not_commit_to_are_not_believed() {
    let e = real_entries().await;
    // The tree holds the enrolment and the decision; the bundle serves a revocation instead of
    // the decision. Nothing of the bundle may be reported: only the mismatch.
    let (r, a) = monitor_fake(
        vec![e[0].clone(), e[1].clone()],
        vec![e[0].clone(), e[2].clone()],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.kinds(), ["inconsistent-checkpoint"]);
    assert!(r.stderr.contains("entry bundle 0"), "{}", r.stderr);
    assert_eq!(a.len(), 1);
}

#[tokio::test]
async fn a_log_of_several_bundles_is_followed_across_runs_through_upper_tiles() {
    let e = real_entries().await;
    // 300 enrolments, then 70 000 more: partial bundles, full ones, and proofs whose hashes
    // come from level 1 and level 2 tiles.
    let entries: FakeEntries = Arc::new(Mutex::new((
        vec![e[0].clone(); 300],
        vec![e[0].clone(); 300],
    )));
    let (url, vkey) = fake_log(entries.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    fake_policy(dir.path(), &vkey);
    let r = monitor_log(&url, dir.path(), &["--verbose"]).await;
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("tree size 300, 300 entries read"),
        "{}",
        r.stderr
    );

    *entries.lock().unwrap() = (vec![e[0].clone(); 70_300], vec![e[0].clone(); 70_300]);
    let r = monitor_log(
        &url,
        dir.path(),
        &["--verbose", "--watch-approver", "apv_nobody"],
    )
    .await;
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("tree size 70300, 70000 entries read"),
        "{}",
        r.stderr
    );
    let st = state_json(dir.path());
    assert_eq!(st["entries_read"], 70_300);
    assert_eq!(
        st["peaks"].as_array().unwrap().len(),
        70_300u64.count_ones() as usize
    );

    // The same size with another history: the stored root no longer matches.
    let mut other = vec![e[0].clone(); 70_300];
    other[5] = e[1].clone();
    *entries.lock().unwrap() = (other.clone(), other);
    let r = monitor_log(&url, dir.path(), &[]).await;
    assert_eq!(
        (r.code, r.kinds()),
        (1, vec!["inconsistent-checkpoint".to_owned()])
    );
}

#[tokio::test]
async fn without_once_it_follows_the_log_until_sigterm() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    policy(&s, dir.path(), "");
    let child = std::process::Command::new(bin())
        .args([
            "monitor",
            "--interval",
            "100ms",
            "--log",
            &s.url,
            "--policy",
        ])
        .arg(dir.path().join("policy"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .args(["--watch-approver", "apv_dave"])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It picks up an enrolment made while it runs.
    s.add_approver("apv_dave", 121).await;
    let mut found = false;
    for _ in 0..100 {
        if alerts_jsonl(dir.path())
            .iter()
            .any(|a| a["kind"] == "watched-enrolment")
        {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(found, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("ALERT watched-enrolment").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test]
async fn a_checkpoint_short_of_the_quorum_is_a_policy_failure_and_is_not_stored() {
    let s = Server::start().await;
    s.add_approver("apv_one", 131).await;
    let dir = tempfile::tempdir().unwrap();
    let wkey = VerifierKey::cosignature("witness.test/q", [7; 32]).unwrap();
    policy(&s, dir.path(), &format!("witness q {}\n", wkey.to_vkey()));
    // `policy` ends with `quorum none`; this policy needs witness q.
    let text = std::fs::read_to_string(dir.path().join("policy")).unwrap();
    std::fs::write(
        dir.path().join("policy"),
        text.replace("quorum none", "quorum q"),
    )
    .unwrap();
    let r = monitor(&s, dir.path(), &[]).await;
    assert_eq!((r.code, r.kinds()), (1, vec!["policy-failure".to_owned()]));
    assert!(r.stderr.contains("quorum"), "{}", r.stderr);
    let a = alerts_jsonl(dir.path());
    assert!(a[0]["checkpoint"]
        .as_str()
        .unwrap()
        .starts_with("flow.example/log\n"));
    let st = state_json(dir.path());
    assert_eq!(
        (st["checkpoint"].is_null(), st["entries_read"].as_u64()),
        (true, Some(0))
    );
}

#[tokio::test]
async fn a_monitor_killed_mid_run_resumes_without_losing_or_repeating_a_report() {
    let e = real_entries().await;
    // 20 000 enrolments of a watched approver: one alert each, committed bundle by bundle.
    let n = 20_000usize;
    let entries: FakeEntries = Arc::new(Mutex::new((vec![e[0].clone(); n], vec![e[0].clone(); n])));
    let (url, vkey) = fake_log(entries).await;
    let dir = tempfile::tempdir().unwrap();
    fake_policy(dir.path(), &vkey);
    let mut child = std::process::Command::new(bin())
        .args(["monitor", "--once", "--log", &url, "--policy"])
        .arg(dir.path().join("policy"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .args(["--watch-approver", "apv_alice"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some bundles are committed, before the end.
    let alerts = dir.path().join("state/alerts.jsonl");
    for _ in 0..400 {
        if std::fs::metadata(&alerts).is_ok_and(|m| m.len() > 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = state_json(dir.path())["entries_read"].as_u64().unwrap();
    eprintln!("killed after {before} entries");

    let r = monitor_log(&url, dir.path(), &["--watch-approver", "apv_alice"]).await;
    assert_eq!(r.code, 1);
    let a = alerts_jsonl(dir.path());
    let mut indices: Vec<u64> = a.iter().map(|x| x["index"].as_u64().unwrap()).collect();
    assert_eq!(indices.len(), n, "each enrolment reported exactly once");
    indices.sort_unstable();
    assert!(indices.iter().enumerate().all(|(i, x)| i as u64 == *x));
    let table = std::fs::read_to_string(dir.path().join("state/enrolments.jsonl")).unwrap();
    assert_eq!(table.lines().count(), n);
    assert_eq!(state_json(dir.path())["entries_read"], n as u64);
}
