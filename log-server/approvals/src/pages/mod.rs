//! Approval pages: server-rendered HTML with a little plain JavaScript (no build step).
//!
//! `/approve` (passkey sign-in, then the live inbox), `/approve/requests/<id>` (what the agent
//! asks, the canonical statement and its hash recomputed in the browser, time left, Approve and
//! Deny), `/enrol/<token>` (passkey enrolment), `/approve/events` (server-sent events for the
//! inbox). Every value shown is HTML-escaped; pages carry a strict Content-Security-Policy (no
//! inline script) and may not be framed.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use crate::inbox::{effective_status, open_requests, own_request};
use crate::passkeys::session_of;
use crate::state::Approvals;
use crate::store::RequestStatus;
use crate::util::now_secs;
use crate::web::RouterState;
use countersign_log::http::PathParam;
use countersign_log::ApiError;

const APP_JS: &str = include_str!("app.js");
/// Longest life of one server-sent-events response.
const SSE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(20);
const APP_CSS: &str = include_str!("app.css");

pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route("/approve", get(home))
        .route("/approve/requests/{request_id}", get(request_page))
        .route("/approve/events", get(events))
        .route("/enrol/{token}", get(enrol_page))
        .route(
            "/approve/assets/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/approve/assets/app.css",
            get(|| asset(APP_CSS, "text/css; charset=utf-8")),
        )
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

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body_attrs: &str, csrf: Option<&str>, main: &str) -> Response {
    let csrf = csrf
        .map(|t| format!("<meta name=\"csrf-token\" content=\"{}\">", esc(t)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Countersign</title>{csrf}\
         <link rel=\"stylesheet\" href=\"/approve/assets/app.css\">\
         <script src=\"/approve/assets/app.js\" defer></script></head>\
         <body {body_attrs}><header><a href=\"/approve\" class=\"brand\">Countersign</a></header>\
         <main id=\"main\">{main}</main>\
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
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
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

fn error_page(status: StatusCode, title: &str, text: &str) -> Response {
    let mut r = page(
        title,
        "data-page=\"error\"",
        None,
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p>",
            esc(title),
            esc(text)
        ),
    );
    *r.status_mut() = status;
    r
}

/// Renders `authorization_details` as nested definition lists.
fn render_value(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push_str("<dl>");
            for (k, v) in m {
                let _ = write!(out, "<dt>{}</dt><dd>", esc(k));
                render_value(v, out);
                out.push_str("</dd>");
            }
            out.push_str("</dl>");
        }
        Value::Array(a) => {
            out.push_str("<ol>");
            for v in a {
                out.push_str("<li>");
                render_value(v, out);
                out.push_str("</li>");
            }
            out.push_str("</ol>");
        }
        Value::String(s) => {
            let _ = write!(out, "<span class=\"str\">{}</span>", esc(s));
        }
        other => {
            let _ = write!(
                out,
                "<span class=\"lit\">{}</span>",
                esc(&other.to_string())
            );
        }
    }
}

async fn home(State(ref c): State<Arc<Approvals>>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(c, &headers) else {
        return page(
            "Sign in",
            "data-page=\"signin\"",
            None,
            "<h1>Sign in</h1><p>Use the passkey you enrolled to see the requests waiting for \
             you.</p><button id=\"signin\" class=\"primary\">Sign in with a passkey</button>",
        );
    };
    let list = match open_requests(c, &session.approver_id) {
        Ok(l) => l,
        Err(_) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "The inbox could not be read.",
            )
        }
    };
    let mut items = String::new();
    for r in &list {
        let _ = write!(
            items,
            "<li><a href=\"/approve/requests/{id}\"><strong>{msg}</strong><span>from {client}</span>\
             <span class=\"left\" data-expires=\"{exp}\"></span></a></li>",
            id = esc(&r.request_id),
            msg = esc(&r.statement.binding_message),
            client = esc(&r.statement.client_id),
            exp = r.statement.expires_at,
        );
    }
    if items.is_empty() {
        items.push_str("<li class=\"empty\">Nothing waiting for you.</li>");
    }
    page(
        "Inbox",
        &format!("data-page=\"inbox\" data-now=\"{}\"", now_secs()),
        Some(session.csrf.expose()),
        &format!(
            "<h1>Requests for {}</h1><ul id=\"inbox\" class=\"inbox\">{items}</ul>\
             <p><button id=\"logout\">Sign out</button></p>",
            esc(&session.approver_id)
        ),
    )
}

