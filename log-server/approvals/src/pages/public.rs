//! The pages for everyone: the landing page, the verify page (an evidence bundle checked in the
//! browser by the verifier compiled to WebAssembly) and the log browser.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use countersign_verifier::{leaf_hash, Entry};
use serde::Deserialize;
use serde_json::json;

use super::{error_page, esc, page, page_with, time_html, Extras};
use crate::state::Approvals;

/// The verify and log pages' script.
pub(super) const PAGES_JS: &str = include_str!("pages.mjs");
/// The verifier's WebAssembly loader (the verifier crate's own).
pub(super) const LOADER_JS: &str =
    include_str!("../../../../verifier/wasm/js/countersign-verifier.mjs");

/// File name of the verifier compiled to WebAssembly.
const WASM_FILE: &str = "countersign_verifier_wasm.wasm";
/// Entries shown on one page of the log browser.
const LOG_PAGE: u64 = 20;
/// Environment variable naming the WebAssembly verifier's file.
pub const WASM_ENV: &str = "COUNTERSIGN_VERIFIER_WASM";

/// Where the WebAssembly verifier is looked for: `$COUNTERSIGN_VERIFIER_WASM`, beside the
/// running executable, and where `cargo build --target wasm32-unknown-unknown --release` puts
/// it relative to a `target/<profile>/` executable.
fn wasm_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(WASM_ENV) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        out.push(dir.join(WASM_FILE));
        for up in [dir.parent(), dir.parent().and_then(|d| d.parent())]
            .into_iter()
            .flatten()
        {
            out.push(up.join("wasm32-unknown-unknown/release").join(WASM_FILE));
        }
    }
    out
}

/// The WebAssembly verifier's bytes, read once found (a server started before the verifier was
/// built finds it on a later request).
fn wasm_bytes() -> Option<&'static [u8]> {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(w) = WASM.get() {
        return Some(w);
    }
    let bytes = wasm_candidates()
        .into_iter()
        .find_map(|p| std::fs::read(p).ok().filter(|b| b.starts_with(b"\0asm")))?;
    Some(WASM.get_or_init(|| bytes))
}

