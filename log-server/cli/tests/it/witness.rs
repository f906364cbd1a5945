//! `countersign witness`: keygen as a command, and the real `witness serve` SIGKILLed at random
//! moments under a load of add-checkpoint requests for two conflicting branches of one log.
//! Every cosignature returned is collected and checked: never two roots at one size, never a
//! cosignature for a smaller tree after one for a larger (by the order the client saw them),
//! never both branches past their common prefix, and after each restart the witness holds at
//! least the largest size it acknowledged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign_verifier::{Hash, Note, VerifierKey};
use rand::{Rng, SeedableRng};

use crate::process::{free_port, rounds, seed};
use crate::witness_log::TestLog;

const ORIGIN: &str = "log.test/witnessed";
/// The branches share their first leaves; beyond, a witness may follow only one of them.
const COMMON: u64 = 10;
const MAX_SIZE: u64 = 600;

fn countersign() -> Command {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
}

/// A link to the binary under test in `dir`, so that restarts run this build even if a build
/// of another branch replaces `target/debug/countersign` in a shared target directory meanwhile.
fn pinned_binary(dir: &Path) -> PathBuf {
    let to = dir.join("countersign");
    let from = env!("CARGO_BIN_EXE_countersign");
    if std::fs::hard_link(from, &to).is_err() {
        std::fs::copy(from, &to).unwrap();
    }
    let help = Command::new(&to)
        .args(["witness", "--help"])
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "{from} has no witness command: was it replaced by another branch's build?"
    );
    to
}

