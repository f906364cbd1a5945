//! The approval store under concurrency, and the clean-up of old requests.

use std::time::Duration;

use countersign_approvals::cleanup::sweep;
use countersign_approvals::{CibaStore, Secret};
use serde_json::Value;

use crate::common::*;

/// A second handle on the same signed-in approver (same passkey, same session).
fn same_approver(a: &Approver) -> Approver {
    Approver {
        passkey: a.passkey.clone(),
        cookie: a.cookie.clone(),
        csrf: a.csrf.clone(),
        url: a.url.clone(),
        http: a.http.clone(),
        enrolment_index: a.enrolment_index,
        secure_cookie: a.secure_cookie,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_of_one_request_log_exactly_one() {
    let s = Server::start().await;
    let client = s.add_client("agent-race", "poll", None).await;
    let alice = s.add_approver("apv_race", 11).await;
    for round in 0..3 {
        let auth_req_id = client.ask("apv_race", &[]).await;
        let rid = alice.only_request().await;
        let before = s.tree_size();
        // Valid, distinct assertions for both decisions, sent all at once.
        let ch_approve = alice.challenge(&rid, "approve").await;
        let ch_deny = alice.challenge(&rid, "deny").await;
        let mut tasks = Vec::new();
        for i in 0..12 {
            let decision = if i % 3 == 2 { "deny" } else { "approve" };
            let ch = if decision == "deny" {
                &ch_deny
            } else {
                &ch_approve
            };
            let cred = alice.sign(ch, ORIGIN);
            let (a, rid) = (same_approver(&alice), rid.clone());
            tasks.push(tokio::spawn(async move {
                let (st, v) = a.finish(&rid, decision, &cred).await;
                (decision, st, v)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (decision, st, v) = t.await.unwrap();
            match st {
                201 => winners.push((decision, v)),
                409 => assert!(
                    ["in_progress", "already_decided"].contains(&v["error"].as_str().unwrap()),
                    "{v}"
                ),
                _ => panic!("round {round}: unexpected answer {st} {v}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (decision, receipt) = &winners[0];
        assert_eq!(
            s.tree_size(),
            before + 1,
            "round {round}: exactly one decision is logged"
        );
        assert_eq!(receipt["log_index"].as_u64(), Some(before));

        // Tokens are issued once, however many ask at the same time.
        let mut polls = Vec::new();
        for _ in 0..8 {
            let (c, id) = (client.clone(), auth_req_id.clone());
            polls.push(tokio::spawn(async move { c.token(&id).await }));
        }
        let mut issued = 0;
        for p in polls {
            let (st, v) = p.await.unwrap();
            match (*decision, st) {
                ("approve", 200) => {
                    issued += 1;
                    let (_, claims) = verify_jwt(&s, v["access_token"].as_str().unwrap()).await;
                    assert_eq!(claims["log_index"].as_u64(), Some(before));
                }
                ("approve", 400) => assert_eq!(v["error"], "invalid_grant", "{v}"),
                ("deny", 400) => assert_eq!(v["error"], "access_denied", "{v}"),
                _ => panic!("round {round}: token answered {st} {v}"),
            }
        }
        if *decision == "approve" {
            assert_eq!(issued, 1, "round {round}");
        }
        assert!(alice.inbox().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_flows_in_parallel_each_get_their_own_decision() {
    let s = Server::start().await;
    let client = s.add_client("agent-par", "poll", None).await;
    let mut approvers = Vec::new();
    for i in 0..6 {
        approvers.push(s.add_approver(&format!("apv_par{i}"), 100 + i).await);
    }
    let before = s.tree_size();
    let mut tasks = Vec::new();
    for (i, a) in approvers.into_iter().enumerate() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for n in 0..5 {
                let msg = format!("Flow {i}-{n}");
                let id = client
                    .ask(&format!("apv_par{i}"), &[("binding_message", msg.as_str())])
                    .await;
                let rid = a.only_request().await;
                let decision = if n == 4 { "deny" } else { "approve" };
                a.decide(&rid, decision).await;
                let (st, v) = client.token(&id).await;
                got.push((decision, st, v));
            }
            got
        }));
    }
    let mut approved = 0;
    for t in tasks {
        for (decision, st, v) in t.await.unwrap() {
            if decision == "approve" {
                assert_eq!(st, 200, "{v}");
                approved += 1;
            } else {
                assert_eq!(v["error"], "access_denied", "{v}");
            }
        }
    }
    assert_eq!(approved, 24);
    assert_eq!(s.tree_size(), before + 30);
}

/// Whether any of a request's records is still stored.
fn records_left(s: &Server, auth_req_id: &str, request_id: &str, approver: &str) -> Vec<String> {
    let c = &s.approvals;
    let key = CibaStore::request_key(&Secret::new(auth_req_id).sha256());
    let mut left: Vec<String> = [
        key.clone(),
        CibaStore::public_id_key(request_id),
        CibaStore::pending_key(approver, request_id),
        CibaStore::outbox_key(&key),
        CibaStore::notify_key(&key, "webhook"),
        CibaStore::notify_key(&key, "email"),
    ]
    .into_iter()
    .filter(|k| c.store.get_raw_blocking(k).unwrap().is_some())
    .collect();
    for (k, _) in c.store.scan_blocking("x/", 100_000).unwrap() {
        if k.ends_with(&format!("/{request_id}")) {
            left.push(k);
        }
    }
    left
}

async fn request_id_of(s: &Server, auth_req_id: &str) -> String {
    let c = &s.approvals;
    let key = CibaStore::request_key(&Secret::new(auth_req_id).sha256());
    let v: Value = serde_json::from_slice(&c.store.get_raw(&key).await.unwrap().unwrap()).unwrap();
    v["request_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn cleanup_deletes_old_requests_and_keeps_recent_evidence() {
    // A webhook that never acknowledges: every request's notification stays owed until the
    // clean-up deletes it with the request.
    let hooks = Receiver::start().await;
    hooks
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let hook_url = hooks.url.clone();
    let s = Server::start_with(move |mut c| {
        c.webhook_url = Some(hook_url);
        c.webhook_secret = Some(Secret::new("hook-key"));
        c.request_retention_secs = 3600;
        // The sweeps below are called directly, with a chosen clock.
        c.cleanup_interval = Duration::from_secs(3600);
        c
    })
    .await;
    let c = s.approvals.clone();
    let client = s.add_client("agent-old", "poll", None).await;
    let alice = s.add_approver("apv_old", 21).await;

    // An old approved request, an old one nobody decided (expires in 1 s), a recent approved
    // one. The approved one lives 60 s: it must still be open when alice decides it, however
    // slowly a loaded machine runs the test (with 1 s it was sometimes gone from her inbox).
    let old = client.ask("apv_old", &[("requested_expiry", "60")]).await;
    let old_rid = alice.only_request().await;
    alice.decide(&old_rid, "approve").await;
    let (st, v) = client.token(&old).await;
    assert_eq!(st, 200, "{v}");
    let undecided = client.ask("apv_old", &[("requested_expiry", "1")]).await;
    let undecided_rid = request_id_of(&s, &undecided).await;
    let recent = client.ask("apv_old", &[("requested_expiry", "600")]).await;
    let recent_rid = request_id_of(&s, &recent).await;
    alice.decide(&recent_rid, "approve").await;
    // A request stored before the clean-up index existed: no x/ key, no marker.
    let legacy = client.ask("apv_old", &[("requested_expiry", "1")]).await;
    let legacy_rid = request_id_of(&s, &legacy).await;
    let xkeys: Vec<String> = c
        .store
        .scan("x/", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(&format!("/{legacy_rid}")))
        .collect();
    assert_eq!(xkeys.len(), 1);
    c.store
        .write(&[], &[xkeys[0].clone(), "v/x-index".to_owned()])
        .await
        .unwrap();

    // A push request whose client never acknowledges its delivery (here: of its expiry).
    let rx = Receiver::start().await;
    rx.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let pusher = s.add_client("agent-old-push", "push", Some(&rx.url)).await;
    let unheard = pusher
        .ask(
            "apv_old",
            &[
                ("client_notification_token", "push-tok"),
                ("requested_expiry", "1"),
            ],
        )
        .await;
    let unheard_rid = request_id_of(&s, &unheard).await;
    let outbox = CibaStore::outbox_key(&CibaStore::request_key(&Secret::new(&unheard).sha256()));
    let (_, body) = rx.wait_refused(1).await;
    assert_eq!(body["error"], "expired_token");
    assert!(
        c.store.get_raw(&outbox).await.unwrap().is_some(),
        "still owed"
    );

    let owed = CibaStore::notify_key(
        &CibaStore::request_key(&Secret::new(&old).sha256()),
        "webhook",
    );
    assert!(
        c.store.get_raw(&owed).await.unwrap().is_some(),
        "webhook still owed"
    );

    // Within the retention window nothing goes, and the evidence is served.
    let t0 = now();
    assert_eq!(sweep(&c, t0 + 3000).await.unwrap(), 0);
    let (st, body) = client.evidence(&old, None).await;
    assert_eq!(st, 200, "{body}");
    assert!(
        c.store.get_raw("v/x-index").await.unwrap().is_some(),
        "reindexed"
    );

    // Past it, the old requests go (the legacy one through the rebuilt index), the recent stays
    // (it expires 600 s after it was asked, so its records stay until about t0 + 4200).
    let later = t0 + 60 + 3600 + 5;
    assert_eq!(sweep(&c, later).await.unwrap(), 4);
    for (id, rid) in [
        (&old, &old_rid),
        (&undecided, &undecided_rid),
        (&legacy, &legacy_rid),
        (&unheard, &unheard_rid),
    ] {
        assert_eq!(
            records_left(&s, id, rid, "apv_old"),
            Vec::<String>::new(),
            "{rid}"
        );
    }
    // A decision's evidence outlives its request's records (kept apart, for the evidence
    // retention); an undecided request leaves none.
    let (st, body) = client.evidence(&old, None).await;
    assert_eq!(st, 200, "{body}");
    let got = json_of(client.evidence(&undecided, None).await);
    assert_refused(
        "evidence of a deleted undecided request",
        &got,
        404,
        "not_found",
        &["no decided request"],
    );
    let (st, v) = client.token(&old).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
    let (st, body) = client.evidence(&recent, None).await;
    assert_eq!(st, 200, "{body}");
    assert!(!records_left(&s, &recent, &recent_rid, "apv_old").is_empty());
    let (st, v) = client.token(&recent).await;
    assert_eq!(st, 200, "{v}");
    // Sweeping again finds nothing more.
    assert_eq!(sweep(&c, later).await.unwrap(), 0);
}

#[tokio::test]
async fn cleanup_runs_in_the_background() {
    let s = Server::start_with(|mut c| {
        c.request_retention_secs = 1;
        c.cleanup_interval = Duration::from_millis(200);
        c
    })
    .await;
    let client = s.add_client("agent-bg", "poll", None).await;
    let alice = s.add_approver("apv_bg", 31).await;
    // 5 s: still open when alice decides it on a loaded machine, soon expired after.
    let short = client.ask("apv_bg", &[("requested_expiry", "5")]).await;
    let short_rid = alice.only_request().await;
    alice.decide(&short_rid, "approve").await;
    let (st, body) = client.evidence(&short, None).await;
    assert_eq!(st, 200, "{body}");
    let long = client.ask("apv_bg", &[("requested_expiry", "600")]).await;
    let long_rid = alice.only_request().await;
    alice.decide(&long_rid, "deny").await;

    let mut gone = false;
    for _ in 0..200 {
        if records_left(&s, &short, &short_rid, "apv_bg").is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the expired request was cleaned up");
    let (st, body) = client.evidence(&short, None).await;
    assert_eq!(st, 200, "its evidence record outlives it: {body}");
    let (st, v) = client.token(&long).await;
    assert_eq!(v["error"], "access_denied", "{st} {v}");
    let (st, body) = client.evidence(&long, None).await;
    assert_eq!(st, 200, "a denial has evidence too: {body}");
}

#[tokio::test]
async fn sessions_are_stored_and_expired_ones_swept() {
    let s = Server::start_with(|mut c| {
        c.session_ttl_secs = 2;
        c.cleanup_interval = Duration::from_secs(3600);
        c
    })
    .await;
    let c = s.approvals.clone();
    let alice = s.add_approver("apv_ttl", 31).await;
    assert!(alice.inbox().await.is_empty());
    let stored = c.store.scan("s/", 100).await.unwrap();
    assert_eq!(stored.len(), 1, "one stored session");
    assert!(
        !String::from_utf8_lossy(&stored[0].1).contains(alice.cookie.split('=').nth(1).unwrap()),
        "the cookie itself is never stored"
    );
    let t = now();
    assert_eq!(
        countersign_approvals::passkeys::sweep_sessions(&c.store, t)
            .await
            .unwrap(),
        0,
        "a live session stays"
    );
    assert_eq!(
        countersign_approvals::passkeys::sweep_sessions(&c.store, t + 3)
            .await
            .unwrap(),
        1
    );
    assert!(c.store.scan("s/", 100).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let got = json_of(alice.get("/v1/inbox").await);
    assert_refused(
        "an expired session is refused",
        &got,
        401,
        "login_required",
        &["sign in"],
    );
}
