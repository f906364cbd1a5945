//! The binary with witnesses: `serve --witness-policy` gets its checkpoints cosigned by fake
//! tlog-witnesses, refuses an unusable policy, and in quorum mode holds tokens back until the
//! witnesses' quorum cosigned the decision's checkpoint; evidence carries the cosignatures.

use std::time::{Duration, Instant};

use countersign_log::{WitnessConfig, WitnessMode};
use countersign_verifier::{verify_checkpoint_with_policy, Policy, TlogProof};
use serde_json::Value;

use crate::common::Server;
use crate::fake_witness::{Behaviour, FakeWitness};
use crate::process::{free_port, Process};

fn policy(log_vkey: &str, w1: &FakeWitness, w2: &FakeWitness) -> String {
    format!(
        "log {log_vkey}\n{}{}group both all w1 w2\nquorum both\n",
        w1.policy_line("w1"),
        w2.policy_line("w2")
    )
}

async fn get_text(http: &reqwest::Client, url: &str) -> (u16, String) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub(crate) async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut f: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_serve_flag_gets_checkpoints_cosigned() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = reqwest::Client::new();
    // A first start makes the log key the witnesses are configured with.
    let mut first = Process::spawn(&data, free_port(), &["--log-only"]);
    first.wait_ready(&http).await;
    let log_vkey = first.read("log.vkey");
    first.terminate();
    let log_key = countersign_verifier::VerifierKey::parse(&log_vkey).unwrap();
    let w1 = FakeWitness::start("w1.test", 21, &log_key).await;
    let w2 = FakeWitness::start("w2.test", 22, &log_key).await;
    let policy_text = policy(&log_vkey, &w1, &w2);
    let policy_file = dir.path().join("witnesses.policy");
    std::fs::write(&policy_file, &policy_text).unwrap();
    let p = Policy::parse(policy_text.as_bytes()).unwrap();
    let mut server = Process::spawn(
        &data,
        free_port(),
        &[
            "--log-only",
            "--witness-policy",
            policy_file.to_str().unwrap(),
            "--witness-interval",
            "100ms",
        ],
    );
    server.wait_ready(&http).await;
    let url = format!("{}/checkpoint", server.url);
    until("/checkpoint satisfies the 2-of-2 policy", || async {
        let (st, note) = get_text(&http, &url).await;
        st == 200 && verify_checkpoint_with_policy(note.as_bytes(), &p).is_ok()
    })
    .await;
    let (_, metrics) = get_text(&http, &format!("{}/metrics", server.url)).await;
    assert!(
        metrics.contains("countersign_witness_cosign_latency_seconds_count"),
        "{metrics}"
    );
    server.terminate();
    w1.stop();
    w2.stop();
}

