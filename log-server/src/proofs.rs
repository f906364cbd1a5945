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

/// The hash of each range, reading all their subtrees in one lookup; `extra` node addresses
/// are read in the same lookup and returned first.
fn hashes_of(
    store: &Store,
    ranges: &[LeafRange],
    extra: &[(u8, u64)],
) -> Result<(Vec<Hash>, Vec<Hash>), StorageError> {
    let per_range: Vec<_> = ranges.iter().map(|r| r.subtrees()).collect();
    let addrs: Vec<(u8, u64)> = extra
        .iter()
        .copied()
        .chain(per_range.iter().flatten().map(|s| (s.level, s.index)))
        .collect();
    let nodes = store.nodes(&addrs)?;
    let mut out = Vec::with_capacity(ranges.len());
    let mut at = extra.len();
    for subtrees in per_range {
        let end = at + subtrees.len();
        let h = fold_subtrees(&nodes[at..end])
            .ok_or_else(|| StorageError::Missing("empty proof range".into()))?;
        out.push(h);
        at = end;
    }
    Ok((nodes[..extra.len()].to_vec(), out))
}

/// The inclusion proof of leaf `index` in the tree of `tree_size` leaves.
/// `tree_size` must not exceed the published size (the caller checks).
pub fn inclusion_proof(
    store: &Store,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofRequestError> {
    Ok(leaf_and_inclusion_proof(store, index, tree_size)?.1)
}

/// The leaf hash of `index` (its stored level-0 node) and its inclusion proof in the tree of
/// `tree_size` leaves, read together.
pub fn leaf_and_inclusion_proof(
    store: &Store,
    index: u64,
    tree_size: u64,
) -> Result<(Hash, Vec<Hash>), ProofRequestError> {
    let ranges = inclusion_proof_ranges(index, tree_size)
        .map_err(|_| ProofRequestError::OutOfRange("index must be below tree_size"))?;
    let (leaf, proof) = hashes_of(store, &ranges, &[(0, index)])?;
    let leaf = leaf
        .first()
        .copied()
        .ok_or_else(|| StorageError::Missing("leaf hash missing".into()))?;
    Ok((leaf, proof))
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
    Ok(hashes_of(store, &ranges, &[])?.1)
}
