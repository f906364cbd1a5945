//! Integration as one pure step (issue 21): (tree state, sequenced batch) → new entry bundles,
//! new hash tiles (full and partial), new tree state. The drivers only persist what it returns.
//!
//! The tree state is the tree's right edge in tile form, an [`Edge`]: for each tile level `L`,
//! the hashes (at Merkle tree level `8L`) of the incomplete tile at that level, fewer than 256.
//! That is everything needed to extend the tree: when a tile fills, its root is the next hash of
//! the level above, and the full tile is written. Integrating a batch costs one leaf hash per
//! entry, 255 node hashes per tile completed (amortised under one per entry), and the edge's
//! own size (at most 8 × 255 hashes), never anything proportional to the tree.
//!
//! The objects are C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>), byte for byte what the
//! embedded log serves at `/tile/…` for the same tree ([`crate::tiles::read_tile`]), at the
//! paths the tile mirror writes ([`countersign_verifier::export::tile_path`]), and exactly the
//! tiles [`crate::mirror::new_tiles`] names for the same growth.

use std::fmt;

use countersign_verifier::export::tile_path;
use countersign_verifier::{empty_root, leaf_hash, node_hash, root_from_leaf_hashes, Hash};

/// Hashes (or entries) per full tile.
const TILE: usize = 256;
/// The format version of [`Edge::encode`].
pub const EDGE_VERSION: u8 = 1;

/// The widths of the incomplete tiles of a tree of `size` leaves, tile level 0 first: the
/// base-256 digits of `size`, least significant first, as many as it has (none for 0).
fn widths(size: u64) -> impl Iterator<Item = usize> {
    (0..8u32)
        .map(move |l| size >> (8 * l))
        .take_while(|&n| n > 0)
        .map(|n| (n % TILE as u64) as usize)
}

/// The index of the incomplete tile at tile level `level` of a tree of `size` leaves.
fn edge_tile_index(size: u64, level: usize) -> u64 {
    (size >> (8 * level)) / TILE as u64
}

fn concat(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * Hash::LEN);
    for h in hashes {
        out.extend_from_slice(h.as_bytes());
    }
    out
}

/// Splits `bytes` (a multiple of 32 long) into hashes.
fn split_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(Hash::LEN)
        .filter_map(Hash::from_slice)
        .collect()
}

/// The right edge of a tree in tile form: everything needed to extend it.
///
/// For a tree of `size` leaves and each tile level `L` up to the most significant base-256
/// digit of `size`, the hashes at tree level `8L` of the incomplete tile at that level: as many
/// as the digit `L` of `size` in base 256 (so fewer than 256, possibly none below the top).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    size: u64,
    /// `levels[L]`: the hashes of the incomplete tile at tile level `L`.
    levels: Vec<Vec<Hash>>,
}

impl Edge {
    /// The edge of the empty tree.
    pub fn empty() -> Edge {
        Edge {
            size: 0,
            levels: Vec::new(),
        }
    }

    /// The number of leaves of the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The incomplete tile at tile level `level`: its index and its hashes (none when the
    /// level's digit of the size is 0); `None` above the tree's top tile level.
    pub fn partial_tile(&self, level: u8) -> Option<(u64, &[Hash])> {
        let hashes = self.levels.get(usize::from(level))?;
        Some((edge_tile_index(self.size, usize::from(level)), hashes))
    }

    /// The RFC 6962 root of the whole tree (the empty tree's is SHA-256 of nothing).
    ///
    /// The tree's perfect subtrees, one per set bit of its size, are made of the incomplete
    /// tiles' hashes: tile level `L` holds those of the bits `8L..8L+8`. They are folded right
    /// to left.
    pub fn root(&self) -> Hash {
        // Peaks, smallest (rightmost) first.
        let mut peaks: Vec<Hash> = Vec::new();
        for level in &self.levels {
            let mut rest: &[Hash] = level;
            let mut level_peaks = Vec::new();
            while !rest.is_empty() {
                // The largest power of two that fits: a perfect subtree, leftmost first.
                let n = 1usize << rest.len().ilog2();
                level_peaks.push(root_from_leaf_hashes(&rest[..n]));
                rest = &rest[n..];
            }
            peaks.extend(level_peaks.into_iter().rev());
        }
        let mut iter = peaks.into_iter();
        let Some(first) = iter.next() else {
            return empty_root();
        };
        iter.fold(first, |acc, left| node_hash(&left, &acc))
    }

