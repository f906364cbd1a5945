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
pub use extract::{bearer, Admin, AdminAuth, Body, PathParam, Peer};
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

/// Limits on the connections and requests a server accepts: what a slow or abusive client can
/// hold. Every one is a bound on memory or on a task a client could otherwise keep for ever.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Connections open at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slow headers hold a connection).
    pub header_timeout: std::time::Duration,
    /// Time a request may take to be answered, its body included (408 after it). A streamed
    /// answer (the live inbox) is counted only until its headers are sent.
    pub request_timeout: std::time::Duration,
    /// Time a client has to send a request's body once the handler reads it (408 after it).
    pub body_timeout: std::time::Duration,
    /// Time in-flight connections get to finish at shutdown before they are closed.
    pub shutdown_grace: std::time::Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        use std::time::Duration;
        ServeLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` (the log's router, with whatever the binary merged into it) on `listener`
/// with the default [`ServeLimits`] until `shutdown` resolves, then lets in-flight requests
/// finish and the sequencer commit everything queued before it stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    log: LogHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, log, ServeLimits::default(), shutdown).await
}

/// [`serve`] with the given limits. Each request carries the peer's address as
/// [`axum::extract::ConnectInfo`]`<SocketAddr>` (for limits per source).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    log: LogHandle,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, app, log, limits, None, shutdown).await
}

/// [`serve_with`], over TLS when `tls` is given: every accepted connection is a TLS server
/// connection made with it (its certificate resolver is asked at each handshake, so a resolver
/// that swaps certificates changes what new connections see). A connection that does not
/// complete its handshake within `limits.header_timeout` is closed, as slow headers are.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    log: LogHandle,
    limits: ServeLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let result = accept_loop(listener, app, limits, tls, shutdown).await;
    log.shutdown().await;
    if let Some(w) = log.witnessing() {
        w.stop().await;
    }
    // Nothing more will be appended: write the memtables out so the next start is quick.
    let Some(store) = log.store().cloned() else {
        return result;
    };
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

/// Accepts connections (at most `limits.max_connections` open) and serves each over HTTP/1.1
/// until `shutdown`; then stops accepting and gives open connections
/// `limits.shutdown_grace` to finish.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServeLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use std::sync::Arc;
    use tower::ServiceExt as _;
    let app = app
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin (as
                    // axum::serve does); a reset before accept is not worth a pause.
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset) {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are small and each is written whole: send them at once rather than let
        // Nagle's algorithm hold one back behind an unacknowledged segment.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let svc =
            app.clone()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                });
        let svc = hyper_util::service::TowerToHyperService::new(svc);
        let Some(acceptor) = tls.clone() else {
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                drop(permit);
            });
            continue;
        };
        // The handshake runs in the connection's own task: a slow client must not hold up the
        // accept loop, and it holds its permit like any open connection.
        let (http, watcher) = (http.clone(), graceful.watcher());
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                // A plain-HTTP client, a scanner, a client that does not trust the certificate.
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake not completed in time"),
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = limits.shutdown_grace.as_secs_f64(),
            "connections still open after the shutdown grace period are closed"
        );
    }
    Ok(())
}
