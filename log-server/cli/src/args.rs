//! `countersign serve` flags of the approval front end, and what they become.

use std::time::Duration;

use countersign_approvals::attestation::AttestationPolicy;
use countersign_approvals::{CibaConfig, Secret};
use countersign_log::InitError;

/// `countersign serve` flags of the approval front end.
#[derive(clap::Args, Clone, Debug)]
pub struct ApprovalsArgs {
    /// Public base URL: the OpenID issuer and the origin of the approval pages
    /// (default http://LISTEN_ADDRESS, https:// with --tls-cert, with a loopback address written
    /// as localhost, since a passkey's RP ID cannot be an IP address).
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
    /// Needs an attestation policy (--attestation-roots or --attestation-mds): only an
    /// attestation certificate can vouch for an AAGUID.
    #[arg(
        long = "aaguid-allow",
        env = "COUNTERSIGN_AAGUID_ALLOW",
        value_delimiter = ','
    )]
    pub aaguid_allow: Vec<String>,
    /// PEM file of root certificates an enrolling passkey's attestation chain must lead to;
    /// repeatable. With this or --attestation-mds, enrolment requires a verified attestation
    /// (packed with a certificate, or fido-u2f): none, self attestation and other formats are
    /// refused.
    #[arg(
        long = "attestation-roots",
        env = "COUNTERSIGN_ATTESTATION_ROOTS",
        value_delimiter = ','
    )]
    pub attestation_roots: Vec<std::path::PathBuf>,
    /// FIDO Metadata Service (MDS3) BLOB file (the JWT as downloaded): each listed model's
    /// attestationRootCertificates become its roots, and a model whose latest status report
    /// is REVOKED or a compromise is refused. Needs --attestation-mds-root.
    #[arg(
        long = "attestation-mds",
        env = "COUNTERSIGN_ATTESTATION_MDS",
        requires = "attestation_mds_root"
    )]
    pub attestation_mds: Option<std::path::PathBuf>,
    /// PEM file of the root the MDS BLOB's signing chain must lead to (for the FIDO Alliance's
    /// service, its published root certificate).
    #[arg(
        long = "attestation-mds-root",
        env = "COUNTERSIGN_ATTESTATION_MDS_ROOT",
        requires = "attestation_mds"
    )]
    pub attestation_mds_root: Option<std::path::PathBuf>,
    /// Refuse authenticator models whose latest MDS status is not FIDO_CERTIFIED* (and models
    /// the BLOB does not list). Needs --attestation-mds.
    #[arg(
        long = "attestation-require-certified",
        env = "COUNTERSIGN_ATTESTATION_REQUIRE_CERTIFIED",
        requires = "attestation_mds"
    )]
    pub attestation_require_certified: bool,
    /// authorization_details type accepted (repeatable; comma-separated in the env var), and
    /// listed in discovery. Default: any type, and discovery lists none.
    #[arg(
        long = "authorization-details-type",
        env = "COUNTERSIGN_AUTHORIZATION_DETAILS_TYPES",
        value_delimiter = ','
    )]
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
    /// Days a decision's evidence record (its statement, for bundles, the audit statements and
    /// exports) and the audit events are kept, independent of --request-retention: they
    /// outlive the request's records. 0 keeps them for good.
    #[arg(
        long,
        env = "COUNTERSIGN_EVIDENCE_RETENTION_DAYS",
        default_value_t = 400
    )]
    pub evidence_retention_days: u64,
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
    /// Let clients register plain-http notification endpoints on hosts other than loopback
    /// addresses. Push delivers tokens there, so by default they must be https.
    #[arg(long, env = "COUNTERSIGN_ALLOW_HTTP_NOTIFICATION_ENDPOINTS")]
    pub allow_http_notification_endpoints: bool,
    /// Put the approver's e-mail address and name (`parties`) in the evidence bundles clients
    /// fetch. By default a client's bundle holds opaque ids only; the admin's and the
    /// approver's own bundles always name the parties.
    #[arg(long, env = "COUNTERSIGN_EVIDENCE_INCLUDE_PARTIES")]
    pub evidence_include_parties: bool,
    /// argon2 checks of a chosen client secret allowed per minute from one address (IPv6: one
    /// /64) and for one client id; more are answered 429. A secret that passed before is
    /// recognised without argon2 and not counted. 0: no limit.
    #[arg(
        long,
        env = "COUNTERSIGN_SECRET_GUESSES_PER_MINUTE",
        default_value_t = 30
    )]
    pub secret_guesses_per_minute: u32,
    /// Client secret checks that may wait for argon2 at once; more are answered 503.
    #[arg(
        long,
        env = "COUNTERSIGN_MAX_SECRET_CHECKS_WAITING",
        default_value_t = 16
    )]
    pub max_secret_checks_waiting: usize,
    /// Approval requests one client may make per minute (429 with Retry-After beyond). 0: no
    /// limit.
    #[arg(
        long,
        env = "COUNTERSIGN_CLIENT_REQUESTS_PER_MINUTE",
        default_value_t = 120
    )]
    pub client_requests_per_minute: u32,
    /// Open requests one client may have at once (429 with Retry-After beyond). 0: no limit.
    #[arg(long, env = "COUNTERSIGN_CLIENT_MAX_PENDING", default_value_t = 100)]
    pub client_max_pending: usize,
    /// Ping, push and webhook deliveries in flight at once.
    #[arg(
        long,
        env = "COUNTERSIGN_MAX_CONCURRENT_DELIVERIES",
        default_value_t = 32
    )]
    pub max_concurrent_deliveries: usize,
    /// Unexpired client assertions (private_key_jwt) one client may have at once; each jti is
    /// remembered, across restarts, until its assertion expires.
    #[arg(
        long,
        env = "COUNTERSIGN_CLIENT_MAX_LIVE_ASSERTIONS",
        default_value_t = 10_000
    )]
    pub client_max_live_assertions: usize,
}

