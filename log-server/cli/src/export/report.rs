//! `report.html` (spec/export.md X8): one self-contained page for a compliance officer, built
//! from the same rows as `events.jsonl`. No external resource and no script that runs; charts
//! are inline SVG; it prints on A4 without cut tables.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use countersign_verifier::export::{rfc3339_ms, EventRow, EventType, Totals, TOTALS_ELEMENT_ID};

/// Buckets of the time from request to decision, upper bounds in seconds.
const LATENCY_BUCKETS: [(u64, &str); 8] = [
    (10, "< 10 s"),
    (30, "10–30 s"),
    (60, "30–60 s"),
    (120, "1–2 min"),
    (300, "2–5 min"),
    (900, "5–15 min"),
    (3600, "15–60 min"),
    (u64::MAX, "> 1 h"),
];

/// Rows listed in full per section; beyond this the section says how many more the CSV holds.
const LIST_CAP: usize = 2000;

/// What the report is built from, gathered while the rows are written.
#[derive(Default)]
pub struct ReportData {
    totals: Totals,
    /// Day (`YYYY-MM-DD`) to (approved, denied, expired).
    per_day: BTreeMap<String, [u64; 3]>,
    latency: [u64; LATENCY_BUCKETS.len()],
    clients: HashMap<String, u64>,
    approvers: HashMap<String, u64>,
    types: HashMap<String, u64>,
    denials: Vec<EventRow>,
    expiries: Vec<EventRow>,
    credentials: Vec<EventRow>,
    policies: Vec<EventRow>,
    listed_over: [u64; 4],
}

/// The period, the log and how to re-verify, for the page's header and last line.
pub struct ReportHeader<'a> {
    /// The log's origin.
    pub origin: &'a str,
    /// The log's verifier key.
    pub log_key: &'a str,
    /// The index range.
    pub start: u64,
    /// End of the index range (exclusive).
    pub end: u64,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// Window of the events outside the log.
    pub events_from: &'a str,
    /// Its end (exclusive).
    pub events_to: &'a str,
    /// When the archive was written.
    pub generated_at: &'a str,
    /// The relying party, if known.
    pub rp_id: Option<&'a str>,
    /// Decisions whose statement the archive does not hold.
    pub withheld: usize,
}

impl ReportData {
    /// Counts a row. `requested_at_ms` is the request's time, for a decision with a statement.
    pub fn add(&mut self, row: &EventRow, requested_at_ms: Option<u64>) {
        self.totals.add(row.event_type);
        let day = row.time_utc.get(..10).unwrap_or("").to_owned();
        let slot = match row.event_type {
            EventType::DecisionApproved => Some(0),
            EventType::DecisionDenied => Some(1),
            EventType::RequestExpired => Some(2),
            _ => None,
        };
        if let Some(s) = slot {
            self.per_day.entry(day).or_default()[s] += 1;
        }
        match row.event_type {
            EventType::DecisionApproved | EventType::DecisionDenied => {
                if let (Some(req), Some(t)) = (
                    requested_at_ms,
                    countersign_verifier::export::parse_rfc3339_ms(&row.time_utc),
                ) {
                    let secs = t.saturating_sub(req) / 1000;
                    let b = LATENCY_BUCKETS
                        .iter()
                        .position(|(max, _)| secs < *max)
                        .unwrap_or(LATENCY_BUCKETS.len() - 1);
                    self.latency[b] += 1;
                }
                if let Some(c) = &row.client_id {
                    *self.clients.entry(c.clone()).or_default() += 1;
                }
                if let Some(a) = &row.approver_id {
                    *self.approvers.entry(a.clone()).or_default() += 1;
                }
                for t in &row.authorization_details_types {
                    *self.types.entry(t.clone()).or_default() += 1;
                }
                if row.event_type == EventType::DecisionDenied {
                    push_capped(&mut self.denials, &mut self.listed_over[0], row);
                }
            }
            EventType::RequestExpired => {
                push_capped(&mut self.expiries, &mut self.listed_over[1], row)
            }
            EventType::CredentialEnrolled | EventType::CredentialRevoked => {
                push_capped(&mut self.credentials, &mut self.listed_over[2], row)
            }
            EventType::PolicyChanged => {
                push_capped(&mut self.policies, &mut self.listed_over[3], row)
            }
            _ => {}
        }
    }

