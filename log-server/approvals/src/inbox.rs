//! The approver's inbox: open requests, a request's detail, and the decision (start: the
//! challenge over the statement; finish: the assertion, handed to [`crate::decision::decide`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use countersign_log::http::{Body, PathParam};
use countersign_verifier::{challenge, Decision};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::decision::{self, DecideError, DecideRequest};
use crate::passkeys::{
    append_error, change_session_and_approver, session_of, unauthorized, AssertionCredential,
    CEREMONY_TTL,
};
use crate::request::{self, TransitionError};
use crate::state::Approvals;
use crate::store::{Batch, CibaStore, RequestRecord, RequestStatus};
use crate::util::{now_secs, B64URL};
use crate::web::RouterState;
use countersign_log::ApiError;

/// The inbox's routes.
pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route("/v1/inbox", get(inbox))
        .route("/v1/requests/{request_id}", get(request_detail))
        .route("/v1/requests/{request_id}/decide/start", post(decide_start))
        .route(
            "/v1/requests/{request_id}/decide/finish",
            post(decide_finish),
        )
}

/// What the approver sees of a request.
pub(crate) fn request_view(r: &RequestRecord) -> Value {
    json!({
        "request_id": r.request_id,
        "client_id": r.statement.client_id,
        "binding_message": r.statement.binding_message,
        // For people: the action in one line, and what the agent's note mentions that the
        // action does not contain (amounts, currencies, IBANs, names).
        "summary": crate::action::summary(&r.statement.authorization_details),
        "note_mismatches": crate::action::note_mismatches(
            &r.statement.binding_message,
            &r.statement.authorization_details,
        ),
        "scope": r.statement.scope,
        "authorization_details": r.statement.authorization_details,
        "requested_at": r.statement.requested_at,
        "expires_at": r.statement.expires_at,
        "status": effective_status(r),
        // Who may decide and how many must approve; who approved so far (for a request under a
        // policy rule with a quorum, the count the inbox shows).
        "approvers": r.statement.eligible_approvers(),
        "quorum": r.statement.quorum(),
        "rule": r.statement.policy.as_ref().and_then(|p| p.rule.as_ref()),
        "approvals": r.approvals.iter()
            .chain(r.decision.as_ref().filter(|_| r.status == RequestStatus::Approved))
            .map(|d| json!({"approver_id": r.decider(d), "log_index": d.index}))
            .collect::<Vec<_>>(),
        "decision": r.decision.as_ref().map(|d| json!({
            "log_index": d.index,
            "leaf_hash": d.leaf_hash,
            "statement_hash": d.statement_hash,
            "decided_at": d.decided_at,
        })),
    })
}

/// Status with expiry applied (a pending request past its expiry is expired).
pub(crate) fn effective_status(r: &RequestRecord) -> RequestStatus {
    request::effective_status(r, now_secs())
}

/// The approver's open requests, newest first.
pub(crate) async fn open_requests(
    c: &Approvals,
    approver_id: &str,
) -> Result<Vec<RequestRecord>, ApiError> {
    let mut out = Vec::new();
    let mut stale = Batch::new();
    for (k, rid) in c.store.pending_of(approver_id, 500) {
        let r = c
            .store
            .request_by_public_id(&rid)
            .await?
            .map(|(_, r)| r)
            .filter(|r| r.statement.is_eligible(approver_id));
        match r.as_ref().map(effective_status) {
            // One this approver approved waits for the others: it is in their history now.
            Some(RequestStatus::Pending)
                if !r.as_ref().is_some_and(|r| r.has_approved(approver_id)) =>
            {
                out.extend(r)
            }
            // Being decided: not shown, but kept (a failed decision puts it back).
            Some(RequestStatus::Deciding) => {}
            // Decided, expired or vanished: the key leaves the pending index here, so the inbox
            // never fills its 500-entry window with requests nobody can decide any more. Such a
            // request never becomes decidable again, so this needs no lock, nor durability (a
            // lost deletion is made again next time).
            _ => {
                stale.delete(k);
            }
        }
    }
    c.store.commit_in_background(stale);
    out.sort_by_key(|r| std::cmp::Reverse(r.statement.requested_at));
    Ok(out)
}

async fn inbox(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session_of(c, &headers).await.ok_or_else(unauthorized)?;
    let list: Vec<Value> = open_requests(c, &session.approver_id)
        .await?
        .iter()
        .map(request_view)
        .collect();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"approver_id": session.approver_id, "requests": list, "now": now_secs()})),
    )
        .into_response())
}

