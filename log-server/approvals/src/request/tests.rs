//! Every transition of the request state machine, on its own (pure: record in, record and store
//! changes out) and through [`decide`] and [`recover_claims`] on a real log and store: a
//! decision whose caller goes away half-way, and a restart after a crash in each state a
//! decision passes through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use countersign_log::http::AdminAuth;
use countersign_log::{
    Config, DecisionRequest, EnrolmentRequest, LogHandle, RpPolicy, SequencerConfig,
};
use countersign_testvectors::{Alg, SoftPasskey};
use countersign_verifier::{challenge, Hash, Statement};
use serde_json::json;

use super::*;
use crate::config::CibaConfig;
use crate::decision::*;
use crate::state::Approvals;
use crate::store::PENDING_PREFIX;
use crate::store::{CredentialRef, DeliveryMode, Durability, CLAIM_PREFIX};
use crate::util::Secret;
use crate::COLUMN_FAMILIES;
use countersign_log::storage::kv::Op;

const RP_ID: &str = "approve.test";
const ORIGIN: &str = "https://approve.test";
const NOW: u64 = 1_750_000_000;
const KEY: &str = "r/00ff";

fn record(expires_at: u64) -> RequestRecord {
    RequestRecord {
        request_id: "req_test".into(),
        statement: Statement {
            version: 1,
            log_origin: "test.example/log".into(),
            request_id: "req_test".into(),
            client_id: "agent".into(),
            approver_id: "apv_alice".into(),
            policy: None,
            scope: "openid".into(),
            binding_message: "Pay 42.00 EUR to ACME".into(),
            authorization_details: json!([{"type": "payment_initiation", "amount": "42.00"}]),
            requested_at: expires_at.saturating_sub(300),
            expires_at,
            decision: "approve".into(),
        },
        nonce: "11".repeat(32),
        mode: DeliveryMode::Poll,
        client_notification_token: None,
        status: RequestStatus::Pending,
        decision: None,
        token_issued: false,
        claim: None,
        audience: None,
        approvals: Vec::new(),
        require_uv: false,
        require_attestation: false,
    }
}

fn a_claim(decision: Decision) -> ClaimRecord {
    ClaimRecord {
        instance: String::new(),
        assertion_key: "22".repeat(32),
        decision,
        enrolment_index: 0,
        statement_hash: "33".repeat(32),
        approver_id: String::new(),
    }
}

fn logged_at(index: u64) -> DecisionRecord {
    DecisionRecord {
        index,
        leaf_hash: "44".repeat(32),
        enrolment_index: 0,
        statement_hash: "33".repeat(32),
        decided_at: NOW,
        approver_id: String::new(),
    }
}

/// The keys a batch puts and deletes, in order.
fn keys(b: &Batch) -> (Vec<&str>, Vec<&str>) {
    let (mut puts, mut dels) = (Vec::new(), Vec::new());
    for (k, v) in b.ops() {
        if v.is_some() {
            puts.push(k.as_str());
        } else {
            dels.push(k.as_str());
        }
    }
    (puts, dels)
}

/// The record a batch stores under [`KEY`].
fn stored(b: &Batch) -> RequestRecord {
    let (_, v): &Op = b.ops().iter().find(|(k, _)| k == KEY).unwrap();
    serde_json::from_slice(v.as_ref().unwrap()).unwrap()
}

#[test]
fn create_writes_the_record_and_its_three_indexes() {
    let r = record(NOW + 300);
    let b = create(&r, KEY).unwrap();
    let (puts, dels) = keys(&b);
    assert_eq!(
        puts,
        [
            KEY,
            "q/req_test",
            &format!("x/{:016x}/req_test", NOW + 300),
            &format!("{PENDING_PREFIX}apv_alice/req_test"),
        ]
    );
    assert!(dels.is_empty());
    assert_eq!(stored(&b).status, RequestStatus::Pending);
}

