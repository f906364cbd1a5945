//! What passes between the builder and the writer: a built batch, and the overlay of batches
//! not yet durable that the builder decides new requests against.

use std::collections::HashMap;
use std::sync::Arc;

use countersign_verifier::Hash;
use rocksdb::WriteBatch;

use crate::error::AppendError;

use super::handle::*;

/// A node hash and its address (level, index).
pub(super) type Node = (u8, u64, Hash);

/// What a batch decided and wrote, kept by the builder until the batch is durable so the next
/// batches see it (dedup, replays, credential counters) before RocksDB does.
///
/// The maps use foldhash (seeded per process) rather than SipHash: their keys are hashes and
/// ids, and SipHash was a fifth of the builder's time (profile of `countersign-bench core`).
#[derive(Default)]
pub(super) struct Overlay {
    pub(super) batch: u64,
    pub(super) pending: super::decide::Pending,
}

pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A batch ready to be written: the requests, what was decided for each, and the write batch
/// that holds the entries, hashes, indexes, tree state and signed checkpoint.
pub(super) struct Built {
    pub(super) batch: u64,
    pub(super) requests: Vec<AppendRequest>,
    pub(super) outcomes: Vec<Outcome>,
    pub(super) wb: WriteBatch,
    /// Size and root after the batch, and the note signed for them (if the tree grew).
    pub(super) size: u64,
    pub(super) root: Hash,
    pub(super) note: Option<(Arc<str>, u64)>,
    /// The batch's new node hashes, for the read cache once they are durable.
    pub(super) nodes: Vec<Node>,
}

pub(super) enum ToWriter {
    Batch(Box<Built>),
    /// Requests that failed before anything was built (answered in order with the batches).
    Failed(Vec<AppendRequest>),
}

/// The decision for one request of a batch.
pub(crate) enum Outcome {
    New(u64),
    Existing(u64),
    Failed(AppendError),
}

pub(super) fn fail_all(requests: Vec<AppendRequest>, e: AppendError) {
    for r in requests {
        let _ = r.reply.send(Err(e.clone()));
    }
}

#[cfg(test)]
mod tests;
