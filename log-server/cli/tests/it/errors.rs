//! Every refusal: bad client credentials, malformed requests, and approvals that must fail
//! (closed) without anything reaching the log.

use std::time::Duration;

use base64::Engine;
use countersign_testvectors::AssertOptions;
use serde_json::{json, Value};

use crate::common::*;

/// `/bc-authorize` is no approver oracle (spec/design/README.md): every hint that reaches no
/// one (no such id or e-mail address, an approver without a passkey yet, a disabled one) gets the
/// very same answer, and a request refused for anything else is refused alike whoever it names.
#[tokio::test]
async fn login_hint_is_no_approver_oracle() {
    let s = Server::start().await;
    let client = s.add_client("agent-o", "poll", None).await;
    let _alice = s.add_approver("apv_alice", 71).await;
    let _bob = s.add_approver("apv_bob", 72).await;
    let (st, _) = s
        .admin_post("/v1/admin/approvers/apv_bob/disable", json!({}))
        .await;
    assert_eq!(st, 200);
    let (st, v) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_new", "email": "new@example.com"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // The whole answer but its date: status, headers, body bytes.
    let raw = |params: Vec<(&'static str, String)>| {
        let c = client.clone();
        async move {
            let r = c
                .http
                .post(format!("{}/bc-authorize", c.url))
                .basic_auth(&c.id, Some(&c.secret))
                .form(&params)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let mut headers: Vec<(String, String)> = r
                .headers()
                .iter()
                .filter(|(k, _)| *k != "date")
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            headers.sort();
            (status, headers, r.bytes().await.unwrap().to_vec())
        }
    };
    let ask = |hint: &str, set: &[(&'static str, &'static str)]| {
        let mut p: Vec<(&'static str, String)> = ask_params("")
            .into_iter()
            .filter(|(k, _)| *k != "login_hint" && !set.iter().any(|(sk, _)| sk == k))
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        p.push(("login_hint", hint.to_owned()));
        p.extend(set.iter().map(|(k, v)| (*k, (*v).to_owned())));
        raw(p)
    };
    let unknown = ask("apv_nobody", &[]).await;
    assert_eq!(unknown.0, 400);
    let body: Value = serde_json::from_slice(&unknown.2).unwrap();
    assert_eq!(body["error"], "unknown_user_id", "{body}");
    for hint in [
        "nobody@example.com",
        "apv_new",
        "new@example.com",
        "NEW@Example.com",
        "apv_bob",
        "apv_bob@example.com",
    ] {
        let got = ask(hint, &[]).await;
        assert_eq!(
            got,
            unknown,
            "{hint}: {} vs {}",
            String::from_utf8_lossy(&got.2),
            String::from_utf8_lossy(&unknown.2)
        );
    }
    // Checks of the request itself come before the approver is looked up.
    for set in [
        &[("binding_message", "line\nbreak")][..],
        &[("authorization_details", "not json")][..],
        &[("requested_expiry", "soon")][..],
    ] {
        let reachable = ask("apv_alice", set).await;
        assert_eq!(reachable.0, 400, "{set:?}");
        for hint in [
            "apv_alice@example.com",
            "apv_nobody",
            "nobody@example.com",
            "apv_new",
            "apv_bob",
        ] {
            assert_eq!(ask(hint, set).await, reachable, "{hint}, {set:?}");
        }
    }
    // The one who can be asked is.
    assert_eq!(ask("apv_alice@example.com", &[]).await.0, 200);
}

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
    assert!(r.headers().contains_key("www-authenticate"));
    assert_refused(
        "wrong secret",
        &answer_of(r).await,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    let got = wrong.token("whatever").await;
    assert_refused(
        "wrong secret at /token",
        &got,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    let unknown = Client {
        id: "ghost".into(),
        ..client.clone()
    };
    let got = unknown.bc_authorize("apv_alice", &[]).await;
    // The same answer as a wrong secret: no telling which client ids exist.
    assert_refused(
        "unknown client",
        &got,
        401,
        "invalid_client",
        &["authentication failed"],
    );
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
    assert_refused(
        "client_secret_post for a Basic client",
        &answer_of(r).await,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    // No credentials at all.
    let r = s
        .http
        .post(format!("{}/token", s.url))
        .form(&[("grant_type", "urn:openid:params:grant-type:ciba")])
        .send()
        .await
        .unwrap();
    assert_refused(
        "no credentials",
        &answer_of(r).await,
        401,
        "invalid_client",
        &["client"],
    );
    // The admin API needs the admin token.
    let r = s
        .http
        .post(format!("{}/v1/admin/clients", s.url))
        .bearer_auth("not-the-token")
        .json(&json!({"client_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_refused(
        "a wrong admin token",
        &answer_of(r).await,
        401,
        "invalid_token",
        &["admin"],
    );
}

/// `/bc-authorize` parameters: the well-formed ones for `approver` without `omit`, with `set`
/// replacing or adding (an empty value is sent empty, not left out).
fn params<'a>(
    approver: &'a str,
    omit: &[&str],
    set: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut p = ask_params(approver);
    p.retain(|(k, _)| !omit.contains(k) && !set.iter().any(|(sk, _)| sk == k));
    p.extend_from_slice(set);
    p
}

/// A refused request: its parameters, error code, and words its description must hold.
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a [&'a str]);

#[tokio::test]
async fn malformed_bc_authorize() {
    let s = Server::start().await;
    let client = s.add_client("agent-m", "poll", None).await;
    let alice = s.add_approver("apv_alice", 12).await;
    let (st, v) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_noenrol", "email": "n@example.com"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // An ID token this server issued for Alice (id_token_hint), and the same token with its
    // signature changed.
    let id = client.ask("apv_alice", &[]).await;
    alice.decide(&alice.only_request().await, "approve").await;
    let (st, t) = client.token(&id).await;
    assert_eq!(st, 200, "{t}");
    let id_token = t["id_token"].as_str().unwrap().to_owned();
    // An ID token for an approver of the same name, issued by another server.
    let foreign = {
        let s2 = Server::start().await;
        let c2 = s2.add_client("agent-m", "poll", None).await;
        let a2 = s2.add_approver("apv_alice", 12).await;
        let id = c2.ask("apv_alice", &[]).await;
        a2.decide(&a2.only_request().await, "approve").await;
        let (st, t) = c2.token(&id).await;
        assert_eq!(st, 200, "{t}");
        t["id_token"].as_str().unwrap().to_owned()
    };
    let forged = {
        let (head, sig) = id_token.rsplit_once('.').unwrap();
        let mut sig = B64URL.decode(sig).unwrap();
        sig[0] ^= 1;
        format!("{head}.{}", B64URL.encode(sig))
    };
    let long = "x".repeat(200);
    let long_scope = format!("openid {}", "s".repeat(1100));
    let a = "apv_alice";
    let hints = ["login_hint"];
    // (parameters, error code, words the description must hold)
    let cases: Vec<Case> = vec![
        (
            params(a, &["scope"], &[]),
            "invalid_request",
            &["scope", "required"],
        ),
        (
            params(a, &[], &[("scope", "")]),
            "invalid_request",
            &["scope", "required"],
        ),
        (
            params(a, &[], &[("scope", "payments")]),
            "invalid_scope",
            &["openid"],
        ),
        (
            params(a, &[], &[("scope", "openid \u{7}x")]),
            "invalid_scope",
            &["control"],
        ),
        (
            params(a, &[], &[("scope", &long_scope)]),
            "invalid_request",
            &["scope", "longer"],
        ),
        // Hints: exactly one, and an empty value counts as none (RFC 6749 section 3.1).
        (
            params(a, &hints, &[]),
            "invalid_request",
            &["exactly one", "login_hint"],
        ),
        (
            params(a, &[], &[("login_hint", "")]),
            "invalid_request",
            &["exactly one"],
        ),
        (
            params(a, &hints, &[("id_token_hint", "")]),
            "invalid_request",
            &["exactly one"],
        ),
        (
            params(a, &hints, &[("login_hint_token", "")]),
            "invalid_request",
            &["exactly one"],
        ),
        (
            params(a, &[], &[("id_token_hint", &id_token)]),
            "invalid_request",
            &["exactly one"],
        ),
        (
            params(a, &[], &[("login_hint_token", "tok")]),
            "invalid_request",
            &["exactly one"],
        ),
        (
            params(a, &hints, &[("id_token_hint", "a.b.c")]),
            "invalid_request",
            &["id_token_hint", "not an id token of this server"],
        ),
        (
            params(a, &hints, &[("id_token_hint", &forged)]),
            "invalid_request",
            &["id_token_hint", "not an id token of this server"],
        ),
        (
            params(a, &hints, &[("id_token_hint", &foreign)]),
            "invalid_request",
            &["id_token_hint", "not an id token of this server"],
        ),
        (
            params(a, &hints, &[("login_hint_token", "tok")]),
            "expired_login_hint_token",
            &["login_hint_token", "not supported"],
        ),
        (
            params(a, &[], &[("login_hint", "apv_nobody")]),
            "unknown_user_id",
            &["no approver"],
        ),
        (
            params(a, &[], &[("login_hint", "nobody@example.com")]),
            "unknown_user_id",
            &["no approver"],
        ),
        (
            params(a, &[], &[("login_hint", "apv_noenrol")]),
            "unknown_user_id",
            &["no approver"],
        ),
        (
            params(a, &["binding_message"], &[]),
            "invalid_request",
            &["binding_message", "required"],
        ),
        (
            params(a, &[], &[("binding_message", "")]),
            "invalid_request",
            &["binding_message", "required"],
        ),
        (
            params(a, &[], &[("binding_message", "line\nbreak")]),
            "invalid_binding_message",
            &["binding_message", "control"],
        ),
        (
            params(a, &[], &[("binding_message", "Pay \u{202E}00.24 EUR")]),
            "invalid_binding_message",
            &["bidirectional"],
        ),
        (
            params(a, &[], &[("binding_message", &long)]),
            "invalid_binding_message",
            &["1 to "],
        ),
        (
            params(a, &["authorization_details"], &[]),
            "invalid_request",
            &["authorization_details", "required"],
        ),
        (
            params(a, &[], &[("authorization_details", "")]),
            "invalid_request",
            &["authorization_details", "required"],
        ),
        (
            params(a, &[], &[("authorization_details", "not json")]),
            "invalid_authorization_details",
            &["not json"],
        ),
        (
            params(a, &[], &[("authorization_details", r#"{"type":"x"}"#)]),
            "invalid_authorization_details",
            &["not an array"],
        ),
        (
            params(a, &[], &[("authorization_details", "[]")]),
            "invalid_authorization_details",
            &["empty"],
        ),
        (
            params(a, &[], &[("authorization_details", r#"[{"amount":1}]"#)]),
            "invalid_authorization_details",
            &["no string type"],
        ),
        (
            params(
                a,
                &[],
                &[("authorization_details", r#"[{"type":"x","a":1,"a":2}]"#)],
            ),
            "invalid_authorization_details",
            &["not json"],
        ),
        (
            params(
                a,
                &[],
                &[(
                    "authorization_details",
                    r#"[{"type":"x","n":9007199254740993}]"#,
                )],
            ),
            "invalid_authorization_details",
            &["2^53"],
        ),
        // What the approver reads must be what is signed: each class of character that
        // displays otherwise or as nothing, named with its member.
        (
            params(
                a,
                &[],
                &[(
                    "authorization_details",
                    "[{\"type\":\"p\",\"creditorAccount\":{\"iban\":\"DE89\u{202E}3704\"}}]",
                )],
            ),
            "invalid_authorization_details",
            &[
                "authorization_details[0].creditorAccount.iban",
                "U+202E",
                "bidirectional",
            ],
        ),
        (
            params(
                a,
                &[],
                &[(
                    "authorization_details",
                    "[{\"type\":\"p\",\"amount\":\"1\",\"amount\u{200B}\":\"9999\"}]",
                )],
            ),
            "invalid_authorization_details",
            &[
                "authorization_details[0].amount\\u{200B}",
                "name",
                "invisible",
            ],
        ),
        (
            params(
                a,
                &[],
                &[(
                    "authorization_details",
                    "[{\"type\":\"p\",\"to\":[\"A\u{E0041}\"]}]",
                )],
            ),
            "invalid_authorization_details",
            &["authorization_details[0].to[0]", "U+E0041", "tag character"],
        ),
        (
            params(
                a,
                &[],
                &[(
                    "authorization_details",
                    "[{\"type\":\"p\",\"m\":\"a\\u001b[2J\"}]",
                )],
            ),
            "invalid_authorization_details",
            &["authorization_details[0].m", "U+001B", "control"],
        ),
        (
            params(
                a,
                &[],
                &[(
                    "authorization_details",
                    "[{\"type\":\"p\",\"amount\":\"1\",\"\u{430}mount\":\"9999\"}]",
                )],
            ),
            "invalid_authorization_details",
            &["authorization_details[0]", "look alike", "amount"],
        ),
        (
            params(a, &[], &[("binding_message", "Pay 1 EUR to AC\u{200D}ME")]),
            "invalid_binding_message",
            &["invisible"],
        ),
        (
            params(a, &[], &[("requested_expiry", "0")]),
            "invalid_request",
            &["requested_expiry", "between"],
        ),
        (
            params(a, &[], &[("requested_expiry", "999999")]),
            "invalid_request",
            &["requested_expiry", "between"],
        ),
        (
            params(a, &[], &[("requested_expiry", "-5")]),
            "invalid_request",
            &["requested_expiry", "positive integer"],
        ),
        (
            params(a, &[], &[("requested_expiry", "1e3")]),
            "invalid_request",
            &["requested_expiry", "positive integer"],
        ),
        (
            params(a, &[], &[("request", "eyJ.x.y")]),
            "invalid_request",
            &["signed"],
        ),
    ];
    let size = s.tree_size();
    for (p, code, words) in &cases {
        let got = client.form("/bc-authorize", p).await;
        assert_refused(&format!("{p:?}"), &got, 400, code, words);
    }
    assert!(
        alice.inbox().await.is_empty(),
        "no refused request reached the inbox"
    );
    assert_eq!(s.tree_size(), size);
    // An ID token of this server names its approver (CIBA section 7.1), and an empty
    // requested_expiry is the default expiry.
    let (st, v) = client
        .form(
            "/bc-authorize",
            &params(a, &hints, &[("id_token_hint", &id_token)]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = client
        .form(
            "/bc-authorize",
            &params(a, &[], &[("requested_expiry", "")]),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let cfg = countersign_approvals::CibaConfig::new(String::new());
    assert_eq!(
        v["expires_in"].as_u64(),
        Some(cfg.default_expiry_secs),
        "{v}"
    );
    let inbox = alice.inbox().await;
    assert_eq!(inbox.len(), 2, "{inbox:?}");
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
    assert_refused(
        "scope twice",
        &answer_of(r).await,
        400,
        "invalid_request",
        &["scope", "more than once"],
    );
    let r = s
        .http
        .post(format!("{}/bc-authorize", s.url))
        .basic_auth(&client.id, Some(&client.secret))
        .json(&json!({"scope": "openid"}))
        .send()
        .await
        .unwrap();
    assert_refused(
        "a JSON body",
        &answer_of(r).await,
        400,
        "invalid_request",
        &["form"],
    );
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
    assert_refused(
        "a huge body",
        &answer_of(r).await,
        413,
        "payload_too_large",
        &["too large"],
    );
    // A disabled approver cannot be asked.
    let (st, _) = s
        .admin_post("/v1/admin/approvers/apv_alice/disable", json!({}))
        .await;
    assert_eq!(st, 200);
    let got = client.bc_authorize("apv_alice", &[]).await;
    assert_refused(
        "a disabled approver",
        &got,
        400,
        "unknown_user_id",
        &["no approver"],
    );
    // Token endpoint: wrong grant type, missing or empty auth_req_id, unknown auth_req_id.
    let got = client
        .form("/token", &[("grant_type", "authorization_code")])
        .await;
    assert_refused(
        "grant_type",
        &got,
        400,
        "unsupported_grant_type",
        &["urn:openid:params:grant-type:ciba"],
    );
    let got = client.form("/token", &[("auth_req_id", "x")]).await;
    assert_refused(
        "no grant_type",
        &got,
        400,
        "invalid_request",
        &["grant_type", "required"],
    );
    let got = client
        .form(
            "/token",
            &[("grant_type", "urn:openid:params:grant-type:ciba")],
        )
        .await;
    assert_refused(
        "no auth_req_id",
        &got,
        400,
        "invalid_request",
        &["auth_req_id", "required"],
    );
    let got = client.token("").await;
    assert_refused(
        "empty auth_req_id",
        &got,
        400,
        "invalid_request",
        &["auth_req_id", "required"],
    );
    let got = client.token("unknown-id").await;
    assert_refused(
        "unknown auth_req_id",
        &got,
        400,
        "invalid_grant",
        &["unknown"],
    );
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
    let got = alice.finish(&ra, "deny", &cred).await;
    assert_refused(
        "approve signed, deny sent",
        &got,
        400,
        "invalid_assertion",
        &[],
    );
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
    let got = alice.finish(&ra, "approve", &bad).await;
    assert_refused(
        "a flipped signature bit",
        &got,
        400,
        "invalid_assertion",
        &["signature"],
    );
    let no_uv = {
        let mut pk = alice.passkey.lock().unwrap();
        let mut o = AssertOptions::new(&ch_a, ORIGIN);
        o.flags = countersign_verifier::flags::UP;
        let a = pk.assert_with(&o);
        pk.assertion_json(&a)
    };
    let got = alice.finish(&ra, "approve", &no_uv).await;
    assert_refused(
        "no user verification",
        &got,
        400,
        "invalid_assertion",
        &["user verification"],
    );
    // Another approver: cannot see, start or finish Alice's request, even with a valid
    // signature of their own; and Alice cannot use Bob's passkey.
    assert!(bob.inbox().await.is_empty());
    let got = bob
        .post(
            &format!("/v1/requests/{ra}/decide/start"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_refused("Bob starts Alice's", &got, 404, "not_found", &["request"]);
    let bob_cred = bob.sign(&ch_a, ORIGIN);
    // Not Bob's request, even with his own valid passkey.
    let got = bob.finish(&ra, "approve", &bob_cred).await;
    assert_refused("Bob finishes Alice's", &got, 404, "not_found", &["request"]);
    let got = alice.finish(&ra, "approve", &bob_cred).await;
    assert_refused(
        "Alice with Bob's passkey",
        &got,
        403,
        "access_denied",
        &["not one of yours"],
    );
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
    assert_refused("no CSRF token", &no_csrf, 403, "csrf", &["reload"]);
    let bad_csrf = post_json(
        &s.http,
        &format!("{}/v1/requests/{ra}/decide/start", s.url),
        &alice.cookie,
        "forged",
        &json!({"decision": "approve"}),
    )
    .await;
    assert_refused("a forged CSRF token", &bad_csrf, 403, "csrf", &["reload"]);
    let no_session = post_json(
        &s.http,
        &format!("{}/v1/requests/{ra}/decide/finish", s.url),
        "",
        "x",
        &json!({"decision": "approve", "credential": cred}),
    )
    .await;
    assert_refused(
        "no session",
        &no_session,
        401,
        "login_required",
        &["sign in"],
    );

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
    let got = alice.finish(&ra, "approve", &good).await;
    assert_refused("a replay", &got, 409, "already_decided", &["already"]);
    let got = alice.finish(&ra, "deny", &good).await;
    assert_refused(
        "a replay as deny",
        &got,
        409,
        "already_decided",
        &["already"],
    );
    // The same assertion replayed against the other request does not verify there.
    let got = alice.finish(&rb, "approve", &good).await;
    assert_refused(
        "a replay on another request",
        &got,
        400,
        "invalid_assertion",
        &[],
    );
    assert_eq!(s.tree_size(), size, "replays add nothing");
    let _ = b_id;
}

#[tokio::test]
async fn expired_request_cannot_be_decided() {
    let s = Server::start().await;
    let client = s.add_client("agent-e", "poll", None).await;
    let alice = s.add_approver("apv_alice", 15).await;
    // Three seconds, so that a loaded machine still gets the challenge before the expiry;
    // whole seconds are compared, so the wait is one more.
    let id = client.ask("apv_alice", &[("requested_expiry", "3")]).await;
    let rid = alice.only_request().await;
    let ch = alice.challenge(&rid, "approve").await;
    let cred = alice.sign(&ch, ORIGIN);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let size = s.tree_size();
    let (st, v) = alice.finish(&rid, "approve", &cred).await;
    assert_eq!((st, v["error"].as_str()), (410, Some("expired")), "{v}");
    let got = alice
        .post(
            &format!("/v1/requests/{rid}/decide/start"),
            &json!({"decision": "deny"}),
        )
        .await;
    assert_refused("start after expiry", &got, 410, "expired", &["expired"]);
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
    let got = s.enrol(&token, &pk2, ORIGIN).await;
    assert_refused("a link enrols once", &got, 410, "invalid_link", &["link"]);
    // Ids that look like e-mails are refused; duplicates conflict.
    let got = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "dan@example.com", "email": "d2@example.com"}),
        )
        .await;
    assert_refused(
        "an e-mail as id",
        &got,
        400,
        "invalid_request",
        &["approver_id"],
    );
    let got = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_dan", "email": "d3@example.com"}),
        )
        .await;
    assert_refused("a duplicate approver", &got, 409, "conflict", &["exists"]);
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
    let got = s2.enrol(&token, &pk, ORIGIN).await;
    assert_refused(
        "an AAGUID not allowed",
        &got,
        400,
        "invalid_registration",
        &["aaguid"],
    );
    assert_eq!(s2.tree_size(), 0);
}
