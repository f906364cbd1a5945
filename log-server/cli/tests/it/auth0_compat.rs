//! What agents built on Auth0's SDKs send (issue 16): `/oauth/token` as the token endpoint,
//! `login_hint` as an `iss_sub` JSON object, `audience` (into the access token's `aud`),
//! `requested_expiry` as a string, client authentication by `client_secret_post`. Every
//! malformed form is a clear OAuth error and writes nothing; a hint for another issuer is
//! answered exactly as an unknown approver is (no approver oracle).

use serde_json::{json, Value};

use crate::common::*;

/// Registers a client as an Auth0 application authenticates: `client_secret_post` (the SDK never
/// uses HTTP Basic).
async fn auth0_client(s: &Server, id: &str) -> Client {
    let (st, v) = s
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": id, "secret": format!("secret-of-{id}"),
                   "auth_method": "client_secret_post"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    Client {
        id: id.into(),
        secret: format!("secret-of-{id}"),
        url: s.url.clone(),
        http: s.http.clone(),
    }
}

/// A form POST authenticated as Auth0's SDK does it: `client_id` and `client_secret` in the body.
async fn post_form(c: &Client, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let mut p: Vec<(&str, &str)> = vec![("client_id", &c.id), ("client_secret", &c.secret)];
    p.extend_from_slice(params);
    let r = c
        .http
        .post(format!("{}{path}", c.url))
        .form(&p)
        .send()
        .await
        .unwrap();
    answer_of(r).await
}

fn iss_sub(iss: &str, sub: &str) -> String {
    json!({"format": "iss_sub", "iss": iss, "sub": sub}).to_string()
}

/// `/bc-authorize` with [`ask_params`], `login_hint` replaced by `hint` and `extra` added.
async fn ask(c: &Client, hint: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut p: Vec<(&str, &str)> = ask_params("x")
        .into_iter()
        .filter(|(k, _)| *k != "login_hint")
        .collect();
    p.push(("login_hint", hint));
    p.extend_from_slice(extra);
    post_form(c, "/bc-authorize", &p).await
}

async fn oauth_token(c: &Client, auth_req_id: &str) -> (u16, Value) {
    post_form(
        c,
        "/oauth/token",
        &[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", auth_req_id),
        ],
    )
    .await
}