fn request_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such request")
}

/// The record key of a request by public id.
async fn request_key_of(c: &Approvals, request_id: &str) -> Result<String, ApiError> {
    if request_id.len() > 64 {
        return Err(request_not_found());
    }
    let h = c
        .store
        .get_raw(&CibaStore::public_id_key(request_id))
        .await?
        .ok_or_else(request_not_found)?;
    Ok(CibaStore::record_key_of(&String::from_utf8_lossy(&h)))
}

/// The approver's own request by public id; another approver's is "not found".
pub(crate) async fn own_request(
    c: &Approvals,
    approver_id: &str,
    request_id: &str,
) -> Result<(String, RequestRecord), ApiError> {
    if request_id.len() > 64 {
        return Err(request_not_found());
    }
    let (key, r) = c
        .store
        .request_by_public_id(request_id)
        .await?
        .ok_or_else(request_not_found)?;
    if !r.statement.is_eligible(approver_id) {
        return Err(request_not_found());
    }
    Ok((key, r))
}

async fn request_detail(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
) -> Result<Response, ApiError> {
    let session = session_of(c, &headers).await.ok_or_else(unauthorized)?;
    let (_, r) = own_request(c, &session.approver_id, &request_id).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(request_view(&r)),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideStart {
    decision: String,
}

fn parse_decision(s: &str) -> Result<Decision, ApiError> {
    Decision::parse(s).ok_or_else(|| ApiError::invalid_request("decision must be approve or deny"))
}

fn nonce_of(r: &RequestRecord) -> Result<[u8; 32], ApiError> {
    r.nonce_bytes()
        .ok_or_else(|| ApiError::internal("request record", "nonce is not 32 bytes"))
}

async fn decide_start(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
    body: Body,
) -> Result<Response, ApiError> {
    let (session, approver) = change_session_and_approver(c, &headers).await?;
    let b: DecideStart = body.declared_json(&headers)?;
    let decision = parse_decision(&b.decision)?;
    let (_, r) = own_request(c, &session.approver_id, &request_id).await?;
    check_decidable(&r)?;
    request::check_approver(&r, &session.approver_id).map_err(transition_error)?;
    let st = r.statement_for(decision);
    let canonical = st
        .canonical_json()
        .map_err(|e| ApiError::internal("statement", e))?;
    let hash = countersign_verifier::sha256(&canonical);
    let ch = challenge(&nonce_of(&r)?, &hash);
    let policy = c.log.policy();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "statement": st,
            "statement_canonical": String::from_utf8_lossy(&canonical),
            "statement_hash": hex::encode(hash),
            "nonce": r.nonce,
            "publicKey": {
                "challenge": B64URL.encode(ch),
                "timeout": CEREMONY_TTL.as_millis() as u64,
                "rpId": policy.rp_id,
                "allowCredentials": approver.credentials.iter().map(|cr| json!({
                    "type": "public-key", "id": cr.credential_id,
                })).collect::<Vec<_>>(),
                "userVerification": if policy.require_user_verification || r.require_uv { "required" } else { "preferred" },
            },
        })),
    )
        .into_response())
}

fn check_decidable(r: &RequestRecord) -> Result<(), ApiError> {
    request::check_decidable(r, now_secs()).map_err(transition_error)
}

/// The answer to a request that cannot be decided where it stands.
fn transition_error(e: TransitionError) -> ApiError {
    let (status, code) = match e {
        TransitionError::Expired => (StatusCode::GONE, "expired"),
        TransitionError::InProgress => (StatusCode::CONFLICT, "in_progress"),
        TransitionError::AlreadyDecided => (StatusCode::CONFLICT, "already_decided"),
        TransitionError::AlreadyApproved => (StatusCode::CONFLICT, "already_approved"),
        TransitionError::NotEligible => return request_not_found(),
        // Not reachable from a decision's claim; and a record that does not encode is ours.
        _ => return ApiError::internal("decision", e),
    };
    ApiError::new(status, code, e.to_string())
}

/// A refused decision is logged at WARN with its request (a cloned authenticator, a forged or
/// replayed signature are what an operator must hear about) and counted by reason.
fn refused(c: &Approvals, request_id: &str, approver_id: &str, e: &DecideError) {
    let reason = match e {
        DecideError::Refused(a) => match a.reason() {
            Some(r) => r.code(),
            None => return,
        },
        DecideError::Replayed => "replayed",
        DecideError::Revoked => "revoked",
        _ => return,
    };
    // The error may quote what the browser sent: escaped.
    tracing::warn!(%request_id, %approver_id, reason, error = ?e.to_string(), "decision refused; nothing was logged");
    c.metrics
        .decisions_refused
        .get_or_create(&[("reason", reason)])
        .inc();
}

