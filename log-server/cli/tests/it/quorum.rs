//! M-of-N approvals under an approval policy (issue 18): a 2-of-3 rule for payments over 1000,
//! over HTTP with software passkeys. One approval leaves the agent pending; the same approver
//! again (another passkey included) changes nothing; a second approver releases the token,
//! which carries both; a denial ends the request even after an approval; a payment of 500 needs
//! one approval; a request the policy cannot evaluate is refused and nothing is written; a new
//! policy applies to new requests only. Each bundle verifies offline, and fails with an approval
//! removed or its quorum lowered.

use std::sync::Arc;

use countersign_approvals::policy::{parse_policy_toml, ActivePolicy};
use countersign_testvectors::{Alg, AssertOptions, SoftPasskey};
use countersign_verifier::{BundlePolicy, EvidenceBundle, ValidatedPolicy};
use serde_json::{json, Value};

use crate::common::{
    assert_refused, verify_jwt, Approver, Client, Receiver, Server, ORIGIN, RP_ID,
};

/// The issue's example: payments over 1000 by agent-pay need 2 of the 3 treasury approvers.
pub(crate) const POLICY: &str = include_str!("../../../../testvectors/policy-toml/treasury.toml");

pub(crate) fn payment(amount: &str) -> String {
    json!([{
        "type": "payment_initiation",
        "instructedAmount": {"currency": "EUR", "amount": amount},
        "creditorName": "ACME"
    }])
    .to_string()
}

/// Logs `policy` as a policy entry and puts it in force, as `serve --policy` does.
pub(crate) async fn put_in_force(s: &Server, policy: &ValidatedPolicy) -> u64 {
    let appended = s.log_api.log.append_policy(policy).await.unwrap();
    s.approvals.set_active_policy(Some(Arc::new(ActivePolicy {
        policy: policy.clone(),
        index: appended.index,
        sha256: policy.hash(),
    })));
    appended.index
}

struct Setup {
    s: Server,
    pay: Client,
    t1: Approver,
    t2: Approver,
    t3: Approver,
    alice: Approver,
    policy_index: u64,
}

async fn setup() -> Setup {
    let s = Server::start().await;
    let pay = s.add_client("agent-pay", "poll", None).await;
    let t1 = s.add_approver("apv_t1", 11).await;
    let t2 = s.add_approver("apv_t2", 12).await;
    let t3 = s.add_approver("apv_t3", 13).await;
    let alice = s.add_approver("apv_alice", 14).await;
    let policy = parse_policy_toml(POLICY).unwrap();
    let policy_index = put_in_force(&s, &policy).await;
    Setup {
        s,
        pay,
        t1,
        t2,
        t3,
        alice,
        policy_index,
    }
}

/// The token endpoint's answer for `auth_req_id`, polled no faster than the interval (1 s).
async fn poll(pay: &Client, auth_req_id: &str) -> (u16, Value) {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    pay.token(auth_req_id).await
}

/// The request of `auth_req_id` as `a` sees it in their inbox, if it is there.
async fn in_inbox(a: &Approver, request_id: &str) -> Option<Value> {
    a.inbox()
        .await
        .into_iter()
        .find(|r| r["request_id"] == request_id)
}

