//! The admin API's refusals and its list, remove, disable and link answers, request by request.

use serde_json::{json, Value};

use crate::common::*;

async fn admin(s: &Api, method: reqwest::Method, path: &str) -> (u16, Value) {
    let r = s
        .http
        .request(method, format!("{}{path}", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A 4xx with this code whose description contains `text`.
#[track_caller]
fn refused(got: (u16, Value), status: u16, code: &str, text: &str) {
    let (st, v) = got;
    assert_eq!(st, status, "{v}");
    assert_eq!(v["error"], code, "{v}");
    let d = v["error_description"].as_str().unwrap_or_default();
    assert!(d.contains(text), "{d:?} does not say {text:?}");
}

const ED_KEY: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

#[tokio::test]
async fn add_client_refuses_each_inconsistent_registration() {
    let s = Server::start().await;
    let add = |body: Value| s.admin_post("/v1/admin/clients", body);
    let ok_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": ED_KEY});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"client_id": "a@b.c"}), "client_id must be 1-255"),
        (json!({"client_id": "a/b"}), "client_id must be 1-255"),
        (json!({"client_id": ""}), "client_id must be 1-255"),
        (
            json!({"client_id": "c1", "notification_endpoint": "https://n.test/cb"}),
            "poll clients have no notification endpoint",
        ),
        (
            json!({"client_id": "c1", "mode": "ping"}),
            "ping and push clients need a notification endpoint",
        ),
        (
            json!({"client_id": "c1", "mode": "push", "notification_endpoint": "ftp://n.test/"}),
            "notification_endpoint must be an http(s) URL without a fragment",
        ),
        (
            json!({"client_id": "c1", "mode": "push", "notification_endpoint": "http://n.test/cb"}),
            "notification_endpoint must be https (push delivers tokens to it)",
        ),
        (
            json!({"client_id": "c1", "mode": "ping", "notification_endpoint": "http://10.0.0.1/cb"}),
            "plain http is accepted for loopback addresses only",
        ),
        (
            json!({"client_id": "c1", "mode": "ping", "notification_endpoint": "https://n.test/#f"}),
            "notification_endpoint must be an http(s) URL without a fragment",
        ),
        (
            json!({"client_id": "c1", "mode": "ping",
                   "notification_endpoint": format!("https://n.test/{}", "a".repeat(2048))}),
            "notification_endpoint must be an http(s) URL without a fragment",
        ),
        (
            json!({"client_id": "c1", "auth_method": "private_key_jwt"}),
            "private_key_jwt clients need their public keys (jwks)",
        ),
        (
            json!({"client_id": "c1", "jwks": {"keys": [ok_jwk]}}),
            "jwks is only for private_key_jwt clients",
        ),
        (
            json!({"client_id": "c1", "auth_method": "private_key_jwt",
                   "jwks": {"keys": [ok_jwk]}, "secret": "s"}),
            "private_key_jwt clients have no secret",
        ),
        (
            json!({"client_id": "c1", "secret": ""}),
            "secret must be 1 to 256 bytes",
        ),
        (
            json!({"client_id": "c1", "secret": "s".repeat(257)}),
            "secret must be 1 to 256 bytes",
        ),
        (json!({"client_id": "c1", "surprise": 1}), ""),
    ];
    for (body, text) in cases {
        refused(add(body.clone()).await, 400, "invalid_request", text);
    }
    let jwt =
        |jwks: Value| json!({"client_id": "c1", "auth_method": "private_key_jwt", "jwks": jwks});
    let jwks_cases: Vec<(Value, &str)> = vec![
        (json!({}), "jwks: no keys array"),
        (json!({"keys": []}), "jwks: give 1 to 20 keys"),
        (
            json!({"keys": vec![ok_jwk.clone(); 21]}),
            "jwks: give 1 to 20 keys",
        ),
        (
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_KEY, "d": ED_KEY}]}),
            "jwks: a key holds a private part",
        ),
        (
            json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}),
            "jwks: only Ed25519 (OKP) and P-256 (EC) keys are supported",
        ),
        (
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": ED_KEY}]}),
            "jwks: only Ed25519 (OKP) and P-256 (EC) keys are supported",
        ),
        (
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_KEY,
                             "kid": "k".repeat(17 * 1024)}]}),
            "jwks: too large",
        ),
    ];
    for (jwks, text) in jwks_cases {
        refused(add(jwt(jwks)).await, 400, "invalid_request", text);
    }
    // None of them was stored.
    let (st, v) = admin(&s, reqwest::Method::GET, "/v1/admin/clients").await;
    assert_eq!(st, 200);
    assert_eq!(v["clients"], json!([]), "{v}");

    // A P-256 key is accepted, with no secret in the answer.
    let (st, v) = add(jwt(
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": ED_KEY,
                                            "y": ED_KEY}]}),
    ))
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["auth_method"], "private_key_jwt");
    assert!(v.get("client_secret").is_none(), "{v}");
}

