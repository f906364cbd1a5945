//! Each refusal of the enrolment ceremony, and a link given back when its enrolment added
//! nothing.

use base64::Engine;
use countersign_testvectors::{Alg, SoftPasskey};
use serde_json::{json, Value};

use crate::common::*;

async fn new_approver(s: &Server, id: &str) -> String {
    let (st, v) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": id, "email": format!("{id}@example.com")}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let url = v["enrolment_url"].as_str().unwrap();
    url.rsplit('/').next().unwrap().to_owned()
}

async fn start(s: &Server, token: &str) -> (u16, Value) {
    post_json(
        &s.http,
        &format!("{}/v1/enrol/start", s.url),
        "",
        "",
        &json!({"token": token}),
    )
    .await
}

/// Starts a ceremony on `token` and finishes it with the passkey's registration, changed by `f`.
async fn finish_with(
    s: &Server,
    token: &str,
    finish_token: &str,
    pk: &SoftPasskey,
    f: impl FnOnce(&mut Value),
) -> (u16, Value) {
    let (st, started) = start(s, token).await;
    assert_eq!(st, 200, "{started}");
    let ch = B64URL
        .decode(started["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let mut credential = pk.registration_json(&ch, ORIGIN);
    f(&mut credential);
    post_json(
        &s.http,
        &format!("{}/v1/enrol/finish", s.url),
        "",
        "",
        &json!({"ceremony_id": started["ceremony_id"], "token": finish_token,
                "credential": credential}),
    )
    .await
}

#[track_caller]
fn refused(got: (u16, Value), status: u16, code: &str, text: &str) {
    let (st, v) = got;
    assert_eq!((st, v["error"].as_str()), (status, Some(code)), "{v}");
    let d = v["error_description"].as_str().unwrap();
    assert!(d.contains(text), "{d:?} does not say {text:?}");
}

#[tokio::test]
async fn each_enrolment_refusal_names_its_cause() {
    let s = Server::start().await;
    let t1 = new_approver(&s, "apv_en1").await;
    let t2 = new_approver(&s, "apv_en2").await;
    let pk = SoftPasskey::new(Alg::Es256, 81, RP_ID);

    refused(
        start(&s, &"t".repeat(129)).await,
        410,
        "invalid_link",
        "unknown, used or expired",
    );
    refused(
        post_json(
            &s.http,
            &format!("{}/v1/enrol/finish", s.url),
            "",
            "",
            &json!({"ceremony_id": "nope", "token": t1,
                    "credential": pk.registration_json(&[0; 32], ORIGIN)}),
        )
        .await,
        400,
        "invalid_request",
        "the enrolment ceremony is unknown or timed out",
    );
    // A ceremony started on one link cannot finish on another.
    refused(
        finish_with(&s, &t2, &t1, &pk, |_| {}).await,
        400,
        "invalid_request",
        "the ceremony belongs to another link",
    );
    refused(
        finish_with(&s, &t1, &t1, &pk, |c| c["type"] = json!("password")).await,
        400,
        "invalid_request",
        "credential type must be public-key",
    );
    refused(
        finish_with(&s, &t1, &t1, &pk, |c| {
            c["response"]["attestationObject"] = json!("not base64!")
        })
        .await,
        400,
        "invalid_request",
        "attestationObject is not base64url",
    );
    refused(
        finish_with(&s, &t1, &t1, &pk, |c| c["rawId"] = json!("AAAA")).await,
        400,
        "invalid_request",
        "rawId is not the attested credential id",
    );
    // None of them logged anything or used the link.
    assert_eq!(s.tree_size(), 0);
    let (st, v) = finish_with(&s, &t1, &t1, &pk, |_| {}).await;
    assert_eq!(st, 201, "{v}");

    // A disabled approver's link no longer starts a ceremony.
    let (st, _) = s
        .admin_post("/v1/admin/approvers/apv_en2/disable", json!({}))
        .await;
    assert_eq!(st, 200);
    refused(
        start(&s, &t2).await,
        410,
        "invalid_link",
        "the approver is disabled",
    );
}

#[tokio::test]
async fn enrolling_the_same_passkey_again_gives_the_link_back() {
    let s = Server::start().await;
    let t1 = new_approver(&s, "apv_again").await;
    let pk = SoftPasskey::new(Alg::EdDsa, 82, RP_ID);
    let (st, v) = s.enrol(&t1, &pk, ORIGIN).await;
    assert_eq!(st, 201, "{v}");
    let size = s.tree_size();

    // A recovery link: the approver has a passkey and no session here.
    let t2 = link(&s, "apv_again", true).await;
    refused(
        s.enrol(&t2, &pk, ORIGIN).await,
        409,
        "already_enrolled",
        "this passkey is already enrolled",
    );
    assert_eq!(s.tree_size(), size);
    // The link was given back: another passkey enrols with it.
    let other = SoftPasskey::new(Alg::Es256, 83, RP_ID);
    let (st, v) = s.enrol(&t2, &other, ORIGIN).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(s.tree_size(), size + 1);
}

/// A new enrolment link for `id` (`recovery`: a recovery link); its token.
async fn link(s: &Server, id: &str, recovery: bool) -> String {
    let (st, v) = s
        .admin_post(
            &format!("/v1/admin/approvers/{id}/enrolment-link"),
            json!({"recovery": recovery}),
        )
        .await;
    assert_eq!((st, v["recovery"].as_bool()), (201, Some(recovery)), "{v}");
    v["enrolment_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_newer_link_voids_older_ones_and_a_second_passkey_needs_the_approver() {
    let s = Server::start().await;
    // Older links stop working once a new one is sent.
    let first = new_approver(&s, "apv_links").await;
    let second = link(&s, "apv_links", false).await;
    refused(
        start(&s, &first).await,
        410,
        "invalid_link",
        "newer enrolment link",
    );
    let pk = SoftPasskey::new(Alg::Es256, 91, RP_ID);
    let (st, v) = s.enrol(&second, &pk, ORIGIN).await;
    assert_eq!(st, 201, "a first passkey needs no session: {v}");

    // An approver who has a passkey: a plain link alone cannot add another.
    let alice = s.add_approver("apv_alice", 92).await;
    let size = s.tree_size();
    let plain = link(&s, "apv_alice", false).await;
    let intruder = SoftPasskey::new(Alg::Es256, 93, RP_ID);
    refused(
        s.enrol(&plain, &intruder, ORIGIN).await,
        403,
        "session_required",
        "sign in with it",
    );
    // Nor with another approver's session.
    let bob = s.add_approver("apv_bob", 94).await;
    let size = size + 1;
    refused(
        s.enrol_with_cookie(&plain, &intruder, ORIGIN, &bob.cookie)
            .await,
        403,
        "session_required",
        "sign in with it",
    );
    assert_eq!(s.tree_size(), size, "nothing was enrolled");
    // Signed in as herself, she adds one.
    let second_key = SoftPasskey::new(Alg::EdDsa, 95, RP_ID);
    let (st, v) = s
        .enrol_with_cookie(&plain, &second_key, ORIGIN, &alice.cookie)
        .await;
    assert_eq!(st, 201, "{v}");
    // A recovery link (her passkeys lost) adds one without a session.
    let recovery = link(&s, "apv_alice", true).await;
    let (st, v) = s
        .enrol(&recovery, &SoftPasskey::new(Alg::Es256, 96, RP_ID), ORIGIN)
        .await;
    assert_eq!(st, 201, "{v}");

    // Disabled between the ceremony's start and its finish: refused at the finish.
    let carol_link = new_approver(&s, "apv_carol").await;
    let carol = SoftPasskey::new(Alg::Es256, 97, RP_ID);
    let (st, started) = start(&s, &carol_link).await;
    assert_eq!(st, 200, "{started}");
    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_carol/disable", json!({}))
        .await;
    assert!(st < 300, "{v}");
    let ch = B64URL
        .decode(started["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let got = post_json(
        &s.http,
        &format!("{}/v1/enrol/finish", s.url),
        "",
        "",
        &json!({"ceremony_id": started["ceremony_id"], "token": carol_link,
                "credential": carol.registration_json(&ch, ORIGIN)}),
    )
    .await;
    refused(got, 410, "invalid_link", "disabled");
}

#[tokio::test]
async fn an_enrolment_whose_browser_goes_away_is_still_finished() {
    let s = Server::start().await;
    let token = new_approver(&s, "apv_gone").await;
    let pk = SoftPasskey::new(Alg::Es256, 84, RP_ID);
    let size = s.tree_size();
    // Hold the approver's record, so the enrolment stops after its link claim and its log
    // entry, and let the browser give up then (its connection closed).
    let guard = s.approvals.store.lock("a/apv_gone").await;
    let gone = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        s.enrol(&token, &pk, ORIGIN),
    )
    .await;
    assert!(gone.is_err(), "the browser must have gone before the end");
    let mut waited = std::time::Duration::ZERO;
    while s.tree_size() == size {
        assert!(waited.as_secs() < 10, "the enrolment never reached the log");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += std::time::Duration::from_millis(20);
    }
    // Let the closed connection be noticed before the record is free.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(guard);
    // Nobody waits for it, yet the passkey is in the approver's record: it can sign in.
    let mut waited = std::time::Duration::ZERO;
    loop {
        let a = s
            .approvals
            .store
            .approver("apv_gone")
            .await
            .unwrap()
            .unwrap();
        if a.credentials.len() == 1 {
            assert_eq!(a.credentials[0].enrolment_index, size);
            break;
        }
        assert!(
            waited.as_secs() < 10,
            "the enrolment was abandoned half-way"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += std::time::Duration::from_millis(20);
    }
}
