//! The front end's records in the `ciba` column family, as JSON values under prefixed keys:
//!
//! | key | value |
//! |---|---|
//! | `c/<client_id>` | [`ClientRecord`] |
//! | `a/<approver_id>` | [`ApproverRecord`] |
//! | `m/<email, lowercased>` | approver id |
//! | `l/<hex SHA-256 of link token>` | [`EnrolmentLink`] |
//! | `r/<hex SHA-256 of auth_req_id>` | [`RequestRecord`] |
//! | `q/<request_id>` | hex SHA-256 of its auth_req_id |
//! | `p/<approver_id>/<request_id>` | empty: the approver's open requests |
//! | `k/<kid>` | token signing key seed (hex) |
//! | `x/<expires_at, 16 hex digits>/<request_id>` | hex SHA-256 of its auth_req_id (clean-up index) |
//! | `v/x-index` | marker: every request has its `x/` key |
//! | `d/<hex SHA-256 of auth_req_id>` | [`OutboxRecord`]: a ping/push delivery still owed |
//! | `w/<hex SHA-256 of auth_req_id>/<webhook or email>` | empty: an approver notification still owed |
//! | `i/<hex SHA-256 of auth_req_id>` | empty: the request is claimed, its decision being logged |
//! | `s/<hex SHA-256 of session cookie>` | an approver session |
//!
//! Only hashes of `auth_req_id`s, link tokens and session cookies are keys, so the keys alone
//! do not let anyone redeem a request or a link. (The `d/` records of open ping/push requests
//! hold their `auth_req_id` until it is delivered; the store also holds the token signing keys.)
//!
//! Concurrency: a read-modify-write of a record holds that record's lock ([`CibaStore::lock`],
//! one of [`LOCK_STRIPES`] async mutexes chosen by hashing the key) from its read until its
//! write is applied, so two changes of one record are serialised while changes of different
//! records run side by side. Writes never block the caller's thread: they go to one writer
//! thread, which merges whatever was submitted meanwhile into one RocksDB write batch with one
//! fsync (group commit), and answers each submitter once its changes are durable.

use std::collections::{BTreeSet, HashMap};
use std::sync::{mpsc, Arc};

use countersign_verifier::Statement;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::Secret;
use crate::storage::{StorageError, Store};

/// Column family of the approval front end.
pub const CF_CIBA: &str = "ciba";
/// Prefix of the approvers' pending indexes (`p/<approver_id>/<request_id>`).
pub const PENDING_PREFIX: &str = "p/";
/// Prefix of the clean-up index (`x/<expires_at, 16 hex digits>/<request_id>`).
pub const EXPIRY_PREFIX: &str = "x/";
/// Marker written once every request has its clean-up index key.
pub const EXPIRY_INDEX_MARKER: &str = "v/x-index";
/// Prefix of the delivery outbox (`d/<SHA-256 of the auth_req_id, hex>`): what a ping or push
/// request still has to deliver to its client.
pub const OUTBOX_PREFIX: &str = "d/";

/// Prefix of the claimed requests (`i/<SHA-256 of the auth_req_id, hex>`): those whose decision
/// is being logged, for the recovery at start.
pub const CLAIM_PREFIX: &str = "i/";

/// Prefix of the approver notifications still owed (`w/<SHA-256 of the auth_req_id, hex>/<kind>`,
/// kind `webhook` or `email`): written with the request, deleted once delivered, taken up at
/// start while the request is still open.
pub const NOTIFY_PREFIX: &str = "w/";

/// A ping or push request's delivery that has not reached the client yet. Written with the
/// request (so the `auth_req_id` a ping or push must carry survives a restart, while the
/// request record itself keeps only its hash), completed with the token response when push
/// tokens are issued (in the same write that marks them issued, so a delivery repeated after a
/// crash carries the same tokens), and deleted once the client acknowledged the delivery, or
/// with the request at clean-up. Keeping the `auth_req_id` here weakens nothing: this store
/// already holds the token signing keys and the clients' notification tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// The request's `auth_req_id`.
    pub auth_req_id: Secret,
    /// For push: the token response (JSON text) once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_response: Option<Secret>,
}

