//! What a SIGKILLed server owed is delivered by the next start: ping and push outcomes (push
//! tokens exactly as first issued, so they are still issued once), the `expired_token` of a
//! request left open, and the approver's webhook of a request still open (not of decided ones).
//! Approvers stay signed in. Nothing is delivered twice, and a signed-out or disabled approver's
//! session stays refused.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{verify_jwt, Api, Receiver, ORIGIN, RP_ID};
use crate::flow_load::{approve_all_until_stopped, flow_server, Acked};
use crate::process::{free_port, Process};

/// The bodies a receiver list holds, by `auth_req_id`, with the bearer token each came with.
fn by_id(list: &[(Option<String>, Value)]) -> HashMap<String, (Option<String>, Value)> {
    list.iter()
        .map(|(auth, body)| {
            (
                body["auth_req_id"].as_str().unwrap().to_owned(),
                (auth.clone(), body.clone()),
            )
        })
        .collect()
}

async fn metrics(api: &Api) -> String {
    crate::web::get_text(&api.http, &format!("{}/metrics", api.url)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_crashed_server_owed_is_delivered_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let hooks = Receiver::start().await;
    hooks
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let args = [
        "--webhook-url",
        hooks.url.as_str(),
        "--webhook-secret",
        "hook-key",
        "--origin",
        "restart.test/log",
        "--rp-id",
        RP_ID,
        "--allowed-origin",
        ORIGIN,
        "--min-expiry",
        "1",
        "--poll-interval",
        "1",
        "--delivery-attempts",
        "2",
        "--delivery-backoff-ms",
        "50",
    ];
    let rx = Receiver::start().await;
    rx.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut server = Process::spawn(&dir, free_port(), &args);
    server.wait_ready(&reqwest::Client::new()).await;
    let api = Api::of(&server);
    let push = api.add_client("agent-push", "push", Some(&rx.url)).await;
    let ping = api.add_client("agent-ping", "ping", Some(&rx.url)).await;
    let alice = api.add_approver("apv_alice", 11).await;

    // Three decisions whose deliveries the client's endpoint refuses (two attempts each), and
    // one request still open when the server is killed.
    let push_tok = [("client_notification_token", "push-tok")];
    let mut decided = Vec::new();
    let approved = push.ask("apv_alice", &push_tok).await;
    decided.push(alice.only_request().await);
    alice.decide(&decided[0], "approve").await;
    let denied = push.ask("apv_alice", &push_tok).await;
    decided.push(alice.only_request().await);
    alice.decide(&decided[1], "deny").await;
    let pinged = ping
        .ask("apv_alice", &[("client_notification_token", "ping-tok")])
        .await;
    decided.push(alice.only_request().await);
    let receipt = alice.decide(&decided[2], "approve").await;
    rx.wait_refused(6).await;
    // A poll request that stays open: its approver's webhook, refused too, is still owed.
    let poll = api.add_client("agent-poll", "poll", None).await;
    let lasting = poll.ask("apv_alice", &[("requested_expiry", "600")]).await;
    hooks.wait_refused(8).await;
    let expiring = push
        .ask(
            "apv_alice",
            &[
                ("client_notification_token", "push-tok"),
                ("requested_expiry", "3"),
            ],
        )
        .await;
    let refused = by_id(&rx.refused.lock().unwrap());
    assert_eq!(refused.len(), 3, "{refused:?}");
    let first_push = refused[&approved].1.clone();
    assert!(first_push["access_token"].is_string(), "{first_push}");
    let size_before = receipt["tree_size"].as_u64().unwrap();
    let m = metrics(&api).await;
    for line in [
        "countersign_ciba_requests_total 5",
        "countersign_ciba_decisions_total{decision=\"approve\"} 2",
        "countersign_ciba_decisions_total{decision=\"deny\"} 1",
        "countersign_ciba_tokens_issued_total 1",
        "countersign_ciba_deliveries_total{kind=\"push\",outcome=\"failed\"} 2",
        "countersign_ciba_deliveries_total{kind=\"ping\",outcome=\"failed\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
    }

    server.kill();
    rx.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    hooks
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    server.restart();
    server.wait_ready(&api.http).await;

    // The approver is still signed in (sessions are stored) and sees the open request, unless
    // it expired meanwhile.
    let open = alice.inbox().await;
    assert!((1..=2).contains(&open.len()), "{open:?}");
    let lasting_rid = open
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .find(|rid| !decided.contains(rid))
        .unwrap();

    // After the restart: the three owed deliveries, then the expiry.
    rx.wait(4).await;
    let got = by_id(&rx.got.lock().unwrap());
    assert_eq!(got.len(), 4, "{got:?}");
    let (auth, body) = &got[&approved];
    assert_eq!(auth.as_deref(), Some("Bearer push-tok"));
    assert_eq!(
        body, &first_push,
        "a repeated push carries the tokens first issued"
    );
    let (_, claims) = verify_jwt(&api, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "apv_alice");
    let (_, id) = verify_jwt(&api, body["id_token"].as_str().unwrap()).await;
    assert_eq!(id["urn:openid:params:jwt:claim:auth_req_id"], approved);
    assert_eq!(got[&denied].1["error"], "access_denied");
    assert_eq!(
        got[&pinged],
        (
            Some("Bearer ping-tok".into()),
            json!({"auth_req_id": pinged})
        )
    );
    assert_eq!(got[&expiring].1["error"], "expired_token");
    // The ping client fetches its token once; push tokens are never fetched.
    let (st, tokens) = ping.token(&pinged).await;
    assert_eq!(st, 200, "{tokens}");
    let (st, v) = ping.token(&pinged).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
    let (st, v) = push.token(&approved).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    // The owed webhook of the open request came again; none came for the decided ones.
    let hooked = || -> Vec<String> {
        hooks
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    for _ in 0..200 {
        if hooked().contains(&lasting_rid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let after_crash = hooked();
    assert!(after_crash.contains(&lasting_rid), "{after_crash:?}");
    assert!(
        after_crash.iter().all(|rid| !decided.contains(rid)),
        "{after_crash:?}"
    );
    let got = poll.token(&lasting).await;
    crate::common::assert_refused(
        "still open",
        &got,
        400,
        "authorization_pending",
        &["not decided"],
    );
    // Nothing new was logged for the redeliveries.
    let vkey = countersign_verifier::VerifierKey::parse(&server.read("log.vkey")).unwrap();
    let size = api.checkpoint(&vkey).await.size;
    assert_eq!(size, size_before);
    let m = metrics(&api).await;
    for line in [
        "countersign_ciba_deliveries_total{kind=\"push\",outcome=\"delivered\"} 3",
        "countersign_ciba_deliveries_total{kind=\"ping\",outcome=\"delivered\"} 1",
        "countersign_ciba_tokens_issued_total 1",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
    }
    assert!(m.ends_with("# EOF\n"), "{m}");

    // Signing out is stored too. Delivered means done: a graceful restart delivers nothing
    // again.
    let bob = api.add_approver("apv_bob", 12).await;
    let (st, _) = alice.post("/v1/session/logout", &json!({})).await;
    assert_eq!(st, 204);
    let exit = server.terminate();
    assert!(exit.success(), "server exited with {exit}");
    server.restart();
    server.wait_ready(&api.http).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 4);
    assert_eq!(rx.refused.lock().unwrap().len(), 6);
    assert_eq!(
        hooked(),
        after_crash,
        "a delivered webhook is not sent again"
    );
    let got = crate::common::json_of(alice.get("/v1/inbox").await);
    crate::common::assert_refused(
        "a signed-out session stays signed out",
        &got,
        401,
        "login_required",
        &["sign in"],
    );
    assert!(bob.inbox().await.is_empty());
    // Disabling an approver ends their stored sessions too.
    let (st, v) = api
        .admin_post("/v1/admin/approvers/apv_bob/disable", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let exit = server.terminate();
    assert!(exit.success(), "server exited with {exit}");
    server.restart();
    server.wait_ready(&api.http).await;
    let got = crate::common::json_of(bob.get("/v1/inbox").await);
    crate::common::assert_refused(
        "a disabled approver's session",
        &got,
        401,
        "login_required",
        &["sign in"],
    );
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_approvals_survive_sigkill_under_load() {
    use rand::Rng;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let rounds = crate::process::rounds(3, 20);
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, api, vkey, client, approvers) = flow_server(
        &tmp.path().join("data"),
        Some("crash-flow.test/log"),
        "agent-crash",
        (0..4u64).map(|t| (format!("apv_crash{t}"), 60 + t)),
    )
    .await;
    let mut rng = rand::thread_rng();
    let mut fetched = std::collections::HashSet::new();
    let mut checked = 0usize;
    let mut max_size = 0u64;
    let mut all_acked: Vec<Acked> = Vec::new();
    let mut all_asked: Vec<String> = Vec::new();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let tasks = approve_all_until_stopped(&client, &approvers, round, &stop, &asked, &acked);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(400..1200))).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        server.restart();
        server.wait_ready(&api.http).await;

        let acked = acked.lock().unwrap().clone();
        assert!(
            !acked.is_empty(),
            "round {round}: no decision was acknowledged"
        );
        all_acked.extend(acked);
        let size = api.checkpoint(&vkey).await.size;
        assert!(size >= max_size, "tree size went back");
        max_size = size;
        // Every acknowledged decision is in the log at its index, and its token (approved) or
        // access_denied (denied) comes from the token endpoint: the approved token once.
        for a in &all_acked {
            let v = api
                .get_json(&format!("/v1/log/entries/{}", a.log_index))
                .await;
            assert_eq!(v["leaf_hash"].as_str(), Some(a.leaf_hash.as_str()), "{a:?}");
            let (st, t) = client.token(&a.auth_req_id).await;
            match (a.decision, fetched.contains(&a.auth_req_id)) {
                ("approve", false) => {
                    assert_eq!(st, 200, "{a:?}: {t}");
                    let (_, claims) = verify_jwt(&api, t["access_token"].as_str().unwrap()).await;
                    assert_eq!(claims["log_index"], a.log_index);
                    fetched.insert(a.auth_req_id.clone());
                }
                ("approve", true) => {
                    assert_eq!((st, t["error"].as_str()), (400, Some("invalid_grant")));
                }
                _ => assert_eq!((st, t["error"].as_str()), (400, Some("access_denied"))),
            }
            checked += 1;
        }
        // A request whose decision was cut off by the kill is either still open (and decidable
        // later), or decided, its decision in the log (finished at start from the claim if the
        // kill came between the log append and the record update). So the log holds exactly
        // one decision per decided request, no more: nothing is logged and left undecided.
        let acked_ids: std::collections::HashSet<String> =
            all_acked.iter().map(|a| a.auth_req_id.clone()).collect();
        all_asked.extend(asked.lock().unwrap().iter().cloned());
        let mut decided = acked_ids.len();
        for id in all_asked.iter().filter(|i| !acked_ids.contains(*i)) {
            let (st, t) = client.token(id).await;
            let err = t["error"].as_str().unwrap_or("");
            match (st, err) {
                (200, _) => {
                    let (_, claims) = verify_jwt(&api, t["access_token"].as_str().unwrap()).await;
                    let index = claims["log_index"].as_u64().unwrap();
                    assert!(index < size, "a token for a decision not in the log");
                    assert!(fetched.insert(id.clone()), "tokens issued twice");
                    decided += 1;
                }
                (400, "invalid_grant") => {
                    assert!(fetched.contains(id), "{id}: {t}");
                    decided += 1;
                }
                (400, "access_denied") => decided += 1,
                (400, "authorization_pending" | "slow_down") => {}
                _ => panic!("{id}: {st} {t}"),
            }
        }
        assert_eq!(
            decided as u64 + approvers.len() as u64,
            size,
            "round {round}: every logged decision belongs to a decided request"
        );
        // One approved decision's evidence bundle verifies offline.
        if let Some(a) = all_acked.iter().find(|a| a.decision == "approve") {
            let (st, text) = client.evidence(&a.auth_req_id, None).await;
            assert_eq!(st, 200, "{text}");
            countersign_verifier::EvidenceBundle::from_json(text.as_bytes())
                .unwrap()
                .verify(&vkey, &countersign_verifier::BundlePolicy::default())
                .unwrap();
        }
        eprintln!(
            "round {round}: tree size {size}, {} decisions acknowledged so far",
            all_acked.len()
        );
    }
    assert!(checked > 0);
    server.kill();
}

/// Puts a decided request back in the state a crash between the log append and the record
/// update leaves (claimed, with the claim of `assertion_key`), in the stopped server's store.
fn rewind_to_claimed(dir: &std::path::Path, auth_req_id: &str, assertion_key: [u8; 32]) {
    use countersign_approvals::store::RequestRecord;
    use countersign_approvals::{CibaStore, Secret};
    let store = countersign_log::storage::Store::open(&dir.join(countersign_log::DB_DIR)).unwrap();
    let ciba = CibaStore::new(store).unwrap();
    let key = CibaStore::request_key(&Secret::new(auth_req_id).sha256());
    let mut r: RequestRecord = ciba.get_blocking(&key).unwrap().unwrap();
    let b = crate::common::rewound_to_claimed(&mut r, &key, assertion_key, "");
    ciba.commit_blocking(b).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_logged_before_a_crash_is_finished_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = ["--rp-id", RP_ID, "--allowed-origin", ORIGIN];
    let mut server = Process::spawn(&dir, free_port(), &args);
    server.wait_ready(&reqwest::Client::new()).await;
    let api = Api::of(&server);
    let client = api.add_client("agent-claim", "poll", None).await;
    let alice = api.add_approver("apv_claim", 71).await;

    // Two decisions, both logged; the server then stops as if each had crashed between the log
    // append and the record update: the first with its real claim, the second with a claim whose
    // assertion is not in the log (as if the append itself had not happened).
    let mut asked = Vec::new();
    for n in 0..2 {
        let id = client.ask("apv_claim", &[]).await;
        let rid = alice.only_request().await;
        let ch = alice.challenge(&rid, "approve").await;
        let cred = alice.sign(&ch, ORIGIN);
        let (st, receipt) = alice.finish(&rid, "approve", &cred).await;
        assert_eq!(st, 201, "{receipt}");
        let key = if n == 0 {
            crate::common::assertion_key_of(&cred)
        } else {
            [7u8; 32]
        };
        asked.push((id, rid, key, receipt["log_index"].as_u64().unwrap()));
    }
    let exit = server.terminate();
    assert!(exit.success());
    for (id, _, key, _) in &asked {
        rewind_to_claimed(&dir, id, *key);
    }
    server.restart();
    server.wait_ready(&api.http).await;

    // The first is decided again, from the log: its token carries its log index.
    let (id, _, _, index) = &asked[0];
    let (st, t) = client.token(id).await;
    assert_eq!(st, 200, "{t}");
    let (_, claims) = verify_jwt(&api, t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["log_index"], *index);
    // The second is open again (its claim named no logged assertion), and can be decided.
    let (id, rid, _, _) = &asked[1];
    let (st, t) = client.token(id).await;
    assert_eq!(
        (st, t["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    assert_eq!(alice.only_request().await, *rid);
    alice.decide(rid, "deny").await;
    let (st, t) = client.token(id).await;
    assert_eq!((st, t["error"].as_str()), (400, Some("access_denied")));
    server.kill();
}

/// The token signing keys live in the store: a restart publishes the same JWKS, so tokens issued
/// before it still verify after it.
#[tokio::test]
async fn the_jwks_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut server = Process::spawn(&tmp.path().join("data"), free_port(), &[]);
    server.wait_ready(&client).await;
    let jwks = |url: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("{url}/jwks.json"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let before = jwks(server.url.clone()).await;
    assert_eq!(before["keys"].as_array().map(Vec::len), Some(1), "{before}");
    assert!(server.terminate().success());
    server.restart();
    server.wait_ready(&client).await;
    assert_eq!(jwks(server.url.clone()).await, before);
    server.kill();
}

/// A push whose tokens cannot be issued any more (the record says they were, but the stored
/// push lost them) is delivered as CIBA's `transaction_failed` (section 12), never as a second
/// set of tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_whose_tokens_cannot_be_issued_is_transaction_failed() {
    use countersign_approvals::store::OutboxRecord;
    use countersign_approvals::{CibaStore, Secret};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rx = Receiver::start().await;
    rx.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let args = [
        "--rp-id",
        RP_ID,
        "--allowed-origin",
        ORIGIN,
        "--delivery-attempts",
        "1",
    ];
    let mut server = Process::spawn(&dir, free_port(), &args);
    server.wait_ready(&reqwest::Client::new()).await;
    let api = Api::of(&server);
    let push = api.add_client("agent-push", "push", Some(&rx.url)).await;
    let alice = api.add_approver("apv_alice", 72).await;
    let id = push
        .ask("apv_alice", &[("client_notification_token", "push-tok")])
        .await;
    alice.decide(&alice.only_request().await, "approve").await;
    let (_, first) = rx.wait_refused(1).await;
    assert!(first["access_token"].is_string(), "{first}");
    assert!(server.terminate().success());
    {
        let store =
            countersign_log::storage::Store::open(&dir.join(countersign_log::DB_DIR)).unwrap();
        let ciba = CibaStore::new(store).unwrap();
        let okey = CibaStore::outbox_key(&CibaStore::request_key(&Secret::new(&id).sha256()));
        let mut o: OutboxRecord = ciba.get(&okey).await.unwrap().unwrap();
        assert!(
            o.push_response.is_some(),
            "the issued tokens are kept for the retry"
        );
        o.push_response = None;
        let mut b = countersign_approvals::store::Batch::new();
        b.put_json(okey, &o).unwrap();
        ciba.commit_blocking(b).unwrap();
    }
    rx.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    server.restart();
    server.wait_ready(&api.http).await;
    let (auth, body) = rx.wait(1).await;
    assert_eq!(auth.as_deref(), Some("Bearer push-tok"));
    assert_eq!(body["auth_req_id"], id.as_str(), "{body}");
    assert_eq!(body["error"], "transaction_failed", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("could not issue the tokens")),
        "{body}"
    );
    assert!(body.get("access_token").is_none(), "{body}");
    server.kill();
}
