//! Evidence bundles (`spec/evidence-bundle.md`) for decided requests: the statement, the
//! decision and enrolment entries with inclusion proofs against one signed checkpoint, the
//! relying party, and who the opaque ids stand for. `?format=tlog-proof` answers the C2SP
//! tlog-proof text of the decision instead.
//!
//! Who may fetch: the requesting client (`GET /v1/evidence/<auth_req_id>` with its
//! credentials in HTTP Basic), the admin or an auditor with an auditor token (by public request
//! id), and the approver on the approval pages (their own requests). A decision's bundle is
//! built from its evidence record, which outlives the request's records (the request
//! retention) for the evidence retention ([`crate::cleanup`]).
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
use countersign_verifier::{EvidenceBundle, LoggedEntry, RelyingParty, Statement};
use serde_json::json;

use crate::audit_api::AuditAccess;
use crate::ciba::clients;
use crate::state::Approvals;
use crate::store::CibaStore;
use crate::store::{EvidenceRecord, RequestRecord, RequestStatus};
use crate::util::Secret;
use crate::web::RouterState;
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

/// The decision and enrolment indexes of a request's logged decision; `409 not_decided` while
/// it has none.
fn decided(r: &RequestRecord) -> Result<(u64, u64), ApiError> {
    match (&r.status, &r.decision) {
        (RequestStatus::Approved | RequestStatus::Denied, Some(d)) => {
            Ok((d.index, d.enrolment_index))
        }
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_decided",
            "the request has no logged decision",
        )),
    }
}

/// Builds the bundle of the decision of `statement` (with its decision), logged at
/// `decision_index` and signed with the passkey enrolled at `enrolment_index`, against the latest
/// checkpoint. The statement comes from the request's record while it is kept, then from its
/// evidence record ([`EvidenceRecord`]).
pub fn build_bundle(
    c: &Approvals,
    statement: &Statement,
    decision_index: u64,
    enrolment_index: u64,
    parties: Parties,
) -> Result<EvidenceBundle, ApiError> {
    // Quorum mode: evidence is against a checkpoint the witnesses' quorum cosigned, and there
    // is none covering the decision yet.
    if !c.log.quorum_covers(decision_index) {
        return Err(countersign_log::AppendError::NotWitnessed {
            index: decision_index,
        }
        .into());
    }
    // One checkpoint: both proofs are made against it.
    let proved = c
        .log
        .prove_entries(&[decision_index, enrolment_index])
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
        Parties::Named => c.store.approver(&statement.approver_id)?,
        Parties::Opaque => None,
    };
    let policy = c.log.policy();
    Ok(EvidenceBundle {
        version: 1,
        statement: statement.clone(),
        decision,
        enrolment,
        approvals: Vec::new(),
        policy: None,
        checkpoint: proved.checkpoint.note.to_string(),
        relying_party: RelyingParty {
            rp_id: policy.rp_id.clone(),
            origins: policy.allowed_origins.clone(),
        },
        parties: (parties == Parties::Named).then(|| {
            json!({
                "client": {"client_id": statement.client_id},
                "approver": {
                    "approver_id": statement.approver_id,
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
    let hash = Secret::new(auth_req_id).sha256();
    let parties = if c.config.evidence_include_parties {
        Parties::Named
    } else {
        Parties::Opaque
    };
    let evidence = c
        .store
        .evidence_via(&CibaStore::evidence_by_hash_key(&hex::encode(hash)))?;
    if let Some(e) = evidence {
        if e.statement.client_id != client.client_id {
            return Err(not_found());
        }
        return answer(from_evidence(c, &e, parties)?, &q);
    }
    // Undecided (409), or decided before evidence records were kept.
    let r: RequestRecord = c
        .store
        .get(&CibaStore::request_key(&hash))?
        .ok_or_else(not_found)?;
    if r.statement.client_id != client.client_id {
        return Err(not_found());
    }
    let (decision, enrolment) = decided(&r)?;
    answer(
        build_bundle(c, &r.statement, decision, enrolment, parties)?,
        &q,
    )
}

fn from_evidence(
    c: &Approvals,
    e: &EvidenceRecord,
    parties: Parties,
) -> Result<EvidenceBundle, ApiError> {
    build_bundle(
        c,
        &e.statement,
        e.decision_index,
        e.enrolment_index,
        parties,
    )
}

async fn by_request_id_admin(
    State(ref c): State<Arc<Approvals>>,
    _: AuditAccess,
    PathParam(request_id): PathParam,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(e) = crate::audit::evidence_by_request_id(&c.store, &request_id)? {
        return answer(from_evidence(c, &e, Parties::Named)?, &q);
    }
    let (_, r) = c
        .store
        .request_by_public_id(&request_id)?
        .ok_or_else(not_found)?;
    let (decision, enrolment) = decided(&r)?;
    answer(
        build_bundle(c, &r.statement, decision, enrolment, Parties::Named)?,
        &q,
    )
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
    if let Some(e) = crate::audit::evidence_by_request_id(&c.store, &request_id)? {
        if !crate::util::same_id(&e.statement.approver_id, &session.approver_id) {
            return Err(not_found());
        }
        return answer(from_evidence(c, &e, Parties::Named)?, &q);
    }
    let (_, r) = crate::inbox::own_request(c, &session.approver_id, &request_id)?;
    let (decision, enrolment) = decided(&r)?;
    answer(
        build_bundle(c, &r.statement, decision, enrolment, Parties::Named)?,
        &q,
    )
}