/// Token delivery mode (CIBA section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// The client polls the token endpoint.
    Poll,
    /// The client is pinged, then fetches the token.
    Ping,
    /// The token is pushed to the client.
    Push,
}

/// Client authentication method at the CIBA endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with one of the client's registered keys (RFC 7523, OIDC Core section 9).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// A registered client (agent).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Opaque client id.
    pub client_id: String,
    /// How it authenticates.
    pub auth_method: AuthMethod,
    /// `sha256:<hex>` for server-generated secrets, an argon2id PHC string otherwise; empty
    /// for `private_key_jwt` clients.
    pub secret_hash: String,
    /// Public keys (a JWKS) of a `private_key_jwt` client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Delivery mode.
    pub mode: DeliveryMode,
    /// Notification endpoint (ping, push).
    pub notification_endpoint: Option<String>,
    /// When registered (seconds).
    pub created_at: u64,
}

/// An approver (a person, known to the log only by the opaque id).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApproverRecord {
    /// Opaque approver id.
    pub approver_id: String,
    /// E-mail address (never in the log).
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Disabled approvers cannot sign in, be asked, or decide.
    pub disabled: bool,
    /// Enrolled credentials.
    pub credentials: Vec<CredentialRef>,
    /// When registered (seconds).
    pub created_at: u64,
}

/// An enrolled credential of an approver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CredentialRef {
    /// Credential id (base64url).
    pub credential_id: String,
    /// Leaf index of its enrolment entry.
    pub enrolment_index: u64,
    /// COSE algorithm.
    pub alg: i64,
}

/// A one-time enrolment link.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrolmentLink {
    /// The approver it enrols.
    pub approver_id: String,
    /// Expiry (seconds).
    pub expires_at: u64,
    /// Set once a passkey was enrolled through it.
    pub used: bool,
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for the approver.
    Pending,
    /// A decision is being logged (claimed, so two decisions cannot race).
    Deciding,
    /// Approved and logged.
    Approved,
    /// Denied and logged.
    Denied,
    /// Expired undecided.
    Expired,
}

/// The logged decision of a request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Leaf index of the decision entry.
    pub index: u64,
    /// Its leaf hash (hex).
    pub leaf_hash: String,
    /// Leaf index of the enrolment of the credential that signed.
    pub enrolment_index: u64,
    /// SHA-256 of the statement with the decision (hex).
    pub statement_hash: String,
    /// When decided (seconds).
    pub decided_at: u64,
}

/// A backchannel authentication request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Public request id (also in the statement).
    pub request_id: String,
    /// The statement shown; its `decision` member is set when decided.
    pub statement: Statement,
    /// The 32-byte nonce (hex).
    pub nonce: String,
    /// The client's delivery mode when it asked.
    pub mode: DeliveryMode,
    /// Bearer token for ping/push deliveries.
    pub client_notification_token: Option<Secret>,
    /// Status.
    pub status: RequestStatus,
    /// The logged decision.
    pub decision: Option<DecisionRecord>,
    /// Set when tokens were handed out (they are issued once).
    pub token_issued: bool,
    /// While [`RequestStatus::Deciding`]: what the decision is being logged with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimRecord>,
}

/// What a claimed request is being decided with, written with the claim (before the decision is
/// appended to the log), so that a start after a crash can finish the decision from the log, or
/// release the claim if the decision never reached it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The assertion's replay key in the log ([`crate::append::assertion_key`], hex).
    pub assertion_key: String,
    /// `approve` or `deny`.
    pub decision: String,
    /// Leaf index of the enrolment of the credential that signed.
    pub enrolment_index: u64,
    /// SHA-256 of the decided statement (hex).
    pub statement_hash: String,
}

