//! A log instance of the shared driver: it sequences its appends in PostgreSQL, integrates
//! when it holds the integrator lease, and answers an append once a checkpoint covering it is
//! published in the bucket.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_verifier::{empty_root, verify_checkpoint, Hash};
use futures_util::{stream, StreamExt, TryStreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};

use crate::bucket::{Bucket, MirrorError, IMMUTABLE, NO_CACHE};
use crate::error::{AppendError, StorageError};
use crate::proofs::ProofRequestError;
use crate::sequencer::{now_ms, AppendKind, Appended, Outcome, Published};
use crate::signer::LogSigner;
use crate::submitters::{fingerprint, SecretToken, SubmitterInfo};

use super::integrate::{integrate, Edge};
use super::pg::{Db, DbError, Notice};
use super::schema::MIGRATIONS;
use super::sequence::{leaf_hashes, prefetch, sequence, Item, Prefetched, Wants, SEQUENCED};

/// The advisory-lock key of the integrator lease ("CSIGNINT" in ASCII).
pub const INTEGRATOR_LEASE: i64 = 0x4353_4947_4e49_4e54;
/// Channel notified (payload: the new size) when a checkpoint is published.
const INTEGRATED: &str = "countersign_integrated";
/// Object writes in flight at once.
const PARALLEL_PUTS: usize = 16;

/// Settings of a shared-driver instance.
#[derive(Clone, Debug)]
pub struct SharedConfig {
    /// Most appends sequenced in one transaction.
    pub batch_max_entries: usize,
    /// Appends waiting to be sequenced at this instance; more are refused (queue full).
    pub queue_capacity: usize,
    /// Time an append waits for a published checkpoint before it is answered 503 (it stays
    /// sequenced; a retry returns its leaf once published).
    pub publish_timeout: Duration,
    /// How often an instance that is not the integrator tries to take the lease.
    pub lease_poll: Duration,
    /// Most entries integrated in one pass.
    pub integrate_max_entries: usize,
    /// Shortest time between two integration passes (each rewrites the partial tiles).
    pub pass_interval: Duration,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            batch_max_entries: 1024,
            queue_capacity: 65_536,
            publish_timeout: Duration::from_secs(10),
            lease_poll: Duration::from_millis(500),
            integrate_max_entries: 16_384,
            pass_interval: Duration::from_millis(20),
        }
    }
}

/// Why a shared-driver instance cannot start.
#[derive(Debug)]
#[non_exhaustive]
pub enum SharedError {
    /// The database failed or refused.
    Db(DbError),
    /// The bucket failed or holds what this log must not overwrite.
    Bucket(MirrorError),
    /// The database, the bucket and this instance's key do not agree.
    Mismatch(String),
}

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SharedError::Db(e) => write!(f, "database: {e}"),
            SharedError::Bucket(e) => write!(f, "{e}"),
            SharedError::Mismatch(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SharedError {}

impl From<DbError> for SharedError {
    fn from(e: DbError) -> Self {
        SharedError::Db(e)
    }
}

impl From<MirrorError> for SharedError {
    fn from(e: MirrorError) -> Self {
        SharedError::Bucket(e)
    }
}

/// What the instance's integrator is doing, for `/healthz` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntegratorStatus {
    /// Whether this instance holds the integrator lease.
    pub leader: bool,
    /// The last failure being retried (bucket or database unreachable), if any.
    pub retrying: Option<String>,
    /// Why integration stopped for good (an altered object, another deployment's bucket).
    pub stopped: Option<String>,
}

/// The instance's counters, served on `/metrics` (prefix `countersign_shared`).
#[derive(Debug)]
struct SharedMetrics {
    registry: Registry,
    leader: Gauge,
    stopped: Gauge,
    published_size: Gauge,
    batches: Counter,
    sequenced: Counter,
    failures: Counter,
    objects: Counter,
}

