//! WebAuthn ceremonies of the approval front end, as start/finish pairs with server-held state
//! ([`ceremony`]): passkey enrolment behind a one-time link ([`enrolment`]) and approver sign-in
//! ([`signin`], [`session`]), and passkey revocation ([`revocation`]). The decision ceremony is
//! the inbox's ([`crate::inbox`]).
//!
//! Options and responses use the JSON shapes of `webauthn-rs-proto`
//! (`CreationChallengeResponse`, `RegisterPublicKeyCredential`, `RequestChallengeResponse`,
//! `PublicKeyCredential`), base64url without padding. Every check is the verifier crate's
//! (`verify_registration`, `verify_assertion`); a decision is verified once more by
//! [`countersign_log::LogHandle::append_decision`] before it is logged, so nothing is logged for an
//! assertion that does not hold.

pub mod ceremony;
pub mod enrolment;
pub mod revocation;
pub mod session;
pub mod signin;

use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub use ceremony::{Ceremonies, CEREMONY_TTL};
pub use session::{sweep_sessions, Session, Sessions, SESSION_COOKIE};

use crate::decision::AssertionBytes;
use crate::state::Approvals;
use crate::store::ApproverRecord;
use crate::util::B64URL;
use crate::web::RouterState;
use countersign_log::ApiError;

/// The ceremonies' routes (enrolment, sign-in, sign-out).
pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route("/v1/enrol/start", post(enrolment::enrol_start))
        .route("/v1/enrol/finish", post(enrolment::enrol_finish))
        .route("/v1/session/start", post(signin::signin_start))
        .route("/v1/session/finish", post(signin::signin_finish))
        .route("/v1/session/logout", post(signin::logout))
}

/// The answer when [`ceremony::Ceremonies::start`] refuses.
pub(crate) fn busy(e: ceremony::TooManyCeremonies) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()).retry_after(1)
}

pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session of a page request (GET: no CSRF check needed, nothing changes).
pub(crate) async fn session_of(c: &Approvals, headers: &HeaderMap) -> Option<Session> {
    session_and_approver(c, headers).await.map(|(s, _)| s)
}

/// The session of a page request and its (enabled) approver's record.
async fn session_and_approver(
    c: &Approvals,
    headers: &HeaderMap,
) -> Option<(Session, ApproverRecord)> {
    let (s, a) = c
        .sessions
        .get_with_approver(&c.store, cookie_value(headers, SESSION_COOKIE)?)
        .await?;
    // A disabled approver's sessions, and those made before a passkey's revocation, are
    // dropped then; the record decides, so neither a cache nor a restart brings one back.
    match a {
        Some(a) if !a.disabled && s.created_ms > a.sessions_not_before_ms => Some((s, a)),
        _ => None,
    }
}

pub(crate) fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "login_required",
        "sign in with your passkey first",
    )
}

/// The session of a state-changing request. CSRF defence in depth: the cookie is
/// `SameSite=Strict`, the body must be JSON (a cross-site form cannot send it without a
/// preflight), and the per-session CSRF token must come back in `X-CSRF-Token`.
pub(crate) async fn session_for_change(
    c: &Approvals,
    headers: &HeaderMap,
) -> Result<Session, ApiError> {
    change_session_and_approver(c, headers)
        .await
        .map(|(s, _)| s)
}

/// [`session_for_change`] with the approver's record.
pub(crate) async fn change_session_and_approver(
    c: &Approvals,
    headers: &HeaderMap,
) -> Result<(Session, ApproverRecord), ApiError> {
    let (s, approver) = session_and_approver(c, headers)
        .await
        .ok_or_else(unauthorized)?;
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bool::from(sent.as_bytes().ct_eq(s.csrf.expose().as_bytes())) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "the page is out of date; reload it and try again",
        ));
    }
    Ok((s, approver))
}

pub(crate) fn b64(name: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    B64URL
        .decode(s.trim_end_matches('='))
        .map_err(|_| ApiError::invalid_request(format!("{name} is not base64url")))
}

pub(crate) fn append_error(what: &str, e: countersign_log::AppendError) -> ApiError {
    match e {
        countersign_log::AppendError::Refused { reason, detail } => {
            // The detail may quote what the browser sent (an origin, a type): escaped.
            tracing::info!(code = reason.code(), ?detail, "{what} refused by the log");
            countersign_log::AppendError::Refused { reason, detail }.into()
        }
        // Nothing acknowledged, and a retry may succeed: said as such (503 with Retry-After).
        e @ (countersign_log::AppendError::QueueFull
        | countersign_log::AppendError::ShuttingDown
        | countersign_log::AppendError::NotWitnessed { .. }
        | countersign_log::AppendError::Unavailable
        | countersign_log::AppendError::NotPublished { .. }) => {
            tracing::warn!(error = ?e, "{what}: the log could not acknowledge it");
            e.into()
        }
        other => ApiError::internal(what, format!("{other:?}")),
    }
}

#[derive(Deserialize)]
pub(crate) struct AssertionResponse {
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    signature: String,
}

#[derive(Deserialize)]
pub(crate) struct AssertionCredential {
    #[serde(rename = "rawId")]
    raw_id: String,
    #[serde(rename = "type")]
    type_: String,
    response: AssertionResponse,
}

impl AssertionCredential {
    pub(crate) fn bytes(&self) -> Result<AssertionBytes, ApiError> {
        if self.type_ != "public-key" {
            return Err(ApiError::invalid_request(
                "credential type must be public-key",
            ));
        }
        Ok(AssertionBytes {
            credential_id: b64("rawId", &self.raw_id)?,
            authenticator_data: b64("authenticatorData", &self.response.authenticator_data)?,
            client_data_json: b64("clientDataJSON", &self.response.client_data_json)?,
            signature: b64("signature", &self.response.signature)?,
        })
    }
}
