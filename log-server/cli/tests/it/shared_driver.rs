//! `countersign serve --database … --tiles s3://…` with the real binary against the real
//! engines (PostgreSQL and SeaweedFS, started by scripts/test.sh): instances from copies of one
//! data directory serve one log; an enrolment made at one is decided at another; with three
//! under load, the integrator is killed (SIGKILL) twice in turn and another takes over within
//! 5 s; every acknowledged entry is in the bucket with an inclusion proof against the bucket's
//! checkpoint, and every checkpoint seen is consistent with the last; an instance with another
//! database on the same bucket refuses to start and writes nothing; an embedded log moved with
//! `countersign migrate` signs the same checkpoint on the shared driver.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign_verifier::{
    verify_checkpoint, verify_consistency, verify_inclusion, Checkpoint, Hash, VerifierKey,
};
use serde_json::json;

use crate::log_common::hashes;
use crate::pg_support::TestDb;
use crate::process::{free_port, Process};

const ORIGIN: &str = "shared.test/log";

fn bucket_url() -> Option<String> {
    crate::s3_support::bucket_url("serve")
}

/// The bucket's object `rel`, read anonymously over HTTP as any tile client would.
async fn bucket_get(http: &reqwest::Client, url: &str, rel: &str) -> Option<Vec<u8>> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let path = url.strip_prefix("s3://").unwrap();
    let r = http
        .get(format!("{endpoint}/{path}/{rel}"))
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return None;
    }
    assert!(r.status().is_success(), "{rel}: {}", r.status());
    Some(r.bytes().await.unwrap().to_vec())
}

