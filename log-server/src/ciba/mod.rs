//! The human approval front end: OpenID CIBA Core 1.0 (poll, ping and push) on top of the log.
//!
//! An agent (a CIBA client) asks at `/bc-authorize`; the server builds the approval
//! [`Statement`](countersign_verifier::Statement), draws a 32-byte nonce and keeps the pending
//! request in the `ciba` column family; the approver signs `nonce || SHA-256(statement)` with a
//! passkey on the approval pages ([`crate::webauthn_ceremony`], [`crate::approval_ui`]); the
//! decision is appended to the log, and only then does the client get a token bound to the
//! statement ([`tokens`]). Everything fails closed: any error leaves the request undecided or
//! denied, never approved.
//!
//! Layering: this module uses the log only through [`crate::LogHandle`] and the store's
//! read/write primitives; the verifier crate does every statement, WebAuthn and proof check.

pub mod admin_api;
pub mod cleanup;
pub mod cli;
pub mod clients;
pub mod endpoints;
pub mod metrics;
pub mod records;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rand::RngCore;
use serde_json::json;
use tokio::sync::broadcast;

use crate::api::AppState;
use crate::storage::StorageError;
use crate::InitError;

pub use records::CibaStore;

/// base64url without padding, the encoding of every random id and WebAuthn field here.
pub(crate) const B64URL: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Standard base64 with padding (HTTP Basic).
pub(crate) const B64STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Draws `N` random bytes from the OS.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    crate::sequencer::now_ms() / 1000
}

/// A secret string (client secret, `auth_req_id`, notification token, session, link token).
/// `Debug` is redacted so a secret never reaches a log line by accident.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// 256 random bits, base64url.
    pub fn generate() -> Self {
        Secret(B64URL.encode(random_bytes::<32>()))
    }

    /// The secret text, for handing it to its owner once or sending it to its endpoint.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the secret: the lookup key and stored form of high-entropy secrets.
    pub fn sha256(&self) -> [u8; 32] {
        countersign_verifier::sha256(self.0.as_bytes())
    }
}

/// Longest wait between two attempts of a delivery.
pub const MAX_DELIVERY_BACKOFF: Duration = Duration::from_secs(300);

/// How the front end behaves (what `countersign serve` flags become).
#[derive(Clone, Debug)]
pub struct CibaConfig {
    /// The issuer and base URL of every endpoint and page (no trailing slash).
    pub public_url: String,
    /// Longest binding message, in characters (at most the statement's 256).
    pub binding_message_max_chars: usize,
    /// Shortest `requested_expiry` accepted, in seconds.
    pub min_expiry_secs: u64,
    /// Longest `requested_expiry` accepted, in seconds.
    pub max_expiry_secs: u64,
    /// Expiry when the client asks for none, in seconds.
    pub default_expiry_secs: u64,
    /// Minimum polling interval told to poll clients, in seconds.
    pub interval_secs: u64,
    /// Lifetime of access and ID tokens, in seconds.
    pub token_ttl_secs: u64,
    /// Lifetime of a one-time enrolment link, in seconds.
    pub enrolment_link_ttl_secs: u64,
    /// Lifetime of an approver session, in seconds.
    pub session_ttl_secs: u64,
    /// If set, only passkeys whose AAGUID is listed may enrol.
    pub aaguid_allowlist: Option<Vec<[u8; 16]>>,
    /// `authorization_details` types accepted; empty accepts any type.
    pub authorization_details_types: Vec<String>,
    /// Webhook told of each new request (JSON POST signed with HMAC-SHA256).
    pub webhook_url: Option<String>,
    /// Key of the webhook signature.
    pub webhook_secret: Option<Secret>,
    /// SMTP server for approver e-mails (`smtp://user:pass@host:port`, add `?tls=required` for
    /// STARTTLS; `smtps://` for implicit TLS). Off when `None`.
    pub smtp_url: Option<Secret>,
    /// Sender address of approver e-mails.
    pub smtp_from: String,
    /// Attempts for each ping, push, webhook or e-mail delivery.
    pub delivery_attempts: u32,
    /// Delay before the first retry; doubled for each further one, up to
    /// [`MAX_DELIVERY_BACKOFF`].
    pub delivery_backoff: Duration,
    /// How long a request's records (and so its token and evidence) are kept after it expired,
    /// in seconds ([`cleanup`]).
    pub request_retention_secs: u64,
    /// How often old requests are cleaned up.
    pub cleanup_interval: Duration,
}

