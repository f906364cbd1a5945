//! The approver's pages: the inbox, a request (the action as the headline), the history of
//! their decisions, and passkey enrolment.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{error_page, esc, page, sign_in, time_html};
use crate::action::{has_lookalikes, note_mismatches, render, summary};
use crate::inbox::{effective_status, open_requests, own_request};
use crate::passkeys::session_of;
use crate::state::Approvals;
use crate::store::{RequestRecord, RequestStatus};
use crate::util::now_secs;
use countersign_log::http::PathParam;

/// Decisions listed on the history page.
const HISTORY_LIMIT: usize = 200;

/// The warning beside an agent's note that mentions what the action does not contain.
fn note_warning(r: &RequestRecord) -> String {
    let m = note_mismatches(
        &r.statement.binding_message,
        &r.statement.authorization_details,
    );
    if m.is_empty() {
        return String::new();
    }
    let list = m
        .iter()
        .map(|s| format!("“{}”", esc(s)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "<p class=\"warning\" role=\"alert\"><strong>Check this:</strong> the agent's note mentions \
         {list}, which the action does not contain. You sign the action, not the note: if they \
         disagree, deny.</p>"
    )
}

/// How many approvals a request under a policy rule has and needs, as a badge (empty for a
/// request one approver decides).
fn quorum_badge(r: &RequestRecord) -> String {
    let need = r.statement.quorum();
    if need < 2 {
        return String::new();
    }
    let have = r.approvals.len() as u64
        + u64::from(r.status == RequestStatus::Approved && r.decision.is_some());
    format!(
        " <span class=\"badge quorum\" data-have=\"{have}\" data-need=\"{need}\">{have} of {need} \
         approvals</span>"
    )
}

/// The quorum line of a request page: the rule, how many of whom must approve, who has.
fn quorum_line(r: &RequestRecord, viewer: &str) -> String {
    let Some(p) = &r.statement.policy else {
        return String::new();
    };
    let have: Vec<&str> = r
        .approvals
        .iter()
        .chain(
            r.decision
                .as_ref()
                .filter(|_| r.status == RequestStatus::Approved),
        )
        .map(|d| r.decider(d))
        .collect();
    let rule = match &p.rule {
        Some(name) => format!(" under the policy rule “{}”", esc(name)),
        None => String::new(),
    };
    let who = if have.is_empty() {
        "none yet".to_owned()
    } else {
        have.iter()
            .map(|a| {
                if *a == viewer {
                    "you".to_owned()
                } else {
                    format!("<code>{}</code>", esc(a))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "<p class=\"quorum\" id=\"quorum\" data-have=\"{n}\" data-need=\"{q}\"><strong>{n} of {q} \
         approvals</strong>: this request needs {q} of its {e} approvers{rule}, each with their \
         own passkey. Approved so far: {who}.</p>",
        n = have.len(),
        q = p.quorum,
        e = p.approvers.len(),
    )
}

/// One request in a list (the inbox, the history): the action, then the agent's note; `tail`
/// inside the link, `after` below it.
fn list_item(r: &RequestRecord, tail: &str, after: &str) -> String {
    let warn = if note_mismatches(
        &r.statement.binding_message,
        &r.statement.authorization_details,
    )
    .is_empty()
    {
        ""
    } else {
        " <span class=\"badge warn\">note disagrees with the action</span>"
    };
    format!(
        "<li><a href=\"/approve/requests/{id}\"><strong class=\"headline\">{summary}</strong>\
         <span class=\"note-line\">Agent's note: “{note}”{warn}</span>\
         <span class=\"muted\">from {client}</span>{quorum}{tail}</a>{after}</li>",
        quorum = quorum_badge(r),
        id = esc(&r.request_id),
        summary = esc(&summary(&r.statement.authorization_details)),
        note = esc(&r.statement.binding_message),
        client = esc(&r.statement.client_id),
    )
}

pub(super) async fn home(State(ref c): State<Arc<Approvals>>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(c, &headers).await else {
        return sign_in("Use the passkey you enrolled to see the requests waiting for you.");
    };
    let Ok(list) = open_requests(c, &session.approver_id).await else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The inbox could not be read",
            "The server could not read your requests.",
            "Reload the page in a minute; if it keeps failing, tell your operator.",
        );
    };
    let mut items = String::new();
    for r in &list {
        items.push_str(&list_item(
            r,
            &format!(
                "<span class=\"left\" data-expires=\"{}\"></span>",
                r.statement.expires_at
            ),
            "",
        ));
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
             <p><a href=\"/approve/history\">Your past decisions</a></p>\
             <p><button id=\"logout\">Sign out</button></p>",
            esc(&session.approver_id)
        ),
    )
}

/// The evidence links of a decided request: the bundle as a file, and the verify page.
fn evidence_links(request_id: &str) -> String {
    format!(
        "<a href=\"/approve/requests/{id}/evidence\" download=\"countersign-evidence-{id}.json\">\
         Download the evidence bundle</a> · <a href=\"/verify\">Verify a bundle in your browser</a>",
        id = esc(request_id)
    )
}

/// The receipt of a decided request, or its state when it cannot be decided.
fn outcome(r: &RequestRecord, status: RequestStatus, viewer: &str) -> String {
    match (status, &r.decision) {
        (RequestStatus::Pending, _) if r.has_approved(viewer) => {
            let index = r
                .approvals
                .iter()
                .find(|d| r.decider(d) == viewer)
                .map_or(0, |d| d.index);
            format!(
                "<section class=\"receipt approved\" aria-labelledby=\"receipt-h\">\
                 <h2 id=\"receipt-h\">You approved</h2><p>Your signed approval is in the public \
                 log at index <strong>{index}</strong>. The request waits for {more} more \
                 approval(s) from the other approvers; the agent gets nothing until then.</p>\
                 </section>",
                more = r.statement.quorum().saturating_sub(r.approvals.len() as u64)
            )
        }
        (RequestStatus::Pending, _) => {
            "<div class=\"actions\"><button id=\"approve\" class=\"primary\">Approve</button>\
             <button id=\"deny\" class=\"danger\">Deny</button></div>"
                .to_owned()
        }
        (RequestStatus::Approved, Some(d)) if r.statement.policy.is_some() => {
            let indexes: Vec<String> = r.decisions().map(|a| a.index.to_string()).collect();
            format!(
                "<section class=\"receipt approved\" aria-labelledby=\"receipt-h\">\
                 <h2 id=\"receipt-h\"><span aria-hidden=\"true\">✓ </span>Approved</h2>\
                 <p>This action was approved on {at} by {n} approver(s), as its policy asks. The \
                 signed approvals are in the public log at {which} <strong>{list}</strong>; the \
                 agent may now do exactly this.</p><p>{links}</p></section>",
                at = time_html(d.decided_at),
                n = indexes.len(),
                which = if indexes.len() == 1 { "index" } else { "indexes" },
                list = indexes.join(", "),
                links = evidence_links(&r.request_id)
            )
        }
        (RequestStatus::Denied, Some(d)) if r.decider(d) != viewer => format!(
            "<section class=\"receipt denied\" aria-labelledby=\"receipt-h\">\
             <h2 id=\"receipt-h\"><span aria-hidden=\"true\">✗ </span>Denied</h2>\
             <p>Another approver, <code>{who}</code>, denied this action on {at}. The signed \
             refusal is in the public log at index <strong>{index}</strong>; the agent gets no \
             token for it.</p><p>{links}</p></section>",
            who = esc(r.decider(d)),
            at = time_html(d.decided_at),
            index = d.index,
            links = evidence_links(&r.request_id)
        ),
        (RequestStatus::Approved, Some(d)) => format!(
            "<section class=\"receipt approved\" aria-labelledby=\"receipt-h\">\
             <h2 id=\"receipt-h\"><span aria-hidden=\"true\">✓ </span>Approved</h2>\
             <p>You approved this action on {at}. Your signed approval is in the public log at \
             index <strong>{index}</strong>; the agent may now do exactly this.</p><p>{links}</p></section>",
            at = time_html(d.decided_at),
            index = d.index,
            links = evidence_links(&r.request_id)
        ),
        (RequestStatus::Denied, Some(d)) => format!(
            "<section class=\"receipt denied\" aria-labelledby=\"receipt-h\">\
             <h2 id=\"receipt-h\"><span aria-hidden=\"true\">✗ </span>Denied</h2>\
             <p>You denied this action on {at}. Your signed refusal is in the public log at index \
             <strong>{index}</strong>; the agent gets no token for it.</p><p>{links}</p></section>",
            at = time_html(d.decided_at),
            index = d.index,
            links = evidence_links(&r.request_id)
        ),
        (RequestStatus::Expired, _) => format!(
            "<section class=\"receipt expired\" aria-labelledby=\"receipt-h\">\
             <h2 id=\"receipt-h\">Expired</h2><p>This request expired on {} without a decision. \
             It can no longer be approved or denied; the agent has to ask again.</p></section>",
            time_html(r.statement.expires_at)
        ),
        _ => "<section class=\"receipt\"><h2>Being recorded</h2><p>A decision on this request is \
              being recorded in the log. Reload the page in a few seconds.</p></section>"
            .to_owned(),
    }
}

fn state_line(r: &RequestRecord, status: RequestStatus, viewer: &str) -> String {
    match status {
        RequestStatus::Pending if r.has_approved(viewer) => format!(
            "<p class=\"state pending\" id=\"state\">Waiting for the other approvers · \
             <span class=\"left\" data-expires=\"{}\"></span> (expires {})</p>",
            r.statement.expires_at,
            time_html(r.statement.expires_at)
        ),
        RequestStatus::Pending => format!(
            "<p class=\"state pending\" id=\"state\">Waiting for your decision · \
             <span class=\"left\" data-expires=\"{}\"></span> (expires {})</p>",
            r.statement.expires_at,
            time_html(r.statement.expires_at)
        ),
        RequestStatus::Approved => "<p class=\"state approved\" id=\"state\">Approved</p>".into(),
        RequestStatus::Denied => "<p class=\"state denied\" id=\"state\">Denied</p>".into(),
        RequestStatus::Expired => "<p class=\"state expired\" id=\"state\">Expired</p>".into(),
        RequestStatus::Deciding => {
            "<p class=\"state\" id=\"state\">A decision is being recorded</p>".into()
        }
    }
}

pub(super) async fn request_page(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
) -> Response {
    let Some(session) = session_of(c, &headers).await else {
        return sign_in("Sign in with your passkey to see this request.");
    };
    let Ok((_, r)) = own_request(c, &session.approver_id, &request_id).await else {
        return error_page(
            StatusCode::NOT_FOUND,
            "No such request",
            "This request does not exist, is no longer kept, or is not addressed to you.",
            "Open your inbox to see the requests waiting for you.",
        );
    };
    let st = &r.statement;
    let status = effective_status(&r);
    let canonical = st
        .canonical_json()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let hash = st.hash().map(hex::encode).unwrap_or_default();
    let short = format!(
        "{}…{}",
        hash.get(..12).unwrap_or_default(),
        hash.get(hash.len().saturating_sub(6)..).unwrap_or_default()
    );
    let pending = status == RequestStatus::Pending;
    let body_attrs = if pending {
        format!(
            "data-page=\"request\" data-request=\"{}\" data-expires=\"{}\" data-now=\"{}\"",
            esc(&r.request_id),
            st.expires_at,
            now_secs()
        )
    } else {
        format!(
            "data-page=\"request\" data-request=\"{}\" data-now=\"{}\"",
            esc(&r.request_id),
            now_secs()
        )
    };
    let heading = summary(&st.authorization_details);
    let mut main = String::new();
    let _ = write!(
        main,
        "<p class=\"back\"><a href=\"/approve\">← Back to your inbox</a></p>\
         <p class=\"eyebrow\"><strong>{client}</strong> asks you to approve</p>\
         <h1 id=\"headline\">{heading}</h1>{lookalike}{state}{quorum}\
         <section aria-labelledby=\"action-h\" class=\"card\"><h2 id=\"action-h\">The action</h2>\
         <p class=\"muted\">This is what your passkey signs and what the agent may do.</p>\
         {details}</section>\
         <section aria-labelledby=\"note-h\" class=\"note\"><h2 id=\"note-h\">Agent's note \
         <span class=\"muted\">(written by the agent, not verified)</span></h2>\
         <blockquote>{note}</blockquote>{warning}</section>\
         <dl class=\"meta\"><dt>Requested by</dt><dd><code>{client}</code></dd>\
         <dt>Scope</dt><dd><code>{scope}</code></dd>\
         <dt>Requested</dt><dd>{requested}</dd><dt>Expires</dt><dd>{expires}</dd>\
         <dt>Request id</dt><dd><code>{rid}</code></dd></dl>\
         <section aria-labelledby=\"hash-h\" class=\"hash\"><h2 id=\"hash-h\">What is signed</h2>\
         <p>Your passkey signs the SHA-256 hash of this statement (the action, the request and \
         the decision, in RFC 8785 canonical JSON): <code title=\"{hash}\">{short}</code></p>\
         <p id=\"hash-check\" class=\"check\" data-decision=\"{decision}\">Your browser is \
         recomputing the hash…</p>\
         <details><summary>Show the full hash and the exact statement</summary>\
         <p>SHA-256 (decision “{decision}”): <code id=\"server-hash\">{hash}</code></p>\
         <pre id=\"canonical\">{canon}</pre></details></section>\
         {outcome}<div id=\"receipt\"></div>",
        client = esc(&st.client_id),
        heading = esc(&heading),
        lookalike = if has_lookalikes(&st.authorization_details) {
            "<p class=\"warning\" role=\"alert\"><strong>Look closely:</strong> part of this action \
             mixes writing systems or has look-alike names (marked below), as text made to \
             imitate other text does. If in doubt, deny.</p>"
        } else {
            ""
        },
        state = state_line(&r, status, &session.approver_id),
        details = render(&st.authorization_details),
        note = esc(&st.binding_message),
        warning = note_warning(&r),
        scope = esc(&st.scope),
        requested = time_html(st.requested_at),
        expires = time_html(st.expires_at),
        rid = esc(&r.request_id),
        decision = esc(&st.decision),
        canon = esc(&canonical),
        hash = esc(&hash),
        short = esc(&short),
        outcome = outcome(&r, status, &session.approver_id),
        quorum = quorum_line(&r, &session.approver_id),
    );
    page(&heading, &body_attrs, Some(session.csrf.expose()), &main)
}

pub(super) async fn history(State(ref c): State<Arc<Approvals>>, headers: HeaderMap) -> Response {
    let Some(session) = session_of(c, &headers).await else {
        return sign_in("Sign in with your passkey to see your past decisions.");
    };
    let Ok(list) = c
        .store
        .history_of(&session.approver_id, HISTORY_LIMIT)
        .await
    else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "History could not be read",
            "The server could not read your past decisions.",
            "Reload the page in a minute; if it keeps failing, tell your operator.",
        );
    };
    let mut items = String::new();
    for r in &list {
        let Some(d) = &r.decision else { continue };
        let (class, word) = match r.status {
            RequestStatus::Approved => ("approved", "Approved"),
            _ => ("denied", "Denied"),
        };
        items.push_str(&list_item(
            r,
            &format!(
                "<span><span class=\"badge {class}\">{word}</span> {at} · log index {index}</span>",
                at = time_html(d.decided_at),
                index = d.index
            ),
            &format!(
                "<p class=\"download\"><a href=\"/approve/requests/{id}/evidence\" \
                 download=\"countersign-evidence-{id}.json\">Download the evidence bundle</a></p>",
                id = esc(&r.request_id),
            ),
        ));
    }
    if items.is_empty() {
        items.push_str("<li class=\"empty\">You have not decided any request yet.</li>");
    }
    page(
        "Your decisions",
        "data-page=\"history\"",
        Some(session.csrf.expose()),
        &format!(
            "<p class=\"back\"><a href=\"/approve\">← Back to your inbox</a></p>\
             <h1>Your decisions</h1><p class=\"muted\">Newest first, as long as the server keeps \
             the requests. Each evidence bundle verifies offline, with <a href=\"/verify\">the \
             verify page</a> or <code>countersign-verify bundle</code>.</p>\
             <ul class=\"inbox history\">{items}</ul>"
        ),
    )
}

pub(super) async fn enrol_page(
    State(ref c): State<Arc<Approvals>>,
    PathParam(token): PathParam,
) -> Response {
    let Some(a) = crate::passkeys::enrolment::link_approver(c, &token).await else {
        return error_page(
            StatusCode::GONE,
            "Link not valid",
            "This enrolment link is unknown, already used or expired.",
            "Ask your operator for a new link (countersign approver link <id>).",
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
