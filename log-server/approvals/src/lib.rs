//! Countersign's approval front end: OpenID CIBA Core 1.0 (poll, ping and push), passkey
//! enrolment and sign-in, the approval pages, notifications and evidence bundles.
//!
//! An agent (a CIBA client) asks at `/bc-authorize`; the server builds the approval
//! [`Statement`](countersign_verifier::Statement), draws a 32-byte nonce and keeps the pending
//! request in the `ciba` column family ([`store`]); the approver signs
//! `nonce || SHA-256(statement)` with a passkey on the approval pages ([`passkeys`], [`pages`]);
//! the decision is appended to the log, and only then does the client get a token bound to the
//! statement ([`ciba::tokens`]). A request's life is the state machine of [`request`]. Everything
//! fails closed: any error leaves the request undecided or denied, never approved.
//!
//! Each decision's evidence record and the audit events (request made, decided, token issued,
//! expired; passkeys enrolled and revoked) are written with the change they record and kept for
//! the evidence retention, apart from the requests; [`audit`] reads them (for the auditor's
//! HTTP API, [`audit_api`], and offline for the exporter).
//!
//! Layer: the approval front end. It is built only on `countersign-log`'s public API (the
//! [`LogHandle`](countersign_log::LogHandle), the key-value area
//! [`countersign_log::storage::kv`], and the shared HTTP pieces of [`countersign_log::http`]) and
//! on `countersign-verifier`, which does every statement, WebAuthn and proof check. The log
//! never depends on it; the `countersign` binary composes the two. Below the handlers
//! ([`request`], [`store`], [`config`], [`state`], [`live`], [`util`], [`audit`], [`auditors`], the
//! ceremony registry and the sessions) nothing imports axum (`scripts/check-layers.py` checks it).

pub mod action;
pub mod admin_api;
pub mod admin_requests;
pub mod attestation;
pub mod audit;
pub mod audit_api;
pub mod auditors;
pub mod ciba;
pub mod cleanup;
pub mod config;
pub mod decision;
pub mod delivery;
pub mod evidence;
pub mod inbox;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod pages;
pub mod passkeys;
pub mod policy;
pub mod policy_admin;
pub mod request;
pub mod state;
pub mod store;
pub mod util;
pub mod web;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;

pub use config::{CibaConfig, MAX_DELIVERY_BACKOFF};
pub use countersign_log::ApiError;
pub use state::Approvals;
pub use store::CibaStore;
pub use util::Secret;

/// The column families the front end keeps its records in: the log must be opened with them
/// ([`countersign_log::Config::column_families`]).
pub const COLUMN_FAMILIES: &[&str] = &[store::CF_CIBA];

/// Largest request body of the front end's endpoints: a `/bc-authorize` form with the largest
/// `authorization_details` and every other parameter at its limit, or a passkey's response.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Opens the front end on a started log (whose store was opened with [`COLUMN_FAMILIES`]):
/// its state ([`Approvals::new`]), then finishes the decisions a crash interrupted
/// ([`decision::recover_claims`]), takes up owed deliveries and notifications, and starts the
/// clean-up task.
pub fn open(
    log: countersign_log::LogHandle,
    admin: countersign_log::http::AdminAuth,
    config: CibaConfig,
) -> Result<Arc<Approvals>, countersign_log::InitError> {
    let a = Arc::new(Approvals::new(log, admin, config)?);
    match decision::migrate_evidence(&a) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            decided_requests = n,
            "evidence records made for decisions recorded before they existed"
        ),
        Err(e) => return Err(e.into()),
    }
    match decision::recover_claims(&a) {
        Ok((0, 0)) => {}
        Ok((finished, released)) => tracing::info!(
            finished,
            released,
            "decisions a crash interrupted: finished from the log or released"
        ),
        Err(e) => return Err(e.into()),
    }
    match ciba::clients::load_jtis(&a, util::now_secs()) {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "client assertion ids loaded (replays stay refused)"),
        Err(e) => {
            return Err(countersign_log::InitError::Config(format!(
                "loading client assertion ids: {}",
                e.description
            )))
        }
    }
    cleanup::start(&a);
    // Ping/push deliveries first, then the approvers' notifications.
    delivery::resume_deliveries(&a);
    Ok(a)
}

