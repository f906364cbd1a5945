//! What a SIGKILLed server owed is delivered by the next start: ping and push outcomes (push
//! tokens exactly as first issued, so they are still issued once), the `expired_token` of a
//! request left open, and the approver's webhook of a request still open (not of decided ones).
//! Approvers stay signed in. Nothing is delivered twice, and a signed-out or disabled approver's
//! session stays refused.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{verify_jwt, Api, Receiver, ORIGIN, RP_ID};
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
    let r = api
        .http
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
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
    let http = reqwest::Client::new();
    server.wait_ready(&http).await;
    let api = Api {
        url: server.url.clone(),
        admin: server.read("admin.token"),
        http,
    };
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
    let (st, _) = poll.token(&lasting).await;
    assert_eq!(st, 400);
    // Nothing new was logged for the redeliveries.
    let cp = api
        .http
        .get(format!("{}/checkpoint", api.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let size: u64 = cp.lines().nth(1).unwrap().parse().unwrap();
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
    let (st, _) = alice.get("/v1/inbox").await;
    assert_eq!(st, 401, "a signed-out session stays signed out");
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
    let (st, _) = bob.get("/v1/inbox").await;
    assert_eq!(st, 401);
    server.kill();
}