    /// The totals counted so far.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The page.
    pub fn render(&self, h: &ReportHeader<'_>) -> String {
        let t = &self.totals;
        let decided = t.decisions_approved + t.decisions_denied;
        let mut o = String::with_capacity(64 * 1024);
        let _ = write!(
            o,
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>Countersign approvals report: {origin}, entries {start}–{end}</title>\n\
             <style>{CSS}</style>\n\
             <script type=\"application/json\" id=\"{TOTALS_ELEMENT_ID}\">{totals}</script>\n\
             </head>\n<body>\n<main>\n\
             <h1>Approvals report</h1>\n\
             <p class=\"lead\">Log <code>{origin}</code>, entries {start} to {last} \
             (tree size {size}); events outside the log from {from} to {to}. \
             Written {gen}.</p>\n",
            origin = esc(h.origin),
            start = h.start,
            end = h.end,
            last = if h.end > h.start {
                (h.end - 1).to_string()
            } else {
                "(none)".into()
            },
            size = h.tree_size,
            from = if h.events_from == rfc3339_ms(0) {
                "the log's start".to_owned()
            } else {
                esc(h.events_from)
            },
            to = esc(h.events_to),
            gen = esc(h.generated_at),
            totals = serde_json::to_string(t)
                .unwrap_or_default()
                .replace('<', "\\u003c"),
        );
        o.push_str("<section><h2>Totals</h2>\n<table class=\"totals\"><tbody>\n");
        for (label, n) in [
            ("Decisions", decided),
            ("Approved", t.decisions_approved),
            ("Denied", t.decisions_denied),
            ("Requests made (outside the log)", t.requests_created),
            ("Requests expired undecided", t.requests_expired),
            ("Tokens issued", t.tokens_issued),
            ("Passkeys enrolled", t.credentials_enrolled),
            ("Passkeys revoked", t.credentials_revoked),
        ] {
            let _ = writeln!(o, "<tr><th scope=\"row\">{label}</th><td>{n}</td></tr>");
        }
        o.push_str("</tbody></table>\n");
        if h.withheld > 0 {
            let _ = writeln!(
                o,
                "<p class=\"warn\">{} decision(s) in this range have no statement in the \
                 archive (the server no longer held their evidence): their entries are still \
                 verified, but not what was approved. They are listed in MANIFEST.json \
                 (<code>withheld</code>).</p>",
                h.withheld
            );
        }
        o.push_str("</section>\n");
        o.push_str("<section><h2>Outcomes per day</h2>\n");
        o.push_str(&self.per_day_chart());
        o.push_str("</section>\n<section><h2>Time from request to decision</h2>\n");
        o.push_str(&self.latency_chart());
        o.push_str("</section>\n<section class=\"tops\">\n");
        o.push_str(&top_table("Top clients", "Client", &self.clients));
        o.push_str(&top_table("Top approvers", "Approver", &self.approvers));
        o.push_str(&top_table("Top action types", "Type", &self.types));
        o.push_str("</section>\n");
        o.push_str(&row_list(
            "Denials",
            &self.denials,
            self.listed_over[0],
            &[
                "log_index",
                "time_utc",
                "client_id",
                "approver_id",
                "binding_message",
            ],
        ));
        o.push_str(&row_list(
            "Expired requests",
            &self.expiries,
            self.listed_over[1],
            &[
                "time_utc",
                "request_id",
                "client_id",
                "approver_id",
                "binding_message",
            ],
        ));
        o.push_str(&row_list(
            "Enrolments and revocations",
            &self.credentials,
            self.listed_over[2],
            &[
                "log_index",
                "time_utc",
                "event_type",
                "approver_id",
                "credential_id",
                "aaguid",
            ],
        ));
        o.push_str(&row_list(
            "Policy changes",
            &self.policies,
            self.listed_over[3],
            &["log_index", "time_utc", "policy_sha256"],
        ));
        let rp = match h.rp_id {
            Some(rp) => format!(" --rp-id '{}'", esc(rp)),
            None => " --rp-id &lt;the relying party ID&gt;".into(),
        };
        let _ = write!(
            o,
            "<section><h2>What was verified, and how to verify it again</h2>\n\
             <p>Every decision listed here is a passkey signature by the approver over the exact \
             statement in <code>statements.jsonl</code>, recorded in the public log <code>{origin}</code>. \
             The archive holds the log's signed checkpoint of {size} entries, every hash tile of that \
             tree and every entry up to {end}, so all of it can be checked offline, without trusting \
             the operator, with the log's public key obtained independently:</p>\n\
             <pre>countersign-verify export &lt;this directory&gt; --log-key '{key}'{rp} \
             [--trusted-checkpoint &lt;a checkpoint you hold&gt;]</pre>\n\
             <p>It recomputes the tree from the tiles and compares it with the signed checkpoint \
             (and with a checkpoint you trust), checks each decision's statement hash and passkey \
             signature against a passkey enrolled earlier and not revoked, checks that every row of \
             <code>events.csv</code> and <code>events.jsonl</code> matches its entry with none missing \
             or added, and that the totals above equal the rows. This page is a summary; the files are \
             the evidence.</p>\n</section>\n</main>\n</body>\n</html>\n",
            origin = esc(h.origin),
            size = h.tree_size,
            end = h.end,
            key = esc(h.log_key),
        );
        o
    }

