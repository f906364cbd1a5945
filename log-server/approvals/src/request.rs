//! The life of an approval request, as plain Rust (no HTTP): every transition checks where the
//! request stands, changes its record, and returns the store changes that go with it, so the
//! handlers only call a transition and commit what it returns.
//!
//! ```text
//!   create           claim               finish
//! ─────────▶ Pending ──────▶ Deciding ──────────────▶ Approved | Denied
//!              │  ▲            │
//!              │  └────────────┘ release (the decision failed: nothing was logged)
//!              │  └────────────┘ finish, an approval short of the quorum (it is kept)
//!              │                 recover (a crash left the claim: the log says which)
//!              │ expire (past expires_at, undecided)
//!              ▼
//!           Expired
//! ```
//!
//! A decision is made by [`crate::decision::decide`] with these transitions, and a crash
//! between its steps is finished at the next start by [`crate::decision::recover_claims`].

use countersign_log::StorageError;
use countersign_verifier::export::{EventRow, EventType};
use countersign_verifier::{Decision, Hash};

use crate::store::{
    Batch, CibaStore, ClaimRecord, DecisionRecord, EvidenceRecord, RequestRecord, RequestStatus,
};

pub use crate::config::DECIDING_GRACE_SECS;

/// Why a transition does not apply to a request where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransitionError {
    /// The request expired undecided.
    Expired,
    /// A decision on it is being recorded.
    InProgress,
    /// It was already decided.
    AlreadyDecided,
    /// It is not claimed (finish and release apply to claimed requests only).
    NotClaimed,
    /// It is not past its expiry yet.
    NotExpired,
    /// Its changed record does not encode, so nothing may be written for it (logged).
    Unencodable,
    /// The approver is not one who may decide this request.
    NotEligible,
    /// The approver already approved it; it waits for other approvers.
    AlreadyApproved,
}

impl std::fmt::Display for TransitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransitionError::Expired => {
                "this request expired; nothing was signed or logged, and the agent has to ask again"
            }
            TransitionError::InProgress => {
                "a decision on this request is being recorded; reload the page in a few seconds"
            }
            TransitionError::AlreadyDecided => {
                "this request was already decided; reload the page to see the decision"
            }
            TransitionError::NotClaimed => "this request is not being decided",
            TransitionError::NotExpired => "this request has not expired",
            TransitionError::Unencodable => "the request record does not encode",
            TransitionError::NotEligible => "you are not one of the approvers of this request",
            TransitionError::AlreadyApproved => {
                "you already approved this request; it waits for the other approvers"
            }
        })
    }
}

impl std::error::Error for TransitionError {}

/// Where the request stands at `now`: a pending request past its expiry is expired.
pub fn effective_status(r: &RequestRecord, now: u64) -> RequestStatus {
    if r.status == RequestStatus::Pending && now >= r.statement.expires_at {
        RequestStatus::Expired
    } else {
        r.status
    }
}

/// Whether the request can be decided at `now`.
pub fn check_decidable(r: &RequestRecord, now: u64) -> Result<(), TransitionError> {
    match effective_status(r, now) {
        RequestStatus::Pending => Ok(()),
        RequestStatus::Expired => Err(TransitionError::Expired),
        RequestStatus::Deciding => Err(TransitionError::InProgress),
        RequestStatus::Approved | RequestStatus::Denied => Err(TransitionError::AlreadyDecided),
    }
}

/// A new request, stored under `key`: its record, its public id, its place in the pending index
/// of each approver who may decide it and in the clean-up index. (Owed deliveries and
/// notifications are the caller's to add.)
pub fn create(r: &RequestRecord, key: &str) -> Result<Batch, StorageError> {
    let mut b = Batch::new();
    b.put_json(key, r)?
        .put(
            CibaStore::public_id_key(&r.request_id),
            CibaStore::hash_of_key(key).as_bytes().to_vec(),
        )
        .put(
            CibaStore::expiry_key(r.statement.expires_at, &r.request_id),
            CibaStore::hash_of_key(key).as_bytes().to_vec(),
        );
    // Ordered to the millisecond: requests made within a second keep their order.
    let pending = crate::store::pending_value(
        countersign_log::now_ms().max(r.statement.requested_at * 1000),
        r.statement.expires_at,
        &r.statement.client_id,
    );
    for approver in r.statement.eligible_approvers() {
        b.put(
            CibaStore::pending_key(approver, &r.request_id),
            pending.clone(),
        );
    }
    Ok(b)
}

