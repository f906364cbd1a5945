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
use crate::passkeys::ceremony::SignIns;
use crate::passkeys::session::Sessions;
use crate::store::CibaStore;
use countersign_log::storage::StorageError;

/// Held while the first instance of a shared deployment creates the token keys and the
/// sign-in key, so that instances starting together agree on them.
const SHARED_KEYS_LOCK: &str = "v/keys-lock";
/// The running instances of a shared deployment (`v/instance/<instance id>`, valued when it
/// started, milliseconds, 8 bytes big-endian): the instance keeping house takes up what one
/// that stopped owed (the clean-up task, `cleanup::instances_gone`).
pub const INSTANCE_PREFIX: &str = "v/instance/";
/// The key sign-in ids are sealed with, on the shared driver (32 bytes).
pub const SIGNIN_KEY: &str = "v/signin-key";

/// Poll bookkeeping of one request (slow_down), kept in memory: losing it on restart only
/// forgets when a client last polled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollState {
    pub last: Instant,
    pub interval: u64,
}

/// The front end's state, shared by every handler.
pub struct Approvals {
    /// The log decisions and enrolments are appended to (and logged entries are read from).
    pub log: LogHandle,
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
                "on the shared driver the front end keeps its records in the database: open it \
                 with Approvals::new_shared"
                    .into(),
            )
        })?;
        let store = CibaStore::new(log_store)?;
        let keys = KeySet::load_or_create(&store)?;
        Self::with_store(log, admin, config, store, keys, SignIns::default())
    }

    /// The state of a front end on a log of the shared driver: its records in the log's
    /// database (`kv`), shared by every instance. The token keys and the sign-in sealing key
    /// are created by the first instance to start, under a lock, and read by the others.
    pub async fn new_shared(
        log: LogHandle,
        admin: AdminAuth,
        config: CibaConfig,
    ) -> Result<Self, InitError> {
        let db = log.shared_log().map(|s| s.db().clone()).ok_or_else(|| {
            InitError::Config("new_shared needs a log of the shared driver".into())
        })?;
        let store = CibaStore::shared(db).await?;
        let (keys, signin_key) = {
            let _g = store.lock(SHARED_KEYS_LOCK).await?;
            let keys = KeySet::load_or_create(&store)?;
            let signin_key = match store.get_raw(SIGNIN_KEY).await? {
                Some(k) => <[u8; 32]>::try_from(k.as_slice())
                    .map_err(|_| StorageError::Corrupt(format!("{SIGNIN_KEY} is not 32 bytes")))?,
                None => {
                    let k = crate::util::random_bytes::<32>();
                    let mut b = crate::store::Batch::new();
                    b.put(SIGNIN_KEY, k.to_vec());
                    store.commit(b, crate::store::Durability::Sync).await?;
                    k
                }
            };
            (keys, signin_key)
        };
        // Registered, so that the instance keeping house notices when this one stops.
        let mut b = crate::store::Batch::new();
        b.put(
            format!(
                "{INSTANCE_PREFIX}{}",
                store.instance_id().unwrap_or_default()
            ),
            countersign_log::now_ms().to_be_bytes().to_vec(),
        );
        store.commit(b, crate::store::Durability::Sync).await?;
        Self::with_store(
            log,
            admin,
            config,
            store,
            keys,
            SignIns::with_key(signin_key),
        )
    }

    fn with_store(
        log: LogHandle,
        admin: AdminAuth,
        config: CibaConfig,
        store: CibaStore,
        keys: KeySet,
        signins: SignIns,
    ) -> Result<Self, InitError> {
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
            signins,
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
