//! Reads of the shared log from its bucket: tiles for `/tile/…`, and proofs and entries
//! computed from the hash tiles and entry bundles, through an in-process cache.
//!
//! The bucket is not trusted. Every proof is verified against the trusted root the caller
//! names (a checkpoint this log signed) before it is returned, so an altered, truncated or
//! missing object ends in an error ([`ReadError::Tampered`], [`ReadError::Missing`]) naming
//! the objects involved, never in a wrong answer. An entry is checked against its leaf hash in
//! the level-0 tile; the caller that needs it bound to a root checks that leaf hash with
//! [`TileReader::inclusion_proof`].
//!
//! Every tile path names immutable content (a partial tile `<tile>.p/<W>` too: its path names
//! its width), so cached objects never go stale; the cache is bounded in bytes and drops the
//! least recently used object first. A partial tile the bucket no longer holds (the mirror
//! removes partial tiles once their full tile exists) is read as the prefix of its full tile.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use countersign_verifier::export::{split_entry_bundle, subtree_in_tiles, tile_path, TileRun};
use countersign_verifier::{
    leaf_hash, root_from_leaf_hashes, verify_consistency, verify_inclusion, Hash, Subtree,
};
use futures_util::future::{try_join, try_join_all};

use crate::bucket::{Bucket, MirrorError};
use crate::proofs::{
    consistency_proof_from, consistency_proof_nodes, inclusion_proof_nodes,
    leaf_and_inclusion_proof_from, NodeSource, ProofRequestError,
};
use crate::storage::StorageError;
use crate::tiles::{parse_tile_path, TILE_WIDTH};