pub(super) async fn wasm() -> Response {
    match tokio::task::spawn_blocking(wasm_bytes).await.ok().flatten() {
        Some(b) => (
            [
                (header::CONTENT_TYPE, "application/wasm"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            b,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "the verifier is not built on this server: run ./scripts/build-wasm.sh",
        )
            .into_response(),
    }
}

pub(super) async fn landing(State(ref c): State<Arc<Approvals>>) -> Response {
    let p = c.log.published();
    let vkey = c.log.signer().verifier_key().to_vkey();
    page(
        "Approvals you can verify",
        "data-page=\"landing\"",
        None,
        &format!(
            "<h1>Countersign</h1>\
             <p class=\"lead\">An AI agent asks a person to approve one exact action. The person \
             approves with a passkey whose signature covers that action. The decision is \
             appended to a public transparency log, and anyone can verify it offline, without \
             trusting this server.</p>\
             <ul class=\"cards\">\
             <li><a href=\"/approve\"><strong>Approve requests</strong>\
             <span>Approvers: sign in with your passkey to see what agents ask of you, and your \
             past decisions.</span></a></li>\
             <li><a href=\"/verify\"><strong>Verify evidence</strong><span>Auditors: check an \
             evidence bundle in your browser, with the network off if you like.</span></a></li>\
             <li><a href=\"/log\"><strong>Browse the log</strong><span>Everyone: the latest \
             signed checkpoint and recent entries, each proof checked in your browser.</span>\
             </a></li></ul>\
             <h2>This log</h2><dl class=\"meta\"><dt>Origin</dt><dd><code>{origin}</code></dd>\
             <dt>Entries</dt><dd>{size}</dd>\
             <dt>Log key (C2SP verifier key)</dt><dd><code id=\"log-key\">{vkey}</code></dd></dl>\
             <h2>For agents and developers</h2><ul>\
             <li>OpenID CIBA discovery: <a href=\"/.well-known/openid-configuration\">\
             <code>/.well-known/openid-configuration</code></a></li>\
             <li>Token signing keys: <a href=\"/jwks.json\"><code>/jwks.json</code></a></li>\
             <li>Checkpoint and tiles (C2SP tlog-tiles): <a href=\"/checkpoint\"><code>/checkpoint\
             </code></a></li>\
             <li>The offline verifier: <code>countersign-verify</code>; the formats are specified \
             in the repository's <code>spec/</code> and its <code>README.md</code>.</li></ul>",
            origin = esc(c.log.signer().origin()),
            size = p.size,
            vkey = esc(&vkey),
        ),
    )
}

pub(super) async fn verify_page(State(ref c): State<Arc<Approvals>>) -> Response {
    let vkey = c.log.signer().verifier_key().to_vkey();
    // The relying party is pinned to this server's own, as `countersign-verify bundle --rp-id`:
    // a bundle names its own, which proves nothing about where the approver signed.
    let rp_id = c.log.policy().rp_id.clone();
    page_with(
        "Verify evidence",
        "data-page=\"verify\"",
        None,
        &format!(
            "<h1>Verify an evidence bundle</h1>\
             <p>The check runs in this browser: the same verifier as <code>countersign-verify</code>, \
             compiled to WebAssembly. Nothing is sent to the server, and once this page has \
             loaded it works with the network off.</p>\
             <p id=\"verifier-state\" class=\"muted\">Loading the verifier…</p>\
             <form id=\"verify-form\" novalidate>\
             <label for=\"bundle-file\">Evidence bundle file (JSON)</label>\
             <input type=\"file\" id=\"bundle-file\" accept=\"application/json,.json\">\
             <label for=\"bundle\">…or paste or drop it here</label>\
             <textarea id=\"bundle\" rows=\"8\" spellcheck=\"false\" autocomplete=\"off\" \
             placeholder=\"{{&quot;version&quot;: 1, &quot;statement&quot;: …}}\"></textarea>\
             <label for=\"log-key\">Log key (C2SP verifier key)</label>\
             <input id=\"log-key\" type=\"text\" spellcheck=\"false\" autocomplete=\"off\" \
             value=\"{vkey}\" aria-describedby=\"log-key-help\">\
             <p id=\"log-key-help\" class=\"muted\">This server's own key is filled in. An \
             auditor should use the key they obtained from a source they trust.</p>\
             <label for=\"rp-id\">Relying party ID (the approval pages' passkey domain)</label>\
             <input id=\"rp-id\" type=\"text\" spellcheck=\"false\" autocomplete=\"off\" \
             value=\"{rp_id}\" aria-describedby=\"rp-id-help\">\
             <p id=\"rp-id-help\" class=\"muted\">The approval must have been signed for this \
             relying party; this server's own is filled in.</p>\
             <label class=\"inline\"><input type=\"checkbox\" id=\"trust-bundle-rp\"> Accept the \
             relying party the bundle names instead (not pinned: proves less)</label>\
             <button type=\"submit\" class=\"primary\" id=\"verify\">Verify in this browser</button>\
             </form><section id=\"result\" aria-live=\"polite\" tabindex=\"-1\"></section>",
            vkey = esc(&vkey),
            rp_id = esc(&rp_id),
        ),
        Extras {
            module: Some("/assets/pages.mjs"),
        },
    )
}

#[derive(Deserialize)]
pub(super) struct LogQuery {
    /// Show the entries before this index (the older page).
    before: Option<u64>,
}

/// One entry's decoded columns: kind, opaque ids, time, decision.
fn entry_cells(entry: &[u8]) -> (String, String, String, String) {
    match Entry::decode(entry) {
        Ok(Entry::Enrolment(e)) => (
            "Enrolment".into(),
            format!(
                "approver {} · passkey {}",
                e.approver_id,
                short_hex(&e.credential_id)
            ),
            time_html(e.time_ms / 1000),
            "—".into(),
        ),
        Ok(Entry::Decision(d)) => (
            "Decision".into(),
            format!(
                "approver {} · passkey {} · statement {}",
                d.approver_id,
                short_hex(&d.credential_id),
                short_hex(&d.statement_hash)
            ),
            time_html(d.time_ms / 1000),
            d.decision.as_str().into(),
        ),
        Ok(Entry::Revocation(r)) => (
            "Revocation".into(),
            format!(
                "approver {} · passkey {}",
                r.approver_id,
                short_hex(&r.credential_id)
            ),
            time_html(r.time_ms / 1000),
            format!("revoked: {}", r.reason),
        ),
        Ok(Entry::Policy(p)) => (
            "Policy".into(),
            format!(
                "approval policy {} ({} bytes)",
                short_hex(&p.policy_hash()),
                p.policy.len()
            ),
            time_html(p.time_ms / 1000),
            "in force".into(),
        ),
        Err(e) => ("Unreadable".into(), e.to_string(), "—".into(), "—".into()),
    }
}

fn short_hex(b: &[u8]) -> String {
    let h = hex::encode(b);
    if h.len() > 16 {
        format!("{}…", &h[..16])
    } else {
        h
    }
}

pub(super) async fn log_page(
    State(ref c): State<Arc<Approvals>>,
    Query(q): Query<LogQuery>,
) -> Response {
    // The checkpoint the proofs are made against (in witness quorum mode, the latest the
    // quorum cosigned, which may be behind the published one).
    let size = c.log.readers_checkpoint().size;
    let end = q.before.unwrap_or(size).min(size);
    let start = end.saturating_sub(LOG_PAGE);
    let indexes: Vec<u64> = (start..end).rev().collect();
    let proved = {
        // A page of proofs: on a thread that may block (node reads and hashing on the
        // embedded store, round trips on the shared driver).
        let (log, ix) = (c.log.clone(), indexes.clone());
        match tokio::task::spawn_blocking(move || crate::util::wait(log.prove_entries(&ix))).await {
            Ok(Ok(p)) => p,
            _ => {
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The log could not be read",
                    "The server could not read the log's entries.",
                    "Reload the page in a minute; if it keeps failing, tell the operator.",
                )
            }
        }
    };
    let cp = &proved.checkpoint;
    let vkey = c.log.signer().verifier_key().to_vkey();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut rows = String::new();
    let mut data = Vec::new();
    for e in &proved.entries {
        let (kind, ids, time, decision) = entry_cells(&e.entry);
        let leaf = leaf_hash(&e.entry).to_hex();
        let _ = write!(
            rows,
            "<tr data-index=\"{i}\"><td data-label=\"Index\">{i}</td><td data-label=\"Kind\">{kind}</td>\
             <td class=\"ids\" data-label=\"Opaque ids\">{ids}</td><td data-label=\"Time\">{time}</td>\
             <td data-label=\"Decision\">{decision}</td><td data-label=\"Leaf hash\">\
             <code title=\"{leaf}\">{short}…</code></td>\
             <td class=\"proof\" data-label=\"Inclusion proof\">not checked yet</td></tr>",
            i = e.index,
            kind = esc(&kind),
            ids = esc(&ids),
            decision = esc(&decision),
            leaf = esc(&leaf),
            short = esc(&leaf[..12]),
        );
        data.push(json!({
            "index": e.index,
            "entry": b64.encode(&e.entry),
            "leaf_hash": leaf,
            "proof": e.proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
        }));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"7\">The log is empty.</td></tr>");
    }
    let data = json!({
        "checkpoint": &*cp.note,
        "size": cp.size,
        "root": cp.root.to_hex(),
        "log_key": vkey,
        "entries": data,
    });
    // Inside a non-executed script element: "</" is escaped so the JSON cannot end it.
    let data = data.to_string().replace("</", "<\\/");
    let older = if start > 0 {
        format!("<p><a href=\"/log?before={start}\">Older entries</a></p>")
    } else {
        String::new()
    };
    let newer = if end < size {
        "<p><a href=\"/log\">Latest entries</a></p>"
    } else {
        ""
    };
    page_with(
        "The log",
        "data-page=\"log\"",
        None,
        &format!(
            "<h1>The log</h1><p>Every enrolment and every decision is an entry in this append-only \
             RFC 6962 Merkle tree. Entries hold opaque ids and hashes only; what was approved \
             stays with the parties, who can prove it against these entries.</p>\
             <p id=\"verifier-state\" class=\"muted\">Loading the verifier…</p>\
             <section aria-labelledby=\"cp-h\" class=\"card\"><h2 id=\"cp-h\">Latest checkpoint</h2>\
             <dl class=\"meta\"><dt>Origin</dt><dd><code>{origin}</code></dd>\
             <dt>Tree size</dt><dd>{size}</dd><dt>Root hash</dt><dd><code>{root}</code></dd>\
             <dt>Log signature</dt><dd id=\"cp-sig\">not checked yet</dd>\
             <dt>Cosignatures</dt><dd id=\"cp-cosig\">none</dd></dl>\
             <details><summary>The signed checkpoint (C2SP signed note)</summary>\
             <pre id=\"checkpoint\">{note}</pre></details>\
             <p class=\"muted\">Checked against the log key <code>{vkey}</code>.</p></section>\
             <h2 id=\"entries-h\">Entries {first} to {last}</h2>\
             <div class=\"table-wrap\" role=\"region\" aria-labelledby=\"entries-h\" tabindex=\"0\">\
             <table class=\"entries\"><thead><tr><th scope=\"col\">Index</th><th scope=\"col\">Kind</th>\
             <th scope=\"col\">Opaque ids</th><th scope=\"col\">Time</th><th scope=\"col\">Decision</th>\
             <th scope=\"col\">Leaf hash</th><th scope=\"col\">Inclusion proof</th></tr></thead>\
             <tbody>{rows}</tbody></table></div>{newer}{older}\
             <script type=\"application/json\" id=\"log-data\">{data}</script>",
            origin = esc(c.log.signer().origin()),
            size = cp.size,
            root = cp.root.to_hex(),
            note = esc(&cp.note),
            vkey = esc(&vkey),
            first = if end > start { end - 1 } else { 0 },
            last = start,
        ),
        Extras {
            module: Some("/assets/pages.mjs"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_entries_are_said_so() {
        let (kind, _, _, _) = entry_cells(b"\x09garbage");
        assert_eq!(kind, "Unreadable");
        assert_eq!(short_hex(&[0xab; 4]), "abababab");
        assert_eq!(short_hex(&[0xab; 10]), "abababababababab…");
    }

    #[test]
    fn wasm_is_looked_up_beside_the_build() {
        let c = wasm_candidates();
        let release = format!("wasm32-unknown-unknown/release/{WASM_FILE}");
        assert!(c.iter().any(|p| p.ends_with(&release)), "{c:?}");
    }
}
