//! The witness client against fake tlog-witnesses: cosigned checkpoints, the 409 path, alerts,
//! quorum-gated appends and restarts.

use std::time::{Duration, Instant};

use countersign_log::{WitnessConfig, WitnessMode};
use countersign_verifier::{verify_checkpoint_with_policy, Entry, Policy, Revocation};
use serde_json::Value;

use crate::common::{passkey, TestLog};
use crate::fake_witness::{Behaviour, FakeWitness};

fn entry(n: u64) -> Vec<u8> {
    Entry::Revocation(Revocation {
        approver_id: "approver-w".into(),
        credential_id: vec![2; 16],
        enrolment_index: 0,
        reason: "lost".into(),
        time_ms: n,
    })
    .encode()
    .unwrap()
}

/// A 2-of-2 policy for `log` over `w1` and `w2`.
fn policy(log: &TestLog, w1: &FakeWitness, w2: &FakeWitness) -> String {
    format!(
        "log {}\n{}{}group both all w1 w2\nquorum both\n",
        log.vkey.to_vkey(),
        w1.policy_line("w1"),
        w2.policy_line("w2")
    )
}

fn config(policy: &str, mode: WitnessMode, quorum_timeout: Duration) -> WitnessConfig {
    let mut c = WitnessConfig::from_policy(policy.as_bytes()).unwrap();
    c.interval = Duration::from_millis(50);
    c.mode = mode;
    c.quorum_timeout = quorum_timeout;
    c.request_timeout = Duration::from_secs(2);
    c
}

/// Two fake witnesses of `log` (seeds `seed` and `seed + 1`) and the 2-of-2 policy over them.
async fn two_witnesses(log: &TestLog, seed: u8) -> (FakeWitness, FakeWitness, String) {
    let w1 = FakeWitness::start("w1.test", seed, &log.vkey).await;
    let w2 = FakeWitness::start("w2.test", seed + 1, &log.vkey).await;
    let text_policy = policy(log, &w1, &w2);
    (w1, w2, text_policy)
}

/// Starts `log`'s witnessing under `policy` ([`config`]).
async fn start(log: &TestLog, policy: &str, mode: WitnessMode, quorum_timeout: Duration) {
    log.state
        .log
        .start_witnessing(config(policy, mode, quorum_timeout))
        .await
        .unwrap();
}

