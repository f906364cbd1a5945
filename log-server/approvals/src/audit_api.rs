//! The auditor's HTTP API: the audit feed (`GET /v1/audit/events`), the decided statements
//! (`GET /v1/audit/statements`), and the admin's management of auditor tokens
//! (`/v1/admin/auditors`). The feed and statements answer what [`crate::audit`] reads; who may
//! call is [`AuditAccess`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use countersign_log::http::{bearer, Admin, Body, PathParam};
use countersign_log::ApiError;
use serde::Deserialize;
use serde_json::json;

use crate::audit;
use crate::auditors;
use crate::state::Approvals;
use crate::util::now_secs;
use crate::web::RouterState;

/// Default and largest page of the feed and of the statements.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route(
            "/v1/admin/auditors",
            get(list_auditors).post(create_auditor),
        )
        .route("/v1/admin/auditors/{name}", delete(revoke_auditor))
        .route("/v1/audit/events", get(events))
        .route("/v1/audit/statements", get(statements))
}

/// Proof that a request may read the audit trail: it carries the admin token or an auditor
/// token (`Authorization: Bearer`). The one check of the three routes an auditor may call; every
/// other admin route takes [`Admin`], which an auditor token does not pass.
#[derive(Debug)]
pub enum AuditAccess {
    /// The admin token.
    Admin,
    /// The token of the auditor so named.
    Auditor(String),
}

impl FromRequestParts<RouterState> for AuditAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &RouterState) -> Result<Self, ApiError> {
        let c = &state.0;
        let t =
            bearer(&parts.headers).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        if c.admin.check(&parts.headers).is_ok() {
            return Ok(AuditAccess::Admin);
        }
        match auditors::auditor_for(&c.store, &t).await? {
            Some(name) => Ok(AuditAccess::Auditor(name)),
            None => Err(ApiError::unauthorized(
                "the bearer token is neither the admin token nor an auditor token",
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditorBody {
    name: String,
}

async fn create_auditor(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    body: Body,
) -> Result<Response, ApiError> {
    let b: AuditorBody = body.json()?;
    if !countersign_log::submitters::valid_name(&b.name) {
        return Err(ApiError::invalid_request(
            countersign_log::submitters::NAME_RULE,
        ));
    }
    let (token, fingerprint) = auditors::create(&c.store, &b.name, now_secs()).await?;
    tracing::info!(auditor = %b.name, %fingerprint, "auditor token created");
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"name": b.name, "token": token.expose(), "fingerprint": fingerprint})),
    )
        .into_response())
}

async fn list_auditors(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
) -> Result<Response, ApiError> {
    Ok(Json(json!({ "auditors": auditors::list(&c.store).await? })).into_response())
}

async fn revoke_auditor(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    PathParam(name): PathParam,
) -> Result<Response, ApiError> {
    let revoked = auditors::revoke(&c.store, &name).await?;
    if revoked.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_auditor",
            "no auditor has this name",
        ));
    }
    tracing::info!(auditor = %name, tokens = revoked.len(), "auditor revoked");
    Ok(Json(json!({"name": name, "revoked": revoked})).into_response())
}

/// `limit` of a query: [`DEFAULT_LIMIT`] if absent, else 1 to [`MAX_LIMIT`].
fn limit_of(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::invalid_request(format!("limit must be 1 to {MAX_LIMIT}"))),
    }
}

fn only(q: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid_request(format!(
            "unknown query parameter {k}"
        ))),
        None => Ok(()),
    }
}

async fn events(
    State(ref c): State<Arc<Approvals>>,
    who: AuditAccess,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only(&q, &["after", "limit"])?;
    let limit = limit_of(&q)?;
    let after = match q.get("after") {
        None => None,
        Some(cur) => Some(audit::decode_cursor(cur).ok_or_else(|| {
            ApiError::invalid_request("after is not a cursor this server handed out")
        })?),
    };
    // Up to MAX_LIMIT rows read and encoded: off the async workers, which answer the appends.
    let (n, body) = tokio::task::spawn_blocking({
        let c = c.clone();
        move || -> Result<_, ApiError> {
            let (rows, next) = audit::events_after(&c.store, after, limit)?;
            let body = json!({"events": rows, "next": audit::encode_cursor(next)}).to_string();
            Ok((rows.len(), body))
        }
    })
    .await
    .map_err(|e| ApiError::internal("reading audit events", e))??;
    tracing::debug!(?who, n, "audit events read");
    Ok(json_page(body))
}

async fn statements(
    State(ref c): State<Arc<Approvals>>,
    who: AuditAccess,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only(&q, &["from_index", "to_index", "limit"])?;
    let limit = limit_of(&q)?;
    let index = |name: &str, default: u64| -> Result<u64, ApiError> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::invalid_request(format!("{name} must be a leaf index")))
        })
    };
    let from = index("from_index", 0)?;
    let to = index("to_index", u64::MAX)?;
    let (n, body) = tokio::task::spawn_blocking({
        let c = c.clone();
        move || -> Result<_, ApiError> {
            // One more than asked: whether there is a next page, and where it starts.
            let mut items = audit::statements(&c.store, from, to, limit + 1)?;
            let next_index = items.get(limit).map(|i| i.index);
            items.truncate(limit);
            let body = json!({"statements": items, "next_index": next_index}).to_string();
            Ok((items.len(), body))
        }
    })
    .await
    .map_err(|e| ApiError::internal("reading audit statements", e))??;
    tracing::debug!(?who, n, "audit statements read");
    Ok(json_page(body))
}

/// A page of the audit feed, encoded already.
fn json_page(body: String) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        body,
    )
        .into_response()
}
