//! Start-up: the tree rebuilt from what RocksDB holds, checked against the stored checkpoint
//! and the stored edge of its tiles.

use countersign_verifier::{Entry, RootStack};
use rocksdb::WriteBatch;

use crate::shared::integrate::Edge;
use crate::signer::LogSigner;
use crate::storage::layout::{encode_bundle, META_EDGE};
use crate::storage::{
    decode_tree, encode_tree, StorageError, Store, CF_CHECKPOINTS, CF_META, CF_REVOCATIONS,
    META_REVOCATIONS_INDEXED, META_TREE,
};

/// Rebuilds the tree from RocksDB. The tree state and the checkpoint for it are written in the
/// same batch, so they always agree; a mismatch means corruption and the log refuses to start
/// rather than sign anything.
/// What start-up recovers: the tree, its edge and incomplete bundle (encoded), and the latest
/// checkpoint.
pub(super) struct Recovered {
    pub(super) stack: RootStack,
    pub(super) edge: Edge,
    pub(super) bundle: Vec<u8>,
    pub(super) note: String,
}

pub(super) fn recover(store: &Store, signer: &LogSigner) -> Result<Recovered, StorageError> {
    match store.get(CF_META, META_TREE)? {
        Some(v) => {
            let (size, peaks) = decode_tree(&v)?;
            let stack = RootStack::from_parts(size, peaks).ok_or_else(|| {
                StorageError::Corrupt("tree state has the wrong number of peaks".into())
            })?;
            let note = store.checkpoint(size)?.ok_or_else(|| {
                StorageError::Missing(format!("no checkpoint stored for size {size}"))
            })?;
            let vc = countersign_verifier::verify_checkpoint(
                note.as_bytes(),
                signer.verifier_key(),
                &[],
            )
            .map_err(|e| {
                StorageError::Corrupt(format!("stored checkpoint does not verify: {e}"))
            })?;
            if vc.checkpoint.size != size || vc.checkpoint.root != stack.root() {
                return Err(StorageError::Corrupt(
                    "stored checkpoint does not match the stored tree state".into(),
                ));
            }
            let edge = store.edge()?;
            if edge.size() != size || edge.root() != stack.root() {
                return Err(StorageError::Corrupt(format!(
                    "the stored tile edge (size {}) does not match the stored tree state (size \
                     {size})",
                    edge.size()
                )));
            }
            let tail = size - size % crate::storage::TILE;
            let bundle = encode_bundle(tail, &store.tail_entries(tail, size)?)?;
            Ok(Recovered {
                stack,
                edge,
                bundle,
                note,
            })
        }
        None => {
            let stack = RootStack::default();
            let note = signer
                .sign(0, stack.root())
                .map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let mut wb = WriteBatch::default();
            wb.put_cf(
                store.cf(CF_CHECKPOINTS)?,
                0u64.to_be_bytes(),
                note.as_bytes(),
            );
            wb.put_cf(store.cf(CF_META)?, META_TREE, encode_tree(0, &[]));
            wb.put_cf(store.cf(CF_META)?, META_EDGE, Edge::empty().encode());
            store.write_sync(wb)?;
            Ok(Recovered {
                stack,
                edge: Edge::empty(),
                bundle: Vec::new(),
                note,
            })
        }
    }
}

/// Entries read at a time by [`index_revocations`].
const INDEX_CHUNK: u64 = 4096;

/// Builds the revocation index (enrolment index -> first revocation) of a log written before
/// the index existed, once: the sequencer keeps it from then on, in each revocation's own batch.
/// A log that has it already (or an empty one) costs one key lookup.
pub(super) fn index_revocations(store: &Store, size: u64) -> Result<u64, StorageError> {
    if store.get(CF_META, META_REVOCATIONS_INDEXED)?.is_some() {
        return Ok(0);
    }
    let mut wb = WriteBatch::default();
    let cf = store.cf(CF_REVOCATIONS)?;
    let mut seen = std::collections::HashSet::new();
    let mut start = 0;
    while start < size {
        let end = size.min(start + INDEX_CHUNK);
        for (index, bytes) in (start..end).zip(store.entries(start, end)?) {
            if let Ok(Entry::Revocation(r)) = Entry::decode(&bytes) {
                if seen.insert(r.enrolment_index) && store.revocation(r.enrolment_index)?.is_none()
                {
                    wb.put_cf(cf, r.enrolment_index.to_be_bytes(), index.to_be_bytes());
                }
            }
        }
        start = end;
    }
    wb.put_cf(store.cf(CF_META)?, META_REVOCATIONS_INDEXED, [1u8]);
    store.write_sync(wb)?;
    Ok(seen.len() as u64)
}

#[cfg(test)]
mod tests;
