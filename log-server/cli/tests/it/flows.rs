//! Complete flows: poll, ping and push, with tokens, evidence and the admin CLI.

use std::time::Duration;

use base64::Engine;

use countersign_verifier::{check_execution, BundlePolicy, EvidenceBundle, TlogProof};
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn discovery_and_jwks() {
    let s = Server::start().await;
    let v = s.get_json("/.well-known/openid-configuration").await;
    assert_eq!(v["issuer"], s.url);
    assert_eq!(
        v["backchannel_authentication_endpoint"],
        format!("{}/bc-authorize", s.url)
    );
    assert_eq!(v["token_endpoint"], format!("{}/token", s.url));
    assert_eq!(v["jwks_uri"], format!("{}/jwks.json", s.url));
    assert_eq!(
        v["backchannel_token_delivery_modes_supported"],
        json!(["poll", "ping", "push"])
    );
    assert_eq!(
        v["grant_types_supported"],
        json!(["urn:openid:params:grant-type:ciba"])
    );
    assert_eq!(v["id_token_signing_alg_values_supported"], json!(["EdDSA"]));
    assert!(v["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("client_secret_basic")));
    // Any type is accepted, which no list says: the member is left out.
    assert!(
        v.get("authorization_details_types_supported").is_none(),
        "{v}"
    );
    let (st, jwks) = s.admin_post("/v1/admin/token-keys/rotate", json!({})).await;
    assert_eq!(st, 200, "{jwks}");
    assert_eq!(
        jwks["jwks"]["keys"].as_array().unwrap().len(),
        2,
        "old key stays published"
    );
}

#[tokio::test]
async fn poll_flow_end_to_end() {
    let s = Server::start().await;
    let client = s.add_client("agent-pay", "poll", None).await;
    let alice = s.add_approver("apv_alice", 1).await;
    assert_eq!(s.tree_size(), 1, "the enrolment is logged");

    let auth_req_id = client
        .ask("apv_alice", &[("requested_expiry", "120")])
        .await;
    assert!(auth_req_id.len() >= 22, "at least 128 bits");
    let (st, v) = client.token(&auth_req_id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (st, v) = client.token(&auth_req_id).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("slow_down")), "{v}");

    let request_id = alice.only_request().await;
    let (st, page) = alice.get(&format!("/approve/requests/{request_id}")).await;
    assert_eq!(st, 200);
    assert!(page.contains("Pay 42.00 EUR to ACME") && page.contains("payment_initiation"));
    let receipt = alice.decide(&request_id, "approve").await;
    let index = receipt["log_index"].as_u64().unwrap();
    assert_eq!(index, 1);
    assert!(s.tree_size() >= 2);
    assert!(alice.inbox().await.is_empty());

    let (st, tokens) = client.token(&auth_req_id).await;
    assert_eq!(st, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let (_, at) = verify_jwt(&s, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(at["iss"], s.url);
    assert_eq!(at["sub"], "apv_alice");
    assert_eq!(at["aud"], "agent-pay");
    assert_eq!(at["client_id"], "agent-pay");
    assert_eq!(at["log_index"], index);
    assert_eq!(at["leaf_hash"], receipt["leaf_hash"]);
    assert_eq!(at["statement_hash"], receipt["statement_hash"]);
    assert_eq!(at["authorization_details"][0]["creditorName"], "ACME");
    assert!(at["jti"].is_string() && at["exp"].as_u64() > at["iat"].as_u64());
    let (_, id) = verify_jwt(&s, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["sub"], "apv_alice");
    assert_eq!(id["aud"], "agent-pay");
    assert_eq!(id["urn:openid:params:jwt:claim:auth_req_id"], auth_req_id);
    assert!(id.get("at_hash").is_none(), "at_hash only in push");

    // Tokens are issued once.
    let (st, v) = client.token(&auth_req_id).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));

    // The evidence verifies offline, binds the statement, and the executor check works.
    let (st, text) = client.evidence(&auth_req_id, None).await;
    assert_eq!(st, 200, "{text}");
    let bundle = EvidenceBundle::from_json(text.as_bytes()).unwrap();
    let verified = bundle.verify(&s.vkey, &BundlePolicy::default()).unwrap();
    assert_eq!(verified.decision_index, index);
    assert_eq!(verified.enrolment_index, alice.enrolment_index);
    assert_eq!(
        hex::encode(verified.statement_hash),
        at["statement_hash"].as_str().unwrap()
    );
    // A client's bundle names no one: opaque ids only (serve --evidence-include-parties).
    assert!(bundle.parties.is_none(), "{text}");
    assert!(!text.contains("@example.com"), "{text}");
    check_execution(&bundle.statement, &at["authorization_details"], None).unwrap();
    assert!(check_execution(
        &bundle.statement,
        &json!([{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"4200.00"},"creditorName":"ACME"}]),
        None
    )
    .is_err());
    for field in [
        "log_origin",
        "request_id",
        "client_id",
        "approver_id",
        "scope",
        "binding_message",
        "authorization_details",
        "requested_at",
        "expires_at",
        "decision",
    ] {
        let mut v: Value = serde_json::from_str(&text).unwrap();
        let st = &mut v["statement"][field];
        *st = match st {
            Value::String(x) if field == "decision" => {
                json!(if x == "approve" { "deny" } else { "approve" })
            }
            Value::String(x) => json!(format!("{x}x")),
            Value::Number(n) => json!(n.as_u64().unwrap() + 1),
            _ => {
                json!([{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "42.01"}}])
            }
        };
        let changed = EvidenceBundle::from_json(v.to_string().as_bytes()).unwrap();
        assert!(
            changed.verify(&s.vkey, &BundlePolicy::default()).is_err(),
            "changing statement.{field} must break the bundle"
        );
    }
    let (st, proof) = client.evidence(&auth_req_id, Some("tlog-proof")).await;
    assert_eq!(st, 200);
    let p = TlogProof::parse(&proof).unwrap();
    assert_eq!(p.index, index);
    assert_eq!(p.checkpoint, bundle.checkpoint);
    assert_eq!(
        p.to_text(),
        proof,
        "the server's text is the canonical form"
    );
    check_tlog_proof(&proof, &receipt, &s.vkey);

    // The approver's receipt page links to the same evidence.
    let (st, body) = alice
        .get(&format!("/approve/requests/{request_id}/evidence"))
        .await;
    assert_eq!(st, 200, "{body}");
    EvidenceBundle::from_json(body.as_bytes())
        .unwrap()
        .verify(&s.vkey, &BundlePolicy::default())
        .unwrap();
    // Another client may not fetch it.
    let other = s.add_client("agent-other", "poll", None).await;
    let got = json_of(other.evidence(&auth_req_id, None).await);
    assert_refused(
        "another client's evidence",
        &got,
        404,
        "not_found",
        &["no decided request"],
    );
}

