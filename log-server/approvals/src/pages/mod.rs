//! The web pages: server-rendered HTML with a little plain JavaScript (no build step).
//!
//! For approvers: `/approve` (passkey sign-in, then the live inbox), `/approve/requests/<id>`
//! (the action as the headline, the agent's note beneath it, the statement and its hash
//! recomputed in the browser, time left, Approve and Deny; or the receipt once decided),
//! `/approve/history` (their own decisions), `/enrol/<token>` (passkey enrolment),
//! `/approve/events` (server-sent events for the inbox). For everyone: `/` (what this server
//! is), `/verify` (an evidence bundle verified in the browser by the verifier compiled to
//! WebAssembly) and `/log` (the latest checkpoint and recent entries, each inclusion proof
//! checked in the browser). Every value shown is HTML-escaped; pages carry a strict
//! Content-Security-Policy (no inline script; WebAssembly only where the verifier runs) and may
//! not be framed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use crate::action::esc;
use crate::passkeys::session_of;
use crate::state::Approvals;
use crate::util::rfc3339;
use crate::web::RouterState;
use countersign_log::ApiError;

mod approver;
mod public;

const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON: &str = include_str!("favicon.svg");
/// Longest life of one server-sent-events response.
const SSE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(20);

pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route("/", get(public::landing))
        .route("/verify", get(public::verify_page))
        .route("/log", get(public::log_page))
        .route("/approve", get(approver::home))
        .route("/approve/history", get(approver::history))
        .route(
            "/approve/requests/{request_id}",
            get(approver::request_page),
        )
        .route("/approve/events", get(events))
        .route("/enrol/{token}", get(approver::enrol_page))
        .route(
            "/approve/assets/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/approve/assets/app.css",
            get(|| asset(APP_CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/pages.mjs",
            get(|| asset(public::PAGES_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/countersign-verifier.mjs",
            get(|| asset(public::LOADER_JS, "text/javascript; charset=utf-8")),
        )
        .route("/assets/countersign-verifier.wasm", get(public::wasm))
        .route("/favicon.svg", get(|| asset(FAVICON, "image/svg+xml")))
        // Browsers ask for /favicon.ico on their own: the same icon.
        .route("/favicon.ico", get(|| asset(FAVICON, "image/svg+xml")))
}

async fn asset(body: &'static str, ct: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A time element: RFC 3339 UTC, which the page's script shows in the reader's local time.
pub(crate) fn time_html(secs: u64) -> String {
    let t = rfc3339(secs);
    format!("<time datetime=\"{t}\">{t}</time>")
}

/// What a page loads besides the common script and style.
#[derive(Clone, Copy, Default)]
struct Extras {
    /// A module script (the verifier pages), which may instantiate WebAssembly.
    module: Option<&'static str>,
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
/// The verifier pages may compile WebAssembly (and nothing else more than the others).
const CSP_WASM: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
                        style-src 'self'; img-src 'self' data:; object-src 'none'; \
                        base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn page(title: &str, body_attrs: &str, csrf: Option<&str>, main: &str) -> Response {
    page_with(title, body_attrs, csrf, main, Extras::default())
}

fn page_with(title: &str, body_attrs: &str, csrf: Option<&str>, main: &str, x: Extras) -> Response {
    let csrf = csrf
        .map(|t| format!("<meta name=\"csrf-token\" content=\"{}\">", esc(t)))
        .unwrap_or_default();
    let module = x
        .module
        .map(|m| format!("<script type=\"module\" src=\"{m}\"></script>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Countersign</title>{csrf}\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/approve/assets/app.css\">\
         <script src=\"/approve/assets/app.js\" defer></script>{module}</head>\
         <body {body_attrs}><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><a href=\"/\" class=\"brand\">Countersign</a>\
         <nav aria-label=\"Main\"><a href=\"/approve\">Inbox</a><a href=\"/approve/history\">History</a>\
         <a href=\"/verify\">Verify</a><a href=\"/log\">Log</a></nav></header>\
         <main id=\"main\" tabindex=\"-1\">{main}</main>\
         <div id=\"status\" role=\"status\" aria-live=\"polite\"></div></body></html>",
        title = esc(title)
    );
    let mut resp = (StatusCode::OK, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if x.module.is_some() { CSP_WASM } else { CSP }),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// An error page: what happened, and what to do next.
fn error_page(status: StatusCode, title: &str, text: &str, next: &str) -> Response {
    let mut r = page(
        title,
        "data-page=\"error\"",
        None,
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p><p>{}</p>\
             <p><a href=\"/approve\">Back to your inbox</a> · <a href=\"/\">Home</a></p>",
            esc(title),
            esc(text),
            esc(next)
        ),
    );
    *r.status_mut() = status;
    r
}

/// The sign-in page shown for approver pages without a session.
fn sign_in(text: &str) -> Response {
    page(
        "Sign in",
        "data-page=\"signin\"",
        None,
        &format!(
            "<h1>Sign in</h1><p>{}</p>\
             <button id=\"signin\" class=\"primary\">Sign in with a passkey</button>\
             <p class=\"muted\">No passkey yet? Your operator sends you a one-time enrolment \
             link.</p>",
            esc(text)
        ),
    )
}

async fn events(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session_of(c, &headers).await.ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "login_required", "sign in first")
    })?;
    let rx = c.inbox.subscribe(&session.approver_id);
    // Each stream ends after a while and the browser's EventSource reconnects (and the page
    // refreshes the inbox on reconnect): an open inbox must not hold a graceful shutdown, which
    // waits for in-flight responses, for longer than that.
    let deadline = tokio::time::Instant::now() + SSE_LIFETIME;
    let stream = futures_util::stream::unfold(rx, move |mut rx| async move {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => None,
            Ok(Ok(request_id)) => {
                let e = Event::default().event("changed").data(request_id);
                Some((Ok::<_, Infallible>(e), rx))
            }
            // Missed events: tell the page to refresh everything.
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                let e = Event::default().event("changed").data("*");
                Some((Ok(e), rx))
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => None,
        }
    });
    let first = futures_util::stream::once(async {
        Ok::<_, Infallible>(
            Event::default()
                .retry(std::time::Duration::from_secs(1))
                .comment("hello"),
        )
    });
    let stream = futures_util::StreamExt::chain(first, stream);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_454_878), "2026-12-05T07:14:38Z");
        assert_eq!(
            time_html(0),
            "<time datetime=\"1970-01-01T00:00:00Z\">1970-01-01T00:00:00Z</time>"
        );
    }
}
