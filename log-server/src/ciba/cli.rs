//! `countersign client ...` and `countersign approver ...`: admin commands that work while the
//! server runs, over the admin API with the token from `<data-dir>/admin.token`.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::records::{AuthMethod, DeliveryMode};

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
        #[arg(long, value_enum, default_value = "client_secret_basic")]
        auth_method: AuthMethod,
        /// Token delivery mode.
        #[arg(long, value_enum, default_value = "poll")]
        mode: DeliveryMode,
        /// Client notification endpoint (ping and push).
        #[arg(long)]
        notification_endpoint: Option<String>,
        /// Public keys of a private_key_jwt client: a JWKS as JSON, or the path of a file
        /// holding one.
        #[arg(long)]
        jwks: Option<String>,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// List clients.
    List {
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
    /// Register an approver and print a one-time enrolment link.
    Add {
        /// Opaque approver id (what the log records; never an e-mail).
        id: String,
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
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// Disable an approver (no sign-in, no new requests, no decisions).
    Disable {
        /// Approver id.
        id: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
    /// Print a new one-time enrolment link for an approver.
    Link {
        /// Approver id.
        id: String,
        /// The server.
        #[command(flatten)]
        target: Target,
    },
}

/// A failed admin command; the message says what to fix.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

async fn call(
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CliError> {
    let token_path = t.data_dir.join(crate::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path).map_err(|e| {
        CliError(format!(
            "cannot read the admin token {}: {e}",
            token_path.display()
        ))
    })?;
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", t.url.trim_end_matches('/')))
        .bearer_auth(token.trim());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| CliError(format!("cannot reach {}: {e}", t.url)))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(CliError(format!("the server refused ({status}): {text}")));
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| CliError(format!("unexpected answer: {e}")))
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
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
            target,
        } => {
            let jwks = match jwks {
                None => None,
                Some(j) => {
                    let text = if j.trim_start().starts_with('{') {
                        j
                    } else {
                        std::fs::read_to_string(&j)
                            .map_err(|e| CliError(format!("cannot read --jwks {j}: {e}")))?
                    };
                    Some(
                        serde_json::from_str::<Value>(&text)
                            .map_err(|e| CliError(format!("--jwks is not JSON: {e}")))?,
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
                })),
            )
            .await?;
            print(&v);
        }
        ClientCmd::List { target } => {
            print(&call(&target, reqwest::Method::GET, "/v1/admin/clients", None).await?)
        }
        ClientCmd::Remove { id, target } => {
            call(
                &target,
                reqwest::Method::DELETE,
                &format!("/v1/admin/clients/{id}"),
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
            let v = call(
                &target,
                reqwest::Method::POST,
                "/v1/admin/approvers",
                Some(json!({"approver_id": id, "email": email, "name": name})),
            )
            .await?;
            println!(
                "approver {id} added; one-time enrolment link (expires at {}):\n{}",
                v["expires_at"],
                v["enrolment_url"].as_str().unwrap_or_default()
            );
        }
        ApproverCmd::List { target } => {
            print(&call(&target, reqwest::Method::GET, "/v1/admin/approvers", None).await?)
        }
        ApproverCmd::Disable { id, target } => {
            call(
                &target,
                reqwest::Method::POST,
                &format!("/v1/admin/approvers/{id}/disable"),
                None,
            )
            .await?;
            println!("approver {id} disabled");
        }
        ApproverCmd::Link { id, target } => {
            let v = call(
                &target,
                reqwest::Method::POST,
                &format!("/v1/admin/approvers/{id}/enrolment-link"),
                None,
            )
            .await?;
            println!("{}", v["enrolment_url"].as_str().unwrap_or_default());
        }
    }
    Ok(())
}
