//! `countersign requests list|show`: the operator's view of the approval requests a running
//! server holds, over `GET /v1/admin/requests[/{id}]`. Times print as RFC 3339 UTC; `--json`
//! prints the API's answer unchanged (times in Unix seconds).

use serde_json::Value;

use crate::admin_client::{call, path_of, CliError, Target};
use crate::text::{clean, table, truncate};
use crate::times::{parse_since, rfc3339_of};

/// Longest action summary in a list row, in characters.
const ACTION_CHARS: usize = 72;

/// `countersign requests`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum RequestsCmd {
    /// List the requests the server holds (each until it expired more than --request-retention
    /// ago), in the order of their expiry, oldest first.
    List(ListArgs),
    /// Show one request in full: statement, status, times, decision and evidence.
    Show {
        /// Its request id (req_...), or the auth_req_id the client got (which may start
        /// with `-`, so it is taken as the id, never as an option).
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Print the API's JSON (times in Unix seconds).
        #[arg(long)]
        json: bool,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
}

/// `countersign requests list` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ListArgs {
    /// Only requests in this state (a pending request past its expiry is expired).
    #[arg(long, value_parser = ["pending", "deciding", "approved", "denied", "expired"])]
    pub status: Option<String>,
    /// Only this client's requests.
    #[arg(long = "client", value_name = "CLIENT_ID")]
    pub client: Option<String>,
    /// Only requests to this approver.
    #[arg(long = "approver", value_name = "APPROVER_ID")]
    pub approver: Option<String>,
    /// Only requests made at or after this time: RFC 3339 UTC (2026-12-05T07:00:00Z) or a
    /// duration ago (2h, 30m, 1day).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Most requests listed (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub limit: u64,
    /// Continue a listing where a previous one stopped (it prints the cursor).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print the API's JSON (times in Unix seconds).
    #[arg(long)]
    pub json: bool,
    /// The server.
    #[command(flatten)]
    pub target: Target,
}

/// Runs `countersign requests ...`.
pub async fn run_requests(cmd: RequestsCmd) -> Result<(), CliError> {
    match cmd {
        RequestsCmd::List(a) => {
            let path = list_path(&a, std::time::SystemTime::now())?;
            let v = call(&a.target, reqwest::Method::GET, &path, None).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render_list(&v));
            }
            if let Some(hint) = continue_hint(&v) {
                eprintln!("{hint}");
            }
        }
        RequestsCmd::Show { id, json, target } => {
            let path = path_of(&["v1", "admin", "requests", &id])?;
            let v = call(&target, reqwest::Method::GET, &path, None)
                .await
                .map_err(|e| match e {
                    CliError::Refused { status, .. }
                        if status == reqwest::StatusCode::NOT_FOUND =>
                    {
                        CliError::Input(format!(
                            "no request has the id {:?}: neither a request id nor an auth_req_id \
                             the server holds (a request is deleted once it expired more than \
                             --request-retention ago); `countersign requests list` shows those \
                             it holds",
                            clean(&id)
                        ))
                    }
                    e => e,
                })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render_show(&v));
            }
        }
    }
    Ok(())
}

/// The list request's path and query.
fn list_path(a: &ListArgs, now: std::time::SystemTime) -> Result<String, CliError> {
    let mut u = reqwest::Url::parse("http://localhost/v1/admin/requests")
        .map_err(|e| CliError::Input(format!("building a URL: {e}")))?;
    {
        let mut q = u.query_pairs_mut();
        if let Some(s) = &a.status {
            q.append_pair("status", s);
        }
        if let Some(c) = &a.client {
            q.append_pair("client_id", c);
        }
        if let Some(ap) = &a.approver {
            q.append_pair("approver_id", ap);
        }
        if let Some(s) = &a.since {
            q.append_pair(
                "since",
                &parse_since(s, now).map_err(CliError::Input)?.to_string(),
            );
        }
        q.append_pair("limit", &a.limit.to_string());
        if let Some(c) = &a.cursor {
            q.append_pair("cursor", c);
        }
    }
    Ok(format!("{}?{}", u.path(), u.query().unwrap_or_default()))
}