    fn per_day_chart(&self) -> String {
        if self.per_day.is_empty() {
            return "<p>No decisions or expiries in this period.</p>\n".into();
        }
        let days: Vec<(&String, &[u64; 3])> = self.per_day.iter().collect();
        let max = days
            .iter()
            .map(|(_, c)| c.iter().sum::<u64>())
            .max()
            .unwrap_or(1)
            .max(1);
        let bar_w = (640.0 / days.len() as f64).clamp(2.0, 40.0);
        let width = bar_w * days.len() as f64 + 60.0;
        let height = 200.0;
        let mut s = String::new();
        let _ = write!(
            s,
            "<figure><svg role=\"img\" aria-label=\"Approved, denied and expired requests per day\" \
             viewBox=\"0 0 {width:.0} {:.0}\" width=\"{width:.0}\" height=\"{:.0}\" \
             xmlns=\"http://www.w3.org/2000/svg\">\n\
             <text x=\"0\" y=\"12\" class=\"axis\">{max}</text>\
             <text x=\"0\" y=\"{height:.0}\" class=\"axis\">0</text>\n",
            height + 30.0,
            height + 30.0
        );
        for (i, (day, c)) in days.iter().enumerate() {
            let x = 40.0 + i as f64 * bar_w;
            let mut y = height;
            for (k, class) in ["approved", "denied", "expired"].iter().enumerate() {
                let hgt = c[k] as f64 / max as f64 * (height - 10.0);
                if c[k] > 0 {
                    y -= hgt;
                    let _ = writeln!(
                        s,
                        "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" \
                         height=\"{hgt:.1}\"><title>{} {class}: {}</title></rect>",
                        (bar_w - 1.0).max(1.0),
                        esc(day),
                        c[k]
                    );
                }
            }
        }
        if let (Some(first), Some(last)) = (days.first(), days.last().filter(|_| days.len() > 1)) {
            let _ = writeln!(
                s,
                "<text x=\"40\" y=\"{:.0}\" class=\"axis\">{}</text>\
                 <text x=\"{:.0}\" y=\"{:.0}\" class=\"axis\" text-anchor=\"end\">{}</text>",
                height + 20.0,
                esc(first.0),
                width,
                height + 20.0,
                esc(last.0)
            );
        }
        if days.len() == 1 {
            let _ = writeln!(
                s,
                "<text x=\"40\" y=\"{:.0}\" class=\"axis\">{}</text>",
                height + 20.0,
                esc(days[0].0)
            );
        }
        s.push_str(
            "</svg><figcaption><span class=\"key approved\"></span> approved \
             <span class=\"key denied\"></span> denied <span class=\"key expired\"></span> \
             expired undecided</figcaption></figure>\n",
        );
        s.push_str("<table class=\"days\"><thead><tr><th>Day (UTC)</th><th>Approved</th><th>Denied</th><th>Expired</th></tr></thead><tbody>\n");
        for (day, c) in &days {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(day),
                c[0],
                c[1],
                c[2]
            );
        }
        s.push_str("</tbody></table>\n");
        s
    }

    fn latency_chart(&self) -> String {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return "<p>No decisions with a statement in this period.</p>\n".into();
        }
        let max = self.latency.iter().copied().max().unwrap_or(1).max(1);
        let mut s = String::from(
            "<figure><svg role=\"img\" aria-label=\"Decisions by time from request to decision\" \
             viewBox=\"0 0 560 220\" width=\"560\" height=\"220\" xmlns=\"http://www.w3.org/2000/svg\">\n",
        );
        for (i, ((_, label), n)) in LATENCY_BUCKETS.iter().zip(self.latency).enumerate() {
            let x = 10.0 + i as f64 * 68.0;
            let hgt = n as f64 / max as f64 * 170.0;
            let _ = writeln!(
                s,
                "<rect class=\"approved\" x=\"{x:.0}\" y=\"{:.1}\" width=\"60\" height=\"{hgt:.1}\">\
                 <title>{label}: {n}</title></rect>\
                 <text x=\"{:.0}\" y=\"215\" class=\"axis\" text-anchor=\"middle\">{label}</text>\
                 <text x=\"{:.0}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"middle\">{n}</text>",
                190.0 - hgt,
                x + 30.0,
                x + 30.0,
                (186.0 - hgt).max(10.0)
            );
        }
        s.push_str("</svg></figure>\n");
        s
    }
}