impl SharedMetrics {
    fn new() -> SharedMetrics {
        let mut registry = Registry::with_prefix("countersign_shared");
        let (leader, stopped, published_size) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        let (batches, sequenced, failures, objects) = (
            Counter::default(),
            Counter::default(),
            Counter::default(),
            Counter::default(),
        );
        for (name, help, gauge) in [
            (
                "integrator_leader",
                "1 while this instance holds the integrator lease",
                &leader,
            ),
            (
                "integration_stopped",
                "1 when integration stopped for good (an altered object, another deployment's \
                 bucket): nothing is published until an operator has looked",
                &stopped,
            ),
            (
                "published_size",
                "Tree size of the latest checkpoint published in the bucket, as this instance \
                 knows it",
                &published_size,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        for (name, help, counter) in [
            (
                "sequencing_batches",
                "Sequencing transactions this instance committed",
                &batches,
            ),
            (
                "sequenced_appends",
                "Appends in the sequencing transactions this instance committed",
                &sequenced,
            ),
            (
                "integration_failures",
                "Integration passes of this instance that failed (bucket or database) and \
                 were retried",
                &failures,
            ),
            (
                "objects_written",
                "Tiles and entry bundles this instance wrote (or found there with the same \
                 bytes)",
                &objects,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        SharedMetrics {
            registry,
            leader,
            stopped,
            published_size,
            batches,
            sequenced,
            failures,
            objects,
        }
    }
}

struct Request {
    entry: Vec<u8>,
    leaf: Hash,
    kind: AppendKind,
    reply: oneshot::Sender<Result<Appended, AppendError>>,
}

struct Inner {
    db: Db,
    bucket: Bucket,
    signer: Arc<LogSigner>,
    config: SharedConfig,
    published: watch::Sender<Published>,
    status: watch::Sender<IntegratorStatus>,
    queue: mpsc::Sender<Request>,
    closing: AtomicBool,
    /// When the latest published checkpoint was signed (ms since the epoch).
    signed_at_ms: AtomicU64,
    metrics: SharedMetrics,
}

/// One instance of a log on the shared driver. Cheap to clone.
#[derive(Clone)]
pub struct SharedLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog")
            .field("database", &self.inner.db.redacted_url())
            .field("bucket", &self.inner.bucket.url())
            .finish()
    }
}

/// The integration state stored in `int_coord`.
struct IntState {
    size: u64,
    root: Hash,
    edge: Edge,
    note: String,
    signed_at_ms: u64,
    /// The version (ETag) of the checkpoint object this integrator put last, if any: the next
    /// compare-and-swap expects it without reading the object first.
    bucket_version: Option<object_store::UpdateVersion>,
}

async fn load_state(db: &Db) -> Result<IntState, DbError> {
    let c = db.client().await?;
    // Read at every instance whenever the log grows: prepared once per connection.
    let read = c
        .prepare_cached(
            "SELECT size, root, edge, checkpoint, signed_at_ms FROM int_coord WHERE id = 1",
        )
        .await?;
    let row = c.query_one(&read, &[]).await?;
    let size = u64::try_from(row.get::<_, i64>(0))
        .map_err(|_| DbError::Query("negative tree size in int_coord".into()))?;
    let root: &[u8] = row.get(1);
    let root = Hash(
        root.try_into()
            .map_err(|_| DbError::Query("int_coord root is not 32 bytes".into()))?,
    );
    let edge = Edge::decode(row.get::<_, &[u8]>(2))
        .map_err(|e| DbError::Query(format!("int_coord edge: {e}")))?;
    if edge.size() != size || edge.root() != root {
        return Err(DbError::Query(
            "int_coord's edge does not match its size and root: the database is damaged".into(),
        ));
    }
    Ok(IntState {
        size,
        root,
        edge,
        note: row.get(3),
        signed_at_ms: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        bucket_version: None,
    })
}

/// Checks that the database belongs to this log, and creates its first state if it is new.
async fn prepare(db: &Db, signer: &LogSigner) -> Result<IntState, SharedError> {
    let c = db.client().await?;
    let vkey = signer.verifier_key().to_vkey();
    c.execute(
        "INSERT INTO log_identity (id, origin, vkey) VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
        &[&signer.origin(), &vkey],
    )
    .await
    .map_err(DbError::from)?;
    let row = c
        .query_one("SELECT origin, vkey FROM log_identity WHERE id = 1", &[])
        .await
        .map_err(DbError::from)?;
    let (origin, key): (String, String) = (row.get(0), row.get(1));
    if key != vkey {
        return Err(SharedError::Mismatch(format!(
            "the database {} belongs to the log {origin} with key {key}; this instance's key \
             is {vkey}: start every instance from copies of one data directory's keys",
            db.redacted_url()
        )));
    }
    c.execute(
        "INSERT INTO seq_coord (id, next_index) VALUES (1, 0) ON CONFLICT DO NOTHING",
        &[],
    )
    .await
    .map_err(DbError::from)?;
    let empty = Edge::empty();
    let note = signer
        .sign(0, empty_root())
        .map_err(|e| SharedError::Mismatch(e.to_string()))?;
    let root = empty_root();
    c.execute(
        "INSERT INTO checkpoints (size, root, note) VALUES (0, $1, $2) ON CONFLICT DO NOTHING",
        &[&root.as_bytes().as_slice(), &note],
    )
    .await
    .map_err(DbError::from)?;
    c.execute(
        "INSERT INTO int_coord (id, size, root, edge, checkpoint, signed_at_ms) \
         VALUES (1, 0, $1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[
            &root.as_bytes().as_slice(),
            &empty.encode(),
            &note,
            &(now_ms() as i64),
        ],
    )
    .await
    .map_err(DbError::from)?;
    Ok(load_state(db).await?)
}

/// The bucket's checkpoint, checked against the database: signed by this log and one of the
/// checkpoints this database signed. Its size and version, or `None` if the bucket has none.
async fn check_bucket(
    db: &Db,
    bucket: &Bucket,
    signer: &LogSigner,
) -> Result<Option<(u64, object_store::UpdateVersion)>, MirrorError> {
    let Some((bytes, version)) = bucket.checkpoint().await? else {
        return Ok(None);
    };
    let url = bucket.url();
    let cp = verify_checkpoint(&bytes, signer.verifier_key(), &[]).map_err(|e| {
        MirrorError::Conflict(format!(
            "the checkpoint in {url} is not this log's ({e}): another log's bucket, or \
             altered; nothing is published over it"
        ))
    })?;
    let size = cp.checkpoint.size;
    let c = db
        .client()
        .await
        .map_err(|e| MirrorError::Log(e.to_string()))?;
    let row = c
        .query_opt(
            "SELECT root FROM checkpoints WHERE size = $1",
            &[&(i64::try_from(size).unwrap_or(i64::MAX))],
        )
        .await
        .map_err(|e| MirrorError::Log(e.to_string()))?;
    match row {
        Some(r) if r.get::<_, &[u8]>(0) == cp.checkpoint.root.as_bytes().as_slice() => {
            Ok(Some((size, version)))
        }
        Some(_) => Err(MirrorError::Conflict(format!(
            "the checkpoint in {url} at size {size} has another root than this database's: a \
             fork, or another deployment with the same key writes there; nothing is published"
        ))),
        None => Err(MirrorError::Conflict(format!(
            "the checkpoint in {url} (size {size}) was not signed by this deployment's \
             database: another deployment publishes there, or the database was restored from \
             an older backup; nothing is published"
        ))),
    }
}

impl SharedLog {
    /// Connects to the database (migrating its schema), checks that the database, the bucket
    /// and `signer` belong to one log, and starts this instance's sequencer, integrator
    /// candidate and listener.
    pub async fn start(
        database_url: &str,
        bucket: Bucket,
        signer: Arc<LogSigner>,
        config: SharedConfig,
    ) -> Result<SharedLog, SharedError> {
        let db = Db::connect(database_url, MIGRATIONS).await?;
        let state = prepare(&db, &signer).await?;
        check_bucket(&db, &bucket, &signer).await?;
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let inner = Arc::new(Inner {
            db,
            bucket,
            signer,
            config,
            published: watch::channel(Published {
                size: state.size,
                root: state.root,
                note: state.note.into(),
            })
            .0,
            status: watch::channel(IntegratorStatus::default()).0,
            queue,
            closing: AtomicBool::new(false),
            signed_at_ms: AtomicU64::new(state.signed_at_ms),
            metrics: SharedMetrics::new(),
        });
        inner
            .metrics
            .published_size
            .set(i64::try_from(state.size).unwrap_or(i64::MAX));
        let listener = inner.db.listen(INTEGRATED).await?;
        tokio::spawn(follow(inner.clone(), listener));
        tokio::spawn(sequencer(inner.clone(), rx));
        tokio::spawn(integrator(inner.clone()));
        Ok(SharedLog { inner })
    }

