//! The sequencer's public side: its configuration, the published checkpoint readers see, and
//! the handle appends go through.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use countersign_verifier::Hash;
use tokio::sync::oneshot;

use crate::error::AppendError;
use crate::metrics::Metrics;

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
    pub(super) published: RwLock<Published>,
    pub(super) last_signed_ms: AtomicU64,
    pub(super) alive: AtomicBool,
    pub(super) closing: AtomicBool,
    /// Number of the latest batch the writer made durable.
    pub(super) committed_batch: AtomicU64,
    /// Set when a batch write failed: the log stops accepting appends (fail closed).
    pub(super) write_failed: AtomicBool,
    /// Bumped at every publication, so a task can wait for the next checkpoint (the witness
    /// client) instead of polling.
    pub(super) published_tx: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// The latest published checkpoint (never blocks on the sequencer's work).
    pub fn published(&self) -> Published {
        match self.published.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(super) fn publish(&self, p: Published) {
        match self.published.write() {
            Ok(mut g) => *g = p,
            Err(poisoned) => *poisoned.into_inner() = p,
        }
        self.published_tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees a change at every publication (a new or re-signed checkpoint).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published_tx.subscribe()
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
    /// A revocation of the enrolment at `enrolment_index`. With `refuse_repeat`, a second
    /// revocation of one enrolment is refused ([`crate::RefusalReason::AlreadyRevoked`]);
    /// without (imports of already-checked entries), it is logged and the first one stays the
    /// enrolment's revocation.
    Revocation {
        /// Leaf index of the enrolment revoked.
        enrolment_index: u64,
        /// Whether an enrolment already revoked makes this one a refusal.
        refuse_repeat: bool,
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
    pub(super) tx: SyncSender<Msg>,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) _thread: Arc<JoinOnDrop>,
}

/// Joins the sequencer thread (which joins the writer) when the last handle goes, so the
/// threads have released the database before whoever dropped the log goes on (a process that
/// exits while they still close RocksDB can abort in RocksDB's own teardown).
#[derive(Debug)]
pub(super) struct JoinOnDrop(pub(super) std::sync::Mutex<Option<std::thread::JoinHandle<()>>>);

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
        refuse_unbundlable(&entry)?;
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
            if let Err(e) = refuse_unbundlable(&entry) {
                waiting.push(Err(e));
                continue;
            }
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

/// Refuses an entry longer than an entry bundle holds ([`countersign_verifier::MAX_ENTRY_BYTES`],
/// the limit every parsed entry already has), before it is sequenced: both drivers store
/// entries in bundles, and one that does not fit would fail its whole batch (embedded) or stop
/// integration (shared).
pub(crate) fn refuse_unbundlable(entry: &[u8]) -> Result<(), AppendError> {
    if entry.len() > countersign_verifier::MAX_ENTRY_BYTES {
        return Err(AppendError::Refused {
            reason: crate::error::RefusalReason::InvalidEntry,
            detail: format!(
                "the entry is {} bytes long; at most {} fit in an entry bundle",
                entry.len(),
                countersign_verifier::MAX_ENTRY_BYTES
            ),
        });
    }
    Ok(())
}