#[test]
fn claim_takes_a_pending_request_and_nothing_else() {
    let mut r = record(NOW + 300);
    let b = claim(&mut r, KEY, NOW, a_claim(Decision::Approve)).unwrap();
    assert_eq!(r.status, RequestStatus::Deciding);
    assert_eq!(keys(&b), (vec![KEY, "i/00ff"], vec![]));
    assert_eq!(stored(&b).claim.unwrap().decision, Decision::Approve);
    // Claimed already: a second decision cannot start.
    let mut again = r.clone();
    assert_eq!(
        claim(&mut again, KEY, NOW, a_claim(Decision::Deny)).unwrap_err(),
        TransitionError::InProgress
    );
    assert_eq!(again.claim.unwrap().decision, Decision::Approve);
    // At or past expiry.
    let mut late = record(NOW);
    assert_eq!(
        claim(&mut late, KEY, NOW, a_claim(Decision::Approve)).unwrap_err(),
        TransitionError::Expired
    );
    assert_eq!(late.status, RequestStatus::Pending);
    // Decided, or expired for good.
    for (status, err) in [
        (RequestStatus::Approved, TransitionError::AlreadyDecided),
        (RequestStatus::Denied, TransitionError::AlreadyDecided),
        (RequestStatus::Expired, TransitionError::Expired),
    ] {
        let mut r = record(NOW + 300);
        r.status = status;
        assert_eq!(
            claim(&mut r, KEY, NOW, a_claim(Decision::Approve)).unwrap_err(),
            err
        );
        assert_eq!(r.status, status, "a refused claim changes nothing");
    }
}

#[test]
fn finish_records_the_decision_and_clears_the_indexes() {
    for (decision, status) in [
        (Decision::Approve, RequestStatus::Approved),
        (Decision::Deny, RequestStatus::Denied),
    ] {
        let mut r = record(NOW + 300);
        claim(&mut r, KEY, NOW, a_claim(decision)).unwrap();
        let b = finish(&mut r, KEY, decision, logged_at(7), None).unwrap();
        assert_eq!(r.status, status);
        assert_eq!(r.statement.decision, decision.as_str());
        assert!(r.claim.is_none());
        assert_eq!(r.decision.as_ref().unwrap().index, 7);
        let pending = format!("{PENDING_PREFIX}apv_alice/req_test");
        // The decision joins the approver's history, newest first.
        let history = CibaStore::history_key("apv_alice", 7, "req_test");
        assert!(history.starts_with("h/apv_alice/"));
        // The evidence record, apart from the request, with its lookups.
        let evidence = CibaStore::evidence_key(7);
        assert_eq!(
            keys(&b),
            (
                vec![
                    KEY,
                    evidence.as_str(),
                    "Ea/00ff",
                    "Er/req_test",
                    history.as_str()
                ],
                vec![pending.as_str(), "i/00ff"]
            )
        );
        assert_eq!(stored(&b).status, status);
        let e: crate::store::EvidenceRecord = b
            .ops()
            .iter()
            .find(|(k, _)| *k == evidence)
            .and_then(|(_, v)| serde_json::from_slice(v.as_ref()?).ok())
            .unwrap();
        assert_eq!((e.decision_index, e.request_id.as_str()), (7, "req_test"));
        assert_eq!(e.statement.decision, decision.as_str());
        assert_eq!(e.auth_req_hash, "00ff");
        assert_eq!(e.token_issued_at_ms, None);
        assert_eq!(
            e.events
                .iter()
                .map(|ev| ev.event_type.as_str())
                .collect::<Vec<_>>(),
            ["request.created"]
        );
    }
    // Only a claimed request is finished.
    let mut r = record(NOW + 300);
    assert_eq!(
        finish(&mut r, KEY, Decision::Approve, logged_at(7), None).unwrap_err(),
        TransitionError::NotClaimed
    );
    assert_eq!(r.status, RequestStatus::Pending);
}

/// A request under a 2-of-3 policy rule.
fn quorum_record(expires_at: u64) -> RequestRecord {
    let mut r = record(expires_at);
    r.statement.version = countersign_verifier::STATEMENT_VERSION_POLICY;
    r.statement.approver_id = String::new();
    r.statement.policy = Some(countersign_verifier::StatementPolicy {
        index: 3,
        rule: Some("payments over 1000".into()),
        quorum: 2,
        approvers: vec!["apv_t1".into(), "apv_t2".into(), "apv_t3".into()],
    });
    r
}

fn claim_by(approver: &str, decision: Decision) -> ClaimRecord {
    ClaimRecord {
        instance: String::new(),
        approver_id: approver.into(),
        ..a_claim(decision)
    }
}

fn logged_by(approver: &str, index: u64) -> DecisionRecord {
    DecisionRecord {
        approver_id: approver.into(),
        ..logged_at(index)
    }
}

