//! What the front end owes a client or an approver when the request, the client or the outcome
//! is not the usual one: an expired ping request, a push client removed before the decision, a
//! client endpoint that never answers, and owed records whose request is gone.

use std::time::Duration;

use countersign_approvals::{CibaStore, Secret};

use crate::common::*;

fn outbox_of(auth_req_id: &str) -> String {
    CibaStore::outbox_key(&CibaStore::request_key(&Secret::new(auth_req_id).sha256()))
}

fn stored(s: &Server, key: &str) -> bool {
    s.approvals.store.get_raw_blocking(key).unwrap().is_some()
}

/// A ping client `client_id` notifying `rx`, the approver `approver_id` (passkey `seed`), and a
/// request asked of it with this `client_notification_token` and `requested_expiry`.
async fn ask_expiring_ping(
    s: &Server,
    rx: &Receiver,
    (client_id, approver_id, seed): (&str, &str, u64),
    token: &str,
    expiry: &str,
) -> (Client, Approver, String) {
    let client = s.add_client(client_id, "ping", Some(&rx.url)).await;
    let approver = s.add_approver(approver_id, seed).await;
    let id = client
        .ask(
            approver_id,
            &[
                ("client_notification_token", token),
                ("requested_expiry", expiry),
            ],
        )
        .await;
    (client, approver, id)
}

