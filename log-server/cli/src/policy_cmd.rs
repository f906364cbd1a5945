//! `countersign policy check`: reads an approval policy file (`spec/policy.md`), says whether it
//! is valid (with the line at fault when not), summarises it, and explains which rule would
//! apply to a sample request. Offline: it reads files only.
//!
//! `countersign policy show`: the policy in force on a running server (`GET /v1/admin/policy`)
//! or in a stopped server's data directory, summarised the same way.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use countersign_approvals::policy::parse_policy_toml;
use countersign_verifier::{
    validate_authorization_details, Approvers, EvalError, Op, Outcome, ValidatedPolicy,
};
use serde_json::{json, Value};

/// Exit status: the policy is valid (and the sample request was evaluated).
pub const EXIT_OK: i32 = 0;
/// Exit status: the policy is refused, or the policy cannot evaluate the sample request.
pub const EXIT_REFUSED: i32 = 1;
/// Exit status: a file cannot be read, or `--request` is not a request.
pub const EXIT_USAGE: i32 = 2;

/// `countersign policy` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCmd {
    /// Check an approval policy file (spec/policy.md) and summarise it; with --request, explain
    /// which rule would apply to that request. Exit status 0: valid (and the request evaluated);
    /// 1: the file is refused ("FILE:LINE: message") or the policy cannot evaluate the request;
    /// 2: a file cannot be read or --request is malformed.
    Check(CheckArgs),
    /// Show the approval policy in force: its log index, hash, since when, and its rules; or
    /// "no policy in force". From a running server (--url with --token-file: the admin's or an
    /// auditor's token) or a stopped server's data directory (--data-dir). Exit status 0 in
    /// both cases; 2 when the server or the data directory cannot be read.
    Show(ShowArgs),
}

/// `countersign policy show` arguments.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["url", "data_dir"])))]
pub struct ShowArgs {
    /// A running server (with --token-file).
    #[arg(long, requires = "token_file")]
    pub url: Option<String>,
    /// A file holding the admin token or an auditor's token (`countersign auditor add`).
    #[arg(long, requires = "url")]
    pub token_file: Option<PathBuf>,
    /// A stopped server's data directory, or a backup of one.
    #[arg(long, conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object on standard output instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `countersign policy check` arguments.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The policy file (TOML).
    pub file: PathBuf,
    /// A sample request, as JSON or @FILE:
    /// {"client_id": "...", "authorization_details": [...]}.
    #[arg(long)]
    pub request: Option<String>,
    /// Print one JSON object on standard output instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `check` prints and its exit status.
#[derive(Debug)]
pub struct Report {
    /// Exit status ([`EXIT_OK`], [`EXIT_REFUSED`], [`EXIT_USAGE`]).
    pub code: i32,
    /// For standard output.
    pub stdout: String,
    /// For standard error.
    pub stderr: String,
}

/// Runs a `policy` subcommand, prints its report and returns the exit status.
pub async fn run(cmd: PolicyCmd) -> i32 {
    let r = match cmd {
        PolicyCmd::Check(a) => check(&a),
        PolicyCmd::Show(a) => show(&a).await,
    };
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    r.code
}

fn usage(args: &CheckArgs, message: String) -> Report {
    if args.json {
        Report {
            code: EXIT_USAGE,
            stdout: format!("{}\n", json!({"file": args.file, "error": message})),
            stderr: String::new(),
        }
    } else {
        Report {
            code: EXIT_USAGE,
            stdout: String::new(),
            stderr: format!("{message}\n"),
        }
    }
}

/// The sample request: its client and `authorization_details` (an array, or a string holding
/// one, as in a `/bc-authorize` form).
fn read_request(arg: &str) -> Result<(String, Value), String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => arg.to_string(),
    };
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("--request is not JSON: {e}"))?;
    let Some(client) = v.get("client_id").and_then(Value::as_str) else {
        return Err("--request needs a string client_id".into());
    };
    let details = match v.get("authorization_details") {
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|e| format!("--request: authorization_details is not JSON: {e}"))?,
        Some(d) => d.clone(),
        None => return Err("--request needs authorization_details".into()),
    };
    // What /bc-authorize checks before any policy is consulted.
    validate_authorization_details(&details).map_err(|e| format!("--request: {e}"))?;
    Ok((client.to_string(), details))
}

