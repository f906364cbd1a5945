//! The writer: makes batches durable in order (one synced `WriteBatch` each), publishes their
//! checkpoints, answers the callers, and re-signs the checkpoint when idle.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_verifier::Hash;
use rocksdb::WriteBatch;
use tokio::sync::oneshot;

use crate::error::AppendError;
use crate::metrics::Metrics;
use crate::signer::LogSigner;
use crate::storage::{Store, CF_CHECKPOINTS, CF_META, META_SIGNED_AT};

use super::batch::*;
use super::decide::Outcome;
use super::handle::*;

/// The writer: makes batches durable in order, publishes their checkpoints, answers callers,
/// and re-signs the checkpoint when idle.
pub(super) struct Writer {
    pub(super) store: Store,
    pub(super) signer: Arc<LogSigner>,
    pub(super) checkpoint_interval: Duration,
    pub(super) metrics: Arc<Metrics>,
    pub(super) shared: Arc<Shared>,
    /// Size and root of the latest durable checkpoint.
    pub(super) committed: (u64, Hash),
}

impl Writer {
    pub(super) fn run(&mut self, rx: Receiver<ToWriter>) -> Option<oneshot::Sender<()>> {
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