#[test]
fn a_quorum_request_waits_for_distinct_approvers_and_ends_on_a_denial() {
    let mut r = quorum_record(NOW + 300);
    let b = create(&r, KEY).unwrap();
    let (puts, _) = keys(&b);
    for a in ["apv_t1", "apv_t2", "apv_t3"] {
        assert!(
            puts.contains(&format!("{PENDING_PREFIX}{a}/req_test").as_str()),
            "{a}: {puts:?}"
        );
    }
    // Not eligible: refused at the claim.
    assert_eq!(
        claim(&mut r, KEY, NOW, claim_by("apv_mallory", Decision::Approve)).unwrap_err(),
        TransitionError::NotEligible
    );
    // The first approval: kept, the request open again, t1 out of the inbox only.
    claim(&mut r, KEY, NOW, claim_by("apv_t1", Decision::Approve)).unwrap();
    let b = finish(&mut r, KEY, Decision::Approve, logged_by("apv_t1", 7), None).unwrap();
    assert_eq!(r.status, RequestStatus::Pending);
    assert!(r.decision.is_none() && r.claim.is_none());
    assert_eq!(r.approvals.len(), 1);
    let (puts, dels) = keys(&b);
    let h1 = CibaStore::history_key("apv_t1", 7, "req_test");
    // The approval's own evidence record (no lookup key: that is the final record's).
    let e7 = CibaStore::evidence_key(7);
    assert_eq!(puts, [KEY, e7.as_str(), h1.as_str()]);
    let (_, v): &Op = b.ops().iter().find(|(k, _)| *k == e7).unwrap();
    let e: EvidenceRecord = serde_json::from_slice(v.as_ref().unwrap()).unwrap();
    assert!(e.partial);
    assert_eq!((e.decision_index, e.decided_by.as_str()), (7, "apv_t1"));
    assert_eq!(e.statement, r.statement_for(Decision::Approve));
    assert_eq!(e.token_issued_at_ms, None);
    assert_eq!(
        dels,
        [
            format!("{PENDING_PREFIX}apv_t1/req_test").as_str(),
            "i/00ff"
        ]
    );
    assert!(r.has_approved("apv_t1") && !r.has_approved("apv_t2"));
    // The same approver again (any passkey): refused at the claim, nothing changes.
    assert_eq!(
        claim(&mut r, KEY, NOW, claim_by("apv_t1", Decision::Approve)).unwrap_err(),
        TransitionError::AlreadyApproved
    );
    assert_eq!(r.status, RequestStatus::Pending);
    // A second approver completes it: the evidence record holds both approvals.
    let mut approved = r.clone();
    claim(
        &mut approved,
        KEY,
        NOW,
        claim_by("apv_t3", Decision::Approve),
    )
    .unwrap();
    let b = finish(
        &mut approved,
        KEY,
        Decision::Approve,
        logged_by("apv_t3", 9),
        None,
    )
    .unwrap();
    assert_eq!(approved.status, RequestStatus::Approved);
    let e: crate::store::EvidenceRecord = b
        .ops()
        .iter()
        .find(|(k, _)| *k == CibaStore::evidence_key(9))
        .and_then(|(_, v)| serde_json::from_slice(v.as_ref()?).ok())
        .unwrap();
    assert_eq!((e.decision_index, e.decider()), (9, "apv_t3"));
    assert_eq!(e.approvals.iter().map(|d| d.index).collect::<Vec<_>>(), [7]);
    let (_, dels) = keys(&b);
    for a in ["apv_t1", "apv_t2", "apv_t3"] {
        assert!(
            dels.contains(&format!("{PENDING_PREFIX}{a}/req_test").as_str()),
            "{a}: {dels:?}"
        );
    }
    assert_eq!(
        CibaStore::history_keys_of(&approved),
        [
            CibaStore::history_key("apv_t1", 7, "req_test"),
            CibaStore::history_key("apv_t3", 9, "req_test")
        ]
    );
    // Or a denial by another eligible approver ends it after the first approval.
    claim(&mut r, KEY, NOW, claim_by("apv_t2", Decision::Deny)).unwrap();
    let b = finish(&mut r, KEY, Decision::Deny, logged_by("apv_t2", 8), None).unwrap();
    assert_eq!(r.status, RequestStatus::Denied);
    let e: crate::store::EvidenceRecord = b
        .ops()
        .iter()
        .find(|(k, _)| *k == CibaStore::evidence_key(8))
        .and_then(|(_, v)| serde_json::from_slice(v.as_ref()?).ok())
        .unwrap();
    assert!(e.approvals.is_empty());
    assert_eq!(e.decider(), "apv_t2");
    // A crash after the first approval was logged: recovery keeps it as an approval toward the
    // quorum, and the request is open for the others.
    let mut r = quorum_record(NOW + 300);
    claim(&mut r, KEY, NOW, claim_by("apv_t2", Decision::Approve)).unwrap();
    let (_, outcome) = recover(Some(r.clone()), KEY, Some((11, Hash([5; 32]))), None, NOW).unwrap();
    assert!(matches!(outcome, Recovered::Finished { index: 11, .. }));
    let (b, _) = recover(Some(r), KEY, Some((11, Hash([5; 32]))), None, NOW).unwrap();
    let back = stored(&b);
    assert_eq!(back.status, RequestStatus::Pending);
    assert!(back.has_approved("apv_t2"));
    // Expiry takes it out of every inbox.
    let mut r = quorum_record(NOW + 300);
    let b = expire(&mut r, KEY, NOW + 301).unwrap();
    let (_, dels) = keys(&b);
    assert_eq!(dels.len(), 3, "{dels:?}");
}

