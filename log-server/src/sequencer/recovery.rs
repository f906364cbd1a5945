//! Start-up: the tree rebuilt from what RocksDB holds, checked against the stored checkpoint.

use countersign_verifier::RootStack;
use rocksdb::WriteBatch;

use crate::signer::LogSigner;
use crate::storage::{
    decode_tree, encode_tree, StorageError, Store, CF_CHECKPOINTS, CF_META, META_TREE,
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

#[cfg(test)]
mod tests;
