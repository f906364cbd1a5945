//! The log's HTTP API: C2SP tlog-tiles reads, JSON conveniences, the write API and operations.
//! Statuses are assigned here ([`ApiError`]), never in the log core.

mod error;
mod extract;
mod json;
mod ops;
mod reads;
mod state;
mod writes;

pub use error::ApiError;
pub use extract::{bearer, Admin, AdminAuth, Body, PathParam};
pub use state::{LogApi, MetricsSource};
pub use writes::{BATCH_BODY_FACTOR, MAX_BATCH_DECISIONS};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::log::LogHandle;

/// Largest request body any endpoint accepts. An entry is at most 65,535 bytes and its hex
/// form in JSON twice that, so 160 KiB leaves room for the JSON around it and no more.
pub const DEFAULT_MAX_BODY_BYTES: usize = 160 * 1024;

/// The log's router: every route of the log API and operations, and a JSON 404 for any other
/// path. Other routers are merged into it by the binary.
pub fn router(state: LogApi) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/checkpoint", get(reads::get_checkpoint))
        .route("/tile/{*path}", get(reads::get_tile))
        .route("/v1/log/enrolments", post(writes::post_enrolment))
        .route("/v1/log/revocations", post(writes::post_revocation))
        .route("/v1/log/decisions", post(writes::post_decision))
        .route(
            "/v1/log/decisions/batch",
            post(writes::post_decision_batch).layer(DefaultBodyLimit::max(
                limit.saturating_mul(writes::BATCH_BODY_FACTOR),
            )),
        )
        .route("/v1/log/proof/inclusion", get(reads::get_inclusion))
        .route("/v1/log/proof/consistency", get(reads::get_consistency))
        .route("/v1/log/entries/{index}", get(reads::get_entry))
        .route("/v1/log/vkey", get(reads::get_vkey))
        .route("/v1/log/checkpoint", get(reads::get_checkpoint))
        .route(
            "/v1/admin/submitters",
            post(ops::post_submitter).get(ops::get_submitters),
        )
        .route(
            "/v1/admin/submitters/{name}",
            axum::routing::delete(ops::delete_submitter),
        )
        .route("/v1/admin/backup", post(ops::post_backup))
        .route("/healthz", get(ops::get_healthz))
        .route("/metrics", get(ops::get_metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `app` (the log's router, with whatever the binary merged into it) on `listener`
/// until `shutdown` resolves, then lets in-flight requests finish
/// and the sequencer commit everything queued before it stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    log: LogHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Answers are small and each is written whole: send them at once rather than let Nagle's
    // algorithm hold one back behind an unacknowledged segment.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    log.sequencer().shutdown().await;
    // Nothing more will be appended: write the memtables out so the next start is quick.
    let store = log.store().clone();
    let t = std::time::Instant::now();
    match tokio::task::spawn_blocking(move || store.flush_memtables()).await {
        Ok(Ok(())) => tracing::info!(
            seconds = t.elapsed().as_secs_f64(),
            "memtables flushed; the next start need not replay the write-ahead log"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not flush memtables at shutdown; the \
                                     next start replays the write-ahead log (nothing is lost)"),
        Err(e) => tracing::warn!(error = %e, "memtable flush task failed"),
    }
    result
}