/// Opens the front end on a log of the shared driver ([`Approvals::new_shared`]): its records
/// in the log's database, shared by every instance. Each instance loads the client assertion
/// ids and follows the other instances' request changes (live inboxes); the instance holding
/// the housekeeping lease ([`cleanup::HOUSEKEEPING_LEASE`], one at a time, taken over within a
/// clean-up interval when it dies) finishes what a dead instance left: claims of decisions
/// ([`decision::recover_claims`], only those of instances no longer running), owed deliveries
/// and notifications; and runs the clean-up.
pub async fn open_shared(
    log: countersign_log::LogHandle,
    admin: countersign_log::http::AdminAuth,
    config: CibaConfig,
) -> Result<Arc<Approvals>, countersign_log::InitError> {
    let a = Arc::new(Approvals::new_shared(log, admin, config).await?);
    let loaded = tokio::task::block_in_place(|| ciba::clients::load_jtis(&a, util::now_secs()));
    if let Err(e) = loaded {
        return Err(countersign_log::InitError::Config(format!(
            "loading client assertion ids: {}",
            e.description
        )));
    }
    follow_other_instances(&a);
    cleanup::start(&a);
    Ok(a)
}

/// On the shared driver: wakes this instance's open inboxes when another instance creates or
/// ends one of their requests (the `p/` changes every instance is sent), so an approver's live
/// inbox at any instance shows requests made anywhere.
fn follow_other_instances(a: &Arc<Approvals>) {
    use countersign_log::shared::kv::Change;
    let Some(mut rx) = a.store.remote_changes() else {
        return;
    };
    let weak = Arc::downgrade(a);
    tokio::spawn(async move {
        loop {
            let ops = match rx.recv().await {
                Ok(Change::Keys(keys)) => keys,
                // Missed changes: an open page refreshes on its own timer.
                Ok(Change::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    continue
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Some(a) = weak.upgrade() else { return };
            for key in ops.iter() {
                if let Some((approver, request)) = key
                    .strip_prefix(crate::store::PENDING_PREFIX)
                    .and_then(|r| r.rsplit_once('/'))
                {
                    a.inbox_changed(approver, request);
                }
            }
        }
    });
}

/// What the instance that takes the housekeeping lease does first (shared driver): what
/// [`open`] does at start on the embedded store, for whatever instances that died left (the
/// clean-up task then takes up their owed deliveries).
pub(crate) fn take_over_housekeeping(a: &Arc<Approvals>) {
    match decision::migrate_evidence(a) {
        Ok(0) => {}
        Ok(n) => tracing::info!(decided_requests = n, "evidence records made"),
        Err(e) => tracing::warn!(error = %e, "making evidence records failed"),
    }
    match decision::recover_claims(a) {
        Ok((0, 0)) => {}
        Ok((finished, released)) => tracing::info!(
            finished,
            released,
            "decisions a stopped instance left: finished from the log or released"
        ),
        Err(e) => tracing::warn!(error = %e, "recovering claims failed"),
    }
}

/// Every route of the front end: the CIBA endpoints, the admin API, the passkey ceremonies, the
/// pages and evidence. The binary merges it into the log's router.
pub fn router(approvals: Arc<Approvals>) -> Router {
    ciba::endpoints::routes()
        .merge(admin_api::routes())
        .merge(admin_requests::routes())
        .merge(passkeys::routes())
        .merge(inbox::routes())
        .merge(pages::routes())
        .merge(evidence::routes())
        .merge(audit_api::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(web::RouterState(approvals))
}
