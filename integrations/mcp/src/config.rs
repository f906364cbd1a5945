//! Command-line flags and environment variables, and the configuration they become.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use countersign_verifier::VerifierKey;

/// The environment variable holding the client secret itself (not a file name).
pub const SECRET_ENV: &str = "COUNTERSIGN_CLIENT_SECRET";
/// Longest client secret read from a file or the environment (the server takes 256 characters).
const MAX_SECRET_BYTES: usize = 1024;

/// `countersign-mcp`: an MCP server that asks a person to approve an agent's action through
/// Countersign, and verifies the evidence of the decision.
#[derive(Parser, Debug)]
#[command(
    name = "countersign-mcp",
    version,
    about = "MCP server (stdio, or streamable HTTP at /mcp) that asks a person to approve an \
             agent's action through Countersign (OpenID CIBA, poll mode)",
    after_help = "The client secret is read from --client-secret-file, or else from the \
                  COUNTERSIGN_CLIENT_SECRET environment variable (the secret itself). It is \
                  never printed or logged. Logs go to standard error; in stdio mode standard \
                  output carries the MCP messages."
)]
pub struct Args {
    /// Base URL of the Countersign server (its CIBA endpoints are /bc-authorize and /token).
    #[arg(long, env = "COUNTERSIGN_URL")]
    pub url: String,
    /// This agent's client id at the Countersign server (a poll-mode client).
    #[arg(long, env = "COUNTERSIGN_CLIENT_ID")]
    pub client_id: String,
    /// File holding the client secret (surrounding white space is ignored).
    #[arg(long, env = "COUNTERSIGN_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// How the client authenticates: the method it was registered with.
    #[arg(long, env = "COUNTERSIGN_AUTH_METHOD", value_enum, default_value_t = AuthMethod::ClientSecretBasic)]
    pub auth_method: AuthMethod,
    /// Serve MCP over streamable HTTP at http://ADDR/mcp instead of stdio (port 0: any free
    /// port; the bound address is printed on standard error).
    #[arg(long, env = "COUNTERSIGN_MCP_HTTP")]
    pub http: Option<SocketAddr>,
    /// Host names (or host:port) accepted in the Host header in HTTP mode (repeatable); the
    /// default accepts loopback names only, against DNS rebinding.
    #[arg(
        long = "allowed-host",
        env = "COUNTERSIGN_MCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// The log's verifier key (`<name>+<hex id>+<base64>`) that evidence must be signed with.
    /// Without it, verify_evidence fetches the key from the server's /v1/log/vkey and says so.
    #[arg(long, env = "COUNTERSIGN_LOG_KEY")]
    pub log_key: Option<String>,
    /// The WebAuthn RP ID the approval must have been made for (pins the relying party in
    /// verify_evidence; without it or --origin the bundle's own relying party is accepted, and
    /// the verdict says so).
    #[arg(long, env = "COUNTERSIGN_RP_ID")]
    pub rp_id: Option<String>,
    /// The origin the approval must have been made on (pins the relying party).
    #[arg(long, env = "COUNTERSIGN_ORIGIN")]
    pub origin: Option<String>,
    /// The MCP client's user is the approver (a person approving their own agent's actions):
    /// offer them the approval page through URL-mode elicitation (`elicitation/create`, mode
    /// url) when the client declares it.
    #[arg(long, env = "COUNTERSIGN_MCP_OFFER_APPROVAL_PAGE")]
    pub offer_approval_page: bool,
}

/// Client authentication at the token endpoint (RFC 6749 section 2.3.1; OpenID Connect Core
/// section 9). The server insists on the method the client was registered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// HTTP Basic with the form-encoded id and secret.
    #[value(name = "client_secret_basic")]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    #[value(name = "client_secret_post")]
    ClientSecretPost,
}

/// The client secret. Its `Debug` is redacted, and it has no `Display`, so it cannot reach a
/// log line or an error message by accident.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// What the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Countersign base URL, without a trailing slash.
    pub url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub secret: ClientSecret,
    /// How to present it.
    pub auth_method: AuthMethod,
    /// A pinned log key, if given.
    pub log_key: Option<VerifierKey>,
    /// A pinned RP ID, if given.
    pub rp_id: Option<String>,
    /// A pinned origin, if given.
    pub origin: Option<String>,
    /// Offer the approval page by URL-mode elicitation.
    pub offer_approval_page: bool,
}