#[test]
fn release_reopens_a_claimed_request_only() {
    let mut r = record(NOW + 300);
    claim(&mut r, KEY, NOW, a_claim(Decision::Approve)).unwrap();
    let b = release(&mut r, KEY).unwrap();
    assert_eq!(
        (r.status, r.claim.is_none()),
        (RequestStatus::Pending, true)
    );
    assert_eq!(keys(&b), (vec![KEY], vec!["i/00ff"]));
    // Released: decidable again.
    claim(&mut r, KEY, NOW, a_claim(Decision::Deny)).unwrap();
    let mut approved = record(NOW + 300);
    approved.status = RequestStatus::Approved;
    assert_eq!(
        release(&mut approved, KEY).unwrap_err(),
        TransitionError::NotClaimed
    );
}

#[test]
fn expire_applies_only_past_expiry_and_only_to_open_requests() {
    let mut r = record(NOW + 300);
    assert_eq!(
        expire(&mut r, KEY, NOW + 299).unwrap_err(),
        TransitionError::NotExpired
    );
    let b = expire(&mut r, KEY, NOW + 300).unwrap();
    assert_eq!(r.status, RequestStatus::Expired);
    let pending = format!("{PENDING_PREFIX}apv_alice/req_test");
    assert_eq!(keys(&b), (vec![KEY], vec![pending.as_str()]));
    assert_eq!(
        expire(&mut r, KEY, NOW + 400).unwrap_err(),
        TransitionError::AlreadyDecided
    );
    // A claimed request is left to its decision (or to recovery).
    let mut claimed = record(NOW + 300);
    claim(&mut claimed, KEY, NOW, a_claim(Decision::Approve)).unwrap();
    assert_eq!(
        expire(&mut claimed, KEY, NOW + 400).unwrap_err(),
        TransitionError::InProgress
    );
    assert_eq!(effective_status(&record(NOW), NOW), RequestStatus::Expired);
    assert_eq!(
        effective_status(&record(NOW + 1), NOW),
        RequestStatus::Pending
    );
}

#[test]
fn recover_finishes_from_the_log_or_releases() {
    let leaf = Hash([5; 32]);
    // Claimed, and the log holds the assertion: decided as claimed.
    let mut r = record(NOW + 300);
    claim(&mut r, KEY, NOW, a_claim(Decision::Deny)).unwrap();
    let (b, out) = recover(Some(r.clone()), KEY, Some((9, leaf)), None, NOW).unwrap();
    assert_eq!(
        out,
        Recovered::Finished {
            index: 9,
            decision: Decision::Deny
        }
    );
    let got = stored(&b);
    assert_eq!(got.status, RequestStatus::Denied);
    assert_eq!(got.decision.unwrap().leaf_hash, leaf.to_hex());
    assert!(keys(&b).1.contains(&"i/00ff"));
    // Claimed, not in the log: open again.
    let (b, out) = recover(Some(r), KEY, None, None, NOW).unwrap();
    assert_eq!(out, Recovered::Released);
    assert_eq!(stored(&b).status, RequestStatus::Pending);
    // The record is gone, or no longer claimed: only the marker goes.
    for gone in [None, Some(record(NOW + 300))] {
        let (b, out) = recover(gone, KEY, Some((9, leaf)), None, NOW).unwrap();
        assert_eq!(out, Recovered::Stale);
        assert_eq!(keys(&b), (vec![], vec!["i/00ff"]));
    }
}

