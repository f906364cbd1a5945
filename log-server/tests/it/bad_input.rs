//! Bad input gets a clear 4xx JSON error and appends nothing.

use serde_json::{json, Value};

use crate::common::{passkey, signed_decision, TestLog, ORIGIN};

/// Writes clientDataJSON around a base64url challenge.
type ClientDataOf = fn(&str) -> String;

fn assert_error(status: u16, v: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{v}");
    assert_eq!(v["error"].as_str(), Some(want_code), "{v}");
    assert!(
        !v["error_description"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reads_are_4xx() {
    let log = TestLog::start().await;
    let pk = passkey(10);
    log.enrol(&pk, "approver-a").await;
    for p in [
        "/tile/0/x000/001",
        "/tile/9/000",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/entries/abc",
        "/tile/0/1",
        "/tile/00/000",
        "/tile/0/000.p/1/2",
    ] {
        let (status, v) = log.get(p).await;
        assert_error(status, &v, 400, "invalid_tile_path");
    }
    for p in [
        "/tile/0/001",
        "/tile/0/000",
        "/tile/0/000.p/2",
        "/tile/entries/000.p/5",
    ] {
        let (status, v) = log.get(p).await;
        assert_error(status, &v, 404, "not_found");
    }
    for p in [
        "/v1/log/proof/inclusion?index=1&tree_size=1",
        "/v1/log/proof/inclusion?index=0&tree_size=2",
        "/v1/log/proof/consistency?first=2&second=1",
        "/v1/log/proof/consistency?first=0&second=5",
    ] {
        let (status, v) = log.get(p).await;
        assert_error(status, &v, 400, "out_of_range");
    }
    for p in [
        "/v1/log/proof/inclusion?index=01",
        "/v1/log/proof/inclusion?index=-1",
        "/v1/log/proof/inclusion",
        "/v1/log/proof/inclusion?index=0&leaf_hash=00",
        "/v1/log/proof/inclusion?leaf_hash=zz",
        "/v1/log/proof/consistency",
        "/v1/log/entries/x",
    ] {
        let (status, v) = log.get(p).await;
        assert_error(status, &v, 400, "invalid_request");
    }
    let (status, v) = log.get("/v1/log/entries/1").await;
    assert_error(status, &v, 404, "not_found");
    let (status, v) = log
        .get(&format!(
            "/v1/log/proof/inclusion?leaf_hash={}",
            "ab".repeat(32)
        ))
        .await;
    assert_error(status, &v, 404, "not_found");
    let (status, v) = log.get("/v1/log/entries/0").await;
    assert_eq!(status, 200);
    assert_eq!(v["decoded"]["kind"], "enrolment");
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_append_nothing() {
    bad_writes_on(TestLog::start().await).await;
}

/// The same on the shared driver, where the log reads what its rules need (the credential and
/// its sign count, revocations, replayed assertions) from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_append_nothing_on_the_shared_driver() {
    if let Some((_db, log)) = TestLog::on_shared_driver().await {
        bad_writes_on(log).await;
    }
}

/// Every kind of bad write (tokens, bodies, assertions, the sign-count rule) is refused and
/// appends nothing.
async fn bad_writes_on(log: TestLog) {
    let mut pk = passkey(11);
    let enrol = log.enrol(&pk, "approver-a").await;
    let token = log.submitter().await;
    let before = log.checkpoint().await;
    assert_eq!(before.size, 1);

    // Tokens.
    let good = signed_decision(&mut pk, "approver-a", enrol, 1, |_| {});
    let (s, v) = log.post("/v1/log/decisions", "", &good).await;
    assert_error(s, &v, 401, "invalid_token");
    let (s, v) = log.post("/v1/log/decisions", &"ab".repeat(32), &good).await;
    assert_error(s, &v, 401, "invalid_token");
    let (s, v) = log.post("/v1/log/decisions", &log.admin, &good).await;
    assert_error(s, &v, 401, "invalid_token");
    let (s, v) = log
        .post(
            "/v1/log/enrolments",
            &token,
            &crate::common::enrolment_body(&passkey(12), "b"),
        )
        .await;
    assert_error(s, &v, 401, "invalid_token");
    let (s, v) = log
        .post("/v1/admin/submitters", &token, &json!({"name": "x"}))
        .await;
    assert_error(s, &v, 401, "invalid_token");

    // Oversized and malformed bodies.
    let huge = json!({"name": "x".repeat(200 * 1024)});
    let (s, v) = log.post("/v1/admin/submitters", &log.admin, &huge).await;
    assert_error(s, &v, 413, "payload_too_large");
    let mut big = good.clone();
    big["client_data_json"] = Value::String("ab".repeat(100 * 1024));
    let (s, v) = log.post("/v1/log/decisions", &token, &big).await;
    assert_error(s, &v, 413, "payload_too_large");
    let mut unknown_field = good.clone();
    unknown_field["extra"] = json!(1);
    let (s, v) = log.post("/v1/log/decisions", &token, &unknown_field).await;
    assert_error(s, &v, 400, "invalid_request");
    let mut upper = good.clone();
    upper["nonce"] = Value::String(upper["nonce"].as_str().unwrap().to_uppercase());
    let (s, v) = log.post("/v1/log/decisions", &token, &upper).await;
    assert_error(s, &v, 400, "invalid_request");
    let mut bad_decision = good.clone();
    bad_decision["decision"] = json!("maybe");
    let (s, v) = log.post("/v1/log/decisions", &token, &bad_decision).await;
    assert_error(s, &v, 400, "invalid_request");
    let mut bad_key = crate::common::enrolment_body(&passkey(13), "c");
    bad_key["public_key"] = json!("a0");
    let (s, v) = log.post("/v1/log/enrolments", &log.admin, &bad_key).await;
    assert_error(s, &v, 400, "invalid_public_key");
    // A weak Ed25519 key (the identity): any signature could match it.
    let mut weak = crate::common::enrolment_body(&passkey(14), "c");
    weak["public_key"] = json!(format!(
        "a4010103272006215820{}",
        "01".to_owned() + &"00".repeat(31)
    ));
    let (s, v) = log.post("/v1/log/enrolments", &log.admin, &weak).await;
    assert_error(s, &v, 400, "invalid_public_key");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("small order"),
        "{v}"
    );

    // Unknown credentials and enrolments.
    let mut stranger = passkey(99);
    let d = signed_decision(&mut stranger, "approver-a", enrol, 2, |_| {});
    let (s, v) = log.post("/v1/log/decisions", &token, &d).await;
    assert_error(s, &v, 400, "enrolment_mismatch");
    let d = signed_decision(&mut stranger, "approver-a", 5, 2, |_| {});
    let (s, v) = log.post("/v1/log/decisions", &token, &d).await;
    assert_error(s, &v, 404, "unknown_enrolment");
    let d = signed_decision(&mut pk, "approver-b", enrol, 2, |_| {});
    let (s, v) = log.post("/v1/log/decisions", &token, &d).await;
    assert_error(s, &v, 400, "enrolment_mismatch");

    // Forged and mis-scoped assertions.
    let cases: Vec<(&str, Value)> = vec![
        (
            "flipped signature bit",
            signed_decision(&mut pk, "approver-a", enrol, 3, |o| {
                o.flip_signature_bit = Some(77)
            }),
        ),
        (
            "wrong origin",
            signed_decision(&mut pk, "approver-a", enrol, 4, |o| {
                o.origin = "https://evil.test"
            }),
        ),
        (
            "wrong rp id",
            signed_decision(&mut pk, "approver-a", enrol, 5, |o| {
                o.rp_id = Some("evil.test")
            }),
        ),
        (
            "no user verification",
            signed_decision(&mut pk, "approver-a", enrol, 6, |o| o.flags = 0x01),
        ),
        (
            "registration type",
            signed_decision(&mut pk, "approver-a", enrol, 7, |o| {
                o.client_type = "webauthn.create"
            }),
        ),
    ];
    for (what, d) in cases {
        let (s, v) = log.post("/v1/log/decisions", &token, &d).await;
        assert_error(s, &v, 400, "invalid_assertion");
        eprintln!("{what}: {}", v["error_description"]);
    }
    // clientDataJSON a browser never writes, correctly signed: only the verifier's strict parse
    // (spec/webauthn.md W4) stands between it and the log.
    let odd_client_data: [(&str, ClientDataOf, &str); 3] = [
        (
            "an unknown member twice",
            |c| {
                format!(
                    r#"{{"type":"webauthn.get","challenge":"{c}","origin":"{ORIGIN}","x":1,"x":2}}"#
                )
            },
            "duplicated member \"x\"",
        ),
        (
            "type twice, once escaped",
            |c| {
                format!(
                    r#"{{"type":"webauthn.get","challenge":"{c}","origin":"{ORIGIN}","\u0074ype":"webauthn.create"}}"#
                )
            },
            "duplicated member \"type\"",
        ),
        (
            "an array",
            |c| format!(r#"["webauthn.get","{c}","{ORIGIN}"]"#),
            "not a JSON object",
        ),
    ];
    for (i, (what, client_data, says)) in odd_client_data.into_iter().enumerate() {
        let d = crate::common::signed_decision_with_client_data(
            &mut pk,
            "approver-a",
            enrol,
            30 + i as u64,
            client_data,
        );
        let (s, v) = log.post("/v1/log/decisions", &token, &d).await;
        assert_error(s, &v, 400, "invalid_assertion");
        assert!(
            v["error_description"].as_str().unwrap().contains(says),
            "{what}: {v}"
        );
    }
    // The signed challenge must be nonce || statement_hash: changing the statement breaks it.
    let mut swapped = signed_decision(&mut pk, "approver-a", enrol, 8, |_| {});
    swapped["statement_hash"] = json!("00".repeat(32));
    let (s, v) = log.post("/v1/log/decisions", &token, &swapped).await;
    assert_error(s, &v, 400, "invalid_assertion");

    // The sign-count rule: a counting passkey must not go backwards.
    let mut counting = passkey(14);
    counting.set_counting(10);
    let ce = log.enrol(&counting, "approver-c").await;
    let first = signed_decision(&mut counting, "approver-c", ce, 20, |_| {});
    let (s, _) = log.post("/v1/log/decisions", &token, &first).await;
    assert_eq!(s, 201);
    let mut clone = passkey(14);
    clone.set_counting(5);
    let cloned = signed_decision(&mut clone, "approver-c", ce, 21, |_| {});
    let (s, v) = log.post("/v1/log/decisions", &token, &cloned).await;
    assert_error(s, &v, 400, "sign_count");

    let after = log.checkpoint().await;
    // Only the counting passkey's enrolment and its one good decision were appended.
    assert_eq!(after.size, before.size + 2);
    log.stop().await;
}

/// Submitter tokens are listed without their secret, and a revoked token is refused at once:
/// its next decision gets 401 and nothing is appended, while another submitter's still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_submitters_append_nothing() {
    let log = TestLog::start().await;
    let mut pk = passkey(21);
    let enrol = log.enrol(&pk, "approver-r").await;
    let create = |name: &'static str| {
        let log = &log;
        async move {
            let (s, v) = log
                .post("/v1/admin/submitters", &log.admin, &json!({ "name": name }))
                .await;
            assert_eq!(s, 201, "{v}");
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let agent = create("agent").await;
    let other = create("other").await;

    let send = |method: reqwest::Method, path: String, token: String| {
        let log = &log;
        async move {
            let r = log
                .client
                .request(method, format!("{}{path}", log.url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let list = |token: String| send(reqwest::Method::GET, "/v1/admin/submitters".into(), token);
    let (s, v) = list(log.admin.clone()).await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v["submitters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent", "other"]);
    let text = v.to_string();
    assert!(!text.contains(&agent) && !text.contains(&other), "{text}");
    // The fingerprint is the start of SHA-256(token), what the store keys tokens by.
    let agent_hash = hex::encode(countersign_verifier::sha256(agent.as_bytes()));
    assert_eq!(
        v["submitters"][0]["fingerprint"].as_str(),
        Some(&agent_hash[..8])
    );
    let (s, v) = list(agent.clone()).await;
    assert_error(s, &v, 401, "invalid_token");

    let delete = |name: &str, token: String| {
        let path = format!("/v1/admin/submitters/{name}");
        send(reqwest::Method::DELETE, path, token)
    };
    // Only the admin revokes, and only a name that exists.
    let (s, v) = delete("agent", agent.clone()).await;
    assert_error(s, &v, 401, "invalid_token");
    let (s, v) = delete("nobody", log.admin.clone()).await;
    assert_error(s, &v, 404, "unknown_submitter");

    let first = signed_decision(&mut pk, "approver-r", enrol, 1, |_| {});
    let (s, v) = log.post("/v1/log/decisions", &agent, &first).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = delete("agent", log.admin.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["revoked"].as_array().unwrap().len(), 1);
    let before = log.checkpoint().await;
    let second = signed_decision(&mut pk, "approver-r", enrol, 2, |_| {});
    let (s, v) = log.post("/v1/log/decisions", &agent, &second).await;
    assert_error(s, &v, 401, "invalid_token");
    assert_eq!(log.checkpoint().await.size, before.size);
    let (s, v) = delete("agent", log.admin.clone()).await;
    assert_error(s, &v, 404, "unknown_submitter");
    // The other submitter is untouched.
    let (s, v) = log.post("/v1/log/decisions", &other, &second).await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = list(log.admin.clone()).await;
    assert_eq!(v["submitters"].as_array().unwrap().len(), 1);
    log.stop().await;
}
