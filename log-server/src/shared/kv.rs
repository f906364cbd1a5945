//! The key-value area of the shared driver: the counterpart in PostgreSQL of the embedded
//! [`KvArea`](crate::storage::kv::KvArea), for crates built on the log (the approval front end
//! keeps its records here). The same string keys, byte values, [`Batch`]es and record locks,
//! held in the table `kv` and shared by every instance:
//!
//! - a batch is applied in one statement, so one transaction and one round trip (its ops
//!   collapsed to the last one per key);
//! - a record lock is an in-process stripe lock plus a session advisory lock of PostgreSQL on
//!   one dedicated connection of this instance, so a read-modify-write of one record is
//!   serialised across every instance; the database drops the locks of an instance that dies;
//! - records of an append-only numbered feed (the audit events) are queued by the transaction
//!   that writes them and numbered soon after, many at a time, in one transaction under the row
//!   lock of their counter, so numbers commit in order whichever instance numbers them, and
//!   writers never wait for one another's commits;
//! - the keys changed under one watched prefix are sent to every other instance with `NOTIFY`
//!   right after the writing transaction commits (the keys of the writes that commit while one
//!   notice is being sent go together in the next, so notices cost a statement per burst, not
//!   per write), and the receivers read their values, so an in-memory index over that prefix
//!   stays in step ([`SharedKv::changes`]).
//! - a key and the record its value names (a prefix followed by that value, or by a member
//!   of it) are read in one statement ([`SharedKv::get_via`]).
//!
//! Reads come in two forms: asynchronous ([`SharedKv::get_raw_async`],
//! [`SharedKv::scan_range_async`], [`SharedKv::get_many`]), which request handlers use, and
//! synchronous like the embedded area's ([`SharedKv::get_raw`], [`SharedKv::scan_range`]) for
//! code that cannot await: those block the calling worker thread
//! ([`tokio::task::block_in_place`]) for one round trip, and need the multi-threaded runtime.
//! Blocking costs two thread hand-offs a read, so hot paths read asynchronously.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::pg::{Db, DbError, Dedicated, Notice};
use crate::storage::kv::{Batch, Durability, Op, WriteCounters, WriterStats, LOCK_STRIPES};
use crate::storage::StorageError;

/// Prefix of the records queued for a numbered feed ([`SharedKv::commit_queued`]): `~` sorts
/// after every prefix of the area's own keys.
pub const QUEUE_PREFIX: &str = "~q/";
/// Channel of the watched-prefix changes.
pub const KV_CHANNEL: &str = "countersign_kv";
/// Largest NOTIFY payload sent; bigger change sets ask every instance to re-read the prefix.
const MAX_PAYLOAD: usize = 7000;
/// First and longest wait between tries of a record lock another instance holds.
const LOCK_RETRY_FIRST: Duration = Duration::from_millis(2);
const LOCK_RETRY_MAX: Duration = Duration::from_millis(50);
/// How long a record lock is waited for before the operation fails (503).
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The schema of the area (a migration of [`super::schema::MIGRATIONS`]).
pub const SCHEMA: &str = r#"
-- The approval front end's records (and any other crate's built on the log): the embedded
-- store's key-value area, shared by every instance. Keys sort bytewise (COLLATE "C"), as in
-- RocksDB, so prefix and range scans return the same keys in the same order.
CREATE TABLE kv (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);
"#;