#[tokio::test]
async fn an_auth0_shaped_request_is_approved_and_collected_at_oauth_token() {
    let s = Server::start().await;
    let client = auth0_client(&s, "agent-a0").await;
    let alice = s.add_approver("apv_alice", 11).await;

    // Auth0's SDK writes the issuer as https://<domain>/; ours has no trailing slash.
    let hint = iss_sub(&format!("{}/", s.url), "apv_alice");
    let (st, v) = ask(
        &client,
        &hint,
        &[
            ("audience", "https://api.example/payments"),
            ("requested_expiry", "120"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["expires_in"], 120, "requested_expiry sent as a string");
    let auth_req_id = v["auth_req_id"].as_str().unwrap().to_owned();

    let (st, v) = oauth_token(&client, &auth_req_id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("authorization_pending")),
        "{v}"
    );

    let request_id = alice.only_request().await;
    alice.decide(&request_id, "approve").await;
    let (st, tokens) = oauth_token(&client, &auth_req_id).await;
    assert_eq!(st, 200, "{tokens}");
    let (_, at) = verify_jwt(&s, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(at["aud"], "https://api.example/payments");
    assert_eq!(at["client_id"], "agent-a0", "who the token was issued to");
    assert_eq!(at["sub"], "apv_alice");
    assert_eq!(at["authorization_details"][0]["creditorName"], "ACME");
    let (_, id) = verify_jwt(&s, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["aud"], "agent-a0", "an ID token is for the client");

    // The alias is the token endpoint itself: tokens are issued once, whichever path asks.
    let (st, v) = post_form(
        &client,
        "/token",
        &[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", &auth_req_id),
        ],
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );

    // The issuer without the trailing slash, and no audience (Auth0 sends an empty one):
    // the access token is for the client, as before.
    let hint = iss_sub(&s.url, "apv_alice");
    let (st, v) = ask(&client, &hint, &[("audience", "")]).await;
    assert_eq!(st, 200, "{v}");
    let auth_req_id = v["auth_req_id"].as_str().unwrap().to_owned();
    let request_id = alice.only_request().await;
    alice.decide(&request_id, "approve").await;
    let (st, tokens) = oauth_token(&client, &auth_req_id).await;
    assert_eq!(st, 200, "{tokens}");
    let (_, at) = verify_jwt(&s, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(at["aud"], "agent-a0");
}

#[tokio::test]
async fn malformed_auth0_parameters_are_refused_and_nothing_is_written() {
    let s = Server::start().await;
    let client = auth0_client(&s, "agent-a0").await;
    let alice = s.add_approver("apv_alice", 12).await;
    let size = s.tree_size();
    let here = format!("{}/", s.url);
    let good = iss_sub(&here, "apv_alice");

    let malformed = [
        ("truncated JSON", r#"{"format":"iss_sub","iss":"#.to_owned()),
        ("not an object", "{}".to_owned()),
        (
            "another format",
            json!({"format": "email", "iss": here, "sub": "apv_alice"}).to_string(),
        ),
        (
            "no sub",
            json!({"format": "iss_sub", "iss": here}).to_string(),
        ),
        ("empty sub", iss_sub(&here, "")),
        (
            "sub not a string",
            json!({"format": "iss_sub", "iss": here, "sub": 7}).to_string(),
        ),
        (
            "an extra member",
            json!({"format": "iss_sub", "iss": here, "sub": "apv_alice", "x": 1}).to_string(),
        ),
        (
            "a member twice",
            format!(r#"{{"format":"iss_sub","iss":"{here}","sub":"apv_alice","sub":"apv_bob"}}"#),
        ),
    ];
    for (what, hint) in &malformed {
        let got = ask(&client, hint, &[]).await;
        assert_refused(
            what,
            &got,
            400,
            "invalid_request",
            &["login_hint", "iss_sub"],
        );
    }

    let long = "a".repeat(513);
    for (what, audience, words) in [
        (
            "oversized audience",
            long.as_str(),
            &["audience", "512"][..],
        ),
        (
            "audience with a control character",
            "api\u{7}",
            &["audience", "control"][..],
        ),
        (
            "audience with a newline",
            "https://api.example/\n",
            &["audience"][..],
        ),
        (
            "audience with a bidi override",
            "api\u{202e}",
            &["audience"][..],
        ),
    ] {
        let got = ask(&client, &good, &[("audience", audience)]).await;
        assert_refused(what, &got, 400, "invalid_request", words);
    }
    for bad in ["abc", "12.5", "-5", "0x10"] {
        let got = ask(&client, &good, &[("requested_expiry", bad)]).await;
        assert_refused(bad, &got, 400, "invalid_request", &["requested_expiry"]);
    }

    // Another issuer, or an unknown subject here: the answer of an unknown approver id, to the
    // byte, even when the subject exists.
    let unknown = ask(&client, "apv_nobody", &[]).await;
    assert_refused("unknown id", &unknown, 400, "unknown_user_id", &[]);
    for (what, hint) in [
        (
            "another issuer",
            iss_sub("https://tenant.auth0.example/", "apv_alice"),
        ),
        (
            "our issuer as http",
            iss_sub(&here.replace("http://", "https://"), "apv_alice"),
        ),
        (
            "two trailing slashes",
            iss_sub(&format!("{here}/"), "apv_alice"),
        ),
        ("unknown subject", iss_sub(&here, "apv_nobody")),
        (
            "an e-mail as subject",
            iss_sub(&here, "apv_alice@example.com"),
        ),
    ] {
        let got = ask(&client, &hint, &[]).await;
        assert_eq!(got, unknown, "{what}: must read as an unknown approver");
    }

    assert_eq!(s.tree_size(), size, "nothing logged");
    assert!(
        alice.inbox().await.is_empty(),
        "nothing asked of the approver"
    );
    let now = countersign_approvals::util::now_secs();
    assert_eq!(
        s.approvals.store.open_requests_of_client("agent-a0", now).0,
        0,
        "no request stored"
    );

    // The same client, hint and audience well-formed: accepted (the refusals were the forms).
    let (st, v) = ask(&client, &good, &[("audience", &"a".repeat(512))]).await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn oauth_token_refuses_what_token_refuses() {
    let s = Server::start().await;
    let client = auth0_client(&s, "agent-a0").await;
    // Wrong secret: the token endpoint's 401, at the alias too.
    let wrong = Client {
        secret: "not-the-secret".into(),
        ..client.clone()
    };
    let (st, v) = oauth_token(&wrong, "whatever").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    let (st, v) = post_form(
        &client,
        "/oauth/token",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("unsupported_grant_type")),
        "{v}"
    );
    let (st, v) = oauth_token(&client, "no-such-auth-req-id").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
}

#[tokio::test]
async fn a_client_assertion_may_name_the_issuer_as_auth0_writes_it() {
    use base64::Engine;
    let s = Server::start().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
        "x": B64URL.encode(key.verifying_key().as_bytes())}]});
    let (st, v) = s
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": "agent-a0-jwt", "auth_method": "private_key_jwt", "jwks": jwks}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let alice = s.add_approver("apv_alice", 13).await;
    let post = |path: &'static str, assertion: String, params: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let mut form = vec![
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ),
                ("client_assertion", assertion),
            ];
            form.extend(params);
            let r = s
                .http
                .post(format!("{}{path}", s.url))
                .form(&form)
                .send()
                .await
                .unwrap();
            answer_of(r).await
        }
    };
    let ask = |aud: String, jti: &'static str| {
        let a = crate::flows::client_assertion(&key, "agent-a0-jwt", &aud, 60, jti);
        post(
            "/bc-authorize",
            a,
            ask_params("apv_alice")
                .into_iter()
                .map(|(k, v)| (k, v.to_owned()))
                .collect(),
        )
    };
    // The auth0 package's assertion audience: `https://<domain>/`.
    let (st, v) = ask(format!("{}/", s.url), "jti-a").await;
    assert_eq!(st, 200, "{v}");
    let auth_req_id = v["auth_req_id"].as_str().unwrap().to_owned();
    // Only that one slash: another path or issuer is still refused.
    for (aud, jti) in [
        (format!("{}//", s.url), "jti-b"),
        (format!("{}/approve", s.url), "jti-c"),
        ("https://tenant.auth0.example/".to_owned(), "jti-d"),
    ] {
        let got = ask(aud.clone(), jti).await;
        assert_refused(
            &aud,
            &got,
            401,
            "invalid_client",
            &["authentication failed"],
        );
    }
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let a = crate::flows::client_assertion(
        &key,
        "agent-a0-jwt",
        &format!("{}/oauth/token", s.url),
        60,
        "jti-e",
    );
    let (st, v) = post(
        "/oauth/token",
        a,
        vec![
            ("grant_type", "urn:openid:params:grant-type:ciba".to_owned()),
            ("auth_req_id", auth_req_id),
        ],
    )
    .await;
    assert_eq!(st, 200, "{v}");
}