/// What to do when the listing stopped early (`None` when it did not).
pub fn continue_hint(v: &Value) -> Option<String> {
    let cursor = clean(v["next_cursor"].as_str()?);
    Some(match v["truncated"].as_str() {
        Some("limit") => format!(
            "more requests match; list the next ones with --cursor {cursor} (or raise --limit, up \
             to 1000)"
        ),
        _ => format!(
            "the server stopped after examining {} requests; list the next ones with --cursor \
             {cursor}",
            countersign_approvals::admin_requests::SCAN_BUDGET
        ),
    })
}

/// A list answer as a table.
pub fn render_list(v: &Value) -> String {
    let empty = Vec::new();
    let list = v["requests"].as_array().unwrap_or(&empty);
    if list.is_empty() {
        return "no request matches\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let decided = r["decided_at"].is_u64();
            vec![
                text(&r["request_id"]),
                text(&r["status"]),
                text(&r["client_id"]),
                approvers_cell(r),
                rfc3339_of(&r["requested_at"]),
                if decided {
                    format!("decided {}", rfc3339_of(&r["decided_at"]))
                } else {
                    format!("expires {}", rfc3339_of(&r["expires_at"]))
                },
                r["log_index"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |i| i.to_string()),
                truncate(&clean(&text(&r["summary"])), ACTION_CHARS),
            ]
        })
        .collect();
    table(
        &[
            "REQUEST ID",
            "STATUS",
            "CLIENT",
            "APPROVER",
            "REQUESTED",
            "EXPIRES / DECIDED",
            "LOG INDEX",
            "ACTION",
        ],
        &rows,
    )
}

