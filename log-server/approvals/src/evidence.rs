//! Evidence bundles (`spec/evidence-bundle.md`) for decided requests: the statement, the
//! decision and enrolment entries with inclusion proofs against one signed checkpoint, the
//! relying party, and who the opaque ids stand for. `?format=tlog-proof` answers the C2SP
//! tlog-proof text of the decision instead.
//!
//! Who may fetch: the requesting client (`GET /v1/evidence/<auth_req_id>` with its
//! credentials in HTTP Basic), an auditor with the admin token (by public request id), and the
//! approver on the approval pages (their own requests).
//!
//! Who sees whom: `parties` (the approver's e-mail address and name) is in the admin's and the
//! approver's own bundles; a client's bundle holds only the statement's opaque ids, unless the
//! operator opts in (`serve --evidence-include-parties`). An agent needs proof of the decision,
//! not the identity of the person behind `apv_...`, and its bundles travel further (logs,
//! tickets, the agent's own tools).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use countersign_verifier::{EvidenceBundle, LoggedEntry, RelyingParty};
use serde_json::json;

use crate::ciba::clients;
use crate::state::Approvals;
use crate::store::CibaStore;
use crate::store::{RequestRecord, RequestStatus};
use crate::util::Secret;
use crate::web::RouterState;
use countersign_log::http::Admin;
use countersign_log::http::{PathParam, Peer};
use countersign_log::ApiError;

pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route("/v1/evidence/{auth_req_id}", get(by_auth_req_id))
        .route("/v1/admin/evidence/{request_id}", get(by_request_id_admin))
        .route(
            "/approve/requests/{request_id}/evidence",
            get(by_request_id_approver),
        )
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no decided request with this id",
    )
}

/// Whether a bundle names the people behind the opaque ids (`parties`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parties {
    /// With `parties`: the approver's e-mail address and name.
    Named,
    /// Without `parties`: the statement's opaque ids only.
    Opaque,
}

/// Builds the bundle of a decided request against the latest checkpoint.
pub fn build_bundle(
    c: &Approvals,
    r: &RequestRecord,
    parties: Parties,
) -> Result<EvidenceBundle, ApiError> {
    if !matches!(r.status, RequestStatus::Approved | RequestStatus::Denied) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_decided",
            "the request has no logged decision",
        ));
    }
    let d = r.decision.as_ref().ok_or_else(not_found)?;
    // One checkpoint: both proofs are made against it.
    let proved = c
        .log
        .prove_entries(&[d.index, d.enrolment_index])
        .map_err(|e| ApiError::internal("evidence", format!("{e:?}")))?;
    let mut logged = proved.entries.into_iter().map(|e| LoggedEntry {
        index: e.index,
        entry: hex::encode(e.entry),
        inclusion_proof: e.proof.iter().map(|h| h.to_hex()).collect(),
    });
    let (Some(decision), Some(enrolment)) = (logged.next(), logged.next()) else {
        return Err(ApiError::internal("evidence", "entries missing"));
    };
    let approver = match parties {
        Parties::Named => c.store.approver(&r.statement.approver_id)?,
        Parties::Opaque => None,
    };
    let policy = c.log.policy();
    Ok(EvidenceBundle {
        version: 1,
        statement: r.statement.clone(),
        decision,
        enrolment,
        checkpoint: proved.checkpoint.note.to_string(),
        relying_party: RelyingParty {
            rp_id: policy.rp_id.clone(),
            origins: policy.allowed_origins.clone(),
        },
        parties: (parties == Parties::Named).then(|| {
            json!({
                "client": {"client_id": r.statement.client_id},
                "approver": {
                    "approver_id": r.statement.approver_id,
                    "email": approver.as_ref().map(|a| a.email.clone()),
                    "name": approver.as_ref().and_then(|a| a.name.clone()),
                },
            })
        }),
    })
}

fn answer(bundle: EvidenceBundle, q: &HashMap<String, String>) -> Result<Response, ApiError> {
    match q.get("format").map(String::as_str) {
        None | Some("json") => {
            Ok(([(header::CACHE_CONTROL, "no-store")], Json(bundle)).into_response())
        }
        Some("tlog-proof") => {
            let text = bundle
                .decision_tlog_proof()
                .map_err(|e| ApiError::internal("tlog-proof", e))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                text,
            )
                .into_response())
        }
        Some(_) => Err(ApiError::invalid_request(
            "format must be json or tlog-proof",
        )),
    }
}

async fn by_auth_req_id(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(auth_req_id): PathParam,
    Query(q): Query<HashMap<String, String>>,
    Peer(peer): Peer,
) -> Result<Response, ApiError> {
    // No body on a GET: secret clients use HTTP Basic; key-based clients may put a one-time
    // client assertion in the query. A secret is never accepted in a URL.
    let mut creds: HashMap<String, String> = q
        .iter()
        .filter(|(k, _)| k.starts_with("client_assertion") || *k == "client_id")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !creds.contains_key("client_assertion") {
        creds.clear();
    }
    let client = clients::authenticate_with(c, &headers, &creds, false, peer).await?;
    if auth_req_id.len() > 256 {
        return Err(not_found());
    }
    let key = CibaStore::request_key(&Secret::new(auth_req_id).sha256());
    let r: RequestRecord = c.store.get(&key)?.ok_or_else(not_found)?;
    if r.statement.client_id != client.client_id {
        return Err(not_found());
    }
    let parties = if c.config.evidence_include_parties {
        Parties::Named
    } else {
        Parties::Opaque
    };
    answer(build_bundle(c, &r, parties)?, &q)
}

async fn by_request_id_admin(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    PathParam(request_id): PathParam,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (_, r) = c
        .store
        .request_by_public_id(&request_id)?
        .ok_or_else(not_found)?;
    answer(build_bundle(c, &r, Parties::Named)?, &q)
}

async fn by_request_id_approver(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let session = crate::passkeys::session_of(c, &headers).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "login_required", "sign in first")
    })?;
    let (_, r) = crate::inbox::own_request(c, &session.approver_id, &request_id)?;
    answer(build_bundle(c, &r, Parties::Named)?, &q)
}
