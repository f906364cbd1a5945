//! Revocations: logged once per enrolment, checked against the enrolment they name, and after
//! them the log refuses every decision of the revoked credential, across restarts.

use countersign_log::storage::{Store, CF_META, CF_REVOCATIONS, META_REVOCATIONS_INDEXED};
use countersign_log::{DecisionRequest, RefusalReason, RevocationRequest};
use countersign_testvectors::SoftPasskey;
use countersign_verifier::{Decision, Entry};
use serde_json::{json, Value};

use crate::common::{config, passkey, signed_decision, TestLog};

fn revocation_body(approver: &str, credential_id: &[u8], enrolment_index: u64) -> Value {
    json!({
        "approver_id": approver,
        "credential_id": hex::encode(credential_id),
        "enrolment_index": enrolment_index,
        "reason": "lost",
    })
}

/// The in-process form of a decision body.
fn decision_request(v: &Value) -> DecisionRequest {
    let bytes = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    DecisionRequest {
        decision: Decision::Approve,
        statement_hash: bytes("statement_hash").try_into().unwrap(),
        nonce: bytes("nonce").try_into().unwrap(),
        approver_id: v["approver_id"].as_str().unwrap().to_owned(),
        credential_id: bytes("credential_id"),
        authenticator_data: bytes("authenticator_data"),
        client_data_json: bytes("client_data_json"),
        signature: bytes("signature"),
        enrolment_index: v["enrolment_index"].as_u64().unwrap(),
        not_after_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_revocation_a_credential_decides_nothing() {
    let log = TestLog::start().await;
    let (mut pk, enrol, revoked_at) = revocation_rules(&log).await;

    // The index survives a restart, and is rebuilt from the entries when a log lacks it (one
    // written before it existed).
    let fourth = signed_decision(&mut pk, "approver-r", enrol, 4, |_| {});
    let dir = log.stop_keep().await;
    let data = dir.path().join("data");
    for rebuild in [false, true] {
        if rebuild {
            let store = Store::open(&data.join(countersign_log::DB_DIR)).unwrap();
            let db = store.db();
            db.delete_cf(store.cf(CF_REVOCATIONS).unwrap(), enrol.to_be_bytes())
                .unwrap();
            db.delete_cf(store.cf(CF_META).unwrap(), META_REVOCATIONS_INDEXED)
                .unwrap();
            assert_eq!(store.revocation(enrol).unwrap(), None);
        }
        let d = data.clone();
        let started = tokio::task::spawn_blocking(move || countersign_log::start(config(d)))
            .await
            .unwrap()
            .unwrap();
        let h = started.api.log.clone();
        assert_eq!(h.revocation_of(enrol).await.unwrap(), Some(revoked_at));
        let e = h
            .append_decision(decision_request(&fourth))
            .await
            .unwrap_err();
        assert_eq!(e.reason(), Some(RefusalReason::Revoked), "{e}");
        h.shutdown().await;
        drop(h);
        drop(started);
    }
}

/// The same rules on the shared driver, where the log reads what they need from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_revocation_a_credential_decides_nothing_on_the_shared_driver() {
    if let Some((_db, log)) = TestLog::on_shared_driver().await {
        revocation_rules(&log).await;
        log.stop().await;
    }
}

/// Enrols and decides, revokes (only the admin, only the enrolment of that approver and
/// credential, once), then checks that the revoked credential decides nothing more, alone or
/// in a batch, while its earlier decision is still answered. Returns the passkey, its enrolment
/// index and the revocation's.
async fn revocation_rules(log: &TestLog) -> (SoftPasskey, u64, u64) {
    let mut pk = passkey(40);
    let cred = pk.credential_id().to_vec();
    let enrol = log.enrol(&pk, "approver-r").await;
    let token = log.submitter().await;
    let first = signed_decision(&mut pk, "approver-r", enrol, 1, |_| {});
    let (s, d1) = log.post("/v1/log/decisions", &token, &first).await;
    assert_eq!(s, 201, "{d1}");
    let decision_index = d1["index"].as_u64().unwrap();

    // Only the admin revokes, and only an enrolment of that very approver and credential.
    let body = revocation_body("approver-r", &cred, enrol);
    let (s, v) = log.post("/v1/log/revocations", &token, &body).await;
    assert_eq!(s, 401, "{v}");
    for (body, status, code) in [
        (
            revocation_body("approver-x", &cred, enrol),
            400,
            "enrolment_mismatch",
        ),
        (
            revocation_body("approver-r", &[9; 16], enrol),
            400,
            "enrolment_mismatch",
        ),
        (
            revocation_body("approver-r", &cred, decision_index),
            400,
            "not_an_enrolment",
        ),
        (
            revocation_body("approver-r", &cred, 999),
            404,
            "unknown_enrolment",
        ),
    ] {
        let (s, v) = log.post("/v1/log/revocations", &log.admin, &body).await;
        assert_eq!((s, v["error"].as_str().unwrap()), (status, code), "{v}");
    }
    let mut bad_reason = body.clone();
    bad_reason["reason"] = json!("Lost!");
    let (s, v) = log
        .post("/v1/log/revocations", &log.admin, &bad_reason)
        .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (400, "invalid_entry"),
        "{v}"
    );
    assert_eq!(log.checkpoint().await.size, 2, "nothing was written");

    let (s, r) = log.post("/v1/log/revocations", &log.admin, &body).await;
    assert_eq!(s, 201, "{r}");
    let revoked_at = r["index"].as_u64().unwrap();
    let entry = log.state.log.entry(revoked_at).await.unwrap().unwrap();
    match Entry::decode(&entry).unwrap() {
        Entry::Revocation(rv) => {
            assert_eq!(
                (
                    rv.approver_id.as_str(),
                    &rv.credential_id,
                    rv.enrolment_index
                ),
                ("approver-r", &cred, enrol)
            );
            assert_eq!(rv.reason, "lost");
        }
        other => panic!("not a revocation: {other:?}"),
    }
    assert_eq!(
        log.state.log.revocation_of(enrol).await.unwrap(),
        Some(revoked_at)
    );
    let (s, v) = log.post("/v1/log/revocations", &log.admin, &body).await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (409, "already_revoked"),
        "{v}"
    );

    // A new decision of the revoked credential: refused, alone or in a batch.
    let size = log.checkpoint().await.size;
    let second = signed_decision(&mut pk, "approver-r", enrol, 2, |_| {});
    let (s, v) = log.post("/v1/log/decisions", &token, &second).await;
    assert_eq!((s, v["error"].as_str().unwrap()), (409, "revoked"), "{v}");
    let third = signed_decision(&mut pk, "approver-r", enrol, 3, |_| {});
    let (s, v) = log
        .post(
            "/v1/log/decisions/batch",
            &token,
            &json!({"decisions": [third]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["refused"], 1, "{v}");
    assert_eq!(v["results"][0]["error"], "revoked", "{v}");
    assert_eq!(v["results"][0]["status"], 409, "{v}");
    assert_eq!(log.checkpoint().await.size, size, "nothing was written");
    // A decision logged before the revocation is still answered with its entry.
    let (s, v) = log.post("/v1/log/decisions", &token, &first).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["index"].as_u64(), Some(decision_index));

    (pk, enrol, revoked_at)
}

