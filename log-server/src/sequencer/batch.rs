//! What passes between the builder and the writer: a built batch, and the overlay of batches
//! not yet durable that the builder decides new requests against.

use std::sync::Arc;

use countersign_verifier::Hash;
use rocksdb::WriteBatch;

use crate::error::AppendError;

use super::decide::Outcome;
use super::handle::*;

/// A node hash and its address (level, index).
pub(super) type Node = (u8, u64, Hash);

/// What a batch decided and wrote, kept by the builder until the batch is durable so the next
/// batches see it (dedup, replays, credential counters) before RocksDB does.
#[derive(Default)]
pub(super) struct Overlay {
    pub(super) batch: u64,
    pub(super) pending: super::decide::Pending,
}

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

pub(super) fn fail_all(requests: Vec<AppendRequest>, e: AppendError) {
    for r in requests {
        let _ = r.reply.send(Err(e.clone()));
    }
}

#[cfg(test)]
mod tests;
