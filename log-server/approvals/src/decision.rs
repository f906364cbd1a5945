//! Making a decision: [`decide`] claims the request, appends the signed decision to the log and
//! records the outcome, with the transitions of [`crate::request`]. It runs as a task of its
//! own: an approver whose connection drops half-way does not leave a claim behind, nor a logged
//! decision whose request says otherwise. A crash between those steps is finished at the next
//! start by [`recover_claims`] from what the log holds.

use std::sync::Arc;
use std::time::Duration;

use countersign_log::{AppendError, Appended, DecisionRequest, StorageError};
use countersign_verifier::export::EventRow;
use countersign_verifier::Decision;

use crate::audit::log_entry_event;
use crate::request::{claim, finish, recover, release, Recovered, TransitionError};
use crate::state::Approvals;
use crate::store::{
    CibaStore, ClaimRecord, CredentialRef, DecisionRecord, DeliveryMode, Durability, RequestRecord,
    CLAIM_PREFIX,
};
use crate::util::now_secs;

/// The assertion a decision is made with, decoded from the page's answer.
#[derive(Clone, Debug)]
pub struct AssertionBytes {
    /// The credential id.
    pub credential_id: Vec<u8>,
    /// authenticatorData.
    pub authenticator_data: Vec<u8>,
    /// clientDataJSON.
    pub client_data_json: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// A decision made and recorded.
#[derive(Clone, Debug)]
pub struct Decided {
    /// The request, as now stored.
    pub request: RequestRecord,
    /// Where its decision is in the log.
    pub record: DecisionRecord,
    /// The log's answer (checkpoint covering the decision).
    pub appended: Appended,
}

/// Why [`decide`] decided nothing. Nothing was logged, and the request is as it was.
#[derive(Debug)]
#[non_exhaustive]
pub enum DecideError {
    /// No such request, or not this approver's.
    NotFound,
    /// The request cannot be decided where it stands.
    Transition(TransitionError),
    /// The log refused the decision (the assertion does not verify, a cloned authenticator...).
    Refused(AppendError),
    /// This assertion was already logged: a replay, not a new decision.
    Replayed,
    /// The passkey was revoked, or its approver disabled: it decides nothing any more.
    Revoked,
    /// The store failed.
    Storage(StorageError),
    /// The decision task failed.
    Internal(String),
    /// The request's policy rule asks more of the approval (user verification, an attested
    /// passkey).
    RuleRequirement(&'static str),
}

impl std::fmt::Display for DecideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecideError::NotFound => f.write_str("no such request"),
            DecideError::Transition(t) => write!(f, "{t}"),
            DecideError::Refused(e) => write!(f, "the log refused the decision: {e}"),
            DecideError::Replayed => f.write_str("this signature was already used"),
            DecideError::Revoked => f.write_str("the passkey was revoked"),
            DecideError::Storage(e) => write!(f, "{e}"),
            DecideError::Internal(e) => write!(f, "the decision failed: {e}"),
            DecideError::RuleRequirement(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DecideError {}

impl From<StorageError> for DecideError {
    fn from(e: StorageError) -> Self {
        DecideError::Storage(e)
    }
}

impl From<TransitionError> for DecideError {
    fn from(e: TransitionError) -> Self {
        DecideError::Transition(e)
    }
}

/// What a decision is: by whom, on what, with which passkey and assertion.
#[derive(Clone, Debug)]
pub struct DecideRequest {
    /// The request's record key.
    pub key: String,
    /// The signed-in approver (must be the request's).
    pub approver_id: String,
    /// Approve or deny.
    pub decision: Decision,
    /// The approver's passkey that signed.
    pub credential: CredentialRef,
    /// The assertion.
    pub assertion: AssertionBytes,
}

/// Claims the request, appends the decision to the log and records it, in a task of its own:
/// dropping the returned future (the approver's connection closed) does not stop it half-way.
/// On any failure the claim is released, so the request is open again.
pub async fn decide(c: Arc<Approvals>, d: DecideRequest) -> Result<Decided, DecideError> {
    match tokio::spawn(decide_now(c, d)).await {
        Ok(r) => r,
        Err(e) => Err(DecideError::Internal(e.to_string())),
    }
}

async fn decide_now(c: Arc<Approvals>, d: DecideRequest) -> Result<Decided, DecideError> {
    let key = d.key.as_str();
    let (mut r, statement_hash) = {
        let _g = c.store.lock(key).await?;
        let mut r: RequestRecord = c.store.get(key).await?.ok_or(DecideError::NotFound)?;
        if !r.statement.is_eligible(&d.approver_id) {
            return Err(DecideError::NotFound);
        }
        // Read again at the claim: the approver may have been disabled, or the passkey revoked,
        // since the page was served. (The log refuses it too, once the revocation is in.)
        let usable = c.store.approver(&d.approver_id).await?.is_some_and(|a| {
            !a.disabled
                && a.credentials
                    .iter()
                    .any(|cr| cr.enrolment_index == d.credential.enrolment_index)
        });
        if !usable {
            return Err(DecideError::Revoked);
        }
        // What the request's policy rule asks of every approval, before anything is logged.
        if d.decision == Decision::Approve {
            check_rule_requirements(&c, &r, &d).await?;
        }
        let (mut cl, statement_hash) = claim_of(&r, &d)?;
        cl.instance = c.store.instance_id().unwrap_or_default().to_owned();
        let b = claim(&mut r, key, now_secs(), cl)?;
        // Not synced on its own: the decision's synced log append comes after it in the same
        // write-ahead log, so if the decision survives a crash, so does the claim.
        c.store.commit(b, Durability::Deferred).await?;
        (r, statement_hash)
    };
    match append(&c, &r, &d, statement_hash).await {
        Ok((rec, appended)) => {
            let statement = r.statement_for(d.decision);
            let event = crate::audit::appended_event(&c.log, &appended, Some(&statement)).await;
            // Only the claimant changes a claimed record (and clean-up leaves it alone until
            // well past its expiry), so `r` is still what is stored.
            {
                let _g = c.store.lock(key).await?;
                let b = finish(&mut r, key, d.decision, rec.clone(), event.clone())?;
                let events: Vec<_> = event.into_iter().collect();
                c.store
                    .commit_with_events(b, &events, Durability::Sync)
                    .await?;
            }
            let ended = r.status != crate::store::RequestStatus::Pending;
            tracing::info!(
                request_id = %r.request_id,
                approver_id = %d.approver_id,
                decision = d.decision.as_str(),
                index = rec.index,
                approvals = r.approvals.len() + usize::from(ended && d.decision == Decision::Approve),
                quorum = r.statement.quorum(),
                "decision logged"
            );
            c.metrics
                .decisions
                .get_or_create(&[("decision", d.decision.as_str())])
                .inc();
            for approver in r.statement.eligible_approvers() {
                c.inbox_changed(approver, &r.request_id);
            }
            if ended {
                crate::delivery::decided(c.clone(), key.to_owned(), r.clone());
            }
            Ok(Decided {
                request: r,
                record: rec,
                appended,
            })
        }
        Err(DecideError::Refused(e @ countersign_log::AppendError::NotPublished { .. })) => {
            // Sequenced, not yet published: not acknowledged, and not released either.
            finish_when_published(c.clone(), key.to_owned());
            Err(DecideError::Refused(e))
        }
        Err(e) => {
            let _g = c.store.lock(key).await?;
            if let Some(mut stored) = c.store.get::<RequestRecord>(key).await? {
                if let Ok(b) = release(&mut stored, key) {
                    c.store.commit(b, Durability::Sync).await?;
                    // Its expiry timer may have fired while it was claimed: a ping/push request
                    // now past expiry gets its expiry (push: `expired_token`) at once.
                    let expires_at = stored.statement.expires_at;
                    if stored.mode != DeliveryMode::Poll && now_secs() >= expires_at {
                        crate::delivery::schedule_expiry(c.clone(), key.to_owned(), expires_at);
                    }
                }
            }
            Err(e)
        }
    }
}

/// The audit event of the decision `decision` on `r` found logged at `index` after a crash
/// ([`log_entry_event`]: the statement is checked against the entry read back).
fn decision_event(
    c: &Approvals,
    r: &RequestRecord,
    index: u64,
    decision: Decision,
) -> Option<EventRow> {
    log_entry_event(&c.log, index, Some(&r.statement_for(decision)))
}

/// The claim of decision `d` on request `r`, and the hash of the statement it decides.
pub(crate) fn claim_of(
    r: &RequestRecord,
    d: &DecideRequest,
) -> Result<(ClaimRecord, [u8; 32]), DecideError> {
    let statement_hash = r
        .statement_for(d.decision)
        .hash()
        .map_err(|e| DecideError::Internal(format!("statement: {e}")))?;
    let claim = ClaimRecord {
        assertion_key: hex::encode(countersign_log::log::assertion_key(
            &d.assertion.credential_id,
            &d.assertion.client_data_json,
        )),
        decision: d.decision,
        enrolment_index: d.credential.enrolment_index,
        statement_hash: hex::encode(statement_hash),
        approver_id: d.approver_id.clone(),
        instance: String::new(),
    };
    Ok((claim, statement_hash))
}

/// Appends the decision (`hash`: its statement's hash, computed for the claim) to the log.
pub(crate) async fn append(
    c: &Approvals,
    r: &RequestRecord,
    d: &DecideRequest,
    hash: [u8; 32],
) -> Result<(DecisionRecord, Appended), DecideError> {
    let nonce = r
        .nonce_bytes()
        .ok_or_else(|| DecideError::Internal("the request's nonce is not 32 bytes".into()))?;
    let a = d.assertion.clone();
    let req = DecisionRequest {
        decision: d.decision,
        statement_hash: hash,
        nonce,
        approver_id: d.approver_id.clone(),
        credential_id: a.credential_id,
        authenticator_data: a.authenticator_data,
        client_data_json: a.client_data_json,
        signature: a.signature,
        enrolment_index: d.credential.enrolment_index,
        // The log dates the entry and checks this deadline with the same clock reading, so a
        // decision claimed in the request's last moment is never logged as made after its
        // expiry (which its evidence bundle would fail: DecidedAfterExpiry).
        not_after_ms: Some(r.statement.expires_at.saturating_mul(1000)),
    };
    let appended = c
        .log
        .append_decision(req)
        .await
        .map_err(DecideError::Refused)?;
    if appended.existing {
        // The assertion was logged before, for this very challenge: a replay.
        return Err(DecideError::Replayed);
    }
    Ok((
        DecisionRecord {
            index: appended.index,
            leaf_hash: appended.leaf_hash.to_hex(),
            enrolment_index: d.credential.enrolment_index,
            statement_hash: hex::encode(hash),
            decided_at: now_secs(),
            approver_id: d.approver_id.clone(),
        },
        appended,
    ))
}

/// The matched rule's `require_uv` and `require_attestation` ([`RequestRecord::require_uv`]):
/// an approval without the user-verified flag, or by a passkey whose enrolment records no
/// verified attestation, is refused before anything is logged (and an offline verifier refuses
/// it too).
async fn check_rule_requirements(
    c: &Approvals,
    r: &RequestRecord,
    d: &DecideRequest,
) -> Result<(), DecideError> {
    if r.require_uv {
        // authenticatorData: rpIdHash (32), flags (1): UV is bit 2.
        let uv = d
            .assertion
            .authenticator_data
            .get(32)
            .is_some_and(|f| f & 0x04 != 0);
        if !uv {
            return Err(DecideError::RuleRequirement(
                "this request's policy rule requires user verification (your PIN or biometric)",
            ));
        }
    }
    if r.require_attestation {
        let attested = c
            .log
            .entry(d.credential.enrolment_index)
            .await
            .map_err(DecideError::Storage)?
            .and_then(|e| countersign_verifier::Entry::decode(&e).ok())
            .is_some_and(|e| {
                matches!(
                    e,
                    countersign_verifier::Entry::Enrolment(countersign_verifier::Enrolment {
                        attestation: countersign_verifier::AttestationRecord::Verified { .. },
                        ..
                    })
                )
            });
        if !attested {
            return Err(DecideError::RuleRequirement(
                "this request's policy rule requires a passkey whose attestation was verified \
                 at enrolment",
            ));
        }
    }
    Ok(())
}

/// At start, once per database: gives every decided request still held an [`EvidenceRecord`](crate::store::EvidenceRecord)
/// if it has none (a database written before they existed), so its evidence outlives the
/// request's retention like every later decision's. What the old records did not keep is left
/// out: the time the tokens were issued (so no `token.issued` event). Returns how many were made.
pub fn migrate_evidence(c: &Approvals) -> Result<usize, StorageError> {
    use crate::store::{EvidenceRecord, EVIDENCE_MIGRATED_KEY};
    if c.store.get_raw_blocking(EVIDENCE_MIGRATED_KEY)?.is_some() {
        return Ok(0);
    }
    let mut made = 0;
    for (key, raw) in c
        .store
        .scan_blocking(crate::store::REQUEST_PREFIX, usize::MAX)?
    {
        let Ok(r) = serde_json::from_slice::<RequestRecord>(&raw) else {
            tracing::error!(%key, "request record does not decode; no evidence record made");
            continue;
        };
        let decision = match r.status {
            crate::store::RequestStatus::Approved => Decision::Approve,
            crate::store::RequestStatus::Denied => Decision::Deny,
            _ => continue,
        };
        let Some(d) = r.decision.as_ref() else {
            continue;
        };
        if c.store
            .get_raw_blocking(&CibaStore::evidence_by_request_key(&r.request_id))?
            .is_some()
        {
            continue;
        }
        let evidence = EvidenceRecord::of_decision(
            &r.request_id,
            CibaStore::hash_of_key(&key),
            d,
            r.statement_for(decision),
            std::iter::once(crate::request::created_event(&r))
                .chain(decision_event(c, &r, d.index, decision))
                .collect(),
        );
        let mut b = crate::store::Batch::new();
        CibaStore::put_evidence(&mut b, &evidence)?;
        c.store.commit_blocking(b)?;
        made += 1;
    }
    let mut b = crate::store::Batch::new();
    b.put(EVIDENCE_MIGRATED_KEY.to_owned(), b"1".to_vec());
    c.store.commit_blocking(b)?;
    Ok(made)
}

/// At start: finishes or releases every claim a crash left ([`recover`]). Returns (finished,
/// released).
pub fn recover_claims(c: &Approvals) -> Result<(usize, usize), StorageError> {
    let (mut finished, mut released) = (0, 0);
    for (ckey, _) in c.store.scan_blocking(CLAIM_PREFIX, usize::MAX)? {
        let key = CibaStore::record_key_of(ckey.trim_start_matches(CLAIM_PREFIX));
        match recover_claim(c, &key, true)? {
            Some(Recovered::Finished { .. }) => finished += 1,
            Some(Recovered::Released) => released += 1,
            Some(Recovered::Stale) | None => {}
        }
    }
    Ok((finished, released))
}

/// Finishes the claimed request `key` from the log, or releases it ([`recover`]). `None` when
/// it is left as it is: its claimant is still running (with `skip_live`, shared driver), or
/// its decision is sequenced but not yet published (the bucket was unreachable: it is
/// finished once published, never released, so that no second decision is made for it).
pub fn recover_claim(
    c: &Approvals,
    key: &str,
    skip_live: bool,
) -> Result<Option<Recovered>, StorageError> {
    // Under the record's lock: on the shared driver other instances serve the request meanwhile.
    let _g = crate::util::wait(c.store.lock(key))?;
    let r = c.store.get_blocking::<RequestRecord>(key)?;
    let claim = r.as_ref().and_then(|r| r.claim.clone());
    // On the shared driver, a claim of an instance still running is its to finish.
    let claimant = claim
        .as_ref()
        .map(|cl| cl.instance.as_str())
        .unwrap_or_default();
    if skip_live && crate::util::wait(c.store.claimant_alive(claimant))? {
        return Ok(None);
    }
    let assertion = claim
        .as_ref()
        .and_then(|cl| hex::decode(&cl.assertion_key).ok())
        .and_then(|k| <[u8; 32]>::try_from(k).ok());
    let logged = assertion
        .map(|k| crate::util::wait(c.log.find_assertion(&k)))
        .transpose()?
        .flatten();
    if logged.is_none() {
        if let Some(k) = assertion {
            if crate::util::wait(c.log.assertion_sequenced(&k))?.is_some() {
                return Ok(None);
            }
        }
    }
    let request_id = r.as_ref().map(|r| r.request_id.clone()).unwrap_or_default();
    let event = match (&r, logged, &claim) {
        (Some(r), Some((index, _)), Some(cl)) => decision_event(c, r, index, cl.decision),
        _ => None,
    };
    let (b, outcome) = recover(r, key, logged, event.clone(), now_secs())
        .map_err(|e| StorageError::Corrupt(format!("claimed request {key}: {e}")))?;
    let events: Vec<_> = match outcome {
        Recovered::Finished { .. } => event.into_iter().collect(),
        _ => Vec::new(),
    };
    c.store.commit_blocking_with_events(b, &events)?;
    if let Recovered::Finished { index, decision } = outcome {
        tracing::info!(%request_id, index, decision = decision.as_str(), "decision recovered from the log");
    }
    Ok(Some(outcome))
}

/// After the log answered `not_published` (shared driver, bucket unreachable): the decision is
/// sequenced and will be published, so the request stays claimed (no second decision can be
/// made for it) and is finished from the log, by this task, once it is published.
fn finish_when_published(c: Arc<Approvals>, key: String) {
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(200);
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            // Reads that block this worker for a round trip (others take its tasks).
            match tokio::task::block_in_place(|| recover_claim(&c, &key, false)) {
                Ok(Some(outcome)) => {
                    if let Ok(Some(r)) = c.store.get::<RequestRecord>(&key).await {
                        for approver in r.statement.eligible_approvers() {
                            c.inbox_changed(approver, &r.request_id);
                        }
                        if matches!(outcome, Recovered::Finished { .. })
                            && r.status != crate::store::RequestStatus::Pending
                        {
                            crate::delivery::decided(c.clone(), key.clone(), r);
                        }
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "finishing a decision once published"),
            }
        }
    });
}
