//! `countersign client ...`, `countersign approver ...`, `countersign submitter ...` and
//! `countersign auditor ...`: admin
//! commands that work while the server runs, over the admin API with the token from
//! `<data-dir>/admin.token`.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::text::table;
use crate::times::rfc3339_of;

/// Where the server is and where its admin token lives.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// URL of the running server.
    #[arg(long, env = "COUNTERSIGN_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Data directory holding admin.token.
    #[arg(
        long,
        env = "COUNTERSIGN_DATA_DIR",
        default_value = "./countersign-data"
    )]
    pub data_dir: PathBuf,
}

/// `countersign client`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum ClientCmd {
    /// Register a CIBA client (agent).
    Add {
        /// Opaque client id.
        id: String,
        /// Client secret; when omitted a random one is generated and printed once.
        #[arg(long)]
        secret: Option<String>,
        /// Authentication method at the CIBA endpoints.
        #[arg(
            long,
            default_value = "client_secret_basic",
            value_parser = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
        )]
        auth_method: String,
        /// Token delivery mode.
        #[arg(long, default_value = "poll", value_parser = ["poll", "ping", "push"])]
        mode: String,
        /// Client notification endpoint (ping and push).
        #[arg(long)]
        notification_endpoint: Option<String>,
        /// Public keys of a private_key_jwt client: a JWKS as JSON, or the path of a file
        /// holding one.
        #[arg(long)]
        jwks: Option<String>,
        /// An approver this client may ask (repeat for several); without any, the client may
        /// ask every approver.
        #[arg(long = "approver", value_name = "APPROVER_ID")]
        approvers: Vec<String>,
        /// Print the API's JSON (times in Unix seconds).
        #[arg(long)]
        json: bool,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// List clients.
    List {
        /// Print the API's JSON (times in Unix seconds).
        #[arg(long)]
        json: bool,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// Remove a client.
    Remove {
        /// Client id.
        id: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
}

/// `countersign approver`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum ApproverCmd {
    /// Register an approver and print its id and a one-time enrolment link.
    Add {
        /// Approver id (what the public log records). Leave it out: the server generates an
        /// opaque one (`apv_` and 128 random bits). An id that contains the approver's e-mail
        /// name or a word of their name is accepted with a warning.
        id: Option<String>,
        /// E-mail address (a login_hint may use it).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// List approvers.
    List {
        /// Print the API's JSON (times in Unix seconds).
        #[arg(long)]
        json: bool,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// Disable an approver (no sign-in, no new requests, no decisions) and log a revocation
    /// (reason `disabled`) for each of their passkeys.
    Disable {
        /// Approver id.
        id: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// Revoke one passkey of an approver: log its revocation (after which the log refuses its
    /// decisions) and remove it, so it can no longer sign in or approve.
    RevokePasskey {
        /// Approver id.
        approver_id: String,
        /// Credential id (base64url, as `approver list --json` shows it).
        credential_id: String,
        /// Why, as logged.
        #[arg(long, default_value = "removed", value_parser = ["lost", "compromised", "removed"])]
        reason: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// Print a new one-time enrolment link for an approver.
    Link {
        /// Approver id.
        id: String,
        /// A recovery link, for an approver who lost their passkey: it may add a passkey
        /// without the approver being signed in (a plain link adds one only to an approver
        /// with none, or in a browser signed in as them). Every new link voids older ones.
        #[arg(long)]
        recovery: bool,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
}

/// `countersign submitter`: who may submit signed decisions to `POST /v1/log/decisions`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum SubmitterCmd {
    /// Create a submitter token and print it once (only its hash is stored).
    Add {
        /// A name for the submitter (1 to 128 characters), used to list and revoke it.
        name: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// List submitter tokens: names and fingerprints (first 8 hex digits of SHA-256(token)).
    List {
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// Revoke every token of a submitter; they are refused from the next request on.
    Revoke {
        /// The submitter's name.
        name: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
}

/// `countersign auditor`: who may read the audit trail (`GET /v1/audit/events`,
/// `GET /v1/audit/statements`, `GET /v1/admin/evidence/REQUEST_ID`) and nothing else.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum AuditorCmd {
    /// Create an auditor token and print it once (only its hash is stored).
    Add {
        /// A name for the auditor (1 to 128 characters), used to list and revoke it.
        name: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// List auditor tokens: names, fingerprints (first 8 hex digits of SHA-256(token)) and
    /// when they were made.
    List {
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// Revoke every token of an auditor; they are refused from the next request on.
    Revoke {
        /// The auditor's name.
        name: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
}

/// A failed admin command; the message says what to fix.
#[derive(Debug)]
#[non_exhaustive]
pub enum CliError {
    /// The admin token could not be read (not on this machine, or another --data-dir).
    NoToken {
        /// Where it was looked for.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// Nothing answered at the URL (no server running there).
    Unreachable {
        /// The server's URL.
        url: String,
        /// The connection error.
        source: reqwest::Error,
    },
    /// The request failed on its way (after connecting).
    Http(reqwest::Error),
    /// The server answered with an error.
    Refused {
        /// Its status.
        status: reqwest::StatusCode,
        /// Its body (the API's JSON error).
        body: String,
    },
    /// The server's answer is not the JSON expected.
    BadAnswer(serde_json::Error),
    /// An argument is not usable; the text says which and why.
    Input(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::NoToken { path, source } => write!(
                f,
                "cannot read the admin token {}: {source} (run this on the server's machine, with \
                 its --data-dir)",
                path.display()
            ),
            CliError::Unreachable { url, source } => {
                write!(f, "no server answers at {url} (is it running?): {source}")
            }
            CliError::Http(e) => write!(f, "the request failed: {e}"),
            CliError::Refused { status, body } => {
                write!(f, "the server refused ({status}): {body}")
            }
            CliError::BadAnswer(e) => write!(f, "unexpected answer: {e}"),
            CliError::Input(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for CliError {}

/// The admin commands' HTTP client. Besides the public roots it trusts the PEM certificates of
/// the file `SSL_CERT_FILE` names, when set (the variable OpenSSL, curl and Python read), so the
/// commands reach a server whose `--tls-cert` a private CA issued.
pub fn http_client() -> Result<reqwest::Client, CliError> {
    let mut b = reqwest::Client::builder();
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        let bad = |why: String| {
            CliError::Input(format!(
                "SSL_CERT_FILE={}: {why}",
                std::path::Path::new(&file).display()
            ))
        };
        let pem = std::fs::read(&file).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(CliError::Http)
}

/// Sends one admin request (the admin token from `<data-dir>/admin.token` as its bearer token)
/// and returns the JSON answer (`null` for an empty one).
pub async fn call(
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CliError> {
    let token_path = t.data_dir.join(countersign_log::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path).map_err(|source| CliError::NoToken {
        path: token_path.clone(),
        source,
    })?;
    let mut req = http_client()?
        .request(method, format!("{}{path}", t.url.trim_end_matches('/')))
        .bearer_auth(token.trim());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|source| {
        if source.is_connect() {
            CliError::Unreachable {
                url: t.url.clone(),
                source,
            }
        } else {
            CliError::Http(source)
        }
    })?;
    let status = resp.status();
    let text = resp.text().await.map_err(CliError::Http)?;
    if !status.is_success() {
        return Err(CliError::Refused { status, body: text });
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(CliError::BadAnswer)
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A JSON value as a table cell: a string's text, `-` for null, the JSON of anything else.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// What `client add` prints: the client as registered, and a generated secret, which is shown
/// this once.
fn client_added(v: &Value) -> String {
    let mut out = format!(
        "client {} added at {}: {}, {} delivery",
        v["client_id"].as_str().unwrap_or("?"),
        rfc3339_of(&v["created_at"]),
        v["auth_method"].as_str().unwrap_or("?"),
        v["mode"].as_str().unwrap_or("?"),
    );
    if let Some(e) = v["notification_endpoint"].as_str() {
        out.push_str(&format!(", notifications to {e}"));
    }
    out.push('\n');
    if let Some(secret) = v["client_secret"].as_str() {
        out.push_str(&format!(
            "client secret (generated; shown this once, store it now): {secret}\n"
        ));
    }
    out
}

/// `GET /v1/admin/clients` as a table.
pub fn clients_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["clients"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|c| {
                    vec![
                        cell(&c["client_id"]),
                        cell(&c["auth_method"]),
                        cell(&c["mode"]),
                        cell(&c["notification_endpoint"]),
                        rfc3339_of(&c["created_at"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "no clients\n".to_owned();
    }
    table(
        &[
            "CLIENT ID",
            "AUTH METHOD",
            "MODE",
            "NOTIFICATION ENDPOINT",
            "REGISTERED",
        ],
        &rows,
    )
}

/// `GET /v1/admin/approvers` as a table.
pub fn approvers_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["approvers"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|a| {
                    vec![
                        cell(&a["approver_id"]),
                        cell(&a["email"]),
                        cell(&a["name"]),
                        if a["disabled"] == true {
                            "disabled".to_owned()
                        } else {
                            "active".to_owned()
                        },
                        a["credentials"].as_array().map_or(0, Vec::len).to_string(),
                        rfc3339_of(&a["created_at"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "no approvers\n".to_owned();
    }
    table(
        &[
            "APPROVER ID",
            "E-MAIL",
            "NAME",
            "STATE",
            "PASSKEYS",
            "REGISTERED",
        ],
        &rows,
    )
}

/// Runs `countersign client ...`.
pub async fn run_client(cmd: ClientCmd) -> Result<(), CliError> {
    match cmd {
        ClientCmd::Add {
            id,
            secret,
            auth_method,
            mode,
            notification_endpoint,
            jwks,
            approvers,
            json: as_json,
            target,
        } => {
            let jwks = match jwks {
                None => None,
                Some(j) => {
                    let text = if j.trim_start().starts_with('{') {
                        j
                    } else {
                        std::fs::read_to_string(&j)
                            .map_err(|e| CliError::Input(format!("cannot read --jwks {j}: {e}")))?
                    };
                    Some(
                        serde_json::from_str::<Value>(&text)
                            .map_err(|e| CliError::Input(format!("--jwks is not JSON: {e}")))?,
                    )
                }
            };
            let v = call(
                &target,
                reqwest::Method::POST,
                "/v1/admin/clients",
                Some(json!({
                    "client_id": id,
                    "secret": secret,
                    "auth_method": auth_method,
                    "mode": mode,
                    "notification_endpoint": notification_endpoint,
                    "jwks": jwks,
                    "approvers": (!approvers.is_empty()).then_some(approvers),
                })),
            )
            .await?;
            if as_json {
                print(&v);
            } else {
                print!("{}", client_added(&v));
            }
        }
        ClientCmd::List { json, target } => {
            let v = call(&target, reqwest::Method::GET, "/v1/admin/clients", None).await?;
            if json {
                print(&v);
            } else {
                print!("{}", clients_table(&v));
            }
        }
        ClientCmd::Remove { id, target } => {
            call(
                &target,
                reqwest::Method::DELETE,
                &path_of(&["v1", "admin", "clients", &id])?,
                None,
            )
            .await?;
            println!("client {id} removed");
        }
    }
    Ok(())
}

/// Runs `countersign approver ...`.
pub async fn run_approver(cmd: ApproverCmd) -> Result<(), CliError> {
    match cmd {
        ApproverCmd::Add {
            id,
            email,
            name,
            target,
        } => {
            let mut body = json!({"email": email, "name": name});
            if let Some(id) = id {
                body["approver_id"] = json!(id);
            }
            let v = call(
                &target,
                reqwest::Method::POST,
                "/v1/admin/approvers",
                Some(body),
            )
            .await?;
            if let Some(w) = v["warning"].as_str() {
                eprintln!("warning: {w}");
            }
            println!(
                "approver {} added; one-time enrolment link (expires at {}):\n{}",
                v["approver_id"].as_str().unwrap_or_default(),
                rfc3339_of(&v["expires_at"]),
                v["enrolment_url"].as_str().unwrap_or_default()
            );
        }
        ApproverCmd::List { json, target } => {
            let v = call(&target, reqwest::Method::GET, "/v1/admin/approvers", None).await?;
            if json {
                print(&v);
            } else {
                print!("{}", approvers_table(&v));
            }
        }
        ApproverCmd::Disable { id, target } => {
            call(
                &target,
                reqwest::Method::POST,
                &path_of(&["v1", "admin", "approvers", &id, "disable"])?,
                None,
            )
            .await?;
            println!("approver {id} disabled");
        }
        ApproverCmd::RevokePasskey {
            approver_id,
            credential_id,
            reason,
            target,
        } => {
            let v = call(
                &target,
                reqwest::Method::POST,
                &path_of(&["v1", "admin", "approvers", &approver_id, "revoke-passkey"])?,
                Some(json!({"credential_id": credential_id, "reason": reason})),
            )
            .await?;
            println!(
                "passkey {credential_id} of {approver_id} revoked ({reason}); log entry {}",
                cell(&v["revoked"][0]["log_index"])
            );
        }
        ApproverCmd::Link {
            id,
            recovery,
            target,
        } => {
            let v = call(
                &target,
                reqwest::Method::POST,
                &path_of(&["v1", "admin", "approvers", &id, "enrolment-link"])?,
                Some(json!({"recovery": recovery})),
            )
            .await?;
            println!(
                "{} enrolment link for {id} (expires at {}; older links no longer work):\n{}",
                if recovery { "recovery" } else { "one-time" },
                rfc3339_of(&v["expires_at"]),
                v["enrolment_url"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Runs `countersign submitter ...`.
pub async fn run_submitter(cmd: SubmitterCmd) -> Result<(), CliError> {
    run_tokens(
        "submitter",
        "submitters",
        match cmd {
            SubmitterCmd::Add { name, target } => TokenOp::Add(name, target),
            SubmitterCmd::List { target } => TokenOp::List(target),
            SubmitterCmd::Revoke { name, target } => TokenOp::Revoke(name, target),
        },
    )
    .await
}

/// Runs `countersign auditor ...`.
pub async fn run_auditor(cmd: AuditorCmd) -> Result<(), CliError> {
    run_tokens(
        "auditor",
        "auditors",
        match cmd {
            AuditorCmd::Add { name, target } => TokenOp::Add(name, target),
            AuditorCmd::List { target } => TokenOp::List(target),
            AuditorCmd::Revoke { name, target } => TokenOp::Revoke(name, target),
        },
    )
    .await
}

/// What `countersign submitter` and `countersign auditor` do, to either kind of token holder.
enum TokenOp {
    Add(String, Target),
    List(Target),
    Revoke(String, Target),
}

/// Runs `op` on the token holders of `kind` at `/v1/admin/<collection>`.
async fn run_tokens(kind: &str, collection: &str, op: TokenOp) -> Result<(), CliError> {
    let base = format!("/v1/admin/{collection}");
    match op {
        TokenOp::Add(name, target) => {
            let v = call(
                &target,
                reqwest::Method::POST,
                &base,
                Some(json!({ "name": name })),
            )
            .await?;
            let fp = v["fingerprint"]
                .as_str()
                .map(|f| format!(" (fingerprint {f})"))
                .unwrap_or_default();
            eprintln!("{kind} {name} added{fp}; its token (shown once, keep it secret):");
            println!("{}", v["token"].as_str().unwrap_or_default());
        }
        TokenOp::List(target) => print(&call(&target, reqwest::Method::GET, &base, None).await?),
        TokenOp::Revoke(name, target) => {
            let v = call(
                &target,
                reqwest::Method::DELETE,
                &path_of(&["v1", "admin", collection, &name])?,
                None,
            )
            .await?;
            let n = v["revoked"].as_array().map_or(0, Vec::len);
            println!("{kind} {name} revoked ({n} token(s))");
        }
    }
    Ok(())
}

/// The URL path made of `segments`, each percent-encoded as one path segment, so an id or name
/// with a `/`, `?` or space names that one record (the server decodes path parameters).
pub(crate) fn path_of(segments: &[&str]) -> Result<String, CliError> {
    let mut u = reqwest::Url::parse("http://localhost/")
        .map_err(|e| CliError::Input(format!("building a URL: {e}")))?;
    u.path_segments_mut()
        .map_err(|()| CliError::Input("building a URL".into()))?
        .clear()
        .extend(segments);
    Ok(u.path().to_owned())
}

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(
            path_of(&["v1", "admin", "submitters", "agent-1.x_y~"]).ok(),
            Some("/v1/admin/submitters/agent-1.x_y~".to_owned())
        );
        assert_eq!(
            path_of(&["s", "a b/c?"]).ok(),
            Some("/s/a%20b%2Fc%3F".to_owned())
        );
        assert_eq!(path_of(&["é"]).ok(), Some("/%C3%A9".to_owned()));
    }
}