/// Why a read from the bucket gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// The index, sizes or path are not ones the tree has; the text says which.
    OutOfRange(&'static str),
    /// An object the answer needs is not in the bucket: its path.
    Missing(String),
    /// What the bucket holds does not match: a proof that does not lead to the trusted root, a
    /// tile of the wrong length, an entry whose hash is not its leaf hash. The text says what
    /// and names the objects involved.
    Tampered(String),
    /// The bucket failed (unreachable, refused, timed out).
    Bucket(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::OutOfRange(m) => write!(f, "out of range: {m}"),
            ReadError::Missing(p) => write!(f, "{p} is not in the bucket"),
            ReadError::Tampered(m) => write!(f, "the bucket does not hold this log: {m}"),
            ReadError::Bucket(m) => write!(f, "bucket: {m}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<MirrorError> for ReadError {
    fn from(e: MirrorError) -> Self {
        match e {
            MirrorError::BadUrl(m)
            | MirrorError::Conflict(m)
            | MirrorError::Store(m)
            | MirrorError::Log(m) => ReadError::Bucket(m),
        }
    }
}

impl From<ProofRequestError> for ReadError {
    fn from(e: ProofRequestError) -> Self {
        match e {
            ProofRequestError::OutOfRange(m) => ReadError::OutOfRange(m),
            // The nodes were read before the proof was assembled: one missing is a bug here,
            // reported rather than answered.
            ProofRequestError::Storage(e) => ReadError::Missing(e.to_string()),
        }
    }
}

/// What the cache has done since the reader was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Objects answered from the cache.
    pub hits: u64,
    /// Objects read from the bucket (found there or not).
    pub misses: u64,
    /// Bytes held now: each object's bytes and its path's.
    pub bytes: usize,
    /// Objects held now.
    pub objects: usize,
    /// The most bytes held at once.
    pub capacity: usize,
}

/// The objects read, by path, least recently used first out.
struct Lru {
    capacity: usize,
    bytes: usize,
    /// Ticks of use: the smallest is the least recently used.
    tick: u64,
    map: HashMap<String, (Arc<[u8]>, u64)>,
    order: BTreeMap<u64, String>,
    hits: u64,
    misses: u64,
}

fn cost(path: &str, bytes: &[u8]) -> usize {
    path.len() + bytes.len()
}

impl Lru {
    fn get(&mut self, path: &str) -> Option<Arc<[u8]>> {
        let Some((bytes, used)) = self.map.get_mut(path) else {
            self.misses += 1;
            return None;
        };
        self.order.remove(used);
        self.tick += 1;
        *used = self.tick;
        self.order.insert(self.tick, path.to_owned());
        self.hits += 1;
        Some(bytes.clone())
    }

    fn insert(&mut self, path: &str, bytes: Arc<[u8]>) {
        let c = cost(path, &bytes);
        if c > self.capacity || self.map.contains_key(path) {
            return;
        }
        while self.bytes + c > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = self.map.remove(&oldest) {
                self.bytes -= cost(&oldest, &b);
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, path.to_owned());
        self.map.insert(path.to_owned(), (bytes, self.tick));
        self.bytes += c;
    }

    fn remove(&mut self, path: &str) {
        if let Some((b, used)) = self.map.remove(path) {
            self.order.remove(&used);
            self.bytes -= cost(path, &b);
        }
    }
}

/// A tile read for a tree size: the object it was read from and its bytes.
struct TileBytes {
    /// The object read: the tile's own path, or its full tile's when the partial is gone.
    path: String,
    bytes: Arc<[u8]>,
    /// Hashes or entries the object holds (256 for a full tile).
    object_width: u64,
    /// Hashes or entries of it the tree has.
    width: u64,
}

/// A hash tile read for a tree size: the hashes of it the tree has.
struct HashTile {
    path: String,
    hashes: Vec<Hash>,
}

impl HashTile {
    fn parse(t: TileBytes) -> Result<HashTile, ReadError> {
        let want = usize::try_from(t.object_width).unwrap_or(usize::MAX) * Hash::LEN;
        if t.bytes.len() != want {
            return Err(ReadError::Tampered(format!(
                "{} has {} bytes, a hash tile of {} hashes has {want}",
                t.path,
                t.bytes.len(),
                t.object_width
            )));
        }
        let hashes = t
            .bytes
            .chunks_exact(Hash::LEN)
            .take(usize::try_from(t.width).unwrap_or(usize::MAX))
            .filter_map(Hash::from_slice)
            .collect();
        Ok(HashTile {
            path: t.path,
            hashes,
        })
    }
}

/// Node hashes already read, as a [`NodeSource`] for the proof functions.
struct Read(HashMap<(u8, u64), Hash>);

impl NodeSource for Read {
    fn nodes(&self, addrs: &[(u8, u64)]) -> Result<Vec<Hash>, StorageError> {
        addrs
            .iter()
            .map(|a| {
                self.0
                    .get(a)
                    .copied()
                    .ok_or_else(|| StorageError::Missing(format!("node {}/{} not read", a.0, a.1)))
            })
            .collect()
    }
}

/// Reads tiles, node hashes, proofs and entries from a bucket through a cache bounded in
/// bytes.
pub struct TileReader {
    bucket: Bucket,
    cache: Mutex<Lru>,
    /// The largest tree size known published in the bucket ([`TileReader::published`]): its
    /// partial tiles hold the hashes of every smaller tree whose own partial tiles were never
    /// written (sizes between two checkpoints).
    latest: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for TileReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TileReader")
            .field("bucket", &self.bucket.url())
            .field("cache", &self.stats())
            .finish()
    }
}

