//! Admin API of the approval requests (admin bearer token), for `countersign requests list|show`:
//!
//! - `GET /v1/admin/requests?status=&client_id=&approver_id=&since=&limit=&cursor=`: the
//!   requests still held (see [`crate::cleanup`]) in the order of their expiry, oldest first,
//!   filtered, one bounded page at a time;
//! - `GET /v1/admin/requests/{id}`: one request by its public request id or its `auth_req_id`.
//!
//! The `auth_req_id` is a bearer secret of the client: no answer carries it, and a request found
//! by it says only that it was (`found_by`), so an operator's terminal or script logs never hold
//! one the operator did not type. Times are Unix seconds, as in the rest of the admin API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use countersign_log::http::{Admin, PathParam};
use countersign_log::storage::kv::prefix_end;
use countersign_log::storage::StorageError;
use countersign_log::ApiError;
use serde_json::{json, Value};

use crate::request::effective_status;
use crate::state::Approvals;
use crate::store::{CibaStore, RequestRecord, RequestStatus, EXPIRY_PREFIX};
use crate::util::{now_secs, Secret};
use crate::web::RouterState;

/// Requests in one answer when the query names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest `limit`.
pub const MAX_LIMIT: usize = 1000;
/// Index entries one list call examines at most, matching or not: a filter that matches little
/// cannot make one call read every request held.
pub const SCAN_BUDGET: usize = 10_000;
/// Index entries read per store scan.
const PAGE: usize = 256;
/// Longest id looked up (request ids and `auth_req_id`s are far shorter).
const MAX_ID_CHARS: usize = 256;

pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route("/v1/admin/requests", get(list))
        .route("/v1/admin/requests/{id}", get(show))
}

/// What a list call selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only requests whose effective status ([`effective_status`]) is this.
    pub status: Option<RequestStatus>,
    /// Only this client's requests.
    pub client_id: Option<String>,
    /// Only requests to this approver.
    pub approver_id: Option<String>,
    /// Only requests made at or after this time (Unix seconds).
    pub since: Option<u64>,
    /// Most requests in the answer (1 to [`MAX_LIMIT`]).
    pub limit: usize,
    /// Continue after this position (`<expires_at, 16 hex digits>/<request_id>`), as a previous
    /// answer's `next_cursor` gave it.
    pub cursor: Option<String>,
}

impl Filter {
    /// Reads the query string's parameters; an unknown name is refused, so a misspelt filter
    /// does not silently list everything.
    pub fn from_query(q: &HashMap<String, String>) -> Result<Filter, ApiError> {
        let mut f = Filter {
            limit: DEFAULT_LIMIT,
            ..Filter::default()
        };
        for (k, v) in q {
            match k.as_str() {
                "status" => {
                    f.status = Some(serde_json::from_value(json!(v)).map_err(|_| {
                        ApiError::invalid_request(
                            "status must be pending, deciding, approved, denied or expired",
                        )
                    })?)
                }
                "client_id" => f.client_id = Some(id_param("client_id", v)?),
                "approver_id" => f.approver_id = Some(id_param("approver_id", v)?),
                "since" => {
                    f.since = Some(v.parse().map_err(|_| {
                        ApiError::invalid_request("since must be a time in Unix seconds")
                    })?)
                }
                "limit" => {
                    f.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid_request(format!("limit must be 1 to {MAX_LIMIT}"))
                        })?
                }
                "cursor" => {
                    let ok = v.split_once('/').is_some_and(|(t, id)| {
                        t.len() == 16
                            && t.bytes().all(|b| b.is_ascii_hexdigit())
                            && !id.is_empty()
                            && id.len() <= MAX_ID_CHARS
                    });
                    if !ok {
                        return Err(ApiError::invalid_request(
                            "cursor must be a next_cursor of a previous answer",
                        ));
                    }
                    f.cursor = Some(v.clone());
                }
                other => {
                    return Err(ApiError::invalid_request(format!(
                        "unknown parameter {other:?}; the filters are status, client_id, \
                         approver_id, since, limit and cursor"
                    )))
                }
            }
        }
        Ok(f)
    }

    fn matches(&self, r: &RequestRecord, status: RequestStatus) -> bool {
        self.status.is_none_or(|s| s == status)
            && self
                .client_id
                .as_ref()
                .is_none_or(|c| *c == r.statement.client_id)
            && self
                .approver_id
                .as_ref()
                .is_none_or(|a| r.statement.is_eligible(a))
            && self.since.is_none_or(|t| r.statement.requested_at >= t)
    }
}