    /// The latest checkpoint known to be published in the bucket.
    pub fn published(&self) -> Published {
        self.inner.published.borrow().clone()
    }

    /// Follows [`SharedLog::published`].
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.inner.published.subscribe()
    }

    /// What this instance's integrator is doing.
    pub fn status(&self) -> watch::Receiver<IntegratorStatus> {
        self.inner.status.subscribe()
    }

    /// The instance's counters (`countersign_shared_*` on `/metrics`).
    pub fn registry(&self) -> &Registry {
        &self.inner.metrics.registry
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.inner.bucket
    }

    /// The log's signer.
    pub fn signer(&self) -> &Arc<LogSigner> {
        &self.inner.signer
    }

    /// Sequences `entry` and waits until a checkpoint covering it is published in the bucket.
    pub async fn append(
        &self,
        entry: Vec<u8>,
        leaf: Hash,
        kind: AppendKind,
    ) -> Result<Appended, AppendError> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(AppendError::ShuttingDown);
        }
        crate::sequencer::refuse_unbundlable(&entry)?;
        let (reply, rx) = oneshot::channel();
        let r = Request {
            entry,
            leaf,
            kind,
            reply,
        };
        match self.inner.queue.try_send(r) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(AppendError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(AppendError::ShuttingDown),
        }
        rx.await.unwrap_or(Err(AppendError::ShuttingDown))
    }

    /// [`SharedLog::append`] for many entries, one result each, in order (they are sequenced
    /// together when they fit in one batch).
    pub async fn append_many(
        &self,
        items: Vec<(Vec<u8>, Hash, AppendKind)>,
    ) -> Vec<Result<Appended, AppendError>> {
        let waiting: Vec<_> = items
            .into_iter()
            .map(|(entry, leaf, kind)| self.append(entry, leaf, kind))
            .collect();
        futures_util::future::join_all(waiting).await
    }

    /// Sequencing transactions this instance committed, and the appends they held.
    pub fn sequencing_stats(&self) -> (u64, u64) {
        (
            self.inner.metrics.batches.get(),
            self.inner.metrics.sequenced.get(),
        )
    }

    /// Stops taking appends and gives up the integrator lease (another instance takes over).
    pub fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
    }

    /// Whether the instance takes appends: not shut down, and integration not stopped.
    pub fn alive(&self) -> bool {
        !self.inner.closing.load(Ordering::SeqCst) && self.inner.status.borrow().stopped.is_none()
    }

    /// Milliseconds since the epoch at which the latest published checkpoint was signed.
    pub fn last_signed_ms(&self) -> u64 {
        self.inner.signed_at_ms.load(Ordering::Relaxed)
    }

    /// Logged entry `index` (the caller bounds it by the published size).
    pub async fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let row = self
            .row_by(
                "SELECT data FROM entries WHERE idx = $1",
                &i64::try_from(index).unwrap_or(i64::MAX),
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// What the log's checks of a group of requests read, in a few queries.
    pub async fn prefetch(&self, wants: Wants) -> Result<Prefetched, StorageError> {
        let c = self.inner.db.client().await.map_err(db_storage)?;
        prefetch(&c, wants).await.map_err(db_storage)
    }

    /// The root of the tree at `size` as this database signed it: `None` when no checkpoint
    /// of that size was published (an error beyond the published tree). Roots from here are
    /// trusted; the bucket's tiles are not.
    pub async fn signed_root(&self, size: u64) -> Result<Option<Hash>, ProofRequestError> {
        let published = self.published();
        if size == published.size {
            return Ok(Some(published.root));
        }
        if size > published.size {
            return Err(ProofRequestError::OutOfRange(
                "the tree size is beyond the published tree",
            ));
        }
        if size == 0 {
            return Ok(Some(empty_root()));
        }
        let row = self
            .row_by(
                "SELECT root FROM checkpoints WHERE size = $1",
                &i64::try_from(size).unwrap_or(i64::MAX),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let root: &[u8] = row.get(0);
        Ok(Some(Hash(root.try_into().map_err(|_| {
            StorageError::Corrupt("a stored checkpoint root is not 32 bytes".into())
        })?)))
    }
}

/// Submitter tokens in the database, shared by every instance (the embedded store's
/// `crate::submitters` functions, on PostgreSQL).
impl SharedLog {
    /// Creates a submitter and returns its token (shown once).
    pub async fn create_submitter(&self, name: &str) -> Result<SecretToken, StorageError> {
        let token = SecretToken::generate();
        let c = self.inner.db.client().await.map_err(db_storage)?;
        c.execute(
            "INSERT INTO submitters (token_hash, name) VALUES ($1, $2)",
            &[&token.hash().as_slice(), &name],
        )
        .await
        .map_err(db_storage)?;
        Ok(token)
    }

    /// Stores a submitter token's hash under `name` (moving an embedded log); a hash already
    /// there is left as it is.
    pub async fn import_submitter(
        &self,
        token_hash: &[u8; 32],
        name: &str,
    ) -> Result<(), StorageError> {
        let c = self.inner.db.client().await.map_err(db_storage)?;
        c.execute(
            "INSERT INTO submitters (token_hash, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&token_hash.as_slice(), &name],
        )
        .await
        .map_err(db_storage)?;
        Ok(())
    }

    /// Every submitter token, by name then fingerprint.
    pub async fn list_submitters(&self) -> Result<Vec<SubmitterInfo>, StorageError> {
        let c = self.inner.db.client().await.map_err(db_storage)?;
        let mut out = Vec::new();
        for row in c
            .query("SELECT token_hash, name FROM submitters", &[])
            .await
            .map_err(db_storage)?
        {
            let h: [u8; 32] = row
                .get::<_, &[u8]>(0)
                .try_into()
                .map_err(|_| StorageError::Corrupt("a token hash is not 32 bytes".into()))?;
            out.push(SubmitterInfo {
                name: row.get(1),
                fingerprint: fingerprint(&h),
            });
        }
        out.sort_by(|a, b| (&a.name, &a.fingerprint).cmp(&(&b.name, &b.fingerprint)));
        Ok(out)
    }

    /// Revokes every token of the submitter `name`; returns the fingerprints revoked.
    pub async fn revoke_submitter(&self, name: &str) -> Result<Vec<String>, StorageError> {
        let c = self.inner.db.client().await.map_err(db_storage)?;
        let mut revoked = Vec::new();
        for row in c
            .query(
                "DELETE FROM submitters WHERE name = $1 RETURNING token_hash",
                &[&name],
            )
            .await
            .map_err(db_storage)?
        {
            let h: [u8; 32] = row
                .get::<_, &[u8]>(0)
                .try_into()
                .map_err(|_| StorageError::Corrupt("a token hash is not 32 bytes".into()))?;
            revoked.push(fingerprint(&h));
        }
        revoked.sort();
        Ok(revoked)
    }

    /// The submitter a token belongs to, looked up by the token's SHA-256 (see
    /// `crate::submitters::submitter_for` on why no further comparison is needed).
    pub async fn submitter_for(&self, token: &SecretToken) -> Result<Option<String>, StorageError> {
        let row = self
            .row_by(
                "SELECT name FROM submitters WHERE token_hash = $1",
                &token.hash().as_slice(),
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The leaf index of the published leaf with hash `leaf`.
    pub async fn leaf_index(&self, leaf: &Hash) -> Result<Option<u64>, StorageError> {
        let size = self.published().size;
        let row = self
            .row_by(
                "SELECT idx FROM entries WHERE leaf_hash = $1",
                &leaf.as_bytes().as_slice(),
            )
            .await?;
        Ok(row
            .and_then(|r| u64::try_from(r.get::<_, i64>(0)).ok())
            .filter(|i| *i < size))
    }

    /// The checkpoint note this log signed for a tree of `size` leaves, if published.
    pub async fn checkpoint(&self, size: u64) -> Result<Option<String>, StorageError> {
        if size > self.published().size {
            return Ok(None);
        }
        let row = self
            .row_by(
                "SELECT note FROM checkpoints WHERE size = $1",
                &i64::try_from(size).unwrap_or(i64::MAX),
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}

impl SharedLog {
    /// The row `sql` selects with the one parameter `key`, if any.
    async fn row_by(
        &self,
        sql: &str,
        key: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Option<tokio_postgres::Row>, StorageError> {
        let c = self.inner.db.client().await.map_err(db_storage)?;
        let stmt = c.prepare_cached(sql).await.map_err(db_storage)?;
        c.query_opt(&stmt, &[key]).await.map_err(db_storage)
    }
}

pub(super) fn db_storage(e: impl Into<DbError>) -> StorageError {
    e.into().into()
}

/// Keeps [`Inner::published`] up to date from the integrator's notifications, and from the
/// database once a second (notifications are lost while the listener reconnects).
async fn follow(inner: Arc<Inner>, mut listener: super::pg::Listener) {
    let mut halt_read = Instant::now();
    loop {
        if inner.closing.load(Ordering::SeqCst) {
            return;
        }
        let notice = tokio::time::timeout(Duration::from_secs(1), listener.next()).await;
        if halt_read.elapsed() >= Duration::from_secs(1) {
            halt_read = Instant::now();
            follow_halt(&inner).await;
        }
        let known = inner.published.borrow().size;
        if let Ok(Notice::Payload(p)) = &notice {
            if p.parse::<u64>().is_ok_and(|s| s <= known) {
                continue;
            }
        }
        match load_state(&inner.db).await {
            Ok(s) if s.size > known => {
                inner.signed_at_ms.store(s.signed_at_ms, Ordering::Relaxed);
                inner
                    .metrics
                    .published_size
                    .set(i64::try_from(s.size).unwrap_or(i64::MAX));
                inner.published.send_modify(|p| {
                    if s.size > p.size {
                        *p = Published {
                            size: s.size,
                            root: s.root,
                            note: s.note.into(),
                        };
                    }
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the published checkpoint"),
        }
    }
}

/// Reports, at an instance that is not the integrator, why integration stopped (or that it no
/// longer is), as the integrator recorded it.
async fn follow_halt(inner: &Inner) {
    if inner.status.borrow().leader {
        return;
    }
    let halt = match inner.db.client().await {
        Ok(c) => match c
            .query_opt("SELECT reason FROM integration_halt WHERE id = 1", &[])
            .await
        {
            Ok(row) => row.map(|r| r.get::<_, String>(0)),
            Err(_) => return,
        },
        Err(_) => return,
    };
    if inner.status.borrow().stopped != halt {
        inner.metrics.stopped.set(i64::from(halt.is_some()));
        inner.status.send_modify(|st| st.stopped = halt);
    }
}

/// Takes the queued appends in batches and sequences each batch in one transaction; while a
/// transaction runs, the next batch gathers (group commit).
async fn sequencer(inner: Arc<Inner>, mut rx: mpsc::Receiver<Request>) {
    let max = inner.config.batch_max_entries.max(1);
    let mut batch = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        let requests = std::mem::take(&mut batch);
        let outcomes = sequence_batch(&inner, &requests).await;
        tokio::spawn(answer(inner.clone(), requests, outcomes));
    }
}

async fn sequence_batch(inner: &Inner, requests: &[Request]) -> Result<Vec<Outcome>, DbError> {
    let mut c = inner.db.client().await?;
    let tx = c.transaction().await?;
    let items: Vec<Item<'_>> = requests
        .iter()
        .map(|r| Item {
            entry: &r.entry,
            leaf: &r.leaf,
            kind: &r.kind,
        })
        .collect();
    let outcomes = sequence(&tx, &items).await?;
    tx.commit().await?;
    inner.metrics.batches.inc();
    inner.metrics.sequenced.inc_by(requests.len() as u64);
    Ok(outcomes)
}

/// Answers a sequenced batch once a published checkpoint covers it.
async fn answer(
    inner: Arc<Inner>,
    requests: Vec<Request>,
    outcomes: Result<Vec<Outcome>, DbError>,
) {
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(e) => {
            // The transaction did not commit, or its commit was not confirmed: nothing is
            // acknowledged, and a retry is deduplicated against whatever did commit.
            tracing::error!(error = %e, "sequencing failed; nothing acknowledged");
            for r in requests {
                let _ = r.reply.send(Err(AppendError::Unavailable));
            }
            return;
        }
    };
    // Wait (at most the publish timeout) until a published checkpoint covers the batch; then
    // each entry is answered against the latest one if it covers that entry (an entry logged
    // long ago is, whatever became of the rest), else 503 not_published.
    let last = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::New(i) | Outcome::Existing(i) => Some(*i),
            Outcome::Failed(_) => None,
        })
        .max();
    if let Some(last) = last {
        let mut rx = inner.published.subscribe();
        let _ = tokio::time::timeout(inner.config.publish_timeout, rx.wait_for(|p| p.size > last))
            .await;
    }
    let published = inner.published.borrow().clone();
    // The original leaf of each entry found logged (a replayed assertion's differs).
    let existing: HashSet<u64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Existing(i) if *i < published.size => Some(*i),
            _ => None,
        })
        .collect();
    let originals = if existing.is_empty() {
        Ok(Default::default())
    } else {
        match inner.db.client().await {
            Ok(c) => leaf_hashes(&c, &existing).await,
            Err(e) => Err(e),
        }
    };
    let originals = originals.unwrap_or_else(|e| {
        tracing::error!(error = %e, "reading the original leaves of logged entries");
        Default::default()
    });
    let why = inner.status.borrow().clone();
    for (r, o) in requests.into_iter().zip(outcomes) {
        let reply = match o {
            Outcome::Failed(e) => Err(e),
            Outcome::New(index) | Outcome::Existing(index) if index >= published.size => {
                Err(AppendError::NotPublished {
                    index,
                    reason: why
                        .stopped
                        .clone()
                        .or(why.retrying.clone())
                        .unwrap_or_else(|| "integration is behind".into()),
                })
            }
            Outcome::New(index) => Ok(Appended {
                index,
                leaf_hash: r.leaf,
                tree_size: published.size,
                checkpoint: published.note.clone(),
                existing: false,
            }),
            // Not read (the database failed): nothing is acknowledged.
            Outcome::Existing(index) => match originals.get(&index) {
                Some(leaf_hash) => Ok(Appended {
                    index,
                    leaf_hash: *leaf_hash,
                    tree_size: published.size,
                    checkpoint: published.note.clone(),
                    existing: true,
                }),
                None => Err(AppendError::Unavailable),
            },
        };
        let _ = r.reply.send(reply);
    }
}

/// Tries to take the integrator lease; integrates while it holds it.
async fn integrator(inner: Arc<Inner>) {
    loop {
        if inner.closing.load(Ordering::SeqCst) {
            return;
        }
        match inner.db.try_lease(INTEGRATOR_LEASE).await {
            Ok(Some(lease)) => {
                tracing::info!("this instance is the integrator");
                inner.status.send_modify(|s| s.leader = true);
                inner.metrics.leader.set(1);
                tokio::select! {
                    () = integrate_while_leader(&inner) => {}
                    () = lease.lost() => {
                        tracing::warn!("integrator lease lost");
                    }
                }
                inner.status.send_modify(|s| s.leader = false);
                inner.metrics.leader.set(0);
                lease.release().await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot ask for the integrator lease"),
        }
        tokio::time::sleep(inner.config.lease_poll).await;
    }
}

/// Integrates until an error it cannot retry, another integrator's fence, or shutdown.
async fn integrate_while_leader(inner: &Inner) {
    let mut listener = match inner.db.listen(SEQUENCED).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for sequenced batches");
            return;
        }
    };
    let mut backoff = Duration::from_millis(100);
    let mut state: Option<IntState> = None;
    loop {
        if inner.closing.load(Ordering::SeqCst) {
            return;
        }
        let started = Instant::now();
        let pass = async {
            let s = match state.take() {
                Some(s) => s,
                None => {
                    let s = load_state(&inner.db)
                        .await
                        .map_err(|e| MirrorError::Log(e.to_string()))?;
                    // The bucket must hold one of this database's checkpoints before anything
                    // is written to it; an empty bucket (a new deployment, or one replaced or
                    // lost) gets everything the database has first.
                    if check_bucket(&inner.db, &inner.bucket, &inner.signer)
                        .await?
                        .is_none()
                    {
                        republish(inner, &s).await?;
                    }
                    // Whatever stopped an integrator before is resolved.
                    let c = inner.db.client().await.map_err(db_failed)?;
                    c.execute("DELETE FROM integration_halt", &[])
                        .await
                        .map_err(db_failed)?;
                    s
                }
            };
            integrate_pass(inner, s).await
        };
        match pass.await {
            Ok(Some((s, progressed))) => {
                state = Some(s);
                backoff = Duration::from_millis(100);
                if inner.status.borrow().retrying.is_some() {
                    inner.status.send_modify(|st| st.retrying = None);
                }
                if progressed {
                    // Passes at most every pass_interval: each rewrites the partial tiles.
                    tokio::time::sleep_until((started + inner.config.pass_interval).into()).await;
                } else {
                    // Nothing sequenced: wait for the next batch (or look again in a second;
                    // notifications are lost while the listener reconnects).
                    let _ = tokio::time::timeout(Duration::from_secs(1), listener.next()).await;
                }
            }
            Ok(None) => {
                tracing::warn!("another integrator advanced the tree; giving up the lease");
                return;
            }
            Err(MirrorError::Conflict(m)) => {
                tracing::error!("integration stopped: {m}");
                inner.status.send_modify(|st| st.stopped = Some(m.clone()));
                inner.metrics.stopped.set(1);
                // Every instance reports it (their /healthz), not only this one.
                if let Ok(c) = inner.db.client().await {
                    let _ = c
                        .execute(
                            "INSERT INTO integration_halt (id, reason) VALUES (1, $1) \
                             ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, at = now()",
                            &[&m],
                        )
                        .await;
                }
                // Hold the lease and stay stopped: nothing may be published over this bucket
                // until an operator has looked (or this instance shuts down).
                while !inner.closing.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(retry_in_ms = backoff.as_millis() as u64, "integration: {e}");
                inner
                    .status
                    .send_modify(|st| st.retrying = Some(e.to_string()));
                inner.metrics.failures.inc();
                state = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What [`extend`] wrote: the new edge and root, and the paths of the tiles it completed.
struct Extended {
    edge: Edge,
    root: Hash,
    full: Vec<String>,
}

/// Extends the tree at `edge` to `to` leaves with the database's entries: integrates them and
/// writes the new entry bundles and hash tiles to the bucket, create-only.
async fn extend(
    inner: &Inner,
    c: &deadpool_postgres::Object,
    edge: &Edge,
    to: u64,
) -> Result<Extended, MirrorError> {
    let at = edge.size();
    let start = at - at % 256;
    let read = c
        .prepare_cached("SELECT data FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx")
        .await
        .map_err(db_failed)?;
    let rows = c
        .query(&read, &[&(start as i64), &(to as i64)])
        .await
        .map_err(db_failed)?;
    if rows.len() as u64 != to - start {
        return Err(MirrorError::Log(format!(
            "entries {start}..{to} are sequenced but {} of them are in the database",
            rows.len()
        )));
    }
    let mut data: Vec<Vec<u8>> = rows.into_iter().map(|r| r.get(0)).collect();
    let new = data.split_off((at - start) as usize);
    let edge = edge.clone();
    let done = tokio::task::spawn_blocking(move || integrate(&edge, &data, &new))
        .await
        .map_err(|e| MirrorError::Log(e.to_string()))?
        .map_err(|e| MirrorError::Log(format!("integration: {e}")))?;
    let bucket = &inner.bucket;
    let full: Vec<String> = done
        .tiles
        .iter()
        .chain(&done.bundles)
        .filter(|o| o.full)
        .map(|o| o.path.clone())
        .collect();
    let objects = (done.bundles.len() + done.tiles.len()) as u64;
    stream::iter(done.bundles.into_iter().chain(done.tiles))
        .map(|o| async move {
            let cache = if o.full { IMMUTABLE } else { NO_CACHE };
            bucket.create(&o.path, o.bytes, cache).await
        })
        .buffer_unordered(PARALLEL_PUTS)
        .try_collect::<Vec<()>>()
        .await?;
    inner.metrics.objects.inc_by(objects);
    Ok(Extended {
        edge: done.edge,
        root: done.root,
        full,
    })
}

/// Writes every object of the tree `s` (entry bundles, hash tiles) from the database's entries,
/// then its checkpoint, to a bucket that has no checkpoint: a new deployment's (its empty
/// tree's checkpoint), or one whose bucket was replaced or lost.
async fn republish(inner: &Inner, s: &IntState) -> Result<(), MirrorError> {
    if s.size > 0 {
        tracing::warn!(
            entries = s.size,
            bucket = inner.bucket.url(),
            "the bucket has no checkpoint: writing the log's tiles from the database"
        );
    }
    let c = inner.db.client().await.map_err(db_failed)?;
    let mut edge = Edge::empty();
    while edge.size() < s.size {
        let to = s.size.min(edge.size() + 16_384);
        edge = extend(inner, &c, &edge, to).await?.edge;
    }
    if edge.root() != s.root {
        return Err(MirrorError::Conflict(format!(
            "the database's entries do not make the tree its checkpoint of size {} signs: the \
             database is damaged; nothing is published",
            s.size
        )));
    }
    inner.bucket.put_checkpoint(&s.note, None).await?;
    Ok(())
}

fn db_failed(e: impl std::fmt::Display) -> MirrorError {
    MirrorError::Log(format!("database: {e}"))
}

/// One integration pass: integrates what is sequenced beyond `s` (at most
/// `integrate_max_entries`), writes the new objects, publishes the checkpoint in the bucket,
/// then advances `int_coord` from `s.size` (`None` if another integrator did first). The bool
/// says whether anything was integrated.
async fn integrate_pass(
    inner: &Inner,
    s: IntState,
) -> Result<Option<(IntState, bool)>, MirrorError> {
    // Every statement of a pass prepared once per connection: a pass runs for every few
    // appends under load, and an unprepared statement costs a second round trip.
    let c = inner.db.client().await.map_err(db_failed)?;
    let next_index = c
        .prepare_cached("SELECT next_index FROM seq_coord WHERE id = 1")
        .await
        .map_err(db_failed)?;
    let next: i64 = c
        .query_one(&next_index, &[])
        .await
        .map_err(db_failed)?
        .get(0);
    let next = u64::try_from(next).map_err(db_failed)?;
    if next <= s.size {
        return Ok(Some((s, false)));
    }
    let to = next.min(s.size + inner.config.integrate_max_entries.max(1) as u64);
    let done = extend(inner, &c, &s.edge, to).await?;
    let full = done.full;
    let bucket = &inner.bucket;
    let root = done.root;
    let signed_at = now_ms();
    let note = inner
        .signer
        .sign(to, root)
        .map_err(|e| MirrorError::Log(e.to_string()))?;
    // The checkpoint recorded, then the root recorded for its size read back: ours, or another
    // integrator's of the same size. Two statements, not one: a single statement's read would
    // use the snapshot from before an insert of that size it waited for, and find no row.
    let record = c
        .prepare_cached(
            "INSERT INTO checkpoints (size, root, note) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db_failed)?;
    c.execute(&record, &[&(to as i64), &root.as_bytes().as_slice(), &note])
        .await
        .map_err(db_failed)?;
    let recorded = c
        .prepare_cached("SELECT root FROM checkpoints WHERE size = $1")
        .await
        .map_err(db_failed)?;
    let stored: Vec<u8> = c
        .query_one(&recorded, &[&(to as i64)])
        .await
        .map_err(db_failed)?
        .get(0);
    if stored.as_slice() != root.as_bytes().as_slice() {
        return Err(MirrorError::Conflict(format!(
            "the database already holds a checkpoint of size {to} with another root than the \
             one integrated from its own entries: the database is damaged"
        )));
    }
    // The checkpoint, by compare-and-swap on the one there: still the one this integrator put
    // last (its version known), or else checked first (this database's, not ahead of ours).
    // (A directory has no compare-and-swap: its checkpoint is checked before every write.)
    let mut current = s
        .bucket_version
        .clone()
        .filter(|_| bucket.compare_and_swap())
        .map(Some);
    let version = loop {
        let expected = match current.take() {
            Some(v) => v,
            None => match check_bucket(&inner.db, bucket, &inner.signer).await? {
                Some((there, _)) if there >= to => break None,
                other => other.map(|(_, v)| v),
            },
        };
        if let Some(v) = bucket.put_checkpoint(&note, expected).await? {
            break Some(v);
        }
    };
    // Partial tiles of tiles now full are no longer needed by anyone (readers of older
    // checkpoints fall back on the full tile): removed off the path of the appends.
    if !full.is_empty() {
        let bucket = bucket.clone();
        tokio::spawn(async move {
            for path in full {
                if let Err(e) = bucket.remove_partials(&path).await {
                    tracing::warn!(error = %e, "partial tiles of a full tile left in the bucket");
                }
            }
        });
    }
    let advance = c
        .prepare_cached(
            "UPDATE int_coord SET size = $1, root = $2, edge = $3, checkpoint = $4, \
             signed_at_ms = $5 WHERE id = 1 AND size = $6",
        )
        .await
        .map_err(db_failed)?;
    let advanced = c
        .execute(
            &advance,
            &[
                &(to as i64),
                &root.as_bytes().as_slice(),
                &done.edge.encode(),
                &note,
                &(signed_at as i64),
                &(s.size as i64),
            ],
        )
        .await
        .map_err(db_failed)?;
    if advanced == 0 {
        return Ok(None);
    }
    if let Ok(notify) = c.prepare_cached("SELECT pg_notify($1, $2)").await {
        let _ = c.execute(&notify, &[&INTEGRATED, &to.to_string()]).await;
    }
    let note: Arc<str> = note.into();
    inner.signed_at_ms.store(signed_at, Ordering::Relaxed);
    inner
        .metrics
        .published_size
        .set(i64::try_from(to).unwrap_or(i64::MAX));
    inner.published.send_modify(|p| {
        if to > p.size {
            *p = Published {
                size: to,
                root,
                note: note.clone(),
            };
        }
    });
    Ok(Some((
        IntState {
            size: to,
            root,
            edge: done.edge,
            note: note.to_string(),
            signed_at_ms: signed_at,
            bucket_version: version,
        },
        true,
    )))
}