/// The server's tlog-proof of a decision verifies with the verifier's own code, and every
/// mutation of it (its lines, index, hashes, checkpoint) is refused with the right error.
fn check_tlog_proof(proof: &str, receipt: &Value, vkey: &countersign_verifier::VerifierKey) {
    use countersign_verifier::{Hash, TlogProofError};
    let leaf = Hash::from_hex(receipt["leaf_hash"].as_str().unwrap()).unwrap();
    let cp = TlogProof::parse(proof)
        .unwrap()
        .verify(&leaf, vkey, &[])
        .unwrap();
    assert_eq!(cp.checkpoint.size, receipt["tree_size"].as_u64().unwrap());
    let other_leaf = Hash::from_hex(&"ab".repeat(32)).unwrap();
    assert!(matches!(
        TlogProof::parse(proof)
            .unwrap()
            .verify(&other_leaf, vkey, &[]),
        Err(TlogProofError::Inclusion(_))
    ));
    let (head, checkpoint) = proof.split_once("\n\n").unwrap();
    let lines: Vec<&str> = head.lines().collect();
    assert!(
        lines.len() >= 3,
        "header, index and at least one hash: {proof}"
    );
    let with_head = |h: Vec<String>| format!("{}\n\n{checkpoint}", h.join("\n"));
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    // Text that does not parse.
    let mut bad_b64 = owned();
    bad_b64[2] = "not base64!".into();
    let mut short_hash = owned();
    short_hash[2] = base64::engine::general_purpose::STANDARD.encode([1u8; 31]);
    let mut trailing_space = owned();
    trailing_space[2].push(' ');
    let mut bad_header = owned();
    bad_header[0] = "c2sp.org/tlog-proof@v2".into();
    let mut bad_index = owned();
    bad_index[1] = "index -1".into();
    let mut bad_extra = owned();
    bad_extra.insert(1, "extra %%%".into());
    for (what, text) in [
        ("no checkpoint", head.to_owned()),
        ("bad base64 hash", with_head(bad_b64)),
        ("31-byte hash", with_head(short_hash)),
        (
            "a hash line with a trailing space",
            with_head(trailing_space),
        ),
        ("another version", with_head(bad_header)),
        ("negative index", with_head(bad_index)),
        ("bad extra", with_head(bad_extra)),
    ] {
        assert!(
            matches!(TlogProof::parse(&text), Err(TlogProofError::Malformed(_))),
            "{what}: {text}"
        );
    }
    // Cut anywhere, it never verifies.
    for n in (0..proof.len()).filter(|n| proof.is_char_boundary(*n)) {
        let cut = &proof[..n];
        assert!(
            TlogProof::parse(cut)
                .and_then(|p| p.verify(&leaf, vkey, &[]))
                .is_err(),
            "the first {n} bytes verified"
        );
    }
    // Text that parses but proves nothing.
    let mut wrong_index = owned();
    let index: u64 = lines[1].strip_prefix("index ").unwrap().parse().unwrap();
    wrong_index[1] = format!("index {}", index ^ 1);
    let mut past_end = owned();
    past_end[1] = format!("index {}", cp.checkpoint.size);
    let mut wrong_hash = owned();
    wrong_hash[2] = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let mut dropped = owned();
    dropped.pop();
    let mut added = owned();
    added.push(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    for (what, text) in [
        ("wrong index", with_head(wrong_index)),
        ("index past the tree", with_head(past_end)),
        ("wrong hash", with_head(wrong_hash)),
        ("a hash dropped", with_head(dropped)),
        ("a hash added", with_head(added)),
    ] {
        let p = TlogProof::parse(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            matches!(
                p.verify(&leaf, vkey, &[]),
                Err(TlogProofError::Inclusion(_))
            ),
            "{what}: {text}"
        );
    }
    // A checkpoint whose size or root was changed, or signed by another key.
    let size = cp.checkpoint.size;
    for (what, cp_text) in [
        (
            "size changed",
            checkpoint.replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1),
        ),
        ("a blank line before it", format!("\n{checkpoint}")),
        (
            "signature line cut",
            checkpoint.lines().take(4).collect::<Vec<_>>().join("\n") + "\n",
        ),
    ] {
        assert_ne!(cp_text, checkpoint, "{what}");
        let p = TlogProof::parse(&format!("{head}\n\n{cp_text}")).unwrap();
        assert!(
            matches!(
                p.verify(&leaf, vkey, &[]),
                Err(TlogProofError::Checkpoint(_))
            ),
            "{what}"
        );
    }
}

