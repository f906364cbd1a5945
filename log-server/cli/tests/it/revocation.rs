//! Revoked passkeys: disabling an approver logs a revocation for each passkey, `approver
//! revoke-passkey` logs one and removes the passkey, and after that nothing the passkey signs
//! is logged, by the approval pages or by a submitter posting to the log directly. The approver
//! is e-mailed when a passkey is enrolled or revoked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use countersign::admin_client::{call, run_approver, ApproverCmd, Target};
use countersign_testvectors::{Alg, SoftPasskey};
use countersign_verifier::Entry;
use serde_json::{json, Value};

use crate::common::*;

/// The log's entry at `index`, decoded.
fn entry(s: &Server, index: u64) -> Entry {
    let bytes = s
        .log_api
        .log
        .store()
        .unwrap()
        .entry(index)
        .unwrap()
        .unwrap();
    Entry::decode(&bytes).unwrap()
}

/// A decision as `POST /v1/log/decisions` takes it: what `decide/start` answered, signed with
/// the assertion `cred` (the page's JSON).
fn log_decision(start: &Value, cred: &Value, approver: &str, enrolment_index: u64) -> Value {
    let hex_of = |k: &str| {
        hex::encode(
            B64URL
                .decode(cred["response"][k].as_str().unwrap())
                .unwrap(),
        )
    };
    json!({
        "decision": "approve",
        "statement_hash": start["statement_hash"],
        "nonce": start["nonce"],
        "approver_id": approver,
        "credential_id": hex::encode(B64URL.decode(cred["rawId"].as_str().unwrap()).unwrap()),
        "authenticator_data": hex_of("authenticatorData"),
        "client_data_json": hex_of("clientDataJSON"),
        "signature": hex_of("signature"),
        "enrolment_index": enrolment_index,
    })
}

