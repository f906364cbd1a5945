//! RFC 6962 inclusion and consistency proofs assembled from stored subtree hashes, using the
//! verifier crate's proof shapes so the server and the auditor agree on every range.

use countersign_verifier::{
    consistency_proof_ranges, fold_subtrees, inclusion_proof_ranges, Hash, LeafRange,
};

use crate::storage::{StorageError, Store};

/// Why a proof cannot be made.
#[derive(Debug)]
pub enum ProofRequestError {
    /// The indices or sizes are out of range; the text says which.
    OutOfRange(&'static str),
    /// Storage failed.
    Storage(StorageError),
}

impl From<StorageError> for ProofRequestError {
    fn from(e: StorageError) -> Self {
        ProofRequestError::Storage(e)
    }
}

fn hashes_of(store: &Store, ranges: &[LeafRange]) -> Result<Vec<Hash>, StorageError> {
    let per_range: Vec<_> = ranges.iter().map(|r| r.subtrees()).collect();
    let addrs: Vec<(u8, u64)> = per_range
        .iter()
        .flatten()
        .map(|s| (s.level, s.index))
        .collect();
    let nodes = store.nodes(&addrs)?;
    let mut out = Vec::with_capacity(ranges.len());
    let mut at = 0;
    for subtrees in per_range {
        let end = at + subtrees.len();
        let h = fold_subtrees(&nodes[at..end])
            .ok_or_else(|| StorageError("empty proof range".into()))?;
        out.push(h);
        at = end;
    }
    Ok(out)
}

/// The inclusion proof of leaf `index` in the tree of `tree_size` leaves.
/// `tree_size` must not exceed the published size (the caller checks).
pub fn inclusion_proof(
    store: &Store,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofRequestError> {
    let ranges = inclusion_proof_ranges(index, tree_size)
        .map_err(|_| ProofRequestError::OutOfRange("index must be below tree_size"))?;
    Ok(hashes_of(store, &ranges)?)
}

/// The consistency proof from `first` to `second` leaves.
/// `second` must not exceed the published size (the caller checks).
pub fn consistency_proof(
    store: &Store,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofRequestError> {
    let ranges = consistency_proof_ranges(first, second)
        .map_err(|_| ProofRequestError::OutOfRange("first must not exceed second"))?;
    Ok(hashes_of(store, &ranges)?)
}