fn id_param(name: &str, v: &str) -> Result<String, ApiError> {
    if v.is_empty() || v.len() > MAX_ID_CHARS {
        return Err(ApiError::invalid_request(format!(
            "{name} must be 1 to {MAX_ID_CHARS} characters"
        )));
    }
    Ok(v.to_owned())
}

/// Why a list answer stopped before the end of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncated {
    /// More requests match than the limit: at least one more follows `next_cursor`.
    Limit,
    /// [`SCAN_BUDGET`] requests were examined; those after `next_cursor` were not.
    ScanBudget,
}

impl Truncated {
    fn as_str(self) -> &'static str {
        match self {
            Truncated::Limit => "limit",
            Truncated::ScanBudget => "scan_budget",
        }
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    /// The matching requests, by expiry.
    pub requests: Vec<RequestRecord>,
    /// Set when the listing stopped early, with where to continue.
    pub truncated: Option<(Truncated, String)>,
}

/// The requests matching `f` at `now`, from the expiry index: a request made at or after
/// `since` expires after it, so the scan starts at `x/<since>`.
pub fn list_requests(store: &CibaStore, f: &Filter, now: u64) -> Result<Page, StorageError> {
    let mut from = match f.since {
        Some(t) => CibaStore::expiry_key(t, "").into_bytes(),
        None => EXPIRY_PREFIX.as_bytes().to_vec(),
    };
    if let Some(c) = &f.cursor {
        let mut after = format!("{EXPIRY_PREFIX}{c}").into_bytes();
        after.push(0);
        from = from.max(after);
    }
    let end = prefix_end(EXPIRY_PREFIX.as_bytes());
    let mut requests = Vec::new();
    let mut examined = 0;
    // Positions (index keys without their prefix) of the last request returned and of the last
    // one examined: where a truncated answer's next call goes on from.
    let mut last_returned = String::new();
    let mut last_examined = String::new();
    loop {
        let want = PAGE.min(SCAN_BUDGET - examined);
        let found = store.scan_range_blocking(&from, end.as_deref(), want)?;
        let n = found.len();
        for (xkey, hash) in found {
            examined += 1;
            last_examined = xkey.strip_prefix(EXPIRY_PREFIX).unwrap_or(&xkey).to_owned();
            from = xkey.into_bytes();
            from.push(0);
            let key = CibaStore::record_key_of(&String::from_utf8_lossy(&hash));
            // A request cleaned up since the index was read is simply gone.
            let Some(r) = store.get_blocking::<RequestRecord>(&key)? else {
                continue;
            };
            if !f.matches(&r, effective_status(&r, now)) {
                continue;
            }
            if requests.len() == f.limit {
                return Ok(Page {
                    requests,
                    truncated: Some((Truncated::Limit, last_returned)),
                });
            }
            requests.push(r);
            last_returned.clone_from(&last_examined);
        }
        if n < want {
            return Ok(Page {
                requests,
                truncated: None,
            });
        }
        if examined == SCAN_BUDGET {
            return Ok(Page {
                requests,
                truncated: Some((Truncated::ScanBudget, last_examined)),
            });
        }
    }
}

