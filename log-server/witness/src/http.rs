//! The HTTP layer: `POST /add-checkpoint` (c2sp.org/tlog-witness), `GET /checkpoint/<origin>`
//! (the latest cosigned checkpoint, for monitors) and `GET /health`. Statuses are assigned here
//! and only here.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::request::MAX_REQUEST_BYTES;
use crate::witness::{AddError, Witness};

/// `text/x.tlog.size`, the content type of a 409 answer (tlog-witness).
pub const TLOG_SIZE: &str = "text/x.tlog.size";
const TEXT: &str = "text/plain; charset=utf-8";

/// The witness's routes, at the root: the submission and monitoring prefixes are both the
/// server's root URL.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/checkpoint/{*origin}", get(latest))
        .route("/health", get(health))
        .with_state(witness)
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, TEXT)], body).into_response()
}

/// The one place statuses are chosen (c2sp.org/tlog-witness, "add-checkpoint").
fn refusal(e: &AddError) -> Response {
    let status = match e {
        AddError::Malformed(_) | AddError::OldSizeAfterSize => StatusCode::BAD_REQUEST,
        AddError::UnknownLog { .. } => StatusCode::NOT_FOUND,
        AddError::BadSignature(_) => StatusCode::FORBIDDEN,
        // The body is the size for both 409s, so a client reads one format; for a root
        // mismatch it equals the checkpoint's size, which tells the client it is a fork.
        AddError::StaleOldSize { size } | AddError::RootMismatch { size } => {
            return (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, TLOG_SIZE)],
                format!("{size}\n"),
            )
                .into_response()
        }
        AddError::Inconsistent(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AddError::Storage(detail) => {
            tracing::error!(%detail, "add-checkpoint failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    text(status, format!("{e}\n"))
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Body) -> Response {
    let Ok(body) = to_bytes(body, MAX_REQUEST_BYTES).await else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("malformed request: the body is unreadable or larger than {MAX_REQUEST_BYTES} bytes\n"),
        );
    };
    match tokio::task::spawn_blocking(move || w.add_checkpoint(&body)).await {
        Ok(Ok(lines)) => text(StatusCode::OK, lines),
        Ok(Err(e)) => refusal(&e),
        Err(e) => {
            tracing::error!(error = %e, "add-checkpoint task failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n".into())
        }
    }
}

async fn latest(State(w): State<Arc<Witness>>, Path(origin): Path<String>) -> Response {
    // The log's lock may be held through an fsync: wait for it off the async workers.
    let o = origin.clone();
    match tokio::task::spawn_blocking(move || w.latest(&o)).await {
        Ok(Some(note)) => text(StatusCode::OK, note),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no cosigned checkpoint for log {origin:?}\n"),
        ),
    }
}

async fn health(State(w): State<Arc<Witness>>) -> Response {
    text(StatusCode::OK, format!("ok {}\n", w.verifier().to_vkey()))
}