/// Number of record locks. Keys are spread over them by hash, so unrelated records rarely share
/// one, and a lock is only ever held for one record's read-modify-write.
pub const LOCK_STRIPES: usize = 1024;
/// Most submitted writes merged into one RocksDB write.
const MAX_GROUP: usize = 512;

/// When a write must be on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Synced (fsync) before the write is answered.
    Sync,
    /// Applied (visible to every reader) before the write is answered, and on disk with the next
    /// synced write to the same database: the database has one write-ahead log, written in
    /// order, and a synced write syncs everything written before it. For changes that need not
    /// survive a crash on their own (stale index keys, clean-up), or that a synced write made
    /// right after them covers (the claim of a request before its decision is logged).
    Deferred,
}

/// Changes applied together, in order: puts and deletions.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<(String, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Stores a raw value.
    pub fn put(&mut self, key: impl Into<String>, value: Vec<u8>) -> &mut Self {
        self.ops.push((key.into(), Some(value)));
        self
    }

    /// Stores a JSON record.
    pub fn put_json<T: Serialize>(
        &mut self,
        key: impl Into<String>,
        v: &T,
    ) -> Result<&mut Self, StorageError> {
        let value = enc(v)?;
        Ok(self.put(key, value))
    }

    /// Deletes a key.
    pub fn delete(&mut self, key: impl Into<String>) -> &mut Self {
        self.ops.push((key.into(), None));
        self
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<(), StorageError>>;

/// A submitted write.
struct Job {
    ops: Vec<(String, Option<Vec<u8>>)>,
    sync: bool,
    reply: Option<Reply>,
}

/// Counters of the group-commit writer (also exported as metrics).
#[derive(Debug, Default)]
pub(crate) struct WriteStats {
    pub(crate) jobs: prometheus_client::metrics::counter::Counter,
    pub(crate) writes: prometheus_client::metrics::counter::Counter,
    pub(crate) synced_writes: prometheus_client::metrics::counter::Counter,
}

/// What the writer did so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterStats {
    /// Writes submitted (and answered).
    pub submitted: u64,
    /// RocksDB write batches made from them.
    pub batches: u64,
    /// Of which synced (one fsync each).
    pub synced_batches: u64,
}

/// The `p/` keys (each approver's open requests) in memory, so that reading an inbox is a map
/// lookup rather than a scan over the deletion markers every decided request leaves behind.
/// Loaded at start; kept in step by [`CibaStore::commit`], which applies the `p/` puts and
/// deletions of every batch once the batch is written.
#[derive(Debug, Default)]
struct PendingIndex(std::sync::Mutex<HashMap<String, BTreeSet<String>>>);

impl PendingIndex {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeSet<String>>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Applies the `p/` changes among `ops`.
    fn apply(&self, ops: &[(String, Option<Vec<u8>>)]) {
        let mut changes = ops.iter().filter_map(|(k, v)| {
            let (approver, request) = k.strip_prefix(PENDING_PREFIX)?.rsplit_once('/')?;
            Some((approver, request, v.is_some()))
        });
        let Some(first) = changes.next() else {
            return;
        };
        let mut map = self.map();
        for (approver, request, put) in std::iter::once(first).chain(changes) {
            if put {
                map.entry(approver.to_owned())
                    .or_default()
                    .insert(request.to_owned());
            } else if let Some(set) = map.get_mut(approver) {
                set.remove(request);
                if set.is_empty() {
                    map.remove(approver);
                }
            }
        }
    }
}

/// Typed access to the `ciba` column family.
pub struct CibaStore {
    store: Store,
    pending: PendingIndex,
    locks: Box<[tokio::sync::Mutex<()>]>,
    tx: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<WriteStats>,
}

impl std::fmt::Debug for CibaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CibaStore")
            .field("writer", &self.writer_stats())
            .finish_non_exhaustive()
    }
}

