//! A group-commit key-value area in a column family of its own, for crates built on the log
//! (the approval front end keeps its records here). Values are bytes or JSON under string keys.
//!
//! Concurrency: a read-modify-write of a record holds that record's lock ([`KvArea::lock`], one
//! of [`LOCK_STRIPES`] async mutexes chosen by hashing the key) from its read until its write is
//! applied, so two changes of one record are serialised while changes of different records run
//! side by side. Writes never block the caller's thread: they go to one writer thread, which
//! merges whatever was submitted meanwhile into one RocksDB write batch with one fsync (group
//! commit), and answers each submitter once its changes are durable.

use std::sync::{mpsc, Arc};

use serde::{de::DeserializeOwned, Serialize};

use super::{StorageError, Store};

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

/// One change: a put (`Some`) or a deletion (`None`) of a key.
pub type Op = (String, Option<Vec<u8>>);

/// Changes applied together, in order: puts and deletions.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
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
        let value = encode(v)?;
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

    /// The changes, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The changes, in order (for a store that applies them itself).
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<(), StorageError>>;

/// A submitted write.
struct Job {
    ops: Vec<Op>,
    sync: bool,
    reply: Option<Reply>,
}

/// Counters of the group-commit writer (exported as metrics by the area's owner).
#[derive(Debug, Default)]
pub struct WriteCounters {
    /// Writes submitted (and answered).
    pub jobs: prometheus_client::metrics::counter::Counter,
    /// RocksDB write batches made from them.
    pub writes: prometheus_client::metrics::counter::Counter,
    /// Of which synced (one fsync each).
    pub synced_writes: prometheus_client::metrics::counter::Counter,
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

impl WriterStats {
    /// What `counters` counted so far.
    pub fn of(counters: &WriteCounters) -> WriterStats {
        WriterStats {
            submitted: counters.jobs.get(),
            batches: counters.writes.get(),
            synced_batches: counters.synced_writes.get(),
        }
    }
}

/// A key-value area: one column family, its record locks and its writer thread.
pub struct KvArea {
    store: Store,
    cf: &'static str,
    locks: Box<[tokio::sync::Mutex<()>]>,
    tx: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    counters: Arc<WriteCounters>,
}

impl std::fmt::Debug for KvArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvArea")
            .field("cf", &self.cf)
            .field("writer", &self.writer_stats())
            .finish_non_exhaustive()
    }
}

impl Drop for KvArea {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has answered everything submitted;
        // joining it releases its handle on the database before our owner reopens it.
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let s = self.writer_stats();
        tracing::info!(
            area = self.cf,
            submitted = s.submitted,
            batches = s.batches,
            synced_batches = s.synced_batches,
            "key-value area closed"
        );
    }
}

/// The writer thread: takes every write submitted meanwhile, applies them as one batch (synced
/// if any of them must be), and answers each.
fn writer_loop(store: Store, cf: &'static str, rx: mpsc::Receiver<Job>, c: Arc<WriteCounters>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let sync = jobs.iter().any(|j| j.sync);
        let result = store.cf(cf).and_then(|handle| {
            let wb = write_batch(handle, jobs.iter().flat_map(|j| &j.ops));
            let mut wo = rocksdb::WriteOptions::default();
            // The test-only switch (`super::UNSAFE_NO_SYNC_ENV`) turns group commits unsynced too.
            wo.set_sync(sync && !super::unsafe_no_sync());
            store.db().write_opt(wb, &wo).map_err(StorageError::from)
        });
        c.jobs.inc_by(jobs.len() as u64);
        c.writes.inc();
        if sync {
            c.synced_writes.inc();
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, area = cf, writes = jobs.len(), "key-value write failed");
        }
        for j in jobs {
            if let Some(reply) = j.reply {
                // A submitter that stopped waiting is not an error.
                let _ = reply.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.clone()),
                });
            }
        }
    }
}

/// The RocksDB batch of puts (`Some`) and deletions (`None`) in one family.
fn write_batch<'a>(
    cf: &rocksdb::ColumnFamily,
    ops: impl IntoIterator<Item = &'a Op>,
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
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Encodes a JSON record.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|e| StorageError::Corrupt(format!("encoding a record: {e}")))
}

/// Decodes the JSON record `raw` read at `key` (`None`: absent).
pub fn decode<T: DeserializeOwned>(
    key: &str,
    raw: Option<&[u8]>,
) -> Result<Option<T>, StorageError> {
    raw.map(|v| {
        serde_json::from_slice(v)
            .map_err(|e| StorageError::Corrupt(format!("record {key:?} is corrupt: {e}")))
    })
    .transpose()
}

/// A held record lock.
pub type RecordGuard<'a> = tokio::sync::MutexGuard<'a, ()>;

