//! The write API: enrolments and revocations (admin) and signed decisions (submitters), one at
//! a time or in batches, each answered once a signed checkpoint covers it.

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use countersign_verifier::Decision;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::log::{DecisionRequest, EnrolmentRequest, RevocationRequest};
use crate::sequencer::Appended;

use super::error::ApiError;
use super::extract::{bearer, Admin, Body};
use super::json::*;
use super::state::LogApi;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolmentBody {
    approver_id: String,
    credential_id: String,
    public_key: String,
    aaguid: String,
    attestation_format: String,
    /// SHA-256 of the root the submitter's own attestation check led to (hex); absent: the
    /// attestation is recorded as not verified.
    #[serde(default)]
    trust_anchor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationBody {
    approver_id: String,
    credential_id: String,
    enrolment_index: u64,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
    statement_hash: String,
    nonce: String,
    approver_id: String,
    credential_id: String,
    authenticator_data: String,
    client_data_json: String,
    signature: String,
    enrolment_index: u64,
}

async fn appended_response(s: &LogApi, a: Appended, started: Instant) -> ApiResult<Response> {
    let proof = s.log.inclusion_proof(a.index, a.tree_size).await?;
    s.log
        .metrics()
        .append_latency
        .observe(started.elapsed().as_secs_f64());
    let status = if a.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(InclusionBody {
            index: a.index,
            tree_size: a.tree_size,
            leaf_hash: HexHash(&a.leaf_hash),
            inclusion_proof: HexList(&proof),
            checkpoint: Some(&a.checkpoint),
            existing: Some(a.existing),
        }),
    )
        .into_response())
}

pub(super) async fn post_enrolment(
    State(s): State<LogApi>,
    _: Admin,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    let b: EnrolmentBody = body.json()?;
    let req = EnrolmentRequest {
        approver_id: b.approver_id,
        credential_id: hex_field("credential_id", &b.credential_id)?,
        public_key: hex_field("public_key", &b.public_key)?,
        aaguid: hex_array("aaguid", &b.aaguid)?,
        attestation_format: b.attestation_format,
        attestation: match &b.trust_anchor {
            Some(t) => countersign_verifier::AttestationRecord::Verified {
                trust_anchor: hex_array("trust_anchor", t)?,
            },
            None => countersign_verifier::AttestationRecord::Unverified,
        },
    };
    let a = s.log.append_enrolment(req).await?;
    let a = s.log.await_witnessed(a).await?;
    appended_response(&s, a, started).await
}

/// `POST /v1/log/revocations` (admin): logs the revocation of an enrolment, as
/// [`crate::LogHandle::append_revocation`].
pub(super) async fn post_revocation(
    State(s): State<LogApi>,
    _: Admin,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    let b: RevocationBody = body.json()?;
    let req = RevocationRequest {
        approver_id: b.approver_id,
        credential_id: hex_field("credential_id", &b.credential_id)?,
        enrolment_index: b.enrolment_index,
        reason: b.reason,
    };
    let a = s.log.append_revocation(req).await?;
    let a = s.log.await_witnessed(a).await?;
    appended_response(&s, a, started).await
}

/// The submitter token must name a live submitter.
async fn require_submitter(s: &LogApi, headers: &HeaderMap) -> ApiResult<()> {
    let t = bearer(headers).ok_or(ApiError::unauthorized("missing bearer token"))?;
    if s.log.submitter_for(&t).await?.is_none() {
        return Err(ApiError::unauthorized(
            "the bearer token is not a submitter token",
        ));
    }
    Ok(())
}

fn decision_request(b: DecisionBody) -> ApiResult<DecisionRequest> {
    let decision = Decision::parse(&b.decision).ok_or_else(|| {
        ApiError::bad_request("invalid_request", "decision must be approve or deny")
    })?;
    Ok(DecisionRequest {
        decision,
        statement_hash: hex_array("statement_hash", &b.statement_hash)?,
        nonce: hex_array("nonce", &b.nonce)?,
        approver_id: b.approver_id,
        credential_id: hex_field("credential_id", &b.credential_id)?,
        authenticator_data: hex_field("authenticator_data", &b.authenticator_data)?,
        client_data_json: hex_field("client_data_json", &b.client_data_json)?,
        signature: hex_field("signature", &b.signature)?,
        enrolment_index: b.enrolment_index,
        not_after_ms: None,
    })
}

pub(super) async fn post_decision(
    State(s): State<LogApi>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    require_submitter(&s, &headers).await?;
    let req = decision_request(body.json()?)?;
    let a = s.log.append_decision(req).await?;
    let a = s.log.await_witnessed(a).await?;
    appended_response(&s, a, started).await
}

