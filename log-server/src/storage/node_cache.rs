//! The in-memory cache of node hashes every proof and tile read goes through.

use std::sync::atomic::{AtomicU64, Ordering};

use countersign_verifier::Hash;

/// Node hashes are kept in an in-memory cache: every inclusion and consistency proof reads
/// one node per level, the upper levels are shared by all of them, and at start the cache is
/// loaded with the tree's upper levels and latest leaves. Two regions of this many slots each
/// (about 56 bytes a slot, 117 MB in all), so memory stays bounded whatever the tree size:
/// inner nodes (levels >= 1; a tree of 1,000,000 leaves has 999,999) and leaf hashes (level 0,
/// the latest 1,048,576 leaves). Figures: `benches/README.md`, "Node cache".
pub(super) const NODE_CACHE_SLOTS: usize = 1 << 20;

/// A direct-mapped cache of complete-subtree hashes. A slot is taken by a node of the same or a
/// higher level, so the few upper nodes every proof needs are not pushed out by the many
/// lower ones. Each slot has its own lock (uncontended: two readers rarely want one slot).
/// Slots are assigned by position in the tree, not by a hash: with a hash, a tree of as many
/// leaves as slots kept only about two thirds of its level-1 nodes.
pub(super) struct NodeCache {
    pub(super) slots: Box<[CacheSlot]>,
    /// Leaf hashes (level 0), by index modulo the slot count: the latest ones are kept.
    pub(super) leaves: Box<[CacheSlot]>,
    /// Leaves covered by the nodes cached so far: a lower bound on the tree size.
    covered: AtomicU64,
}

/// One slot: the node's level, index and hash, if it holds one.
pub(super) type CacheSlot = std::sync::Mutex<Option<(u8, u64, Hash)>>;

impl NodeCache {
    pub(super) fn new(slots: usize) -> Self {
        NodeCache {
            slots: (0..slots.next_power_of_two())
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            leaves: (0..slots.next_power_of_two())
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            covered: AtomicU64::new(0),
        }
    }

    /// The slot of node (`level`, `index`), `level >= 1`. A node's in-order position among the
    /// inner nodes of the tree, `(2 index + 1) 2^(level - 1) - 1`, is below the tree size and
    /// different for every node. Shifted right by `s`, the positions of the nodes above level `s`
    /// are their positions in a tree `2^s` times smaller: still all different. So `s` is chosen
    /// as the least that makes the tree seen so far fit the slots: up to as many leaves as
    /// slots, every inner node has a slot of its own; beyond that the upper levels do, and the
    /// lower ones share the rest (a slot is kept by the higher node). When the tree outgrows
    /// the slots again, `s` grows and the cache refills (entries are tagged, so an entry left in
    /// another slot is a miss, never a wrong answer).
    fn slot(&self, level: u8, index: u64) -> &CacheSlot {
        if level == 0 {
            return &self.leaves[index as usize & (self.leaves.len() - 1)];
        }
        let leaves = self.covered.load(Ordering::Relaxed);
        let ratio = leaves.div_ceil(self.slots.len() as u64);
        let s = if ratio <= 1 {
            0
        } else {
            64 - (ratio - 1).leading_zeros()
        };
        let level = u32::from(level.saturating_sub(1)).min(63);
        let pos = (index.wrapping_mul(2).wrapping_add(1) << level).wrapping_sub(1) >> s;
        &self.slots[pos as usize & (self.slots.len() - 1)]
    }

    /// The cached hash of node (`level`, `index`).
    pub(super) fn get(&self, level: u8, index: u64) -> Option<Hash> {
        let slot = match self.slot(level, index).lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        slot.and_then(|(l, i, h)| (l == level && i == index).then_some(h))
    }

    /// Caches a durable node hash.
    pub(super) fn insert(&self, level: u8, index: u64, hash: Hash) {
        let covers = index
            .saturating_add(1)
            .checked_shl(u32::from(level))
            .filter(|c| c >> level == index.saturating_add(1))
            .unwrap_or(u64::MAX);
        self.covered.fetch_max(covers, Ordering::Relaxed);
        let mut g = match self.slot(level, index).lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.is_none_or(|(l, _, _)| l <= level) {
            *g = Some((level, index, hash));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn node_cache_keeps_upper_levels_and_never_answers_for_another_node() {
        let c = NodeCache::new(1);
        let h = |b| Hash([b; 32]);
        assert_eq!(c.get(3, 7), None);
        c.insert(3, 7, h(1));
        assert_eq!(c.get(3, 7), Some(h(1)));
        // One slot: another node at a lower level does not displace it...
        c.insert(2, 9, h(2));
        assert_eq!(c.get(2, 9), None);
        assert_eq!(c.get(3, 7), Some(h(1)));
        // ...one at the same or a higher level does, and the old one is then a miss.
        c.insert(5, 1, h(3));
        assert_eq!(c.get(5, 1), Some(h(3)));
        assert_eq!(c.get(3, 7), None);
        assert_eq!(c.get(5, 2), None);
        // Leaf hashes (level 0) have slots of their own, by index: the latest leaf keeps one.
        let c = NodeCache::new(4);
        c.insert(0, 1, h(4));
        assert_eq!(c.get(0, 1), Some(h(4)));
        c.insert(3, 0, h(6));
        assert_eq!(c.get(0, 1), Some(h(4)));
        c.insert(0, 5, h(5));
        assert_eq!((c.get(0, 1), c.get(0, 5)), (None, Some(h(5))));
    }

    #[test]
    fn node_cache_holds_every_inner_node_of_a_tree_as_large_as_its_slots() {
        let h = |l: u8, i: u64| {
            Hash(countersign_verifier::sha256(
                &[&[l][..], &i.to_be_bytes()].concat(),
            ))
        };
        let inner = |leaves: u64| {
            (1..=leaves.ilog2() as u8).flat_map(move |l| (0..leaves >> l).map(move |i| (l, i)))
        };
        let c = NodeCache::new(64);
        for (l, i) in inner(64) {
            c.insert(l, i, h(l, i));
        }
        for (l, i) in inner(64) {
            assert_eq!(c.get(l, i), Some(h(l, i)), "node {l}/{i}");
        }
        // Twice as many leaves as slots: every level from 2 up still hits, and the slots are
        // all used (127 inner nodes, 64 slots).
        let c = NodeCache::new(64);
        for (l, i) in inner(128) {
            c.insert(l, i, h(l, i));
        }
        let misses = inner(128).filter(|&(l, i)| c.get(l, i).is_none()).count();
        assert_eq!(misses, 127 - 64);
        for (l, i) in inner(128).filter(|&(l, _)| l >= 2) {
            assert_eq!(c.get(l, i), Some(h(l, i)), "node {l}/{i}");
        }
        // Sixteen times as many: the top 6 levels (63 nodes) still all hit, and no node is ever
        // answered with another's hash.
        let c = NodeCache::new(64);
        for (l, i) in inner(1024) {
            c.insert(l, i, h(l, i));
        }
        for (l, i) in inner(1024) {
            let got = c.get(l, i);
            assert!(got.is_none() || got == Some(h(l, i)), "node {l}/{i}");
            assert!(l < 5 || got.is_some(), "node {l}/{i}");
        }
    }
}
