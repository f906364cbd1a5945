//! The sequencer: the one thread that owns the Merkle tree, and the writer thread that makes
//! its batches durable.
//!
//! The sequencer drains a bounded queue into batches (bounded by count and age), decides every
//! entry of a batch against the committed state, the batches still being written and the batch
//! itself (exact dedup, assertion replays, credential conflicts, the sign-count rule), grows the
//! tree, signs the new checkpoint, and hands the batch (entries, node hashes, indexes, the tree
//! state and the signed checkpoint in ONE `WriteBatch`) to the writer. The writer writes it with
//! `sync=true`; only after that write returns are callers answered and the new checkpoint
//! published to readers. The two threads form a pipeline: batch k+1 is decided and signed while
//! batch k is being fsynced, and batches are written in the order they were built.
//!
//! Because the tree and the signer live only in the sequencer, two checkpoints are always signed
//! from one growing tree, so they are always consistent; and because the tree state and
//! checkpoint are in the same atomic write as the leaves, a crash at any moment recovers a state
//! that was signed. If a write fails, every later batch (built on top of it) is failed too and
//! the log stops accepting appends until it is restarted: it fails closed rather than guess.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use countersign_verifier::{Entry, Hash, RootStack};
use rocksdb::WriteBatch;
use tokio::sync::oneshot;

use crate::error::{AppendError, RefusalReason};
use crate::metrics::Metrics;
use crate::signer::LogSigner;
use crate::storage::{
    decode_tree, encode_credential, encode_tree, hash_key, StorageError, Store, CF_ASSERTIONS,
    CF_CHECKPOINTS, CF_CREDENTIALS, CF_ENTRIES, CF_HASHES, CF_LEAF_INDEX, CF_META, META_SIGNED_AT,
    META_TREE,
};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tunables of the sequencer.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Appends that may wait in the queue; beyond that callers get [`AppendError::QueueFull`].
    pub queue_capacity: usize,
    /// Most entries per batch.
    pub batch_max_entries: usize,
    /// Longest the first entry of a batch waits for more; zero commits whatever is queued as
    /// soon as the previous commit ends (group commit).
    pub batch_max_age: Duration,
    /// How often an idle sequencer re-signs the checkpoint (a liveness heartbeat).
    pub checkpoint_interval: Duration,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            queue_capacity: 65_536,
            batch_max_entries: 4096,
            batch_max_age: Duration::ZERO,
            checkpoint_interval: Duration::from_secs(5),
        }
    }
}

/// The latest signed checkpoint, as readers see it.
#[derive(Clone, Debug)]
pub struct Published {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed note.
    pub note: Arc<str>,
}

/// State shared between the sequencer and readers.
#[derive(Debug)]
pub struct Shared {
    published: RwLock<Published>,
    last_signed_ms: AtomicU64,
    alive: AtomicBool,
    closing: AtomicBool,
    /// Number of the latest batch the writer made durable.
    committed_batch: AtomicU64,
    /// Set when a batch write failed: the log stops accepting appends (fail closed).
    write_failed: AtomicBool,
}

impl Shared {
    /// The latest published checkpoint (never blocks on the sequencer's work).
    pub fn published(&self) -> Published {
        match self.published.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, p: Published) {
        match self.published.write() {
            Ok(mut g) => *g = p,
            Err(poisoned) => *poisoned.into_inner() = p,
        }
    }

    /// When the latest checkpoint was signed (ms since the epoch).
    pub fn last_signed_ms(&self) -> u64 {
        self.last_signed_ms.load(Ordering::Relaxed)
    }

    /// Whether the sequencer thread is running.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Whether shutdown has begun.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// What the sequencer needs to check for an entry besides exact dedup.
#[derive(Clone, Debug)]
pub enum AppendKind {
    /// An enrolment: the credential must not be enrolled differently.
    Enrolment {
        /// Credential id.
        credential_id: Vec<u8>,
    },
    /// A signed decision whose signature was already verified.
    Decision {
        /// Replay key of the assertion.
        assertion_key: [u8; 32],
        /// Credential id.
        credential_id: Vec<u8>,
        /// Enrolment the decision refers to.
        enrolment_index: u64,
        /// Signature counter of the assertion.
        sign_count: u32,
    },
    /// Any other entry: only exact dedup applies.
    Other,
}

/// A successful append.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Leaf index.
    pub index: u64,
    /// Leaf hash.
    pub leaf_hash: Hash,
    /// Size of the checkpoint that covers the entry.
    pub tree_size: u64,
    /// The signed checkpoint note covering it.
    pub checkpoint: Arc<str>,
    /// True if the entry (or the assertion) was already logged and this is the original leaf.
    pub existing: bool,
}