    /// A compact, versioned binary form: [`EDGE_VERSION`], the size (8 bytes, big-endian),
    /// then for each tile level from 0 up to the size's most significant base-256 digit, the
    /// width of its incomplete tile (1 byte) and that many 32-byte hashes.
    pub fn encode(&self) -> Vec<u8> {
        let hashes: usize = self.levels.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(9 + self.levels.len() + hashes * Hash::LEN);
        out.push(EDGE_VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        for level in &self.levels {
            // Fewer than 256 by construction.
            out.push(level.len() as u8);
            out.extend_from_slice(&concat(level));
        }
        out
    }

    /// Reads [`Edge::encode`]'s form. Refuses another version, input that ends early or goes on
    /// past the edge, and widths other than the base-256 digits of the size.
    pub fn decode(b: &[u8]) -> Result<Edge, EdgeError> {
        let (&version, rest) = b.split_first().ok_or(EdgeError::Truncated)?;
        if version != EDGE_VERSION {
            return Err(EdgeError::Version(version));
        }
        let size_bytes: [u8; 8] = rest
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .ok_or(EdgeError::Truncated)?;
        let size = u64::from_be_bytes(size_bytes);
        let mut rest = &rest[8..];
        let mut levels = Vec::new();
        for (level, want) in widths(size).enumerate() {
            let (&width, tail) = rest.split_first().ok_or(EdgeError::Truncated)?;
            if usize::from(width) != want {
                return Err(EdgeError::Width {
                    level: level as u8,
                    expected: want as u64,
                    found: u64::from(width),
                });
            }
            let n = want * Hash::LEN;
            let hashes = tail.get(..n).ok_or(EdgeError::Truncated)?;
            levels.push(split_hashes(hashes));
            rest = &tail[n..];
        }
        if !rest.is_empty() {
            return Err(EdgeError::TrailingBytes(rest.len()));
        }
        Ok(Edge { size, levels })
    }

    /// Rebuilds the edge of a tree of `size` from the partial tiles of its right edge, as read
    /// from storage: `tile(level, index, width)` returns the tile's bytes. Checks lengths; the
    /// caller compares root() with the root it trusts.
    ///
    /// Only the partial hash tiles are read (one per nonzero base-256 digit of `size`, level 0
    /// first); never a full tile or an entry bundle.
    pub fn from_tiles<E>(
        size: u64,
        mut tile: impl FnMut(u8, u64, u64) -> Result<Vec<u8>, E>,
    ) -> Result<Edge, FromTilesError<E>> {
        let mut levels = Vec::new();
        for (level, width) in widths(size).enumerate() {
            if width == 0 {
                levels.push(Vec::new());
                continue;
            }
            let (level, index, width) = (level as u8, edge_tile_index(size, level), width as u64);
            let bytes = tile(level, index, width).map_err(|error| FromTilesError::Read {
                level,
                index,
                width,
                error,
            })?;
            if bytes.len() as u64 != width * Hash::LEN as u64 {
                return Err(FromTilesError::Length {
                    level,
                    index,
                    width,
                    len: bytes.len(),
                });
            }
            levels.push(split_hashes(&bytes));
        }
        Ok(Edge { size, levels })
    }
}

/// Why [`Edge::decode`] refused its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeError {
    /// A format version this code does not write.
    Version(u8),
    /// The input ends before the edge does.
    Truncated,
    /// Bytes follow the edge (this many).
    TrailingBytes(usize),
    /// An incomplete tile's width is not the base-256 digit of the size at its level.
    Width {
        /// The tile level.
        level: u8,
        /// The digit of the size.
        expected: u64,
        /// The width in the input.
        found: u64,
    },
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeError::Version(v) => write!(f, "tree edge: unknown format version {v}"),
            EdgeError::Truncated => f.write_str("tree edge: truncated"),
            EdgeError::TrailingBytes(n) => write!(f, "tree edge: {n} bytes past its end"),
            EdgeError::Width {
                level,
                expected,
                found,
            } => write!(
                f,
                "tree edge: the tile at level {level} has width {found}, the size says {expected}"
            ),
        }
    }
}

impl std::error::Error for EdgeError {}

