//! Evidence bundles through each of their three doors (the client's auth_req_id, the admin's
//! request id, the approver's own page), and the refusals at each.

use countersign_verifier::{BundlePolicy, EvidenceBundle};
use serde_json::Value;

use crate::common::*;

#[track_caller]
fn refused(st: u16, body: &str, status: u16, code: &str) {
    assert_eq!(st, status, "{body}");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"], code, "{body}");
}

#[tokio::test]
async fn evidence_through_each_door() {
    let s = Server::start().await;
    let client = s.add_client("agent-ev", "poll", None).await;
    let alice = s.add_approver("apv_ev", 61).await;
    let id = client.ask("apv_ev", &[]).await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let (st, _) = client.token(&id).await;
    assert_eq!(st, 200);

    // The client's door.
    let (st, body) = client.evidence(&id, Some("yaml")).await;
    refused(st, &body, 400, "invalid_request");
    assert!(body.contains("format must be json or tlog-proof"), "{body}");
    let (st, body) = client.evidence(&"a".repeat(257), None).await;
    refused(st, &body, 404, "not_found");
    let (st, by_client) = client.evidence(&id, None).await;
    assert_eq!(st, 200, "{by_client}");

    // The admin's door, by the public request id: the same bundle.
    let admin_get = |path: String| {
        let http = s.http.clone();
        let admin = s.admin.clone();
        async move {
            let r = http.get(path).bearer_auth(admin).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (st, by_admin) = admin_get(format!("{}/v1/admin/evidence/{rid}", s.url)).await;
    assert_eq!(st, 200, "{by_admin}");
    let a = EvidenceBundle::from_json(by_admin.as_bytes()).unwrap();
    let c = EvidenceBundle::from_json(by_client.as_bytes()).unwrap();
    assert_eq!(a.decision, c.decision);
    assert_eq!(a.statement, c.statement);
    // Who the ids stand for: the admin sees it, the client does not.
    assert_eq!(
        a.parties.as_ref().unwrap()["approver"]["email"],
        "apv_ev@example.com"
    );
    assert!(c.parties.is_none(), "{by_client}");
    assert!(!by_client.contains("@example.com"), "{by_client}");
    let v = a.verify(&s.vkey, &BundlePolicy::default()).unwrap();
    assert_eq!(v.statement.request_id, rid);
    let (st, body) = admin_get(format!("{}/v1/admin/evidence/req_nope", s.url)).await;
    refused(st, &body, 404, "not_found");
    let (st, proof) = admin_get(format!(
        "{}/v1/admin/evidence/{rid}?format=tlog-proof",
        s.url
    ))
    .await;
    assert_eq!(st, 200, "{proof}");
    assert_eq!(proof, a.decision_tlog_proof().unwrap());

    // The approver's door: signed in, their own request only.
    let (st, body) = alice
        .get(&format!("/approve/requests/{rid}/evidence"))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        EvidenceBundle::from_json(body.as_bytes()).unwrap().decision,
        a.decision
    );
    let r = s
        .http
        .get(format!("{}/approve/requests/{rid}/evidence", s.url))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    refused(st, &r.text().await.unwrap(), 401, "login_required");
    let bob = s.add_approver("apv_ev_bob", 62).await;
    let (st, _) = bob.get(&format!("/approve/requests/{rid}/evidence")).await;
    assert_eq!(st, 404, "another approver's request is not found");
}

/// `serve --evidence-include-parties`: the operator lets clients see who the ids stand for.
#[tokio::test]
async fn clients_see_the_parties_only_when_the_operator_opts_in() {
    let s = Server::start_with(|mut c| {
        c.evidence_include_parties = true;
        c
    })
    .await;
    let client = s.add_client("agent-pt", "poll", None).await;
    let alice = s.add_approver("apv_pt", 62).await;
    let id = client.ask("apv_pt", &[]).await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let (st, body) = client.evidence(&id, None).await;
    assert_eq!(st, 200, "{body}");
    let b = EvidenceBundle::from_json(body.as_bytes()).unwrap();
    let p = b.parties.as_ref().unwrap();
    assert_eq!(
        (&p["approver"]["email"], &p["approver"]["name"]),
        (&Value::from("apv_pt@example.com"), &Value::from("apv_pt"))
    );
}
