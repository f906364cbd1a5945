//! RFC 6962 / RFC 9162 inclusion and consistency proofs: verification, and the index math a log
//! uses to build them from stored subtree hashes.

use alloc::vec::Vec;
use core::fmt;

use crate::hash::{node_hash, Hash};

/// The longest proof a tree of at most 2^64 - 1 leaves can need (one hash per level, plus the
/// prepended old root of a consistency proof). Longer proofs are rejected before any hashing.
pub const MAX_PROOF_HASHES: usize = 65;

/// Why a proof did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    IndexBeyondSize,
    /// The old tree is larger than the new tree.
    OldSizeExceedsNew,
    /// The proof has fewer hashes than the path from leaf (or old tree) to the root needs.
    ProofTooShort,
    /// The proof has more hashes than the path needs.
    ProofTooLong,
    /// The hashes combine to a root other than the expected one.
    RootMismatch,
    /// Consistency: the proof does not reproduce the old root.
    OldRootMismatch,
    /// Consistency: the proof does not reproduce the new root.
    NewRootMismatch,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProofError::IndexBeyondSize => "leaf index is not smaller than the tree size",
            ProofError::OldSizeExceedsNew => "old tree size is larger than new tree size",
            ProofError::ProofTooShort => "proof has too few hashes for this index and tree size",
            ProofError::ProofTooLong => "proof has too many hashes for this index and tree size",
            ProofError::RootMismatch => "proof does not lead to the expected root hash",
            ProofError::OldRootMismatch => "consistency proof does not reproduce the old root",
            ProofError::NewRootMismatch => "consistency proof does not reproduce the new root",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ProofError {}

/// Recomputes the root from a leaf hash and its inclusion proof (RFC 9162 section 2.1.3.2).
///
/// Returns the root the proof leads to; errors if the index is out of range or the proof has
/// the wrong length. Does not compare against an expected root: see [`verify_inclusion`].
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexBeyondSize);
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::ProofTooLong);
    }
    let mut fnode = index;
    let mut snode = tree_size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // Skip the levels where our node is the right edge of a smaller, unbalanced tree.
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::ProofTooShort);
    }
    Ok(r)
}