impl CibaConfig {
    /// Defaults for a server whose public URL is `public_url`.
    pub fn new(public_url: impl Into<String>) -> Self {
        CibaConfig {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            binding_message_max_chars: 128,
            min_expiry_secs: 30,
            max_expiry_secs: 3600,
            default_expiry_secs: 300,
            interval_secs: 5,
            token_ttl_secs: 600,
            enrolment_link_ttl_secs: 24 * 3600,
            session_ttl_secs: 8 * 3600,
            aaguid_allowlist: None,
            authorization_details_types: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            smtp_url: None,
            smtp_from: "countersign@localhost".into(),
            delivery_attempts: 10,
            delivery_backoff: Duration::from_millis(500),
            request_retention_secs: 24 * 3600,
            cleanup_interval: Duration::from_secs(60),
        }
    }

    /// Whether cookies must carry `Secure` (the pages are served over HTTPS).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// `countersign serve` flags of the approval front end.
#[derive(clap::Args, Clone, Debug)]
pub struct CibaArgs {
    /// Public base URL: the OpenID issuer and the origin of the approval pages
    /// (default http://LISTEN_ADDRESS, with a loopback address written as localhost, since a
    /// passkey's RP ID cannot be an IP address).
    #[arg(long, env = "COUNTERSIGN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Longest binding message, in characters (1 to 256).
    #[arg(long, env = "COUNTERSIGN_BINDING_MESSAGE_MAX", default_value_t = 128)]
    pub binding_message_max: usize,
    /// Shortest requested_expiry accepted, in seconds.
    #[arg(long, env = "COUNTERSIGN_MIN_EXPIRY", default_value_t = 30)]
    pub min_expiry: u64,
    /// Longest requested_expiry accepted, in seconds.
    #[arg(long, env = "COUNTERSIGN_MAX_EXPIRY", default_value_t = 3600)]
    pub max_expiry: u64,
    /// Expiry of a request that names none, in seconds.
    #[arg(long, env = "COUNTERSIGN_DEFAULT_EXPIRY", default_value_t = 300)]
    pub default_expiry: u64,
    /// Polling interval told to poll clients, in seconds.
    #[arg(long, env = "COUNTERSIGN_POLL_INTERVAL", default_value_t = 5)]
    pub poll_interval: u64,
    /// AAGUID (32 hex digits, dashes allowed) allowed to enrol; repeatable. Default: any.
    #[arg(
        long = "aaguid-allow",
        env = "COUNTERSIGN_AAGUID_ALLOW",
        value_delimiter = ','
    )]
    pub aaguid_allow: Vec<String>,
    /// authorization_details type accepted; repeatable. Default: any.
    #[arg(long = "authorization-details-type", value_delimiter = ',')]
    pub authorization_details_type: Vec<String>,
    /// Webhook URL told of every new approval request.
    #[arg(long, env = "COUNTERSIGN_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key of the webhook's X-Countersign-Signature header.
    #[arg(long, env = "COUNTERSIGN_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// SMTP server URL for approver e-mails (smtp://user:pass@host:587?tls=required, or
    /// smtps://...). E-mail is off unless set.
    #[arg(long, env = "COUNTERSIGN_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of approver e-mails.
    #[arg(
        long,
        env = "COUNTERSIGN_SMTP_FROM",
        default_value = "countersign@localhost"
    )]
    pub smtp_from: String,
    /// Seconds a request's records are kept after it expired: until then its token can be
    /// fetched and its evidence bundle downloaded (GET /v1/evidence/AUTH_REQ_ID); then they
    /// are deleted (the log's entries stay).
    #[arg(long, env = "COUNTERSIGN_REQUEST_RETENTION", default_value_t = 86400)]
    pub request_retention: u64,
    /// Seconds between two clean-ups of old requests.
    #[arg(long, env = "COUNTERSIGN_CLEANUP_INTERVAL", default_value_t = 60)]
    pub cleanup_interval: u64,
    /// Attempts for each ping, push, webhook or e-mail delivery before giving up until the next
    /// start (one still owed is tried again at every start: ping and push while the request is
    /// kept, webhook and e-mail while it is open).
    #[arg(long, env = "COUNTERSIGN_DELIVERY_ATTEMPTS", default_value_t = 10)]
    pub delivery_attempts: u32,
    /// Milliseconds before the first retry of a delivery; doubled for each further one, up to
    /// 5 minutes (the defaults retry for about 4 minutes in all).
    #[arg(long, env = "COUNTERSIGN_DELIVERY_BACKOFF_MS", default_value_t = 500)]
    pub delivery_backoff_ms: u64,
}