fn verify(
    s: &Server,
    bundle: &EvidenceBundle,
) -> Result<countersign_verifier::VerifiedBundle, String> {
    bundle
        .verify(
            &s.vkey,
            &BundlePolicy {
                rp_id: Some(RP_ID),
                require_user_verification: true,
                ..BundlePolicy::default()
            },
        )
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn two_of_three_needs_two_distinct_approvers_and_the_bundle_proves_it() {
    let Setup {
        s,
        pay,
        t1,
        t2,
        t3,
        alice,
        policy_index,
    } = setup().await;
    let details = payment("1500.00");
    let auth = pay
        .ask("apv_t1", &[("authorization_details", &details)])
        .await;
    // In every eligible approver's inbox, with the count so far; not in anyone else's.
    let listed = t1.inbox().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let request_id = listed[0]["request_id"].as_str().unwrap().to_owned();
    for a in [&t1, &t2, &t3] {
        let v = in_inbox(a, &request_id)
            .await
            .expect("in each treasury inbox");
        assert_eq!(v["quorum"], 2);
        assert_eq!(v["rule"], "payments over 1000");
        assert_eq!(v["approvers"], json!(["apv_t1", "apv_t2", "apv_t3"]));
        assert_eq!(v["approvals"], json!([]));
    }
    assert!(in_inbox(&alice, &request_id).await.is_none());
    let (_, page) = t2.get("/approve").await;
    assert!(page.contains("0 of 2 approvals"), "{page}");

    // One approval: recorded, the agent still waits.
    let size = s.tree_size();
    let first = t1.decide(&request_id, "approve").await;
    assert_eq!(first["status"], "pending", "{first}");
    assert_eq!(
        (first["approvals"].as_u64(), first["quorum"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(s.tree_size(), size + 1);
    let (st, v) = poll(&pay, &auth).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("authorization_pending")),
        "{v}"
    );
    // It left t1's inbox (t1 decided), the others see one of two.
    assert!(in_inbox(&t1, &request_id).await.is_none());
    let v = in_inbox(&t3, &request_id).await.unwrap();
    assert_eq!(v["approvals"][0]["approver_id"], "apv_t1");
    let (_, page) = t3.get("/approve").await;
    assert!(page.contains("1 of 2 approvals"), "{page}");
    let (_, page) = t1.get(&format!("/approve/requests/{request_id}")).await;
    assert!(page.contains("You approved"), "{page}");

    // t1 again: refused before signing, and with another of t1's passkeys nothing is logged.
    let (st, v) = t1
        .post(
            &format!("/v1/requests/{request_id}/decide/start"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (409, Some("already_approved")),
        "{v}"
    );
    let (st, link) = s
        .admin_post("/v1/admin/approvers/apv_t1/enrolment-link", json!({}))
        .await;
    assert_eq!(st, 201, "{link}");
    let token = link["enrolment_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let mut second = SoftPasskey::new(Alg::Es256, 99, RP_ID);
    let (st, v) = s
        .enrol_with_cookie(token, &second, ORIGIN, &t1.cookie)
        .await;
    assert_eq!(st, 201, "{v}");
    // The challenge is the request's (nonce and statement hash), the same for every approver.
    let ch = t2.challenge(&request_id, "approve").await;
    let a = second.assert_with(&AssertOptions::new(&ch, ORIGIN));
    let cred = second.assertion_json(&a);
    let size = s.tree_size();
    let (st, v) = t1.finish(&request_id, "approve", &cred).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (409, Some("already_approved")),
        "{v}"
    );
    assert_eq!(
        s.tree_size(),
        size,
        "a second approval by one approver logged nothing"
    );
    let (st, v) = poll(&pay, &auth).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("authorization_pending")),
        "{v}"
    );

    // A second approver releases the token, which carries both approvals.
    let done = t2.decide(&request_id, "approve").await;
    assert_eq!(done["status"], "approved", "{done}");
    let (st, tok) = poll(&pay, &auth).await;
    assert_eq!(st, 200, "{tok}");
    let (_, claims) = verify_jwt(&s, tok["access_token"].as_str().unwrap()).await;
    let approvals = claims["approvals"].as_array().unwrap();
    let who: Vec<&str> = approvals
        .iter()
        .map(|a| a["approver_id"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["apv_t1", "apv_t2"]);
    assert_eq!(approvals[0]["log_index"], first["log_index"]);
    assert_eq!(approvals[1]["log_index"], done["log_index"]);
    assert_eq!(claims["log_index"], done["log_index"]);
    assert_eq!(
        (claims["quorum"].as_u64(), claims["policy_index"].as_u64()),
        (Some(2), Some(policy_index))
    );
    assert_eq!(claims["rule"], "payments over 1000");
    assert_eq!(claims["sub"], "apv_t1");

    // The bundle: version 2, both approvals and the policy entry; it verifies offline.
    let (st, text) = pay.evidence(&auth, None).await;
    assert_eq!(st, 200, "{text}");
    let bundle = EvidenceBundle::from_json(text.as_bytes()).unwrap();
    assert_eq!(bundle.version, 2);
    assert_eq!(bundle.approvals.len(), 1);
    assert_eq!(bundle.policy.as_ref().unwrap().index, policy_index);
    let st = &bundle.statement;
    assert_eq!(st.version, 2);
    let p = st.policy.as_ref().unwrap();
    assert_eq!((p.index, p.quorum), (policy_index, 2));
    assert_eq!(p.rule.as_deref(), Some("payments over 1000"));
    verify(&s, &bundle).unwrap();

    // With one approval removed, the quorum is not met.
    let mut missing = bundle.clone();
    missing.approvals.clear();
    assert!(
        verify(&s, &missing).is_err(),
        "a bundle with one approval verified"
    );
    // With the statement's quorum lowered to 1, the statement is not the one signed.
    let mut lowered = bundle.clone();
    lowered.statement.policy.as_mut().unwrap().quorum = 1;
    assert!(verify(&s, &lowered).is_err(), "a lowered quorum verified");
}

#[tokio::test]
async fn a_denial_ends_it_even_after_an_approval() {
    let Setup {
        s: _server,
        pay,
        t1,
        t2,
        t3,
        ..
    } = setup().await;
    let details = payment("2500");
    let auth = pay
        .ask("apv_t2", &[("authorization_details", &details)])
        .await;
    let request_id = t1.only_request().await;
    t1.decide(&request_id, "approve").await;
    let denied = t3.decide(&request_id, "deny").await;
    assert_eq!(denied["status"], "denied", "{denied}");
    let (st, v) = poll(&pay, &auth).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
    // Nobody can approve it any more.
    let (st, v) = t2
        .post(
            &format!("/v1/requests/{request_id}/decide/start"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (409, Some("already_decided")),
        "{v}"
    );
    assert!(t2.inbox().await.is_empty());
}

#[tokio::test]
async fn below_the_threshold_one_approval_is_enough_and_groups_can_be_named() {
    let Setup {
        s,
        pay,
        t1,
        t2,
        alice,
        policy_index,
        ..
    } = setup().await;
    // 500: no rule matches; the named approver alone, quorum 1, under the policy.
    let auth = pay
        .ask("apv_alice", &[("authorization_details", &payment("500"))])
        .await;
    let request_id = alice.only_request().await;
    assert!(t1.inbox().await.is_empty());
    let done = alice.decide(&request_id, "approve").await;
    assert_eq!(done["status"], "approved", "{done}");
    let (st, tok) = poll(&pay, &auth).await;
    assert_eq!(st, 200, "{tok}");
    let (st, text) = pay.evidence(&auth, None).await;
    assert_eq!(st, 200, "{text}");
    let bundle = EvidenceBundle::from_json(text.as_bytes()).unwrap();
    let p = bundle.statement.policy.clone().unwrap();
    assert_eq!((p.index, p.quorum, p.rule), (policy_index, 1, None));
    assert_eq!(p.approvers, ["apv_alice"]);
    verify(&s, &bundle).unwrap();

    // login_hint=group:treasury for 500: any one of the group.
    let auth = pay
        .ask(
            "group:treasury",
            &[("authorization_details", &payment("500"))],
        )
        .await;
    let request_id = t2.only_request().await;
    assert_eq!(t1.only_request().await, request_id);
    assert!(alice.inbox().await.is_empty());
    t2.decide(&request_id, "approve").await;
    let (st, tok) = poll(&pay, &auth).await;
    assert_eq!(st, 200, "{tok}");
    assert!(t1.inbox().await.is_empty());

    // An unknown group reaches no one, like an unknown approver.
    let got = pay
        .bc_authorize("group:nobody", &[("authorization_details", &payment("5"))])
        .await;
    assert_refused("unknown group", &got, 400, "unknown_user_id", &[]);
}

#[tokio::test]
async fn a_request_the_policy_cannot_evaluate_is_refused_and_nothing_is_written() {
    let Setup { s, pay, t1, .. } = setup().await;
    let size = s.tree_size();
    for (amount, why) in [
        (json!("1,500"), "not a decimal"),
        (json!(null), "null"),
        (json!(true), "boolean"),
    ] {
        let details =
            json!([{"type": "payment_initiation", "instructedAmount": {"amount": amount}}])
                .to_string();
        let got = pay
            .bc_authorize("apv_t1", &[("authorization_details", &details)])
            .await;
        assert_refused(
            why,
            &got,
            400,
            "invalid_authorization_details",
            &["payments over 1000", why],
        );
    }
    let details = json!([{"type": "payment_initiation", "creditorName": "ACME"}]).to_string();
    let got = pay
        .bc_authorize("apv_t1", &[("authorization_details", &details)])
        .await;
    assert_refused(
        "missing",
        &got,
        400,
        "invalid_authorization_details",
        &["missing"],
    );
    assert!(t1.inbox().await.is_empty());
    assert_eq!(s.tree_size(), size);
}

#[tokio::test]
async fn a_new_policy_applies_to_new_requests_only() {
    let Setup {
        s,
        pay,
        t1,
        t2,
        t3,
        policy_index,
        ..
    } = setup().await;
    let old = pay
        .ask("apv_t1", &[("authorization_details", &payment("1500"))])
        .await;
    let old_id = t1.only_request().await;
    // The new policy: every payment needs all three.
    let stricter = parse_policy_toml(
        r#"
[groups]
treasury = ["apv_t1", "apv_t2", "apv_t3"]
[[rules]]
name = "every payment"
when.type = "payment_initiation"
approvers = "treasury"
quorum = 3
"#,
    )
    .unwrap();
    let new_index = put_in_force(&s, &stricter).await;
    assert!(new_index > policy_index);
    let entry = s
        .log_api
        .log
        .store()
        .unwrap()
        .entry(new_index)
        .unwrap()
        .unwrap();
    match countersign_verifier::Entry::decode(&entry).unwrap() {
        countersign_verifier::Entry::Policy(p) => {
            assert_eq!(p.policy, stricter.canonical_json());
            assert_eq!(p.validated().unwrap(), stricter);
        }
        other => panic!("not a policy entry: {other:?}"),
    }
    let new = pay
        .ask("apv_t1", &[("authorization_details", &payment("10"))])
        .await;
    let views = t1.inbox().await;
    let new_view = views.iter().find(|v| v["request_id"] != old_id).unwrap();
    let new_id = new_view["request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (new_view["quorum"].as_u64(), new_view["rule"].as_str()),
        (Some(3), Some("every payment"))
    );
    let old_view = views.iter().find(|v| v["request_id"] == old_id).unwrap();
    assert_eq!(old_view["quorum"], 2);

    // The old request completes with two, under the policy it was made under.
    t1.decide(&old_id, "approve").await;
    t2.decide(&old_id, "approve").await;
    let (st, tok) = poll(&pay, &old).await;
    assert_eq!(st, 200, "{tok}");
    let (_, claims) = verify_jwt(&s, tok["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["policy_index"].as_u64(), Some(policy_index));
    let (_, text) = pay.evidence(&old, None).await;
    verify(&s, &EvidenceBundle::from_json(text.as_bytes()).unwrap()).unwrap();

    // The new one needs all three.
    t1.decide(&new_id, "approve").await;
    t2.decide(&new_id, "approve").await;
    let (st, v) = poll(&pay, &new).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("authorization_pending")),
        "{v}"
    );
    t3.decide(&new_id, "approve").await;
    let (st, tok) = poll(&pay, &new).await;
    assert_eq!(st, 200, "{tok}");
    let (_, text) = pay.evidence(&new, None).await;
    let bundle = EvidenceBundle::from_json(text.as_bytes()).unwrap();
    assert_eq!(bundle.approvals.len(), 2);
    verify(&s, &bundle).unwrap();
}

#[tokio::test]
async fn push_and_ping_are_delivered_once_the_quorum_is_reached() {
    let s = Server::start().await;
    let rx = Receiver::start().await;
    let push = s.add_client("agent-pay", "push", Some(&rx.url)).await;
    let t1 = s.add_approver("apv_t1", 21).await;
    let t2 = s.add_approver("apv_t2", 22).await;
    s.add_approver("apv_t3", 23).await;
    put_in_force(&s, &parse_policy_toml(POLICY).unwrap()).await;

    let auth = push
        .ask(
            "group:treasury",
            &[
                ("authorization_details", &payment("1200")),
                ("client_notification_token", "push-tok"),
            ],
        )
        .await;
    let request_id = t1.only_request().await;
    t1.decide(&request_id, "approve").await;
    // One approval of two: nothing is delivered.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        rx.got.lock().unwrap().is_empty(),
        "delivered before the quorum"
    );
    t2.decide(&request_id, "approve").await;
    let (bearer, body) = rx.wait(1).await;
    assert_eq!(bearer.as_deref(), Some("Bearer push-tok"));
    assert_eq!(body["auth_req_id"], auth);
    let (_, claims) = verify_jwt(&s, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["approvals"].as_array().map(Vec::len), Some(2));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 1, "delivered more than once");

    // Ping: a denial after one approval is delivered as such, once.
    let prx = Receiver::start().await;
    let ping = s.add_client("agent-ping", "ping", Some(&prx.url)).await;
    // The rule is for agent-pay only: agent-ping's large payment needs only its named approver.
    let auth = ping
        .ask(
            "apv_t2",
            &[
                ("authorization_details", &payment("5000")),
                ("client_notification_token", "ping-tok"),
            ],
        )
        .await;
    assert!(t1.inbox().await.is_empty());
    let request_id = t2.only_request().await;
    t2.decide(&request_id, "deny").await;
    let (bearer, body) = prx.wait(1).await;
    assert_eq!(bearer.as_deref(), Some("Bearer ping-tok"));
    assert_eq!(body["auth_req_id"], auth);
    let (st, v) = poll(&ping, &auth).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
}