/// Why [`Edge::from_tiles`] could not rebuild an edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromTilesError<E> {
    /// Reading a tile failed.
    Read {
        /// The tile level.
        level: u8,
        /// The tile index.
        index: u64,
        /// The tile width.
        width: u64,
        /// What the reader returned.
        error: E,
    },
    /// A tile is not `32 × width` bytes long.
    Length {
        /// The tile level.
        level: u8,
        /// The tile index.
        index: u64,
        /// The tile width.
        width: u64,
        /// Its length in bytes.
        len: usize,
    },
}

impl<E: fmt::Display> fmt::Display for FromTilesError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromTilesError::Read {
                level,
                index,
                width,
                error,
            } => write!(
                f,
                "reading {}: {error}",
                tile_path(Some(*level), *index, *width)
            ),
            FromTilesError::Length {
                level,
                index,
                width,
                len,
            } => write!(
                f,
                "{} is {len} bytes long, not {}",
                tile_path(Some(*level), *index, *width),
                width * Hash::LEN as u64
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for FromTilesError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FromTilesError::Read { error, .. } => Some(error),
            FromTilesError::Length { .. } => None,
        }
    }
}

/// A tile or entry bundle to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Its C2SP path, as [`tile_path`] names it (`tile/0/000`, `tile/entries/001.p/17`).
    pub path: String,
    /// Its tile level, `None` for an entry bundle.
    pub level: Option<u8>,
    /// Its index at that level.
    pub index: u64,
    /// Its contents.
    pub bytes: Vec<u8>,
    /// A full tile or bundle (immutable); `false` for a partial one.
    pub full: bool,
}

/// What [`integrate`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integrated {
    /// The new tree's edge.
    pub edge: Edge,
    /// The new tree's root.
    pub root: Hash,
    /// The hash tiles that changed, by level then index: the tiles completed, then the new
    /// partial tile of the level if any ([`crate::mirror::new_tiles`]'s order).
    pub tiles: Vec<Object>,
    /// The entry bundles that changed, by index: those completed, then the new partial one.
    pub bundles: Vec<Object>,
}

/// Why [`integrate`] refused a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntegrateError {
    /// `bundle_prefix` does not hold `edge.size() % 256` entries.
    BundlePrefixLength {
        /// `edge.size() % 256`.
        expected: u64,
        /// The entries given.
        found: u64,
    },
    /// An entry of `bundle_prefix` is not the one the edge has at its index (its leaf hash
    /// differs): the caller read another log's or a damaged sequence.
    BundlePrefixMismatch {
        /// The entry's index in the log.
        index: u64,
    },
    /// An entry is longer than an entry bundle can hold (65535 bytes).
    EntryTooLong {
        /// The entry's index in the log.
        index: u64,
        /// Its length.
        len: usize,
    },
    /// The tree would exceed 2^64 - 1 leaves.
    TreeFull,
}

impl fmt::Display for IntegrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegrateError::BundlePrefixLength { expected, found } => write!(
                f,
                "integration: {found} entries given before the batch, the partial bundle holds \
                 {expected}"
            ),
            IntegrateError::BundlePrefixMismatch { index } => write!(
                f,
                "integration: entry {index} given for the partial bundle is not the tree's"
            ),
            IntegrateError::EntryTooLong { index, len } => write!(
                f,
                "integration: entry {index} is {len} bytes long, more than the 65535 an entry \
                 bundle holds"
            ),
            IntegrateError::TreeFull => f.write_str("integration: the tree is full"),
        }
    }
}

impl std::error::Error for IntegrateError {}

/// Appends `entry` to an entry bundle, with its 2-byte big-endian length.
pub(crate) fn push_entry(
    bundle: &mut Vec<u8>,
    index: u64,
    entry: &[u8],
) -> Result<(), IntegrateError> {
    let len = u16::try_from(entry.len()).map_err(|_| IntegrateError::EntryTooLong {
        index,
        len: entry.len(),
    })?;
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// What [`grow`] returns: [`Integrated`] without the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grown {
    /// The new tree's edge.
    pub edge: Edge,
    /// As [`Integrated::tiles`].
    pub tiles: Vec<Object>,
    /// As [`Integrated::bundles`].
    pub bundles: Vec<Object>,
}