impl ApprovalsArgs {
    /// The attestation policy the flags describe, if any (files read and checked now).
    fn attestation_policy(&self) -> Result<Option<AttestationPolicy>, InitError> {
        if self.attestation_roots.is_empty() && self.attestation_mds.is_none() {
            return Ok(None);
        }
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| InitError::Config(format!("cannot read {}: {e}", p.display())))
        };
        let bad = |flag: &str, e: countersign_approvals::attestation::PolicyError| {
            InitError::Config(format!("{flag}: {e}"))
        };
        let mut policy = AttestationPolicy::default();
        for f in &self.attestation_roots {
            policy
                .add_pem_roots(&read(f)?)
                .map_err(|e| bad("--attestation-roots", e))?;
        }
        if let (Some(blob), Some(root)) = (&self.attestation_mds, &self.attestation_mds_root) {
            let next = policy
                .load_mds(
                    &read(blob)?,
                    &read(root)?,
                    countersign_approvals::attestation::UnixTime::now(),
                )
                .map_err(|e| bad("--attestation-mds", e))?;
            if let Some(next) = next {
                let today = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
                if next.as_str() < &today[..10] {
                    tracing::warn!(next_update = %next, "the MDS BLOB is past its nextUpdate; download a fresh one");
                }
            }
        }
        policy.require_fido_certified(self.attestation_require_certified);
        Ok(Some(policy))
    }

    /// The configuration, given the address the server listens on (plain HTTP).
    pub fn config(&self, listen: std::net::SocketAddr) -> Result<CibaConfig, InitError> {
        self.config_with(listen, false)
    }

    /// The configuration, given the address the server listens on and whether it serves HTTPS
    /// (`--tls-cert`): the default public URL then starts with `https://`, which also makes the
    /// session cookie `Secure`.
    pub fn config_with(
        &self,
        listen: std::net::SocketAddr,
        tls: bool,
    ) -> Result<CibaConfig, InitError> {
        let scheme = if tls { "https" } else { "http" };
        let mut c = CibaConfig::new(self.public_url.clone().unwrap_or_else(|| {
            // A WebAuthn RP ID cannot be an IP address, so a loopback listener is published as
            // localhost: the enrolment link printed on first start then works in a browser.
            if listen.ip().is_loopback() {
                format!("{scheme}://localhost:{}", listen.port())
            } else {
                format!("{scheme}://{listen}")
            }
        }));
        if !(1..=countersign_verifier::MAX_BINDING_MESSAGE_CHARS)
            .contains(&self.binding_message_max)
        {
            return Err(InitError::Config(
                "--binding-message-max must be 1 to 256".into(),
            ));
        }
        if self.min_expiry == 0
            || self.min_expiry > self.max_expiry
            || !(self.min_expiry..=self.max_expiry).contains(&self.default_expiry)
        {
            return Err(InitError::Config(
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
                    .ok_or_else(|| {
                        InitError::Config(format!("--aaguid-allow {a:?} is not an AAGUID"))
                    })?;
                list.push(b);
            }
            c.aaguid_allowlist = Some(list);
        }
        c.attestation = self.attestation_policy()?.map(std::sync::Arc::new);
        if c.aaguid_allowlist.is_some() && c.attestation.is_none() {
            return Err(InitError::Config(
                "--aaguid-allow needs an attestation policy (--attestation-roots or \
                 --attestation-mds): without one an AAGUID is only the authenticator's claim"
                    .into(),
            ));
        }
        // An empty value (`COUNTERSIGN_AUTHORIZATION_DETAILS_TYPES=`) names no type: a list
        // holding "" would accept none and have discovery list "".
        for t in &self.authorization_details_type {
            let t = t.trim();
            if !t.is_empty() && !c.authorization_details_types.iter().any(|k| k == t) {
                c.authorization_details_types.push(t.to_owned());
            }
        }
        c.allow_http_notification_endpoints = self.allow_http_notification_endpoints;
        c.evidence_include_parties = self.evidence_include_parties;
        c.secret_guesses_per_minute = self.secret_guesses_per_minute;
        c.max_argon2_waiting = self.max_secret_checks_waiting;
        c.client_requests_per_minute = self.client_requests_per_minute;
        c.client_max_pending = self.client_max_pending;
        c.max_concurrent_deliveries = self.max_concurrent_deliveries.max(1);
        c.client_max_live_assertions = self.client_max_live_assertions.max(1);
        c.webhook_url = self.webhook_url.clone();
        c.webhook_secret = self.webhook_secret.clone().map(Secret::new);
        c.smtp_url = self.smtp_url.clone().map(Secret::new);
        c.smtp_from = self.smtp_from.clone();
        c.request_retention_secs = self.request_retention;
        c.evidence_retention_days = self.evidence_retention_days;
        c.cleanup_interval = Duration::from_secs(self.cleanup_interval.max(1));
        if self.delivery_attempts == 0 {
            return Err(InitError::Config(
                "--delivery-attempts must be at least 1".into(),
            ));
        }
        c.delivery_attempts = self.delivery_attempts;
        c.delivery_backoff = Duration::from_millis(self.delivery_backoff_ms.max(1));
        if c.webhook_url.is_some() != c.webhook_secret.is_some() {
            return Err(InitError::Config(
                "--webhook-url and --webhook-secret go together".into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests;

/// `--witness-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessModeArg {
    /// Serve each checkpoint at once; cosignatures are added as they arrive.
    Publish,
    /// Serve a checkpoint only once the policy's quorum has cosigned it.
    Quorum,
}

/// How the log gets its checkpoints cosigned (`serve --witness-policy ...`, `spec/witnessing.md`).
#[derive(clap::Args, Debug, Clone)]
pub struct WitnessArgs {
    /// A C2SP tlog-policy file naming the witnesses (`witness <name> <vkey> <url>`, the URL
    /// being the witness's tlog-witness submission prefix, https:// or http://) and the quorum. The log
    /// sends each new checkpoint to every witness (add-checkpoint) and serves the cosignatures
    /// it gathers with the checkpoint at /checkpoint. Without it the log is not witnessed.
    #[arg(long, env = "COUNTERSIGN_WITNESS_POLICY", value_name = "FILE")]
    pub witness_policy: Option<std::path::PathBuf>,
    /// Shortest time between two checkpoints sent to the witnesses (`1s`, `250ms`).
    #[arg(long, env = "COUNTERSIGN_WITNESS_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub witness_interval: std::time::Duration,
    /// `publish`: serve each checkpoint at once and add cosignatures as they arrive. `quorum`:
    /// serve a checkpoint (and answer appends and release tokens) only once the policy's quorum
    /// has cosigned it.
    #[arg(long, env = "COUNTERSIGN_WITNESS_MODE", value_enum, default_value_t = WitnessModeArg::Publish)]
    pub witness_mode: WitnessModeArg,
    /// Quorum mode: how long an append or a token request waits for the quorum before it is
    /// answered 503 `not_witnessed` (the entry stays logged) and an alert is raised.
    #[arg(long, env = "COUNTERSIGN_WITNESS_QUORUM_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub witness_quorum_timeout: std::time::Duration,
}

impl WitnessArgs {
    /// The witness client's configuration, `None` without `--witness-policy`; an error names
    /// the file and what is wrong with it (a bad policy, a witness without a URL).
    pub fn config(&self) -> Result<Option<countersign_log::WitnessConfig>, WitnessArgsError> {
        let Some(path) = &self.witness_policy else {
            return Ok(None);
        };
        let bytes = std::fs::read(path).map_err(|e| WitnessArgsError::Read {
            path: path.clone(),
            error: e.to_string(),
        })?;
        let mut c = countersign_log::WitnessConfig::from_policy(&bytes).map_err(|e| {
            WitnessArgsError::Policy {
                path: path.clone(),
                error: e,
            }
        })?;
        c.interval = self
            .witness_interval
            .max(std::time::Duration::from_millis(10));
        c.mode = match self.witness_mode {
            WitnessModeArg::Publish => countersign_log::WitnessMode::Publish,
            WitnessModeArg::Quorum => countersign_log::WitnessMode::Quorum,
        };
        c.quorum_timeout = self.witness_quorum_timeout;
        Ok(Some(c))
    }
}

/// Why `--witness-policy` cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum WitnessArgsError {
    /// The file cannot be read.
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: String,
    },
    /// The file is not a usable witness policy.
    Policy {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: countersign_log::WitnessConfigError,
    },
}

impl std::fmt::Display for WitnessArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WitnessArgsError::Read { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            WitnessArgsError::Policy { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for WitnessArgsError {}