#[test]
fn witness_serve_refuses_an_unusable_policy() {
    let dir = tempfile::tempdir().unwrap();
    let k = countersign_verifier::VerifierKey::cosignature("w.test", [1; 32])
        .unwrap()
        .to_vkey();
    for (policy, words) in [
        (format!("witness w {k}\nquorum w\n"), "has no URL"),
        ("witness w nonsense\n".to_owned(), "policy line 1"),
    ] {
        let file = dir.path().join("p.policy");
        std::fs::write(&file, policy).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args([
                "serve",
                "--log-only",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .arg("--witness-policy")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--witness-policy") && err.contains(words),
            "{err}"
        );
        assert!(
            !dir.path().join("data").exists(),
            "a refused start leaves no data directory"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_quorum_mode_holds_tokens_until_the_witnesses_return() {
    let s = Server::start().await;
    let w1 = FakeWitness::start("w1.test", 23, &s.vkey).await;
    let w2 = FakeWitness::start("w2.test", 24, &s.vkey).await;
    let policy_text = policy(&s.vkey.to_vkey(), &w1, &w2);
    let p = Policy::parse(policy_text.as_bytes()).unwrap();
    let mut cfg = WitnessConfig::from_policy(policy_text.as_bytes()).unwrap();
    cfg.interval = Duration::from_millis(50);
    cfg.mode = WitnessMode::Quorum;
    cfg.quorum_timeout = Duration::from_secs(60);
    s.log_api.log.start_witnessing(cfg).await.unwrap();
    let client = s.add_client("agent-w", "poll", None).await;
    let alice = s.add_approver("apv_w", 31).await;
    let auth_req_id = client.ask("apv_w", &[("requested_expiry", "120")]).await;
    // One witness down when the approver decides.
    w2.set(Behaviour::Status(503));
    let request_id = alice.only_request().await;
    let receipt = alice.decide(&request_id, "approve").await;
    let index = receipt["log_index"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, v) = client.token(&auth_req_id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("authorization_pending")),
        "{v}"
    );
    assert!(!s.log_api.log.quorum_covers(index));
    // No evidence yet either (it would be against an uncosigned checkpoint), while the public
    // log page shows the witnessed tree.
    let (st, body) = client.evidence(&auth_req_id, None).await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("not_witnessed"), "{body}");
    let (st, page) = get_text(&s.http, &format!("{}/log", s.url)).await;
    assert_eq!(st, 200, "{page}");
    // The witness returns: the tokens are released, and the evidence carries the cosigned
    // checkpoint, in JSON and as a tlog-proof.
    w2.set(Behaviour::Honest);
    until("the quorum covers the decision", || async {
        s.log_api.log.quorum_covers(index)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, tokens) = client.token(&auth_req_id).await;
    assert_eq!(st, 200, "{tokens}");
    let (st, body) = client.evidence(&auth_req_id, None).await;
    assert_eq!(st, 200, "{body}");
    let bundle: Value = serde_json::from_str(&body).unwrap();
    let note = bundle["checkpoint"].as_str().unwrap();
    let cp = verify_checkpoint_with_policy(note.as_bytes(), &p).unwrap();
    assert!(cp.checkpoint.size > index);
    let (st, proof) = client.evidence(&auth_req_id, Some("tlog-proof")).await;
    assert_eq!(st, 200, "{proof}");
    let proof = TlogProof::parse(&proof).unwrap();
    assert!(verify_checkpoint_with_policy(proof.checkpoint.as_bytes(), &p).is_ok());
    w1.stop();
    w2.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_quorum_mode_holds_pushed_tokens_until_the_witnesses_return() {
    let s = Server::start().await;
    let w1 = FakeWitness::start("w1.test", 25, &s.vkey).await;
    let w2 = FakeWitness::start("w2.test", 26, &s.vkey).await;
    let policy_text = policy(&s.vkey.to_vkey(), &w1, &w2);
    let p = Policy::parse(policy_text.as_bytes()).unwrap();
    let mut cfg = WitnessConfig::from_policy(policy_text.as_bytes()).unwrap();
    cfg.interval = Duration::from_millis(50);
    cfg.mode = WitnessMode::Quorum;
    cfg.quorum_timeout = Duration::from_secs(60);
    s.log_api.log.start_witnessing(cfg).await.unwrap();
    let rx = crate::common::Receiver::start().await;
    let client = s.add_client("agent-push-w", "push", Some(&rx.url)).await;
    let alice = s.add_approver("apv_pw", 32).await;
    let auth_req_id = client
        .ask("apv_pw", &[("client_notification_token", "push-w")])
        .await;
    w1.set(Behaviour::Status(503));
    let rid = alice.only_request().await;
    let receipt = alice.decide(&rid, "approve").await;
    let index = receipt["log_index"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        rx.got.lock().unwrap().is_empty(),
        "tokens pushed before the quorum"
    );
    w1.set(Behaviour::Honest);
    let (_, body) = rx.wait(1).await;
    assert_eq!(body["auth_req_id"], auth_req_id);
    assert!(body["access_token"].is_string(), "{body}");
    assert!(s.log_api.log.quorum_covers(index));
    let (_, note) = get_text(&s.http, &format!("{}/checkpoint", s.url)).await;
    assert!(
        verify_checkpoint_with_policy(note.as_bytes(), &p)
            .unwrap()
            .checkpoint
            .size
            > index
    );
    w1.stop();
    w2.stop();
}