/// A request as a list answer gives it.
fn list_item(r: &RequestRecord, now: u64) -> Value {
    json!({
        "request_id": r.request_id,
        "status": effective_status(r, now),
        "client_id": r.statement.client_id,
        "approver_id": (r.statement.policy.is_none()).then_some(&r.statement.approver_id),
        "approvers": r.statement.eligible_approvers(),
        "quorum": r.statement.quorum(),
        "rule": r.statement.policy.as_ref().and_then(|p| p.rule.as_ref()),
        "approvals": r.decisions()
            .filter(|d| r.status != RequestStatus::Denied || Some(*d) != r.decision.as_ref())
            .map(|d| json!({"approver_id": r.decider(d), "log_index": d.index}))
            .collect::<Vec<_>>(),
        "scope": r.statement.scope,
        "binding_message": r.statement.binding_message,
        "authorization_details": r.statement.authorization_details,
        // The action in one line, as the approver's pages headline it.
        "summary": crate::action::summary(&r.statement.authorization_details),
        "requested_at": r.statement.requested_at,
        "expires_at": r.statement.expires_at,
        "decided_at": r.decision.as_ref().map(|d| d.decided_at),
        "log_index": r.decision.as_ref().map(|d| d.index),
    })
}

async fn list(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let f = Filter::from_query(&q)?;
    let now = now_secs();
    // Up to SCAN_BUDGET reads: off the async workers.
    let page = tokio::task::spawn_blocking({
        let c = c.clone();
        move || list_requests(&c.store, &f, now)
    })
    .await
    .map_err(|e| ApiError::internal("listing requests", e))??;
    let (truncated, next_cursor) = match page.truncated {
        Some((why, cursor)) => (Some(why.as_str()), Some(cursor)),
        None => (None, None),
    };
    Ok(Json(json!({
        "requests": page.requests.iter().map(|r| list_item(r, now)).collect::<Vec<_>>(),
        "truncated": truncated,
        "next_cursor": next_cursor,
    }))
    .into_response())
}

/// How `GET /v1/admin/requests/{id}` found the request.
async fn find(c: &Approvals, id: &str) -> Result<Option<(RequestRecord, &'static str)>, ApiError> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Ok(None);
    }
    if let Some((_, r)) = c.store.request_by_public_id(id).await? {
        return Ok(Some((r, "request_id")));
    }
    let key = CibaStore::request_key(&Secret::new(id.to_owned()).sha256());
    Ok(c.store
        .get::<RequestRecord>(&key)
        .await?
        .map(|r| (r, "auth_req_id")))
}

async fn show(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let (r, found_by) = find(c, &id).await?.ok_or_else(|| {
        ApiError::not_found(
            "no request has this request id or auth_req_id (a request is deleted once it \
             expired more than the retention window ago)",
        )
    })?;
    let now = now_secs();
    let decided = matches!(r.status, RequestStatus::Approved | RequestStatus::Denied);
    Ok(Json(json!({
        "request_id": r.request_id,
        "found_by": found_by,
        "status": effective_status(&r, now),
        "statement": r.statement,
        "delivery_mode": r.mode,
        "token_issued": r.token_issued,
        // Every approval logged toward the quorum (with the decision that ended it, if an
        // approval).
        "approvals": r.decisions()
            .filter(|d| r.status != RequestStatus::Denied || Some(*d) != r.decision.as_ref())
            .map(|d| json!({"approver_id": r.decider(d), "log_index": d.index}))
            .collect::<Vec<_>>(),
        "decision": r.decision.as_ref().map(|d| json!({
            "approver_id": r.decider(d),
            "log_index": d.index,
            "leaf_hash": d.leaf_hash,
            "enrolment_index": d.enrolment_index,
            "statement_hash": d.statement_hash,
            "decided_at": d.decided_at,
        })),
        // The admin route: the client's own (`/v1/evidence/<auth_req_id>`) needs its secret.
        "evidence_url": decided.then(|| format!(
            "{}/v1/admin/evidence/{}", c.config.public_url, r.request_id
        )),
    }))
    .into_response())
}