/// A revocation and decisions of the same credential submitted together: the sequencer decides
/// them in one order, and no decision lands after the revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_decision_is_logged_after_a_concurrent_revocation() {
    let log = TestLog::start().await;
    let mut pk = passkey(41);
    let cred = pk.credential_id().to_vec();
    let enrol = log.enrol(&pk, "approver-c").await;
    let decisions: Vec<DecisionRequest> = (0..64)
        .map(|n| decision_request(&signed_decision(&mut pk, "approver-c", enrol, n, |_| {})))
        .collect();
    let h = log.state.log.clone();
    let mut tasks = Vec::new();
    for (n, d) in decisions.into_iter().enumerate() {
        let hd = h.clone();
        tasks.push(tokio::spawn(async move {
            if n == 8 {
                tokio::task::yield_now().await;
            }
            hd.append_decision(d).await
        }));
        if n == 8 {
            let h = h.clone();
            let cred = cred.clone();
            tasks.push(tokio::spawn(async move {
                h.append_revocation(RevocationRequest {
                    approver_id: "approver-c".into(),
                    credential_id: cred,
                    enrolment_index: enrol,
                    reason: "compromised".into(),
                })
                .await
            }));
        }
    }
    let mut logged = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => logged.push(a.index),
            Err(e) => assert!(
                matches!(
                    e.reason(),
                    Some(RefusalReason::Revoked | RefusalReason::SignCount)
                ),
                "{e}"
            ),
        }
    }
    let revoked_at = h.revocation_of(enrol).await.unwrap().unwrap();
    let size = log.checkpoint().await.size;
    for index in 0..size {
        let e = Entry::decode(&h.store().unwrap().entry(index).unwrap().unwrap()).unwrap();
        if let Entry::Decision(_) = e {
            assert!(
                index < revoked_at,
                "decision {index} after revocation {revoked_at}"
            );
        }
    }
    assert!(logged.contains(&revoked_at));
    log.stop().await;
}