/// The approver column: the one approver, or under a policy rule `2 of apv_a apv_b apv_c`
/// (with `(1 approved)` while it waits).
fn approvers_cell(r: &Value) -> String {
    if r["approver_id"].is_string() || r["approvers"].is_null() {
        return text(&r["approver_id"]);
    }
    let names: Vec<String> = r["approvers"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let approved = r["approvals"].as_array().map_or(0, Vec::len);
    let mut cell = format!("{} of {}", text(&r["quorum"]), names.join(" "));
    if approved > 0 && r["status"] == "pending" {
        cell.push_str(&format!(" ({approved} approved)"));
    }
    cell
}

/// A JSON string's text, or the JSON itself for anything else (`-` for null).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A show answer as labelled lines.
pub fn render_show(v: &Value) -> String {
    let st = &v["statement"];
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("{label:<16}{}\n", clean(&value)));
    };
    let found = if v["found_by"] == "auth_req_id" {
        " (found by the auth_req_id given)"
    } else {
        ""
    };
    line("request id", format!("{}{found}", text(&v["request_id"])));
    line("status", text(&v["status"]));
    line("client", text(&st["client_id"]));
    match &st["policy"] {
        Value::Object(p) => {
            line(
                "approvers",
                format!(
                    "{} of {} (policy entry {}, rule {})",
                    text(&p["quorum"]),
                    p["approvers"]
                        .as_array()
                        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(" "))
                        .unwrap_or_default(),
                    text(&p["index"]),
                    text(&p["rule"])
                ),
            );
            if let Some(list) = v["approvals"].as_array().filter(|l| !l.is_empty()) {
                let done: Vec<String> = list
                    .iter()
                    .map(|a| {
                        format!(
                            "{} (log index {})",
                            text(&a["approver_id"]),
                            text(&a["log_index"])
                        )
                    })
                    .collect();
                line("approved by", done.join(", "));
            }
        }
        _ => line("approver", text(&st["approver_id"])),
    }
    line("scope", text(&st["scope"]));
    line("agent's note", text(&st["binding_message"]));
    line(
        "",
        "(the binding_message, written by the agent: the action below is what was signed)"
            .to_owned(),
    );
    line("requested at", rfc3339_of(&st["requested_at"]));
    line("expires at", rfc3339_of(&st["expires_at"]));
    line(
        "delivery",
        format!(
            "{} (tokens {})",
            text(&v["delivery_mode"]),
            if v["token_issued"] == true {
                "issued"
            } else {
                "not issued"
            }
        ),
    );
    line("log origin", text(&st["log_origin"]));
    let d = &v["decision"];
    if d.is_object() {
        line(
            "decision",
            format!(
                "{} at {}",
                text(&st["decision"]),
                rfc3339_of(&d["decided_at"])
            ),
        );
        line("log index", text(&d["log_index"]));
        line("leaf hash", text(&d["leaf_hash"]));
        line("statement hash", text(&d["statement_hash"]));
        line("enrolment index", text(&d["enrolment_index"]));
    } else {
        line("decision", "none".to_owned());
    }
    if let Some(url) = v["evidence_url"].as_str() {
        line("evidence", format!("{url} (with the admin token)"));
    }
    out.push_str("action (authorization_details):\n");
    let pretty = serde_json::to_string_pretty(&st["authorization_details"]).unwrap_or_default();
    for l in pretty.lines() {
        out.push_str("  ");
        out.push_str(&clean(l));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_auth_req_id_starting_with_a_hyphen_is_an_id() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: RequestsCmd,
        }
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["countersign", "show", "-Zx4_id"]).unwrap();
        assert!(matches!(cli.cmd, RequestsCmd::Show { ref id, .. } if id == "-Zx4_id"));
        let cli = Cli::try_parse_from(["countersign", "show", "--json", "-Zx4_id"]).unwrap();
        assert!(matches!(cli.cmd, RequestsCmd::Show { json: true, .. }));
    }

    #[test]
    fn the_action_column_is_the_servers_summary_cleaned_and_cut() {
        let item = |summary: &str| {
            json!({"requests": [{"request_id": "req_1", "status": "pending", "client_id": "c",
                "approver_id": "a", "requested_at": 0, "expires_at": 60, "summary": summary}]})
        };
        let out = render_list(&item("Pay 42.00 EUR to ACME"));
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .ends_with("Pay 42.00 EUR to ACME"),
            "{out}"
        );
        let out = render_list(&item(&"n".repeat(200)));
        let last = out
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned();
        assert_eq!(last.chars().count(), ACTION_CHARS);
        assert!(last.ends_with('…'));
        let out = render_list(&item("Deploy: m \u{1b}[2J"));
        assert!(
            !out.contains('\u{1b}'),
            "control characters are shown escaped: {out}"
        );
    }

    #[test]
    fn hints_name_the_cursor() {
        assert_eq!(
            continue_hint(&json!({"truncated": null, "next_cursor": null})),
            None
        );
        let h = continue_hint(&json!({"truncated": "limit", "next_cursor": "00ab/req_1"})).unwrap();
        assert!(h.starts_with("more requests match") && h.contains("--cursor 00ab/req_1"));
        let h = continue_hint(&json!({"truncated": "scan_budget", "next_cursor": "00ab/req_2"}))
            .unwrap();
        assert!(h.contains("examining 10000 requests") && h.contains("--cursor 00ab/req_2"));
    }

    #[test]
    fn a_quorum_request_shows_its_approvers_and_approvals() {
        let row = json!({"status": "pending", "approver_id": null, "quorum": 2,
            "approvers": ["apv_t1", "apv_t2", "apv_t3"],
            "approvals": [{"approver_id": "apv_t1", "log_index": 7}]});
        assert_eq!(
            approvers_cell(&row),
            "2 of apv_t1 apv_t2 apv_t3 (1 approved)"
        );
        assert_eq!(approvers_cell(&json!({"approver_id": "apv_a"})), "apv_a");
        let shown = render_show(&json!({
            "request_id": "req_1", "status": "pending",
            "statement": {"policy": {"index": 3, "rule": "payments over 1000", "quorum": 2,
                "approvers": ["apv_t1", "apv_t2"]}},
            "approvals": [{"approver_id": "apv_t1", "log_index": 7}],
        }));
        assert!(
            shown.contains("2 of apv_t1 apv_t2 (policy entry 3, rule payments over 1000)"),
            "{shown}"
        );
        assert!(shown.contains("apv_t1 (log index 7)"), "{shown}");
    }
}
