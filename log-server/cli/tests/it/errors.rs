//! Every refusal: bad client credentials, malformed requests, and approvals that must fail
//! (closed) without anything reaching the log.

use std::time::Duration;

use countersign_testvectors::AssertOptions;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn bad_client_credentials() {
    let s = Server::start().await;
    let client = s.add_client("agent-a", "poll", None).await;
    let _alice = s.add_approver("apv_alice", 11).await;
    let wrong = Client {
        secret: "nope".into(),
        ..client.clone()
    };
    let r = s
        .http
        .post(format!("{}/bc-authorize", s.url))
        .basic_auth("agent-a", Some("nope"))
        .form(&[("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let (st, v) = wrong.token("whatever").await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
    let unknown = Client {
        id: "ghost".into(),
        ..client.clone()
    };
    assert_eq!(unknown.bc_authorize("apv_alice", &[]).await.0, 401);
    // A Basic client may not switch to client_secret_post.
    let r = s
        .http
        .post(format!("{}/token", s.url))
        .form(&[
            ("client_id", "agent-a"),
            ("client_secret", client.secret.as_str()),
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // No credentials at all.
    let r = s
        .http
        .post(format!("{}/token", s.url))
        .form(&[("grant_type", "urn:openid:params:grant-type:ciba")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The admin API needs the admin token.
    let r = s
        .http
        .post(format!("{}/v1/admin/clients", s.url))
        .bearer_auth("not-the-token")
        .json(&json!({"client_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn malformed_bc_authorize() {
    let s = Server::start().await;
    let client = s.add_client("agent-m", "poll", None).await;
    let _alice = s.add_approver("apv_alice", 12).await;
    let (st, v) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_noenrol", "email": "n@example.com"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let long = "x".repeat(200);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("scope", "")], "invalid_request"),
        (vec![("scope", "payments")], "invalid_scope"),
        (vec![("login_hint", "")], "invalid_request"),
        (vec![("id_token_hint", "a.b.c")], "invalid_request"),
        (vec![("login_hint_token", "tok")], "invalid_request"),
        (vec![("login_hint", "apv_nobody")], "unknown_user_id"),
        (
            vec![("login_hint", "nobody@example.com")],
            "unknown_user_id",
        ),
        (vec![("login_hint", "apv_noenrol")], "unknown_user_id"),
        (vec![("binding_message", "")], "invalid_request"),
        (
            vec![("binding_message", "line\nbreak")],
            "invalid_binding_message",
        ),
        (
            vec![("binding_message", "Pay \u{202E}00.24 EUR")],
            "invalid_binding_message",
        ),
        (
            vec![("binding_message", long.as_str())],
            "invalid_binding_message",
        ),
        (vec![("authorization_details", "")], "invalid_request"),
        (
            vec![("authorization_details", "not json")],
            "invalid_authorization_details",
        ),
        (
            vec![("authorization_details", r#"{"type":"x"}"#)],
            "invalid_authorization_details",
        ),
        (
            vec![("authorization_details", "[]")],
            "invalid_authorization_details",
        ),
        (
            vec![("authorization_details", r#"[{"amount":1}]"#)],
            "invalid_authorization_details",
        ),
        (
            vec![("authorization_details", r#"[{"type":"x","a":1,"a":2}]"#)],
            "invalid_authorization_details",
        ),
        (
            vec![(
                "authorization_details",
                r#"[{"type":"x","n":9007199254740993}]"#,
            )],
            "invalid_authorization_details",
        ),
        (vec![("requested_expiry", "0")], "invalid_request"),
        (vec![("requested_expiry", "999999")], "invalid_request"),
        (vec![("requested_expiry", "-5")], "invalid_request"),
        (vec![("requested_expiry", "1e3")], "invalid_request"),
        (vec![("request", "eyJ.x.y")], "invalid_request"),
    ];
    for (extra, want) in cases {
        let (st, v) = client.bc_authorize("apv_alice", &extra).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (400, Some(want)),
            "{extra:?}: {v}"
        );
        assert!(v["error_description"].is_string());
    }
    // Two hints at once.
    let (st, v) = client
        .bc_authorize("apv_alice", &[("id_token_hint", "x.y.z")])
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    // A parameter given twice; a JSON body instead of a form.
    let r = s
        .http
        .post(format!("{}/bc-authorize", s.url))
        .basic_auth(&client.id, Some(&client.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("scope=openid&scope=openid&login_hint=apv_alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .http
        .post(format!("{}/bc-authorize", s.url))
        .basic_auth(&client.id, Some(&client.secret))
        .json(&json!({"scope": "openid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Oversized body.
    let huge = "a".repeat(200 * 1024);
    let r = s
        .http
        .post(format!("{}/bc-authorize", s.url))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("scope", "openid"), ("binding_message", huge.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // A disabled approver cannot be asked.
    let (st, _) = s
        .admin_post("/v1/admin/approvers/apv_alice/disable", json!({}))
        .await;
    assert_eq!(st, 200);
    let (st, v) = client.bc_authorize("apv_alice", &[]).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("unknown_user_id")));
    // Token endpoint: wrong grant type, missing auth_req_id.
    let (st, v) = client
        .form("/token", &[("grant_type", "authorization_code")])
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (st, v) = client
        .form(
            "/token",
            &[("grant_type", "urn:openid:params:grant-type:ciba")],
        )
        .await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));
    let (st, v) = client.token("unknown-id").await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn failed_approvals_log_nothing() {
    let s = Server::start().await;
    let client = s.add_client("agent-f", "poll", None).await;
    let other_client = s.add_client("agent-g", "poll", None).await;
    let alice = s.add_approver("apv_alice", 13).await;
    let bob = s.add_approver("apv_bob", 14).await;
    let a_id = client.ask("apv_alice", &[]).await;
    let b_id = client
        .ask(
            "apv_alice",
            &[("binding_message", "Pay 9999.00 EUR to EVIL")],
        )
        .await;
    let list = alice.inbox().await;
    assert_eq!(list.len(), 2);
    let rid_of = |msg: &str| {
        list.iter().find(|r| r["binding_message"] == msg).unwrap()["request_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ra = rid_of("Pay 42.00 EUR to ACME");
    let rb = rid_of("Pay 9999.00 EUR to EVIL");
    let size = s.tree_size();

    // Another client's auth_req_id is invalid_grant.
    let (st, v) = other_client.token(&a_id).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));

    // Assertion over another request's statement.
    let ch_b = alice.challenge(&rb, "approve").await;
    let cred = alice.sign(&ch_b, ORIGIN);
    let (st, v) = alice.finish(&ra, "approve", &cred).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_assertion")),
        "{v}"
    );
    // Assertion over approve submitted as deny.
    let ch_a = alice.challenge(&ra, "approve").await;
    let cred = alice.sign(&ch_a, ORIGIN);
    let (st, _) = alice.finish(&ra, "deny", &cred).await;
    assert_eq!(st, 400);
    // Wrong origin.
    let cred = alice.sign(&ch_a, "https://evil.test");
    let (st, v) = alice.finish(&ra, "approve", &cred).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_assertion")),
        "{v}"
    );
    // Bit-flipped signature; user verification missing.
    let bad = {
        let mut pk = alice.passkey.lock().unwrap();
        let mut o = AssertOptions::new(&ch_a, ORIGIN);
        o.flip_signature_bit = Some(9);
        let a = pk.assert_with(&o);
        pk.assertion_json(&a)
    };
    assert_eq!(alice.finish(&ra, "approve", &bad).await.0, 400);
    let no_uv = {
        let mut pk = alice.passkey.lock().unwrap();
        let mut o = AssertOptions::new(&ch_a, ORIGIN);
        o.flags = countersign_verifier::flags::UP;
        let a = pk.assert_with(&o);
        pk.assertion_json(&a)
    };
    assert_eq!(alice.finish(&ra, "approve", &no_uv).await.0, 400);
    // Another approver: cannot see, start or finish Alice's request, even with a valid
    // signature of their own; and Alice cannot use Bob's passkey.
    assert!(bob.inbox().await.is_empty());
    let (st, _) = bob
        .post(
            &format!("/v1/requests/{ra}/decide/start"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(st, 404);
    let bob_cred = bob.sign(&ch_a, ORIGIN);
    let (st, _) = bob.finish(&ra, "approve", &bob_cred).await;
    assert_eq!(
        st, 404,
        "not Bob's request, even with his own valid passkey"
    );
    let (st, _) = alice.finish(&ra, "approve", &bob_cred).await;
    assert_eq!(st, 403);
    let (st, _) = bob.get(&format!("/approve/requests/{ra}")).await;
    assert_eq!(st, 404);
    // CSRF: no token, wrong token, no session.
    let no_csrf = post_json(
        &s.http,
        &format!("{}/v1/requests/{ra}/decide/start", s.url),
        &alice.cookie,
        "",
        &json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(no_csrf.0, 403);
    let bad_csrf = post_json(
        &s.http,
        &format!("{}/v1/requests/{ra}/decide/start", s.url),
        &alice.cookie,
        "forged",
        &json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(bad_csrf.0, 403);
    let no_session = post_json(
        &s.http,
        &format!("{}/v1/requests/{ra}/decide/finish", s.url),
        "",
        "x",
        &json!({"decision": "approve", "credential": cred}),
    )
    .await;
    assert_eq!(no_session.0, 401);

    assert_eq!(
        s.tree_size(),
        size,
        "nothing was logged for the failed approvals"
    );
    let (st, v) = client.token(&a_id).await;
    assert_eq!(v["error"], "authorization_pending", "{st} {v}");

    // The real approval works, and replaying its assertion is refused without a new leaf.
    let good = alice.sign(&ch_a, ORIGIN);
    let (st, v) = alice.finish(&ra, "approve", &good).await;
    assert_eq!(st, 201, "{v}");
    let size = s.tree_size();
    let (st, v) = alice.finish(&ra, "approve", &good).await;
    assert_eq!((st, v["error"].as_str()), (409, Some("already_decided")));
    let (st, _) = alice.finish(&ra, "deny", &good).await;
    assert_eq!(st, 409);
    // The same assertion replayed against the other request does not verify there.
    let (st, _) = alice.finish(&rb, "approve", &good).await;
    assert_eq!(st, 400);
    assert_eq!(s.tree_size(), size, "replays add nothing");
    let _ = b_id;
}

#[tokio::test]
async fn expired_request_cannot_be_decided() {
    let s = Server::start().await;
    let client = s.add_client("agent-e", "poll", None).await;
    let alice = s.add_approver("apv_alice", 15).await;
    let id = client.ask("apv_alice", &[("requested_expiry", "1")]).await;
    let rid = alice.only_request().await;
    let ch = alice.challenge(&rid, "approve").await;
    let cred = alice.sign(&ch, ORIGIN);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let size = s.tree_size();
    let (st, v) = alice.finish(&rid, "approve", &cred).await;
    assert_eq!((st, v["error"].as_str()), (410, Some("expired")), "{v}");
    let (st, _) = alice
        .post(
            &format!("/v1/requests/{rid}/decide/start"),
            &json!({"decision": "deny"}),
        )
        .await;
    assert_eq!(st, 410);
    assert_eq!(s.tree_size(), size, "nothing logged after expiry");
    let (st, v) = client.token(&id).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("expired_token")));
    assert!(alice.inbox().await.is_empty());
    assert_eq!(client.evidence(&id, None).await.0, 409);
}

/// The one-time token of the enrolment link in an admin answer.
fn link_token(v: &Value) -> String {
    let url = v["enrolment_url"].as_str().unwrap();
    url.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_expired_enrolment_link_enrols_nothing() {
    let s = Server::start_with(|mut c| {
        // Two seconds: whole seconds are compared, so a link made just before a second ends
        // still has one whole second of validity.
        c.enrolment_link_ttl_secs = 2;
        c
    })
    .await;
    let (st, v) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_late", "email": "late@example.com"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let token = link_token(&v);
    // The link's page works while it is valid, and not after.
    let page = |t: String| {
        let (http, url) = (s.http.clone(), s.url.clone());
        async move {
            http.get(format!("{url}/enrol/{t}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(page(token.clone()).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(page(token.clone()).await, 410);
    let pk =
        countersign_testvectors::SoftPasskey::new(countersign_testvectors::Alg::Es256, 23, RP_ID);
    let (st, v) = s.enrol(&token, &pk, ORIGIN).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (410, Some("invalid_link")),
        "{v}"
    );
    assert_eq!(s.tree_size(), 0, "nothing was logged");
    // A new link for the same approver works.
    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_late/enrolment-link", json!({}))
        .await;
    assert_eq!(st, 201, "{v}");
    let token = link_token(&v);
    let (st, v) = s.enrol(&token, &pk, ORIGIN).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(s.tree_size(), 1);
}

#[tokio::test]
async fn enrolment_link_is_one_time_and_checked() {
    let s = Server::start().await;
    let (st, v) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_dan", "email": "dan@example.com"}),
        )
        .await;
    assert_eq!(st, 201);
    let token = link_token(&v);
    let pk =
        countersign_testvectors::SoftPasskey::new(countersign_testvectors::Alg::EdDsa, 21, RP_ID);
    // Wrong origin: refused, nothing logged, link still usable.
    let (st, v) = s.enrol(&token, &pk, "https://evil.test").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_registration")),
        "{v}"
    );
    assert_eq!(s.tree_size(), 0);
    let (st, v) = s.enrol(&token, &pk, ORIGIN).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(s.tree_size(), 1);
    let pk2 =
        countersign_testvectors::SoftPasskey::new(countersign_testvectors::Alg::Rs256, 22, RP_ID);
    let (st, _) = s.enrol(&token, &pk2, ORIGIN).await;
    assert_eq!(st, 410, "a link enrols once");
    // Ids that look like e-mails are refused; duplicates conflict.
    let (st, _) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "dan@example.com", "email": "d2@example.com"}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_dan", "email": "d3@example.com"}),
        )
        .await;
    assert_eq!(st, 409);
    // An AAGUID allowlist refuses other authenticators.
    let s2 = Server::start_with(|mut c| {
        c.aaguid_allowlist = Some(vec![[9u8; 16]]);
        c
    })
    .await;
    let (_, v) = s2
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_e", "email": "e@example.com"}),
        )
        .await;
    let token = link_token(&v);
    let (st, _) = s2.enrol(&token, &pk, ORIGIN).await;
    assert_eq!(st, 400);
    assert_eq!(s2.tree_size(), 0);
}