/// The function that numbers a feed's queued records ([`SharedKv::number_queued`]; a migration
/// of [`super::schema::MIGRATIONS`]). Each statement in it reads what committed before that
/// statement (READ COMMITTED), so the queued records are read only once the counter's row lock
/// is held, as in a transaction of the same statements sent one by one.
pub const NUMBER_QUEUED: &str = r#"
-- Moves up to `lim` records queued under [q_start, q_end), oldest (smallest key) first, to
-- `feed_prefix` followed by the next numbers (16 lowercase hex digits) of the counter at
-- `counter_key` (the next number, 16 hex digits; 1 when absent), under the counter row's lock.
-- Returns how many it moved. Nothing queued: returns 0 without taking the lock.
CREATE FUNCTION kv_number_queued(counter_key text, q_start text, q_end text, feed_prefix text,
                                 lim bigint)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    counter text;
    next_n bigint;
    moved bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kv WHERE key >= q_start AND key < q_end) THEN
        RETURN 0;
    END IF;
    INSERT INTO kv (key, value) VALUES (counter_key, convert_to('0000000000000001', 'UTF8'))
        ON CONFLICT (key) DO NOTHING;
    SELECT encode(value, 'escape') INTO counter FROM kv WHERE key = counter_key FOR UPDATE;
    IF counter IS NULL OR counter !~ '^[0-7][0-9a-f]{15}$' THEN
        RAISE EXCEPTION '% is not 16 hex digits', counter_key USING ERRCODE = 'data_corrupted';
    END IF;
    next_n := ('x' || counter)::bit(64)::bigint;
    WITH q AS MATERIALIZED (
        SELECT key, value FROM kv WHERE key >= q_start AND key < q_end ORDER BY key LIMIT lim
    ), n AS MATERIALIZED (
        SELECT key, value, row_number() OVER (ORDER BY key) - 1 AS i FROM q
    ), gone AS (
        DELETE FROM kv WHERE key IN (SELECT key FROM q)
    ), put AS (
        INSERT INTO kv (key, value)
        SELECT feed_prefix || lpad(to_hex(next_n + i), 16, '0'), value FROM n
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
    )
    SELECT count(*) INTO moved FROM n;
    IF moved > 0 THEN
        UPDATE kv SET value = convert_to(lpad(to_hex(next_n + moved), 16, '0'), 'UTF8')
            WHERE key = counter_key;
    END IF;
    RETURN moved;
END
$fn$;
"#;

/// A change seen by [`SharedKv::changes`].
#[derive(Clone, Debug)]
pub enum Change {
    /// Another instance changed these keys under the watched prefix: read their values
    /// ([`SharedKv::get_many`]); the notice is sent after the change committed, so what is read
    /// is at least as new as it, whatever order notices from several instances arrive in.
    Keys(Arc<Vec<String>>),
    /// Changes may have been missed (the listener reconnected, or a change set was too big to
    /// send): re-read the watched prefix.
    Resync,
}

/// The session that holds this instance's record locks, with its two statements prepared.
struct LockSession {
    conn: Dedicated,
    try_lock: tokio_postgres::Statement,
    /// Releases an array of locks (each as many times as it appears).
    unlock: tokio_postgres::Statement,
    /// Locks to release, for [`release_locks`].
    unlocks: tokio::sync::mpsc::UnboundedSender<Vec<i64>>,
}

/// Releases the locks of dropped guards on `session`: waits for one guard's, takes those of
/// every other guard dropped meanwhile, and releases them all in one statement. Ends with the
/// session.
async fn release_locks(
    session: std::sync::Weak<LockSession>,
    mut pending: tokio::sync::mpsc::UnboundedReceiver<Vec<i64>>,
) {
    while let Some(mut keys) = pending.recv().await {
        while let Ok(more) = pending.try_recv() {
            keys.extend(more);
        }
        let Some(s) = session.upgrade() else { return };
        if s.conn.client.is_closed() {
            // A closed session holds no lock any more.
            continue;
        }
        if let Err(e) = s.conn.client.execute(&s.unlock, &[&keys]).await {
            tracing::warn!(error = %DbError::from(e), "record unlock failed");
        }
    }
}

/// A held record lock (or several): released when dropped.
pub struct SharedGuard<'a> {
    _local: Vec<tokio::sync::MutexGuard<'a, ()>>,
    keys: Vec<i64>,
    session: Option<Arc<LockSession>>,
}

impl std::fmt::Debug for SharedGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGuard")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Drop for SharedGuard<'_> {
    fn drop(&mut self) {
        let (Some(session), keys) = (self.session.take(), std::mem::take(&mut self.keys)) else {
            return;
        };
        if keys.is_empty() || session.conn.client.is_closed() {
            // A closed session holds no lock any more.
            return;
        }
        // Released in a statement with other guards' (`release_locks`). Until it runs, another
        // instance waits for these records; this one may take them again (the session's
        // locks count, and the statements run in order).
        let _ = session.unlocks.send(keys);
    }
}