async fn text(log: &TestLog, path: &str) -> (u16, String) {
    let r = log
        .client
        .get(format!("{}{path}", log.url))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls `f` every 20 ms for up to 15 s.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `/checkpoint` is the latest checkpoint and satisfies `policy`.
async fn cosigned_at(log: &TestLog, policy: &Policy, size: u64) -> bool {
    let (status, note) = text(log, "/checkpoint").await;
    status == 200
        && verify_checkpoint_with_policy(note.as_bytes(), policy)
            .is_ok_and(|v| v.checkpoint.size == size)
}

fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_two_witnesses_cosign_the_served_checkpoint() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 1).await;
    let p = Policy::parse(text_policy.as_bytes()).unwrap();
    // Before witnessing starts, the checkpoint carries no cosignature: the policy refuses it.
    assert!(!cosigned_at(&log, &p, 0).await);
    start(
        &log,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    for n in 0..5 {
        log.state.log.append_verified_entry(entry(n)).await.unwrap();
    }
    until("both cosign size 5", || cosigned_at(&log, &p, 5)).await;
    assert_eq!((w1.size(), w2.size()), (5, 5));
    // Each checkpoint was sent once: none sent again to a witness that held it.
    assert_eq!((w1.repeats(), w2.repeats()), (0, 0));
    // The cosigned note also answers `/v1/log/checkpoint`, and appends later on.
    let (_, note) = text(&log, "/v1/log/checkpoint").await;
    assert!(verify_checkpoint_with_policy(note.as_bytes(), &p).is_ok());
    let (_, inclusion) = log.get("/v1/log/proof/inclusion?index=0").await;
    let note = inclusion["checkpoint"].as_str().unwrap();
    assert!(
        verify_checkpoint_with_policy(note.as_bytes(), &p).is_ok(),
        "{inclusion}"
    );
    let (_, metrics) = text(&log, "/metrics").await;
    assert!(metric(&metrics, "countersign_witness_cosign_latency_seconds_count") >= 1.0);
    assert_eq!(
        metric(
            &metrics,
            "countersign_witness_cosigned_size{witness=\"w1\"}"
        ),
        5.0
    );
    let (status, health) = log.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["witnessing"]["witnesses"][0]["status"], "ok");
    // A witness whose state was wiped answers 409 with size 0; the log resends from there.
    w1.wipe();
    let conflicts = w1.counts().1;
    log.state.log.append_verified_entry(entry(5)).await.unwrap();
    until("both cosign size 6 after the wipe", || {
        cosigned_at(&log, &p, 6)
    })
    .await;
    assert!(w1.counts().1 > conflicts, "the wiped witness answered 409");
    assert_eq!(w1.size(), 6);
    w1.stop();
    w2.stop();
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_refusals_alert_in_metrics_and_health() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 3).await;
    let p = Policy::parse(text_policy.as_bytes()).unwrap();
    w2.set(Behaviour::Status(422));
    start(
        &log,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    log.state.log.append_verified_entry(entry(0)).await.unwrap();
    let failures = "countersign_witness_failures_total{witness=\"w2\",kind=\"inconsistent\"}";
    until("the 422 is counted", || async {
        metric(&text(&log, "/metrics").await.1, failures) >= 1.0
    })
    .await;
    let (status, health) = log.get("/healthz").await;
    // Publish mode: a failing witness is an alert, the log stays healthy.
    assert_eq!(status, 200, "{health}");
    let w = &health["witnessing"]["witnesses"][1];
    assert_eq!(w["status"], "failing", "{health}");
    assert_eq!(w["failure"]["kind"], "inconsistent", "{health}");
    assert_eq!(health["witnessing"]["quorum_reachable"], false);
    // Only w1 cosigned: served at once, but short of the quorum.
    until("w1 cosigns size 1", || async {
        text(&log, "/checkpoint").await.1.contains("\n— w1.test ")
    })
    .await;
    let (_, note) = text(&log, "/checkpoint").await;
    assert!(note.starts_with("test.example/log\n1\n"), "{note}");
    assert!(verify_checkpoint_with_policy(note.as_bytes(), &p).is_err());
    // A 403 is a different kind; a witness that is down is a transport failure.
    w2.set(Behaviour::Status(403));
    until("the 403 is counted", || async {
        let m = text(&log, "/metrics").await.1;
        metric(
            &m,
            "countersign_witness_failures_total{witness=\"w2\",kind=\"forbidden\"}",
        ) >= 1.0
    })
    .await;
    // The witness comes back: the alert clears and the checkpoint meets the policy.
    w2.set(Behaviour::Honest);
    until("w2 cosigns again", || cosigned_at(&log, &p, 1)).await;
    until("the health detail clears", || async {
        log.get("/healthz").await.1["witnessing"]["witnesses"][1]["status"] == "ok"
    })
    .await;
    let (_, metrics) = text(&log, "/metrics").await;
    assert_eq!(
        metric(&metrics, "countersign_witness_lag_entries{witness=\"w2\"}"),
        0.0
    );
    w1.stop();
    w2.stop();
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_down_is_a_transport_alert() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 5).await;
    w2.stop();
    start(
        &log,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    until("the refused connection is counted", || async {
        let m = text(&log, "/metrics").await.1;
        metric(
            &m,
            "countersign_witness_failures_total{witness=\"w2\",kind=\"transport\"}",
        ) >= 1.0
    })
    .await;
    w1.stop();
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_quorum_mode_holds_appends_until_the_quorum_cosigns() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 7).await;
    let p = Policy::parse(text_policy.as_bytes()).unwrap();
    start(
        &log,
        &text_policy,
        WitnessMode::Quorum,
        Duration::from_secs(20),
    )
    .await;
    until("the first checkpoint reaches the quorum", || {
        cosigned_at(&log, &p, 0)
    })
    .await;
    // One witness down: an append is logged but held back, and /checkpoint stays behind.
    w2.set(Behaviour::Status(503));
    let pk = passkey(1);
    let (client, url, admin) = (log.client.clone(), log.url.clone(), log.admin.clone());
    let held = tokio::spawn(async move {
        let r = client
            .post(format!("{url}/v1/log/enrolments"))
            .bearer_auth(&admin)
            .json(&crate::common::enrolment_body(&pk, "approver-q"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    until("the entry is committed", || async {
        log.state.log.published().size == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !held.is_finished(),
        "the append was answered without the quorum"
    );
    assert!(
        cosigned_at(&log, &p, 0).await,
        "/checkpoint moved without the quorum"
    );
    let (status, health) = log.get("/healthz").await;
    assert_eq!(
        status, 503,
        "quorum mode with the quorum out of reach: {health}"
    );
    // The witness returns: the append is answered with a checkpoint the policy accepts.
    w2.set(Behaviour::Honest);
    let (status, v) = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 201, "{v}");
    let note = v["checkpoint"].as_str().unwrap();
    let cp = verify_checkpoint_with_policy(note.as_bytes(), &p).unwrap();
    assert_eq!(cp.checkpoint.size, 1);
    assert!(cosigned_at(&log, &p, 1).await);
    w1.stop();
    w2.stop();
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_quorum_timeout_is_a_clear_503() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 9).await;
    w2.set(Behaviour::Status(503));
    start(
        &log,
        &text_policy,
        WitnessMode::Quorum,
        Duration::from_millis(300),
    )
    .await;
    // No checkpoint ever met the quorum: there is none to serve.
    assert_eq!(text(&log, "/checkpoint").await.0, 503);
    let (status, v) = log
        .post(
            "/v1/log/enrolments",
            &log.admin,
            &crate::common::enrolment_body(&passkey(2), "approver-t"),
        )
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "not_witnessed", "{v}");
    let (_, metrics) = text(&log, "/metrics").await;
    assert!(metric(&metrics, "countersign_witness_quorum_timeouts_total") >= 1.0);
    w1.stop();
    w2.stop();
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::start_in(dir, |c| c).await;
    let (w1, w2, text_policy) = two_witnesses(&log, 11).await;
    let p = Policy::parse(text_policy.as_bytes()).unwrap();
    start(
        &log,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    for n in 0..3 {
        log.state.log.append_verified_entry(entry(n)).await.unwrap();
    }
    until("both cosign size 3", || cosigned_at(&log, &p, 3)).await;
    let dir = log.stop_keep().await;
    let requests = (w1.counts().0, w2.counts().0);
    let log = TestLog::start_in(dir, |c| c).await;
    start(
        &log,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    // The gathered cosignatures are served at once from the stored records, without asking.
    assert!(cosigned_at(&log, &p, 3).await);
    assert_eq!((w1.counts().0, w2.counts().0), requests);
    // And the next request starts from the stored size: no 409.
    let conflicts = (w1.counts().1, w2.counts().1);
    log.state.log.append_verified_entry(entry(3)).await.unwrap();
    until("both cosign size 4", || cosigned_at(&log, &p, 4)).await;
    assert_eq!((w1.counts().1, w2.counts().1), conflicts);
    w1.stop();
    w2.stop();
    log.stop().await;
}

#[test]
fn witness_policy_without_url_or_with_another_scheme_is_refused() {
    let k = countersign_verifier::VerifierKey::cosignature("w.test", [1; 32])
        .unwrap()
        .to_vkey();
    let e =
        WitnessConfig::from_policy(format!("witness w {k}\nquorum w\n").as_bytes()).unwrap_err();
    assert!(e.to_string().contains("has no URL"), "{e}");
    for bad in ["w.test", "ftp://w.test", "https://", "http:///path"] {
        let e = WitnessConfig::from_policy(format!("witness w {k} {bad}\nquorum w\n").as_bytes())
            .unwrap_err();
        assert!(e.to_string().contains("https://"), "{bad}: {e}");
    }
    assert!(WitnessConfig::from_policy(
        format!("witness w {k} https://w.test\nquorum w\n").as_bytes()
    )
    .is_ok());
    let e = WitnessConfig::from_policy(b"quorum none\n").unwrap_err();
    assert!(e.to_string().contains("no witness"), "{e}");
    assert!(WitnessConfig::from_policy(b"witness\n").is_err());
}

/// A second log with the same key and origin but another history (a fork behind the
/// witnesses' back) gets no cosignature: the witnesses' 409 leads to a proof they refuse (422),
/// and the fork's /checkpoint never carries their lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_fork_with_the_same_key_is_refused_and_served_bare() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 13).await;
    let p = Policy::parse(text_policy.as_bytes()).unwrap();
    start(
        &log,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    for n in 0..2 {
        log.state.log.append_verified_entry(entry(n)).await.unwrap();
    }
    until("both cosign size 2", || cosigned_at(&log, &p, 2)).await;
    // The fork: the same key file, other entries, a larger tree.
    let fork_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fork_dir.path().join("data")).unwrap();
    std::fs::copy(
        log._dir.path().join("data").join(countersign_log::KEY_FILE),
        fork_dir.path().join("data").join(countersign_log::KEY_FILE),
    )
    .unwrap();
    let fork = TestLog::start_in(fork_dir, |c| c).await;
    assert_eq!(fork.vkey, log.vkey);
    for n in 100..103 {
        fork.state
            .log
            .append_verified_entry(entry(n))
            .await
            .unwrap();
    }
    start(
        &fork,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    let failures = "countersign_witness_failures_total{witness=\"w1\",kind=\"inconsistent\"}";
    until("the fork's proof is refused", || async {
        metric(&text(&fork, "/metrics").await.1, failures) >= 1.0
    })
    .await;
    let (_, note) = text(&fork, "/checkpoint").await;
    assert!(
        !note.contains("— w1.test") && !note.contains("— w2.test"),
        "{note}"
    );
    assert_eq!(
        (w1.size(), w2.size()),
        (2, 2),
        "the witnesses kept the real log's tree"
    );
    w1.stop();
    w2.stop();
    fork.stop().await;
    log.stop().await;
}

/// Appends from 16 tasks for `secs` seconds; returns appends per second.
async fn append_rate(log: &TestLog, base: u64, secs: u64) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let h = log.state.log.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(secs) {
                h.append_verified_entry(entry(base + t * 1_000_000 + n))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// The `le` bound of the bucket holding quantile `q` of a histogram in `metrics`.
fn quantile(metrics: &str, name: &str, q: f64) -> f64 {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}_bucket{{le=\"")))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"}")?;
            Some((le.parse().ok()?, rest.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map_or(f64::NAN, |b| b.0)
}

/// Measurement, not a check (run with `--ignored --nocapture`): the time from a checkpoint's
/// publication to it carrying both cosignatures (two local fake witnesses), and the append rate
/// with witnessing on against off in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn witness_measure_cosign_latency_and_append_rate() {
    for interval in [Duration::from_millis(10), Duration::from_secs(1)] {
        // Off and on back to back, each on a fresh log, so both see the same machine load.
        let off = TestLog::start().await;
        let rate_off = append_rate(&off, 0, 4).await;
        off.stop().await;
        let log = TestLog::start().await;
        let (w1, w2, text_policy) = two_witnesses(&log, 15).await;
        let mut c = config(&text_policy, WitnessMode::Publish, Duration::from_secs(5));
        c.interval = interval;
        log.state.log.start_witnessing(c).await.unwrap();
        let rate_on = append_rate(&log, 0, 4).await;
        let (_, m) = text(&log, "/metrics").await;
        let name = "countersign_witness_cosign_latency_seconds";
        let count = metric(&m, &format!("{name}_count"));
        println!(
            "interval {interval:?}: append rate off {rate_off:.0}/s, on {rate_on:.0}/s ({:+.1}%); \
             cosign latency over {count} checkpoints: p50 <= {} s, p99 <= {} s",
            (rate_on / rate_off - 1.0) * 100.0,
            quantile(&m, name, 0.5),
            quantile(&m, name, 0.99),
        );
        assert!(count >= 1.0 && rate_on > 0.0);
        w1.stop();
        w2.stop();
        log.stop().await;
    }
}

/// `quorum none` is met by every checkpoint: quorum mode then holds nothing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_quorum_none_holds_nothing_back() {
    let log = TestLog::start().await;
    let w1 = FakeWitness::start("w1.test", 17, &log.vkey).await;
    w1.set(Behaviour::Status(503));
    let text_policy = format!(
        "log {}\n{}quorum none\n",
        log.vkey.to_vkey(),
        w1.policy_line("w1")
    );
    start(
        &log,
        &text_policy,
        WitnessMode::Quorum,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(text(&log, "/checkpoint").await.0, 200);
    let (status, v) = log
        .post(
            "/v1/log/enrolments",
            &log.admin,
            &crate::common::enrolment_body(&passkey(3), "approver-n"),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(log.get("/healthz").await.0, 200);
    w1.stop();
    log.stop().await;
}

/// Proofs for evidence are made against the latest checkpoint that met the quorum when it
/// covers the entries, even once a newer one awaits its cosignatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_evidence_proofs_use_the_cosigned_checkpoint() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 18).await;
    let p = Policy::parse(text_policy.as_bytes()).unwrap();
    start(
        &log,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    for n in 0..2 {
        log.state.log.append_verified_entry(entry(n)).await.unwrap();
    }
    until("both cosign size 2", || cosigned_at(&log, &p, 2)).await;
    w2.set(Behaviour::Status(503));
    log.state.log.append_verified_entry(entry(2)).await.unwrap();
    let proved = log.state.log.prove_entries(&[1]).await.unwrap();
    let v = verify_checkpoint_with_policy(proved.checkpoint.note.as_bytes(), &p).unwrap();
    assert_eq!(v.checkpoint.size, 2);
    // Entry 2 is only in the uncosigned checkpoint: its proof is against that one.
    let proved = log.state.log.prove_entries(&[2]).await.unwrap();
    assert_eq!(proved.checkpoint.size, 3);
    assert!(verify_checkpoint_with_policy(proved.checkpoint.note.as_bytes(), &p).is_err());
    w1.stop();
    w2.stop();
    log.stop().await;
}

/// A cosignature that does not verify, or whose timestamp is far from the log's clock, is not
/// kept: an alert of kind `bad_cosignature`, and the checkpoint is served without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_bad_cosignatures_are_not_kept() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 27).await;
    let p = Policy::parse(text_policy.as_bytes()).unwrap();
    w1.set(Behaviour::WrongKey);
    w2.set(Behaviour::SkewedClock(3600));
    start(
        &log,
        &text_policy,
        WitnessMode::Publish,
        Duration::from_secs(5),
    )
    .await;
    log.state.log.append_verified_entry(entry(0)).await.unwrap();
    for w in ["w1", "w2"] {
        let name = format!(
            "countersign_witness_failures_total{{witness=\"{w}\",kind=\"bad_cosignature\"}}"
        );
        until("the bad cosignature is counted", || async {
            metric(&text(&log, "/metrics").await.1, &name) >= 1.0
        })
        .await;
    }
    let (_, note) = text(&log, "/checkpoint").await;
    assert!(
        !note.contains("— w1.test") && !note.contains("— w2.test"),
        "{note}"
    );
    until("the lag in entries shows", || async {
        let m = text(&log, "/metrics").await.1;
        metric(&m, "countersign_witness_lag_entries{witness=\"w1\"}") >= 1.0
    })
    .await;
    until("the lag in seconds grows", || async {
        metric(
            &text(&log, "/metrics").await.1,
            "countersign_witness_lag_seconds{witness=\"w2\"}",
        ) > 0.0
    })
    .await;
    // Good cosignatures again: kept, and the lag falls to zero.
    w1.set(Behaviour::Honest);
    w2.set(Behaviour::Honest);
    until("both cosign size 1", || cosigned_at(&log, &p, 1)).await;
    until("the lag clears", || async {
        metric(
            &text(&log, "/metrics").await.1,
            "countersign_witness_lag_seconds{witness=\"w2\"}",
        ) == 0.0
    })
    .await;
    w1.stop();
    w2.stop();
    log.stop().await;
}

/// Quorum mode under concurrent appends: every append is answered with a checkpoint that
/// covers it and satisfies the policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_quorum_mode_answers_concurrent_appends_with_cosigned_checkpoints() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 29).await;
    let p = std::sync::Arc::new(Policy::parse(text_policy.as_bytes()).unwrap());
    let mut c = config(&text_policy, WitnessMode::Quorum, Duration::from_secs(20));
    c.interval = Duration::from_millis(10);
    log.state.log.start_witnessing(c).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (h, p) = (log.state.log.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..30u64 {
                let a = h.append_verified_entry(entry(t * 1000 + n)).await.unwrap();
                let a = h.await_witnessed(a).await.unwrap();
                assert!(a.tree_size > a.index);
                let v = verify_checkpoint_with_policy(a.checkpoint.as_bytes(), &p).unwrap();
                assert_eq!(v.checkpoint.size, a.tree_size);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(log.state.log.published().size, 480);
    w1.stop();
    w2.stop();
    log.stop().await;
}

/// Quorum mode, the batch endpoint: answered with a checkpoint the quorum cosigned, every
/// proof against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_quorum_mode_answers_a_batch_with_a_cosigned_checkpoint() {
    let log = TestLog::start().await;
    let (w1, w2, text_policy) = two_witnesses(&log, 33).await;
    let p = Policy::parse(text_policy.as_bytes()).unwrap();
    start(
        &log,
        &text_policy,
        WitnessMode::Quorum,
        Duration::from_secs(20),
    )
    .await;
    let mut pk = passkey(42);
    let enrol = log.enrol(&pk, "approver-b").await;
    let token = log.submitter().await;
    let batch = serde_json::json!({"decisions": [
        crate::common::signed_decision(&mut pk, "approver-b", enrol, 1, |_| {}),
        crate::common::signed_decision(&mut pk, "approver-b", enrol, 2, |_| {}),
    ]});
    let (s, v) = log.post("/v1/log/decisions/batch", &token, &batch).await;
    assert_eq!(s, 200, "{v}");
    let note = v["checkpoint"].as_str().unwrap();
    let cp = verify_checkpoint_with_policy(note.as_bytes(), &p)
        .unwrap()
        .checkpoint;
    assert_eq!(v["tree_size"], cp.size);
    for r in v["results"].as_array().unwrap() {
        let index = r["index"].as_u64().unwrap();
        assert!(index < cp.size);
        let proof: Vec<countersign_verifier::Hash> = r["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| countersign_verifier::Hash::from_hex(h.as_str().unwrap()).unwrap())
            .collect();
        let leaf = countersign_verifier::Hash::from_hex(r["leaf_hash"].as_str().unwrap()).unwrap();
        countersign_verifier::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root).unwrap();
    }
    w1.stop();
    w2.stop();
    log.stop().await;
}