/// Deletes the request from the pending index of every approver who may decide it.
fn leave_inboxes(b: &mut Batch, r: &RequestRecord) {
    for approver in r.statement.eligible_approvers() {
        b.delete(CibaStore::pending_key(approver, &r.request_id));
    }
}

/// Whether `approver_id` may still decide `r`: eligible, and not one of its approvals so far.
pub fn check_approver(r: &RequestRecord, approver_id: &str) -> Result<(), TransitionError> {
    if !r.statement.is_eligible(approver_id) {
        return Err(TransitionError::NotEligible);
    }
    if r.has_approved(approver_id) {
        return Err(TransitionError::AlreadyApproved);
    }
    Ok(())
}

/// Pending → Deciding: one decision, before expiry. The claim is exclusive (a claimed request
/// is not decidable) and records what the decision is being logged with, for [`recover`].
pub fn claim(
    r: &mut RequestRecord,
    key: &str,
    now: u64,
    claim: ClaimRecord,
) -> Result<Batch, TransitionError> {
    check_decidable(r, now)?;
    if !claim.approver_id.is_empty() {
        check_approver(r, &claim.approver_id)?;
    }
    r.status = RequestStatus::Deciding;
    r.claim = Some(claim);
    let mut b = Batch::new();
    put_record(&mut b, key, r)?;
    b.put(CibaStore::claim_key(key), Vec::new());
    Ok(b)
}

/// The `request.created` audit event of a request.
pub fn created_event(r: &RequestRecord) -> EventRow {
    EventRow::for_request(
        EventType::RequestCreated,
        &r.statement,
        r.statement.requested_at.saturating_mul(1000),
    )
}

/// Deciding → Approved or Denied, once the decision is in the log at `rec`; or, for an approval
/// that leaves the request short of its quorum, Deciding → Pending with the approval kept
/// (the approver leaves the request's inbox for their history; the others still see it). When
/// the request ends, the same batch writes the decision's [`EvidenceRecord`] (with the
/// request's `request.created` event and `decision_event`, the decision's log event row, when
/// it could be made), which outlives the request's records.
pub fn finish(
    r: &mut RequestRecord,
    key: &str,
    decision: Decision,
    rec: DecisionRecord,
    decision_event: Option<EventRow>,
) -> Result<Batch, TransitionError> {
    if r.status != RequestStatus::Deciding {
        return Err(TransitionError::NotClaimed);
    }
    let decider = r.decider(&rec).to_owned();
    let history = CibaStore::history_key(&decider, rec.index, &r.request_id);
    let approvals_after = r.approvals.len() as u64 + 1;
    if decision == Decision::Approve && approvals_after < r.statement.quorum() {
        // The approval's own statement and indexes, kept as evidence of its leaf whatever
        // happens to the request next (spec/export.md: every decision's statement).
        let evidence = EvidenceRecord {
            decided_by: decider.clone(),
            partial: true,
            ..EvidenceRecord::of_decision(
                &r.request_id,
                CibaStore::hash_of_key(key),
                &rec,
                r.statement_for(Decision::Approve),
                decision_event.into_iter().collect(),
            )
        };
        r.approvals.push(rec);
        r.status = RequestStatus::Pending;
        r.claim = None;
        let mut b = Batch::new();
        put_record(&mut b, key, r)?;
        if let Err(e) = CibaStore::put_evidence(&mut b, &evidence) {
            tracing::error!(error = %e, request_id = %r.request_id, "evidence record does not encode");
            return Err(TransitionError::Unencodable);
        }
        b.put(history, CibaStore::hash_of_key(key).as_bytes().to_vec());
        b.delete(CibaStore::pending_key(&decider, &r.request_id))
            .delete(CibaStore::claim_key(key));
        return Ok(b);
    }
    r.status = match decision {
        Decision::Approve => RequestStatus::Approved,
        Decision::Deny => RequestStatus::Denied,
    };
    r.statement.decision = decision.as_str().to_owned();
    let evidence = EvidenceRecord {
        decided_by: if r.statement.policy.is_some() {
            decider
        } else {
            String::new()
        },
        // A denial ends the request whatever was approved before it: those approvals are in
        // the log (and the export), not in the denial's evidence.
        approvals: match decision {
            Decision::Approve => r.approvals.clone(),
            Decision::Deny => Vec::new(),
        },
        ..EvidenceRecord::of_decision(
            &r.request_id,
            CibaStore::hash_of_key(key),
            &rec,
            r.statement.clone(),
            std::iter::once(created_event(r))
                .chain(decision_event)
                .collect(),
        )
    };
    r.decision = Some(rec);
    r.claim = None;
    let mut b = Batch::new();
    put_record(&mut b, key, r)?;
    if let Err(e) = CibaStore::put_evidence(&mut b, &evidence) {
        tracing::error!(error = %e, request_id = %r.request_id, "evidence record does not encode");
        return Err(TransitionError::Unencodable);
    }
    b.put(history, CibaStore::hash_of_key(key).as_bytes().to_vec());
    leave_inboxes(&mut b, r);
    b.delete(CibaStore::claim_key(key));
    Ok(b)
}