impl KvArea {
    /// Opens the area in family `cf` of `store` (which must have been opened with it, see
    /// [`Store::open_with`]) and starts its writer thread.
    pub fn open(store: Store, cf: &'static str) -> Result<Self, StorageError> {
        store.cf(cf)?;
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(WriteCounters::default());
        let writer = std::thread::Builder::new()
            .name(format!("{cf}-writer"))
            .spawn({
                let (store, counters) = (store.clone(), counters.clone());
                move || writer_loop(store, cf, rx, counters)
            })
            .map_err(|e| StorageError::Stopped(format!("starting the {cf} writer: {e}")))?;
        Ok(KvArea {
            store,
            cf,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            tx: Some(tx),
            writer: Some(writer),
            counters,
        })
    }

    /// Holds the lock of record `key` for a read-modify-write: read after taking it, and keep
    /// it until the write is applied (awaited). Take no second lock while holding one; use
    /// [`KvArea::lock_all`] for several records.
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
    /// [`Durability::Sync`], on disk. The batch is submitted when this is called, not when the
    /// future is first polled: batches submitted one after the other (say, under a mutex that
    /// numbers them) are applied, and become visible, in that order.
    pub fn commit(
        &self,
        batch: Batch,
        durability: Durability,
    ) -> impl std::future::Future<Output = Result<(), StorageError>> + Send + 'static {
        let cf = self.cf;
        let submitted = if batch.is_empty() {
            None
        } else {
            let (reply, rx) = tokio::sync::oneshot::channel();
            Some(
                self.submit(Job {
                    ops: batch.ops,
                    sync: durability == Durability::Sync,
                    reply: Some(reply),
                })
                .map(|()| rx),
            )
        };
        async move {
            match submitted {
                None => Ok(()),
                Some(Err(e)) => Err(e),
                Some(Ok(rx)) => rx
                    .await
                    .map_err(|_| StorageError::Stopped(format!("the {cf} writer stopped")))?,
            }
        }
    }

    /// Submits `batch` ([`Durability::Deferred`]) without waiting for it: for changes nobody
    /// waits on, such as dropping stale index keys.
    pub fn commit_in_background(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
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
            .ok_or_else(|| StorageError::Stopped(format!("the {} area is closed", self.cf)))?
            .send(job)
            .map_err(|_| StorageError::Stopped(format!("the {} writer stopped", self.cf)))
    }

    /// Applies `batch`, synced, on the calling thread (start-up, or a thread that may block).
    pub fn commit_blocking(&self, batch: &Batch) -> Result<(), StorageError> {
        let cf = self.store.cf(self.cf)?;
        self.store.write_sync(write_batch(cf, &batch.ops))
    }

    /// The writer's counters, for metrics.
    pub fn counters(&self) -> &WriteCounters {
        &self.counters
    }

    /// What the writer did so far; `submitted / synced_batches` is how many writes one fsync
    /// carried.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats::of(&self.counters)
    }

    /// Reads a JSON record.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let cf = self.store.cf(self.cf)?;
        // Parsed straight from RocksDB's pinned block or memtable copy: no intermediate Vec.
        let pinned = self.store.db().get_pinned_cf(cf, key.as_bytes())?;
        decode(key, pinned.as_deref())
    }

    /// Reads a raw value.
    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.store.get(self.cf, key.as_bytes())
    }

    /// Keys and values under `prefix`, at most `limit`.
    pub fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let end = prefix_end(prefix.as_bytes());
        self.scan_range(prefix.as_bytes(), end.as_deref(), limit)
    }

    /// Keys and values in `[start, end)` (to the end of the family without `end`), at most
    /// `limit`, in key order.
    pub fn scan_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let cf = self.store.cf(self.cf)?;
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefix_end_is_the_least_key_above_the_prefix() {
        assert_eq!(prefix_end(b"p/"), Some(b"p0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[tokio::test]
    async fn writes_group_commit_and_read_back_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), &["area"]).unwrap();
        let kv = KvArea::open(store.clone(), "area").unwrap();
        let mut b = Batch::new();
        b.put("k/2", b"two".to_vec())
            .put_json("k/1", &1u32)
            .unwrap();
        kv.commit(b, Durability::Sync).await.unwrap();
        let mut b = Batch::new();
        b.put("k/3", b"three".to_vec()).delete("k/2");
        kv.commit(b, Durability::Deferred).await.unwrap();
        assert_eq!(kv.get::<u32>("k/1").unwrap(), Some(1));
        let keys: Vec<String> = kv
            .scan("k/", 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["k/1", "k/3"]);
        assert_eq!(kv.scan("k/", 1).unwrap().len(), 1);
        let s = kv.writer_stats();
        assert_eq!((s.submitted, s.synced_batches), (2, 1));
        // A family the store was not opened with is refused, not created.
        assert!(KvArea::open(store, "other").is_err());
    }
}