async fn submitter(s: &Server) -> String {
    let (st, v) = s
        .admin_post("/v1/admin/submitters", json!({"name": "direct"}))
        .await;
    assert_eq!(st, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

async fn post_as(s: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    answer_of(
        s.http
            .post(format!("{}{path}", s.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `decide/start` for `request_id`: the JSON answer.
async fn decide_start(a: &Approver, request_id: &str) -> Value {
    let (st, v) = a
        .post(
            &format!("/v1/requests/{request_id}/decide/start"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

#[tokio::test]
async fn disabling_an_approver_revokes_each_passkey_in_the_log() {
    let s = Server::start().await;
    let client = s.add_client("agent-r", "poll", None).await;
    let alice = s.add_approver("apv_alice", 31).await;
    let rid = {
        client.ask("apv_alice", &[]).await;
        alice.only_request().await
    };
    // Alice signs while she may; the approver is disabled before the decision reaches the log.
    let start = decide_start(&alice, &rid).await;
    let ch = B64URL
        .decode(start["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let cred = alice.sign(&ch, ORIGIN);

    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_alice/disable", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let revoked = v["revoked"].as_array().unwrap();
    assert_eq!(revoked.len(), 1, "{v}");
    assert_eq!(revoked[0]["enrolment_index"], alice.enrolment_index);
    assert_eq!(revoked[0]["new"], true);
    let at = revoked[0]["log_index"].as_u64().unwrap();
    match entry(&s, at) {
        Entry::Revocation(r) => {
            assert_eq!(r.approver_id, "apv_alice");
            assert_eq!(r.enrolment_index, alice.enrolment_index);
            assert_eq!(r.reason, "disabled");
        }
        other => panic!("entry {at} is not a revocation: {other:?}"),
    }
    assert_eq!(
        s.log_api
            .log
            .revocation_of(alice.enrolment_index)
            .await
            .unwrap(),
        Some(at)
    );
    // Disabling again logs nothing more and answers the same revocation.
    let size = s.tree_size();
    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_alice/disable", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["revoked"][0]["log_index"].as_u64(),
            v["revoked"][0]["new"].as_bool()
        ),
        (Some(at), Some(false))
    );
    assert_eq!(s.tree_size(), size);

    // The pending request cannot be approved: not on the page (the session is gone), not by a
    // submitter posting the signed decision to the log.
    let (st, _) = alice.finish(&rid, "approve", &cred).await;
    assert_eq!(st, 401);
    let token = submitter(&s).await;
    let body = log_decision(&start, &cred, "apv_alice", alice.enrolment_index);
    let got = post_as(&s, &token, "/v1/log/decisions", &body).await;
    assert_refused(
        "a disabled approver's decision",
        &got,
        409,
        "revoked",
        &["revoked"],
    );
    assert_eq!(s.tree_size(), size, "nothing was logged");
}

#[tokio::test]
async fn a_revoked_passkey_cannot_sign_in_or_approve_and_the_approver_is_told() {
    let (smtp_url, mails) = fake_smtp().await;
    let s = Server::start_with(move |mut c| {
        c.smtp_url = Some(countersign_approvals::Secret::new(smtp_url));
        c.smtp_from = "approvals@countersign.test".into();
        c
    })
    .await;
    let client = s.add_client("agent-r", "poll", None).await;
    let alice = s.add_approver("apv_alice", 32).await;
    // A second passkey, added from Alice's signed-in browser.
    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_alice/enrolment-link", json!({}))
        .await;
    assert_eq!(st, 201, "{v}");
    let token = v["enrolment_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let second = SoftPasskey::new(Alg::Es256, 33, RP_ID);
    let (st, v) = s
        .enrol_with_cookie(&token, &second, ORIGIN, &alice.cookie)
        .await;
    assert_eq!(st, 201, "{v}");
    let second_index = v["log_index"].as_u64().unwrap();
    let first_id = B64URL.encode(alice.passkey.lock().unwrap().credential_id());

    client.ask("apv_alice", &[]).await;
    let rid = alice.only_request().await;
    let start = decide_start(&alice, &rid).await;
    let ch = B64URL
        .decode(start["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let signed_before = alice.sign(&ch, ORIGIN);

    // Refusals first: an unknown passkey, a reason that is not one of the three.
    let t = Target {
        url: s.url.clone(),
        data_dir: s.data_dir.clone(),
    };
    let path = "/v1/admin/approvers/apv_alice/revoke-passkey";
    let (st, v) = s
        .admin_post(path, json!({"credential_id": "AAAA", "reason": "lost"}))
        .await;
    assert_eq!((st, v["error"].as_str()), (404, Some("not_found")), "{v}");
    let (st, v) = s
        .admin_post(path, json!({"credential_id": first_id, "reason": "bored"}))
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );

    run_approver(ApproverCmd::RevokePasskey {
        approver_id: "apv_alice".into(),
        credential_id: first_id.clone(),
        reason: "lost".into(),
        target: t.clone(),
    })
    .await
    .unwrap();
    let at = s.tree_size() - 1;
    match entry(&s, at) {
        Entry::Revocation(r) => {
            assert_eq!(r.enrolment_index, alice.enrolment_index);
            assert_eq!(r.reason, "lost");
        }
        other => panic!("entry {at} is not a revocation: {other:?}"),
    }
    let listed = call(&t, reqwest::Method::GET, "/v1/admin/approvers", None)
        .await
        .unwrap();
    let creds = listed["approvers"][0]["credentials"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(creds.len(), 1, "{listed}");
    assert_eq!(creds[0]["enrolment_index"], second_index);

    // The revoked passkey: its session is gone, it cannot sign in again, and what it signed
    // before is not logged, on the page or straight to the log.
    let (st, _) = alice.finish(&rid, "approve", &signed_before).await;
    assert_eq!(st, 401, "the approver's sessions end with the revocation");
    let (st, begin) = post_json(
        &s.http,
        &format!("{}/v1/session/start", s.url),
        "",
        "",
        &json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let ch = B64URL
        .decode(begin["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let cred = {
        let mut pk = alice.passkey.lock().unwrap();
        let a = pk.assert(&ch, ORIGIN);
        pk.assertion_json(&a)
    };
    let got = post_json(
        &s.http,
        &format!("{}/v1/session/finish", s.url),
        "",
        "",
        &json!({"ceremony_id": begin["ceremony_id"], "credential": cred}),
    )
    .await;
    assert_eq!(got.0, 401, "{:?}", got.1);
    let size = s.tree_size();
    let token = submitter(&s).await;
    let body = log_decision(&start, &signed_before, "apv_alice", alice.enrolment_index);
    let got = post_as(&s, &token, "/v1/log/decisions", &body).await;
    assert_refused(
        "a revoked passkey's decision",
        &got,
        409,
        "revoked",
        &["revoked"],
    );

    // Signed in with the other passkey, Alice is told plainly why the revoked one fails, and
    // approves with the one she still has.
    let mut other = alice.clone();
    other.passkey = Arc::new(Mutex::new(second));
    other.sign_in().await;
    let start = decide_start(&other, &rid).await;
    let ch = B64URL
        .decode(start["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let with_revoked = alice.sign(&ch, ORIGIN);
    let got = other.finish(&rid, "approve", &with_revoked).await;
    assert_refused(
        "the revoked passkey",
        &got,
        403,
        "passkey_revoked",
        &["revoked", "nothing was recorded"],
    );
    assert_eq!(s.tree_size(), size, "nothing was logged");
    let receipt = other.decide(&rid, "approve").await;
    assert_eq!(receipt["decision"], "approve");

    // Two enrolments and one revocation, each e-mailed to Alice.
    let mut got = Vec::new();
    for _ in 0..200 {
        got = mails.lock().unwrap().clone();
        if got.iter().filter(|m| m.contains("passkey was")).count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let about =
        |what: &str| -> Vec<String> { got.iter().filter(|m| m.contains(what)).cloned().collect() };
    let added = about("A passkey was added");
    assert_eq!(added.len(), 2, "{got:?}");
    assert!(
        added
            .iter()
            .any(|m| m.contains(&format!("Log entry: {}", alice.enrolment_index))),
        "{added:?}"
    );
    assert!(
        added
            .iter()
            .any(|m| m.contains(&format!("Log entry: {second_index}"))),
        "{added:?}"
    );
    let revoked = about("A passkey was revoked");
    assert_eq!(revoked.len(), 1, "{got:?}");
    let m = &revoked[0];
    assert!(m.contains("To: apv_alice@example.com"), "{m}");
    assert!(m.contains(&format!("Log entry: {at}")), "{m}");
    assert!(m.contains("(lost)"), "{m}");
    assert!(m.contains(&first_id[..12]), "{m}");
}