pub(crate) struct AppendRequest {
    pub entry: Vec<u8>,
    pub leaf: Hash,
    pub kind: AppendKind,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

pub(crate) enum Msg {
    Append(AppendRequest),
    Shutdown(oneshot::Sender<()>),
}

/// The sending side, held by the HTTP layer and in-process callers.
#[derive(Clone, Debug)]
pub struct SequencerHandle {
    // Dropped before `_thread`: the last handle closes the queue, then waits for the threads.
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    _thread: Arc<JoinOnDrop>,
}

/// Joins the sequencer thread (which joins the writer) when the last handle goes, so the
/// threads have released the database before whoever dropped the log goes on (a process that
/// exits while they still close RocksDB can abort in RocksDB's own teardown).
#[derive(Debug)]
struct JoinOnDrop(std::sync::Mutex<Option<std::thread::JoinHandle<()>>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        let handle = match self.0.get_mut() {
            Ok(h) => h.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl SequencerHandle {
    /// Shared state (published checkpoint, liveness).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Enqueues an entry and waits until a durable signed checkpoint covers it.
    pub async fn append(
        &self,
        entry: Vec<u8>,
        leaf: Hash,
        kind: AppendKind,
    ) -> Result<Appended, AppendError> {
        if self.shared.closing() {
            return Err(AppendError::ShuttingDown);
        }
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Append(AppendRequest {
            entry,
            leaf,
            kind,
            enqueued: Instant::now(),
            reply,
        });
        match self.tx.try_send(msg) {
            Ok(()) => self.metrics.queue_depth.inc(),
            Err(TrySendError::Full(_)) => {
                self.metrics.rejected_full.inc();
                return Err(AppendError::QueueFull);
            }
            Err(TrySendError::Disconnected(_)) => return Err(AppendError::ShuttingDown),
        };
        rx.await.unwrap_or(Err(AppendError::ShuttingDown))
    }

    /// Enqueues many entries at once and waits until durable signed checkpoints cover them;
    /// one result per entry, in order. Each entry is decided on its own (dedup, replays,
    /// sign counts) exactly as by [`SequencerHandle::append`]; the caller just waits once per
    /// group instead of once per entry. Entries the full queue does not take get
    /// [`AppendError::QueueFull`].
    pub async fn append_many(
        &self,
        items: Vec<(Vec<u8>, Hash, AppendKind)>,
    ) -> Vec<Result<Appended, AppendError>> {
        if self.shared.closing() {
            return items
                .iter()
                .map(|_| Err(AppendError::ShuttingDown))
                .collect();
        }
        let mut waiting = Vec::with_capacity(items.len());
        for (entry, leaf, kind) in items {
            let (reply, rx) = oneshot::channel();
            let msg = Msg::Append(AppendRequest {
                entry,
                leaf,
                kind,
                enqueued: Instant::now(),
                reply,
            });
            waiting.push(match self.tx.try_send(msg) {
                Ok(()) => {
                    self.metrics.queue_depth.inc();
                    Ok(rx)
                }
                Err(TrySendError::Full(_)) => {
                    self.metrics.rejected_full.inc();
                    Err(AppendError::QueueFull)
                }
                Err(TrySendError::Disconnected(_)) => Err(AppendError::ShuttingDown),
            });
        }
        let mut out = Vec::with_capacity(waiting.len());
        for w in waiting {
            out.push(match w {
                Ok(rx) => rx.await.unwrap_or(Err(AppendError::ShuttingDown)),
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Stops accepting appends, lets the sequencer commit everything already queued, and waits
    /// for it to stop.
    pub async fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        // A blocking send: the queue may be full, and the sequencer is draining it.
        let sender = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || sender.send(Msg::Shutdown(tx)).is_ok())
            .await
            .unwrap_or(false);
        if sent {
            let _ = rx.await;
        }
    }
}

/// Loads the tree state, checks it against the latest checkpoint, signs the first checkpoint
/// of an empty log, and starts the sequencer thread.
pub fn start(
    store: Store,
    signer: Arc<LogSigner>,
    config: SequencerConfig,
    metrics: Arc<Metrics>,
) -> Result<SequencerHandle, StorageError> {
    let (stack, note) = recover(&store, &signer)?;
    let published = Published {
        size: stack.size(),
        root: stack.root(),
        note: note.into(),
    };
    metrics.tree_size.set(published.size as i64);
    let shared = Arc::new(Shared {
        published: RwLock::new(published),
        last_signed_ms: AtomicU64::new(now_ms()),
        alive: AtomicBool::new(true),
        closing: AtomicBool::new(false),
        committed_batch: AtomicU64::new(0),
        write_failed: AtomicBool::new(false),
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_capacity.max(1));
    // A rendezvous: the builder works on batch k+1 during batch k's write, then blocks until
    // the writer takes it, letting the queue grow meanwhile into the next batch. (With a slot
    // of buffer the builder ran two batches ahead and cut the queue into twice as many small
    // batches, each with its own signature and fsync.)
    let (to_writer, writer_rx) = std::sync::mpsc::sync_channel::<ToWriter>(0);
    let mut writer = Writer {
        store: store.clone(),
        signer: signer.clone(),
        checkpoint_interval: config.checkpoint_interval,
        metrics: metrics.clone(),
        shared: shared.clone(),
        committed: (stack.size(), stack.root()),
    };
    let writer_thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let done = writer.run(writer_rx);
            // Release the store before reporting the stop, so a caller that waited for
            // shutdown can reopen the database.
            drop(writer);
            if let Some(done) = done {
                let _ = done.send(());
            }
        })
        .map_err(|e| StorageError(format!("cannot start the log writer thread: {e}")))?;
    let mut seq = Sequencer {
        store,
        signer,
        config,
        metrics: metrics.clone(),
        shared: shared.clone(),
        stack,
        in_flight: VecDeque::new(),
        next_batch: 1,
        to_writer: Some(to_writer),
    };
    let thread = std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || {
            let done = seq.run(rx);
            let shared = seq.shared.clone();
            // The writer finishes every batch already handed to it before it stops.
            seq.to_writer = None;
            drop(seq);
            let _ = writer_thread.join();
            shared.alive.store(false, Ordering::SeqCst);
            if let Some(done) = done {
                let _ = done.send(());
            }
        })
        .map_err(|e| StorageError(format!("cannot start the sequencer thread: {e}")))?;
    Ok(SequencerHandle {
        tx,
        shared,
        metrics,
        _thread: Arc::new(JoinOnDrop(std::sync::Mutex::new(Some(thread)))),
    })
}

/// Rebuilds the tree from RocksDB. The tree state and the checkpoint for it are written in the
/// same batch, so they always agree; a mismatch means corruption and the log refuses to start
/// rather than sign anything.
fn recover(store: &Store, signer: &LogSigner) -> Result<(RootStack, String), StorageError> {
    match store.get(CF_META, META_TREE)? {
        Some(v) => {
            let (size, peaks) = decode_tree(&v)?;
            let stack = RootStack::from_parts(size, peaks)
                .ok_or_else(|| StorageError("tree state has the wrong number of peaks".into()))?;
            let note = store
                .checkpoint(size)?
                .ok_or_else(|| StorageError(format!("no checkpoint stored for size {size}")))?;
            let vc = countersign_verifier::verify_checkpoint(
                note.as_bytes(),
                signer.verifier_key(),
                &[],
            )
            .map_err(|e| StorageError(format!("stored checkpoint does not verify: {e}")))?;
            if vc.checkpoint.size != size || vc.checkpoint.root != stack.root() {
                return Err(StorageError(
                    "stored checkpoint does not match the stored tree state".into(),
                ));
            }
            Ok((stack, note))
        }
        None => {
            let stack = RootStack::default();
            let note = signer
                .sign(0, stack.root())
                .map_err(|e| StorageError(e.to_string()))?;
            let mut wb = WriteBatch::default();
            wb.put_cf(
                store.cf(CF_CHECKPOINTS)?,
                0u64.to_be_bytes(),
                note.as_bytes(),
            );
            wb.put_cf(store.cf(CF_META)?, META_TREE, encode_tree(0, &[]));
            store.write_sync(wb)?;
            Ok((stack, note))
        }
    }
}

/// A node hash and its address (level, index).
type Node = (u8, u64, Hash);

/// What a batch decided and wrote, kept by the builder until the batch is durable so the next
/// batches see it (dedup, replays, credential counters) before RocksDB does.
///
/// The maps use foldhash (seeded per process) rather than SipHash: their keys are hashes and
/// ids, and SipHash was a fifth of the builder's time (profile of `countersign-bench core`).
#[derive(Default)]
struct Overlay {
    batch: u64,
    leaves: FastMap<Hash, u64>,
    assertions: FastMap<[u8; 32], u64>,
    creds: FastMap<Vec<u8>, (u64, u32)>,
    entries: FastMap<u64, Vec<u8>>,
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A batch ready to be written: the requests, what was decided for each, and the write batch
/// that holds the entries, hashes, indexes, tree state and signed checkpoint.
struct Built {
    batch: u64,
    requests: Vec<AppendRequest>,
    outcomes: Vec<Outcome>,
    wb: WriteBatch,
    /// Size and root after the batch, and the note signed for them (if the tree grew).
    size: u64,
    root: Hash,
    note: Option<(Arc<str>, u64)>,
    /// The batch's new node hashes, for the read cache once they are durable.
    nodes: Vec<Node>,
}

enum ToWriter {
    Batch(Box<Built>),
    /// Requests that failed before anything was built (answered in order with the batches).
    Failed(Vec<AppendRequest>),
}

/// The builder: owns the tree and decides every request.
struct Sequencer {
    store: Store,
    signer: Arc<LogSigner>,
    config: SequencerConfig,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    /// The tree including every batch handed to the writer.
    stack: RootStack,
    /// Batches handed to the writer and not yet known to be durable, oldest first.
    in_flight: VecDeque<Overlay>,
    next_batch: u64,
    to_writer: Option<SyncSender<ToWriter>>,
}

/// The decision for one request of a batch.
enum Outcome {
    New(u64),
    Existing(u64),
    Failed(AppendError),
}

impl Sequencer {
    /// Runs until shutdown (returning whom to tell) or until every sender is gone.
    fn run(&mut self, rx: Receiver<Msg>) -> Option<oneshot::Sender<()>> {
        let mut batch: Vec<AppendRequest> = Vec::with_capacity(self.config.batch_max_entries);
        loop {
            let first = match rx.recv() {
                Ok(m) => m,
                Err(_) => return None,
            };
            let mut shutdown = None;
            match first {
                Msg::Append(r) => batch.push(r),
                Msg::Shutdown(done) => shutdown = Some(done),
            }
            let deadline = batch
                .first()
                .map(|r| r.enqueued + self.config.batch_max_age);
            while shutdown.is_none() && batch.len() < self.config.batch_max_entries {
                let next = match deadline {
                    Some(d) if !self.config.batch_max_age.is_zero() => {
                        let now = Instant::now();
                        if now >= d {
                            rx.try_recv().ok()
                        } else {
                            rx.recv_timeout(d - now).ok()
                        }
                    }
                    _ => rx.try_recv().ok(),
                };
                match next {
                    Some(Msg::Append(r)) => batch.push(r),
                    Some(Msg::Shutdown(done)) => shutdown = Some(done),
                    None => break,
                }
            }
            self.metrics.queue_depth.dec_by(batch.len() as i64);
            if !batch.is_empty() {
                self.submit(std::mem::take(&mut batch));
                batch.reserve(self.config.batch_max_entries);
            }
            if let Some(done) = shutdown {
                // Anything that raced past the closing flag is failed, not dropped silently.
                loop {
                    match rx.try_recv() {
                        Ok(Msg::Append(r)) => {
                            self.metrics.queue_depth.dec();
                            let _ = r.reply.send(Err(AppendError::ShuttingDown));
                        }
                        Ok(Msg::Shutdown(d)) => {
                            let _ = d.send(());
                        }
                        Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
                    }
                }
                tracing::info!(tree_size = self.stack.size(), "sequencer stopped");
                return Some(done);
            }
        }
    }

    /// Builds a batch and hands it to the writer.
    fn submit(&mut self, requests: Vec<AppendRequest>) {
        let Some(to_writer) = self.to_writer.clone() else {
            fail_all(requests, AppendError::ShuttingDown);
            return;
        };
        if self.shared.write_failed.load(Ordering::Acquire) {
            fail_all(requests, AppendError::Storage);
            return;
        }
        // Batches the writer has made durable are in RocksDB now; their overlays can go.
        let committed = self.shared.committed_batch.load(Ordering::Acquire);
        while self.in_flight.front().is_some_and(|o| o.batch <= committed) {
            self.in_flight.pop_front();
        }
        let batch = self.next_batch;
        let mut wb = WriteBatch::default();
        let mut overlay = Overlay {
            batch,
            ..Overlay::default()
        };
        let msg = match self.build(&requests, &mut wb, &mut overlay) {
            Ok((stack, outcomes, nodes)) => 'built: {
                let grew = stack.size() > self.stack.size();
                let note = if grew {
                    match self.sign_into(&stack, &mut wb) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot sign the checkpoint; nothing appended");
                            break 'built ToWriter::Failed(requests);
                        }
                    }
                } else {
                    None
                };
                let built = Built {
                    batch,
                    requests,
                    outcomes,
                    wb,
                    size: stack.size(),
                    root: stack.root(),
                    note,
                    nodes,
                };
                if grew {
                    self.stack = stack;
                    self.in_flight.push_back(overlay);
                }
                self.next_batch += 1;
                ToWriter::Batch(Box::new(built))
            }
            Err(e) => {
                tracing::error!(error = %e, "batch failed before writing");
                ToWriter::Failed(requests)
            }
        };
        if let Err(std::sync::mpsc::SendError(msg)) = to_writer.send(msg) {
            // The writer is gone: fail the batch rather than drop it silently.
            match msg {
                ToWriter::Batch(b) => fail_all(b.requests, AppendError::Storage),
                ToWriter::Failed(r) => fail_all(r, AppendError::Storage),
            }
        }
    }

    /// Signs the checkpoint for `stack` and adds it, the tree state and the signing time to
    /// the batch.
    fn sign_into(
        &self,
        stack: &RootStack,
        wb: &mut WriteBatch,
    ) -> Result<(Arc<str>, u64), StorageError> {
        let note = self
            .signer
            .sign(stack.size(), stack.root())
            .map_err(|e| StorageError(e.to_string()))?;
        let now = now_ms();
        wb.put_cf(
            self.store.cf(CF_CHECKPOINTS)?,
            stack.size().to_be_bytes(),
            note.as_bytes(),
        );
        let meta = self.store.cf(CF_META)?;
        wb.put_cf(meta, META_TREE, encode_tree(stack.size(), stack.peaks()));
        wb.put_cf(meta, META_SIGNED_AT, now.to_be_bytes());
        Ok((note.into(), now))
    }

    /// The newest known state of a credential: this batch, batches in flight, then RocksDB.
    fn credential(
        &self,
        current: &FastMap<Vec<u8>, (u64, u32)>,
        id: &[u8],
    ) -> Result<Option<(u64, u32)>, StorageError> {
        if let Some(c) = current.get(id) {
            return Ok(Some(*c));
        }
        for o in self.in_flight.iter().rev() {
            if let Some(c) = o.creds.get(id) {
                return Ok(Some(*c));
            }
        }
        self.store.credential(id)
    }

    /// The bytes of entry `index`, wherever they are.
    fn entry_bytes(&self, current: &Overlay, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(e) = current.entries.get(&index) {
            return Ok(Some(e.clone()));
        }
        for o in &self.in_flight {
            if let Some(e) = o.entries.get(&index) {
                return Ok(Some(e.clone()));
            }
        }
        self.store.entry(index)
    }

    /// Decides every request and fills the write batch; returns the grown tree.
    fn build(
        &self,
        batch: &[AppendRequest],
        wb: &mut WriteBatch,
        cur: &mut Overlay,
    ) -> Result<(RootStack, Vec<Outcome>, Vec<Node>), StorageError> {
        let mut stack = self.stack.clone();
        let cf_entries = self.store.cf(CF_ENTRIES)?;
        let cf_hashes = self.store.cf(CF_HASHES)?;
        let cf_leaf = self.store.cf(CF_LEAF_INDEX)?;
        let cf_assert = self.store.cf(CF_ASSERTIONS)?;
        let cf_cred = self.store.cf(CF_CREDENTIALS)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        // One batched lookup per index instead of one `get` per entry. Exact dedup of a
        // decision is its assertion lookup (the same bytes carry the same assertion), and of an
        // enrolment its credential lookup, so only other entries need the leaf-hash index.
        let leaf_keys: Vec<&[u8]> = batch
            .iter()
            .filter(|r| matches!(r.kind, AppendKind::Other))
            .map(|r| r.leaf.as_bytes().as_slice())
            .collect();
        let logged_leaves: FastMap<&[u8], u64> = leaf_keys
            .iter()
            .zip(self.store.indexes(CF_LEAF_INDEX, &leaf_keys)?)
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        let assertion_keys: Vec<&[u8]> = batch
            .iter()
            .filter_map(|r| match &r.kind {
                AppendKind::Decision { assertion_key, .. } => Some(assertion_key.as_slice()),
                _ => None,
            })
            .collect();
        let logged_assertions: FastMap<&[u8], u64> = assertion_keys
            .iter()
            .zip(self.store.indexes(CF_ASSERTIONS, &assertion_keys)?)
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        // Node hashes are written level by level, so each level's keys reach the memtable in
        // ascending order (RocksDB's skip list then inserts each next to the previous one).
        let mut nodes: Vec<Node> = Vec::with_capacity(batch.len() * 2);
        let in_flight_leaf = |leaf: &Hash| self.in_flight.iter().find_map(|o| o.leaves.get(leaf));
        let in_flight_assertion =
            |k: &[u8; 32]| self.in_flight.iter().find_map(|o| o.assertions.get(k));
        for r in batch {
            if let Some(&i) = cur.leaves.get(&r.leaf).or_else(|| in_flight_leaf(&r.leaf)) {
                outcomes.push(Outcome::Existing(i));
                continue;
            }
            if let Some(&i) = logged_leaves.get(r.leaf.as_bytes().as_slice()) {
                outcomes.push(Outcome::Existing(i));
                continue;
            }
            let index = stack.size();
            match &r.kind {
                AppendKind::Other => {}
                AppendKind::Enrolment { credential_id } => {
                    if let Some((enrol_index, _)) = self.credential(&cur.creds, credential_id)? {
                        let original = self.entry_bytes(cur, enrol_index)?;
                        outcomes.push(match original {
                            Some(o) if same_enrolment(&o, &r.entry) => {
                                Outcome::Existing(enrol_index)
                            }
                            _ => Outcome::Failed(AppendError::refused(
                                RefusalReason::CredentialConflict,
                                "this credential id is already enrolled with a different \
                                 approver or key",
                            )),
                        });
                        continue;
                    }
                    cur.creds.insert(credential_id.clone(), (index, 0));
                    wb.put_cf(cf_cred, credential_id, encode_credential(index, 0));
                }
                AppendKind::Decision {
                    assertion_key,
                    credential_id,
                    enrolment_index,
                    sign_count,
                } => {
                    let seen = cur
                        .assertions
                        .get(assertion_key)
                        .or_else(|| in_flight_assertion(assertion_key))
                        .copied()
                        .or_else(|| logged_assertions.get(assertion_key.as_slice()).copied());
                    if let Some(i) = seen {
                        outcomes.push(Outcome::Existing(i));
                        continue;
                    }
                    let Some((enrol, stored_count)) = self.credential(&cur.creds, credential_id)?
                    else {
                        outcomes.push(Outcome::Failed(AppendError::refused(
                            RefusalReason::UnknownCredential,
                            "the credential is not enrolled in this log",
                        )));
                        continue;
                    };
                    if enrol != *enrolment_index {
                        outcomes.push(Outcome::Failed(AppendError::refused(
                            RefusalReason::WrongEnrolment,
                            "enrolment_index is not this credential's enrolment",
                        )));
                        continue;
                    }
                    // WebAuthn L3 step 22, re-checked here because two decisions from one
                    // credential may have been verified concurrently against the same count.
                    if let Err(e) =
                        countersign_verifier::check_sign_count(stored_count, *sign_count)
                    {
                        outcomes.push(Outcome::Failed(AppendError::refused(
                            RefusalReason::SignCount,
                            e.to_string(),
                        )));
                        continue;
                    }
                    if *sign_count != stored_count {
                        cur.creds
                            .insert(credential_id.clone(), (enrol, *sign_count));
                        wb.put_cf(
                            cf_cred,
                            credential_id,
                            encode_credential(enrol, *sign_count),
                        );
                    } else {
                        // Both zero (a passkey that does not count): nothing to store.
                        cur.creds
                            .insert(credential_id.clone(), (enrol, stored_count));
                    }
                    cur.assertions.insert(*assertion_key, index);
                    wb.put_cf(cf_assert, assertion_key, index.to_be_bytes());
                }
            }
            stack.push_with(r.leaf, |level, i, h| nodes.push((level, i, *h)));
            wb.put_cf(cf_entries, index.to_be_bytes(), &r.entry);
            wb.put_cf(cf_leaf, r.leaf.as_bytes(), index.to_be_bytes());
            cur.leaves.insert(r.leaf, index);
            if matches!(r.kind, AppendKind::Enrolment { .. }) {
                // Only enrolments are ever read back by a later decision of the same batch.
                cur.entries.insert(index, r.entry.clone());
            }
            outcomes.push(Outcome::New(index));
        }
        nodes.sort_by_key(|(level, i, _)| (*level, *i));
        for (level, i, h) in &nodes {
            wb.put_cf(cf_hashes, hash_key(*level, *i), h.as_bytes());
        }
        Ok((stack, outcomes, nodes))
    }
}

fn fail_all(requests: Vec<AppendRequest>, e: AppendError) {
    for r in requests {
        let _ = r.reply.send(Err(e.clone()));
    }
}

/// The writer: makes batches durable in order, publishes their checkpoints, answers callers,
/// and re-signs the checkpoint when idle.
struct Writer {
    store: Store,
    signer: Arc<LogSigner>,
    checkpoint_interval: Duration,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    /// Size and root of the latest durable checkpoint.
    committed: (u64, Hash),
}

impl Writer {
    fn run(&mut self, rx: Receiver<ToWriter>) -> Option<oneshot::Sender<()>> {
        loop {
            match rx.recv_timeout(self.checkpoint_interval) {
                Ok(ToWriter::Batch(b)) => self.commit(*b),
                Ok(ToWriter::Failed(requests)) => fail_all(requests, AppendError::Storage),
                Err(RecvTimeoutError::Timeout) => self.heartbeat(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn commit(&mut self, b: Built) {
        let Built {
            batch,
            requests,
            outcomes,
            wb,
            size,
            root,
            note,
            nodes,
        } = b;
        if self.shared.write_failed.load(Ordering::Acquire) {
            // Built on a batch that never became durable: nothing of it may be written.
            fail_all(requests, AppendError::Storage);
            return;
        }
        let note: Arc<str> = match note {
            Some((note, signed_at)) => {
                let t = Instant::now();
                if let Err(e) = self.store.write_sync(wb) {
                    // Later batches were built on this one, so the log cannot go on appending
                    // without rebuilding its state: stop accepting appends (fail closed), and
                    // let /healthz tell the operator to restart.
                    tracing::error!(error = %e, "batch write failed; nothing appended; the log \
                                    stops accepting appends until it is restarted");
                    self.shared.write_failed.store(true, Ordering::Release);
                    self.shared.alive.store(false, Ordering::SeqCst);
                    fail_all(requests, AppendError::Storage);
                    return;
                }
                self.metrics
                    .fsync_seconds
                    .observe(t.elapsed().as_secs_f64());
                self.shared
                    .last_signed_ms
                    .store(signed_at, Ordering::Relaxed);
                let appended = size - self.committed.0;
                self.committed = (size, root);
                self.shared.publish(Published {
                    size,
                    root,
                    note: note.clone(),
                });
                self.shared.committed_batch.store(batch, Ordering::Release);
                // Proofs for the new entries (in the answers below, and in the readers that
                // follow the checkpoint) need these nodes first.
                self.store.cache_nodes(&nodes);
                self.metrics.tree_size.set(size as i64);
                self.metrics.appended.inc_by(appended);
                note
            }
            None => self.shared.published().note,
        };
        self.metrics.batch_size.observe(requests.len() as f64);
        let size = self.committed.0;
        // One clock read for the batch: every caller in it is answered now.
        let answered = Instant::now();
        for (r, outcome) in requests.into_iter().zip(outcomes) {
            let reply = match outcome {
                Outcome::New(index) | Outcome::Existing(index) => {
                    let existing = matches!(outcome, Outcome::Existing(_));
                    if existing {
                        self.metrics.deduplicated.inc();
                    }
                    Ok(Appended {
                        index,
                        leaf_hash: if existing {
                            // The original leaf's hash differs from this request's when it is an
                            // assertion replay or an identical re-enrolment; every earlier batch
                            // is durable by now, so the original is in RocksDB.
                            self.store
                                .entry(index)
                                .ok()
                                .flatten()
                                .map(|e| countersign_verifier::leaf_hash(&e))
                                .unwrap_or(r.leaf)
                        } else {
                            r.leaf
                        },
                        tree_size: size,
                        checkpoint: note.clone(),
                        existing,
                    })
                }
                Outcome::Failed(e) => Err(e),
            };
            self.metrics
                .integration_latency
                .observe(answered.saturating_duration_since(r.enqueued).as_secs_f64());
            let _ = r.reply.send(reply);
        }
    }

    /// Re-signs the current checkpoint so monitors and /healthz can see the log is alive.
    fn heartbeat(&mut self) {
        if self.shared.write_failed.load(Ordering::Acquire) {
            return;
        }
        let (size, root) = self.committed;
        let note = match self.signer.sign(size, root) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign checkpoint");
                return;
            }
        };
        let now = now_ms();
        let result = (|| {
            let mut wb = WriteBatch::default();
            wb.put_cf(
                self.store.cf(CF_CHECKPOINTS)?,
                size.to_be_bytes(),
                note.as_bytes(),
            );
            wb.put_cf(self.store.cf(CF_META)?, META_SIGNED_AT, now.to_be_bytes());
            self.store.write_sync(wb)
        })();
        match result {
            Ok(()) => self.shared.last_signed_ms.store(now, Ordering::Relaxed),
            Err(e) => tracing::error!(error = %e, "heartbeat checkpoint write failed"),
        }
    }
}

/// Whether two encoded enrolments are the same apart from the time the log set.
fn same_enrolment(a: &[u8], b: &[u8]) -> bool {
    match (Entry::decode(a), Entry::decode(b)) {
        (Ok(Entry::Enrolment(mut x)), Ok(Entry::Enrolment(y))) => {
            x.time_ms = y.time_ms;
            x == y
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use countersign_verifier::{leaf_hash, root_from_leaf_hashes, Revocation};

    fn entry(n: u64) -> Vec<u8> {
        Entry::Revocation(Revocation {
            approver_id: "a".into(),
            credential_id: vec![1; 16],
            enrolment_index: 0,
            reason: "r".into(),
            time_ms: n,
        })
        .encode()
        .unwrap()
    }

    fn signer() -> Arc<LogSigner> {
        Arc::new(LogSigner::new("unit.test/log", &[3; 32]).unwrap())
    }

    #[tokio::test]
    async fn appends_dedups_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let h = start(
            store.clone(),
            signer(),
            SequencerConfig::default(),
            metrics.clone(),
        )
        .unwrap();
        let mut leaves = Vec::new();
        for n in 0..5 {
            let e = entry(n);
            leaves.push(leaf_hash(&e));
            let a = h
                .append(e, leaf_hash(&entry(n)), AppendKind::Other)
                .await
                .unwrap();
            assert_eq!((a.index, a.existing), (n, false));
        }
        let again = h
            .append(entry(2), leaf_hash(&entry(2)), AppendKind::Other)
            .await
            .unwrap();
        assert_eq!((again.index, again.existing), (2, true));
        let p = h.shared().published();
        assert_eq!(p.size, 5);
        assert_eq!(p.root, root_from_leaf_hashes(&leaves));
        h.shutdown().await;
        assert_eq!(
            h.append(entry(9), leaf_hash(&entry(9)), AppendKind::Other)
                .await
                .unwrap_err(),
            AppendError::ShuttingDown
        );
        drop(h);
        let h2 = start(store, signer(), SequencerConfig::default(), metrics).unwrap();
        let p2 = h2.shared().published();
        assert_eq!((p2.size, p2.root), (p.size, p.root));
        assert_eq!(p2.note, p.note);
        h2.shutdown().await;
        drop(h2);
        // A different key cannot take over the log: the stored checkpoint does not verify.
        let store = Store::open(dir.path()).unwrap();
        let other = Arc::new(LogSigner::new("unit.test/log", &[4; 32]).unwrap());
        assert!(start(
            store,
            other,
            SequencerConfig::default(),
            Arc::new(Metrics::new())
        )
        .is_err());
    }

    /// Many small batches in flight at once: an entry submitted concurrently by many callers
    /// still gets exactly one leaf, whether its twin is in the same batch, a batch still being
    /// written, or RocksDB; and the published tree is exactly the leaves by index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dedups_across_batches_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = SequencerConfig {
            batch_max_entries: 7,
            ..SequencerConfig::default()
        };
        let h = start(store.clone(), signer(), config, Arc::new(Metrics::new())).unwrap();
        let n = 300u64;
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for k in 0..n {
                    // Each task walks the entries in its own order.
                    let i = (k * (2 * t + 1) + t) % n;
                    let a = h
                        .append(entry(i), leaf_hash(&entry(i)), AppendKind::Other)
                        .await
                        .unwrap();
                    assert_eq!(a.leaf_hash, leaf_hash(&entry(i)));
                    got.push((i, a.index));
                }
                got
            }));
        }
        let mut index_of = std::collections::HashMap::new();
        for t in tasks {
            for (i, index) in t.await.unwrap() {
                assert_eq!(*index_of.entry(i).or_insert(index), index, "entry {i}");
            }
        }
        let p = h.shared().published();
        assert_eq!(p.size, n);
        let mut by_index = vec![Hash([0; 32]); n as usize];
        for (i, index) in &index_of {
            by_index[*index as usize] = leaf_hash(&entry(*i));
        }
        assert_eq!(p.root, root_from_leaf_hashes(&by_index));
        for (i, index) in index_of {
            assert_eq!(store.entry(index).unwrap().unwrap(), entry(i));
        }
        h.shutdown().await;
    }

    #[test]
    fn enrolments_compare_without_time() {
        let e = |t, a: &str| {
            Entry::Enrolment(countersign_verifier::Enrolment {
                approver_id: a.into(),
                credential_id: vec![1; 16],
                public_key: countersign_testvectors::SoftPasskey::new(
                    countersign_testvectors::Alg::EdDsa,
                    1,
                    "x",
                )
                .cose_public_key(),
                aaguid: [0; 16],
                attestation_format: "none".into(),
                time_ms: t,
            })
            .encode()
            .unwrap()
        };
        assert!(same_enrolment(&e(1, "a"), &e(2, "a")));
        assert!(!same_enrolment(&e(1, "a"), &e(1, "b")));
        assert!(!same_enrolment(&entry(1), &entry(1)));
    }
}
