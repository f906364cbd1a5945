//! RFC 6962 inclusion and consistency proofs assembled from stored subtree hashes, using the
//! verifier crate's proof shapes so the server and the auditor agree on every range.
//!
//! The hashes come from a [`NodeSource`]: the log's own [`Store`], or any other holder of the
//! tree's complete-subtree hashes (the shared driver reads them from hash tiles in a bucket,
//! [`crate::shared::reads`]). Each proof reads its nodes in one [`NodeSource::nodes`] call,
//! at the addresses [`inclusion_proof_nodes`] and [`consistency_proof_nodes`] name, so a source
//! that must fetch them first can fetch exactly those.

use countersign_verifier::{
    consistency_proof_ranges, fold_subtrees, inclusion_proof_ranges, Hash, LeafRange, Subtree,
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

/// Where proofs read the tree's node hashes from.
pub trait NodeSource {
    /// The hashes of the complete subtrees at `addrs` (`(level, index)`: the `2^level` leaves
    /// from `index * 2^level`; level 0 is the leaf hash), in the order asked.
    fn nodes(&self, addrs: &[(u8, u64)]) -> Result<Vec<Hash>, StorageError>;
}

impl NodeSource for Store {
    fn nodes(&self, addrs: &[(u8, u64)]) -> Result<Vec<Hash>, StorageError> {
        Store::nodes(self, addrs)
    }
}

/// The complete subtrees of each range, and every node address a proof reads: `extra` first,
/// then the subtrees of each range in order.
fn plan(ranges: &[LeafRange], extra: &[(u8, u64)]) -> (Vec<Vec<Subtree>>, Vec<(u8, u64)>) {
    let per_range: Vec<_> = ranges.iter().map(|r| r.subtrees()).collect();
    let addrs: Vec<(u8, u64)> = extra
        .iter()
        .copied()
        .chain(per_range.iter().flatten().map(|s| (s.level, s.index)))
        .collect();
    (per_range, addrs)
}

/// The hash of each range, reading all their subtrees in one lookup; `extra` node addresses
/// are read in the same lookup and returned first.
fn hashes_of<S: NodeSource + ?Sized>(
    source: &S,
    ranges: &[LeafRange],
    extra: &[(u8, u64)],
) -> Result<(Vec<Hash>, Vec<Hash>), StorageError> {
    let (per_range, addrs) = plan(ranges, extra);
    let nodes = source.nodes(&addrs)?;
    if nodes.len() != addrs.len() {
        return Err(StorageError::Missing(format!(
            "{} node hashes for {} addresses",
            nodes.len(),
            addrs.len()
        )));
    }
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

/// The node addresses [`leaf_and_inclusion_proof_from`] reads for leaf `index` in the tree of
/// `tree_size` leaves, in the order it asks its source for them (the leaf's own first).
pub fn inclusion_proof_nodes(
    index: u64,
    tree_size: u64,
) -> Result<Vec<(u8, u64)>, ProofRequestError> {
    let ranges = inclusion_proof_ranges(index, tree_size)
        .map_err(|_| ProofRequestError::OutOfRange("index must be below tree_size"))?;
    Ok(plan(&ranges, &[(0, index)]).1)
}

/// The node addresses [`consistency_proof_from`] reads for the proof from `first` to `second`
/// leaves, in the order it asks its source for them (none when `first` is 0 or `second`).
pub fn consistency_proof_nodes(
    first: u64,
    second: u64,
) -> Result<Vec<(u8, u64)>, ProofRequestError> {
    let ranges = consistency_proof_ranges(first, second)
        .map_err(|_| ProofRequestError::OutOfRange("first must not exceed second"))?;
    Ok(plan(&ranges, &[]).1)
}

/// The inclusion proof of leaf `index` in the tree of `tree_size` leaves.
/// `tree_size` must not exceed the published size (the caller checks).
pub fn inclusion_proof(
    store: &Store,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofRequestError> {
    inclusion_proof_from(store, index, tree_size)
}

/// [`inclusion_proof`] from any [`NodeSource`].
pub fn inclusion_proof_from<S: NodeSource + ?Sized>(
    source: &S,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofRequestError> {
    Ok(leaf_and_inclusion_proof_from(source, index, tree_size)?.1)
}

/// The leaf hash of `index` (its stored level-0 node) and its inclusion proof in the tree of
/// `tree_size` leaves, read together.
pub fn leaf_and_inclusion_proof(
    store: &Store,
    index: u64,
    tree_size: u64,
) -> Result<(Hash, Vec<Hash>), ProofRequestError> {
    leaf_and_inclusion_proof_from(store, index, tree_size)
}

/// [`leaf_and_inclusion_proof`] from any [`NodeSource`]: the nodes of
/// [`inclusion_proof_nodes`], read in one call.
pub fn leaf_and_inclusion_proof_from<S: NodeSource + ?Sized>(
    source: &S,
    index: u64,
    tree_size: u64,
) -> Result<(Hash, Vec<Hash>), ProofRequestError> {
    let ranges = inclusion_proof_ranges(index, tree_size)
        .map_err(|_| ProofRequestError::OutOfRange("index must be below tree_size"))?;
    let (leaf, proof) = hashes_of(source, &ranges, &[(0, index)])?;
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
    consistency_proof_from(store, first, second)
}

/// [`consistency_proof`] from any [`NodeSource`]: the nodes of [`consistency_proof_nodes`],
/// read in one call.
pub fn consistency_proof_from<S: NodeSource + ?Sized>(
    source: &S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofRequestError> {
    let ranges = consistency_proof_ranges(first, second)
        .map_err(|_| ProofRequestError::OutOfRange("first must not exceed second"))?;
    Ok(hashes_of(source, &ranges, &[])?.1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::cell::RefCell;

    use countersign_verifier::{
        leaf_hash, root_from_leaf_hashes, verify_consistency, verify_inclusion,
    };

    use super::*;

    /// A tree held as its leaf hashes; remembers what it was asked for.
    struct Leaves {
        leaves: Vec<Hash>,
        asked: RefCell<Vec<Vec<(u8, u64)>>>,
    }

    impl NodeSource for Leaves {
        fn nodes(&self, addrs: &[(u8, u64)]) -> Result<Vec<Hash>, StorageError> {
            self.asked.borrow_mut().push(addrs.to_vec());
            addrs
                .iter()
                .map(|&(level, index)| {
                    let lo = usize::try_from(index << level).unwrap();
                    let hi = lo + (1usize << level);
                    self.leaves
                        .get(lo..hi)
                        .map(root_from_leaf_hashes)
                        .ok_or_else(|| StorageError::Missing(format!("{level}/{index}")))
                })
                .collect()
        }
    }

    #[test]
    fn proofs_from_any_source_verify_and_read_the_planned_nodes() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let src = Leaves {
            leaves: leaves.clone(),
            asked: RefCell::new(Vec::new()),
        };
        for size in 1..=70u64 {
            let root = root_from_leaf_hashes(&leaves[..size as usize]);
            for index in 0..size {
                src.asked.borrow_mut().clear();
                let (leaf, proof) = leaf_and_inclusion_proof_from(&src, index, size).unwrap();
                assert_eq!(leaf, leaves[index as usize]);
                verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
                assert_eq!(
                    *src.asked.borrow(),
                    vec![inclusion_proof_nodes(index, size).unwrap()]
                );
            }
            for first in 0..=size {
                src.asked.borrow_mut().clear();
                let old = root_from_leaf_hashes(&leaves[..first as usize]);
                let proof = consistency_proof_from(&src, first, size).unwrap();
                verify_consistency(first, size, &old, &root, &proof).unwrap();
                let planned = consistency_proof_nodes(first, size).unwrap();
                assert_eq!(*src.asked.borrow(), vec![planned]);
            }
            assert!(matches!(
                inclusion_proof_from(&src, size, size),
                Err(ProofRequestError::OutOfRange(_))
            ));
            assert!(matches!(
                consistency_proof_nodes(size + 1, size),
                Err(ProofRequestError::OutOfRange(_))
            ));
        }
    }
}
