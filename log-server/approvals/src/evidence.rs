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
use countersign_verifier::{DecisionLink, EvidenceBundle, LoggedEntry, RelyingParty, Statement};
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

/// The logged decisions a bundle proves: the one it is about (for an approval under a quorum,
/// the one that completed it; or a denial) and, for an approval, the earlier approvals of the
/// quorum, each as (decision index, enrolment index), with the approvers who made them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// The decision the bundle is about.
    pub decision: (u64, u64),
    /// Its approver.
    pub decided_by: String,
    /// The earlier approvals of its quorum, in log order, with their approvers.
    pub approvals: Vec<((u64, u64), String)>,
}

impl Decided {
    /// What an evidence record proves.
    pub fn of_evidence(e: &EvidenceRecord) -> Self {
        Decided {
            decision: (e.decision_index, e.enrolment_index),
            decided_by: e.decider().to_owned(),
            approvals: e
                .approvals
                .iter()
                .map(|d| ((d.index, d.enrolment_index), d.approver_id.clone()))
                .collect(),
        }
    }
}

/// The decisions of a decided request; `409 not_decided` while it has none.
fn decided(r: &RequestRecord) -> Result<Decided, ApiError> {
    match (&r.status, &r.decision) {
        (RequestStatus::Approved | RequestStatus::Denied, Some(d)) => Ok(Decided {
            decision: (d.index, d.enrolment_index),
            decided_by: r.decider(d).to_owned(),
            approvals: if r.status == RequestStatus::Approved {
                r.approvals
                    .iter()
                    .map(|a| ((a.index, a.enrolment_index), r.decider(a).to_owned()))
                    .collect()
            } else {
                Vec::new()
            },
        }),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_decided",
            "the request has no logged decision",
        )),
    }
}

/// Builds the bundle of the decisions `d` on `statement` (with its decision) against the latest
/// checkpoint: version 1 for a statement of one named approver, version 2 (with the policy
/// entry and every approval of the quorum) under a policy. The statement comes from the
/// request's record while it is kept, then from its evidence record ([`EvidenceRecord`]).
pub async fn build_bundle(
    c: &Approvals,
    statement: &Statement,
    d: &Decided,
    parties: Parties,
) -> Result<EvidenceBundle, ApiError> {
    let mut indexes = vec![d.decision.0, d.decision.1];
    for ((dec, enr), _) in &d.approvals {
        indexes.extend([*dec, *enr]);
    }
    if let Some(p) = &statement.policy {
        indexes.push(p.index);
    }
    // Quorum mode: evidence is against a checkpoint the witnesses' quorum cosigned, and there
    // is none covering the decisions yet.
    let last = indexes.iter().copied().max().unwrap_or(d.decision.0);
    if !c.log.quorum_covers(last) {
        return Err(countersign_log::AppendError::NotWitnessed { index: last }.into());
    }
    // One checkpoint: every proof is made against it.
    let proved = c
        .log
        .prove_entries(&indexes)
        .await
        .map_err(|e| ApiError::internal("evidence", format!("{e:?}")))?;
    let mut logged = proved.entries.into_iter().map(|e| LoggedEntry {
        index: e.index,
        entry: hex::encode(e.entry),
        inclusion_proof: e.proof.iter().map(|h| h.to_hex()).collect(),
    });
    let mut next = || {
        logged
            .next()
            .ok_or_else(|| ApiError::internal("evidence", "entries missing"))
    };
    let decision = next()?;
    let enrolment = next()?;
    let mut approvals = Vec::with_capacity(d.approvals.len());
    for _ in &d.approvals {
        approvals.push(DecisionLink {
            decision: next()?,
            enrolment: next()?,
        });
    }
    let policy_entry = match &statement.policy {
        Some(_) => Some(next()?),
        None => None,
    };
    let rp = c.log.policy();
    let parties = match parties {
        Parties::Named => {
            let mut people = Vec::new();
            let deciders = std::iter::once(&d.decided_by).chain(d.approvals.iter().map(|(_, a)| a));
            for id in deciders {
                let a = c.store.approver(id).await?;
                people.push(json!({
                    "approver_id": id,
                    "email": a.as_ref().map(|a| a.email.clone()),
                    "name": a.as_ref().and_then(|a| a.name.clone()),
                }));
            }
            Some(if statement.policy.is_some() {
                json!({"client": {"client_id": statement.client_id}, "approvers": people})
            } else {
                json!({
                    "client": {"client_id": statement.client_id},
                    "approver": people.into_iter().next(),
                })
            })
        }
        Parties::Opaque => None,
    };
    Ok(EvidenceBundle {
        version: if statement.policy.is_some() {
            countersign_verifier::BUNDLE_VERSION_POLICY
        } else {
            countersign_verifier::BUNDLE_VERSION
        },
        statement: statement.clone(),
        decision,
        enrolment,
        approvals,
        policy: policy_entry,
        checkpoint: proved.checkpoint.note.to_string(),
        relying_party: RelyingParty {
            rp_id: rp.rp_id.clone(),
            origins: rp.allowed_origins.clone(),
        },
        parties,
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
        .evidence_via(&CibaStore::evidence_by_hash_key(&hex::encode(hash)))
        .await?;
    if let Some(e) = evidence {
        if e.statement.client_id != client.client_id {
            return Err(not_found());
        }
        return answer(from_evidence(c, &e, parties).await?, &q);
    }
    // Undecided (409), or decided before evidence records were kept.
    let r: RequestRecord = c
        .store
        .get(&CibaStore::request_key(&hash))
        .await?
        .ok_or_else(not_found)?;
    if r.statement.client_id != client.client_id {
        return Err(not_found());
    }
    answer(
        build_bundle(c, &r.statement, &decided(&r)?, parties).await?,
        &q,
    )
}

async fn from_evidence(
    c: &Approvals,
    e: &EvidenceRecord,
    parties: Parties,
) -> Result<EvidenceBundle, ApiError> {
    build_bundle(c, &e.statement, &Decided::of_evidence(e), parties).await
}

async fn by_request_id_admin(
    State(ref c): State<Arc<Approvals>>,
    _: AuditAccess,
    PathParam(request_id): PathParam,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(e) = crate::audit::evidence_by_request_id(&c.store, &request_id).await? {
        return answer(from_evidence(c, &e, Parties::Named).await?, &q);
    }
    let (_, r) = c
        .store
        .request_by_public_id(&request_id)
        .await?
        .ok_or_else(not_found)?;
    answer(
        build_bundle(c, &r.statement, &decided(&r)?, Parties::Named).await?,
        &q,
    )
}

async fn by_request_id_approver(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let session = crate::passkeys::session_of(c, &headers)
        .await
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "login_required", "sign in first")
        })?;
    if let Some(e) = crate::audit::evidence_by_request_id(&c.store, &request_id).await? {
        if !e.statement.is_eligible(&session.approver_id) {
            return Err(not_found());
        }
        return answer(from_evidence(c, &e, Parties::Named).await?, &q);
    }
    let (_, r) = crate::inbox::own_request(c, &session.approver_id, &request_id).await?;
    answer(
        build_bundle(c, &r.statement, &decided(&r)?, Parties::Named).await?,
        &q,
    )
}