impl CibaArgs {
    /// The configuration, given the address the server listens on.
    pub fn config(&self, listen: std::net::SocketAddr) -> Result<CibaConfig, InitError> {
        let mut c = CibaConfig::new(self.public_url.clone().unwrap_or_else(|| {
            // A WebAuthn RP ID cannot be an IP address, so a loopback listener is published as
            // localhost: the enrolment link printed on first start then works in a browser.
            if listen.ip().is_loopback() {
                format!("http://localhost:{}", listen.port())
            } else {
                format!("http://{listen}")
            }
        }));
        if !(1..=countersign_verifier::MAX_BINDING_MESSAGE_CHARS)
            .contains(&self.binding_message_max)
        {
            return Err(InitError("--binding-message-max must be 1 to 256".into()));
        }
        if self.min_expiry == 0
            || self.min_expiry > self.max_expiry
            || !(self.min_expiry..=self.max_expiry).contains(&self.default_expiry)
        {
            return Err(InitError(
                "expiry bounds must satisfy 0 < min <= default <= max".into(),
            ));
        }
        c.binding_message_max_chars = self.binding_message_max;
        c.min_expiry_secs = self.min_expiry;
        c.max_expiry_secs = self.max_expiry;
        c.default_expiry_secs = self.default_expiry;
        c.interval_secs = self.poll_interval.max(1);
        if !self.aaguid_allow.is_empty() {
            let mut list = Vec::new();
            for a in &self.aaguid_allow {
                let b = hex::decode(a.replace('-', ""))
                    .ok()
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                    .ok_or_else(|| InitError(format!("--aaguid-allow {a:?} is not an AAGUID")))?;
                list.push(b);
            }
            c.aaguid_allowlist = Some(list);
        }
        c.authorization_details_types = self.authorization_details_type.clone();
        c.webhook_url = self.webhook_url.clone();
        c.webhook_secret = self.webhook_secret.clone().map(Secret::new);
        c.smtp_url = self.smtp_url.clone().map(Secret::new);
        c.smtp_from = self.smtp_from.clone();
        c.request_retention_secs = self.request_retention;
        c.cleanup_interval = Duration::from_secs(self.cleanup_interval.max(1));
        if self.delivery_attempts == 0 {
            return Err(InitError("--delivery-attempts must be at least 1".into()));
        }
        c.delivery_attempts = self.delivery_attempts;
        c.delivery_backoff = Duration::from_millis(self.delivery_backoff_ms.max(1));
        if c.webhook_url.is_some() != c.webhook_secret.is_some() {
            return Err(InitError(
                "--webhook-url and --webhook-secret go together".into(),
            ));
        }
        Ok(c)
    }
}

/// Live inbox streams, one broadcast channel per approver with an inbox open: a change wakes
/// only that approver's streams (the request id is the message), not every open inbox.
#[derive(Debug, Default)]
pub(crate) struct InboxChannels(Mutex<HashMap<String, broadcast::Sender<String>>>);

impl InboxChannels {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<String>>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A receiver of this approver's changes.
    pub(crate) fn subscribe(&self, approver_id: &str) -> broadcast::Receiver<String> {
        let mut map = self.map();
        // Channels whose streams have all ended go here (a stream lives a few minutes).
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry(approver_id.to_owned())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Tells this approver's open streams, if any, that a request changed.
    fn send(&self, approver_id: &str, request_id: &str) {
        let mut map = self.map();
        if let Some(tx) = map.get(approver_id) {
            if tx.send(request_id.to_owned()).is_err() {
                // Nobody listens any more.
                map.remove(approver_id);
            }
        }
    }

    /// Approvers with a channel (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

/// Poll bookkeeping of one request (slow_down), kept in memory: losing it on restart only
/// forgets when a client last polled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollState {
    pub last: Instant,
    pub interval: u64,
}

/// The front end's state, shared by every handler.
pub struct Ciba {
    /// Configuration.
    pub config: CibaConfig,
    /// Persistent records.
    pub store: CibaStore,
    /// Token signing keys.
    pub keys: tokens::KeySet,
    /// Counters served on `/metrics`.
    pub metrics: metrics::CibaMetrics,
    /// Live inbox streams.
    pub(crate) inbox: InboxChannels,
    pub(crate) polls: Mutex<HashMap<String, PollState>>,
    pub(crate) ceremonies: crate::webauthn_ceremony::Ceremonies,
    pub(crate) sessions: crate::webauthn_ceremony::Sessions,
    pub(crate) secret_cache: clients::SecretCache,
    pub(crate) http: reqwest::Client,
    pub(crate) mailer: Option<crate::notify::Mailer>,
}

impl std::fmt::Debug for Ciba {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ciba")
            .field("public_url", &self.config.public_url)
            .finish_non_exhaustive()
    }
}