/// Checks the file and evaluates the sample request (see [`PolicyCmd::Check`]).
pub fn check(args: &CheckArgs) -> Report {
    let shown = args.file.display().to_string();
    let text = match read_policy(&args.file) {
        Ok(t) => t,
        Err(e) => return usage(args, format!("{shown}: {e}")),
    };
    let request = match args.request.as_deref().map(read_request).transpose() {
        Ok(r) => r,
        Err(e) => return usage(args, e),
    };
    let policy = match parse_policy_toml(&text) {
        Ok(p) => p,
        Err(e) => {
            let at = e.line.map_or(String::new(), |l| format!(":{l}"));
            return if args.json {
                Report {
                    code: EXIT_REFUSED,
                    stdout: format!(
                        "{}\n",
                        json!({"file": shown, "valid": false, "line": e.line, "error": e.kind.to_string()})
                    ),
                    stderr: String::new(),
                }
            } else {
                Report {
                    code: EXIT_REFUSED,
                    stdout: String::new(),
                    stderr: format!("{shown}{at}: {}\n", e.kind),
                }
            };
        }
    };
    let outcome = request
        .as_ref()
        .map(|(client, details)| policy.evaluate(client, details));
    let code = match outcome {
        Some(Err(_)) => EXIT_REFUSED,
        _ => EXIT_OK,
    };
    let stdout = if args.json {
        let mut v = json!({
            "file": shown,
            "valid": true,
            "sha256": hex::encode(policy.hash()),
            "policy": serde_json::to_value(policy.policy()).unwrap_or(Value::Null),
            "rules": rules_json(&policy),
        });
        if let Some(o) = &outcome {
            v["request"] = outcome_json(o);
        }
        format!("{v}\n")
    } else {
        let mut s = summary(&shown, &policy);
        if let Some(o) = &outcome {
            s.push_str(&explain(o));
        }
        s
    };
    Report {
        code,
        stdout,
        stderr: String::new(),
    }
}

fn read_policy(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

fn op_symbol(op: Op) -> &'static str {
    match op {
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Eq => "=",
        Op::In => "in",
    }
}

fn rules_json(p: &ValidatedPolicy) -> Value {
    p.policy()
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "index": i,
                "name": r.name,
                "quorum": r.quorum,
                "approvers": p.eligible(i).unwrap_or_default(),
            })
        })
        .collect()
}

