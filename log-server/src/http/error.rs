//! The one HTTP error of every Countersign API: `{"error": code, "error_description": text}`
//! (the shape of RFC 6749 section 5.2 and OpenID CIBA Core section 13) with
//! `Cache-Control: no-store`. Every typed error of the log is given its HTTP status here, and
//! the approval front end answers with the same type.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{AppendError, RefusalReason, StorageError};
use crate::proofs::ProofRequestError;

/// An error answer. `description` is public: it never carries a secret or an internal detail
/// (those go to `tracing`, see [`ApiError::internal`]).
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The machine-readable code (`error`).
    pub code: &'static str,
    /// What was wrong, in words the caller can act on (`error_description`).
    pub description: String,
    /// Seconds for `Retry-After`, on 503s.
    pub retry_after: Option<u32>,
    /// Whether to send `WWW-Authenticate: Basic` (401s of OAuth clients, RFC 6749 5.2).
    pub www_authenticate: bool,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            description: description.into(),
            retry_after: None,
            www_authenticate: false,
        }
    }

    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    /// A 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::bad_request("invalid_request", description)
    }

    /// A 404 `not_found`.
    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", description)
    }

    /// A 401 `invalid_token` (bearer tokens: admin, submitter).
    pub fn unauthorized(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }

    /// A 401 `invalid_client` with a `WWW-Authenticate: Basic` challenge (OAuth clients).
    pub fn invalid_client(description: impl Into<String>) -> Self {
        ApiError {
            www_authenticate: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }

    /// A failure of ours: the details go to the log, the caller learns only that it failed and
    /// that nothing was approved.
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server could not complete the request; nothing was approved",
        )
    }

    /// The same error with `Retry-After: secs`.
    pub fn retry_after(self, secs: u32) -> Self {
        ApiError {
            retry_after: Some(secs),
            ..self
        }
    }

    /// A request refused before it reached the log (it did not parse), as the log's own
    /// refusal, so a batch answers it in its place like any other.
    pub fn into_refusal(self) -> AppendError {
        AppendError::refused(RefusalReason::InvalidRequest, self.description)
    }
}

/// The HTTP status of a refusal.
fn refusal_status(reason: RefusalReason) -> StatusCode {
    match reason {
        RefusalReason::UnknownEnrolment | RefusalReason::UnknownCredential => StatusCode::NOT_FOUND,
        RefusalReason::CredentialConflict
        | RefusalReason::TooLate
        | RefusalReason::Revoked
        | RefusalReason::AlreadyRevoked => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage error while serving a request");
        if let StorageError::Unavailable(_) = e {
            // The shared driver's database is down or restarting: nothing was changed.
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is unavailable; nothing was changed; retry",
            )
            .retry_after(2);
        }
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "storage failed",
        )
    }
}

impl From<ProofRequestError> for ApiError {
    fn from(e: ProofRequestError) -> Self {
        match e {
            ProofRequestError::OutOfRange(what) => ApiError::bad_request("out_of_range", what),
            ProofRequestError::Storage(e) => e.into(),
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Refused { reason, detail } => {
                ApiError::new(refusal_status(reason), reason.code(), detail)
            }
            AppendError::QueueFull => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                "the append queue is full; retry later",
            )
            .retry_after(1),
            AppendError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the log is shutting down; nothing was appended",
            )
            .retry_after(5),
            AppendError::NotWitnessed { index } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_witnessed",
                format!(
                    "entry {index} is logged, but no checkpoint covering it has reached the \
                     witness quorum yet; retry (the same leaf is returned)"
                ),
            )
            .retry_after(5),
            AppendError::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the log's database is unavailable; nothing was appended; retry",
            )
            .retry_after(2),
            // The reason (a bucket's address, a database error) is for the operator's log.
            AppendError::NotPublished { index, .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_published",
                format!(
                    "entry {index} is sequenced, but no checkpoint covering it is published \
                     yet; nothing is acknowledged; retry (the same leaf is returned)"
                ),
            )
            .retry_after(2),
            // Storage, and any kind added later: fail closed.
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_failed",
                "the log could not store the entry; nothing was appended",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code, "error_description": self.description}));
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.www_authenticate {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"countersign\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_refusal_is_a_client_error_with_its_code() {
        for (reason, status) in [
            (RefusalReason::UnknownEnrolment, 404),
            (RefusalReason::UnknownCredential, 404),
            (RefusalReason::CredentialConflict, 409),
            (RefusalReason::Revoked, 409),
            (RefusalReason::AlreadyRevoked, 409),
            (RefusalReason::InvalidAssertion, 400),
            (RefusalReason::SignCount, 400),
        ] {
            let e = ApiError::from(AppendError::refused(reason, "x"));
            assert_eq!((e.status.as_u16(), e.code), (status, reason.code()));
        }
        let e = ApiError::from(AppendError::Storage);
        assert_eq!((e.status.as_u16(), e.code), (500, "storage_failed"));
        let r = ApiError::from(AppendError::QueueFull).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}

#[cfg(test)]
mod status_tests;
