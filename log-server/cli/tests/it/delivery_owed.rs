//! What the front end owes a client or an approver when the request, the client or the outcome
//! is not the usual one: an expired ping request, a push client removed before the decision, a
//! client endpoint that never answers, and owed records whose request is gone.

use std::time::Duration;

use countersign_approvals::{CibaStore, Secret};

use crate::common::*;

fn outbox_of(auth_req_id: &str) -> String {
    CibaStore::outbox_key(&CibaStore::request_key(&Secret::new(auth_req_id).sha256()))
}

/// Waits (up to 5 s) until `key` is no longer stored.
async fn gone(s: &Server, key: &str) -> bool {
    for _ in 0..100 {
        if s.approvals.store.get_raw(key).unwrap().is_none() {
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
    let client = s.add_client("agent-ping-x", "ping", Some(&rx.url)).await;
    let _alice = s.add_approver("apv_px", 51).await;
    let id = client
        .ask(
            "apv_px",
            &[
                ("client_notification_token", "ping-tok"),
                ("requested_expiry", "1"),
            ],
        )
        .await;
    let outbox = outbox_of(&id);
    assert!(s.approvals.store.get_raw(&outbox).unwrap().is_some());
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
    assert!(s
        .approvals
        .store
        .get_raw(&outbox_of(&id))
        .unwrap()
        .is_some());
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
        metrics = s
            .http
            .get(format!("{}/metrics", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
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
    assert!(s
        .approvals
        .store
        .get_raw(&outbox_of(&id))
        .unwrap()
        .is_some());
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