impl TileReader {
    /// A reader of `bucket` caching at most `cache_bytes` bytes of objects (with their paths);
    /// an object larger than that is read every time.
    pub fn new(bucket: Bucket, cache_bytes: usize) -> TileReader {
        TileReader {
            bucket,
            cache: Mutex::new(Lru {
                capacity: cache_bytes,
                bytes: 0,
                tick: 0,
                map: HashMap::new(),
                order: BTreeMap::new(),
                hits: 0,
                misses: 0,
            }),
            latest: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Tells the reader that the bucket holds the tiles of a tree of `size` leaves (a
    /// published checkpoint's): reads of smaller trees fall back on them.
    pub fn published(&self, size: u64) {
        self.latest
            .fetch_max(size, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the cache has done and holds.
    pub fn stats(&self) -> CacheStats {
        let c = self.lock();
        CacheStats {
            hits: c.hits,
            misses: c.misses,
            bytes: c.bytes,
            objects: c.map.len(),
            capacity: c.capacity,
        }
    }

    /// The object at `path`, from the cache or the bucket (then cached).
    async fn fetch(&self, path: &str) -> Result<Option<Arc<[u8]>>, ReadError> {
        if let Some(b) = self.lock().get(path) {
            return Ok(Some(b));
        }
        let Some(bytes) = self.bucket.get(path).await? else {
            return Ok(None);
        };
        let bytes: Arc<[u8]> = bytes.into();
        self.lock().insert(path, bytes.clone());
        Ok(Some(bytes))
    }

    /// Drops `paths` from the cache: objects that did not check out are read again next time
    /// (the bucket may have been repaired).
    fn forget<'a>(&self, paths: impl IntoIterator<Item = &'a str>) {
        let mut c = self.lock();
        for p in paths {
            c.remove(p);
        }
    }

    /// The tile at `path` (`tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`, as the bucket
    /// names it), for serving `/tile/…`: its bytes, or `None` if the bucket has none. Not
    /// checked (a tile client verifies what it reads); [`ReadError::OutOfRange`] if `path` is
    /// not a tile path in its one canonical form.
    pub async fn tile(&self, path: &str) -> Result<Option<Arc<[u8]>>, ReadError> {
        let canonical = path
            .strip_prefix("tile/")
            .and_then(|rest| parse_tile_path(rest).ok())
            .map(|t| tile_path(t.level, t.index, t.partial.map_or(TILE_WIDTH, u64::from)));
        if canonical.as_deref() != Some(path) {
            return Err(ReadError::OutOfRange("not a tile path"));
        }
        self.fetch(path).await
    }

    /// Tile `index` at `level` (`None`: entry bundle) as a tree has `width` of it, from the
    /// first object there of those that start with it.
    async fn tile_at(
        &self,
        level: Option<u8>,
        index: u64,
        width: u64,
    ) -> Result<TileBytes, ReadError> {
        let path = tile_path(level, index, width);
        // The object of that width; else the full tile (partial tiles are removed once it
        // exists); else, for a tree size no checkpoint was published at, the published tree's
        // partial tile, which starts with this one.
        let mut widths = vec![width];
        if width < TILE_WIDTH {
            widths.push(TILE_WIDTH);
            let latest = self.latest.load(std::sync::atomic::Ordering::Relaxed);
            let shift = level.map_or(0, |l| 8 * u32::from(l));
            let wider = (latest.checked_shr(shift).unwrap_or(0))
                .saturating_sub(index.saturating_mul(TILE_WIDTH))
                .min(TILE_WIDTH);
            if wider > width && wider < TILE_WIDTH {
                widths.push(wider);
            }
        }
        for object_width in widths {
            let at = tile_path(level, index, object_width);
            if let Some(bytes) = self.fetch(&at).await? {
                return Ok(TileBytes {
                    path: at,
                    bytes,
                    object_width,
                    width,
                });
            }
        }
        if width < TILE_WIDTH {
            let full = tile_path(level, index, TILE_WIDTH);
            return Err(ReadError::Missing(format!("{path} (nor {full})")));
        }
        Err(ReadError::Missing(path))
    }

    /// Hash tile `index` at `level` as a tree has `width` of it, its length checked (a tile
    /// of the wrong length is dropped from the cache).
    async fn hash_tile(&self, level: u8, index: u64, width: u64) -> Result<HashTile, ReadError> {
        let t = self.tile_at(Some(level), index, width).await?;
        let path = t.path.clone();
        HashTile::parse(t).inspect_err(|_| self.forget([path.as_str()]))
    }

    /// The hashes at `addrs` in the tree of `tree_size` leaves, and the hash tiles they were
    /// computed from. Every tile is fetched at once.
    async fn nodes_from_tiles(
        &self,
        addrs: &[(u8, u64)],
        tree_size: u64,
    ) -> Result<(Vec<Hash>, Vec<String>), ReadError> {
        let runs: Vec<TileRun> = addrs
            .iter()
            .map(|&(level, index)| {
                subtree_in_tiles(Subtree { level, index }, tree_size).ok_or(ReadError::OutOfRange(
                    "a node is not a complete subtree of the tree",
                ))
            })
            .collect::<Result<_, _>>()?;
        let mut tiles: Vec<(u8, u64, u64)> =
            runs.iter().map(|r| (r.level, r.index, r.width)).collect();
        tiles.sort_unstable();
        tiles.dedup();
        let read = try_join_all(
            tiles
                .iter()
                .map(|&(level, index, width)| self.hash_tile(level, index, width)),
        )
        .await?;
        let by_tile: HashMap<(u8, u64), &HashTile> = tiles
            .iter()
            .map(|&(l, i, _)| (l, i))
            .zip(read.iter())
            .collect();
        let mut out = Vec::with_capacity(runs.len());
        for r in &runs {
            let t = by_tile
                .get(&(r.level, r.index))
                .ok_or(ReadError::OutOfRange("a node's tile was not read"))?;
            let run = t
                .hashes
                .get(r.lo..r.hi)
                .ok_or_else(|| ReadError::Tampered(format!("{} is too short", t.path)))?;
            out.push(root_from_leaf_hashes(run));
        }
        Ok((out, read.into_iter().map(|t| t.path).collect()))
    }

    /// The node hashes at `addrs` (`(level, index)`, as [`NodeSource::nodes`]) in the tree of
    /// `tree_size` leaves, read from the hash tiles: a node at level `8L + k` is the RFC 6962
    /// hash of `2^k` consecutive hashes of a level-`L` tile. Not checked against any root:
    /// the proofs below are. [`ReadError::OutOfRange`] for an address that is not a complete
    /// subtree of the tree.
    pub async fn nodes(&self, addrs: &[(u8, u64)], tree_size: u64) -> Result<Vec<Hash>, ReadError> {
        Ok(self.nodes_from_tiles(addrs, tree_size).await?.0)
    }

    /// The leaf hash of `index` and its inclusion proof in the tree of `tree_size` leaves whose
    /// trusted root is `root`. The proof is verified against `root` before it is returned:
    /// one that does not lead there is [`ReadError::Tampered`] naming the tiles it was read
    /// from (which are dropped from the cache).
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
        root: &Hash,
    ) -> Result<(Hash, Vec<Hash>), ReadError> {
        let addrs = inclusion_proof_nodes(index, tree_size)?;
        let (hashes, paths) = self.nodes_from_tiles(&addrs, tree_size).await?;
        let read = Read(addrs.into_iter().zip(hashes).collect());
        let (leaf, proof) = leaf_and_inclusion_proof_from(&read, index, tree_size)?;
        if let Err(e) = verify_inclusion(&leaf, index, tree_size, &proof, root) {
            self.forget(paths.iter().map(String::as_str));
            return Err(ReadError::Tampered(format!(
                "the inclusion proof of {index} in the tree of {tree_size} does not lead to \
                 its trusted root ({e}); it was read from {} in {}",
                paths.join(", "),
                self.bucket.url()
            )));
        }
        Ok((leaf, proof))
    }

    /// The consistency proof from the tree of `first` leaves to the tree of `second`, whose
    /// trusted roots are `first_root` and `second_root`. Verified against both before it is
    /// returned, as [`TileReader::inclusion_proof`].
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
        first_root: &Hash,
        second_root: &Hash,
    ) -> Result<Vec<Hash>, ReadError> {
        let addrs = consistency_proof_nodes(first, second)?;
        let (hashes, paths) = self.nodes_from_tiles(&addrs, second).await?;
        let read = Read(addrs.into_iter().zip(hashes).collect());
        let proof = consistency_proof_from(&read, first, second)?;
        if let Err(e) = verify_consistency(first, second, first_root, second_root, &proof) {
            self.forget(paths.iter().map(String::as_str));
            let from = if paths.is_empty() {
                "it needs no tiles: the roots are not those of one tree".to_owned()
            } else {
                format!(
                    "it was read from {} in {}",
                    paths.join(", "),
                    self.bucket.url()
                )
            };
            return Err(ReadError::Tampered(format!(
                "the consistency proof from {first} to {second} does not match the trusted \
                 roots ({e}); {from}"
            )));
        }
        Ok(proof)
    }

    /// Entry `index` of the tree of `tree_size` leaves, from its entry bundle (the full one,
    /// or the partial one of the tree), checked against its leaf hash in the level-0 tile:
    /// `None` if the tree has no entry `index`. A bundle that does not parse, or an entry
    /// whose hash is not its leaf hash, is [`ReadError::Tampered`] naming both objects.
    pub async fn entry(&self, index: u64, tree_size: u64) -> Result<Option<Vec<u8>>, ReadError> {
        if index >= tree_size {
            return Ok(None);
        }
        let n = index / TILE_WIDTH;
        let width = (tree_size - n * TILE_WIDTH).min(TILE_WIDTH);
        let at = usize::try_from(index % TILE_WIDTH).unwrap_or(usize::MAX);
        let (bundle, tile) =
            try_join(self.tile_at(None, n, width), self.hash_tile(0, n, width)).await?;
        let entries = split_entry_bundle(&bundle.bytes).map_err(|e| {
            self.forget([bundle.path.as_str()]);
            ReadError::Tampered(format!("{}: {e}", bundle.path))
        })?;
        if entries.len() as u64 != bundle.object_width {
            self.forget([bundle.path.as_str()]);
            return Err(ReadError::Tampered(format!(
                "{} holds {} entries, not {}",
                bundle.path,
                entries.len(),
                bundle.object_width
            )));
        }
        let (Some(entry), Some(leaf)) = (entries.get(at), tile.hashes.get(at)) else {
            return Err(ReadError::OutOfRange("index must be below tree_size"));
        };
        if leaf_hash(entry) != *leaf {
            self.forget([bundle.path.as_str(), tile.path.as_str()]);
            return Err(ReadError::Tampered(format!(
                "entry {index} in {} does not hash to its leaf hash in {}",
                bundle.path, tile.path
            )));
        }
        Ok(Some(entry.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cache_keeps_the_recently_used_within_its_bytes() {
        let mut c = Lru {
            capacity: 30,
            bytes: 0,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
            hits: 0,
            misses: 0,
        };
        let obj = |n: usize| -> Arc<[u8]> { vec![0u8; n].into() };
        c.insert("a", obj(9)); // 10
        c.insert("b", obj(9)); // 20
        assert!(c.get("a").is_some()); // b is now the oldest
        c.insert("c", obj(9)); // 30
        assert_eq!(c.bytes, 30);
        c.insert("d", obj(9)); // b goes
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some() && c.get("c").is_some() && c.get("d").is_some());
        assert_eq!(c.bytes, 30);
        // Larger than the whole cache: not kept, nothing dropped for it.
        c.insert("e", obj(30));
        assert!(c.get("e").is_none());
        assert_eq!(c.map.len(), 3);
        c.remove("a");
        assert_eq!((c.bytes, c.map.len(), c.order.len()), (20, 2, 2));
        assert_eq!((c.hits, c.misses), (4, 2));
    }
}