fn push_capped(list: &mut Vec<EventRow>, over: &mut u64, row: &EventRow) {
    if list.len() < LIST_CAP {
        list.push(row.clone());
    } else {
        *over += 1;
    }
}

fn top_table(title: &str, col: &str, counts: &HashMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut s = format!("<div><h2>{title}</h2>\n");
    if v.is_empty() {
        s.push_str("<p>None.</p></div>\n");
        return s;
    }
    let _ = writeln!(
        s,
        "<table><thead><tr><th>{col}</th><th>Decisions</th></tr></thead><tbody>"
    );
    for (k, n) in v.iter().take(10) {
        let _ = writeln!(s, "<tr><td>{}</td><td>{n}</td></tr>", esc(k));
    }
    s.push_str("</tbody></table></div>\n");
    s
}

fn cell(row: &EventRow, col: &str) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    match col {
        "log_index" => row.log_index.map(|i| i.to_string()).unwrap_or_default(),
        "time_utc" => row.time_utc.clone(),
        "event_type" => row.event_type.as_str().to_owned(),
        "request_id" => o(&row.request_id),
        "client_id" => o(&row.client_id),
        "approver_id" => o(&row.approver_id),
        "credential_id" => o(&row.credential_id),
        "aaguid" => o(&row.aaguid),
        "binding_message" => o(&row.binding_message),
        // A policy entry's row carries the policy hash where a decision's has its statement's.
        "policy_sha256" => o(&row.statement_sha256),
        _ => String::new(),
    }
}