/// Extends the tree at `edge` with `entries`. `bundle_prefix` holds the entries already in the
/// incomplete entry bundle (edge.size() % 256 of them, in order; the caller reads them from its
/// sequencing store), so the new partial bundle can be written whole. Returns every object that
/// changed: full tiles/bundles completed by this batch and the new partial ones (a partial of
/// width W only when W > 0), exactly the bytes the embedded log serves for the same tree.
///
/// The prefix is checked against the edge (its entries' leaf hashes are the edge's level-0
/// hashes), so a bundle is never written with entries the tree does not have. No entries:
/// nothing changes and nothing is returned.
pub fn integrate(
    edge: &Edge,
    bundle_prefix: &[Vec<u8>],
    entries: &[Vec<u8>],
) -> Result<Integrated, IntegrateError> {
    let from = edge.size;
    from.checked_add(entries.len() as u64)
        .ok_or(IntegrateError::TreeFull)?;
    let in_bundle = from % TILE as u64;
    if bundle_prefix.len() as u64 != in_bundle {
        return Err(IntegrateError::BundlePrefixLength {
            expected: in_bundle,
            found: bundle_prefix.len() as u64,
        });
    }
    let edge_leaves = edge.levels.first().map_or(&[][..], Vec::as_slice);
    let bundle_start = from - in_bundle;
    let mut bundle = Vec::new();
    for ((i, e), h) in (bundle_start..).zip(bundle_prefix).zip(edge_leaves) {
        if leaf_hash(e) != *h {
            return Err(IntegrateError::BundlePrefixMismatch { index: i });
        }
        push_entry(&mut bundle, i, e)?;
    }
    let grown = grow(
        edge,
        bundle,
        entries.iter().map(|e| (e.as_slice(), leaf_hash(e))),
    )?;
    Ok(Integrated {
        root: grown.edge.root(),
        edge: grown.edge,
        tiles: grown.tiles,
        bundles: grown.bundles,
    })
}

