//! Countersign's approval front end: OpenID CIBA Core 1.0 (poll, ping and push), passkey
//! enrolment and sign-in, the approval pages, notifications and evidence bundles.
//!
//! An agent (a CIBA client) asks at `/bc-authorize`; the server builds the approval
//! [`Statement`](countersign_verifier::Statement), draws a 32-byte nonce and keeps the pending
//! request in the `ciba` column family ([`store`]); the approver signs
//! `nonce || SHA-256(statement)` with a passkey on the approval pages ([`passkeys`], [`pages`]);
//! the decision is appended to the log, and only then does the client get a token bound to the
//! statement ([`ciba::tokens`]). A request's life is the state machine of [`request`]. Everything
//! fails closed: any error leaves the request undecided or denied, never approved.
//!
//! Layer: the approval front end. It is built only on `countersign-log`'s public API (the
//! [`LogHandle`], the key-value area
//! [`countersign_log::storage::kv`], and the shared HTTP pieces of [`countersign_log::http`]) and
//! on `countersign-verifier`, which does every statement, WebAuthn and proof check. The log
//! never depends on it; the `countersign` binary composes the two. Below the handlers
//! ([`request`], [`store`], [`config`], [`inbox`]) nothing imports axum.

pub mod admin_api;
pub mod ciba;
pub mod cleanup;
pub mod config;
pub mod evidence;
pub mod inbox;
pub mod metrics;
pub mod notify;
pub mod pages;
pub mod passkeys;
pub mod request;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::Router;
use base64::Engine;
use countersign_log::http::AdminAuth;
use countersign_log::{InitError, LogHandle};
use rand::RngCore;

pub use config::{CibaConfig, MAX_DELIVERY_BACKOFF};
pub use countersign_log::ApiError;
use inbox::InboxChannels;
pub use store::CibaStore;

/// The column families the front end keeps its records in: the log must be opened with them
/// ([`countersign_log::Config::column_families`]).
pub const COLUMN_FAMILIES: &[&str] = &[store::CF_CIBA];

/// Largest request body of the front end's endpoints: a `/bc-authorize` form with the largest
/// `authorization_details` and every other parameter at its limit, or a passkey's response.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
    countersign_log::now_ms() / 1000
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

/// Poll bookkeeping of one request (slow_down), kept in memory: losing it on restart only
/// forgets when a client last polled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollState {
    pub last: Instant,
    pub interval: u64,
}

/// The front end's state, shared by every handler.
pub struct Approvals {
    /// The log decisions and enrolments are appended to.
    pub log: LogHandle,
    /// The admin check of the admin API.
    pub admin: AdminAuth,
    /// Configuration.
    pub config: CibaConfig,
    /// Persistent records.
    pub store: CibaStore,
    /// Token signing keys.
    pub keys: ciba::tokens::KeySet,
    /// Counters served on `/metrics`.
    pub metrics: metrics::CibaMetrics,
    /// Live inbox streams.
    pub(crate) inbox: InboxChannels,
    pub(crate) polls: Mutex<HashMap<String, PollState>>,
    pub(crate) ceremonies: crate::passkeys::Ceremonies,
    pub(crate) sessions: crate::passkeys::Sessions,
    pub(crate) secret_cache: ciba::clients::SecretCache,
    pub(crate) http: reqwest::Client,
    pub(crate) mailer: Option<crate::notify::Mailer>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("public_url", &self.config.public_url)
            .finish_non_exhaustive()
    }
}

impl Approvals {
    /// Opens the front end on a started log (token keys are created on first start), finishes
    /// what a crash interrupted, and starts its background tasks. The log must have been
    /// opened with [`COLUMN_FAMILIES`].
    pub fn open(
        log: LogHandle,
        admin: AdminAuth,
        config: CibaConfig,
    ) -> Result<Arc<Approvals>, InitError> {
        let store = CibaStore::new(log.store().clone())?;
        let keys = ciba::tokens::KeySet::load_or_create(&store)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| InitError::Config(format!("http client: {e}")))?;
        let mailer = crate::notify::Mailer::new(&config)?;
        let metrics = metrics::CibaMetrics::new(store.write_stats());
        let ciba = Arc::new(Approvals {
            log,
            admin,
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
        match request::recover_claims(&ciba) {
            Ok((0, 0)) => {}
            Ok((finished, released)) => tracing::info!(
                finished,
                released,
                "decisions a crash interrupted: finished from the log or released"
            ),
            Err(e) => return Err(e.into()),
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

impl countersign_log::MetricsSource for Approvals {
    fn registry(&self) -> &prometheus_client::registry::Registry {
        self.metrics.registry()
    }
}

/// Every route of the front end: the CIBA endpoints, the admin API, the passkey ceremonies, the
/// pages and evidence. The binary merges it into the log's router.
pub fn router(approvals: Arc<Approvals>) -> Router {
    ciba::endpoints::routes()
        .merge(admin_api::routes())
        .merge(passkeys::routes())
        .merge(pages::routes())
        .merge(evidence::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(approvals)
}
