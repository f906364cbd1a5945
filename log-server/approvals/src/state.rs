//! The front end's state, shared by every handler, and how it is opened on a started log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use countersign_log::http::AdminAuth;
use countersign_log::{InitError, LogHandle};

use crate::ciba::secrets::SecretCache;
use crate::ciba::tokens::KeySet;
use crate::config::CibaConfig;
use crate::live::InboxChannels;
use crate::metrics::CibaMetrics;
use crate::notify::email::Mailer;
use crate::passkeys::ceremony::Ceremonies;
use crate::passkeys::session::Sessions;
use crate::store::CibaStore;

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
    /// The log's embedded store, which the front end keeps its records in and reads logged
    /// entries from (it does not run on the shared driver yet).
    pub log_store: countersign_log::storage::Store,
    /// The admin check of the admin API.
    pub admin: AdminAuth,
    /// Configuration.
    pub config: CibaConfig,
    /// Persistent records.
    pub store: CibaStore,
    /// Token signing keys.
    pub keys: KeySet,
    /// Counters served on `/metrics`.
    pub metrics: CibaMetrics,
    /// Live inbox streams.
    pub(crate) inbox: InboxChannels,
    pub(crate) polls: Mutex<HashMap<String, PollState>>,
    pub(crate) ceremonies: Ceremonies,
    pub(crate) sessions: Sessions,
    pub(crate) secret_cache: SecretCache,
    pub(crate) http: reqwest::Client,
    pub(crate) mailer: Option<Mailer>,
    /// Limits on abusive load.
    pub limits: crate::limits::Limits,
    /// Sign-in challenges sealed with a key of this process.
    pub(crate) signins: crate::passkeys::ceremony::SignIns,
    /// Held by a clean-up sweep ([`crate::cleanup::sweep`]): sweeps take turns, so the
    /// `request.expired` walk records each expiry once.
    pub(crate) sweeping: tokio::sync::Mutex<()>,
    /// The approval policy in force (`serve --policy`), if any; replaced on reload.
    policy: RwLock<Option<Arc<crate::policy::ActivePolicy>>>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("public_url", &self.config.public_url)
            .finish_non_exhaustive()
    }
}

impl Approvals {
    /// The state of a front end on a started log (token keys are created on first start).
    /// Nothing runs yet: [`crate::open`] also finishes what a crash interrupted and starts the
    /// background tasks.
    pub fn new(log: LogHandle, admin: AdminAuth, config: CibaConfig) -> Result<Self, InitError> {
        let log_store = log.store().cloned().ok_or_else(|| {
            InitError::Config(
                "the approval front end keeps its records in the embedded store; on the shared \
                 driver (--database) it is not available yet"
                    .into(),
            )
        })?;
        let store = CibaStore::new(log_store.clone())?;
        let keys = KeySet::load_or_create(&store)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| InitError::Config(format!("http client: {e}")))?;
        let mailer = Mailer::new(&config)?;
        let metrics = CibaMetrics::new(store.write_stats());
        let limits = crate::limits::Limits::new(&config);
        Ok(Approvals {
            log,
            log_store,
            admin,
            config,
            store,
            keys,
            metrics,
            inbox: InboxChannels::default(),
            polls: Mutex::new(HashMap::new()),
            ceremonies: Ceremonies::default(),
            sessions: Sessions::default(),
            secret_cache: SecretCache::default(),
            http,
            limits,
            signins: crate::passkeys::ceremony::SignIns::default(),
            sweeping: tokio::sync::Mutex::new(()),
            mailer,
            policy: RwLock::new(None),
        })
    }

    /// The approval policy in force, if any: new requests are evaluated under it.
    pub fn active_policy(&self) -> Option<Arc<crate::policy::ActivePolicy>> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `policy` in force (its entry already logged), or none.
    pub fn set_active_policy(&self, policy: Option<Arc<crate::policy::ActivePolicy>>) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
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