/// Deciding → Pending: the decision failed and nothing was logged.
pub fn release(r: &mut RequestRecord, key: &str) -> Result<Batch, TransitionError> {
    if r.status != RequestStatus::Deciding {
        return Err(TransitionError::NotClaimed);
    }
    r.status = RequestStatus::Pending;
    r.claim = None;
    let mut b = Batch::new();
    put_record(&mut b, key, r)?;
    b.delete(CibaStore::claim_key(key));
    Ok(b)
}

/// Pending → Expired, once `now` is past its expiry.
pub fn expire(r: &mut RequestRecord, key: &str, now: u64) -> Result<Batch, TransitionError> {
    match effective_status(r, now) {
        RequestStatus::Expired if r.status == RequestStatus::Pending => {}
        RequestStatus::Pending => return Err(TransitionError::NotExpired),
        RequestStatus::Deciding => return Err(TransitionError::InProgress),
        _ => return Err(TransitionError::AlreadyDecided),
    }
    r.status = RequestStatus::Expired;
    let mut b = Batch::new();
    put_record(&mut b, key, r)?;
    leave_inboxes(&mut b, r);
    Ok(b)
}

/// What [`recover`] made of a claim a crash left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The decision is in the log: the request is decided, as if the crash came later.
    Finished {
        /// The decision's leaf index.
        index: u64,
        /// The decision.
        decision: Decision,
    },
    /// The decision never reached the log: the request is open again.
    Released,
    /// Only the claim marker was left (the request is gone or no longer claimed).
    Stale,
}

/// At start, for a claim marker a crash left at `key`: `r` is the stored request, `logged` where
/// the log holds the claimed assertion (its index and leaf hash), if it does, and
/// `decision_event` that decision's log event row (for [`finish`]).
pub fn recover(
    r: Option<RequestRecord>,
    key: &str,
    logged: Option<(u64, Hash)>,
    decision_event: Option<EventRow>,
    now: u64,
) -> Result<(Batch, Recovered), TransitionError> {
    let claim = match &r {
        Some(rec) if rec.status == RequestStatus::Deciding => rec.claim.clone(),
        _ => None,
    };
    let (Some(mut r), Some(c)) = (r, claim) else {
        let mut b = Batch::new();
        b.delete(CibaStore::claim_key(key));
        return Ok((b, Recovered::Stale));
    };
    match logged {
        Some((index, leaf)) => {
            let rec = DecisionRecord {
                index,
                leaf_hash: leaf.to_hex(),
                enrolment_index: c.enrolment_index,
                statement_hash: c.statement_hash,
                decided_at: now,
                approver_id: c.approver_id,
            };
            let b = finish(&mut r, key, c.decision, rec, decision_event)?;
            let decision = c.decision;
            Ok((b, Recovered::Finished { index, decision }))
        }
        None => Ok((release(&mut r, key)?, Recovered::Released)),
    }
}

/// Puts the changed record: a transition whose record cannot be written writes nothing.
fn put_record(b: &mut Batch, key: &str, r: &RequestRecord) -> Result<(), TransitionError> {
    match b.put_json(key, r) {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, request_id = %r.request_id, "request record does not encode");
            Err(TransitionError::Unencodable)
        }
    }
}

#[cfg(test)]
mod tests;