/// A log and a front end on it, in a temporary directory, with one enrolled passkey.
struct Fixture {
    approvals: Arc<Approvals>,
    log: LogHandle,
    passkey: SoftPasskey,
    credential: CredentialRef,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().join("data"),
            origin: Some("test.example/log".into()),
            policy: RpPolicy {
                rp_id: RP_ID.into(),
                allowed_origins: vec![ORIGIN.into()],
                require_user_verification: true,
            },
            sequencer: SequencerConfig {
                checkpoint_interval: Duration::from_millis(500),
                ..SequencerConfig::default()
            },
            max_body_bytes: countersign_log::DEFAULT_MAX_BODY_BYTES,
            column_families: COLUMN_FAMILIES.to_vec(),
        };
        let started = tokio::task::spawn_blocking(move || countersign_log::start(cfg))
            .await
            .unwrap()
            .unwrap();
        let log = started.api.log.clone();
        let approvals = crate::open(
            log.clone(),
            AdminAuth::new([0; 32]),
            CibaConfig::new(ORIGIN),
        )
        .unwrap();
        let passkey = SoftPasskey::new(Alg::Es256, 7, RP_ID);
        let e = log
            .append_enrolment(EnrolmentRequest {
                approver_id: "apv_alice".into(),
                credential_id: passkey.credential_id().to_vec(),
                public_key: passkey.cose_public_key(),
                aaguid: [0; 16],
                attestation_format: "none".into(),
                attestation: countersign_verifier::AttestationRecord::Unverified,
            })
            .await
            .unwrap();
        let credential = CredentialRef {
            credential_id: crate::util::B64URL.encode(passkey.credential_id()),
            enrolment_index: e.index,
            alg: -7,
        };
        approvals
            .store
            .put(
                "a/apv_alice",
                &crate::store::ApproverRecord {
                    approver_id: "apv_alice".into(),
                    email: "alice@example.com".into(),
                    name: None,
                    disabled: false,
                    credentials: vec![credential.clone()],
                    created_at: 0,
                    sessions_not_before_ms: 0,
                },
            )
            .await
            .unwrap();
        Fixture {
            approvals,
            log,
            passkey,
            credential,
            _dir: dir,
        }
    }

    /// Stores a new open request; its record key.
    async fn ask(&self, n: u8) -> String {
        let mut r = record(crate::util::now_secs() + 300);
        r.request_id = format!("req_{n}");
        r.statement.request_id = r.request_id.clone();
        r.statement.log_origin = self.log.signer().verifier_key().name().to_owned();
        r.nonce = hex::encode([n; 32]);
        let key = CibaStore::request_key(&Secret::new(format!("auth-{n}")).sha256());
        let b = create(&r, &key).unwrap();
        self.approvals
            .store
            .commit(b, Durability::Sync)
            .await
            .unwrap();
        key
    }

    fn get(&self, key: &str) -> RequestRecord {
        self.approvals.store.get_blocking(key).unwrap().unwrap()
    }

    /// A decision on the request at `key`, signed by the passkey (`flip`: break its signature).
    fn decision(&mut self, key: &str, decision: Decision, flip: bool) -> DecideRequest {
        let r = self.get(key);
        let hash = r.statement_for(decision).hash().unwrap();
        let ch = challenge(&r.nonce_bytes().unwrap(), &hash);
        let mut opts = countersign_testvectors::AssertOptions::new(&ch, ORIGIN);
        if flip {
            opts.flip_signature_bit = Some(3);
        }
        let a = self.passkey.assert_with(&opts);
        DecideRequest {
            key: key.to_owned(),
            approver_id: "apv_alice".into(),
            decision,
            credential: self.credential.clone(),
            assertion: AssertionBytes {
                credential_id: self.passkey.credential_id().to_vec(),
                authenticator_data: a.authenticator_data,
                client_data_json: a.client_data_json,
                signature: a.signature,
            },
        }
    }

    fn claim_markers(&self) -> usize {
        self.approvals
            .store
            .scan_blocking(CLAIM_PREFIX, 100)
            .unwrap()
            .len()
    }
}