fn outcome_json(o: &Result<Outcome, EvalError>) -> Value {
    match o {
        Ok(Outcome::NoRuleMatched) => json!({"outcome": "no_rule", "quorum": 1}),
        Ok(Outcome::Matched(m)) => json!({
            "outcome": "matched",
            "rule": m.rule,
            "index": m.index,
            "quorum": m.quorum,
            "approvers": m.approvers,
            "require_uv": m.require_uv,
            "require_attestation": m.require_attestation,
            "max_expiry": m.max_expiry,
        }),
        Err(e) => json!({"outcome": "error", "error": e.to_string()}),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The text summary of a valid policy.
fn summary(file: &str, p: &ValidatedPolicy) -> String {
    let pol = p.policy();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{file}: valid policy, {}, {}",
        plural(pol.groups.len(), "group", "groups"),
        plural(pol.rules.len(), "rule", "rules")
    );
    let _ = writeln!(s, "sha256 {}", hex::encode(p.hash()));
    s.push_str(&rules_text(p));
    s
}

/// The groups, the rules and what applies otherwise, a line each.
fn rules_text(p: &ValidatedPolicy) -> String {
    let pol = p.policy();
    let mut s = String::new();
    for (name, members) in &pol.groups {
        let _ = writeln!(s, "group {name}: {}", members.join(", "));
    }
    for (i, r) in pol.rules.iter().enumerate() {
        let w = &r.when;
        let mut cond = format!("a {} entry", w.kind);
        if let (Some(field), Some(op)) = (&w.field, w.op) {
            let rhs = match op {
                Op::In => format!("[{}]", w.values.clone().unwrap_or_default().join(", ")),
                _ => w.value.clone().unwrap_or_default(),
            };
            let _ = write!(cond, " with {field} {} {rhs}", op_symbol(op));
        }
        if let Some(c) = &w.clients {
            let _ = write!(cond, ", from {}", c.join(" or "));
        }
        let eligible = p.eligible(i).unwrap_or_default();
        let from = match &r.approvers {
            Approvers::Group(g) => format!(" (group {g})"),
            Approvers::Ids(_) => String::new(),
        };
        let mut extra = Vec::new();
        if r.require_uv {
            extra.push("user verification".to_string());
        }
        if r.require_attestation {
            extra.push("attested passkeys".to_string());
        }
        if let Some(e) = r.max_expiry {
            extra.push(format!("expiry at most {e}s"));
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("; requires {}", extra.join(", "))
        };
        let _ = writeln!(
            s,
            "rule {} {:?}: when {cond}: {} of {} approvers{from}: {}{extra}",
            i + 1,
            r.name,
            r.quorum,
            eligible.len(),
            eligible.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "otherwise: the login_hint approver alone (quorum 1); rules are tried in order, the first match applies"
    );
    s
}

/// The text explanation of a sample request's outcome.
fn explain(o: &Result<Outcome, EvalError>) -> String {
    match o {
        Ok(Outcome::NoRuleMatched) => {
            "request: no rule applies: the login_hint approver alone (quorum 1)\n".into()
        }
        Ok(Outcome::Matched(m)) => format!(
            "request: rule {} {:?} applies: {} of {}\n",
            m.index + 1,
            m.rule,
            m.quorum,
            m.approvers.join(", ")
        ),
        Err(e) => format!("request: refused: {e}\n"),
    }
}

/// The policy in force, as `show` found it.
struct InForce {
    index: u64,
    sha256: String,
    time_ms: u64,
    policy: ValidatedPolicy,
}

fn show_failed(args: &ShowArgs, message: String) -> Report {
    if args.json {
        Report {
            code: EXIT_USAGE,
            stdout: format!("{}\n", json!({ "error": message })),
            stderr: String::new(),
        }
    } else {
        Report {
            code: EXIT_USAGE,
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
        }
    }
}

/// Shows the policy in force (see [`PolicyCmd::Show`]).
pub async fn show(args: &ShowArgs) -> Report {
    let found = match (&args.url, &args.token_file, &args.data_dir) {
        (Some(url), Some(token_file), _) => in_force_remote(url, token_file).await,
        (None, _, Some(dir)) => in_force_local(dir),
        _ => Err("give --url with --token-file, or --data-dir".to_string()),
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return show_failed(args, e),
    };
    let stdout = match (&found, args.json) {
        (None, true) => format!("{}\n", json!({ "in_force": false })),
        (None, false) => "no policy in force\n".to_string(),
        (Some(f), true) => format!(
            "{}\n",
            json!({
                "in_force": true,
                "index": f.index,
                "sha256": f.sha256,
                "time_ms": f.time_ms,
                "policy": serde_json::to_value(f.policy.policy()).unwrap_or(Value::Null),
                "rules": rules_json(&f.policy),
            })
        ),
        (Some(f), false) => {
            let pol = f.policy.policy();
            let mut s = format!(
                "policy in force: log index {}, since {}\nsha256 {}\n{}, {}\n",
                f.index,
                crate::times::rfc3339(f.time_ms / 1000),
                f.sha256,
                plural(pol.groups.len(), "group", "groups"),
                plural(pol.rules.len(), "rule", "rules")
            );
            s.push_str(&rules_text(&f.policy));
            s
        }
    };
    Report {
        code: EXIT_OK,
        stdout,
        stderr: String::new(),
    }
}

/// The policy of a policy entry, checked to be the canonical form of a valid policy whose hash
/// is `sha256`.
fn entry_policy(what: &str, bytes: &[u8], sha256: &str) -> Result<ValidatedPolicy, String> {
    let policy = ValidatedPolicy::from_json(bytes)
        .map_err(|e| format!("{what} does not hold a valid policy: {e}"))?;
    if policy.canonical_json() != bytes {
        return Err(format!("{what} is not the policy's canonical form"));
    }
    let hash = hex::encode(policy.hash());
    if hash != sha256 {
        return Err(format!(
            "{what} has sha256 {hash}, not the {sha256} it is said to have"
        ));
    }
    Ok(policy)
}

/// `GET URL/v1/admin/policy` with the token of `token_file`.
async fn in_force_remote(url: &str, token_file: &Path) -> Result<Option<InForce>, String> {
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("reading the token file {}: {e}", token_file.display()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", token_file.display()));
    }
    let endpoint = format!("{}/v1/admin/policy", url.trim_end_matches('/'));
    let http = crate::admin_client::http_client().map_err(|e| e.to_string())?;
    let resp = http
        .get(&endpoint)
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("GET {endpoint}: {e} (is the server running?)"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("GET {endpoint}: {e}"))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status == reqwest::StatusCode::NOT_FOUND && body["error"] == "no_policy" {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!("GET {endpoint}: {status}: {}", text.trim()));
    }
    let bad = |what: &str| format!("GET {endpoint}: the answer has no {what}");
    let index = body["index"].as_u64().ok_or_else(|| bad("index"))?;
    let time_ms = body["time_ms"].as_u64().ok_or_else(|| bad("time_ms"))?;
    let sha256 = body["sha256"].as_str().ok_or_else(|| bad("sha256"))?;
    if !body["policy"].is_object() {
        return Err(bad("policy object"));
    }
    let canonical = countersign_verifier::canonical_json(&body["policy"])
        .map_err(|e| format!("GET {endpoint}: the policy: {e}"))?;
    let policy = entry_policy("the server's policy", &canonical, sha256)?;
    Ok(Some(InForce {
        index,
        sha256: sha256.to_owned(),
        time_ms,
        policy,
    }))
}

/// The policy a stopped server's data directory has in force: its record, checked against the
/// log entry it names.
fn in_force_local(dir: &Path) -> Result<Option<InForce>, String> {
    use countersign_approvals::policy::serve::{PolicyRecord, POLICY_RECORD_KEY};
    let data = countersign_approvals::audit::open_data_dir(dir).map_err(|e| {
        format!(
            "opening the data directory {}: {e} (is a server running on it? ask it with --url \
             instead)",
            dir.display()
        )
    })?;
    let record: Option<PolicyRecord> = data
        .ciba
        .get_blocking(POLICY_RECORD_KEY)
        .map_err(|e| format!("reading the policy record: {e}"))?;
    let Some(r) = record.filter(|r| r.in_force) else {
        return Ok(None);
    };
    let what = format!("log entry {}", r.index);
    let bytes = data
        .log
        .entry(r.index)
        .map_err(|e| format!("reading {what}: {e}"))?
        .ok_or_else(|| format!("the policy record names {what}, which the log does not hold"))?;
    let entry = countersign_verifier::Entry::decode(&bytes)
        .map_err(|e| format!("{what} does not decode: {e}"))?;
    let countersign_verifier::Entry::Policy(p) = entry else {
        return Err(format!(
            "the policy record names {what}, a {} entry, not a policy entry",
            entry.kind_name()
        ));
    };
    let policy = entry_policy(&what, &p.policy, &r.sha256)?;
    Ok(Some(InForce {
        index: r.index,
        sha256: r.sha256,
        time_ms: p.time_ms,
        policy,
    }))
}