/// The answer to a decision that decided nothing: what happened and what to do next.
fn decide_error(e: DecideError) -> ApiError {
    match e {
        DecideError::NotFound => request_not_found(),
        DecideError::Transition(t) => transition_error(t),
        DecideError::Refused(countersign_log::AppendError::Refused {
            reason: countersign_log::RefusalReason::SignCount,
            ..
        }) => ApiError::new(
            StatusCode::FORBIDDEN,
            "sign_count",
            "your passkey's signature counter went backwards, which is what a copied (cloned) \
             passkey does. For your safety nothing was recorded. Contact your Countersign \
             operator before you approve anything else with this passkey.",
        ),
        DecideError::Refused(countersign_log::AppendError::Refused {
            reason: countersign_log::RefusalReason::TooLate,
            ..
        }) => transition_error(TransitionError::Expired),
        DecideError::Revoked
        | DecideError::Refused(countersign_log::AppendError::Refused {
            reason: countersign_log::RefusalReason::Revoked,
            ..
        }) => passkey_revoked(),
        DecideError::Refused(e) => append_error("decision", e),
        DecideError::Replayed => ApiError::new(
            StatusCode::CONFLICT,
            "replayed_assertion",
            "this signature was already used, so nothing was recorded. Reload the page and \
             decide again.",
        ),
        DecideError::Storage(e) => ApiError::from(e),
        DecideError::RuleRequirement(why) => {
            ApiError::new(StatusCode::FORBIDDEN, "policy_requirement", why)
        }
        other => ApiError::internal("decision", other),
    }
}

/// The answer to a decision made with a revoked passkey: nothing was recorded, and why.
fn passkey_revoked() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "passkey_revoked",
        "this passkey was revoked (or your approver account disabled), so it can no longer \
         approve or deny anything, and nothing was recorded. Use another of your passkeys, or \
         ask your Countersign operator for a new enrolment link.",
    )
}

#[derive(Deserialize)]
struct DecideFinish {
    decision: String,
    credential: AssertionCredential,
}

async fn decide_finish(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
    body: Body,
) -> Result<Response, ApiError> {
    // The session's approver record, read once and enabled.
    let (session, approver) = change_session_and_approver(c, &headers).await?;
    let b: DecideFinish = body.declared_json(&headers)?;
    let decision = parse_decision(&b.decision)?;
    let a = b.credential.bytes()?;
    let cred_b64 = B64URL.encode(&a.credential_id);
    let Some(cred) = approver
        .credentials
        .iter()
        .find(|cr| cr.credential_id == cred_b64)
        .cloned()
    else {
        // One of this approver's, revoked: say so, rather than "not yours".
        let revoked = match c.log.enrolment_of(&a.credential_id).await? {
            Some((index, e)) if e.approver_id == session.approver_id => {
                c.log.revocation_of(index).await?.is_some()
            }
            _ => false,
        };
        return Err(if revoked {
            passkey_revoked()
        } else {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "this passkey is not one of yours",
            )
        });
    };
    let key = request_key_of(c, &request_id).await?;
    let decided = decision::decide(
        c.clone(),
        DecideRequest {
            key,
            approver_id: session.approver_id.clone(),
            decision,
            credential: cred,
            assertion: a,
        },
    )
    .await
    .map_err(|e| {
        refused(c, &request_id, &session.approver_id, &e);
        decide_error(e)
    })?;
    let (r, rec, appended) = (decided.request, decided.record, decided.appended);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "request_id": r.request_id,
            "decision": decision.as_str(),
            // `pending` while an approval waits for the rest of its quorum.
            "status": r.status,
            "approvals": r.decisions().filter(|_| decision == Decision::Approve).count(),
            "quorum": r.statement.quorum(),
            "log_index": rec.index,
            "leaf_hash": rec.leaf_hash,
            "statement_hash": rec.statement_hash,
            "tree_size": appended.tree_size,
            "checkpoint": &*appended.checkpoint,
            "evidence_url": format!("{}/approve/requests/{}/evidence", c.config.public_url, r.request_id),
        })),
    )
        .into_response())
}
