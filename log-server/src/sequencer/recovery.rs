//! Start-up: the tree rebuilt from what RocksDB holds, checked against the stored checkpoint.

use countersign_verifier::{Entry, RootStack};
use rocksdb::WriteBatch;

use crate::signer::LogSigner;
use crate::storage::{
    decode_tree, encode_tree, StorageError, Store, CF_CHECKPOINTS, CF_META, CF_REVOCATIONS,
    META_REVOCATIONS_INDEXED, META_TREE,
};

/// Rebuilds the tree from RocksDB. The tree state and the checkpoint for it are written in the
/// same batch, so they always agree; a mismatch means corruption and the log refuses to start
/// rather than sign anything.
pub(super) fn recover(
    store: &Store,
    signer: &LogSigner,
) -> Result<(RootStack, String), StorageError> {
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
            Ok((stack, note))
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
            store.write_sync(wb)?;
            Ok((stack, note))
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
