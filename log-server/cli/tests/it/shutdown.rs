//! SIGTERM in the middle of a burst of approval flows (bc-authorize, the inbox, a passkey
//! decision, token polling) against the real binary: every answer the server gives is the step's
//! success or `503 shutting_down`, never another 5xx; every acknowledged decision is in the log
//! after the restart, and its token is issued exactly once (during the burst or after it).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common::{verify_jwt, Api, Approver, Client};
use crate::flow_load::{
    bc_authorize, decide_finish, decide_start, flow_server, inbox, request_id, token,
};

/// What one flow got from the server.
#[derive(Debug, Default, Clone)]
struct Flow {
    auth_req_id: String,
    decision: &'static str,
    /// `(log_index, leaf_hash)` of a 201 receipt.
    receipt: Option<(u64, String)>,
    /// Whether the token endpoint answered 200 (approved) or access_denied (denied).
    token_answered: bool,
}

/// Counts of what the burst saw.
#[derive(Default)]
struct Seen {
    refused: AtomicU64,
    unanswered: AtomicU64,
}

/// One step's answer: `Some(body)` for the expected success status, `None` for no answer (the
/// listener closed, the connection reset) or `503 shutting_down`. Any other answer fails the test.
async fn step(
    what: &str,
    r: reqwest::Result<reqwest::Response>,
    ok: &[u16],
    seen: &Seen,
) -> Option<Value> {
    let Ok(r) = r else {
        seen.unanswered.fetch_add(1, Ordering::Relaxed);
        // Refused connections come back at once: do not spin on them.
        tokio::time::sleep(Duration::from_millis(5)).await;
        return None;
    };
    let status = r.status().as_u16();
    let Ok(v) = r.json::<Value>().await else {
        // The connection closed while the body was read: not an answer.
        seen.unanswered.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    if ok.contains(&status) {
        return Some(v);
    }
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("shutting_down")),
        "{what} during shutdown: {status} {v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("shutting down")),
        "{v}"
    );
    seen.refused.fetch_add(1, Ordering::Relaxed);
    None
}

/// One approver's flows until `stop`: ask, find the request in the inbox, decide it with the
/// passkey (every third denied), fetch the outcome from the token endpoint. Every request asked
/// is recorded in `flows` before its first step that can change anything.
async fn flows_until_stopped(
    client: Client,
    approver: Approver,
    approver_id: String,
    (round, stop): (usize, Arc<AtomicBool>),
    flows: Arc<Mutex<Vec<Flow>>>,
    seen: Arc<Seen>,
) {
    let mut n = 0u32;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        // Unique across rounds, so the inbox finds this request and no other.
        let msg = format!("{approver_id} round {round} #{n}");
        let decision = if n % 3 == 0 { "deny" } else { "approve" };
        let asked = bc_authorize(&client, &approver_id, &msg).await;
        let Some(v) = step("bc-authorize", asked, &[200], &seen).await else {
            continue;
        };
        let slot = {
            let mut f = flows.lock().unwrap();
            f.push(Flow {
                auth_req_id: v["auth_req_id"].as_str().unwrap().to_owned(),
                decision,
                ..Flow::default()
            });
            f.len() - 1
        };
        let Some(inbox) = step("inbox", inbox(&approver).await, &[200], &seen).await else {
            continue;
        };
        let rid =
            request_id(&inbox, &msg).unwrap_or_else(|| panic!("{msg} not in the inbox: {inbox}"));
        let started = decide_start(&approver, &rid, decision).await;
        let Some(start) = step("decide/start", started, &[200], &seen).await else {
            continue;
        };
        let finished = decide_finish(&approver, &rid, decision, &start).await;
        let Some(receipt) = step("decide/finish", finished, &[201], &seen).await else {
            continue;
        };
        let auth_req_id = {
            let mut f = flows.lock().unwrap();
            f[slot].receipt = Some((
                receipt["log_index"].as_u64().unwrap(),
                receipt["leaf_hash"].as_str().unwrap().to_owned(),
            ));
            f[slot].auth_req_id.clone()
        };
        let token = token(&client, &auth_req_id).await;
        let ok: &[u16] = if decision == "approve" {
            &[200]
        } else {
            &[400]
        };
        if let Some(t) = step("token", token, ok, &seen).await {
            if decision == "approve" {
                assert!(t["access_token"].is_string(), "{t}");
            } else {
                assert_eq!(t["error"], "access_denied", "{t}");
            }
            flows.lock().unwrap()[slot].token_answered = true;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_approval_flows_loses_no_decision() {
    use rand::Rng;
    let rounds = crate::process::rounds(3, 30);
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, api, vkey, client, approvers) = flow_server(
        &tmp.path().join("data"),
        Some("term-flow.test/log"),
        "agent-term",
        (0..4u64).map(|t| (format!("apv_term{t}"), 80 + t)),
    )
    .await;
    // Every request asked in any round; the ids whose outcome the token endpoint has given.
    let mut all: Vec<Flow> = Vec::new();
    let mut settled: HashSet<String> = HashSet::new();
    let mut rng = rand::thread_rng();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let flows: Arc<Mutex<Vec<Flow>>> = Arc::default();
        let seen: Arc<Seen> = Arc::default();
        let tasks: Vec<_> = approvers
            .iter()
            .map(|(a, id)| {
                tokio::spawn(flows_until_stopped(
                    client.clone(),
                    a.clone(),
                    id.clone(),
                    (round, stop.clone()),
                    flows.clone(),
                    seen.clone(),
                ))
            })
            .collect();
        // Some decisions acknowledged first (however busy the machine running the tests),
        // then a random moment within the flows.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while flows.lock().unwrap().iter().all(|f| f.receipt.is_none()) {
            assert!(
                std::time::Instant::now() < deadline,
                "no decision was acknowledged in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..600))).await;
        let before_term = flows
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.receipt.is_some())
            .count();
        assert!(
            before_term > 0,
            "no decision was acknowledged before SIGTERM"
        );
        let exit = tokio::task::spawn_blocking(move || {
            let exit = server.terminate();
            (server, exit)
        });
        let (s, exit) = exit.await.unwrap();
        server = s;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        assert!(exit.success(), "round {round}: server exited with {exit}");
        let flows = flows.lock().unwrap().clone();
        eprintln!(
            "round {round}: {} requests asked, {} decisions acknowledged ({before_term} before \
             the signal), {} answers refused with shutting_down, {} unanswered",
            flows.len(),
            flows.iter().filter(|f| f.receipt.is_some()).count(),
            seen.refused.load(Ordering::Relaxed),
            seen.unanswered.load(Ordering::Relaxed)
        );
        all.extend(flows);

        server.restart();
        server.wait_ready(&api.http).await;
        let size = api.checkpoint(&vkey).await.size;
        let decided = check_after_restart(&api, &client, &all, &mut settled, size).await;
        // The log holds the enrolments and exactly one decision per decided request: no
        // decision was logged and then lost to the shutdown.
        assert_eq!(
            decided + approvers.len() as u64,
            size,
            "round {round}: every logged decision belongs to a decided request"
        );
    }
    server.kill();
}