fn row_list(title: &str, rows: &[EventRow], over: u64, cols: &[&str]) -> String {
    let mut s = format!("<section><h2>{title} ({})</h2>\n", rows.len() as u64 + over);
    if rows.is_empty() {
        s.push_str("<p>None.</p></section>\n");
        return s;
    }
    // Scrolls sideways on a phone: focusable, so a keyboard can scroll it too.
    s.push_str("<table class=\"list\" tabindex=\"0\"><thead><tr>");
    for c in cols {
        let _ = write!(s, "<th>{}</th>", c.replace('_', " "));
    }
    s.push_str("</tr></thead><tbody>\n");
    for r in rows {
        s.push_str("<tr>");
        for c in cols {
            let _ = write!(s, "<td>{}</td>", esc(&cell(r, c)));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    if over > 0 {
        let _ = writeln!(
            s,
            "<p>And {over} more, in <code>events.csv</code> and <code>events.jsonl</code>.</p>"
        );
    }
    s.push_str("</section>\n");
    s
}

/// HTML text escaping.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1b1b;margin:0;background:#fff}\
main{max-width:60rem;margin:0 auto;padding:1.5rem}\
h1{font-size:1.6rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:1.6rem 0 .5rem}\
.lead{color:#444}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}\
pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:.6rem;border-radius:4px}\
table{border-collapse:collapse;margin:.3rem 0;display:block;max-width:100%;overflow-x:auto}th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}\
td{word-break:break-word}.list th,.list td{white-space:nowrap;word-break:normal}.totals td{text-align:right;font-variant-numeric:tabular-nums}\
.tops{display:grid;grid-template-columns:repeat(auto-fit,minmax(16rem,1fr));gap:1rem}\
.warn{background:#fff4d6;border-left:4px solid #b07d00;padding:.5rem .7rem}\
svg{max-width:100%;height:auto}.axis{font-size:10px;fill:#555}\
.approved{fill:#2f6fb2;background:#2f6fb2}.denied{fill:#c0392b;background:#c0392b}.expired{fill:#999;background:#999}\
.key{display:inline-block;width:.8em;height:.8em;margin:0 .2em 0 .8em}\
figure{margin:.5rem 0}figcaption{font-size:.85rem;color:#444}\
@media print{main{max-width:none;padding:0}tr,figure{break-inside:avoid}h2{break-after:avoid}}";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(t: EventType, time: &str, msg: &str) -> EventRow {
        EventRow {
            log_index: Some(3),
            leaf_hash: None,
            event_type: t,
            time_utc: time.into(),
            request_id: Some("req_1".into()),
            client_id: Some("agent<1>".into()),
            approver_id: Some("apv_a".into()),
            credential_id: None,
            aaguid: None,
            authorization_details_types: vec!["payment_initiation".into()],
            binding_message: Some(msg.into()),
            statement_sha256: None,
        }
    }

    #[test]
    fn the_page_is_escaped_self_contained_and_carries_its_totals() {
        let mut d = ReportData::default();
        d.add(
            &row(
                EventType::DecisionApproved,
                "2026-12-01T10:00:05.000Z",
                "ok",
            ),
            Some(1_764_583_200_000),
        );
        d.add(
            &row(
                EventType::DecisionDenied,
                "2026-12-02T10:00:00.000Z",
                "<script>alert(1)</script>",
            ),
            None,
        );
        let h = ReportHeader {
            origin: "example/log",
            log_key: "example/log+01+AA",
            start: 0,
            end: 2,
            tree_size: 2,
            events_from: "2026-12-01T00:00:00.000Z",
            events_to: "2026-12-03T00:00:00.000Z",
            generated_at: "2026-12-03T00:00:00.000Z",
            rp_id: Some("rp.example"),
            withheld: 1,
        };
        let html = d.render(&h);
        assert!(
            !html.contains("<script>alert"),
            "a binding message is escaped"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("agent&lt;1&gt;"));
        assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("@import"));
        let start = html.find("id=\"countersign-totals\">").unwrap() + 24;
        let end = start + html[start..].find("</script>").unwrap();
        let totals: Totals = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(totals.decisions_approved, 1);
        assert_eq!(totals.decisions_denied, 1);
        assert!(html.contains("withheld"));
        assert!(html.contains("--rp-id 'rp.example'"));
        assert!(html.contains("<h2>Policy changes (0)</h2>\n<p>None.</p>"));
    }

    #[test]
    fn policy_changes_are_listed_with_their_hash() {
        let mut d = ReportData::default();
        let mut r = row(EventType::PolicyChanged, "2026-12-01T09:00:00.000Z", "");
        r.log_index = Some(7);
        r.request_id = None;
        r.statement_sha256 = Some("ab".repeat(32));
        d.add(&r, None);
        let h = ReportHeader {
            origin: "example/log",
            log_key: "example/log+01+AA",
            start: 0,
            end: 8,
            tree_size: 8,
            events_from: "2026-12-01T00:00:00.000Z",
            events_to: "2026-12-03T00:00:00.000Z",
            generated_at: "2026-12-03T00:00:00.000Z",
            rp_id: None,
            withheld: 0,
        };
        let html = d.render(&h);
        let at = html.find("<h2>Policy changes (1)</h2>").unwrap();
        let section = &html[at..at + html[at..].find("</section>").unwrap()];
        assert!(section.contains("<th>policy sha256</th>"), "{section}");
        assert!(
            section.contains(&format!(
                "<td>7</td><td>2026-12-01T09:00:00.000Z</td><td>{}</td>",
                "ab".repeat(32)
            )),
            "{section}"
        );
        assert_eq!(d.totals().policies_changed, 1);
    }
}