impl Drop for CibaStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has answered everything submitted;
        // joining it releases its handle on the database before our owner reopens it.
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let s = self.writer_stats();
        tracing::info!(
            submitted = s.submitted,
            batches = s.batches,
            synced_batches = s.synced_batches,
            "approval store closed"
        );
    }
}

/// The writer thread: takes every write submitted meanwhile, applies them as one batch (synced
/// if any of them must be), and answers each.
fn writer_loop(store: Store, rx: mpsc::Receiver<Job>, stats: Arc<WriteStats>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let sync = jobs.iter().any(|j| j.sync);
        let result = store.cf(CF_CIBA).and_then(|cf| {
            let wb = write_batch(cf, jobs.iter().flat_map(|j| &j.ops));
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(sync);
            store.db().write_opt(wb, &wo).map_err(StorageError::from)
        });
        stats.jobs.inc_by(jobs.len() as u64);
        stats.writes.inc();
        if sync {
            stats.synced_writes.inc();
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, writes = jobs.len(), "approval store write failed");
        }
        for j in jobs {
            if let Some(reply) = j.reply {
                // A submitter that stopped waiting is not an error.
                let _ = reply.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StorageError(e.0.clone())),
                });
            }
        }
    }
}

/// The RocksDB batch of puts (`Some`) and deletions (`None`) in the `ciba` family.
fn write_batch<'a>(
    cf: &rocksdb::ColumnFamily,
    ops: impl IntoIterator<Item = &'a (String, Option<Vec<u8>>)>,
) -> rocksdb::WriteBatch {
    let mut wb = rocksdb::WriteBatch::default();
    for (k, v) in ops {
        match v {
            Some(v) => wb.put_cf(cf, k.as_bytes(), v),
            None => wb.delete_cf(cf, k.as_bytes()),
        }
    }
    wb
}

/// FNV-1a of a key: its lock stripe.
fn stripe_of(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % LOCK_STRIPES as u64) as usize
}

/// The smallest key above every key that starts with `prefix` (None: there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|e| StorageError(format!("encoding a record: {e}")))
}

/// A held record lock.
pub type RecordGuard<'a> = tokio::sync::MutexGuard<'a, ()>;

