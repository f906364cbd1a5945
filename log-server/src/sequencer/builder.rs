//! The builder: the one thread that owns the tree. It drains the queue into batches, decides
//! every request against the committed state, the batches in flight and the batch itself,
//! grows the tree, signs the checkpoint, and hands the batch to the writer.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use countersign_verifier::{Hash, RootStack};
use rocksdb::WriteBatch;
use tokio::sync::oneshot;

use crate::error::AppendError;
use crate::metrics::Metrics;
use crate::shared::integrate::{grow, Edge, Grown};
use crate::signer::LogSigner;
use crate::storage::layout::persist;
use crate::storage::{
    encode_credential, encode_tree, StorageError, Store, CF_ASSERTIONS, CF_CHECKPOINTS,
    CF_CREDENTIALS, CF_LEAF_INDEX, CF_META, CF_REVOCATIONS, META_SIGNED_AT, META_TREE,
};

use super::batch::*;
use super::decide::{Committed, Decided, FastMap, Outcome};
use super::handle::*;

/// The builder: owns the tree and decides every request.
pub(super) struct Sequencer {
    pub(super) store: Store,
    pub(super) signer: Arc<LogSigner>,
    pub(super) config: SequencerConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) shared: Arc<Shared>,
    /// The tree including every batch handed to the writer.
    pub(super) stack: RootStack,
    /// The same tree's edge in tile form ([`Edge`]).
    pub(super) edge: Edge,
    /// The same tree's incomplete entry bundle, encoded.
    pub(super) bundle: Vec<u8>,
    /// Batches handed to the writer and not yet known to be durable, oldest first.
    pub(super) in_flight: VecDeque<Overlay>,
    pub(super) next_batch: u64,
    pub(super) to_writer: Option<SyncSender<ToWriter>>,
}

impl Sequencer {
    /// Runs until shutdown (returning whom to tell) or until every sender is gone.
    pub(super) fn run(&mut self, rx: Receiver<Msg>) -> Option<oneshot::Sender<()>> {
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
            Ok((stack, outcomes, nodes, tiled)) => 'built: {
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
                    if let Some((edge, bundle)) = tiled {
                        self.edge = edge;
                        self.bundle = bundle;
                    }
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
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
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

    /// Decides every request and fills the write batch; returns the grown tree (and its edge
    /// and incomplete bundle, when it grew).
    #[allow(clippy::type_complexity)]
    fn build(
        &self,
        batch: &[AppendRequest],
        wb: &mut WriteBatch,
        cur: &mut Overlay,
    ) -> Result<(RootStack, Vec<Outcome>, Vec<Node>, Option<(Edge, Vec<u8>)>), StorageError> {
        let mut stack = self.stack.clone();
        let cf_leaf = self.store.cf(CF_LEAF_INDEX)?;
        let cf_assert = self.store.cf(CF_ASSERTIONS)?;
        let cf_cred = self.store.cf(CF_CREDENTIALS)?;
        let cf_revoked = self.store.cf(CF_REVOCATIONS)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        // One batched lookup per index instead of one `get` per entry. Exact dedup of a
        // decision is its assertion lookup (the same bytes carry the same assertion), and of an
        // enrolment its credential lookup, so only other entries (revocations included) need the
        // leaf-hash index.
        let leaf_keys: Vec<&[u8]> = batch
            .iter()
            .filter(|r| matches!(r.kind, AppendKind::Other | AppendKind::Revocation { .. }))
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
        let committed = InFlightThenStore {
            in_flight: &self.in_flight,
            store: &self.store,
            logged_leaves,
            logged_assertions,
        };
        // Every node the batch completes, for the read cache once the batch is durable.
        let mut nodes: Vec<Node> = Vec::with_capacity(batch.len() * 2);
        let mut added: Vec<(&[u8], Hash)> = Vec::with_capacity(batch.len());
        for r in batch {
            let index = stack.size();
            let fx = match cur
                .pending
                .decide(&committed, &r.entry, &r.leaf, &r.kind, index)?
            {
                Decided::Done(outcome) => {
                    outcomes.push(outcome);
                    continue;
                }
                Decided::New(fx) => fx,
            };
            if let Some(enrolment_index) = fx.revokes {
                wb.put_cf(
                    cf_revoked,
                    enrolment_index.to_be_bytes(),
                    index.to_be_bytes(),
                );
            }
            if let Some((id, enrol, count)) = &fx.credential {
                wb.put_cf(cf_cred, id, encode_credential(*enrol, *count));
            }
            if let Some(k) = &fx.assertion {
                wb.put_cf(cf_assert, k, index.to_be_bytes());
            }
            stack.push_with(r.leaf, |level, i, h| nodes.push((level, i, *h)));
            added.push((&r.entry, r.leaf));
            wb.put_cf(cf_leaf, r.leaf.as_bytes(), index.to_be_bytes());
            outcomes.push(Outcome::New(index));
        }
        if added.is_empty() {
            return Ok((stack, outcomes, nodes, None));
        }
        // The stored form: the full tiles and bundles this batch completes, the new edge, and
        // the entries of the incomplete bundle (`storage::layout`).
        let from = self.edge.size();
        let Grown {
            edge,
            tiles,
            bundles,
        } = grow(&self.edge, self.bundle.clone(), added)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut bundle = Vec::new();
        persist(&self.store, wb, from, &edge, tiles, bundles, &mut bundle)?;
        Ok((stack, outcomes, nodes, Some((edge, bundle))))
    }
}

/// What the builder decides against: the batches still being written (newest first where it
/// matters), then RocksDB, with the batch's leaf and assertion lookups done up front.
struct InFlightThenStore<'a> {
    in_flight: &'a VecDeque<Overlay>,
    store: &'a Store,
    logged_leaves: FastMap<&'a [u8], u64>,
    logged_assertions: FastMap<&'a [u8], u64>,
}

impl Committed for InFlightThenStore<'_> {
    fn leaf(&self, leaf: &Hash) -> Result<Option<u64>, StorageError> {
        Ok(self
            .in_flight
            .iter()
            .find_map(|o| o.pending.leaves.get(leaf).copied())
            .or_else(|| self.logged_leaves.get(leaf.as_bytes().as_slice()).copied()))
    }

    fn assertion(&self, key: &[u8; 32]) -> Result<Option<u64>, StorageError> {
        Ok(self
            .in_flight
            .iter()
            .find_map(|o| o.pending.assertions.get(key).copied())
            .or_else(|| self.logged_assertions.get(key.as_slice()).copied()))
    }

    fn credential(&self, id: &[u8]) -> Result<Option<(u64, u32)>, StorageError> {
        match self
            .in_flight
            .iter()
            .rev()
            .find_map(|o| o.pending.creds.get(id))
        {
            Some(c) => Ok(Some(*c)),
            None => self.store.credential(id),
        }
    }

    fn revocation(&self, enrolment_index: u64) -> Result<Option<u64>, StorageError> {
        match self
            .in_flight
            .iter()
            .rev()
            .find_map(|o| o.pending.revoked.get(&enrolment_index))
        {
            Some(r) => Ok(Some(*r)),
            None => self.store.revocation(enrolment_index),
        }
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        match self
            .in_flight
            .iter()
            .find_map(|o| o.pending.entries.get(&index))
        {
            Some(e) => Ok(Some(e.clone())),
            None => self.store.entry(index),
        }
    }
}
