//! RFC 6962 section 2.1 hashing: leaf and interior node hashes and the root of a list.

use core::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
///
/// Equality is constant-time, because roots and leaf hashes are compared against values an
/// attacker may choose and a timing side channel must not tell how much of a guess matched.
#[derive(Clone, Copy, Eq, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl PartialEq for Hash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl core::hash::Hash for Hash {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Hash {
    /// The length of a hash in bytes.
    pub const LEN: usize = 32;

    /// Reads a hash from exactly 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Hash)
    }

    /// Parses 64 lowercase or uppercase hex digits; `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }

    /// The hash as 64 lowercase hex digits.
    pub fn to_hex(&self) -> alloc::string::String {
        // Through a buffer: `hex::encode` goes a character at a time, and this runs for every
        // row of an archive.
        let mut digits = [0u8; 64];
        // 64 bytes hold the digits of 32: encoding cannot fail.
        let _ = hex::encode_to_slice(self.0, &mut digits);
        digits.iter().map(|&b| char::from(b)).collect()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", hex::encode(self.0))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// RFC 6962 leaf hash: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree, `SHA-256("")` (RFC 6962 section 2.1).
pub fn empty_root() -> Hash {
    Hash(sha256(b""))
}

/// The Merkle tree hash (RFC 6962 section 2.1, `MTH`) of a list of leaf hashes.
///
/// Runs in O(n) time with O(log n) extra memory by folding complete subtrees as they fill,
/// the way an append-only log does.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    let mut stack = RootStack::default();
    for leaf in leaves {
        stack.push(*leaf);
    }
    stack.root()
}

/// A compact range over `[0, n)`: the hashes of the perfect subtrees that make up the first `n`
/// leaves, largest first, one per set bit of `n`. Appending is amortised O(1) node hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootStack {
    size: u64,
    peaks: alloc::vec::Vec<Hash>,
}

impl RootStack {
    /// Rebuilds a compact range from the tree size and its peaks (largest subtree first).
    ///
    /// Returns `None` unless there is exactly one peak per set bit of `size`.
    pub fn from_parts(size: u64, peaks: alloc::vec::Vec<Hash>) -> Option<Self> {
        (peaks.len() == size.count_ones() as usize).then_some(RootStack { size, peaks })
    }

    /// Number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree hashes, largest (leftmost) first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends one leaf hash, calling `on_node(level, index, hash)` for every complete subtree
    /// that this append finishes (level 0 is the leaf itself). A log uses the callback to store
    /// the hashes tiles are made of.
    pub fn push_with(&mut self, leaf: Hash, mut on_node: impl FnMut(u8, u64, &Hash)) {
        let mut hash = leaf;
        let mut level: u8 = 0;
        let mut index = self.size;
        on_node(0, index, &hash);
        // Each trailing one bit of the old size is a complete subtree that merges with the new one.
        let mut s = self.size;
        while s & 1 == 1 {
            // The stack holds one peak per set bit, so this pop cannot fail while bits remain.
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            on_node(level, index, &hash);
            s >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _, _| {});
    }

    /// The root of the tree so far: the peaks folded right to left.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root_from_leaf_hashes(&[]), empty_root());
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let h = leaf_hash(b"");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("00"), None);
        assert_eq!(Hash::from_hex(&"zz".repeat(32)), None);
        assert_eq!(Hash::from_slice(&[0u8; 31]), None);
    }

    #[test]
    fn push_reports_completed_subtrees() {
        let mut s = RootStack::default();
        let mut seen = alloc::vec::Vec::new();
        for i in 0..4u8 {
            s.push_with(leaf_hash(&[i]), |l, n, _| seen.push((l, n)));
        }
        assert_eq!(
            seen,
            [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)]
        );
        assert_eq!(s.peaks().len(), 1);
        let again = RootStack::from_parts(4, s.peaks().to_vec());
        assert_eq!(again.map(|r| r.root()), Some(s.root()));
        assert!(RootStack::from_parts(3, s.peaks().to_vec()).is_none());
    }
}