impl Ciba {
    /// Opens the front end on a started log (token keys are created on first start).
    pub fn new(state: &AppState, config: CibaConfig) -> Result<Arc<Ciba>, InitError> {
        let store =
            CibaStore::new(state.log.store().clone()).map_err(|e| InitError(e.to_string()))?;
        let keys = tokens::KeySet::load_or_create(&store).map_err(|e| InitError(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| InitError(format!("http client: {e}")))?;
        let mailer = crate::notify::Mailer::new(&config)?;
        let metrics = metrics::CibaMetrics::new(store.write_stats());
        let ciba = Arc::new(Ciba {
            config,
            store,
            keys,
            metrics,
            inbox: InboxChannels::default(),
            polls: Mutex::new(HashMap::new()),
            ceremonies: Default::default(),
            sessions: Default::default(),
            secret_cache: Default::default(),
            http,
            mailer,
        });
        match crate::webauthn_ceremony::recover_claims(&ciba) {
            Ok((0, 0)) => {}
            Ok((finished, released)) => tracing::info!(
                finished,
                released,
                "decisions a crash interrupted: finished from the log or released"
            ),
            Err(e) => return Err(InitError(format!("recovering interrupted decisions: {e}"))),
        }
        cleanup::start(&ciba);
        crate::notify::resume_deliveries(&ciba);
        Ok(ciba)
    }

    /// Tells the live inbox that a request changed.
    pub(crate) fn inbox_changed(&self, approver_id: &str, request_id: &str) {
        self.inbox.send(approver_id, request_id);
    }
}

/// Attaches the front end to a started log's state (before [`crate::app`] is built).
pub fn attach(state: &mut AppState, config: CibaConfig) -> Result<(), InitError> {
    state.ciba = Some(Ciba::new(state, config)?);
    Ok(())
}

/// An OAuth / CIBA error answered as `{"error", "error_description"}` (CIBA section 13, RFC 6749
/// section 5.2) with `Cache-Control: no-store`.
#[derive(Debug)]
pub struct OAuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// The registered error code.
    pub error: &'static str,
    /// A description a developer can act on (never a secret).
    pub description: String,
    /// `WWW-Authenticate` challenge for 401s of Basic clients.
    pub www_authenticate: bool,
}

impl OAuthError {
    /// A 400 with `error`.
    pub fn bad(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            www_authenticate: false,
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::bad("invalid_request", description)
    }

    /// `invalid_client` (401).
    pub fn invalid_client(description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
            www_authenticate: true,
        }
    }

    /// Any status.
    pub fn with_status(status: StatusCode, error: &'static str, d: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: d.into(),
            www_authenticate: false,
        }
    }

    /// A failure of ours: details are logged, the client learns nothing but that it failed.
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Self::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server could not complete the request; nothing was approved",
        )
    }
}

impl From<StorageError> for OAuthError {
    fn from(e: StorageError) -> Self {
        OAuthError::internal("storage error in the approval front end", e)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.www_authenticate {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"countersign\""),
            );
        }
        resp
    }
}

/// The front end of a state, or 404 when the server runs without it.
pub(crate) fn ciba_of(state: &AppState) -> Result<&Arc<Ciba>, OAuthError> {
    state.ciba.as_ref().ok_or_else(|| {
        OAuthError::with_status(
            StatusCode::NOT_FOUND,
            "not_found",
            "the approval front end is not enabled on this server",
        )
    })
}

/// All routes of the front end; merged into [`crate::app`].
pub fn routes() -> axum::Router<AppState> {
    endpoints::routes()
        .merge(admin_api::routes())
        .merge(crate::webauthn_ceremony::routes())
        .merge(crate::approval_ui::routes())
        .merge(crate::evidence::routes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inbox_changes_reach_only_their_approver_and_channels_go_with_their_streams() {
        let inbox = InboxChannels::default();
        let mut a1 = inbox.subscribe("alice");
        let mut a2 = inbox.subscribe("alice");
        let mut b = inbox.subscribe("bob");
        inbox.send("alice", "r1");
        inbox.send("carol", "r2"); // nobody listens: nothing happens
        assert_eq!(a1.try_recv().unwrap(), "r1");
        assert_eq!(a2.try_recv().unwrap(), "r1");
        assert!(
            b.try_recv().is_err(),
            "bob must not be woken by alice's requests"
        );
        assert_eq!(inbox.len(), 2);
        drop((a1, a2));
        // The next change for alice finds no receiver and drops her channel.
        inbox.send("alice", "r3");
        assert_eq!(inbox.len(), 1);
        drop(b);
        // A new stream prunes channels whose streams have all ended.
        let _c = inbox.subscribe("carol");
        assert_eq!(inbox.len(), 1);
    }
}