#[test]
fn keygen_writes_a_private_key_once_and_prints_the_vkey() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("w.key");
    let out = countersign()
        .args([
            "witness",
            "keygen",
            "--name",
            "witness.test/w1",
            "--key-file",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap();
    let v = VerifierKey::parse(vkey.trim_end()).unwrap();
    assert!(v.is_cosignature());
    assert_eq!(v.name(), "witness.test/w1");
    let mode = std::fs::metadata(&key).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let before = std::fs::read(&key).unwrap();
    let again = countersign()
        .args([
            "witness",
            "keygen",
            "--name",
            "witness.test/w1",
            "--key-file",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

/// `countersign witness serve` as a child process; killed if dropped while running.
struct WitnessProcess {
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<PathBuf>,
    port: u16,
    url: String,
}

impl WitnessProcess {
    fn spawn(binary: PathBuf, key: &Path, logs: &Path, data: &Path, port: u16) -> WitnessProcess {
        let mut p = WitnessProcess {
            child: None,
            binary,
            args: vec![key.to_owned(), logs.to_owned(), data.to_owned()],
            port,
            url: format!("http://127.0.0.1:{port}"),
        };
        p.start();
        p
    }

    fn start(&mut self) {
        let child = Command::new(&self.binary)
            .args(["witness", "serve", "--key-file"])
            .arg(&self.args[0])
            .arg("--logs")
            .arg(&self.args[1])
            .arg("--data-dir")
            .arg(&self.args[2])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(self.log_file())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The children's standard error, appended, beside the state directory.
    fn log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.args[2].with_extension("log"))
            .unwrap()
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the witness did not start: {}",
                std::fs::read_to_string(self.args[2].with_extension("log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One cosignature a client received: what it covers and when the client asked and heard.
#[derive(Clone, Debug)]
struct Seen {
    size: u64,
    root: Hash,
    branch: usize,
    sent: Instant,
    received: Instant,
}

/// A client: picks a branch and a larger size at random, starts from the size the witness last
/// told it (409), and records every cosignature after checking it against the witness key.
async fn client(
    url: String,
    branches: Arc<[TestLog; 2]>,
    wkey: VerifierKey,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut known = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let b = rng.gen_range(0..2usize);
        let log = &branches[b];
        let new = (known + rng.gen_range(0..6u64)).clamp(1, MAX_SIZE);
        let body = log.body(known, new);
        let sent = Instant::now();
        let Ok(r) = http
            .post(format!("{url}/add-checkpoint"))
            .body(body)
            .send()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let status = r.status().as_u16();
        let Ok(text) = r.text().await else { continue };
        let received = Instant::now();
        match status {
            200 => {
                let note = format!("{}{text}", log.note(new));
                let v = Note::parse(note.as_bytes())
                    .unwrap()
                    .verify(std::slice::from_ref(&wkey))
                    .unwrap_or_else(|e| panic!("a cosignature that does not verify: {e}"));
                assert!(v[0].timestamp.is_some());
                seen.lock().unwrap().push(Seen {
                    size: new,
                    root: log.root(new),
                    branch: b,
                    sent,
                    received,
                });
                known = new;
            }
            409 => known = text.trim_end().parse().unwrap(),
            422 => {} // the other branch is the witnessed one
            other => panic!("unexpected status {other}: {text}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_never_cosigns_conflicting_roots() {
    let seed = seed("sigkill_under_load_never_cosigns_conflicting_roots");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("witness.key");
    let out = countersign()
        .args([
            "witness",
            "keygen",
            "--name",
            "witness.test/crash",
            "--key-file",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let wkey = VerifierKey::parse(String::from_utf8(out.stdout).unwrap().trim_end()).unwrap();

    let a = TestLog::new(ORIGIN, 7, MAX_SIZE, "branch a");
    let b = a.fork(COMMON, MAX_SIZE, "branch b");
    let logs = dir.path().join("logs.policy");
    std::fs::write(
        &logs,
        format!("# the witnessed log\n{}quorum none\n", a.policy_line()),
    )
    .unwrap();
    let branches = Arc::new([a, b]);
    let port = free_port();
    let mut w = WitnessProcess::spawn(
        pinned_binary(dir.path()),
        &key,
        &logs,
        &dir.path().join("state"),
        port,
    );
    let http = reqwest::Client::new();
    w.wait_ready(&http).await;

    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..6u64)
        .map(|i| {
            tokio::spawn(client(
                w.url.clone(),
                branches.clone(),
                wkey.clone(),
                seen.clone(),
                stop.clone(),
                seed.wrapping_add(i + 1),
            ))
        })
        .collect();
    let mut stored_before = 0;
    for round in 0..rounds(6, 40) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
        w.kill();
        let acknowledged = seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.size)
            .max()
            .unwrap_or(0);
        w.start();
        w.wait_ready(&http).await;
        // The state survived: at least every acknowledged size, never less than before.
        let r = http
            .post(format!("{}/add-checkpoint", w.url))
            .body(branches[0].body(0, 1))
            .send()
            .await
            .unwrap();
        let sent = Instant::now();
        let stored: u64 = match r.status().as_u16() {
            409 => r.text().await.unwrap().trim_end().parse().unwrap(),
            200 => {
                // Nothing was cosigned yet, and now size 1 is.
                seen.lock().unwrap().push(Seen {
                    size: 1,
                    root: branches[0].root(1),
                    branch: 0,
                    sent,
                    received: Instant::now(),
                });
                0
            }
            s => panic!("round {round}: status {s}"),
        };
        assert!(
            stored >= acknowledged && stored >= stored_before,
            "round {round}: stored {stored}, acknowledged {acknowledged}, before {stored_before}"
        );
        stored_before = stored;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let seen = seen.lock().unwrap().clone();
    eprintln!("{} cosignatures collected", seen.len());
    assert!(seen.len() > 20, "too little load: {}", seen.len());
    // Never two roots at one size, and never both branches past the common prefix.
    let mut by_size = std::collections::HashMap::new();
    for s in &seen {
        let root = by_size.entry(s.size).or_insert(s.root);
        assert_eq!(*root, s.root, "two roots cosigned at size {}", s.size);
    }
    let past: std::collections::HashSet<usize> = seen
        .iter()
        .filter(|s| s.size > COMMON)
        .map(|s| s.branch)
        .collect();
    assert!(
        past.len() <= 1,
        "both branches cosigned past the common prefix"
    );
    // Never a smaller tree after a larger: a cosignature heard before another was asked for
    // came first at the witness.
    let mut by_received = seen.clone();
    by_received.sort_by_key(|s| s.received);
    let mut by_sent = seen.clone();
    by_sent.sort_by_key(|s| s.sent);
    let mut largest = 0;
    let mut i = 0;
    for s in &by_sent {
        while i < by_received.len() && by_received[i].received < s.sent {
            largest = largest.max(by_received[i].size);
            i += 1;
        }
        assert!(
            s.size >= largest,
            "a cosignature for size {} after one for size {largest}",
            s.size
        );
    }
    // The monitoring endpoint serves the latest cosigned checkpoint, signed by log and witness.
    let latest = http
        .get(format!("{}/checkpoint/{ORIGIN}", w.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let note = Note::parse(latest.as_bytes()).unwrap();
    note.verify(&[branches[0].vkey()]).unwrap();
    note.verify(std::slice::from_ref(&wkey)).unwrap();
    let c = countersign_verifier::Checkpoint::parse(note.text()).unwrap();
    assert_eq!(by_size.get(&c.size).copied().unwrap_or(c.root), c.root);
    w.kill();
}

#[tokio::test]
async fn serve_refuses_a_bad_logs_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("w.key");
    assert!(countersign()
        .args([
            "witness",
            "keygen",
            "--name",
            "witness.test/w2",
            "--key-file"
        ])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success());
    let log = TestLog::new(ORIGIN, 7, 3, "a");
    let logs = dir.path().join("logs.policy");
    std::fs::write(&logs, log.policy_line()).unwrap();
    let refused = countersign()
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key-file"])
        .arg(&key)
        .arg("--logs")
        .arg(&logs)
        .arg("--data-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("quorum none"), "{err}");

    std::fs::write(&logs, format!("{}quorum none\n", log.policy_line())).unwrap();
    let mut w = WitnessProcess::spawn(
        pinned_binary(dir.path()),
        &key,
        &logs,
        &dir.path().join("state"),
        free_port(),
    );
    let http = reqwest::Client::new();
    w.wait_ready(&http).await;
    let r = http
        .post(format!("{}/add-checkpoint", w.url))
        .body(log.body(0, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut child = w.child.take().unwrap();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}

/// The acceptance run with real witnesses: a log (`start_witnessing`, as `serve
/// --witness-policy` does) and two `countersign witness serve` processes reach a checkpoint both
/// cosigned, which a 2-of-2 policy accepts; one witness's state wiped makes it answer 409 from
/// size 0 and the log recovers through it; a fork signed with the log's own key (another root
/// at the witnessed size, or a larger tree without a valid proof) is refused by both (409, 422)
/// and cosigned by neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_with_two_real_witnesses_recovers_one_wiped_and_no_fork_is_cosigned() {
    use countersign_verifier::{verify_checkpoint_with_policy, Checkpoint, Policy};
    let dir = tempfile::tempdir().unwrap();
    let bin = pinned_binary(dir.path());
    let http = reqwest::Client::new();
    let s = crate::common::Server::start().await;
    let keygen = |name: &str| {
        let file = dir.path().join(format!("{name}.key"));
        let out = Command::new(&bin)
            .args(["witness", "keygen", "--name", name, "--key-file"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success());
        (
            file,
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        )
    };
    let (k1, v1) = keygen("w1.witness.test");
    let (k2, v2) = keygen("w2.witness.test");
    let logs = dir.path().join("logs.policy");
    std::fs::write(&logs, format!("log {}\nquorum none\n", s.vkey.to_vkey())).unwrap();
    let (p1, p2) = (free_port(), free_port());
    let d1 = dir.path().join("w1-data");
    let mut w1 = WitnessProcess::spawn(bin.clone(), &k1, &logs, &d1, p1);
    let w2 = WitnessProcess::spawn(bin.clone(), &k2, &logs, &dir.path().join("w2-data"), p2);
    w1.wait_ready(&http).await;
    w2.wait_ready(&http).await;
    let policy_text = format!(
        "log {}\nwitness w1 {v1} {}\nwitness w2 {v2} {}\ngroup both all w1 w2\nquorum both\n",
        s.vkey.to_vkey(),
        w1.url,
        w2.url
    );
    let policy = Policy::parse(policy_text.as_bytes()).unwrap();
    let mut cfg = countersign_log::WitnessConfig::from_policy(policy_text.as_bytes()).unwrap();
    cfg.interval = Duration::from_millis(50);
    s.log_api.log.start_witnessing(cfg).await.unwrap();
    let checkpoint_url = format!("{}/checkpoint", s.api.url);
    let cosigned_at = |size: u64| {
        let (http, url, policy) = (http.clone(), checkpoint_url.clone(), &policy);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let note = http.get(&url).send().await.unwrap().text().await.unwrap();
                if let Ok(v) = verify_checkpoint_with_policy(note.as_bytes(), policy) {
                    if v.checkpoint.size >= size {
                        return v.checkpoint;
                    }
                }
                assert!(Instant::now() < deadline, "not cosigned at {size}: {note}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    s.add_approver("apv_w1", 41).await;
    s.add_approver("apv_w2", 42).await;
    let first = cosigned_at(s.log_api.log.published().size).await;
    assert!(first.size >= 2);

    // w1 loses its state: it answers the log's next request with 409 and size 0, and the log
    // resends from 0 with a proof from the empty tree.
    w1.kill();
    std::fs::remove_dir_all(&d1).unwrap();
    w1.start();
    w1.wait_ready(&http).await;
    s.add_approver("apv_w3", 43).await;
    let second = cosigned_at(s.log_api.log.published().size).await;
    assert!(second.size > first.size);
    let origin = s.vkey.name().to_owned();
    for w in [&w1, &w2] {
        let r = http
            .get(format!("{}/checkpoint/{origin}", w.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let held = Checkpoint::parse(
            Note::parse(r.text().await.unwrap().as_bytes())
                .unwrap()
                .text(),
        )
        .unwrap();
        assert_eq!(held.size, second.size, "{}", w.url);
    }

    // The fork, signed with the log's key: another root at the size the witnesses hold.
    let signer = s.log_api.log.signer();
    let forked = signer.sign(second.size, Hash([0xee; 32])).unwrap();
    for w in [&w1, &w2] {
        let r = http
            .post(format!("{}/add-checkpoint", w.url))
            .body(crate::witness_log::body_with(second.size, &[], &forked))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{}", w.url);
        assert_eq!(r.text().await.unwrap().trim(), second.size.to_string());
        // A larger forked tree, claimed consistent with a proof that is not one.
        let larger = signer.sign(second.size + 5, Hash([0xef; 32])).unwrap();
        let r = http
            .post(format!("{}/add-checkpoint", w.url))
            .body(crate::witness_log::body_with(
                second.size,
                &[Hash([1; 32]), Hash([2; 32])],
                &larger,
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{}", w.url);
    }
    // The real log goes on being cosigned; the witnesses never held the forked roots.
    s.add_approver("apv_w4", 44).await;
    let third = cosigned_at(s.log_api.log.published().size).await;
    assert_ne!(third.root, Hash([0xee; 32]));
    assert_ne!(third.root, Hash([0xef; 32]));

    // A monitor under the same policy, reading the real witnesses' views: nothing to report.
    let policy_file = dir.path().join("monitor.policy");
    std::fs::write(&policy_file, &policy_text).unwrap();
    let mut monitor = Command::new(&bin);
    monitor
        .args(["monitor", "--once", "--log", &s.api.url, "--policy"])
        .arg(&policy_file)
        .arg("--state")
        .arg(dir.path().join("monitor-state"));
    // Off the async workers: the server under test answers on them.
    let out = tokio::task::spawn_blocking(move || monitor.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