impl CibaStore {
    /// Wraps the log's store and starts the writer thread.
    pub fn new(store: Store) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriteStats::default());
        let writer = std::thread::Builder::new()
            .name("ciba-writer".into())
            .spawn({
                let (store, stats) = (store.clone(), stats.clone());
                move || writer_loop(store, rx, stats)
            })
            .map_err(|e| StorageError(format!("starting the approval store writer: {e}")))?;
        let pending = PendingIndex::default();
        let cf = store.cf(CF_CIBA)?;
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(prefix_end(PENDING_PREFIX.as_bytes()).unwrap_or_default());
        let mut loaded = Vec::new();
        for item in store.db().iterator_cf_opt(
            cf,
            ro,
            rocksdb::IteratorMode::From(PENDING_PREFIX.as_bytes(), rocksdb::Direction::Forward),
        ) {
            let (k, _) = item?;
            loaded.push((String::from_utf8_lossy(&k).into_owned(), Some(Vec::new())));
        }
        pending.apply(&loaded);
        Ok(CibaStore {
            store,
            pending,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            tx: Some(tx),
            writer: Some(writer),
            stats,
        })
    }

    /// Holds the lock of record `key` for a read-modify-write: read after taking it, and keep
    /// it until the write is applied (awaited). Take no second lock while holding one; use
    /// [`CibaStore::lock_all`] for several records.
    pub async fn lock(&self, key: &str) -> RecordGuard<'_> {
        self.locks[stripe_of(key)].lock().await
    }

    /// Holds the locks of several records, taken in one global order so that two callers
    /// cannot deadlock.
    pub async fn lock_all(&self, keys: &[&str]) -> Vec<RecordGuard<'_>> {
        let mut stripes: Vec<usize> = keys.iter().map(|k| stripe_of(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut out = Vec::with_capacity(stripes.len());
        for s in stripes {
            out.push(self.locks[s].lock().await);
        }
        out
    }

    /// Applies `batch` atomically through the writer; returns once it is applied and, for
    /// [`Durability::Sync`], on disk.
    pub async fn commit(&self, batch: Batch, durability: Durability) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let pending: Vec<(String, Option<Vec<u8>>)> = batch
            .ops
            .iter()
            .filter(|(k, _)| k.starts_with(PENDING_PREFIX))
            .map(|(k, v)| (k.clone(), v.as_ref().map(|_| Vec::new())))
            .collect();
        self.submit(Job {
            ops: batch.ops,
            sync: durability == Durability::Sync,
            reply: Some(reply),
        })?;
        rx.await
            .map_err(|_| StorageError("the approval store writer stopped".into()))??;
        self.pending.apply(&pending);
        Ok(())
    }

    /// Submits `batch` ([`Durability::Deferred`]) without waiting for it: for changes nobody
    /// waits on, such as dropping stale index keys.
    pub fn commit_in_background(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        self.pending.apply(&batch.ops);
        let job = Job {
            ops: batch.ops,
            sync: false,
            reply: None,
        };
        if let Err(e) = self.submit(job) {
            tracing::warn!(error = %e, "background write dropped");
        }
    }

    fn submit(&self, job: Job) -> Result<(), StorageError> {
        self.tx
            .as_ref()
            .ok_or_else(|| StorageError("the approval store is closed".into()))?
            .send(job)
            .map_err(|_| StorageError("the approval store writer stopped".into()))
    }

    /// Writes records and deletions in one synced batch.
    pub async fn write(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<(), StorageError> {
        let mut b = Batch::new();
        for (k, v) in puts {
            b.put(k.clone(), v.clone());
        }
        for k in deletes {
            b.delete(k.clone());
        }
        self.commit(b, Durability::Sync).await
    }

    /// Writes one JSON record, synced.
    pub async fn put<T: Serialize>(&self, key: &str, v: &T) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.put_json(key, v)?;
        self.commit(b, Durability::Sync).await
    }

    /// The log's store this approval store lives in.
    pub fn log_store(&self) -> &Store {
        &self.store
    }

    /// Applies `batch`, synced, on the calling thread (start-up, or a thread that may block).
    pub fn commit_blocking(&self, batch: Batch) -> Result<(), StorageError> {
        let cf = self.store.cf(CF_CIBA)?;
        self.store.write_sync(write_batch(cf, &batch.ops))?;
        self.pending.apply(&batch.ops);
        Ok(())
    }

    /// Writes one JSON record, synced, on the calling thread (start-up, or a thread that may
    /// block).
    pub fn put_blocking<T: Serialize>(&self, key: &str, v: &T) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.put_json(key, v)?;
        self.commit_blocking(b)
    }

    /// The writer's counters, for the metrics.
    pub(crate) fn write_stats(&self) -> &WriteStats {
        &self.stats
    }

    /// What the writer did so far; `submitted / synced_batches` is how many writes one fsync
    /// carried.
    pub fn writer_stats(&self) -> WriterStats {
        let s = &self.stats;
        WriterStats {
            submitted: s.jobs.get(),
            batches: s.writes.get(),
            synced_batches: s.synced_writes.get(),
        }
    }

    /// Reads a JSON record.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let cf = self.store.cf(CF_CIBA)?;
        // Parsed straight from RocksDB's pinned block or memtable copy: no intermediate Vec.
        self.store
            .db()
            .get_pinned_cf(cf, key.as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StorageError(format!("record {key:?} is corrupt: {e}")))
            })
            .transpose()
    }

    /// Reads a raw value.
    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.store.get(CF_CIBA, key.as_bytes())
    }

    /// Encodes a record for [`CibaStore::write`].
    pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
        enc(v)
    }

    /// Keys and values under `prefix`, at most `limit`.
    pub fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let end = prefix_end(prefix.as_bytes());
        self.scan_range(prefix.as_bytes(), end.as_deref(), limit)
    }

    /// Keys and values in `[start, end)` (to the end of the column family without `end`), at
    /// most `limit`, in key order.
    pub fn scan_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let cf = self.store.cf(CF_CIBA)?;
        let mut ro = rocksdb::ReadOptions::default();
        // The bound keeps the iterator from stepping over the deletion markers of keys beyond
        // the range (finished requests leave many) looking for the next live key.
        if let Some(end) = end {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let iter = self.store.db().iterator_cf_opt(
            cf,
            ro,
            rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.into_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Key of a request record.
    pub fn request_key(auth_req_hash: &[u8; 32]) -> String {
        Self::record_key_of(&hex::encode(auth_req_hash))
    }

    /// Key of the request record whose `auth_req_id` hash (hex) is `hash_hex`: the inverse of
    /// the per-request keys below, whose suffix is that hash.
    pub fn record_key_of(hash_hex: &str) -> String {
        format!("r/{hash_hex}")
    }

    /// The `auth_req_id` hash (hex) in a request's record key.
    fn hash_in(record_key: &str) -> &str {
        record_key.strip_prefix("r/").unwrap_or(record_key)
    }

    /// Key of a request's pending delivery ([`OutboxRecord`]), from its record key.
    pub fn outbox_key(record_key: &str) -> String {
        format!("{OUTBOX_PREFIX}{}", Self::hash_in(record_key))
    }

    /// Key of a claimed request's marker, from its record key.
    pub fn claim_key(record_key: &str) -> String {
        format!("{CLAIM_PREFIX}{}", Self::hash_in(record_key))
    }

    /// Key of an approver notification (`kind`: `webhook` or `email`) still owed for a request,
    /// from its record key.
    pub fn notify_key(record_key: &str, kind: &str) -> String {
        format!("{NOTIFY_PREFIX}{}/{kind}", Self::hash_in(record_key))
    }

    /// Key of a request's public id.
    pub fn public_id_key(request_id: &str) -> String {
        format!("q/{request_id}")
    }

    /// Key of an open request in its approver's pending index.
    pub fn pending_key(approver_id: &str, request_id: &str) -> String {
        format!("{PENDING_PREFIX}{approver_id}/{request_id}")
    }

    /// The ids of an approver's open requests (at most `limit`, in id order) with their `p/`
    /// keys, from memory.
    pub fn pending_of(&self, approver_id: &str, limit: usize) -> Vec<(String, String)> {
        self.pending
            .map()
            .get(approver_id)
            .map(|set| {
                set.iter()
                    .take(limit)
                    .map(|rid| (Self::pending_key(approver_id, rid), rid.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Key of a request in the clean-up index: ordered by expiry.
    pub fn expiry_key(expires_at: u64, request_id: &str) -> String {
        format!("{EXPIRY_PREFIX}{expires_at:016x}/{request_id}")
    }

    /// The request with this public id, and its record key.
    pub fn request_by_public_id(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, RequestRecord)>, StorageError> {
        let Some(h) = self.get_raw(&format!("q/{request_id}"))? else {
            return Ok(None);
        };
        let key = Self::record_key_of(&String::from_utf8_lossy(&h));
        Ok(self.get::<RequestRecord>(&key)?.map(|r| (key, r)))
    }

    /// An approver by id.
    pub fn approver(&self, approver_id: &str) -> Result<Option<ApproverRecord>, StorageError> {
        self.get(&format!("a/{approver_id}"))
    }

    /// A client by id.
    pub fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StorageError> {
        self.get(&format!("c/{client_id}"))
    }
}
