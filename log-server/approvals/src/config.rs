//! How the front end behaves: what `countersign serve` flags become.

use std::time::Duration;

use crate::util::Secret;

/// How long after its expiry a claimed request may still be getting its decision recorded
/// (the token endpoint reads a claim older than this as expired; clean-up leaves it alone).
pub const DECIDING_GRACE_SECS: u64 = 60;

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
    /// If set, only passkeys whose AAGUID is listed, and certified by an attestation that
    /// [`Self::attestation`] accepts, may enrol (an allowlist needs a policy).
    pub aaguid_allowlist: Option<Vec<[u8; 16]>>,
    /// The attestation policy (spec/webauthn.md A8). If set, enrolment asks for `direct`
    /// attestation and refuses any passkey whose attestation chain does not lead to one of its
    /// roots. `None`: attestation is not required (entries record it as not verified).
    pub attestation: Option<std::sync::Arc<crate::attestation::AttestationPolicy>>,
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
    /// in seconds ([`crate::cleanup`]).
    pub request_retention_secs: u64,
    /// How long a decision's evidence record and the audit events are kept, in days (0: for
    /// good), counted from the decision (events: from their time). Independent of
    /// [`Self::request_retention_secs`]: the evidence outlives the request's records
    /// ([`crate::cleanup`]).
    pub evidence_retention_days: u64,
    /// How often old requests are cleaned up.
    pub cleanup_interval: Duration,
    /// Whether a client's notification endpoint may be plain `http://` on a host other than a
    /// loopback address (push delivers tokens to it; off by default).
    pub allow_http_notification_endpoints: bool,
    /// Whether bundles served to clients (`GET /v1/evidence/<auth_req_id>`) carry `parties`,
    /// the approver's e-mail address and name (off by default: a client gets the opaque ids of
    /// the statement only; the admin's and the approver's own bundles always carry them).
    pub evidence_include_parties: bool,
    /// argon2 checks of a client secret allowed per minute from one source address and for one
    /// client id ([`crate::limits`]); 0 turns the limit off.
    pub secret_guesses_per_minute: u32,
    /// Checks of a client secret that may wait for the argon2 workers; more are answered 503.
    pub max_argon2_waiting: usize,
    /// Approval requests one client may make per minute (a burst of as many is allowed); 0
    /// turns the limit off.
    pub client_requests_per_minute: u32,
    /// Open (undecided, unexpired) requests one client may have at once; 0 turns the limit off.
    pub client_max_pending: usize,
    /// Ping, push and webhook deliveries in flight at once.
    pub max_concurrent_deliveries: usize,
    /// Client assertions (`private_key_jwt`) one client may have unexpired at once: each `jti`
    /// is remembered until its assertion expires, to refuse a replay.
    pub client_max_live_assertions: usize,
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
            attestation: None,
            authorization_details_types: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            smtp_url: None,
            smtp_from: "countersign@localhost".into(),
            delivery_attempts: 10,
            delivery_backoff: Duration::from_millis(500),
            request_retention_secs: 24 * 3600,
            evidence_retention_days: 400,
            cleanup_interval: Duration::from_secs(60),
            allow_http_notification_endpoints: false,
            evidence_include_parties: false,
            secret_guesses_per_minute: 30,
            max_argon2_waiting: 16,
            client_requests_per_minute: 120,
            client_max_pending: 100,
            max_concurrent_deliveries: 32,
            client_max_live_assertions: 10_000,
        }
    }

    /// Whether cookies must carry `Secure` (the pages are served over HTTPS).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}