/// A configuration that cannot run, in words the operator can act on (never the secret).
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The URL is not http(s)://host...
    BadUrl,
    /// No client id.
    NoClientId,
    /// Neither the file nor the environment variable gave a secret.
    NoSecret,
    /// The secret file could not be read.
    SecretFile(String),
    /// The secret is empty, too long or holds control characters.
    BadSecret,
    /// `--log-key` is not a verifier key.
    BadLogKey(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadUrl => {
                f.write_str("--url must be an http:// or https:// URL of the Countersign server")
            }
            ConfigError::NoClientId => f.write_str("--client-id (COUNTERSIGN_CLIENT_ID) is empty"),
            ConfigError::NoSecret => write!(
                f,
                "no client secret: give --client-secret-file FILE or set {SECRET_ENV}"
            ),
            ConfigError::SecretFile(why) => write!(f, "cannot read the client secret file: {why}"),
            ConfigError::BadSecret => write!(
                f,
                "the client secret must be 1 to {MAX_SECRET_BYTES} bytes without control characters"
            ),
            ConfigError::BadLogKey(why) => write!(f, "--log-key is not a verifier key: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Args {
    /// The configuration, with the secret from the file if one is named, else from
    /// `env_secret` (the value of [`SECRET_ENV`]).
    pub fn into_config(self, env_secret: Option<String>) -> Result<Config, ConfigError> {
        let url = self.url.trim().trim_end_matches('/').to_owned();
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(ConfigError::BadUrl);
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::NoClientId);
        }
        let raw = match (&self.client_secret_file, env_secret) {
            (Some(path), _) => std::fs::read_to_string(path)
                // The path is the operator's own; the error text names no secret.
                .map_err(|e| ConfigError::SecretFile(format!("{}: {e}", path.display())))?,
            (None, Some(s)) => s,
            (None, None) => return Err(ConfigError::NoSecret),
        };
        let secret = raw.trim();
        if secret.is_empty()
            || secret.len() > MAX_SECRET_BYTES
            || secret.chars().any(char::is_control)
        {
            return Err(ConfigError::BadSecret);
        }
        let log_key = self
            .log_key
            .as_deref()
            .map(|k| {
                VerifierKey::parse(k.trim()).map_err(|e| ConfigError::BadLogKey(e.to_string()))
            })
            .transpose()?;
        Ok(Config {
            url,
            client_id: self.client_id.trim().to_owned(),
            secret: ClientSecret(secret.to_owned()),
            auth_method: self.auth_method,
            log_key,
            rp_id: self.rp_id.filter(|s| !s.is_empty()),
            origin: self.origin.filter(|s| !s.is_empty()),
            offer_approval_page: self.offer_approval_page,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec![
            "countersign-mcp",
            "--url",
            "http://127.0.0.1:8080/",
            "--client-id",
            "agent",
        ];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn secret_from_the_environment_and_trailing_slash_dropped() {
        let c = args(&[]).into_config(Some("s3cret\n".into())).unwrap();
        assert_eq!(c.url, "http://127.0.0.1:8080");
        assert_eq!(c.secret.expose(), "s3cret");
        assert_eq!(c.auth_method, AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn secret_file_wins_over_the_environment() {
        let dir = std::env::temp_dir().join(format!("csmcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let c = args(&["--client-secret-file", f.to_str().unwrap()])
            .into_config(Some("from-env".into()))
            .unwrap();
        assert_eq!(c.secret.expose(), "from-file");
        let missing = dir.join("missing");
        let e = args(&["--client-secret-file", missing.to_str().unwrap()])
            .into_config(Some("from-env".into()))
            .unwrap_err();
        assert!(matches!(e, ConfigError::SecretFile(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_cannot_run() {
        assert_eq!(
            args(&[]).into_config(None).unwrap_err(),
            ConfigError::NoSecret
        );
        assert_eq!(
            args(&[]).into_config(Some("  \n".into())).unwrap_err(),
            ConfigError::BadSecret
        );
        assert_eq!(
            args(&[]).into_config(Some("a\u{7}b".into())).unwrap_err(),
            ConfigError::BadSecret
        );
        for url in ["ftp://x", "127.0.0.1:8080", "http://", "https:///x"] {
            let a = Args::try_parse_from(["countersign-mcp", "--url", url, "--client-id", "agent"])
                .unwrap();
            assert_eq!(
                a.into_config(Some("s".into())).unwrap_err(),
                ConfigError::BadUrl,
                "{url}"
            );
        }
        let e = args(&["--log-key", "not-a-key"])
            .into_config(Some("s".into()))
            .unwrap_err();
        assert!(matches!(e, ConfigError::BadLogKey(_)));
        assert!(Args::try_parse_from([
            "countersign-mcp",
            "--url",
            "http://h",
            "--client-id",
            "a",
            "--auth-method",
            "private_key_jwt"
        ])
        .is_err());
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let c = args(&["--auth-method", "client_secret_post"])
            .into_config(Some("hunter2-very-secret".into()))
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(c.auth_method, AuthMethod::ClientSecretPost);
        let e = format!("{}", ConfigError::BadSecret);
        assert!(!e.contains("hunter2"));
    }
}
