//! Revoking passkeys: the revocation goes into the log first (after it the log refuses every
//! decision of that passkey, whoever submits it), then out of the approver's record (no
//! sign-in, no approval page), and the approver is told by e-mail.

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use countersign_log::{ApiError, RefusalReason, RevocationRequest};

use crate::notify::{self, PasskeyChange};
use crate::state::Approvals;
use crate::store::{ApproverRecord, Batch, CredentialRef, Durability};
use crate::util::B64URL;

use super::append_error;

/// The reasons an operator may give for revoking one passkey (`spec/entry.md`, kind 3).
pub const REVOKE_REASONS: [&str; 3] = ["lost", "compromised", "removed"];

/// The reason logged for each passkey of a disabled approver.
pub const DISABLED_REASON: &str = "disabled";

/// A passkey's revocation, as logged.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The credential (base64url).
    pub credential_id: String,
    /// Its enrolment's leaf index.
    pub enrolment_index: u64,
    /// The revocation's leaf index.
    pub log_index: u64,
    /// False when the enrolment was already revoked (by an earlier, interrupted call).
    pub new: bool,
}

/// Logs the revocation of `cred`, a passkey of `approver_id`. An enrolment already revoked
/// answers its existing revocation, so an operator can run an interrupted command again.
pub(crate) async fn log_revocation(
    c: &Approvals,
    approver_id: &str,
    cred: &CredentialRef,
    reason: &str,
) -> Result<Revoked, ApiError> {
    let credential_id = B64URL
        .decode(&cred.credential_id)
        .map_err(|e| ApiError::internal("credential record", e))?;
    let revoked = |log_index, new| Revoked {
        credential_id: cred.credential_id.clone(),
        enrolment_index: cred.enrolment_index,
        log_index,
        new,
    };
    match c
        .log
        .append_revocation(RevocationRequest {
            approver_id: approver_id.to_owned(),
            credential_id,
            enrolment_index: cred.enrolment_index,
            reason: reason.to_owned(),
        })
        .await
    {
        Ok(a) => {
            tracing::warn!(%approver_id, enrolment_index = cred.enrolment_index, index = a.index, reason, "passkey revoked");
            record_event(c, a.index).await?;
            Ok(revoked(a.index, !a.existing))
        }
        Err(e) if e.reason() == Some(RefusalReason::AlreadyRevoked) => {
            let index =
                crate::util::wait(c.log.revocation_of(cred.enrolment_index))?.ok_or_else(|| {
                    ApiError::internal(
                        "revocation",
                        "refused as revoked, but no revocation is stored",
                    )
                })?;
            record_event(c, index).await?;
            Ok(revoked(index, false))
        }
        Err(e) => Err(append_error("revocation", e)),
    }
}

/// Writes the `credential.revoked` audit event of the revocation at log index `index`, unless
/// it is written already (a marker beside it, in the same batch). The event cannot share a write
/// with the log's append; an interrupted revocation is finished by running it again, which then
/// writes the event it missed.
async fn record_event(c: &Approvals, index: u64) -> Result<(), ApiError> {
    let marker = revocation_event_key(index);
    let _g = c.store.lock(&marker).await?;
    if c.store.get_raw(&marker).await?.is_some() {
        return Ok(());
    }
    let events: Vec<_> = crate::audit::log_entry_event(&c.log, index, None)
        .into_iter()
        .collect();
    let mut b = Batch::new();
    b.put(marker, b"1".to_vec());
    c.store
        .commit_with_events(b, &events, Durability::Sync)
        .await?;
    Ok(())
}

/// The marker of a written `credential.revoked` event.
pub(crate) fn revocation_event_key(index: u64) -> String {
    format!("Ar/{index:016x}")
}

/// Revokes the passkey `credential_id` of approver `approver_id`: logs the revocation, removes
/// the passkey from the record, ends the approver's sessions (one may have been opened with the
/// passkey) and e-mails the approver.
pub(crate) async fn revoke_passkey(
    c: &Arc<Approvals>,
    approver_id: &str,
    credential_id: &str,
    reason: &str,
) -> Result<(ApproverRecord, Revoked), ApiError> {
    let approver_key = format!("a/{approver_id}");
    let (rec, revoked) = {
        // Held across the append: an enrolment finishing meanwhile waits, and does not write
        // back a record that still lists the revoked passkey.
        let _g = c.store.lock(&approver_key).await?;
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such approver passkey",
            )
        };
        let mut rec = c.store.approver(approver_id).await?.ok_or_else(not_found)?;
        let cred = rec
            .credentials
            .iter()
            .find(|cr| cr.credential_id == credential_id.trim_end_matches('='))
            .cloned()
            .ok_or_else(not_found)?;
        let revoked = log_revocation(c, approver_id, &cred, reason).await?;
        rec.credentials
            .retain(|cr| cr.credential_id != cred.credential_id);
        rec.sessions_not_before_ms = countersign_log::now_ms();
        c.store.put(&approver_key, &rec).await?;
        (rec, revoked)
    };
    c.sessions.drop_approver(&c.store, approver_id).await;
    notify::passkey_changed(
        c,
        &rec,
        PasskeyChange::Revoked {
            credential_id: revoked.credential_id.clone(),
            log_index: revoked.log_index,
            reason: reason.to_owned(),
        },
    );
    Ok((rec, revoked))
}

/// Logs a revocation (reason [`DISABLED_REASON`]) for every passkey of `rec`, an approver just
/// disabled, and e-mails the approver about each new one.
pub(crate) async fn revoke_all(
    c: &Arc<Approvals>,
    rec: &ApproverRecord,
) -> Result<Vec<Revoked>, ApiError> {
    let mut out = Vec::with_capacity(rec.credentials.len());
    for cred in &rec.credentials {
        let r = log_revocation(c, &rec.approver_id, cred, DISABLED_REASON).await?;
        if r.new {
            notify::passkey_changed(
                c,
                rec,
                PasskeyChange::Revoked {
                    credential_id: r.credential_id.clone(),
                    log_index: r.log_index,
                    reason: DISABLED_REASON.to_owned(),
                },
            );
        }
        out.push(r);
    }
    Ok(out)
}