#[tokio::test]
async fn clients_are_listed_conflict_and_are_removed_once() {
    let s = Server::start().await;
    // Without a secret the server generates one and shows it once; it authenticates.
    let (st, v) = s
        .admin_post("/v1/admin/clients", json!({"client_id": "agent-gen"}))
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["mode"].as_str(), v["auth_method"].as_str()),
        (Some("poll"), Some("client_secret_basic"))
    );
    let secret = v["client_secret"].as_str().unwrap().to_owned();
    let gen = Client {
        id: "agent-gen".into(),
        secret,
        url: s.url.clone(),
        http: s.http.clone(),
    };
    // A bogus auth_req_id is refused as such, so the client itself authenticated.
    let (st, v) = gen.token("not-a-request").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );

    s.add_client("agent-ping", "ping", Some("http://127.0.0.1:9/cb"))
        .await;
    refused(
        s.admin_post(
            "/v1/admin/clients",
            json!({"client_id": "agent-ping", "secret": "x"}),
        )
        .await,
        409,
        "conflict",
        "a client with this id exists",
    );
    let (st, v) = admin(&s, reqwest::Method::GET, "/v1/admin/clients").await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["agent-gen", "agent-ping"]);
    let ping = &v["clients"][1];
    assert_eq!(ping["mode"], "ping");
    assert_eq!(ping["notification_endpoint"], "http://127.0.0.1:9/cb");
    assert!(ping.get("client_secret").is_none() && ping.get("secret_hash").is_none());

    let (st, _) = admin(&s, reqwest::Method::DELETE, "/v1/admin/clients/agent-gen").await;
    assert_eq!(st, 204);
    // The removed client no longer authenticates, even with the secret it had.
    let (st, v) = gen.token("not-a-request").await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    refused(
        admin(&s, reqwest::Method::DELETE, "/v1/admin/clients/agent-gen").await,
        404,
        "not_found",
        "no such client",
    );
    let (_, v) = admin(&s, reqwest::Method::GET, "/v1/admin/clients").await;
    assert_eq!(v["clients"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn add_approver_checks_email_name_and_uniqueness() {
    let s = Server::start().await;
    let add = |body: Value| s.admin_post("/v1/admin/approvers", body);
    for email in [
        "no-at-sign",
        "@example.com",
        "a@localhost",
        "a b@example.com",
        "a/b@example.com",
    ] {
        refused(
            add(json!({"approver_id": "apv_x", "email": email})).await,
            400,
            "invalid_request",
            "email is not an e-mail address",
        );
    }
    refused(
        add(json!({"approver_id": "apv_x", "email": format!("{}@example.com", "a".repeat(250))}))
            .await,
        400,
        "invalid_request",
        "email is not an e-mail address",
    );
    for name in [String::new(), "n".repeat(129), "Eve\u{202E}".into()] {
        refused(
            add(json!({"approver_id": "apv_x", "email": "x@example.com", "name": name})).await,
            400,
            "invalid_request",
            "name must be 1 to 128 characters of plain text",
        );
    }
    // E-mails are compared trimmed and lowercased.
    let (st, v) = add(json!({"approver_id": "apv_x", "email": " X@Example.COM "})).await;
    assert_eq!(st, 201, "{v}");
    assert!(v["enrolment_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/enrol/", s.url)));
    refused(
        add(json!({"approver_id": "apv_y", "email": "x@example.com"})).await,
        409,
        "conflict",
        "an approver with this e-mail exists",
    );
    refused(
        add(json!({"approver_id": "apv_x", "email": "other@example.com"})).await,
        409,
        "conflict",
        "an approver with this id exists",
    );
    let (st, v) = admin(&s, reqwest::Method::GET, "/v1/admin/approvers").await;
    assert_eq!(st, 200);
    let created = v["approvers"][0]["created_at"].as_u64().unwrap();
    assert!(
        created.abs_diff(countersign_approvals::util::now_secs()) < 60,
        "{v}"
    );
    assert_eq!(
        v["approvers"],
        json!([{"approver_id": "apv_x", "email": "x@example.com", "name": null,
                "disabled": false, "credentials": [], "created_at": created}])
    );
}

/// Without an id the server draws an opaque one; an operator's id is still taken, with a warning
/// when it carries the person's name or e-mail.
#[tokio::test]
async fn approver_ids_are_opaque_unless_the_operator_chooses() {
    let s = Server::start().await;
    let add = |body: Value| s.admin_post("/v1/admin/approvers", body);
    let (st, v) = add(json!({"email": "jane.doe@example.com", "name": "Jane Doe"})).await;
    assert_eq!(st, 201, "{v}");
    let id = v["approver_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("apv_") && id.len() == 36, "{id}");
    assert!(countersign_verifier::is_valid_id(&id));
    assert!(v.get("warning").is_none(), "{v}");
    let (st, v) = add(json!({"email": "john.roe@example.com"})).await;
    assert_eq!(st, 201, "{v}");
    assert_ne!(v["approver_id"].as_str().unwrap(), id, "ids are random");
    let (st, v) =
        add(json!({"approver_id": "jane.smith", "email": "jane.smith@example.com"})).await;
    assert_eq!((st, &v["approver_id"]), (201, &json!("jane.smith")), "{v}");
    assert!(v["warning"].as_str().unwrap().contains("public log"), "{v}");
    let (st, v) = add(json!({"approver_id": "ops-17", "email": "max@example.com"})).await;
    assert_eq!(st, 201, "{v}");
    assert!(v.get("warning").is_none(), "{v}");
    let (_, v) = admin(&s, reqwest::Method::GET, "/v1/admin/approvers").await;
    assert_eq!(v["approvers"].as_array().unwrap().len(), 4, "{v}");
}

#[tokio::test]
async fn disabling_lists_the_approver_and_stops_new_links() {
    let s = Server::start().await;
    let alice = s.add_approver("apv_alice", 41).await;
    let (st, v) = admin(&s, reqwest::Method::GET, "/v1/admin/approvers").await;
    assert_eq!(st, 200);
    let creds = v["approvers"][0]["credentials"].as_array().unwrap();
    assert_eq!(creds.len(), 1, "{v}");
    assert_eq!(creds[0]["enrolment_index"], alice.enrolment_index);
    assert_eq!(creds[0]["alg"], -7, "ES256 as its COSE number");

    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_alice/enrolment-link", json!({}))
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["approver_id"], "apv_alice");
    assert!(v["expires_at"].as_u64().unwrap() > 0);

    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_alice/disable", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["disabled"], true);
    assert_eq!(v["email"], "apv_alice@example.com");
    refused(
        s.admin_post("/v1/admin/approvers/apv_alice/enrolment-link", json!({}))
            .await,
        404,
        "not_found",
        "no such active approver",
    );
    refused(
        s.admin_post("/v1/admin/approvers/apv_nobody/enrolment-link", json!({}))
            .await,
        404,
        "not_found",
        "no such active approver",
    );
    refused(
        s.admin_post("/v1/admin/approvers/apv_nobody/disable", json!({}))
            .await,
        404,
        "not_found",
        "no such approver",
    );
    // The signed-in session of the disabled approver is gone.
    let (st, _) = alice.get("/v1/inbox").await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn token_keys_rotate_and_list() {
    let s = Server::start().await;
    let (st, before) = admin(&s, reqwest::Method::GET, "/v1/admin/token-keys").await;
    assert_eq!(st, 200);
    let n = before["keys"].as_array().unwrap().len();
    let (st, v) = s.admin_post("/v1/admin/token-keys/rotate", json!({})).await;
    assert_eq!(st, 200, "{v}");
    let kid = v["kid"].as_str().unwrap();
    let (_, after) = admin(&s, reqwest::Method::GET, "/v1/admin/token-keys").await;
    assert_eq!(after, v["jwks"]);
    let keys = after["keys"].as_array().unwrap();
    assert_eq!(keys.len(), n + 1);
    assert!(keys.iter().any(|k| k["kid"] == kid), "{after}");
    // The public JWKS is the same set.
    assert_eq!(s.get_json("/jwks.json").await, after);
    // The front end's Debug shows its URL and nothing of its keys or secrets.
    assert_eq!(
        format!("{:?}", s.approvals),
        format!("Approvals {{ public_url: {:?}, .. }}", s.url)
    );
}

/// Push delivers tokens to a client's notification endpoint: plain http only to this machine,
/// or anywhere when the operator allows it.
#[tokio::test]
async fn plain_http_notification_endpoints_are_for_loopback_unless_allowed() {
    let s = Server::start().await;
    for (id, url) in [
        ("c-v4", "http://127.0.0.1:9/cb"),
        ("c-v6", "http://[::1]:9/cb"),
        ("c-name", "http://localhost:9/cb"),
        ("c-tls", "https://n.test/cb"),
    ] {
        let (st, v) = s
            .admin_post(
                "/v1/admin/clients",
                json!({"client_id": id, "mode": "push", "notification_endpoint": url}),
            )
            .await;
        assert_eq!(st, 201, "{url}: {v}");
    }
    let open = Server::start_with(|mut c| {
        c.allow_http_notification_endpoints = true;
        c
    })
    .await;
    let (st, v) = open
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": "c1", "mode": "ping", "notification_endpoint": "http://n.test/cb"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}