/// A data directory made by a first embedded start (`serve --log-only`), stopped: its path,
/// admin token and log key.
async fn new_data_dir(http: &reqwest::Client, dir: &Path) -> (PathBuf, String, VerifierKey) {
    let mut first = Process::spawn(dir, free_port(), &["--log-only", "--origin", ORIGIN]);
    first.wait_ready(http).await;
    first.terminate();
    let vkey = VerifierKey::parse(&first.read("log.vkey")).unwrap();
    (dir.to_owned(), first.read("admin.token"), vkey)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn shared_args<'a>(database: &'a str, tiles: &'a str) -> Vec<&'a str> {
    vec![
        "--log-only",
        "--database",
        database,
        "--tiles",
        tiles,
        "--rp-id",
        crate::log_common::RP_ID,
        "--allowed-origin",
        crate::log_common::ORIGIN,
    ]
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> Option<(u16, serde_json::Value)> {
    let r = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

async fn leader(http: &reqwest::Client, p: &Process) -> bool {
    let v: serde_json::Value = http
        .get(format!("{}/healthz", p.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["integrator"]["leader"] == json!(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_serve_one_log_and_survive_the_integrators_death() {
    let (Some(db), Some(tiles)) = (TestDb::create().await, bucket_url()) else {
        return;
    };
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    // One data directory made by an embedded start, copied to each instance.
    let (made, admin, vkey) = new_data_dir(&http, &tmp.path().join("made")).await;
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    copy_dir(&made, &dir_a);
    copy_dir(&made, &dir_b);
    let args = shared_args(&db.url, &tiles);
    let a = Process::spawn(&dir_a, free_port(), &args);
    a.wait_ready(&http).await;
    let b = Process::spawn(&dir_b, free_port(), &args);
    b.wait_ready(&http).await;

    // A submitter made at one instance works at the other; an enrolment made at one is
    // decided at the other.
    let (status, v) = post(
        &http,
        &format!("{}/v1/admin/submitters", a.url),
        &admin,
        &json!({"name": "agent"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{v}");
    let submitter = v["token"].as_str().unwrap().to_owned();
    let mut pk = crate::log_common::passkey(7);
    let (status, v) = post(
        &http,
        &format!("{}/v1/log/enrolments", a.url),
        &admin,
        &crate::log_common::enrolment_body(&pk, "alice"),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{v}");
    let enrol = v["index"].as_u64().unwrap();
    let decision = crate::log_common::signed_decision(&mut pk, "alice", enrol, 1, |_| {});
    let (status, v) = post(
        &http,
        &format!("{}/v1/log/decisions", b.url),
        &submitter,
        &decision,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{v}");
    // The same decision again, at the other instance: its original leaf.
    let (status, again) = post(
        &http,
        &format!("{}/v1/log/decisions", a.url),
        &submitter,
        &decision,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["index"], v["index"]);

    // /metrics: exactly one of them integrates, and each counts what it sequenced.
    let mut leaders = 0;
    for p in [&a, &b] {
        let text = crate::web::get_text(&http, &format!("{}/metrics", p.url)).await;
        let value = |name: &str| -> i64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        };
        leaders += value("countersign_shared_integrator_leader");
        assert!(value("countersign_shared_published_size") >= 2);
        assert_eq!(value("countersign_shared_integration_stopped"), 0);
        value("countersign_shared_sequenced_appends_total");
    }
    assert_eq!(leaders, 1);

    // A third instance joins; load through all three, and the integrator is killed (SIGKILL)
    // twice in turn, each time restarted afterwards: another takes over within 5 s.
    let dir_c = tmp.path().join("c");
    copy_dir(&made, &dir_c);
    let c = Process::spawn(&dir_c, free_port(), &args);
    c.wait_ready(&http).await;
    let mut instances = vec![a, b, c];
    let urls: Arc<Vec<String>> = Arc::new(instances.iter().map(|p| p.url.clone()).collect());
    let acked: Arc<Mutex<Vec<(u64, Hash, Checkpoint)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let (http, admin, vkey, acked, stop, urls) = (
            http.clone(),
            admin.clone(),
            vkey.clone(),
            acked.clone(),
            stop.clone(),
            urls.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut at = t as usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let url = &urls[at % urls.len()];
                let pk = crate::log_common::passkey(1000 + t * 100_000 + n);
                let body = crate::log_common::enrolment_body(&pk, &format!("approver-{t}-{n}"));
                let Some((status, v)) =
                    post(&http, &format!("{url}/v1/log/enrolments"), &admin, &body).await
                else {
                    // That instance was killed: this client goes on at the next one, as
                    // behind a load balancer.
                    at += 1;
                    continue;
                };
                if status != 201 {
                    assert!(
                        status == 503 && v["error"] == "not_published",
                        "{status} {v}"
                    );
                    continue;
                }
                let cp =
                    verify_checkpoint(v["checkpoint"].as_str().unwrap().as_bytes(), &vkey, &[])
                        .unwrap()
                        .checkpoint;
                let leaf = Hash::from_hex(v["leaf_hash"].as_str().unwrap()).unwrap();
                // The proof in the answer verifies against the checkpoint in the answer.
                let proof = hashes(&v["inclusion_proof"]);
                let index = v["index"].as_u64().unwrap();
                verify_inclusion(&leaf, index, cp.size, &proof, &cp.root).unwrap();
                acked.lock().unwrap().push((index, leaf, cp));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for round in 0..2 {
        let mut leader_at = None;
        for (i, p) in instances.iter().enumerate() {
            if leader(&http, p).await {
                leader_at = Some(i);
            }
        }
        let killed = leader_at.expect("one instance integrates");
        let before = acked.lock().unwrap().len();
        instances[killed].kill();
        let killed_at = Instant::now();
        // Appends resume, and another instance integrates, within 5 s of the kill.
        loop {
            let now = acked.lock().unwrap().len();
            let mut taken = false;
            for (i, p) in instances.iter().enumerate() {
                taken |= i != killed && leader(&http, p).await;
            }
            if now > before + 10 && taken {
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(10),
                "round {round}: no failover: {now} acks (before the kill: {before})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let failover = killed_at.elapsed();
        eprintln!(
            "round {round}: another instance integrates and acknowledges {failover:?} after the \
             integrator's kill"
        );
        assert!(failover < Duration::from_secs(5), "{failover:?}");
        instances[killed].restart();
        instances[killed].wait_ready(&http).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let survivor = &instances[0];
    // The bucket, read anonymously: its checkpoint verifies, every checkpoint seen is
    // consistent with it, and every acknowledged entry is in it.
    let note = bucket_get(&http, &tiles, "checkpoint").await.unwrap();
    let last = verify_checkpoint(&note, &vkey, &[]).unwrap().checkpoint;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "{} acks", acked.len());
    for (index, leaf, cp) in &acked {
        assert!(cp.size <= last.size);
        let url = format!(
            "{}/v1/log/proof/inclusion?index={index}&tree_size={}",
            survivor.url, last.size
        );
        let v: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["leaf_hash"].as_str().unwrap(), leaf.to_hex(), "{index}");
        verify_inclusion(
            leaf,
            *index,
            last.size,
            &hashes(&v["inclusion_proof"]),
            &last.root,
        )
        .unwrap_or_else(|e| panic!("entry {index}: {e:?}"));
    }
    for cp in acked
        .iter()
        .map(|(_, _, c)| c)
        .filter(|c| c.size < last.size)
        .take(50)
    {
        let url = format!(
            "{}/v1/log/proof/consistency?first={}&second={}",
            survivor.url, cp.size, last.size
        );
        let v: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        verify_consistency(
            cp.size,
            last.size,
            &cp.root,
            &last.root,
            &hashes(&v["consistency_proof"]),
        )
        .unwrap_or_else(|e| panic!("{} -> {}: {e:?}", cp.size, last.size));
    }

    // An instance with another database on the same bucket: refused, nothing written.
    let other = TestDb::create().await.unwrap();
    let dir_d = tmp.path().join("d");
    copy_dir(&made, &dir_d);
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["serve", "--data-dir"])
        .arg(&dir_d)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(shared_args(&other.url, &tiles))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("not signed by this deployment's database"),
        "{err}"
    );
    assert_eq!(bucket_get(&http, &tiles, "checkpoint").await.unwrap(), note);
    drop(instances);
}

/// `countersign migrate` with `args`: exit status, standard output and standard error.
pub(crate) fn migrate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("migrate")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_embedded_log_moves_to_a_shared_deployment_with_the_same_checkpoint() {
    let (Some(db), Some(tiles)) = (TestDb::create().await, bucket_url()) else {
        return;
    };
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    // An embedded log with enrolments, single and batched decisions and a submitter, and its
    // front end with a client, an approver and one approval made through it.
    let data = tmp.path().join("data");
    let embedded_args = [
        "--public-url",
        crate::common::ORIGIN,
        "--origin",
        ORIGIN,
        "--rp-id",
        crate::log_common::RP_ID,
        "--allowed-origin",
        crate::log_common::ORIGIN,
    ];
    let mut p = Process::spawn(&data, free_port(), &embedded_args);
    p.wait_ready(&http).await;
    let admin = p.read("admin.token");
    let (_, v) = post(
        &http,
        &format!("{}/v1/admin/submitters", p.url),
        &admin,
        &json!({"name": "agent"}),
    )
    .await
    .unwrap();
    let submitter = v["token"].as_str().unwrap().to_owned();
    let mut pks = Vec::new();
    for k in 0..3u64 {
        let pk = crate::log_common::passkey(40 + k);
        let (status, v) = post(
            &http,
            &format!("{}/v1/log/enrolments", p.url),
            &admin,
            &crate::log_common::enrolment_body(&pk, &format!("approver-{k}")),
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{v}");
        pks.push((pk, format!("approver-{k}"), v["index"].as_u64().unwrap()));
    }
    let mut n = 0;
    for (pk, approver, enrol) in &mut pks {
        let decisions: Vec<_> = (0..20)
            .map(|_| {
                n += 1;
                crate::log_common::signed_decision(pk, approver, *enrol, n, |_| {})
            })
            .collect();
        let (status, v) = post(
            &http,
            &format!("{}/v1/log/decisions/batch", p.url),
            &submitter,
            &json!({ "decisions": decisions }),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{v}");
    }
    let api = crate::common::Api::of(&p);
    let mut client = api.add_client("agent-moved", "poll", None).await;
    let mut alice = api.add_approver("apv_moved", 61).await;
    let first_req = client.ask("apv_moved", &[]).await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let (st, _) = client.token(&first_req).await;
    assert_eq!(st, 200);
    let embedded_note = crate::web::get_text(&http, &format!("{}/checkpoint", p.url)).await;
    p.terminate();
    let size: u64 = embedded_note.lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(
        size, 65,
        "63 entries through the log API, an enrolment and a decision"
    );

    // Migrated: every entry, the submitter; the shared log signs the very same checkpoint.
    let data_arg = data.to_str().unwrap();
    let args = [
        "--data-dir",
        data_arg,
        "--database",
        &db.url,
        "--tiles",
        &tiles,
    ];
    let (ok, out, err) = migrate(&args);
    assert!(ok, "{err}");
    assert!(
        out.contains("migrated 65 entries (0 already there), 1 submitter token(s) and "),
        "{out}"
    );
    assert!(out.contains(&embedded_note), "{out}");
    // Again (as after an interruption): everything is found in place, nothing is added.
    let (ok, out, err) = migrate(&args);
    assert!(ok, "{err}");
    assert!(
        out.contains("migrated 65 entries (65 already there)"),
        "{out}"
    );

    // A shared instance on the migrated deployment serves that checkpoint, and the migrated
    // submitter's token appends there.
    let shared = tmp.path().join("shared");
    copy_dir(&data, &shared);
    let mut moved_args: Vec<&str> = shared_args(&db.url, &tiles)
        .into_iter()
        .filter(|a| *a != "--log-only")
        .collect();
    moved_args.extend(["--public-url", crate::common::ORIGIN]);
    let s = Process::spawn(&shared, free_port(), &moved_args);
    s.wait_ready(&http).await;
    let served = crate::web::get_text(&http, &format!("{}/checkpoint", s.url)).await;
    assert_eq!(served, embedded_note);
    assert_eq!(
        bucket_get(&http, &tiles, "checkpoint").await.unwrap(),
        embedded_note.as_bytes()
    );
    let (pk, approver, enrol) = &mut pks[0];
    let d = crate::log_common::signed_decision(pk, approver, *enrol, 1000, |_| {});
    let (status, v) = post(
        &http,
        &format!("{}/v1/log/decisions", s.url),
        &submitter,
        &d,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["index"], 65);

    // The front end's records came along: the client (its secret), the approver (her passkey
    // signs in), the decided request's evidence; a new approval runs on the shared instance.
    client.url = s.url.clone();
    let (st, body) = client.evidence(&first_req, None).await;
    assert_eq!(st, 200, "the migrated decision's evidence: {body}");
    alice.url = s.url.clone();
    alice.sign_in().await;
    let second = client.ask("apv_moved", &[]).await;
    let rid = alice.only_request().await;
    let receipt = alice.decide(&rid, "approve").await;
    assert_eq!(receipt["log_index"], 66);
    let (st, tok) = client.token(&second).await;
    assert_eq!(st, 200, "{tok}");
    drop(s);

    // Another log into the same deployment: refused, naming the key.
    let (other, _, _) = new_data_dir(&http, &tmp.path().join("other")).await;
    let (ok, _, err) = migrate(&[
        "--data-dir",
        other.to_str().unwrap(),
        "--database",
        &db.url,
        "--tiles",
        &tiles,
    ]);
    assert!(!ok);
    assert!(err.contains("belongs to the log"), "{err}");
}

/// A SeaweedFS S3 server of the test's own (scripts/s3-server.sh), which it may pause; stopped
/// when dropped.
struct OwnS3 {
    dir: tempfile::TempDir,
}

impl OwnS3 {
    fn script(cmd: &str, dir: &Path) {
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-server.sh"))
            .arg(cmd)
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "s3-server.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> OwnS3 {
        let s = OwnS3 {
            dir: tempfile::tempdir().unwrap(),
        };
        OwnS3::script("start", s.dir.path());
        s
    }

    /// The `export NAME=VALUE` lines of its env file.
    fn env(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.dir.path().join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Sends `signal` (STOP, CONT) to the server.
    fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.path().join("weed.pid")).unwrap();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), pid.trim()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        // Never paused at exit, then stopped; quietly (this may run while a test fails).
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("weed.pid")) {
            let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
        }
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-server.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_that_stops_answering_fails_appends_closed_and_they_resume() {
    // Where scripts/test.sh runs the shared S3 server, a second one can run too.
    let (Some(db), Some(_)) = (TestDb::create().await, bucket_url()) else {
        return;
    };
    let s3 = OwnS3::start();
    let env = s3.env();
    let var = |name: &str| env.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let tiles = format!("{}/outage", var("COUNTERSIGN_TEST_S3_BUCKET"));
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let (made, admin, vkey) = new_data_dir(&http, &tmp.path().join("made")).await;
    // With the front end: an approval is made while the bucket is away too.
    let mut args: Vec<&str> = shared_args(&db.url, &tiles)
        .into_iter()
        .filter(|a| *a != "--log-only")
        .collect();
    args.extend([
        "--publish-timeout-ms",
        "1500",
        "--poll-interval",
        "1",
        "--public-url",
        crate::common::ORIGIN,
    ]);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = Process::spawn_with_env(&made, free_port(), &args, &env_refs);
    p.wait_ready(&http).await;
    let api = crate::common::Api::of(&p);
    let client = api.add_client("agent-outage", "poll", None).await;
    let alice = api.add_approver("apv_outage", 81).await;
    let asked = client.ask("apv_outage", &[]).await;
    let rid = alice.only_request().await;
    let challenge = alice.challenge(&rid, "approve").await;
    let cred = alice.sign(&challenge, crate::common::ORIGIN);
    let enrol = |n: u64| {
        crate::log_common::enrolment_body(&crate::log_common::passkey(5000 + n), &format!("a-{n}"))
    };
    let url = format!("{}/v1/log/enrolments", p.url);
    let mut acked = Vec::new();
    for n in 0..10 {
        let (status, v) = post(&http, &url, &admin, &enrol(n)).await.unwrap();
        assert_eq!(status, 201, "{v}");
        acked.push((
            v["index"].as_u64().unwrap(),
            v["leaf_hash"].as_str().unwrap().to_owned(),
        ));
    }

    // The bucket stops answering (its server paused): appends are answered 503, nothing
    // acknowledged.
    s3.signal("STOP");
    let (status, v) = post(&http, &url, &admin, &enrol(10)).await.unwrap();
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "not_published", "{v}");
    // A decision too: answered 503, no token; the request is not open again for a second
    // decision while its first waits to be published.
    let (status, v) = alice.finish(&rid, "approve", &cred).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "not_published", "{v}");
    let (status, v) = client.token(&asked).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("authorization_pending")),
        "{v}"
    );
    assert!(
        alice.inbox().await.iter().all(|r| r["status"] != "pending"),
        "reopened"
    );
    // Back: the same request gets its leaf (sequenced meanwhile), published.
    s3.signal("CONT");
    let t = Instant::now();
    let v = loop {
        let (status, v) = post(&http, &url, &admin, &enrol(10)).await.unwrap();
        if status == 200 || status == 201 {
            break v;
        }
        assert_eq!(v["error"], "not_published", "{v}");
        assert!(t.elapsed() < Duration::from_secs(60), "not back: {v}");
    };
    eprintln!(
        "appends acknowledged again {:?} after the bucket came back",
        t.elapsed()
    );
    assert_eq!(
        v["index"], 11,
        "the leaf it was given while the bucket was away"
    );
    acked.push((11, v["leaf_hash"].as_str().unwrap().to_owned()));
    // The decision is finished from the log once published: the token comes, naming it.
    let t = loop {
        let (status, v) = client.token(&asked).await;
        if status == 200 {
            break v;
        }
        assert!(
            v["error"] == "authorization_pending" || v["error"] == "slow_down",
            "{v}"
        );
        assert!(t.elapsed() < Duration::from_secs(60), "no token: {v}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    };
    let (_, claims) = crate::common::verify_jwt(&api, t["access_token"].as_str().unwrap()).await;
    assert_eq!(
        claims["log_index"], 12,
        "the decision sequenced while the bucket was away"
    );

    // Everything acknowledged is in the bucket, read anonymously.
    let endpoint = var("AWS_ENDPOINT_URL");
    let path = tiles.strip_prefix("s3://").unwrap();
    let note = http
        .get(format!("{endpoint}/{path}/checkpoint"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let last = verify_checkpoint(&note, &vkey, &[]).unwrap().checkpoint;
    assert!(last.size >= 13);
    for (index, leaf) in &acked {
        let v: serde_json::Value = http
            .get(format!(
                "{}/v1/log/proof/inclusion?index={index}&tree_size={}",
                p.url, last.size
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["leaf_hash"].as_str().unwrap(), leaf);
        let leaf = Hash::from_hex(leaf).unwrap();
        verify_inclusion(
            &leaf,
            *index,
            last.size,
            &hashes(&v["inclusion_proof"]),
            &last.root,
        )
        .unwrap();
    }
    drop(p);
}

/// The events of the live inbox stream `/approve/events` at `url` with `cookie`, as they come.
async fn live_inbox(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let mut r = http
        .get(format!("{url}/approve/events"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    let _ = tx.send(data.trim().to_owned());
                }
            }
        }
    });
    rx
}

/// `n` instances with the front end on database `db` and bucket `tiles`, from copies of one
/// data directory made under `tmp`, one `--public-url` for all, clean-up every second: the log
/// key and the started instances.
async fn approval_instances(
    http: &reqwest::Client,
    tmp: &Path,
    db: &TestDb,
    tiles: &str,
    n: usize,
) -> (VerifierKey, Vec<Process>) {
    use crate::common::ORIGIN as RP_ORIGIN;
    let (made, _, vkey) = new_data_dir(http, &tmp.join("made")).await;
    let args = vec![
        "--database",
        &db.url,
        "--tiles",
        tiles,
        "--rp-id",
        crate::common::RP_ID,
        "--allowed-origin",
        RP_ORIGIN,
        "--public-url",
        RP_ORIGIN,
        "--cleanup-interval",
        "1",
    ];
    let mut instances = Vec::new();
    for i in 0..n {
        let dir = tmp.join(format!("instance-{i}"));
        copy_dir(&made, &dir);
        let p = Process::spawn(&dir, free_port(), &args);
        p.wait_ready(http).await;
        instances.push(p);
    }
    (vkey, instances)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_run_across_instances() {
    use crate::common::{post_json, verify_jwt, Api, Receiver, B64URL, ORIGIN as RP_ORIGIN};
    use base64::Engine;
    let (Some(db), Some(tiles)) = (
        TestDb::create().await,
        crate::s3_support::bucket_url("ciba"),
    ) else {
        return;
    };
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let (vkey, instances) = approval_instances(&http, tmp.path(), &db, &tiles, 3).await;
    let url = |i: usize| instances[i].url.clone();
    let api = |i: usize| Api::of(&instances[i]);

    // Token keys agreed: every instance publishes the same JWKS.
    let jwks: Vec<serde_json::Value> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(api(i).get_json("/jwks.json").await);
        }
        v
    };
    assert!(jwks.iter().all(|j| *j == jwks[0]), "{jwks:?}");
    // A key rotated at C is published by A and B too.
    let (st, v) = api(2)
        .admin_post("/v1/admin/token-keys/rotate", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let kid = v["kid"].as_str().unwrap().to_owned();
    for i in 0..2 {
        let j = api(i).get_json("/jwks.json").await;
        assert!(
            j["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == json!(kid)),
            "instance {i} does not publish the key rotated at another: {j}"
        );
    }

    // An approver added at A enrols with a ceremony started at C and finished at B.
    let (st, v) = api(0)
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_x", "email": "x@example.com", "name": "X"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let token = v["enrolment_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let mut passkey = countersign_testvectors::SoftPasskey::new(
        countersign_testvectors::Alg::Es256,
        91,
        crate::common::RP_ID,
    );
    let enrol_start = |i: usize| {
        let (http, url, token) = (http.clone(), url(i), token.clone());
        async move {
            let (st, start) = post_json(
                &http,
                &format!("{url}/v1/enrol/start"),
                "",
                "",
                &json!({"token": token}),
            )
            .await;
            assert_eq!(st, 200, "{start}");
            start
        }
    };
    // One ceremony per link, at every instance: a start at C replaces the one started at A
    // before, whose id then finishes nothing, wherever it is sent.
    let replaced = enrol_start(0).await;
    let start = enrol_start(2).await;
    let ch = B64URL
        .decode(replaced["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let (st, v) = post_json(
        &http,
        &format!("{}/v1/enrol/finish", url(1)),
        "",
        "",
        &json!({"ceremony_id": replaced["ceremony_id"], "token": token,
                "credential": passkey.registration_json(&ch, RP_ORIGIN)}),
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_request")),
        "a replaced ceremony finished: {v}"
    );
    let ch = B64URL
        .decode(start["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let (st, v) = post_json(
        &http,
        &format!("{}/v1/enrol/finish", url(1)),
        "",
        "",
        &json!({"ceremony_id": start["ceremony_id"], "token": token,
                "credential": passkey.registration_json(&ch, RP_ORIGIN)}),
    )
    .await;
    assert_eq!(st, 201, "enrolment finished at another instance: {v}");
    let enrolment_index = v["log_index"].as_u64().unwrap();

    // Signed in with a sign-in started at C and finished at A; the same answer replayed at B
    // is refused (a sign-in is good once across instances).
    let (st, start) = post_json(
        &http,
        &format!("{}/v1/session/start", url(2)),
        "",
        "",
        &json!({}),
    )
    .await;
    assert_eq!(st, 200, "{start}");
    let ch = B64URL
        .decode(start["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let a = passkey.assert(&ch, RP_ORIGIN);
    let finish =
        json!({"ceremony_id": start["ceremony_id"], "credential": passkey.assertion_json(&a)});
    let r = http
        .post(format!("{}/v1/session/finish", url(0)))
        .json(&finish)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = r.json::<serde_json::Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let replay = http
        .post(format!("{}/v1/session/finish", url(1)))
        .json(&finish)
        .send()
        .await
        .unwrap();
    assert!(
        replay.status().is_client_error(),
        "a sign-in replayed at another instance: {}",
        replay.status()
    );
    let mut approver = crate::common::Approver {
        passkey: Arc::new(Mutex::new(passkey)),
        cookie: cookie.clone(),
        csrf,
        url: url(1),
        http: http.clone(),
        enrolment_index,
        secure_cookie: false,
    };

    // A ping client added at B; the approver's live inbox open at C.
    let rx = Receiver::start().await;
    let mut client = api(1).add_client("agent-x", "ping", Some(&rx.url)).await;
    let mut live = live_inbox(&http, &url(2), &cookie).await;

    // Created at A: C's live inbox hears of it, B's inbox lists it (the session from A).
    client.url = url(0);
    let (st, v) = client
        .bc_authorize(
            "apv_x",
            &[("client_notification_token", "ping-token-of-agent-x-0001")],
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let auth_req_id = v["auth_req_id"].as_str().unwrap().to_owned();
    let request_id = approver.only_request().await;
    let heard = tokio::time::timeout(Duration::from_secs(10), live.recv())
        .await
        .expect("the live inbox at another instance heard of the new request")
        .unwrap();
    assert_eq!(heard, request_id);

    // Decided with a challenge from B and the answer at C; the token fetched at A... and then
    // again at B and C: the same request everywhere.
    let ch = approver.challenge(&request_id, "approve").await;
    let cred = approver.sign(&ch, RP_ORIGIN);
    approver.url = url(2);
    let (st, receipt) = approver.finish(&request_id, "approve", &cred).await;
    assert_eq!(st, 201, "{receipt}");
    client.url = url(2);
    let (st, tok) = client.token(&auth_req_id).await;
    assert_eq!(st, 200, "{tok}");
    // Verified against the JWKS of A: every instance signs with the keys all publish.
    let (_, at) = verify_jwt(&api(0), tok["access_token"].as_str().unwrap()).await;
    assert_eq!(at["sub"], json!("apv_x"));
    assert_eq!(at["iss"], json!(RP_ORIGIN));
    assert_eq!(at["log_index"], receipt["log_index"]);
    client.url = url(1);
    let (st, again) = client.token(&auth_req_id).await;
    assert!(st >= 400, "tokens are handed out once: {again}");

    // The audit feed, read at B, holds what A, B and C recorded, each event once, in order:
    // the enrolment, the request, the decision, the token.
    let want = [
        "credential.enrolled",
        "request.created",
        "decision.approved",
        "token.issued",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let types = loop {
        let r = http
            .get(format!("{}/v1/audit/events?limit=1000", url(1)))
            .bearer_auth(&api(1).admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        let types: Vec<String> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_owned())
            .collect();
        if types.len() >= want.len() || Instant::now() > deadline {
            break types;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(types, want, "the audit feed across instances");

    // The ping reached the client once, whichever instance decided.
    rx.wait(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rx.got.lock().unwrap().len(),
        1,
        "the ping was delivered once"
    );

    // The evidence of the decision, asked at A, verifies against the bucket's tree.
    client.url = url(0);
    let (st, bundle) = client.evidence(&auth_req_id, None).await;
    assert_eq!(st, 200, "{bundle}");
    let bundle = countersign_verifier::EvidenceBundle::from_json(bundle.as_bytes()).unwrap();
    assert_eq!(
        Some(bundle.decision.index),
        receipt["log_index"].as_u64(),
        "the bundle is of the decision"
    );
    bundle
        .verify(&vkey, &countersign_verifier::BundlePolicy::default())
        .unwrap();

    // Signed out at A: the session ends at every instance.
    let (st, _) = post_json(
        &http,
        &format!("{}/v1/session/logout", url(0)),
        &approver.cookie,
        &approver.csrf,
        &json!({}),
    )
    .await;
    assert!(st < 300, "logout: {st}");
    for i in 0..3 {
        // (The inbox asks for a session: 401 without one.)
        let r = http
            .get(format!("{}/v1/inbox", url(i)))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "the session still works at instance {i}");
    }
}

/// Puts a decided request back in the state an instance that died between the log append and
/// the record update leaves (claimed by `instance`, with the claim of `assertion_key`), in the
/// deployment's database.
async fn rewind_shared(
    store: &countersign_approvals::CibaStore,
    auth_req_id: &str,
    assertion_key: [u8; 32],
    instance: &str,
) {
    use countersign_approvals::store::RequestRecord;
    use countersign_approvals::{CibaStore, Secret};
    let key = CibaStore::request_key(&Secret::new(auth_req_id).sha256());
    let _g = store.lock(&key).await.unwrap();
    let mut r: RequestRecord = store.get(&key).await.unwrap().unwrap();
    let b = crate::common::rewound_to_claimed(&mut r, &key, assertion_key, instance);
    store
        .commit(b, countersign_approvals::store::Durability::Sync)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_claims_of_a_dead_instance_are_finished_by_another() {
    use crate::common::{verify_jwt, Api, ORIGIN as RP_ORIGIN};
    let (Some(db), Some(tiles)) = (
        TestDb::create().await,
        crate::s3_support::bucket_url("claims"),
    ) else {
        return;
    };
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let (_, instances) = approval_instances(&http, tmp.path(), &db, &tiles, 2).await;
    let api = Api::of(&instances[0]);
    let client = api.add_client("agent-claims", "poll", None).await;
    let alice = api.add_approver("apv_claims", 73).await;
    // Three decisions, all logged.
    let mut asked = Vec::new();
    for _ in 0..3 {
        let id = client.ask("apv_claims", &[]).await;
        let rid = alice.only_request().await;
        let ch = alice.challenge(&rid, "approve").await;
        let cred = alice.sign(&ch, RP_ORIGIN);
        let (st, receipt) = alice.finish(&rid, "approve", &cred).await;
        assert_eq!(st, 201, "{receipt}");
        let key = crate::common::assertion_key_of(&cred);
        asked.push((id, rid, key, receipt["log_index"].as_u64().unwrap()));
    }
    // Rewound as if the instances that logged them had died before recording them: the first
    // two by an instance that is gone (one with its real claim, one whose assertion is not in
    // the log), the third by an instance still running (this test's own connection).
    let pg = countersign_log::shared::pg::Db::connect(
        &db.url,
        countersign_log::shared::schema::MIGRATIONS,
    )
    .await
    .unwrap();
    let live = countersign_approvals::CibaStore::shared(pg).await.unwrap();
    let dead = "00000000000000000000000000000dead";
    rewind_shared(&live, &asked[0].0, asked[0].2, dead).await;
    rewind_shared(&live, &asked[1].0, [7u8; 32], dead).await;
    let running = live.instance_id().unwrap().to_owned();
    rewind_shared(&live, &asked[2].0, asked[2].2, &running).await;
    // A stopped instance registered: the housekeeper notices it is gone (and takes up what it
    // owed); the running ones stay registered.
    let gone_key = format!("{}{dead}", countersign_approvals::state::INSTANCE_PREFIX);
    let mut b = countersign_approvals::store::Batch::new();
    b.put(gone_key.clone(), vec![0; 8]);
    live.commit(b, countersign_approvals::store::Durability::Sync)
        .await
        .unwrap();

    // The instance keeping house finishes the first from the log and releases the second
    // (open again); the third is left to its claimant while it runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    let token = |id: String| {
        let client = client.clone();
        async move { client.token(&id).await }
    };
    loop {
        let (st, _) = token(asked[0].0.clone()).await;
        if st == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead instance's claim was not finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while live.get_raw(&gone_key).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the stopped instance is still registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registered = live
        .scan(countersign_approvals::state::INSTANCE_PREFIX, 100)
        .await
        .unwrap();
    assert_eq!(
        registered.len(),
        2,
        "the two running instances stay registered"
    );
    let (st, t) = token(asked[1].0.clone()).await;
    assert_eq!(
        (st, t["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    assert_eq!(
        alice.only_request().await,
        asked[1].1,
        "released: open again"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (st, t) = token(asked[2].0.clone()).await;
    assert_eq!(
        (st, t["error"].as_str()),
        (400, Some("authorization_pending")),
        "a running instance's claim is left to it"
    );
    // Once its claimant is gone, the third is finished too, with its log index.
    drop(live);
    let deadline = Instant::now() + Duration::from_secs(15);
    let t = loop {
        let (st, t) = token(asked[2].0.clone()).await;
        if st == 200 {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the claim was not finished after its claimant died"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, claims) = verify_jwt(&api, t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["log_index"], asked[2].3);
}