/// Verifies that `leaf_hash` is the leaf at `index` of the tree of `tree_size` leaves whose root
/// is `root` (RFC 6962 section 2.1.1, verification per RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let got = root_from_inclusion_proof(leaf_hash, index, tree_size, proof)?;
    if got == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root` (RFC 6962 section 2.1.2, verification per RFC 9162
/// section 2.1.4.2).
///
/// An empty old tree is a prefix of every tree, and equal sizes need an empty proof and equal
/// roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeExceedsNew);
    }
    if proof.len() > MAX_PROOF_HASHES {
        return Err(ProofError::ProofTooLong);
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::ProofTooLong);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        // RFC 9162 leaves the empty tree out; it is trivially a prefix and needs no hashes.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::ProofTooLong)
        };
    }
    // When the old tree is a complete subtree its root is the first node of the path and the
    // proof omits it.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::ProofTooShort);
    };
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if snode == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::ProofTooShort);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// A run of consecutive leaves `[start, end)` whose Merkle tree hash is one element of a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRange {
    /// First leaf index, inclusive.
    pub start: u64,
    /// Last leaf index, exclusive.
    pub end: u64,
}

/// A complete subtree: the `2^level` leaves starting at `index * 2^level`. This is the address
/// of a hash in C2SP tlog-tiles (tile level `level / 8`, hash `index` at that level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subtree {
    /// Height above the leaves; 0 is a leaf.
    pub level: u8,
    /// Index among the subtrees of that height, from the left.
    pub index: u64,
}

impl LeafRange {
    /// The complete subtrees this range is made of, left to right, largest first.
    ///
    /// For every range that occurs in an RFC 6962 proof, the Merkle tree hash of the range is
    /// these subtrees' hashes folded right to left with the node hash ([`fold_subtrees`]).
    pub fn subtrees(&self) -> Vec<Subtree> {
        let mut out = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let remaining = self.end - start;
            let fit = 63 - remaining.leading_zeros();
            let align = if start == 0 {
                63
            } else {
                start.trailing_zeros()
            };
            let level = fit.min(align);
            out.push(Subtree {
                level: level as u8,
                index: start >> level,
            });
            start += 1u64 << level;
        }
        out
    }
}

/// Combines the hashes of [`LeafRange::subtrees`] (in that order) into the range's hash.
/// Returns `None` for an empty list.
pub fn fold_subtrees(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    )
}

fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The ranges whose hashes form the inclusion proof of leaf `index` in a tree of `tree_size`
/// leaves, in proof order (RFC 6962 section 2.1.1 `PATH(m, D[n])`: the leaf's sibling first).
///
/// Returns [`ProofError::IndexBeyondSize`] if `index >= tree_size`.
pub fn inclusion_proof_ranges(index: u64, tree_size: u64) -> Result<Vec<LeafRange>, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexBeyondSize);
    }
    // Walk down from the root; siblings are found root-first, and the proof wants them leaf-first.
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0u64, tree_size);
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if index < lo + k {
            out.push(LeafRange {
                start: lo + k,
                end: hi,
            });
            hi = lo + k;
        } else {
            out.push(LeafRange {
                start: lo,
                end: lo + k,
            });
            lo += k;
        }
    }
    out.reverse();
    Ok(out)
}

/// The ranges whose hashes form the consistency proof from `old_size` to `new_size`, in proof
/// order (RFC 6962 section 2.1.2 `PROOF(m, D[n])`). Empty when the sizes are equal or the old
/// tree is empty.
pub fn consistency_proof_ranges(
    old_size: u64,
    new_size: u64,
) -> Result<Vec<LeafRange>, ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeExceedsNew);
    }
    let mut out = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(out);
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled; the ranges are found root-first.
    let (mut lo, mut hi, mut m, mut complete) = (0u64, new_size, old_size, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push(LeafRange { start: lo, end: hi });
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            out.push(LeafRange {
                start: lo + k,
                end: hi,
            });
            hi = lo + k;
        } else {
            out.push(LeafRange {
                start: lo,
                end: lo + k,
            });
            lo += k;
            m -= k;
            complete = false;
        }
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{leaf_hash, root_from_leaf_hashes};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn range_hash(all: &[Hash], r: LeafRange) -> Hash {
        root_from_leaf_hashes(&all[r.start as usize..r.end as usize])
    }

    #[test]
    fn subtree_decomposition_matches_mth() {
        let all = leaves(70);
        for size in 1..=70u64 {
            for index in 0..size {
                for r in inclusion_proof_ranges(index, size).unwrap() {
                    let subs: Vec<Hash> = r
                        .subtrees()
                        .iter()
                        .map(|s| {
                            let a = (s.index << s.level) as usize;
                            root_from_leaf_hashes(&all[a..a + (1usize << s.level)])
                        })
                        .collect();
                    assert_eq!(fold_subtrees(&subs), Some(range_hash(&all, r)));
                }
            }
        }
    }

    #[test]
    fn built_proofs_verify_and_lengths_are_exact() {
        let all = leaves(40);
        for size in 1..=40u64 {
            let root = root_from_leaf_hashes(&all[..size as usize]);
            for index in 0..size {
                let proof: Vec<Hash> = inclusion_proof_ranges(index, size)
                    .unwrap()
                    .into_iter()
                    .map(|r| range_hash(&all, r))
                    .collect();
                verify_inclusion(&all[index as usize], index, size, &proof, &root).unwrap();
                let mut longer = proof.clone();
                longer.push(root);
                assert_eq!(
                    verify_inclusion(&all[index as usize], index, size, &longer, &root),
                    Err(ProofError::ProofTooLong)
                );
                if !proof.is_empty() {
                    assert_eq!(
                        verify_inclusion(
                            &all[index as usize],
                            index,
                            size,
                            &proof[..proof.len() - 1],
                            &root
                        ),
                        Err(ProofError::ProofTooShort)
                    );
                }
            }
            for old in 0..=size {
                let old_root = root_from_leaf_hashes(&all[..old as usize]);
                let proof: Vec<Hash> = consistency_proof_ranges(old, size)
                    .unwrap()
                    .into_iter()
                    .map(|r| range_hash(&all, r))
                    .collect();
                verify_consistency(old, size, &old_root, &root, &proof).unwrap();
            }
        }
    }

    #[test]
    fn rejects_out_of_range() {
        let h = leaf_hash(b"x");
        assert_eq!(
            verify_inclusion(&h, 1, 1, &[], &h),
            Err(ProofError::IndexBeyondSize)
        );
        assert_eq!(
            verify_consistency(2, 1, &h, &h, &[]),
            Err(ProofError::OldSizeExceedsNew)
        );
        assert!(inclusion_proof_ranges(5, 5).is_err());
        assert!(consistency_proof_ranges(6, 5).is_err());
        let big = [h; MAX_PROOF_HASHES + 1];
        assert_eq!(
            verify_inclusion(&h, 0, u64::MAX, &big, &h),
            Err(ProofError::ProofTooLong)
        );
    }
}
