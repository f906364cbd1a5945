//! Power cuts under approval flows: CIBA poll flows (ask, decide with a passkey, fetch the
//! token) against the real binary with its data directory on the power-cut file system
//! (`tools/powercut`), SIGKILLed and power-cut at random moments (also during start-up). After
//! each restart: every token issued before a cut still verifies and names a decision that is in
//! the log; no request gets a second token; no token is issued for a decision that is not in the
//! log. And the approval store under an injected fsync fault issues no token for a decision that
//! was not made durable.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use countersign_powercut::{Failure, Op, Times};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::{verify_jwt, Api, Client, ORIGIN};
use crate::flow_load::{approve_all_until_stopped, flow_server, token, Acked};

/// The log's origin line.
const LOG_ORIGIN: &str = "powercut-flow.test/log";

/// The token endpoint's answer, or `None` if the server could not be reached (being killed).
async fn try_token(client: &Client, auth_req_id: &str) -> Option<(u16, Value)> {
    let r = token(client, auth_req_id).await.ok()?;
    let st = r.status().as_u16();
    Some((st, r.json().await.ok()?))
}

/// The log index a token's claims name, its signature checked against the JWKS.
async fn token_index(api: &Api, token: &Value) -> u64 {
    let (_, claims) = verify_jwt(api, token["access_token"].as_str().unwrap()).await;
    claims["log_index"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cut_keeps_every_token_and_issues_none_twice() {
    let rounds = crate::process::rounds(3, 20);
    let tmp = tempfile::tempdir().unwrap();
    let fs = crate::powercut::mount(&tmp.path().join("mnt"));
    let (mut server, api, vkey, client, approvers) = flow_server(
        &fs.path().join("data"),
        Some(LOG_ORIGIN),
        "agent-cut",
        (0..3u64).map(|t| (format!("apv_cut{t}"), 80 + t)),
    )
    .await;
    let seed = crate::process::seed("power_cut_keeps_every_token_and_issues_none_twice");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // auth_req_id -> the log index its token named, for every token the client received.
    let mut issued: HashMap<String, u64> = HashMap::new();
    let mut all_acked: Vec<Acked> = Vec::new();
    let mut all_asked: Vec<String> = Vec::new();
    let mut max_size = 0u64;
    let mut before_cuts = 0usize;

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let mut tasks =
            approve_all_until_stopped(&client, &approvers, round, &stop, &asked, &acked);
        // The agent fetches the token of each acknowledged approval while the load runs, so
        // that tokens are issued right before the cut.
        let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        {
            let (client, stop, acked, got) =
                (client.clone(), stop.clone(), acked.clone(), got.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = HashSet::new();
                while !stop.load(Ordering::SeqCst) {
                    let todo: Vec<String> = acked
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|a| a.decision == "approve" && !done.contains(&a.auth_req_id))
                        .map(|a| a.auth_req_id.clone())
                        .collect();
                    for id in todo {
                        if let Some((200, t)) = try_token(&client, &id).await {
                            got.lock().unwrap().push((id.clone(), t));
                        }
                        done.insert(id);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(400..1500))).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        fs.power_cut();
        server.restart();
        if rng.gen_bool(0.5) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
            server.kill();
            fs.power_cut();
            server.restart();
        }
        server.wait_ready(&api.http).await;

        let size = api.checkpoint(&vkey).await.size;
        assert!(size >= max_size, "tree size went back (seed {seed})");
        max_size = size;
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
        all_acked.extend(acked);
        all_asked.extend(asked.lock().unwrap().iter().cloned());
        let got = got.lock().unwrap().clone();
        before_cuts += got.len();
        for (id, t) in got {
            let index = token_index(&api, &t).await;
            assert!(
                issued.insert(id.clone(), index).is_none(),
                "{id}: a second token (seed {seed})"
            );
        }
        // Every decision acknowledged before a cut is in the log at its index.
        for a in &all_acked {
            let v = api
                .get_json(&format!("/v1/log/entries/{}", a.log_index))
                .await;
            assert_eq!(
                v["leaf_hash"].as_str(),
                Some(a.leaf_hash.as_str()),
                "{a:?} (seed {seed})"
            );
        }
        let acked_by_id: HashMap<&str, &Acked> = all_acked
            .iter()
            .map(|a| (a.auth_req_id.as_str(), a))
            .collect();
        // Every token issued before a cut: its signature still verifies with the restarted
        // server's JWKS, it names its request's decision, and the request gets no other token.
        for (id, index) in &issued {
            assert!(*index < size, "{id}: token for index {index} >= {size}");
            if let Some(a) = acked_by_id.get(id.as_str()) {
                assert_eq!(a.log_index, *index, "{id} (seed {seed})");
            }
            let (st, t) = try_token(&client, id).await.unwrap();
            assert_eq!(
                (st, t["error"].as_str()),
                (400, Some("invalid_grant")),
                "{id}: asked again after a cut: {t} (seed {seed})"
            );
        }
        // Every other request: a token only for a decision in the log, and at most one.
        let others: Vec<String> = all_asked
            .iter()
            .filter(|i| !issued.contains_key(*i))
            .cloned()
            .collect();
        for id in &others {
            let (st, t) = try_token(&client, id).await.unwrap();
            match (st, t["error"].as_str().unwrap_or("")) {
                (200, _) => {
                    let index = token_index(&api, &t).await;
                    assert!(index < size, "{id}: a token for a decision not in the log");
                    let v = api.get_json(&format!("/v1/log/entries/{index}")).await;
                    assert!(v["leaf_hash"].is_string(), "{v}");
                    if let Some(a) = acked_by_id.get(id.as_str()) {
                        assert_eq!(a.log_index, index, "{id} (seed {seed})");
                    }
                    issued.insert(id.clone(), index);
                }
                (400, "access_denied" | "authorization_pending" | "slow_down") => {
                    if let Some(a) = acked_by_id.get(id.as_str()) {
                        assert_eq!(a.decision, "deny", "{id}: {t} (seed {seed})");
                    }
                }
                // The token was issued by a request the kill cut off (its answer never came).
                (400, "invalid_grant") => {
                    assert!(acked_by_id.contains_key(id.as_str()), "{id}: {t}");
                }
                _ => panic!("{id}: {st} {t} (seed {seed})"),
            }
        }
        eprintln!(
            "round {round}: tree size {size}, {} decisions acknowledged, {} tokens issued \
             ({before_cuts} before a cut)",
            all_acked.len(),
            issued.len()
        );
    }
    assert!(before_cuts > 0, "no token was fetched before a cut");
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_for_a_decision_the_store_could_not_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = crate::powercut::mount(&tmp.path().join("mnt"));
    let (mut server, api, vkey, client, mut approvers) = flow_server(
        &fs.path().join("data"),
        Some(LOG_ORIGIN),
        "agent-fault",
        [("apv_fault".to_owned(), 90)],
    )
    .await;
    let (approver, _) = approvers.remove(0);
    let id = client.ask("apv_fault", &[]).await;
    let request = approver.only_request().await;
    let ch = approver.challenge(&request, "approve").await;
    let cred = approver.sign(&ch, ORIGIN);
    let before = api.checkpoint(&vkey).await;

    fs.fail(Op::Fsync, Failure::Eio, Times::UntilCleared);
    let (st, v) = approver.finish(&request, "approve", &cred).await;
    assert!(fs.stats().injected > 0, "the fault was never hit");
    assert_eq!(
        st, 500,
        "a decision acknowledged without a durable write: {v}"
    );
    assert_eq!(
        (v["error"].as_str(), v["error_description"].as_str()),
        (Some("internal_error"), Some("storage failed")),
        "{v}"
    );
    let (st, t) = try_token(&client, &id).await.unwrap();
    assert_ne!(st, 200, "a token for a decision not made durable: {t}");
    fs.clear_faults();

    server.kill();
    fs.power_cut();
    server.restart();
    server.wait_ready(&api.http).await;
    let after = api.checkpoint(&vkey).await;
    assert_eq!((after.size, after.root), (before.size, before.root));
    // The decision was not durable: the request is still open, and can be decided now.
    let (st, t) = try_token(&client, &id).await.unwrap();
    assert_eq!(
        (st, t["error"].as_str()),
        (400, Some("authorization_pending")),
        "{t}"
    );
    let mut approver = approver;
    let (st, _) = approver.get("/v1/inbox").await;
    if st == 401 {
        // The sign-in session was a deferred write the cut may have taken.
        approver.sign_in().await;
    }
    let receipt = approver.decide(&request, "approve").await;
    let (st, t) = try_token(&client, &id).await.unwrap();
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        token_index(&api, &t).await,
        receipt["log_index"].as_u64().unwrap()
    );
    assert_eq!(receipt["log_index"], json!(before.size));
    server.kill();
}