/// Checks every flow against the restarted server; the number of decided requests.
async fn check_after_restart(
    api: &Api,
    client: &Client,
    all: &[Flow],
    settled: &mut HashSet<String>,
    size: u64,
) -> u64 {
    let mut decided = 0u64;
    let mut indices = HashSet::new();
    for f in all {
        let (st, t) = client.token(&f.auth_req_id).await;
        let err = t["error"].as_str();
        let was_settled = f.token_answered || settled.contains(&f.auth_req_id);
        if let Some((index, leaf)) = &f.receipt {
            // Acknowledged: in the log at its index, and its outcome at the token endpoint.
            let e = api.get_json(&format!("/v1/log/entries/{index}")).await;
            assert_eq!(e["leaf_hash"].as_str(), Some(leaf.as_str()), "{f:?}");
            match (f.decision, was_settled) {
                ("approve", true) => assert_eq!(
                    (st, err),
                    (400, Some("invalid_grant")),
                    "{f:?}: tokens issued twice? {t}"
                ),
                ("approve", false) => {
                    assert_eq!(st, 200, "{f:?}: {t}");
                    let (_, claims) = verify_jwt(api, t["access_token"].as_str().unwrap()).await;
                    assert_eq!(claims["log_index"], *index, "{f:?}");
                }
                _ => assert_eq!((st, err), (400, Some("access_denied")), "{f:?}: {t}"),
            }
            assert!(indices.insert(*index), "two decisions at index {index}");
            settled.insert(f.auth_req_id.clone());
            decided += 1;
            continue;
        }
        // Not acknowledged (the answer was 503 or never came): decided from the log at start
        // (its token obtainable once), or still open. Never a token for something not logged.
        match (st, err) {
            (200, _) => {
                assert_eq!(f.decision, "approve", "{f:?}");
                assert!(!was_settled, "{f:?}: tokens issued twice");
                let (_, claims) = verify_jwt(api, t["access_token"].as_str().unwrap()).await;
                let index = claims["log_index"].as_u64().unwrap();
                assert!(index < size, "a token for a decision not in the log: {f:?}");
                assert!(indices.insert(index), "two decisions at index {index}");
                settled.insert(f.auth_req_id.clone());
                decided += 1;
            }
            (400, Some("invalid_grant")) => {
                assert!(was_settled, "{f:?}: {t}");
                decided += 1;
            }
            (400, Some("access_denied")) => {
                assert_eq!(f.decision, "deny", "{f:?}");
                decided += 1;
            }
            (400, Some("authorization_pending")) => assert!(!was_settled, "{f:?}"),
            _ => panic!("{f:?} after the restart: {st} {t}"),
        }
    }
    decided
}