#[tokio::test]
async fn deny_gives_access_denied_and_login_hint_by_email() {
    let s = Server::start().await;
    let client = s.add_client("agent-del", "poll", None).await;
    let bob = s.add_approver("apv_bob", 2).await;
    let auth_req_id = client.ask("APV_BOB@example.com", &[]).await;
    let rid = bob.only_request().await;
    let receipt = bob.decide(&rid, "deny").await;
    assert_eq!(receipt["decision"], "deny");
    let (st, v) = client.token(&auth_req_id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
    // A denial has evidence too.
    let (st, text) = client.evidence(&auth_req_id, None).await;
    assert_eq!(st, 200);
    let b = EvidenceBundle::from_json(text.as_bytes()).unwrap();
    assert_eq!(b.statement.decision, "deny");
    b.verify(&s.vkey, &BundlePolicy::default()).unwrap();
}

#[tokio::test]
async fn ping_flow() {
    let s = Server::start().await;
    let rx = Receiver::start().await;
    let client = s.add_client("agent-ping", "ping", Some(&rx.url)).await;
    let alice = s.add_approver("apv_alice", 3).await;
    let (st, v) = client.bc_authorize("apv_alice", &[]).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let auth_req_id = client
        .ask(
            "apv_alice",
            &[("client_notification_token", "ping-bearer-123")],
        )
        .await;
    let (st, v) = client.token(&auth_req_id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let (auth, body) = rx.wait(1).await;
    assert_eq!(auth.as_deref(), Some("Bearer ping-bearer-123"));
    assert_eq!(body, json!({"auth_req_id": auth_req_id}));
    let (st, tokens) = client.token(&auth_req_id).await;
    assert_eq!(st, 200, "{tokens}");
    verify_jwt(&s, tokens["id_token"].as_str().unwrap()).await;
}

#[tokio::test]
async fn push_flow() {
    let s = Server::start().await;
    let rx = Receiver::start().await;
    let client = s.add_client("agent-push", "push", Some(&rx.url)).await;
    let alice = s.add_approver("apv_alice", 4).await;

    let approved = client
        .ask("apv_alice", &[("client_notification_token", "push-tok")])
        .await;
    let (st, v) = client.token(&approved).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let rid = alice.only_request().await;
    let receipt = alice.decide(&rid, "approve").await;
    let (auth, body) = rx.wait(1).await;
    assert_eq!(auth.as_deref(), Some("Bearer push-tok"));
    assert_eq!(body["auth_req_id"], approved);
    let at = body["access_token"].as_str().unwrap();
    let (_, claims) = verify_jwt(&s, at).await;
    assert_eq!(claims["log_index"], receipt["log_index"]);
    let (_, id) = verify_jwt(&s, body["id_token"].as_str().unwrap()).await;
    assert_eq!(id["urn:openid:params:jwt:claim:auth_req_id"], approved);
    use base64::Engine;
    use sha2::Digest;
    let h = sha2::Sha512::digest(at.as_bytes());
    assert_eq!(id["at_hash"], B64URL.encode(&h[..32]));

    let denied = client
        .ask("apv_alice", &[("client_notification_token", "push-tok")])
        .await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "deny").await;
    let (_, body) = rx.wait(2).await;
    assert_eq!(body["auth_req_id"], denied);
    assert_eq!(body["error"], "access_denied");

    let expiring = client
        .ask(
            "apv_alice",
            &[
                ("client_notification_token", "push-tok"),
                ("requested_expiry", "1"),
            ],
        )
        .await;
    let (_, body) = rx.wait(3).await;
    assert_eq!(body["auth_req_id"], expiring);
    assert_eq!(body["error"], "expired_token");
    assert!(alice.inbox().await.is_empty());
}

#[tokio::test]
async fn webhook_is_signed() {
    let rx = Receiver::start().await;
    let url = rx.url.clone();
    let s = Server::start_with(move |mut c| {
        c.webhook_url = Some(url);
        c.webhook_secret = Some(countersign_approvals::Secret::new("hook-key"));
        c
    })
    .await;
    let client = s.add_client("agent-hook", "poll", None).await;
    let _alice = s.add_approver("apv_alice", 5).await;
    client.ask("apv_alice", &[]).await;
    let (auth, body) = rx.wait(1).await;
    let auth = auth.unwrap();
    let mut parts = auth.splitn(3, ' ');
    let (ts, sig, raw) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-key").unwrap();
    mac.update(format!("{ts}.{raw}").as_bytes());
    assert_eq!(
        sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    // The signed timestamp is the time of sending, so a receiver can refuse replays outside
    // its window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts: u64 = ts.parse().unwrap();
    assert!(now.abs_diff(ts) <= 60, "webhook timestamp {ts}, now {now}");
    assert_eq!(body["type"], "approval_requested");
    assert_eq!(body["approver_id"], "apv_alice");
    assert_eq!(body["binding_message"], "Pay 42.00 EUR to ACME");
}

#[tokio::test]
async fn live_inbox_gets_server_sent_events() {
    let s = Server::start().await;
    let client = s.add_client("agent-sse", "poll", None).await;
    let alice = s.add_approver("apv_alice", 6).await;
    let mut resp = s
        .http
        .get(format!("{}/approve/events", s.url))
        .header("cookie", &alice.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    client.ask("apv_alice", &[]).await;
    let rid = alice.only_request().await;
    let mut seen = String::new();
    while !seen.contains(&rid) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: changed"));
    // Without a session there is no stream.
    let r = s
        .http
        .get(format!("{}/approve/events", s.url))
        .send()
        .await
        .unwrap();
    assert_refused(
        "events without a session",
        &answer_of(r).await,
        401,
        "login_required",
        &["sign in"],
    );
}

#[tokio::test]
async fn pages_render_and_escape() {
    let s = Server::start().await;
    let client = s.add_client("agent-ui", "poll", None).await;
    let alice = s.add_approver("apv_alice", 7).await;
    client
        .ask(
            "apv_alice",
            &[(
                "authorization_details",
                r#"[{"type":"cmd","run":"<script>alert(1)</script>"}]"#,
            )],
        )
        .await;
    let rid = alice.only_request().await;
    let (st, inbox) = alice.get("/approve").await;
    assert_eq!(st, 200);
    assert!(inbox.contains(&rid) && inbox.contains("csrf-token"));
    let (st, page) = alice.get(&format!("/approve/requests/{rid}")).await;
    assert_eq!(st, 200);
    assert!(!page.contains("<script>alert"), "user data is escaped");
    assert!(page.contains("&lt;script&gt;"));
    let r = s
        .http
        .get(format!("{}/approve", s.url))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(r.text().await.unwrap().contains("Sign in with a passkey"));
    let js = s
        .http
        .get(format!("{}/approve/assets/app.js", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    let r = s
        .http
        .get(format!("{}/enrol/not-a-link", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
}

#[tokio::test]
async fn admin_cli_over_http() {
    let s = Server::start().await;
    let url = s.url.clone();
    let dir = s.data_dir.clone();
    let run = move |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(&args)
            .arg("--url")
            .arg(&url)
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        r([
            "client",
            "add",
            "cli-agent",
            "--secret",
            "s3cret",
            "--auth-method",
            "client_secret_post",
            "--mode",
            "poll",
        ]
        .map(String::from)
        .to_vec())
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(!out.contains("s3cret"), "a chosen secret is not echoed");
    assert!(
        out.starts_with("client cli-agent added at 20")
            && out.contains("Z: client_secret_post, poll"),
        "{out}"
    );
    // A generated secret is shown, once.
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        r(["client", "add", "cli-agent-2"].map(String::from).to_vec())
    })
    .await
    .unwrap();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client secret (generated; shown this once, store it now): "))
        .unwrap_or_else(|| panic!("no generated secret in {out}"));
    assert!(ok && secret.len() >= 22, "{out}");
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || r(vec!["client".into(), "list".into()]))
        .await
        .unwrap();
    assert!(
        ok && out.contains("cli-agent") && out.contains("client_secret_post"),
        "{out}"
    );
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        r([
            "approver",
            "add",
            "apv_carol",
            "--email",
            "carol@example.com",
        ]
        .map(String::from)
        .to_vec())
    })
    .await
    .unwrap();
    assert!(ok && out.contains(&format!("{}/enrol/", s.url)), "{out}");
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        r(vec![
            "approver".into(),
            "disable".into(),
            "apv_carol".into(),
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        r(vec!["client".into(), "remove".into(), "cli-agent".into()])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let r = run.clone();
    let (ok, _) = tokio::task::spawn_blocking(move || {
        r(vec!["client".into(), "remove".into(), "cli-agent".into()])
    })
    .await
    .unwrap();
    assert!(!ok, "removing twice fails");
    // Approvers: list, and a new enrolment link.
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || r(vec!["approver".into(), "list".into()]))
        .await
        .unwrap();
    assert!(ok && out.contains("apv_carol"), "{out}");
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        r(
            ["approver", "add", "apv_dora", "--email", "dora@example.com"]
                .map(String::from)
                .to_vec(),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let first_link = out.clone();
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        r(vec!["approver".into(), "link".into(), "apv_dora".into()])
    })
    .await
    .unwrap();
    assert!(ok && out.contains(&format!("{}/enrol/", s.url)), "{out}");
    let link = out
        .split_whitespace()
        .find(|w| w.contains("/enrol/"))
        .unwrap()
        .trim_matches(|c: char| c == '"' || c == ',');
    assert!(!first_link.contains(link), "a new link is a new token");
    // Submitters: the token is printed once, never listed, and revoked by name.
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        r(vec!["submitter".into(), "add".into(), "ci-sub".into()])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    // The token alone on standard output (the first line here), the notice on standard error.
    let token = out.lines().next().unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "{out}");
    let r = run.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || r(vec!["submitter".into(), "list".into()]))
        .await
        .unwrap();
    assert!(
        ok && out.contains("ci-sub") && !out.contains(&token),
        "{out}"
    );
    for (want, what) in [(true, "revoked"), (false, "an unknown name")] {
        let r = run.clone();
        let (ok, out) = tokio::task::spawn_blocking(move || {
            r(vec!["submitter".into(), "revoke".into(), "ci-sub".into()])
        })
        .await
        .unwrap();
        assert_eq!(ok, want, "{what}: {out}");
    }
    // `backup` asks the running server, through the same admin client.
    let to = tempfile::tempdir().unwrap();
    let dest = to.path().join("copy");
    for (want_ok, want) in [(true, "backup of tree size"), (false, "refused")] {
        let (r, d) = (run.clone(), dest.to_string_lossy().into_owned());
        let (ok, out) =
            tokio::task::spawn_blocking(move || r(vec!["backup".into(), "--to".into(), d]))
                .await
                .unwrap();
        // The second time the copy exists: the server refuses, and nothing is overwritten.
        assert_eq!(ok, want_ok, "{out}");
        assert!(out.contains(want), "{out}");
    }
    assert!(dest.join("db").is_dir() && dest.join("log.key").is_file());
    // The posted secret authenticates a client_secret_post client.
    let (st, _) = s
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": "post-agent", "secret": "pw", "auth_method": "client_secret_post"}),
        )
        .await;
    assert_eq!(st, 201);
    let _alice = s.add_approver("apv_alice", 8).await;
    let r = s
        .http
        .post(format!("{}/bc-authorize", s.url))
        .form(&[
            ("client_id", "post-agent"),
            ("client_secret", "pw"),
            ("scope", "openid"),
            ("login_hint", "apv_alice"),
            ("binding_message", "Deploy v2"),
            (
                "authorization_details",
                r#"[{"type":"deploy","service":"api"}]"#,
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// A server that e-mails approvers through `smtp_url` (its other settings from `f`), after
/// `apv_alice` was asked once and an e-mail arrived in `mails` (or 5 s passed).
async fn ask_by_email(
    smtp_url: String,
    mails: &std::sync::Mutex<Vec<String>>,
    attempts: Option<&std::sync::Mutex<Vec<std::time::Instant>>>,
    f: impl FnOnce(countersign_approvals::CibaConfig) -> countersign_approvals::CibaConfig,
) -> Server {
    let s = Server::start_with(move |mut c| {
        c.smtp_url = Some(countersign_approvals::Secret::new(smtp_url));
        c.smtp_from = "approvals@countersign.test".into();
        f(c)
    })
    .await;
    let client = s.add_client("agent-mail", "poll", None).await;
    let _alice = s.add_approver("apv_alice", 9).await;
    // The enrolment is e-mailed first: wait for it, then start afresh (the sink's attempts too,
    // so a refusing sink refuses the request's e-mail as many times).
    for _ in 0..200 {
        if !mails.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    {
        let mut m = mails.lock().unwrap();
        assert!(
            m.first().is_some_and(|m| m.contains("A passkey was added")),
            "{m:?}"
        );
        m.clear();
    }
    if let Some(a) = attempts {
        a.lock().unwrap().clear();
    }
    client.ask("apv_alice", &[]).await;
    for _ in 0..200 {
        if !mails.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    s
}

#[tokio::test]
async fn email_notification_over_smtp() {
    let (smtp_url, mails) = fake_smtp().await;
    let s = ask_by_email(smtp_url, &mails, None, |c| c).await;
    let mail = mails
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("an e-mail was sent");
    assert!(mail.contains("To: apv_alice@example.com"), "{mail}");
    assert!(mail.contains("From: approvals@countersign.test"), "{mail}");
    assert!(
        mail.contains("Approval requested: Pay 42.00 EUR to ACME"),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("{}/approve/requests/req_", s.url)),
        "{mail}"
    );
}

/// Asserts that consecutive attempts came after `backoff`, doubled each time (with slack for
/// the attempt itself, well under the next doubling).
#[track_caller]
fn assert_doubling(at: &[std::time::Instant], backoff: Duration, what: &str) {
    for (n, w) in at.windows(2).enumerate() {
        let gap = w[1] - w[0];
        let want = backoff * 2u32.pow(n as u32);
        assert!(
            gap >= want && gap < want + backoff / 2 + Duration::from_millis(250),
            "{what}: attempt {} came {gap:?} after the one before, not about {want:?}",
            n + 2
        );
    }
}

/// Ping and push deliveries the client's endpoint refuses are tried again after the backoff,
/// doubled each time, and counted as failed after the last attempt.
#[tokio::test]
async fn refused_ping_and_push_are_retried_with_doubling_backoff() {
    let rx = Receiver::start().await;
    rx.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let backoff = Duration::from_millis(150);
    let s = Server::start_with(move |mut c| {
        c.delivery_backoff = backoff;
        c.delivery_attempts = 4;
        c
    })
    .await;
    let ping = s.add_client("agent-ping", "ping", Some(&rx.url)).await;
    let push = s.add_client("agent-push", "push", Some(&rx.url)).await;
    let alice = s.add_approver("apv_alice", 8).await;
    let tok = [("client_notification_token", "tok")];
    let pinged = ping.ask("apv_alice", &tok).await;
    alice.decide(&alice.only_request().await, "approve").await;
    let pushed = push.ask("apv_alice", &tok).await;
    alice.decide(&alice.only_request().await, "deny").await;
    rx.wait_refused(8).await;
    tokio::time::sleep(backoff * 2).await;
    let times = rx.times.lock().unwrap().clone();
    for (id, what) in [(&pinged, "ping"), (&pushed, "push")] {
        let at: Vec<_> = times
            .iter()
            .filter(|(_, i)| i == id)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(at.len(), 4, "{what}: four attempts, no more");
        assert_doubling(&at, backoff, what);
    }
    let m = crate::web::get_text(&s.http, &format!("{}/metrics", s.url)).await;
    for line in [
        "countersign_ciba_deliveries_total{kind=\"ping\",outcome=\"failed\"} 1",
        "countersign_ciba_deliveries_total{kind=\"push\",outcome=\"failed\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
    }
}

/// A refused e-mail is sent again after the configured backoff, doubled after each failure, and
/// delivered once the server accepts it (and counted as delivered).
#[tokio::test]
async fn a_refused_email_is_retried_with_doubling_backoff() {
    let (smtp_url, mails, attempts) = fake_smtp_refusing(3).await;
    let backoff = Duration::from_millis(150);
    let s = ask_by_email(smtp_url, &mails, Some(&*attempts), |mut c| {
        c.delivery_backoff = backoff;
        c.delivery_attempts = 5;
        c
    })
    .await;
    let mail = mails.lock().unwrap().clone();
    assert_eq!(mail.len(), 1, "delivered once, after three refusals");
    assert!(mail[0].contains("To: apv_alice@example.com"), "{mail:?}");
    let at = attempts.lock().unwrap().clone();
    assert_eq!(at.len(), 4, "three refused attempts and the accepted one");
    assert_doubling(&at, backoff, "e-mail");
    let m = crate::web::get_text(&s.http, &format!("{}/metrics", s.url)).await;
    // Two: the enrolment notice (also refused three times first) and the request.
    assert!(
        m.lines().any(|l| l.contains("kind=\"email\"")
            && l.contains("outcome=\"delivered\"")
            && l.ends_with(" 2")),
        "{m}"
    );
}

pub(crate) fn client_assertion(
    key: &ed25519_dalek::SigningKey,
    client_id: &str,
    aud: &str,
    exp_in: i64,
    jti: &str,
) -> String {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let h = B64URL.encode(json!({"alg": "EdDSA", "kid": "k1"}).to_string());
    let c = B64URL.encode(
        json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + exp_in, "iat": now, "jti": jti})
            .to_string(),
    );
    let sig = key.sign(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", B64URL.encode(sig.to_bytes()))
}

/// A client assertion with any header and claims, signed with `key` (EdDSA) or, for an `alg` of
/// `none`, not at all; `HS256` gets an HMAC keyed with the public key (the classic confusion).
fn assertion_with(key: &ed25519_dalek::SigningKey, header: Value, claims: Value) -> String {
    use base64::Engine;
    use ed25519_dalek::Signer;
    use hmac::Mac;
    let h = B64URL.encode(header.to_string());
    let c = B64URL.encode(claims.to_string());
    let input = format!("{h}.{c}");
    let sig = match header["alg"].as_str() {
        Some("none") => Vec::new(),
        Some("HS256") => {
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(key.verifying_key().as_bytes()).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => key.sign(input.as_bytes()).to_bytes().to_vec(),
    };
    format!("{input}.{}", B64URL.encode(sig))
}

#[tokio::test]
async fn private_key_jwt_client() {
    use base64::Engine;
    let s = Server::start().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
        "x": B64URL.encode(key.verifying_key().as_bytes())}]});
    let (st, v) = s
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": "agent-jwt", "auth_method": "private_key_jwt", "jwks": jwks}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert!(v.get("client_secret").is_none());
    let got = s
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": "agent-jwt2", "auth_method": "private_key_jwt"}),
        )
        .await;
    assert_refused("keys are required", &got, 400, "invalid_request", &["jwks"]);
    let alice = s.add_approver("apv_alice", 10).await;
    let ask = |assertion: String| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(format!("{}/bc-authorize", s.url))
                .form(&[
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                    ("scope", "openid"),
                    ("login_hint", "apv_alice"),
                    ("binding_message", "Rotate keys"),
                    ("authorization_details", r#"[{"type":"kms","op":"rotate"}]"#),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let good = client_assertion(&key, "agent-jwt", &s.url, 60, "jti-1");
    let (st, v) = ask(good.clone()).await;
    assert_eq!(st, 200, "{v}");
    let auth_req_id = v["auth_req_id"].as_str().unwrap().to_owned();
    let got = ask(good).await;
    assert_refused(
        "a client assertion is single-use",
        &got,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    let got = ask(client_assertion(
        &key,
        "agent-jwt",
        "https://elsewhere.test",
        60,
        "jti-2",
    ))
    .await;
    assert_refused(
        "wrong audience",
        &got,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    let got = ask(client_assertion(&key, "agent-jwt", &s.url, -5, "jti-3")).await;
    assert_refused(
        "expired",
        &got,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    let got = ask(client_assertion(&key, "agent-jwt", &s.url, 86_400, "jti-4")).await;
    assert_refused(
        "lifetime too long",
        &got,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
    let got = ask(client_assertion(&other, "agent-jwt", &s.url, 60, "jti-5")).await;
    assert_refused(
        "signed by an unregistered key",
        &got,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    // The token endpoint takes the same authentication; Basic is refused for a key client.
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let token = client_assertion(&key, "agent-jwt", &format!("{}/token", s.url), 60, "jti-6");
    let r = s
        .http
        .post(format!("{}/token", s.url))
        .form(&[
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", token.as_str()),
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", auth_req_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let basic = Client {
        id: "agent-jwt".into(),
        secret: String::new(),
        url: s.url.clone(),
        http: s.http.clone(),
    };
    let got = basic.token(&auth_req_id).await;
    assert_refused(
        "Basic for a key client",
        &got,
        401,
        "invalid_client",
        &["authentication failed"],
    );
    // Evidence with a one-time assertion in the query.
    let ev = client_assertion(&key, "agent-jwt", &s.url, 60, "jti-7");
    let r = s
        .http
        .get(format!("{}/v1/evidence/{auth_req_id}", s.url))
        .query(&[
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", ev.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Forged and malformed assertions, after the flow (an accepted one opens a request).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |jti: &str| {
        json!({"iss": "agent-jwt", "sub": "agent-jwt", "aud": s.url, "exp": now + 60,
               "iat": now, "jti": jti})
    };
    let mut no_jti = claims("");
    no_jti.as_object_mut().unwrap().remove("jti");
    let mut other_iss = claims("jti-10");
    other_iss["iss"] = json!("someone-else");
    for (header, body, what) in [
        (
            json!({"alg": "none", "kid": "k1"}),
            claims("jti-11"),
            "alg none",
        ),
        (
            json!({"alg": "HS256", "kid": "k1"}),
            claims("jti-12"),
            "alg HS256 keyed with the public key",
        ),
        (
            json!({"alg": "EdDSA", "kid": "k1"}),
            other_iss,
            "iss is not sub",
        ),
        (json!({"alg": "EdDSA", "kid": "k1"}), no_jti, "no jti"),
        (
            json!({"alg": "EdDSA", "kid": "nope"}),
            claims("jti-13"),
            "an unknown kid",
        ),
    ] {
        let (st, v) = ask(assertion_with(&key, header, body)).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (401, Some("invalid_client")),
            "{what}: {v}"
        );
    }
    // The same builder makes an assertion that is accepted, so the refusals above are the
    // checks', not the builder's.
    let (st, v) = ask(assertion_with(
        &key,
        json!({"alg": "EdDSA", "kid": "k1"}),
        claims("jti-14"),
    ))
    .await;
    assert_eq!(st, 200, "{v}");
}

/// A JWS ES256 client assertion (RFC 7518 section 3.4: `r || s`, not DER) over `header` and
/// `claims`, signed by `key`'s P-256 key; `der` keeps the DER form instead (which must fail).
fn es256_assertion(
    key: &countersign_testvectors::SoftPasskey,
    header: Value,
    claims: Value,
    der: bool,
) -> String {
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let sig = key.sign_raw(input.as_bytes());
    let sig = if der { sig } else { der_to_raw(&sig) };
    format!("{input}.{}", B64URL.encode(sig))
}

/// `r || s`, each 32 bytes, from a DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let mut out = Vec::new();
    let mut at = 2;
    for _ in 0..2 {
        assert_eq!(der[at], 0x02);
        let len = der[at + 1] as usize;
        let int = &der[at + 2..at + 2 + len];
        let int: Vec<u8> = int.iter().copied().skip_while(|b| *b == 0).collect();
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend(int);
        at += 2 + len;
    }
    out
}

/// The P-256 public key of an ES256 passkey as a JWK (from its COSE_Key's x and y).
fn es256_jwk(key: &countersign_testvectors::SoftPasskey, kid: &str) -> Value {
    let cose = key.cose_public_key();
    let coord = |label: u8| {
        let at = cose
            .windows(3)
            .position(|w| w == [label, 0x58, 0x20])
            .unwrap();
        B64URL.encode(&cose[at + 3..at + 35])
    };
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": coord(0x21), "y": coord(0x22)})
}

/// `private_key_jwt` with an ES256 key: a well-formed assertion authenticates at both
/// endpoints; a flipped bit, a DER signature, another P-256 key, or an EdDSA header over the
/// same key are refused with 401 invalid_client.
#[tokio::test]
async fn private_key_jwt_with_an_es256_key() {
    use countersign_testvectors::{Alg, SoftPasskey};
    let s = Server::start().await;
    let key = SoftPasskey::new(Alg::Es256, 31, RP_ID);
    let other = SoftPasskey::new(Alg::Es256, 32, RP_ID);
    let (st, v) = s
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": "agent-ec", "auth_method": "private_key_jwt",
                   "jwks": {"keys": [es256_jwk(&key, "ec1")]}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let alice = s.add_approver("apv_alice", 33).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |aud: &str, jti: &str| {
        json!({"iss": "agent-ec", "sub": "agent-ec", "aud": aud, "exp": now + 60,
               "iat": now, "jti": jti})
    };
    let es256 = json!({"alg": "ES256", "kid": "ec1"});
    let post = |path: &'static str, assertion: String, extra: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let mut form = vec![
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ),
                ("client_assertion", assertion),
            ];
            form.extend(extra);
            answer_of(
                s.http
                    .post(format!("{}{path}", s.url))
                    .form(&form)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let ask = || {
        ask_params("apv_alice")
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect::<Vec<_>>()
    };
    let flipped = {
        let a = es256_assertion(&key, es256.clone(), claims(&s.url, "j2"), false);
        let (head, sig) = a.rsplit_once('.').unwrap();
        let mut sig = B64URL.decode(sig).unwrap();
        sig[40] ^= 1;
        format!("{head}.{}", B64URL.encode(sig))
    };
    let refused = [
        ("a flipped signature bit", flipped),
        (
            "a DER signature",
            es256_assertion(&key, es256.clone(), claims(&s.url, "j3"), true),
        ),
        (
            "another P-256 key",
            es256_assertion(&other, es256.clone(), claims(&s.url, "j4"), false),
        ),
        (
            "an EdDSA header over the ES256 signature",
            es256_assertion(
                &key,
                json!({"alg": "EdDSA", "kid": "ec1"}),
                claims(&s.url, "j5"),
                false,
            ),
        ),
    ];
    for (what, assertion) in refused {
        let got = post("/bc-authorize", assertion, ask()).await;
        assert_refused(what, &got, 401, "invalid_client", &[]);
    }
    assert!(
        alice.inbox().await.is_empty(),
        "no refused assertion asked anything"
    );
    // The well-formed one works at both endpoints.
    let good = es256_assertion(&key, es256.clone(), claims(&s.url, "j1"), false);
    let (st, v) = post("/bc-authorize", good, ask()).await;
    assert_eq!(st, 200, "{v}");
    let auth_req_id = v["auth_req_id"].as_str().unwrap().to_owned();
    alice.decide(&alice.only_request().await, "approve").await;
    let token_aud = format!("{}/token", s.url);
    let (st, t) = post(
        "/token",
        es256_assertion(&key, es256.clone(), claims(&token_aud, "j6"), false),
        vec![
            ("grant_type", "urn:openid:params:grant-type:ciba".into()),
            ("auth_req_id", auth_req_id),
        ],
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let (_, at) = verify_jwt(&s, t["access_token"].as_str().unwrap()).await;
    assert_eq!(at["client_id"], "agent-ec", "{at}");
}

#[tokio::test]
async fn session_cookies_are_secure_behind_an_https_public_url() {
    let plain = Server::start().await;
    assert!(!plain.add_approver("apv_alice", 31).await.secure_cookie);
    let https = Server::start_with(|mut c| {
        c.public_url = "https://approve.test".into();
        c
    })
    .await;
    assert!(https.add_approver("apv_alice", 32).await.secure_cookie);
}

#[tokio::test]
async fn tokens_after_a_key_rotation_use_the_new_key_and_old_tokens_still_verify() {
    let s = Server::start().await;
    let client = s.add_client("agent-rot", "poll", None).await;
    let alice = s.add_approver("apv_alice", 41).await;
    let mut kids = Vec::new();
    let mut tokens = Vec::new();
    for round in 0..2 {
        if round == 1 {
            let (st, v) = s.admin_post("/v1/admin/token-keys/rotate", json!({})).await;
            assert_eq!(st, 200, "{v}");
        }
        let auth_req_id = client.ask("apv_alice", &[]).await;
        let rid = alice.only_request().await;
        alice.decide(&rid, "approve").await;
        let (st, v) = client.token(&auth_req_id).await;
        assert_eq!(st, 200, "{v}");
        let at = v["access_token"].as_str().unwrap().to_owned();
        let (header, _) = verify_jwt(&s, &at).await;
        kids.push(header["kid"].as_str().unwrap().to_owned());
        tokens.push(at);
    }
    assert_ne!(
        kids[0], kids[1],
        "tokens after the rotation use the new key"
    );
    // The token signed before the rotation still verifies against the published JWKS.
    let (header, claims) = verify_jwt(&s, &tokens[0]).await;
    assert_eq!(
        (header["kid"].as_str(), claims["sub"].as_str()),
        (Some(kids[0].as_str()), Some("apv_alice"))
    );
}

/// CIBA Core section 11: an expired auth_req_id answers expired_token even when it was approved,
/// once the approval had a polling interval to be collected.
#[tokio::test]
async fn an_approval_not_collected_before_expiry_is_expired_token() {
    let s = Server::start_with(|mut c| {
        c.min_expiry_secs = 1;
        c.interval_secs = 1;
        c
    })
    .await;
    let client = s.add_client("agent-pay", "poll", None).await;
    let alice = s.add_approver("apv_alice", 1).await;
    let collected = client.ask("apv_alice", &[("requested_expiry", "2")]).await;
    alice.decide(&alice.only_request().await, "approve").await;
    let late = client.ask("apv_alice", &[("requested_expiry", "2")]).await;
    alice.decide(&alice.only_request().await, "approve").await;
    // Collected in time: tokens.
    let (st, v) = client.token(&collected).await;
    assert_eq!(st, 200, "{v}");
    // Not collected before the expiry (and a polling interval after the approval): expired.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (st, v) = client.token(&late).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("expired_token")),
        "{v}"
    );
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("ask again"));
}
