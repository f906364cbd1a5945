//! Witnessing on the shared driver, with the real binary against the real engines (PostgreSQL
//! and SeaweedFS, started by scripts/test.sh) and two in-test tlog-witnesses: two instances
//! with one `--witness-policy` in quorum mode. Only the integrator sends to the witnesses (no
//! 409 from a second sender); an append made at the other instance is answered with a
//! checkpoint the policy's quorum cosigned; both instances and the bucket (read anonymously)
//! serve the cosigned checkpoint; with a witness answering 503 an append is answered 503
//! `not_witnessed` and the next, once it is back, is cosigned; when the integrator is killed
//! (SIGKILL) the other takes over and goes on from where the witnesses are. With the approval
//! front end, a decision made while a witness is down gives no token at either instance until
//! the quorum cosigned it.

use std::time::Duration;

use countersign_verifier::{verify_checkpoint_with_policy, Policy};
use serde_json::{json, Value};

use crate::fake_witness::{Behaviour, FakeWitness};
use crate::pg_support::TestDb;
use crate::process::{free_port, Process};
use crate::witnessing::until;

const ORIGIN: &str = "witnessed.shared.test/log";

async fn get_text(http: &reqwest::Client, url: &str) -> (u16, String) {
    match http.get(url).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

async fn leader(http: &reqwest::Client, p: &Process) -> bool {
    let Ok(r) = http.get(format!("{}/healthz", p.url)).send().await else {
        return false;
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["integrator"]["leader"] == json!(true)
}

/// Appends an enrolment of a fresh passkey at `p` (as the admin): status and body.
async fn append(http: &reqwest::Client, p: &Process, token: &str, n: u64) -> (u16, Value) {
    let pk = crate::log_common::passkey(1000 + n);
    let r = http
        .post(format!("{}/v1/log/enrolments", p.url))
        .bearer_auth(token)
        .json(&crate::log_common::enrolment_body(
            &pk,
            &format!("approver-{n}"),
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// The size of the checkpoint `note` if the policy's quorum cosigned it.
fn cosigned_size(note: &str, policy: &Policy) -> Option<u64> {
    verify_checkpoint_with_policy(note.as_bytes(), policy)
        .ok()
        .map(|c| c.checkpoint.size)
}

/// A new data directory `dir` (made by a first embedded start) and two fake witnesses of its
/// log (keys from `seed` and `seed + 1`) with a policy in `dir`'s parent that needs both: the
/// admin token, the witnesses, the policy and its file.
async fn witnessed_data_dir(
    http: &reqwest::Client,
    dir: &std::path::Path,
    seed: u8,
) -> (String, FakeWitness, FakeWitness, Policy, std::path::PathBuf) {
    let mut first = Process::spawn(dir, free_port(), &["--log-only", "--origin", ORIGIN]);
    first.wait_ready(http).await;
    first.terminate();
    let log_vkey = first.read("log.vkey");
    let log_key = countersign_verifier::VerifierKey::parse(&log_vkey).unwrap();
    let w1 = FakeWitness::start("w1.test", seed, &log_key).await;
    let w2 = FakeWitness::start("w2.test", seed + 1, &log_key).await;
    let policy_text = format!(
        "log {log_vkey}\n{}{}group both all w1 w2\nquorum both\n",
        w1.policy_line("w1"),
        w2.policy_line("w2")
    );
    let policy = Policy::parse(policy_text.as_bytes()).unwrap();
    let policy_file = dir.parent().unwrap().join("witnesses.policy");
    std::fs::write(&policy_file, &policy_text).unwrap();
    (first.read("admin.token"), w1, w2, policy, policy_file)
}

/// Two instances (from copies of one data directory) on a new database and bucket prefix (`None`
/// without the engines, outside CI), with one witness policy in quorum mode naming two fake
/// witnesses (keys from `seed` and `seed + 1`) that must both cosign, and the arguments
/// `extra`.
struct Witnessed {
    instances: Vec<Process>,
    w1: FakeWitness,
    w2: FakeWitness,
    policy: Policy,
    admin: String,
    /// The instance that integrates, and the other.
    leader: usize,
    other: usize,
    /// The bucket's URL.
    tiles: String,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn witnessed_instances(
    http: &reqwest::Client,
    tag: &str,
    seed: u8,
    extra: &[&str],
) -> Option<Witnessed> {
    let (Some(db), Some(tiles)) = (TestDb::create().await, crate::s3_support::bucket_url(tag))
    else {
        return None;
    };
    let tmp = tempfile::tempdir().unwrap();
    // One data directory (the log's keys), copied to each instance.
    let made = tmp.path().join("made");
    let (admin, w1, w2, policy, policy_file) = witnessed_data_dir(http, &made, seed).await;
    let mut args = vec![
        "--database",
        &db.url,
        "--tiles",
        &tiles,
        "--rp-id",
        crate::common::RP_ID,
        "--allowed-origin",
        crate::common::ORIGIN,
        "--witness-policy",
        policy_file.to_str().unwrap(),
        "--witness-interval",
        "100ms",
        "--witness-mode",
        "quorum",
    ];
    args.extend_from_slice(extra);
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&made).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_file() {
                std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
            }
        }
        let p = Process::spawn(&dir, free_port(), &args);
        p.wait_ready(http).await;
        instances.push(p);
    }
    until("one instance integrates", || async {
        leader(http, &instances[0]).await || leader(http, &instances[1]).await
    })
    .await;
    let li = usize::from(!leader(http, &instances[0]).await);
    Some(Witnessed {
        instances,
        w1,
        w2,
        policy,
        admin,
        leader: li,
        other: 1 - li,
        tiles,
        _db: db,
        _dir: tmp,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_witness_through_the_integrator_and_fail_over() {
    let http = reqwest::Client::new();
    let Some(mut w) = witnessed_instances(
        &http,
        "witnessed",
        41,
        &["--log-only", "--witness-quorum-timeout", "4s"],
    )
    .await
    else {
        return;
    };
    let (li, other) = (w.leader, w.other);

    // Appended at the instance that does not integrate: answered with a checkpoint the quorum
    // cosigned, covering it.
    let (status, v) = append(&http, &w.instances[other], &w.admin, 0).await;
    assert_eq!(status, 201, "{v}");
    let index = v["index"].as_u64().unwrap();
    let size = cosigned_size(v["checkpoint"].as_str().unwrap(), &w.policy)
        .unwrap_or_else(|| panic!("the answer's checkpoint is not cosigned: {v}"));
    assert!(size > index);
    let mut last = index;
    for n in 1..6 {
        let (status, v) = append(&http, &w.instances[n as usize % 2], &w.admin, n).await;
        assert_eq!(status, 201, "{v}");
        assert!(cosigned_size(v["checkpoint"].as_str().unwrap(), &w.policy).is_some());
        last = v["index"].as_u64().unwrap();
    }
    let size = last + 1;
    // Both instances serve the cosigned checkpoint, and so does the bucket, read anonymously.
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let bucket_checkpoint = format!(
        "{endpoint}/{}/checkpoint",
        w.tiles.strip_prefix("s3://").unwrap()
    );
    until(
        "the instances and the bucket serve the cosigned checkpoint",
        || async {
            let mut all = true;
            for url in [
                format!("{}/checkpoint", w.instances[0].url),
                format!("{}/checkpoint", w.instances[1].url),
                bucket_checkpoint.clone(),
            ] {
                let (st, note) = get_text(&http, &url).await;
                all &= st == 200 && cosigned_size(&note, &w.policy) == Some(size);
            }
            all
        },
    )
    .await;
    // Nothing but the integrator sent: a second sender would have sent each checkpoint
    // again (a repeat) or from a stale size (a 409).
    for witness in [&w.w1, &w.w2] {
        let (requests, conflicts) = witness.counts();
        assert!(requests > 0);
        assert_eq!(conflicts, 0, "a witness was sent conflicting sizes");
        assert_eq!(
            witness.repeats(),
            0,
            "a witness was sent a checkpoint it held"
        );
        assert_eq!(witness.size(), size);
    }

    // A witness that does not answer: the quorum cannot be met, the append is logged but
    // answered 503 not_witnessed; once it is back the next one is cosigned (with both).
    w.w2.set(Behaviour::Status(503));
    let (status, v) = append(&http, &w.instances[other], &w.admin, 100).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "not_witnessed", "{v}");
    w.w2.set(Behaviour::Honest);
    let (status, v) = append(&http, &w.instances[other], &w.admin, 101).await;
    assert_eq!(status, 201, "{v}");
    let covered = cosigned_size(v["checkpoint"].as_str().unwrap(), &w.policy).unwrap();
    assert_eq!(covered, v["index"].as_u64().unwrap() + 1);

    // The integrator dies; the other takes over and goes on from where the witnesses are.
    w.instances[li].kill();
    until("the other instance integrates", || {
        leader(&http, &w.instances[other])
    })
    .await;
    let mut last = 0;
    for n in 200..203 {
        let (status, v) = append(&http, &w.instances[other], &w.admin, n).await;
        assert_eq!(status, 201, "{v}");
        assert!(cosigned_size(v["checkpoint"].as_str().unwrap(), &w.policy).is_some());
        last = v["index"].as_u64().unwrap();
    }
    let size = last + 1;
    until("the witnesses cosigned the last checkpoint", || async {
        w.w1.size() == size && w.w2.size() == size
    })
    .await;
    let (st, note) = get_text(&http, &format!("{}/checkpoint", w.instances[other].url)).await;
    assert_eq!(
        (st, cosigned_size(&note, &w.policy)),
        (200, Some(size)),
        "{note}"
    );
    // The bucket's checkpoint is cosigned again by the new integrator.
    until("the bucket serves the last cosigned checkpoint", || async {
        let (st, note) = get_text(&http, &bucket_checkpoint).await;
        st == 200 && cosigned_size(&note, &w.policy) == Some(size)
    })
    .await;
    w.instances[other].terminate();
    w.w1.stop();
    w.w2.stop();
}

/// The approval front end on two instances in quorum mode: a decision made at the instance that
/// does not integrate, while one witness is down, gives no token at either instance; once the
/// witness is back the token is released at both, and the evidence (from either) carries a
/// checkpoint the quorum cosigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_wait_for_the_quorum_at_every_instance() {
    use crate::common::{Api, Client, ORIGIN as RP_ORIGIN};
    let http = reqwest::Client::new();
    let Some(mut w) = witnessed_instances(
        &http,
        "witnessed-ciba",
        43,
        &[
            "--public-url",
            RP_ORIGIN,
            "--poll-interval",
            "1",
            "--witness-quorum-timeout",
            "60s",
        ],
    )
    .await
    else {
        return;
    };
    let (li, other) = (w.leader, w.other);
    let api = Api::of(&w.instances[other]);
    let client = api.add_client("agent-q", "poll", None).await;
    // The same client, polling the integrating instance.
    let at_leader = Client {
        id: client.id.clone(),
        secret: client.secret.clone(),
        url: w.instances[li].url.clone(),
        http: http.clone(),
    };
    let alice = api.add_approver("apv_q", 51).await;
    let auth_req_id = client.ask("apv_q", &[("requested_expiry", "120")]).await;
    w.w2.set(Behaviour::Status(503));
    let request_id = alice.only_request().await;
    let receipt = alice.decide(&request_id, "approve").await;
    let index = receipt["log_index"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for c in [&client, &at_leader] {
        let (st, v) = c.token(&auth_req_id).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (400, Some("authorization_pending")),
            "a token before the quorum cosigned the decision: {v}"
        );
    }
    let (st, body) = client.evidence(&auth_req_id, None).await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("not_witnessed"), "{body}");

    // The witness returns: both instances release the token (it is issued once; the second
    // poll gets the answer for a token already fetched), and the evidence is cosigned.
    w.w2.set(Behaviour::Honest);
    let start = std::time::Instant::now();
    let tokens = loop {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (st, v) = at_leader.token(&auth_req_id).await;
        if st == 200 {
            break v;
        }
        assert_eq!(v["error"], "authorization_pending", "{v}");
        assert!(start.elapsed() < Duration::from_secs(30), "no token: {v}");
    };
    assert!(tokens["access_token"].is_string(), "{tokens}");
    for c in [&client, &at_leader] {
        let (st, body) = c.evidence(&auth_req_id, None).await;
        assert_eq!(st, 200, "{body}");
        let bundle: Value = serde_json::from_str(&body).unwrap();
        let size = cosigned_size(bundle["checkpoint"].as_str().unwrap(), &w.policy)
            .unwrap_or_else(|| panic!("evidence against an uncosigned checkpoint: {body}"));
        assert!(size > index);
    }
    for p in &mut w.instances {
        p.terminate();
    }
    w.w1.stop();
    w.w2.stop();
}

/// A witnessed embedded log moved with `countersign migrate`: the witnesses' records go with it,
/// so the shared instance serves the cosignatures gathered before the move at once, even with
/// both witnesses down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_moved_log_keeps_its_cosignatures() {
    let (Some(db), Some(tiles)) = (
        TestDb::create().await,
        crate::s3_support::bucket_url("witnessed-moved"),
    ) else {
        return;
    };
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (admin, w1, w2, policy, policy_file) = witnessed_data_dir(&http, &data, 45).await;
    let witnessed = [
        "--log-only",
        "--rp-id",
        crate::common::RP_ID,
        "--allowed-origin",
        crate::common::ORIGIN,
        "--witness-policy",
        policy_file.to_str().unwrap(),
        "--witness-interval",
        "100ms",
    ];
    // The embedded log, witnessed: three enrolments, cosigned by both.
    let embedded = Process::spawn(&data, free_port(), &witnessed);
    embedded.wait_ready(&http).await;
    for n in 0..3 {
        let (status, v) = append(&http, &embedded, &admin, 300 + n).await;
        assert_eq!(status, 201, "{v}");
    }
    let url = format!("{}/checkpoint", embedded.url);
    until("the embedded log's checkpoint of 3 is cosigned", || async {
        let (st, note) = get_text(&http, &url).await;
        st == 200 && cosigned_size(&note, &policy) == Some(3)
    })
    .await;
    let mut embedded = embedded;
    embedded.terminate();

    let (ok, out, err) = crate::shared_driver::migrate(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--database",
        &db.url,
        "--tiles",
        &tiles,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("2 witness record(s) copied"), "{out}");
    // Both witnesses down: what the shared instance serves can only come from the records.
    w1.set(Behaviour::Status(503));
    w2.set(Behaviour::Status(503));
    let mut args = witnessed.to_vec();
    args.extend(["--database", &db.url, "--tiles", &tiles]);
    let mut shared = Process::spawn(&data, free_port(), &args);
    shared.wait_ready(&http).await;
    let (st, note) = get_text(&http, &format!("{}/checkpoint", shared.url)).await;
    assert_eq!(
        (st, cosigned_size(&note, &policy)),
        (200, Some(3)),
        "the moved log's cosignatures are not served: {note}"
    );
    shared.terminate();
    w1.stop();
    w2.stop();
}