/// Waits (up to 5 s) until `key` is no longer stored.
async fn gone(s: &Server, key: &str) -> bool {
    for _ in 0..100 {
        if !stored(s, key) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn an_expired_ping_request_owes_no_ping() {
    let s = Server::start().await;
    let rx = Receiver::start().await;
    let (client, _alice, id) =
        ask_expiring_ping(&s, &rx, ("agent-ping-x", "apv_px", 51), "ping-tok", "1").await;
    let outbox = outbox_of(&id);
    assert!(stored(&s, &outbox));
    // The expiry timer marks it expired and drops the delivery: a ping tells of decisions.
    assert!(gone(&s, &outbox).await, "the expired ping is not owed");
    assert!(rx.got.lock().unwrap().is_empty());
    let (st, v) = client.token(&id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("expired_token")),
        "{v}"
    );
}

#[tokio::test]
async fn a_push_client_removed_before_the_decision_is_still_owed_it() {
    let s = Server::start().await;
    let rx = Receiver::start().await;
    let client = s.add_client("agent-push-gone", "push", Some(&rx.url)).await;
    let alice = s.add_approver("apv_pg", 52).await;
    let id = client
        .ask("apv_pg", &[("client_notification_token", "push-tok")])
        .await;
    let rid = alice.only_request().await;
    let r = s
        .http
        .delete(format!("{}/v1/admin/clients/agent-push-gone", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The decision is logged all the same.
    let before = s.tree_size();
    alice.decide(&rid, "approve").await;
    assert_eq!(s.tree_size(), before + 1);
    // Nowhere to deliver to: nothing is sent, and the outcome stays owed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.got.lock().unwrap().is_empty());
    assert!(rx.refused.lock().unwrap().is_empty());
    assert!(stored(&s, &outbox_of(&id)));
}

#[tokio::test]
async fn an_endpoint_that_never_answers_leaves_the_ping_owed() {
    let s = Server::start().await;
    // Nothing listens there: every attempt fails to connect, then the delivery gives up.
    let dead = format!("http://127.0.0.1:{}/cb", crate::process::free_port());
    let client = s.add_client("agent-dead", "ping", Some(&dead)).await;
    let alice = s.add_approver("apv_dead", 53).await;
    let id = client
        .ask("apv_dead", &[("client_notification_token", "ping-tok")])
        .await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    // Three attempts 50 and 100 ms apart; the give-up is counted once in the delivery metrics.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = crate::web::get_text(&s.http, &format!("{}/metrics", s.url)).await;
        if metrics
            .lines()
            .any(|l| l.contains("kind=\"ping\"") && l.contains("outcome=\"failed\""))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("kind=\"ping\"") && l.contains("outcome=\"failed\""))
        .collect();
    assert_eq!(failed.len(), 1, "{metrics}");
    assert!(failed[0].ends_with(" 1"), "{failed:?}");
    assert!(stored(&s, &outbox_of(&id)));
    // The client can still fetch its token: a failed delivery changes nothing about the outcome.
    let (st, v) = client.token(&id).await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["id_token"].is_string() || v["access_token"].is_string(),
        "{v}"
    );
}

#[tokio::test]
async fn owed_records_of_a_vanished_request_are_forgotten_at_resume() {
    let hooks = Receiver::start().await;
    let hook_url = hooks.url.clone();
    let s = Server::start_with(move |mut c| {
        c.webhook_url = Some(hook_url);
        c.webhook_secret = Some(Secret::new("hook-key"));
        c
    })
    .await;
    let key = CibaStore::request_key(&[0x5a; 32]);
    let owed = [
        CibaStore::outbox_key(&key),
        CibaStore::notify_key(&key, "webhook"),
        // E-mail is not configured on this server: nothing can be owed on it.
        CibaStore::notify_key(&key, "email"),
    ];
    let puts: Vec<(String, Vec<u8>)> = owed.iter().map(|k| (k.clone(), b"{}".to_vec())).collect();
    s.approvals.store.write(&puts, &[]).await.unwrap();
    countersign_approvals::delivery::resume_deliveries(&s.approvals);
    for k in &owed {
        assert!(gone(&s, k).await, "{k} still owed");
    }
    assert!(hooks.got.lock().unwrap().is_empty());
}

fn record_key(auth_req_id: &str) -> String {
    CibaStore::request_key(&Secret::new(auth_req_id).sha256())
}

/// The stored record of `auth_req_id`.
fn record(s: &Server, auth_req_id: &str) -> serde_json::Value {
    let raw = s
        .approvals
        .store
        .get_raw_blocking(&record_key(auth_req_id))
        .unwrap();
    serde_json::from_slice(&raw.unwrap()).unwrap()
}

/// The stored record of `auth_req_id`, changed by `f` and written back.
async fn change_record(s: &Server, auth_req_id: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v = record(s, auth_req_id);
    f(&mut v);
    s.approvals
        .store
        .write(
            &[(record_key(auth_req_id), serde_json::to_vec(&v).unwrap())],
            &[],
        )
        .await
        .unwrap();
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn resume_takes_up_each_kind_of_owed_delivery() {
    let s = Server::start().await;
    let pings = Receiver::start().await;
    let pushes = Receiver::start().await;
    let ping = s.add_client("agent-r-ping", "ping", Some(&pings.url)).await;
    let push = s
        .add_client("agent-r-push", "push", Some(&pushes.url))
        .await;
    let poll = s.add_client("agent-r-poll", "poll", None).await;
    let _alice = s.add_approver("apv_resume", 54).await;
    let tok = [("client_notification_token", "tok")];

    // A push request claimed by a decision that crashed, its grace long over: delivered as
    // expired, the claim left as it is.
    let crashed = push.ask("apv_resume", &tok).await;
    change_record(&s, &crashed, |v| {
        v["status"] = serde_json::json!("deciding");
        v["statement"]["expires_at"] = serde_json::json!(now() - 100);
    })
    .await;
    // A decided ping request that lost its client_notification_token: nothing to send with.
    let tokenless = ping.ask("apv_resume", &tok).await;
    change_record(&s, &tokenless, |v| {
        v["status"] = serde_json::json!("approved");
        v["client_notification_token"] = serde_json::Value::Null;
    })
    .await;
    // A decided poll request with an outbox record (poll clients are owed no delivery).
    let polled = poll.ask("apv_resume", &[]).await;
    change_record(&s, &polled, |v| v["status"] = serde_json::json!("approved")).await;
    // An outbox record whose request record does not parse.
    let junk = CibaStore::record_key_of(&"cd".repeat(32));
    s.approvals
        .store
        .write(
            &[
                (
                    outbox_of(&polled),
                    serde_json::to_vec(&serde_json::json!({"auth_req_id": polled})).unwrap(),
                ),
                (junk.clone(), b"not a record".to_vec()),
                (CibaStore::outbox_key(&junk), b"{}".to_vec()),
            ],
            &[],
        )
        .await
        .unwrap();

    countersign_approvals::delivery::resume_deliveries(&s.approvals);

    let (auth, body) = pushes.wait(1).await;
    assert_eq!(auth.as_deref(), Some("Bearer tok"));
    assert_eq!(body["auth_req_id"], crashed.as_str());
    assert_eq!(body["error"], "expired_token", "{body}");
    assert!(gone(&s, &outbox_of(&crashed)).await);
    assert_eq!(
        record(&s, &crashed)["status"],
        "deciding",
        "the crashed claim is left for recovery"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(pings.got.lock().unwrap().is_empty());
    assert_eq!(pushes.got.lock().unwrap().len(), 1);
    for owed in [
        outbox_of(&tokenless),
        outbox_of(&polled),
        CibaStore::outbox_key(&junk),
    ] {
        assert!(stored(&s, &owed), "{owed} was dropped");
    }
}

#[tokio::test]
async fn a_ping_decided_before_its_expiry_is_not_expired_by_the_timer() {
    let s = Server::start().await;
    let rx = Receiver::start().await;
    let (client, alice, id) =
        ask_expiring_ping(&s, &rx, ("agent-early", "apv_early", 55), "tok", "2").await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "deny").await;
    let (_, body) = rx.wait(1).await;
    assert_eq!(body["auth_req_id"], id.as_str());
    // Past the expiry the timer finds the request decided and leaves it so.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (st, v) = client.token(&id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
    assert_eq!(rx.got.lock().unwrap().len(), 1);
}
