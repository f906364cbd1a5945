//! `GET /v1/admin/policy` (admin or auditor token): the approval policy in force, its log
//! entry and its hash (`spec/policy.md`, `spec/api.md`). `countersign policy show` calls it.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use countersign_log::ApiError;
use countersign_verifier::Entry;
use serde_json::{json, Value};

use crate::audit_api::AuditAccess;
use crate::state::Approvals;
use crate::web::RouterState;

pub(crate) fn routes() -> Router<RouterState> {
    Router::new().route("/v1/admin/policy", get(policy_in_force))
}

/// The answer when no policy is in force (404).
fn no_policy() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "no_policy",
        "no approval policy is in force",
    )
}

async fn policy_in_force(
    State(ref c): State<Arc<Approvals>>,
    _: AuditAccess,
) -> Result<Json<Value>, ApiError> {
    let active = c.active_policy().ok_or_else(no_policy)?;
    // The entry's own time: when the log accepted the policy, which is when it took effect.
    let bytes = crate::util::wait(c.log.entry(active.index))
        .map_err(|e| ApiError::internal("reading the policy entry", e))?
        .ok_or_else(|| {
            ApiError::internal("reading the policy entry", "the entry in force is missing")
        })?;
    let time_ms = match Entry::decode(&bytes) {
        Ok(Entry::Policy(p)) => p.time_ms,
        _ => {
            return Err(ApiError::internal(
                "reading the policy entry",
                format!("log entry {} is not a policy entry", active.index),
            ))
        }
    };
    let policy: Value = serde_json::from_slice(&active.policy.canonical_json())
        .map_err(|e| ApiError::internal("encoding the policy", e))?;
    Ok(Json(json!({
        "index": active.index,
        "sha256": hex::encode(active.sha256),
        "time_ms": time_ms,
        "policy": policy,
    })))
}
