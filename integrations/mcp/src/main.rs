//! `countersign-mcp`: an MCP server (stdio by default, streamable HTTP at `/mcp` with `--http`)
//! whose tools ask a person to approve an agent's action through a Countersign server
//! (OpenID CIBA, poll mode) and verify the evidence of the decision with
//! `countersign-verifier`, in process.
//!
//! Layering: the verifier crate and the server's public HTTP API only; nothing of the server's
//! crates. It fails closed: only an access token that verifies against the server's JWKS and
//! approves exactly the requested `authorization_details` is reported as `approved`.

mod ciba;
mod config;
mod evidence;
mod jwt;
mod outcome;
mod server;
mod tools;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt;

use crate::config::{Args, SECRET_ENV};
use crate::server::{Handler, Shared};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Standard output is the MCP channel in stdio mode: every log line goes to standard error.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // A log line that cannot be written is dropped, not reported with a panicking
        // `eprintln!` (as in the `countersign` binary).
        .log_internal_errors(false)
        .init();
    let http = args.http;
    let allowed_hosts = args.allowed_hosts.clone();
    let cfg = args.into_config(std::env::var(SECRET_ENV).ok())?;
    tracing::info!(url = %cfg.url, client_id = %cfg.client_id, "countersign-mcp starting");
    let cs = ciba::Countersign::new(cfg).context("HTTP client")?;
    let shared = Shared::new(cs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        match http {
            None => serve_stdio(shared).await,
            Some(addr) => serve_http(shared, addr, allowed_hosts).await,
        }
    })
}

async fn serve_stdio(shared: Arc<Shared>) -> anyhow::Result<()> {
    let running = Handler::new(shared)
        .serve(rmcp::transport::stdio())
        .await
        .context("MCP initialisation over stdio")?;
    running.waiting().await.context("MCP stdio session")?;
    Ok(())
}

async fn serve_http(
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    allowed_hosts: Vec<String>,
) -> anyhow::Result<()> {
    let mut config = StreamableHttpServerConfig::default();
    if !allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(allowed_hosts);
    }
    let cancel = config.cancellation_token.clone();
    let service: StreamableHttpService<Handler, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Handler::new(shared.clone())),
        Default::default(),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr().context("bound address")?;
    // Tests and scripts read this line to learn the port (--http 127.0.0.1:0).
    eprintln!("countersign-mcp: listening on http://{bound}/mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            cancel.cancel();
        })
        .await
        .context("HTTP server")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