#[tokio::test]
async fn decide_logs_once_and_a_failed_decision_leaves_the_request_open() {
    let mut f = Fixture::new().await;
    let key = f.ask(1).await;
    let size = f.log.published().size;

    // A forged signature: refused by the log, nothing logged, the request open again.
    let bad = f.decision(&key, Decision::Approve, true);
    match decide(f.approvals.clone(), bad).await {
        Err(DecideError::Refused(e)) => assert_eq!(
            e.reason(),
            Some(countersign_log::RefusalReason::InvalidAssertion)
        ),
        other => panic!("a forged assertion was not refused: {other:?}"),
    }
    assert_eq!(f.get(&key).status, RequestStatus::Pending);
    assert_eq!((f.log.published().size, f.claim_markers()), (size, 0));

    // Another approver's request is "not found".
    let mut stranger = f.decision(&key, Decision::Approve, false);
    stranger.approver_id = "apv_mallory".into();
    assert!(matches!(
        decide(f.approvals.clone(), stranger).await,
        Err(DecideError::NotFound)
    ));

    let good = f.decision(&key, Decision::Approve, false);
    let d = decide(f.approvals.clone(), good.clone()).await.unwrap();
    assert_eq!(d.request.status, RequestStatus::Approved);
    assert_eq!(d.record.index, size);
    let stored = f.get(&key);
    assert_eq!(stored.status, RequestStatus::Approved);
    assert_eq!(stored.decision.unwrap().index, size);
    assert_eq!((f.log.published().size, f.claim_markers()), (size + 1, 0));
    let (index, leaf) = f
        .log
        .find_assertion(&countersign_log::log::assertion_key(
            &good.assertion.credential_id,
            &good.assertion.client_data_json,
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((index, leaf.to_hex()), (size, d.record.leaf_hash));

    // The same assertion again: the request is decided, nothing more is logged.
    assert!(matches!(
        decide(f.approvals.clone(), good).await,
        Err(DecideError::Transition(TransitionError::AlreadyDecided))
    ));
    assert_eq!(f.log.published().size, size + 1);
}

#[tokio::test]
async fn a_disabled_approver_or_a_revoked_passkey_decides_nothing() {
    let mut f = Fixture::new().await;
    let key = f.ask(5).await;
    let size = f.log.published().size;
    let approvals = f.approvals.clone();
    let set_disabled = |disabled: bool| {
        let c = approvals.clone();
        async move {
            let mut a = c.store.approver("apv_alice").await.unwrap().unwrap();
            a.disabled = disabled;
            c.store.put("a/apv_alice", &a).await.unwrap();
        }
    };
    // Disabled after the page was served: the claim refuses it.
    set_disabled(true).await;
    let d = f.decision(&key, Decision::Approve, false);
    assert!(matches!(
        decide(f.approvals.clone(), d).await,
        Err(DecideError::Revoked)
    ));
    assert_eq!(f.get(&key).status, RequestStatus::Pending);
    assert_eq!((f.log.published().size, f.claim_markers()), (size, 0));
    set_disabled(false).await;

    // Revoked in the log (whatever the record says): the log refuses it.
    let r = f
        .log
        .append_revocation(countersign_log::RevocationRequest {
            approver_id: "apv_alice".into(),
            credential_id: f.passkey.credential_id().to_vec(),
            enrolment_index: f.credential.enrolment_index,
            reason: "lost".into(),
        })
        .await
        .unwrap();
    let d = f.decision(&key, Decision::Approve, false);
    match decide(f.approvals.clone(), d).await {
        Err(DecideError::Refused(e)) => {
            assert_eq!(e.reason(), Some(countersign_log::RefusalReason::Revoked))
        }
        other => panic!("a revoked passkey decided: {other:?}"),
    }
    assert_eq!(f.get(&key).status, RequestStatus::Pending);
    assert_eq!(f.log.published().size, r.index + 1);
    assert_eq!(f.claim_markers(), 0);
}

#[tokio::test]
async fn the_log_never_dates_a_decision_after_its_deadline() {
    let mut f = Fixture::new().await;
    let key = f.ask(3).await;
    let size = f.log.published().size;
    let d = f.decision(&key, Decision::Approve, false);
    let r = f.get(&key);
    let request = |not_after_ms| DecisionRequest {
        decision: Decision::Approve,
        statement_hash: r.statement_for(Decision::Approve).hash().unwrap(),
        nonce: r.nonce_bytes().unwrap(),
        approver_id: "apv_alice".into(),
        credential_id: d.assertion.credential_id.clone(),
        authenticator_data: d.assertion.authenticator_data.clone(),
        client_data_json: d.assertion.client_data_json.clone(),
        signature: d.assertion.signature.clone(),
        enrolment_index: f.credential.enrolment_index,
        not_after_ms,
    };
    // A deadline already past: refused, nothing logged.
    let past = countersign_log::now_ms() - 1;
    let e = f
        .log
        .append_decision(request(Some(past)))
        .await
        .unwrap_err();
    assert_eq!(
        e.reason(),
        Some(countersign_log::RefusalReason::TooLate),
        "{e}"
    );
    assert_eq!(f.log.published().size, size);
    // The request's own deadline (its expiry) still lies ahead: logged, dated before it.
    let deadline = r.statement.expires_at * 1000;
    let a = f
        .log
        .append_decision(request(Some(deadline)))
        .await
        .unwrap();
    let entry = f
        .log
        .prove_entries(&[a.index])
        .await
        .unwrap()
        .entries
        .remove(0)
        .entry;
    match countersign_verifier::Entry::decode(&entry).unwrap() {
        countersign_verifier::Entry::Decision(sd) => assert!(sd.time_ms <= deadline),
        other => panic!("not a decision: {other:?}"),
    }
}

#[tokio::test]
async fn a_decision_whose_caller_goes_away_is_still_finished() {
    let mut f = Fixture::new().await;
    let key = f.ask(2).await;
    let size = f.log.published().size;
    let d = f.decision(&key, Decision::Deny, false);
    // Hold the record's lock, so the decision cannot get past its claim while its caller (the
    // approver's HTTP connection) is still there, then drop the caller.
    let guard = f.approvals.store.lock(&key).await.unwrap();
    let caller =
        tokio::time::timeout(Duration::from_millis(100), decide(f.approvals.clone(), d)).await;
    assert!(
        caller.is_err(),
        "the caller must have gone before the decision finished"
    );
    assert_eq!(f.get(&key).status, RequestStatus::Pending);
    drop(guard);
    // Nobody waits for it any more, yet the decision is logged and recorded.
    let mut waited = Duration::ZERO;
    while f.get(&key).status != RequestStatus::Denied {
        assert!(
            waited < Duration::from_secs(10),
            "the decision was abandoned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert_eq!(f.get(&key).decision.unwrap().index, size);
    assert_eq!((f.log.published().size, f.claim_markers()), (size + 1, 0));
}

#[tokio::test]
async fn recovery_from_each_state_a_crash_can_leave() {
    let mut f = Fixture::new().await;
    let size = f.log.published().size;

    // 1. Claimed, the decision never reached the log: released.
    let k1 = f.ask(3).await;
    let d1 = f.decision(&k1, Decision::Approve, false);
    claim_as(&f, &k1, &d1).await;

    // 2. Claimed and logged, the record not yet updated: finished from the log.
    let k2 = f.ask(4).await;
    let d2 = f.decision(&k2, Decision::Deny, false);
    let hash2 = claim_as(&f, &k2, &d2).await;
    let r2 = f.get(&k2);
    let (rec2, _) = append(&f.approvals, &r2, &d2, hash2).await.unwrap();
    assert_eq!(rec2.index, size);

    // 3. Decided and recorded (the crash came after): nothing to do.
    let k3 = f.ask(5).await;
    let d3 = f.decision(&k3, Decision::Approve, false);
    decide(f.approvals.clone(), d3).await.unwrap();

    // 4. A marker whose request is gone (cleaned up): dropped.
    let mut b = Batch::new();
    b.put(CibaStore::claim_key("r/gone"), Vec::new());
    f.approvals.store.commit(b, Durability::Sync).await.unwrap();

    assert_eq!(f.claim_markers(), 3);
    let (finished, released) = recover_claims(&f.approvals).unwrap();
    assert_eq!((finished, released), (1, 1));
    assert_eq!(f.claim_markers(), 0);

    let r1 = f.get(&k1);
    assert_eq!(
        (r1.status, r1.claim.is_none()),
        (RequestStatus::Pending, true)
    );
    let r2 = f.get(&k2);
    assert_eq!(r2.status, RequestStatus::Denied);
    assert_eq!(r2.decision.unwrap().index, rec2.index);
    assert_eq!(f.get(&k3).status, RequestStatus::Approved);
    // Released means decidable: the same signed decision now goes through, once.
    let d = decide(f.approvals.clone(), d1).await.unwrap();
    assert_eq!(d.request.status, RequestStatus::Approved);
    assert_eq!(f.log.published().size, size + 3);
    // A second recovery finds nothing.
    assert_eq!(recover_claims(&f.approvals).unwrap(), (0, 0));
}

/// Claims the request as [`decide`] does, and stops there (the crash); its statement hash.
async fn claim_as(f: &Fixture, key: &str, d: &DecideRequest) -> [u8; 32] {
    let mut r = f.get(key);
    let (cl, hash) = claim_of(&r, d).unwrap();
    let b = claim(&mut r, key, crate::util::now_secs(), cl).unwrap();
    f.approvals.store.commit(b, Durability::Sync).await.unwrap();
    hash
}

/// A database from before evidence records: a decided request without one gets it at the next
/// start (once), with its statement, indexes and events; one decided later keeps its own.
#[tokio::test]
async fn decisions_recorded_before_evidence_records_get_theirs_once() {
    use crate::store::{EVIDENCE_MIGRATED_KEY, EVIDENCE_PREFIX};
    let mut f = Fixture::new().await;
    let key = f.ask(1).await;
    let d = f.decision(&key, Decision::Deny, false);
    let decided = decide(f.approvals.clone(), d).await.unwrap();
    let index = decided.record.index;
    let made = f
        .approvals
        .store
        .evidence_via(&CibaStore::evidence_by_request_key("req_1"))
        .await
        .unwrap()
        .unwrap();
    // As an older version left it: no evidence record, no migration marker.
    let mut b = crate::store::Batch::new();
    b.delete(CibaStore::evidence_key(index))
        .delete(CibaStore::evidence_by_request_key("req_1"))
        .delete(CibaStore::evidence_by_hash_key(&made.auth_req_hash))
        .delete(EVIDENCE_MIGRATED_KEY.to_owned());
    f.approvals.store.commit_blocking(b).unwrap();
    assert!(f
        .approvals
        .store
        .scan(EVIDENCE_PREFIX, 10)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(crate::decision::migrate_evidence(&f.approvals).unwrap(), 1);
    let again = f
        .approvals
        .store
        .evidence_via(&CibaStore::evidence_by_request_key("req_1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.statement, made.statement);
    assert_eq!(
        (
            again.decision_index,
            again.enrolment_index,
            again.decided_at_ms
        ),
        (
            made.decision_index,
            made.enrolment_index,
            made.decided_at_ms
        )
    );
    assert_eq!(again.events, made.events);
    assert_eq!(again.auth_req_hash, made.auth_req_hash);
    // Once: the marker is set, a second start makes nothing.
    assert_eq!(crate::decision::migrate_evidence(&f.approvals).unwrap(), 0);
}

/// A revocation interrupted after its log append (no audit event yet) is finished by running it
/// again: the `credential.revoked` event is written then, once.
#[tokio::test]
async fn an_interrupted_revocation_gets_its_event_when_run_again() {
    use countersign_verifier::export::EventType;
    let f = Fixture::new().await;
    let revoked_events = || {
        crate::audit::events_after(&f.approvals.store, None, 1000)
            .unwrap()
            .0
            .into_iter()
            .filter(|e| e.event_type == EventType::CredentialRevoked)
            .count()
    };
    // The append alone, as a crash right after it leaves things.
    let a = f
        .log
        .append_revocation(countersign_log::RevocationRequest {
            approver_id: "apv_alice".into(),
            credential_id: f.passkey.credential_id().to_vec(),
            enrolment_index: f.credential.enrolment_index,
            reason: "lost".into(),
        })
        .await
        .unwrap();
    assert_eq!(revoked_events(), 0);
    for _ in 0..2 {
        let r = crate::passkeys::revocation::log_revocation(
            &f.approvals,
            "apv_alice",
            &f.credential,
            "lost",
        )
        .await
        .unwrap();
        assert_eq!((r.log_index, r.new), (a.index, false));
        assert_eq!(revoked_events(), 1);
    }
}