/// The shared key-value area of one instance.
pub struct SharedKv {
    db: Db,
    rt: tokio::runtime::Handle,
    locks: Box<[tokio::sync::Mutex<()>]>,
    session: tokio::sync::Mutex<Option<Arc<LockSession>>>,
    watch_prefix: &'static str,
    /// Random id of this instance in change notices (its own are not applied twice).
    instance: String,
    changes: broadcast::Sender<Change>,
    counters: Arc<WriteCounters>,
    /// Woken when this instance queues feed records.
    queued: Arc<tokio::sync::Notify>,
    /// Feed records this instance queued (their order within one millisecond).
    queued_count: std::sync::atomic::AtomicU64,
    /// Keys changed under the watched prefix by committed writes, for the notice sender, each
    /// with the way to say they were sent.
    notices: tokio::sync::mpsc::UnboundedSender<(Vec<String>, tokio::sync::oneshot::Sender<()>)>,
    listener: tokio::task::JoinHandle<()>,
    /// Holds this instance's liveness lock ([`SharedKv::instance_alive`]) while it runs.
    liveness: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SharedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKv")
            .field("db", &self.db)
            .field("watch_prefix", &self.watch_prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for SharedKv {
    fn drop(&mut self) {
        self.listener.abort();
        self.liveness.abort();
    }
}

/// 64-bit FNV-1a of a key: its advisory lock key (and, reduced, its stripe), so two keys that
/// share an advisory lock always share a stripe too, and one instance never takes one advisory
/// lock twice at once for two records.
fn lock_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The advisory lock an instance holds while it runs, from its id.
fn liveness_key(instance: &str) -> i64 {
    lock_hash(&format!("countersign instance {instance}")) as i64
}

fn unavailable(e: DbError) -> StorageError {
    e.into()
}

impl SharedKv {
    /// Opens the area on `db` (whose schema includes [`SCHEMA`]); changes under
    /// `watch_prefix` are sent to every instance. Starts listening for other instances'
    /// changes.
    ///
    /// Errors: [`StorageError::Unavailable`] when the listener cannot connect.
    pub async fn open(db: Db, watch_prefix: &'static str) -> Result<SharedKv, StorageError> {
        let (changes, _) = broadcast::channel(1024);
        let instance = hex::encode(rand::random::<[u8; 16]>());
        let mut listen = db.listen(KV_CHANNEL).await.map_err(unavailable)?;
        let first = db
            .try_lease(liveness_key(&instance))
            .await
            .map_err(unavailable)?;
        let liveness = tokio::spawn({
            let (db, key) = (db.clone(), liveness_key(&instance));
            async move {
                let mut held = first;
                loop {
                    match held.take() {
                        Some(lease) => {
                            lease.lost().await;
                            tracing::warn!("instance liveness lock lost; taking it again");
                        }
                        None => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                    held = db.try_lease(key).await.ok().flatten();
                }
            }
        });
        let listener = tokio::spawn({
            let (changes, instance) = (changes.clone(), instance.clone());
            async move {
                loop {
                    let change = match listen.next().await {
                        Notice::Reconnected => Change::Resync,
                        Notice::Payload(p) => match parse_notice(&p, &instance) {
                            Some(c) => c,
                            None => continue,
                        },
                    };
                    // Nobody listening is fine.
                    let _ = changes.send(change);
                }
            }
        });
        let (notices, pending) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(send_notices(db.clone(), instance.clone(), pending));
        Ok(SharedKv {
            db,
            rt: tokio::runtime::Handle::current(),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            session: tokio::sync::Mutex::new(None),
            watch_prefix,
            instance,
            changes,
            counters: Arc::new(WriteCounters::default()),
            queued: Arc::default(),
            queued_count: std::sync::atomic::AtomicU64::new(0),
            notices,
            listener,
            liveness,
        })
    }

    /// This instance's id (random, new at each start).
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Whether the instance `id` is running: it holds its liveness lock in the database for
    /// as long as it runs (the database drops it when the instance dies). An instance whose
    /// connection broke counts as not running until it takes the lock again.
    pub async fn instance_alive(&self, id: &str) -> Result<bool, StorageError> {
        if id == self.instance {
            return Ok(true);
        }
        let session = self.lock_session().await?;
        let key = liveness_key(id);
        let q = |e: tokio_postgres::Error| unavailable(e.into());
        let free: bool = session
            .conn
            .client
            .query_one(&session.try_lock, &[&key])
            .await
            .map_err(q)?
            .try_get(0)
            .map_err(q)?;
        if free {
            session
                .conn
                .client
                .execute(&session.unlock, &[&vec![key]])
                .await
                .map_err(q)?;
        }
        Ok(!free)
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Other instances' changes under the watched prefix, in commit order.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// This instance's lock session, opened again if it closed.
    async fn lock_session(&self) -> Result<Arc<LockSession>, StorageError> {
        let mut s = self.session.lock().await;
        if let Some(open) = s.as_ref().filter(|s| !s.conn.client.is_closed()) {
            return Ok(open.clone());
        }
        let conn = self.db.dedicated().await.map_err(unavailable)?;
        let q = |e: tokio_postgres::Error| unavailable(e.into());
        let try_lock = conn
            .client
            .prepare("SELECT pg_try_advisory_lock($1)")
            .await
            .map_err(q)?;
        let unlock = conn
            .client
            .prepare("SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) AS k")
            .await
            .map_err(q)?;
        let (unlocks, pending) = tokio::sync::mpsc::unbounded_channel();
        let fresh = Arc::new(LockSession {
            conn,
            try_lock,
            unlock,
            unlocks,
        });
        tokio::spawn(release_locks(Arc::downgrade(&fresh), pending));
        *s = Some(fresh.clone());
        Ok(fresh)
    }

    /// Holds the lock of record `key` for a read-modify-write, at every instance: read after
    /// taking it, keep it until the write is applied. Take no second lock while holding one;
    /// use [`SharedKv::lock_all`] for several records.
    ///
    /// Errors: [`StorageError::Unavailable`] when the database cannot be reached, or the lock
    /// is not free within 30 s.
    pub async fn lock(&self, key: &str) -> Result<SharedGuard<'_>, StorageError> {
        self.lock_all(&[key]).await
    }

    /// Holds the locks of several records, taken in one global order (the advisory keys
    /// ascending, after the stripes ascending), so that two callers cannot deadlock.
    pub async fn lock_all(&self, keys: &[&str]) -> Result<SharedGuard<'_>, StorageError> {
        let mut hashes: Vec<u64> = keys.iter().map(|k| lock_hash(k)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut stripes: Vec<usize> = hashes
            .iter()
            .map(|h| (h % LOCK_STRIPES as u64) as usize)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut local = Vec::with_capacity(stripes.len());
        for s in stripes {
            local.push(self.locks[s].lock().await);
        }
        let session = self.lock_session().await?;
        let mut guard = SharedGuard {
            _local: local,
            keys: Vec::with_capacity(hashes.len()),
            session: Some(session.clone()),
        };
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        for h in hashes {
            let k = h as i64;
            let mut wait = LOCK_RETRY_FIRST;
            loop {
                let row = session
                    .conn
                    .client
                    .query_one(&session.try_lock, &[&k])
                    .await
                    .map_err(|e| unavailable(e.into()))?;
                if row
                    .try_get::<_, bool>(0)
                    .map_err(|e| unavailable(e.into()))?
                {
                    guard.keys.push(k);
                    break;
                }
                if tokio::time::Instant::now() + wait > deadline {
                    return Err(StorageError::Unavailable(format!(
                        "a record lock was not free within {LOCK_WAIT:?}"
                    )));
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LOCK_RETRY_MAX);
            }
        }
        Ok(guard)
    }

    /// Applies `batch` atomically (one transaction); returns once committed (for
    /// [`Durability::Deferred`], committed without waiting for the database's WAL flush).
    pub async fn commit(&self, batch: Batch, durability: Durability) -> Result<(), StorageError> {
        self.apply_ops(batch.into_ops(), durability).await
    }

    /// [`SharedKv::commit`] with `records` queued, in the same transaction, for the feed under
    /// `prefix` (see [`SharedKv::number_queued`], which gives them their numbers): the writing
    /// transaction takes no lock shared by every writer, so writers do not queue behind one
    /// another's commits.
    pub async fn commit_queued(
        &self,
        batch: Batch,
        queued: Option<(&str, &[Vec<u8>])>,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let queued = queued.filter(|(_, r)| !r.is_empty());
        let mut ops: Vec<Op> = batch.into_ops();
        if let Some((prefix, records)) = queued {
            // Time-ordered keys: the feed follows the order events were recorded in, to the
            // millisecond across instances, and exactly within one (its counter); the instance
            // id keeps two instances' keys apart.
            let ms = crate::now_ms();
            for r in records {
                let n = self
                    .queued_count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ops.push((
                    format!("{QUEUE_PREFIX}{prefix}{ms:016x}/{}/{n:016x}", self.instance),
                    Some(r.clone()),
                ));
            }
        }
        self.apply_ops(ops, durability).await?;
        if queued.is_some() {
            self.queued.notify_one();
        }
        Ok(())
    }

    /// Gives the records queued for the feed under `prefix` ([`SharedKv::commit_queued`]) their
    /// numbers, oldest first, at most `limit`: each becomes `prefix` + its number (16 hex
    /// digits), from the counter at `counter_key` (16 hex digits: the next number; 1 when
    /// absent). One transaction, under the counter row's lock: numbering transactions, at any
    /// instance, commit one after another in the order of their numbers, so a reader following
    /// the feed by number never skips a record that appears later. Returns how many.
    ///
    /// One statement, so one round trip: the function [`NUMBER_QUEUED`] (it replaced a
    /// transaction of seven statements, each prepared anew, which held the counter's lock for as
    /// many round trips).
    pub async fn number_queued(
        &self,
        counter_key: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<usize, StorageError> {
        let start = format!("{QUEUE_PREFIX}{prefix}");
        let end =
            String::from_utf8(crate::storage::kv::prefix_end(start.as_bytes()).unwrap_or_default())
                .unwrap_or_default();
        let client = self.db.client().await.map_err(unavailable)?;
        let failed = |e: tokio_postgres::Error| {
            if e.code() == Some(&tokio_postgres::error::SqlState::DATA_CORRUPTED) {
                StorageError::Corrupt(format!("{counter_key} is not 16 hex digits"))
            } else {
                unavailable(e.into())
            }
        };
        let number = client
            .prepare_cached("SELECT kv_number_queued($1, $2, $3, $4, $5)")
            .await
            .map_err(failed)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let moved: i64 = client
            .query_one(&number, &[&counter_key, &start, &end, &prefix, &limit])
            .await
            .map_err(failed)?
            .try_get(0)
            .map_err(failed)?;
        Ok(usize::try_from(moved).unwrap_or(0))
    }

    /// Notified when this instance queues records for the feed ([`SharedKv::commit_queued`]):
    /// what a numbering task waits on ([`SharedKv::number_queued`]).
    pub fn queued_signal(&self) -> Arc<tokio::sync::Notify> {
        self.queued.clone()
    }

    async fn apply_ops(&self, ops: Vec<Op>, durability: Durability) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let client = self.db.client().await.map_err(unavailable)?;
        let q = |e: tokio_postgres::Error| unavailable(e.into());
        // The last op of each key is the batch's effect on it.
        let mut last: HashMap<&str, Option<&[u8]>> = HashMap::with_capacity(ops.len());
        for (k, v) in &ops {
            last.insert(k.as_str(), v.as_deref());
        }
        let (mut put_keys, mut put_values, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in last {
            match v {
                Some(v) => {
                    put_keys.push(k);
                    put_values.push(v);
                }
                None => deletes.push(k),
            }
        }
        // One statement, so one round trip and its own transaction: the deletions and the
        // upserts (of distinct keys) in data-modifying CTEs, and the durability asked for set
        // for that transaction alone (`set_config(…, true)`, read at its commit).
        let sync = if durability == Durability::Deferred {
            "off"
        } else {
            "on"
        };
        let stmt = client
            .prepare_cached(
                "WITH cfg AS (SELECT set_config('synchronous_commit', $1, true) AS v), \
                      del AS (DELETE FROM kv WHERE key = ANY($2::text[])), \
                      ins AS (INSERT INTO kv (key, value) \
                              SELECT * FROM unnest($3::text[], $4::bytea[]) \
                              ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
                 SELECT v FROM cfg",
            )
            .await
            .map_err(q)?;
        client
            .query_one(&stmt, &[&sync, &deletes, &put_keys, &put_values])
            .await
            .map_err(q)?;
        let watched: Vec<String> = ops
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(self.watch_prefix))
            .collect();
        if !watched.is_empty() {
            // After the commit, and not in the writing transaction: a NOTIFY there would take
            // PostgreSQL's notification queue lock at commit and so serialise every writer's
            // commit (its WAL flush included). Sent by `send_notices`, with the keys of other
            // writes committed meanwhile, and waited for, so that when a write returns the
            // other instances are being told (a request created here is in their inboxes by
            // the time its creator hears of it). Receivers read the keys' values, so a late
            // notice cannot undo a newer change. Lost (the sender's connection broke): the
            // other instances' pending index is stale until their next resync; the records
            // themselves are right.
            // The connection goes back to the pool first: the sender needs one, and writers
            // holding every connection while they wait for it would wait for ever.
            drop(client);
            let (sent, done) = tokio::sync::oneshot::channel();
            if self.notices.send((watched, sent)).is_ok() {
                let _ = done.await;
            }
        }
        self.counters.jobs.inc();
        self.counters.writes.inc();
        if durability == Durability::Sync {
            self.counters.synced_writes.inc();
        }
        Ok(())
    }

    /// Submits `batch` without waiting for it (changes nobody waits on).
    pub fn commit_in_background(self: &Arc<Self>, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let me = self.clone();
        self.rt.spawn(async move {
            if let Err(e) = me.commit(batch, Durability::Deferred).await {
                tracing::warn!(error = %e, "background write dropped");
            }
        });
    }

    /// Applies `batch` on the calling thread (start-up, or a thread that may block).
    pub fn commit_blocking(&self, batch: Batch) -> Result<(), StorageError> {
        self.block(self.commit(batch, Durability::Sync))
    }

    /// [`SharedKv::commit_queued`], synced, on the calling thread.
    pub fn commit_queued_blocking(
        &self,
        batch: Batch,
        queued: Option<(&str, &[Vec<u8>])>,
    ) -> Result<(), StorageError> {
        self.block(self.commit_queued(batch, queued, Durability::Sync))
    }

    /// The writes' counters, for metrics (one transaction per write).
    pub fn counters(&self) -> &WriteCounters {
        &self.counters
    }

    /// What was written so far.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats::of(&self.counters)
    }

    /// Runs `f` to completion from synchronous code: on a worker of the multi-threaded
    /// runtime it blocks that worker (others take its tasks); outside any runtime it runs on
    /// the area's.
    fn block<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => match h.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::CurrentThread => Err(StorageError::Stopped(
                    "the shared key-value area is read from a current-thread runtime; it needs \
                     the multi-threaded one"
                        .into(),
                )),
                _ => tokio::task::block_in_place(|| h.block_on(f)),
            },
            Err(_) => self.rt.block_on(f),
        }
    }

    /// Reads a JSON record.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        crate::storage::kv::decode(key, self.get_raw(key)?.as_deref())
    }

    /// Reads a raw value.
    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.block(self.get_raw_async(key))
    }

    /// The values of `keys` (absent ones `None`), read together (from async code).
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Op>, StorageError> {
        let c = self.db.client().await.map_err(unavailable)?;
        let q = |e: tokio_postgres::Error| unavailable(e.into());
        let stmt = c
            .prepare_cached("SELECT key, value FROM kv WHERE key = ANY($1)")
            .await
            .map_err(q)?;
        let rows = c.query(&stmt, &[&keys]).await.map_err(q)?;
        let mut found: HashMap<String, Vec<u8>> =
            rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(keys.iter().map(|k| (k.clone(), found.remove(k))).collect())
    }

    /// Reads a raw value (from async code).
    pub async fn get_raw_async(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let c = self.db.client().await.map_err(unavailable)?;
        let q = |e: tokio_postgres::Error| unavailable(e.into());
        let stmt = c
            .prepare_cached("SELECT value FROM kv WHERE key = $1")
            .await
            .map_err(q)?;
        let row = c.query_opt(&stmt, &[&key]).await.map_err(q)?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The value at `key`, and the value at `prefix` followed by the one it holds (its text,
    /// or with `field` the string member `field` of its JSON object): a record and the record
    /// it points to, read in one statement. `None` when `key` is absent; the second value is
    /// `None` when the record pointed to is absent (or `key`'s value names none).
    pub async fn get_via(
        &self,
        key: &str,
        prefix: &str,
        field: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, StorageError> {
        let c = self.db.client().await.map_err(unavailable)?;
        let q = |e: tokio_postgres::Error| unavailable(e.into());
        let row = match field {
            // `escape` leaves the ASCII of ids and hashes as it is (and turns other bytes into
            // escapes no key has).
            None => {
                let stmt = c
                    .prepare_cached(
                        "SELECT p.value, t.value FROM kv p LEFT JOIN kv t \
                         ON t.key = $2 || encode(p.value, 'escape') WHERE p.key = $1",
                    )
                    .await
                    .map_err(q)?;
                c.query_opt(&stmt, &[&key, &prefix]).await
            }
            Some(field) => {
                let stmt = c
                    // Only a string member names a record, as on the embedded store (`->>`
                    // alone would also give a number's or an object's text).
                    .prepare_cached(
                        "SELECT p.value, t.value FROM kv p LEFT JOIN kv t \
                         ON t.key = $2 || (SELECT j ->> $3 FROM \
                           (SELECT convert_from(p.value, 'UTF8')::jsonb AS j) AS v \
                           WHERE jsonb_typeof(j -> $3) = 'string') \
                         WHERE p.key = $1",
                    )
                    .await
                    .map_err(q)?;
                c.query_opt(&stmt, &[&key, &prefix, &field]).await
            }
        }
        .map_err(q)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Keys and values under `prefix`, at most `limit`.
    pub fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let end = crate::storage::kv::prefix_end(prefix.as_bytes());
        self.scan_range(prefix.as_bytes(), end.as_deref(), limit)
    }

    /// Keys and values in `[start, end)` (to the end without `end`), at most `limit`, in key
    /// order.
    pub fn scan_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.block(self.scan_range_async(start, end, limit))
    }

    /// [`SharedKv::scan_range`] from async code.
    pub async fn scan_range_async(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Keys are text; a bound that is not UTF-8 (a prefix_end of a multi-byte character)
        // is compared as the text it starts with plus the largest code point, which orders
        // the same under COLLATE "C" for the keys this area holds.
        let text = |b: &[u8]| match std::str::from_utf8(b) {
            Ok(t) => t.to_owned(),
            Err(e) => {
                let mut t = String::from_utf8_lossy(&b[..e.valid_up_to()]).into_owned();
                t.push(char::MAX);
                t
            }
        };
        let (start, end) = (text(start), end.map(text));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let c = self.db.client().await.map_err(unavailable)?;
        let q = |e: tokio_postgres::Error| unavailable(e.into());
        let rows = match &end {
            Some(end) => {
                let stmt = c
                    .prepare_cached(
                        "SELECT key, value FROM kv WHERE key >= $1 AND key < $2 \
                         ORDER BY key LIMIT $3",
                    )
                    .await
                    .map_err(q)?;
                c.query(&stmt, &[&start, end, &limit]).await
            }
            None => {
                let stmt = c
                    .prepare_cached(
                        "SELECT key, value FROM kv WHERE key >= $1 ORDER BY key LIMIT $2",
                    )
                    .await
                    .map_err(q)?;
                c.query(&stmt, &[&start, &limit]).await
            }
        }
        .map_err(q)?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// Sends the change notices of committed writes: waits for the keys of one write, takes those
/// of every other write committed meanwhile, and sends them all in one statement (as many
/// payloads as their size needs), so a burst of writes costs one round trip, not one each; then
/// tells each of those writes that its notice went out (or failed: logged, not the write's
/// error, for the write is committed).
async fn send_notices(
    db: Db,
    instance: String,
    mut pending: tokio::sync::mpsc::UnboundedReceiver<(
        Vec<String>,
        tokio::sync::oneshot::Sender<()>,
    )>,
) {
    /// Most keys sent in one statement.
    const MAX_KEYS: usize = 4096;
    while let Some((mut keys, first)) = pending.recv().await {
        let mut waiting = vec![first];
        while keys.len() < MAX_KEYS {
            match pending.try_recv() {
                Ok((more, sent)) => {
                    keys.extend(more);
                    waiting.push(sent);
                }
                Err(_) => break,
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let payloads = notices(&instance, &keys);
        let sent = async {
            let c = db.client().await?;
            let stmt = c
                .prepare_cached("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                .await?;
            c.execute(&stmt, &[&KV_CHANNEL, &payloads]).await?;
            Ok::<_, DbError>(())
        };
        if let Err(e) = sent.await {
            tracing::warn!(error = %e, "change notice not sent");
        }
        for w in waiting {
            let _ = w.send(());
        }
    }
}

/// The NOTIFY payloads of changed `keys` from `instance`: JSON `{"i": id, "keys": [key]}`,
/// each at most [`MAX_PAYLOAD`] bytes (a key too long for one: `{"i": id, "resync": true}`).
fn notices(instance: &str, keys: &[String]) -> Vec<String> {
    // A payload's size: the empty one's, plus each key as a JSON string and a comma.
    let empty = notice(instance, &[]).len();
    let mut out = Vec::new();
    let (mut chunk, mut size): (Vec<&str>, usize) = (Vec::new(), empty);
    for k in keys {
        let len = serde_json::to_string(k).map_or(usize::MAX / 2, |t| t.len()) + 1;
        if !chunk.is_empty() && size + len > MAX_PAYLOAD {
            out.push(notice(instance, &chunk));
            (chunk, size) = (Vec::new(), empty);
        }
        chunk.push(k);
        size += len;
    }
    if !chunk.is_empty() {
        out.push(notice(instance, &chunk));
    }
    out
}

/// The NOTIFY payload of changed `keys` from `instance`: JSON `{"i": id, "keys": [key]}`, or
/// `{"i": id, "resync": true}` when that would be too big.
fn notice(instance: &str, keys: &[&str]) -> String {
    let text = serde_json::json!({ "i": instance, "keys": keys }).to_string();
    if text.len() <= MAX_PAYLOAD {
        text
    } else {
        serde_json::json!({ "i": instance, "resync": true }).to_string()
    }
}

/// A notice from another instance as a change (`None`: one of ours, or unreadable).
fn parse_notice(payload: &str, me: &str) -> Option<Change> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    if v.get("i").and_then(|i| i.as_str()) == Some(me) {
        return None;
    }
    if v.get("resync").is_some() {
        return Some(Change::Resync);
    }
    let keys = v
        .get("keys")?
        .as_array()?
        .iter()
        .map(|k| k.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    Some(Change::Keys(Arc::new(keys)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn notices_round_trip_and_skip_our_own() {
        let keys = ["p/a/1", "p/a/2"];
        let n = notice("me", &keys);
        assert!(parse_notice(&n, "me").is_none());
        match parse_notice(&n, "other").unwrap() {
            Change::Keys(got) => assert_eq!(*got, keys),
            Change::Resync => panic!("expected keys"),
        }
        let big: Vec<String> = (0..1000).map(|i| format!("p/approver/{i}")).collect();
        let refs: Vec<&str> = big.iter().map(String::as_str).collect();
        assert!(matches!(
            parse_notice(&notice("me", &refs), "other"),
            Some(Change::Resync)
        ));
        assert!(parse_notice("not json", "other").is_none());
    }

    #[test]
    fn many_keys_go_in_as_many_notices_as_their_size_needs() {
        let keys: Vec<String> = (0..1000).map(|i| format!("p/approver/{i:04}")).collect();
        let sent = notices("me", &keys);
        assert!(sent.len() > 1, "{} notices", sent.len());
        let mut got = Vec::new();
        for n in &sent {
            assert!(n.len() <= MAX_PAYLOAD, "{} bytes", n.len());
            match parse_notice(n, "other").unwrap() {
                Change::Keys(k) => got.extend(k.iter().cloned()),
                Change::Resync => panic!("a resync where keys fit"),
            }
        }
        assert_eq!(got, keys);
        // One key too long for any notice: a resync.
        let long = vec!["p/".to_owned() + &"x".repeat(MAX_PAYLOAD)];
        assert!(matches!(
            parse_notice(&notices("me", &long)[0], "other"),
            Some(Change::Resync)
        ));
        assert!(notices("me", &[]).is_empty());
    }
}