async fn request_page(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
) -> Response {
    let Some(session) = session_of(c, &headers) else {
        return page(
            "Sign in",
            "data-page=\"signin\"",
            None,
            "<h1>Sign in</h1><p>Sign in with your passkey to see this request.</p>\
             <button id=\"signin\" class=\"primary\">Sign in with a passkey</button>",
        );
    };
    let r = match own_request(c, &session.approver_id, &request_id) {
        Ok((_, r)) => r,
        Err(_) => {
            return error_page(
                StatusCode::NOT_FOUND,
                "No such request",
                "This request does not exist or is not addressed to you.",
            )
        }
    };
    let st = &r.statement;
    let mut details = String::new();
    render_value(&st.authorization_details, &mut details);
    let status = effective_status(&r);
    let canonical = st
        .canonical_json()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let hash = st.hash().map(hex::encode).unwrap_or_default();
    let outcome = match (status, &r.decision) {
        (RequestStatus::Pending, _) => {
            "<div class=\"actions\"><button id=\"approve\" class=\"primary\">Approve</button>\
             <button id=\"deny\" class=\"danger\">Deny</button></div>"
                .to_owned()
        }
        (RequestStatus::Approved | RequestStatus::Denied, Some(d)) => format!(
            "<section class=\"receipt\"><h2>{}</h2><p>Recorded in the log at index \
             <strong>{}</strong>.</p><p><a href=\"/approve/requests/{}/evidence\">Evidence \
             bundle</a></p></section>",
            if status == RequestStatus::Approved {
                "Approved"
            } else {
                "Denied"
            },
            d.index,
            esc(&r.request_id)
        ),
        (RequestStatus::Expired, _) => "<p class=\"error\">This request expired.</p>".to_owned(),
        _ => "<p>A decision is being recorded…</p>".to_owned(),
    };
    page(
        "Request",
        &format!(
            "data-page=\"request\" data-request=\"{}\" data-expires=\"{}\" data-now=\"{}\"",
            esc(&r.request_id),
            st.expires_at,
            now_secs()
        ),
        Some(session.csrf.expose()),
        &format!(
            "<h1>{msg}</h1>\
             <p class=\"meta\">Asked by <strong>{client}</strong> · scope <code>{scope}</code> · \
             <span class=\"left\" data-expires=\"{exp}\"></span></p>\
             <section><h2>What will be done</h2><div class=\"details\">{details}</div></section>\
             <details><summary>Exact statement you sign (canonical JSON)</summary>\
             <pre id=\"canonical\">{canon}</pre>\
             <p>SHA-256 (with decision “approve”): <code id=\"server-hash\">{hash}</code></p>\
             </details><p id=\"hash-check\" class=\"check\">Checking the statement hash in your browser…</p>\
             {outcome}<div id=\"receipt\"></div>",
            msg = esc(&st.binding_message),
            client = esc(&st.client_id),
            scope = esc(&st.scope),
            exp = st.expires_at,
            canon = esc(&canonical),
            hash = esc(&hash),
        ),
    )
}

async fn enrol_page(State(ref c): State<Arc<Approvals>>, PathParam(token): PathParam) -> Response {
    let Some(a) = crate::passkeys::enrolment::link_approver(c, &token) else {
        return error_page(
            StatusCode::GONE,
            "Link not valid",
            "This enrolment link is unknown, already used or expired. Ask your administrator for a new one.",
        );
    };
    page(
        "Enrol a passkey",
        &format!("data-page=\"enrol\" data-token=\"{}\"", esc(&token)),
        None,
        &format!(
            "<h1>Enrol a passkey</h1><p>Hello {}. Create a passkey to approve requests \
             addressed to <strong>{}</strong>. The enrolment is recorded in the public log \
             under your opaque id only.</p>\
             <button id=\"enrol\" class=\"primary\">Create passkey</button>",
            esc(a.name.as_deref().unwrap_or(&a.email)),
            esc(&a.approver_id)
        ),
    )
}

async fn events(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session_of(c, &headers).ok_or_else(|| {
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
    fn escapes_and_renders() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let mut out = String::new();
        render_value(&serde_json::json!([{"type": "<script>", "n": 1}]), &mut out);
        assert!(out.contains("&lt;script&gt;"));
        assert!(!out.contains("<script>"));
    }
}