/// The step itself, for a caller that holds the incomplete bundle and the leaf hashes already
/// (the embedded sequencer): extends the tree at `edge` with `entries`, each with its leaf
/// hash, after `bundle`, the encoded entries of the incomplete entry bundle (the bytes of its
/// partial bundle, empty when `edge.size()` is a multiple of 256; not checked against the edge,
/// unlike [`integrate`]'s prefix). Returns the same objects as [`integrate`].
pub fn grow<'a>(
    edge: &Edge,
    mut bundle: Vec<u8>,
    entries: impl IntoIterator<Item = (&'a [u8], Hash)>,
) -> Result<Grown, IntegrateError> {
    let from = edge.size;
    let mut levels = edge.levels.clone();
    // Completed tiles per level, in index order; one element per level this batch reached
    // (the levels whose partial tile changed).
    let mut full: Vec<Vec<Object>> = Vec::new();
    let mut bundles = Vec::new();
    let mut size = from;
    for (e, leaf) in entries {
        if size == u64::MAX {
            return Err(IntegrateError::TreeFull);
        }
        push_entry(&mut bundle, size, e)?;
        size += 1;
        if size % TILE as u64 == 0 {
            let index = size / TILE as u64 - 1;
            bundles.push(Object {
                path: tile_path(None, index, TILE as u64),
                level: None,
                index,
                bytes: std::mem::take(&mut bundle),
                full: true,
            });
        }
        // The new leaf, then the root of each tile it completes, one level up each time.
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if levels.len() <= level {
                levels.push(Vec::with_capacity(TILE));
            }
            if full.len() <= level {
                full.push(Vec::new());
            }
            levels[level].push(hash);
            if levels[level].len() < TILE {
                break;
            }
            // A tile of tree level 8L is full when the count of its nodes, `size >> 8L`, is a
            // multiple of 256; at level 7 that would take 2^64 leaves, so `level` stays < 8.
            let hashes = std::mem::replace(&mut levels[level], Vec::with_capacity(TILE));
            hash = root_from_leaf_hashes(&hashes);
            let index = (size >> (8 * level)) / TILE as u64 - 1;
            full[level].push(Object {
                path: tile_path(Some(level as u8), index, TILE as u64),
                level: Some(level as u8),
                index,
                bytes: concat(&hashes),
                full: true,
            });
            level += 1;
        }
    }
    let to = size;
    if to != from && !bundle.is_empty() {
        let index = to / TILE as u64;
        bundles.push(Object {
            path: tile_path(None, index, to % TILE as u64),
            level: None,
            index,
            bytes: bundle,
            full: false,
        });
    }
    let mut tiles = Vec::new();
    for (level, completed) in full.into_iter().enumerate() {
        tiles.extend(completed);
        let partial = &levels[level];
        if !partial.is_empty() {
            let index = edge_tile_index(to, level);
            tiles.push(Object {
                path: tile_path(Some(level as u8), index, partial.len() as u64),
                level: Some(level as u8),
                index,
                bytes: concat(partial),
                full: false,
            });
        }
    }
    Ok(Grown {
        edge: Edge { size: to, levels },
        tiles,
        bundles,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Arc;

    use countersign_verifier::RootStack;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::metrics::Metrics;
    use crate::mirror::new_tiles;
    use crate::sequencer::{start, AppendKind, SequencerConfig};
    use crate::signer::LogSigner;
    use crate::storage::Store;
    use crate::tiles::{parse_tile_path, read_tile, TileRead};

    /// Distinct entries of varied lengths, among them an empty one and one of the largest
    /// length a bundle holds.
    fn entry(i: u64) -> Vec<u8> {
        match i {
            5 => Vec::new(),
            300 => {
                let mut e = vec![0xab; 65535];
                e[..8].copy_from_slice(&i.to_be_bytes());
                e
            }
            _ => {
                let mut e = i.to_be_bytes().to_vec();
                e.extend(std::iter::repeat_n((i % 251) as u8, (i % 61) as usize));
                e
            }
        }
    }

    /// Integrates `entries[from..]` in batches of `sizes`, starting from the edge of
    /// `entries[..from]`; calls `check(from, to, &result)` after each batch and returns the
    /// final result. Objects written so far are kept in `bucket`.
    fn run(
        entries: &[Vec<u8>],
        sizes: &[usize],
        bucket: &mut HashMap<String, Vec<u8>>,
        mut check: impl FnMut(u64, u64, &Integrated, &HashMap<String, Vec<u8>>),
    ) -> Edge {
        let mut edge = Edge::empty();
        for &n in sizes {
            let from = edge.size() as usize;
            let prefix = &entries[from - from % 256..from];
            let r = integrate(&edge, prefix, &entries[from..from + n]).unwrap();
            for o in r.bundles.iter().chain(&r.tiles) {
                bucket.insert(o.path.clone(), o.bytes.clone());
            }
            check(from as u64, (from + n) as u64, &r, bucket);
            edge = r.edge;
        }
        edge
    }

    /// The checks every batch passes: the root, the changed paths, the edge's encoding, and
    /// the edge rebuilt from the objects stored so far.
    fn check_batch(
        from: u64,
        to: u64,
        r: &Integrated,
        bucket: &HashMap<String, Vec<u8>>,
        roots: &HashMap<u64, Hash>,
    ) {
        assert_eq!(r.edge.size(), to);
        assert_eq!(r.root, roots[&to], "root at {to}");
        assert_eq!(r.edge.root(), r.root);
        let paths: Vec<&str> = r
            .bundles
            .iter()
            .chain(&r.tiles)
            .map(|o| o.path.as_str())
            .collect();
        let expected: Vec<String> = new_tiles(from, to)
            .into_iter()
            .map(|(l, i, w)| tile_path(l, i, w))
            .collect();
        assert_eq!(paths, expected, "{from} -> {to}");
        for o in r.bundles.iter().chain(&r.tiles) {
            assert_eq!(o.full, !o.path.contains(".p/"), "{}", o.path);
        }
        assert!(r
            .bundles
            .iter()
            .all(|o| o.path.starts_with("tile/entries/")));
        assert!(r.tiles.iter().all(|o| !o.path.starts_with("tile/entries/")));
        assert_eq!(Edge::decode(&r.edge.encode()), Ok(r.edge.clone()));
        let rebuilt = Edge::from_tiles(to, |l, i, w| {
            bucket.get(&tile_path(Some(l), i, w)).cloned().ok_or(())
        });
        assert_eq!(rebuilt, Ok(r.edge.clone()), "from_tiles at {to}");
    }

    /// The reference roots at `sizes`: the verifier's compact range over the leaf hashes.
    fn reference_roots(entries: &[Vec<u8>], sizes: &BTreeSet<u64>) -> HashMap<u64, Hash> {
        let mut out = HashMap::new();
        let mut stack = RootStack::default();
        for (i, e) in entries.iter().enumerate() {
            if sizes.contains(&(i as u64)) {
                out.insert(i as u64, stack.root());
            }
            stack.push(leaf_hash(e));
        }
        if sizes.contains(&(entries.len() as u64)) {
            out.insert(entries.len() as u64, stack.root());
        }
        out
    }

    /// The batch plans of the comparison with the embedded log.
    fn plans(total: usize) -> Vec<Vec<usize>> {
        let mut plans: Vec<Vec<usize>> = [0usize, 1, 255, 256, 257, 65535, 65536, 65537]
            .into_iter()
            .map(|n| vec![n])
            .collect();
        // One leaf at a time across the tile boundaries.
        plans.push(vec![255, 1, 1, 65_278, 1, 1, 254, 1]);
        plans.push((0..600).map(|_| 1).collect());
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let mut random = Vec::new();
        let mut sum = 0;
        while sum < total {
            let n = rng.gen_range(1..=600).min(total - sum);
            random.push(n);
            sum += n;
        }
        plans.push(random);
        plans
    }

    /// Batch after batch, every object equals what the embedded log serves at `/tile/…` for
    /// the same entries and tree size, the changed paths are `mirror::new_tiles`', the roots
    /// are the verifier's, and the edge survives encoding and rebuilding from the tiles.
    #[tokio::test]
    async fn objects_match_the_embedded_log() {
        const TOTAL: u64 = 70_000;
        let entries: Vec<Vec<u8>> = (0..TOTAL).map(entry).collect();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let signer = Arc::new(LogSigner::new("unit.test/log", &[3; 32]).unwrap());
        let config = SequencerConfig {
            batch_max_entries: 16_384,
            ..SequencerConfig::default()
        };
        let log = start(store.clone(), signer, config, Arc::new(Metrics::new())).unwrap();
        for chunk in entries.chunks(16_384) {
            let items = chunk
                .iter()
                .map(|e| (e.clone(), leaf_hash(e), AppendKind::Other))
                .collect();
            for a in log.append_many(items).await {
                assert!(!a.unwrap().existing);
            }
        }
        let published = log.shared().published();
        assert_eq!(published.size, TOTAL);
        log.shutdown().await;

        let plans = plans(TOTAL as usize);
        let mut sizes = BTreeSet::new();
        for plan in &plans {
            let mut s = 0u64;
            sizes.insert(s);
            for n in plan {
                s += *n as u64;
                sizes.insert(s);
            }
        }
        let roots = reference_roots(&entries, &sizes);
        assert_eq!(roots[&TOTAL], published.root);
        let mut objects = 0usize;
        for plan in &plans {
            let mut bucket = HashMap::new();
            let edge = run(&entries, plan, &mut bucket, |from, to, r, bucket| {
                check_batch(from, to, r, bucket, &roots);
                for o in r.bundles.iter().chain(&r.tiles) {
                    let t = parse_tile_path(o.path.strip_prefix("tile/").unwrap()).unwrap();
                    let TileRead::Found(served) = read_tile(&store, &t, to).unwrap() else {
                        panic!("the log has no {} at {to}", o.path);
                    };
                    assert!(served == o.bytes, "{} at {to}", o.path);
                    objects += 1;
                }
            });
            assert_eq!(edge.size(), plan.iter().sum::<usize>() as u64);
        }
        // Every plan wrote something; the large ones thousands of objects.
        assert!(objects > 2000, "{objects}");
    }

    /// The RFC 6962 roots of the shared vectors' leaves, integrated at once and one by one.
    #[test]
    fn rfc6962_vector_roots() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testvectors/known-answer/rfc6962-c2sp-vectors.json"
        ))
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let m = &v["rfc6962_merkle"];
        let leaves: Vec<Vec<u8>> = m["leaf_inputs_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(leaves.len(), 8);
        let root = |n: usize| Hash::from_hex(m["roots_hex"][n.to_string()].as_str().unwrap());
        assert_eq!(Some(Edge::empty().root()), root(0));
        let mut one_by_one = Edge::empty();
        for n in 0..=8 {
            let at_once = integrate(&Edge::empty(), &[], &leaves[..n]).unwrap();
            assert_eq!(Some(at_once.root), root(n), "{n} at once");
            assert_eq!(Some(one_by_one.root()), root(n), "{n} one by one");
            if n < 8 {
                let r = integrate(&one_by_one, &leaves[..n], &leaves[n..=n]).unwrap();
                assert_eq!(r.edge, at_once_edge(&leaves[..=n]));
                one_by_one = r.edge;
            }
        }
        // The C2SP example tree of 70,000 leaves: its partial tiles.
        let entries: Vec<Vec<u8>> = (0..70_000).map(entry).collect();
        let r = integrate(&Edge::empty(), &[], &entries).unwrap();
        let partial: Vec<&str> = r
            .tiles
            .iter()
            .chain(&r.bundles)
            .filter(|o| !o.full)
            .map(|o| o.path.as_str())
            .collect();
        assert_eq!(
            partial,
            [
                "tile/0/273.p/112",
                "tile/1/001.p/17",
                "tile/2/000.p/1",
                "tile/entries/273.p/112"
            ]
        );
        assert_eq!(r.bundles.len(), 274);
        assert_eq!(r.tiles.len(), 274 + 2 + 1);
    }

    fn at_once_edge(entries: &[Vec<u8>]) -> Edge {
        integrate(&Edge::empty(), &[], entries).unwrap().edge
    }

    #[test]
    fn edge_encoding_round_trips_and_refuses_bad_input() {
        let entries: Vec<Vec<u8>> = (0..65_793).map(entry).collect();
        assert_eq!(
            Edge::empty().encode(),
            [[EDGE_VERSION].as_slice(), &[0; 8]].concat()
        );
        for size in [0usize, 1, 255, 256, 257, 65_536, 65_792, 65_793] {
            let edge = at_once_edge(&entries[..size]);
            let b = edge.encode();
            let digits: Vec<usize> = widths(size as u64).collect();
            assert_eq!(
                b.len(),
                9 + digits.len() + 32 * digits.iter().sum::<usize>(),
                "{size}"
            );
            assert_eq!(Edge::decode(&b), Ok(edge.clone()), "{size}");
            for cut in 0..b.len() {
                assert_eq!(Edge::decode(&b[..cut]), Err(EdgeError::Truncated), "{size}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(Edge::decode(&longer), Err(EdgeError::TrailingBytes(1)));
            for version in [0, 2, 255] {
                let mut other = b.clone();
                other[0] = version;
                assert_eq!(Edge::decode(&other), Err(EdgeError::Version(version)));
            }
            // Each level's width byte, off by one.
            let mut at = 9;
            for (level, &w) in digits.iter().enumerate() {
                for bad in [w.wrapping_add(1) as u8, w.wrapping_sub(1) as u8] {
                    let mut other = b.clone();
                    other[at] = bad;
                    assert_eq!(
                        Edge::decode(&other),
                        Err(EdgeError::Width {
                            level: level as u8,
                            expected: w as u64,
                            found: u64::from(bad)
                        }),
                        "{size} level {level}"
                    );
                }
                at += 1 + 32 * w;
            }
        }
        // A size whose digits do not match the widths that follow.
        let mut b = at_once_edge(&entries[..257]).encode();
        b[8] = 2; // size 258: level 0 has width 2, the input 1
        assert_eq!(
            Edge::decode(&b),
            Err(EdgeError::Width {
                level: 0,
                expected: 2,
                found: 1
            })
        );
    }

    #[test]
    fn from_tiles_reads_the_partial_tiles_only() {
        let entries: Vec<Vec<u8>> = (0..70_000).map(entry).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(6962);
        // Batches to 0, 1, 8, 256, 257, 1000, 65535, 65536, 65537, then three random ones.
        let mut batches = vec![0usize, 1, 7, 248, 1, 743, 64_535, 1, 1];
        batches.extend((0..3).map(|_| rng.gen_range(1..1000)));
        let mut sizes: BTreeSet<u64> = [0, 70_000].into();
        let mut sum = 0;
        for n in &batches {
            sum += *n as u64;
            sizes.insert(sum);
        }
        let mut bucket = HashMap::new();
        let roots = reference_roots(&entries, &sizes);
        run(&entries, &batches, &mut bucket, |from, to, r, bucket| {
            check_batch(from, to, r, bucket, &roots);
        });
        // 70,000 leaves: the three partial tiles of the C2SP example.
        let r = integrate(&Edge::empty(), &[], &entries).unwrap();
        let tiles: HashMap<String, Vec<u8>> =
            r.tiles.into_iter().map(|o| (o.path, o.bytes)).collect();
        let mut reads = Vec::new();
        let edge = Edge::from_tiles(70_000, |l, i, w| {
            reads.push((l, i, w));
            tiles
                .get(&tile_path(Some(l), i, w))
                .cloned()
                .ok_or("missing")
        })
        .unwrap();
        assert_eq!(reads, [(0, 273, 112), (1, 1, 17), (2, 0, 1)]);
        assert_eq!(edge, r.edge);
        assert_eq!(edge.root(), roots[&70_000]);
        // 65,536 leaves: level 2 only.
        let mut reads = Vec::new();
        let _ = Edge::from_tiles(65_536, |l, i, w| {
            reads.push((l, i, w));
            Ok::<_, ()>(vec![0; 32])
        });
        assert_eq!(reads, [(2, 0, 1)]);
        assert_eq!(
            Edge::from_tiles(0, |_, _, _| Err("no read")),
            Ok(Edge::empty())
        );
        // Errors: the reader's, and a tile of the wrong length.
        assert_eq!(
            Edge::from_tiles(70_000, |_, _, _| Err::<Vec<u8>, _>("gone")),
            Err(FromTilesError::Read {
                level: 0,
                index: 273,
                width: 112,
                error: "gone"
            })
        );
        assert_eq!(
            Edge::from_tiles(70_000, |l, i, w| {
                let mut t = tiles[&tile_path(Some(l), i, w)].clone();
                if l == 1 {
                    t.pop();
                }
                Ok::<_, ()>(t)
            }),
            Err(FromTilesError::Length {
                level: 1,
                index: 1,
                width: 17,
                len: 17 * 32 - 1
            })
        );
    }

    #[test]
    fn refuses_bad_batches() {
        let entries: Vec<Vec<u8>> = (0..300).map(entry).collect();
        let edge = at_once_edge(&entries[..258]);
        // The partial bundle holds 2 entries.
        for prefix in [&entries[..0], &entries[256..257], &entries[255..258]] {
            assert_eq!(
                integrate(&edge, prefix, &entries[258..260]),
                Err(IntegrateError::BundlePrefixLength {
                    expected: 2,
                    found: prefix.len() as u64
                })
            );
        }
        assert_eq!(
            integrate(&edge, &[entries[256].clone(), entries[1].clone()], &[]),
            Err(IntegrateError::BundlePrefixMismatch { index: 257 })
        );
        assert_eq!(
            integrate(&Edge::empty(), &entries[..1], &entries[..1]),
            Err(IntegrateError::BundlePrefixLength {
                expected: 0,
                found: 1
            })
        );
        let long = vec![7u8; 65_536];
        assert_eq!(
            integrate(
                &edge,
                &entries[256..258],
                &[entries[258].clone(), long.clone()]
            ),
            Err(IntegrateError::EntryTooLong {
                index: 259,
                len: 65_536
            })
        );
        // 65,535 bytes fit.
        let r = integrate(&edge, &entries[256..258], &[long[1..].to_vec()]).unwrap();
        assert_eq!(
            r.bundles[0].bytes.len(),
            2 * 3 + entries[256].len() + entries[257].len() + 65_535
        );
        // No entries: nothing changes.
        let r = integrate(&edge, &entries[256..258], &[]).unwrap();
        assert_eq!((r.edge, r.root), (edge.clone(), edge.root()));
        assert!(r.tiles.is_empty() && r.bundles.is_empty());
        // A full tree.
        let mut full = vec![EDGE_VERSION];
        full.extend_from_slice(&u64::MAX.to_be_bytes());
        for _ in 0..8 {
            full.push(255);
            full.extend_from_slice(&[1; 255 * 32]);
        }
        let full = Edge::decode(&full).unwrap();
        assert_eq!(
            integrate(&full, &[], &entries[..1]),
            Err(IntegrateError::TreeFull)
        );
    }
}