/// Most decisions one `POST /v1/log/decisions/batch` may carry.
pub const MAX_BATCH_DECISIONS: usize = 256;

/// How many times the per-request body limit a batch body may be.
pub const BATCH_BODY_FACTOR: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<T> {
    decisions: Vec<T>,
}

/// A batch's decisions, each parsed on its own: one that is not a decision is refused alone.
/// Batches whose decisions all parse (the usual case) are read once, without a JSON tree.
fn batch_decisions(body: Body) -> ApiResult<Vec<ApiResult<DecisionBody>>> {
    if let Ok(b) = serde_json::from_slice::<BatchBody<DecisionBody>>(&body.0) {
        return check_batch_len(b.decisions.into_iter().map(Ok).collect());
    }
    let b: BatchBody<Value> = body.json()?;
    check_batch_len(
        b.decisions
            .into_iter()
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    ApiError::bad_request("invalid_request", format!("invalid decision: {e}"))
                })
            })
            .collect(),
    )
}

fn check_batch_len<T>(decisions: Vec<T>) -> ApiResult<Vec<T>> {
    if decisions.is_empty() || decisions.len() > MAX_BATCH_DECISIONS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("decisions must hold 1 to {MAX_BATCH_DECISIONS} decisions"),
        ));
    }
    Ok(decisions)
}

/// One decision's outcome in a batch answer.
#[derive(Serialize)]
#[serde(untagged)]
enum BatchResult<'a> {
    Logged {
        index: u64,
        leaf_hash: HexHash<'a>,
        inclusion_proof: HexList<'a>,
        existing: bool,
    },
    Refused {
        status: u16,
        error: &'static str,
        error_description: String,
    },
}

#[derive(Serialize)]
struct BatchAnswer<'a> {
    tree_size: u64,
    checkpoint: &'a str,
    logged: usize,
    refused: usize,
    results: Vec<BatchResult<'a>>,
}

/// `POST /v1/log/decisions/batch`: up to [`MAX_BATCH_DECISIONS`] decisions, each checked and
/// logged on its own exactly as by `POST /v1/log/decisions`. The answer comes once every logged
/// one is covered by a signed checkpoint, and carries that checkpoint and one result per
/// decision, in order: its index, leaf hash and inclusion proof against the checkpoint, or its
/// error (nothing was written for it).
pub(super) async fn post_decision_batch(
    State(s): State<LogApi>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    require_submitter(&s, &headers).await?;
    // A decision that does not parse is refused on its own, like one that fails a check.
    let reqs = batch_decisions(body)?
        .into_iter()
        .map(|b| b.and_then(decision_request).map_err(ApiError::into_refusal))
        .collect();
    let outcomes: Vec<Result<Appended, ApiError>> = s
        .log
        .append_decisions(reqs)
        .await
        .into_iter()
        .map(|r| r.map_err(ApiError::from))
        .collect();
    // Every logged decision's checkpoint is at most the published one, so one checkpoint
    // covers them all and every proof is against it. In witness quorum mode, that checkpoint is
    // one the quorum cosigned, covering the last of them.
    let published = s.log.published();
    let (mut size, mut note) = (published.size, published.note);
    let last = outcomes.iter().flatten().max_by_key(|a| a.index).cloned();
    if let Some(a) = last.filter(|_| s.log.quorum_timeout().is_some()) {
        let w = s.log.await_witnessed(a).await?;
        (size, note) = (w.tree_size, w.checkpoint);
    }
    let mut proofs = Vec::with_capacity(outcomes.len());
    for o in &outcomes {
        proofs.push(match o {
            Ok(a) => s.log.inclusion_proof(a.index, size).await?,
            Err(_) => Vec::new(),
        });
    }
    let mut retry_after = None;
    let results: Vec<BatchResult> = outcomes
        .iter()
        .zip(&proofs)
        .map(|(o, proof)| match o {
            Ok(a) => BatchResult::Logged {
                index: a.index,
                leaf_hash: HexHash(&a.leaf_hash),
                inclusion_proof: HexList(proof),
                existing: a.existing,
            },
            Err(e) => {
                retry_after = retry_after.max(e.retry_after);
                BatchResult::Refused {
                    status: e.status.as_u16(),
                    error: e.code,
                    error_description: e.description.clone(),
                }
            }
        })
        .collect();
    let logged = outcomes.iter().filter(|o| o.is_ok()).count();
    let elapsed = started.elapsed().as_secs_f64();
    for _ in 0..logged {
        s.log.metrics().append_latency.observe(elapsed);
    }
    let mut resp = Json(BatchAnswer {
        tree_size: size,
        checkpoint: &note,
        logged,
        refused: results.len() - logged,
        results,
    })
    .into_response();
    if let Some(r) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(r));
    }
    Ok(resp)
}
