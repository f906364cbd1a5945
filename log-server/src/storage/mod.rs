//! The one RocksDB store: column families, key layouts, and the reads every other module uses.
//!
//! The log's own families are written in exactly two places: the sequencer (one `WriteBatch`
//! per batch, `sync=true`) and first-start initialisation (plus the submitter table, by the
//! admin, and the witness client's records: `witness/<vkey>` keys of `meta` that nothing else
//! reads or writes). Readers never take a lock the sequencer holds: they read committed state straight
//! from RocksDB, bounded by the latest published tree size.
//!
//! Other crates keep their records in a family of their own, opened by name, through [`kv`]: a
//! group-commit key-value area with its own writer thread. The log knows no such family.

pub mod kv;
pub mod layout;
mod node_cache;

pub use layout::{tile_key, TILE};

use node_cache::{NodeCache, NODE_CACHE_SLOTS};

use std::path::Path;
use std::sync::Arc;

use countersign_verifier::Hash;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB,
};

/// Column family: the entries of the incomplete entry bundle, by leaf index (`u64` big-endian);
/// every older entry is in its full bundle ([`CF_BUNDLES`]). See [`layout`].
pub const CF_ENTRIES: &str = "entries";
/// Column family: full hash tiles, key [`tile_key`], the bytes `/tile/<L>/<N>` serves.
pub const CF_TILES: &str = "tiles";
/// Column family: full entry bundles, key the bundle index (`u64` BE), the bytes
/// `/tile/entries/<N>` serves.
pub const CF_BUNDLES: &str = "bundles";
/// Column family: leaf hash -> leaf index (exact dedup).
pub const CF_LEAF_INDEX: &str = "leaf_index";
/// Column family: assertion key -> leaf index (replay detection).
pub const CF_ASSERTIONS: &str = "assertions";
/// Column family: signed checkpoints by tree size (`u64` BE).
pub const CF_CHECKPOINTS: &str = "checkpoints";
/// Column family: log metadata (origin, tree state, admin token hash, heartbeat).
pub const CF_META: &str = "meta";
/// Column family: submitter token hash -> submitter name.
pub const CF_SUBMITTERS: &str = "submitters";
/// Column family: credential id -> enrolment index (8 bytes) || last sign count (4 bytes).
pub const CF_CREDENTIALS: &str = "credentials";
/// Column family: enrolment index (`u64` BE) -> leaf index of its first revocation (`u64` BE).
/// Written in the batch of the revocation entry itself, so it never disagrees with the tree.
pub const CF_REVOCATIONS: &str = "revocations";

/// The log's own column families. Other crates add theirs by name ([`Store::open_with`]).
const LOG_CFS: [&str; 10] = [
    CF_ENTRIES,
    CF_TILES,
    CF_BUNDLES,
    CF_LEAF_INDEX,
    CF_ASSERTIONS,
    CF_CHECKPOINTS,
    CF_META,
    CF_SUBMITTERS,
    CF_CREDENTIALS,
    CF_REVOCATIONS,
];

/// Metadata key: the log origin (UTF-8).
pub const META_ORIGIN: &[u8] = b"origin";
/// Metadata key: the tree state, `size (u64 BE) || peaks (32 bytes each, largest first)`. The
/// same batch writes the tree's edge ([`layout::META_EDGE`]).
pub const META_TREE: &[u8] = b"tree";
/// Metadata key: SHA-256 of the admin token.
pub const META_ADMIN_HASH: &[u8] = b"admin_token_sha256";
/// Metadata key: present once [`CF_REVOCATIONS`] indexes every revocation of the log (a log
/// written before the index existed gets it built at its next start).
pub const META_REVOCATIONS_INDEXED: &[u8] = b"revocations_indexed";
/// Metadata key: milliseconds since the epoch at which the latest checkpoint was signed.
pub const META_SIGNED_AT: &[u8] = b"checkpoint_signed_at_ms";

/// A storage failure. The text is for logs and operators, never for HTTP clients.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    /// RocksDB failed: I/O, damage it detected, or a database another process holds.
    Db(String),
    /// A stored value is not what this version writes (wrong length, not UTF-8, a record that
    /// does not parse, a checkpoint that does not verify): the store is damaged.
    Corrupt(String),
    /// A value that must be there is not (an entry or node below the published size).
    Missing(String),
    /// A thread or task of the store could not start, or has stopped.
    Stopped(String),
    /// The database of the shared driver cannot be reached (or the connection broke): nothing
    /// was changed; retrying later may succeed.
    Unavailable(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Db(s) => write!(f, "storage: {s}"),
            StorageError::Corrupt(s) => write!(f, "storage is damaged: {s}"),
            StorageError::Missing(s) => write!(f, "storage: {s}"),
            StorageError::Stopped(s) => write!(f, "storage: {s}"),
            StorageError::Unavailable(s) => write!(f, "database unavailable: {s}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<rocksdb::Error> for StorageError {
    fn from(e: rocksdb::Error) -> Self {
        StorageError::Db(e.into_string())
    }
}

/// Environment variable that turns every synced write into an unsynced one. **Test-only**: a
/// log started with `COUNTERSIGN_UNSAFE_NO_SYNC=1` acknowledges entries that a power cut loses.
/// It exists so that the power-cut test can show it detects exactly that loss; never set it
/// on a log anyone relies on. The server warns at start when it is set.
pub const UNSAFE_NO_SYNC_ENV: &str = "COUNTERSIGN_UNSAFE_NO_SYNC";

/// True when [`UNSAFE_NO_SYNC_ENV`] is `1`: writes are not fsynced (read once per process).
pub fn unsafe_no_sync() -> bool {
    static NO_SYNC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NO_SYNC.get_or_init(|| std::env::var_os(UNSAFE_NO_SYNC_ENV).is_some_and(|v| v == "1"))
}

/// The RocksDB store.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    /// Complete-subtree hashes never change once written, so cached ones never go stale. Only
    /// committed nodes are ever read (readers stay below the published size), and the cache
    /// lives only as long as the process, so nodes of a batch lost in a crash are never in it.
    nodes: Arc<NodeCache>,
    /// Every column family the database was opened with.
    cf_names: Arc<Vec<String>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` with the log's column families and
    /// every other family the database already has.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with(path, &[])
    }

    /// Opens (creating if needed) the database at `path` with the log's column families, the
    /// families named in `extra` (created if missing: the key-value areas of other crates, see
    /// [`kv`]), and every other family the database already has (RocksDB refuses to open a
    /// database without all of them).
    pub fn open_with(path: &Path, extra: &[&str]) -> Result<Self, StorageError> {
        let mut names: Vec<String> = LOG_CFS.iter().map(|n| (*n).to_owned()).collect();
        let existing = DB::list_cf(&Options::default(), path).unwrap_or_default();
        for n in extra.iter().map(|n| (*n).to_owned()).chain(existing) {
            if n != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !names.contains(&n) {
                names.push(n);
            }
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Every write is already fsynced by the WAL (sync=true); the default WAL recovery mode
        // (point in time) keeps everything that was acknowledged.
        opts.set_max_background_jobs(2);
        // All memtables together stay under 512 MiB (the per-family sizes are set below).
        opts.set_db_write_buffer_size(512 << 20);
        // The two index column families get a hash-bucketed memtable (below), which RocksDB
        // only supports without concurrent memtable writes. Writes are serialised by the
        // sequencer anyway, and RocksDB still groups concurrent synced writers into one fsync.
        opts.set_allow_concurrent_memtable_write(false);
        // Proofs and tiles read node hashes all over the tree: 256 MiB holds every node hash of
        // a tree of 2,000,000 leaves (64 MiB sent most proof reads to the file system).
        let cache = rocksdb::Cache::new_lru_cache(256 << 20);
        let cfs = names.iter().map(|name| {
            let mut o = Options::default();
            // Up to four full memtables may wait for their flush before writes stall (with
            // RocksDB's default of two, a burst of writes stalled for seconds during a flush).
            o.set_write_buffer_size(64 << 20);
            o.set_max_write_buffer_number(5);
            if name == CF_LEAF_INDEX || name == CF_ASSERTIONS {
                // Keys are SHA-256 outputs, inserted in random order and only ever read by
                // exact key (nothing iterates these families): a hash table of short lists,
                // bucketed by the first 8 bytes, inserts them faster than one big skip list, and
                // 2^18 buckets keep a few keys each in a full 64 MiB memtable. Figures:
                // `benches/README.md`, "Why the store is tuned as it is".
                o.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(8));
                o.set_memtable_factory(rocksdb::MemtableFactory::HashLinkList {
                    bucket_count: 1 << 18,
                });
            }
            let mut t = BlockBasedOptions::default();
            t.set_block_cache(&cache);
            // The sequencer looks up every new leaf hash, assertion and credential, and nearly
            // all of those lookups miss: bloom filters keep a miss from reading every file.
            t.set_bloom_filter(10.0, false);
            t.set_cache_index_and_filter_blocks(true);
            t.set_pin_l0_filter_and_index_blocks_in_cache(true);
            o.set_block_based_table_factory(&t);
            ColumnFamilyDescriptor::new(name, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            // RocksDB's own words ("While lock file ... Resource temporarily unavailable") do not
            // say what to do; the usual cause is a second server on the same data directory.
            if e.as_ref().contains("LOCK") {
                StorageError::Db(format!(
                    "{} is in use by another countersign process (stop it, or use another \
                     --data-dir): {e}",
                    path.display()
                ))
            } else {
                StorageError::from(e)
            }
        })?;
        let mut store = Store {
            db: Arc::new(db),
            nodes: Arc::new(NodeCache::new(NODE_CACHE_SLOTS)),
            cf_names: Arc::new(names),
        };
        layout::migrate(&mut store)?;
        Ok(store)
    }

    /// The underlying database (for checkpoints/backups).
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// A column family handle.
    pub fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Missing(format!("missing column family {name}")))
    }

    /// Reads one value.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// Writes a batch durably (fsync of the WAL before returning), unless the test-only
    /// [`UNSAFE_NO_SYNC_ENV`] is set.
    pub fn write_sync(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(!unsafe_no_sync());
        Ok(self.db.write_opt(batch, &wo)?)
    }

    /// Writes every column family's memtables to table files, so that the next start need not
    /// replay up to 512 MiB of write-ahead log. Durability does not depend on it: every
    /// acknowledged write is already in the synced log.
    pub fn flush_memtables(&self) -> Result<(), StorageError> {
        let cfs = self
            .cf_names
            .iter()
            .map(|name| self.cf(name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?)
    }

    /// Entries waiting in memtables (not yet in table files), over every column family.
    pub fn memtable_entries(&self) -> Result<u64, StorageError> {
        let mut n = 0;
        for name in self.cf_names.iter() {
            n += self
                .db
                .property_int_value_cf(self.cf(name)?, "rocksdb.num-entries-active-mem-table")?
                .unwrap_or(0);
            n += self
                .db
                .property_int_value_cf(self.cf(name)?, "rocksdb.num-entries-imm-mem-tables")?
                .unwrap_or(0);
        }
        Ok(n)
    }

    /// The entry at `index`: from the incomplete bundle's keys, else from its full bundle.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(e) = self.get(CF_ENTRIES, &index.to_be_bytes())? {
            return Ok(Some(e));
        }
        // Not among the latest: in its full bundle, if the tree has it (a batch that completes a
        // bundle writes it and deletes the entry keys at once, so one of the two reads finds it).
        let b = index / TILE;
        match self
            .db
            .get_pinned_cf(self.cf(CF_BUNDLES)?, b.to_be_bytes())?
        {
            Some(bytes) => Ok(Some(
                layout::split_full_bundle(&bytes, b)?[(index % TILE) as usize].to_vec(),
            )),
            None => Ok(None),
        }
    }

    /// The entries `[start, end)`, in order; fails if one is missing.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        let cf = self.cf(CF_BUNDLES)?;
        let mut at = start;
        while at < end {
            let b = at / TILE;
            let stop = end.min((b + 1) * TILE);
            let from_bundle = |out: &mut Vec<Vec<u8>>| -> Result<bool, StorageError> {
                let Some(bytes) = self.db.get_pinned_cf(cf, b.to_be_bytes())? else {
                    return Ok(false);
                };
                let all = layout::split_full_bundle(&bytes, b)?;
                out.extend(
                    all[(at - b * TILE) as usize..(stop - b * TILE) as usize]
                        .iter()
                        .map(|e| e.to_vec()),
                );
                Ok(true)
            };
            if !from_bundle(&mut out)? {
                match self.tail_entries(at, stop) {
                    Ok(tail) => out.extend(tail),
                    // Completed (and the keys deleted) between the two reads.
                    Err(StorageError::Missing(_)) if from_bundle(&mut out)? => {}
                    Err(e) => return Err(e),
                }
            }
            at = stop;
        }
        Ok(out)
    }

    /// The entries `[start, end)` from the entry keys (those of the incomplete bundle, or every
    /// entry in a store being migrated); fails if one is missing.
    pub(crate) fn tail_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        let want = end.saturating_sub(start);
        let mut out = Vec::with_capacity(want as usize);
        self.scan_run(
            CF_ENTRIES,
            &start.to_be_bytes(),
            &end.to_be_bytes(),
            |_, v| out.push(v.to_vec()),
        )?;
        if out.len() as u64 != want {
            return Err(StorageError::Missing(format!(
                "entries {start}..{end}: {} of them stored",
                out.len()
            )));
        }
        Ok(out)
    }

    /// The tree's edge as stored (the empty tree's in a store not yet initialised).
    pub fn edge(&self) -> Result<crate::shared::integrate::Edge, StorageError> {
        match self.get(CF_META, layout::META_EDGE)? {
            Some(b) => crate::shared::integrate::Edge::decode(&b)
                .map_err(|e| StorageError::Corrupt(format!("stored tree edge: {e}"))),
            None => Ok(crate::shared::integrate::Edge::empty()),
        }
    }

    /// The hash tile (`level`, `index`) of width `width` as `/tile/<level>/<index>[.p/<width>]`
    /// serves it: the full tile's first `width` hashes, or the incomplete tile's.
    pub fn hash_tile(&self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, StorageError> {
        let hashes = layout::hash_tile(self, &mut None, level, index)?
            .filter(|h| h.len() as u64 >= width)
            .ok_or_else(|| {
                StorageError::Missing(format!("tile {level}/{index} of width {width}"))
            })?;
        let mut out = Vec::with_capacity(width as usize * Hash::LEN);
        for h in &hashes[..width as usize] {
            out.extend_from_slice(h.as_bytes());
        }
        Ok(out)
    }

    /// The entry bundle `index` of width `width` as `/tile/entries/<index>[.p/<width>]` serves
    /// it: the full bundle or its prefix, or the incomplete bundle's entries encoded.
    pub fn entry_bundle(&self, index: u64, width: u64) -> Result<Vec<u8>, StorageError> {
        let cf = self.cf(CF_BUNDLES)?;
        let full = || -> Result<Option<Vec<u8>>, StorageError> {
            let Some(bytes) = self.db.get_pinned_cf(cf, index.to_be_bytes())? else {
                return Ok(None);
            };
            let all = layout::split_full_bundle(&bytes, index)?;
            let prefix = all.get(..width as usize).ok_or_else(|| {
                StorageError::Missing(format!("entry bundle {index} of width {width}"))
            })?;
            let len = prefix.iter().map(|e| e.len() + 2).sum();
            Ok(Some(bytes[..len].to_vec()))
        };
        if let Some(b) = full()? {
            return Ok(b);
        }
        let entries = match self.tail_entries(index * TILE, index * TILE + width) {
            Ok(e) => e,
            // Completed (and the keys deleted) between the two reads.
            Err(StorageError::Missing(m)) => return full()?.ok_or(StorageError::Missing(m)),
            Err(e) => return Err(e),
        };
        layout::encode_bundle(index * TILE, &entries)
    }

    /// Calls `f` for every key in `[from, to)` of `cf`, in key order: a run of consecutive keys
    /// (a tile's hashes, an entry bundle) is one seek and sequential reads, instead of one
    /// lookup per key.
    fn scan_run(
        &self,
        cf: &str,
        from: &[u8],
        to: &[u8],
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), StorageError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(to.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, ro);
        it.seek(from);
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                f(k, v);
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// Several node hashes at once, in order: from the cache, and each cache miss from the tile
    /// holding it, whose every node goes into the cache (so the next proof through that tile
    /// finds them there).
    pub fn nodes(&self, addrs: &[(u8, u64)]) -> Result<Vec<Hash>, StorageError> {
        let mut out = vec![Hash([0; 32]); addrs.len()];
        let mut edge = None;
        for (at, &(level, index)) in addrs.iter().enumerate() {
            if let Some(h) = self.nodes.get(level, index) {
                out[at] = h;
                continue;
            }
            let (tile_level, above) = (level / 8, u32::from(level % 8));
            let tile_index = (index << above) / TILE;
            let hashes = layout::hash_tile(self, &mut edge, tile_level, tile_index)?
                .ok_or_else(|| StorageError::Missing(format!("node {level}/{index}")))?;
            let mut found = None;
            layout::expand_tile(tile_level, tile_index, &hashes, |l, i, h| {
                self.nodes.insert(l, i, h);
                if (l, i) == (level, index) {
                    found = Some(h);
                }
            });
            out[at] =
                found.ok_or_else(|| StorageError::Missing(format!("node {level}/{index}")))?;
        }
        Ok(out)
    }

    /// Loads the node cache from the tiles of the tree of `tree_size` committed leaves, top tile
    /// level first and newest tile first, each tile's nodes computed from its hashes, while the
    /// cache has room; returns the nodes loaded. Run at start, so proofs after a restart do not
    /// each read and expand a tile until the cache has filled by chance.
    pub fn warm_node_cache(&self, tree_size: u64) -> Result<u64, StorageError> {
        let mut edge = None;
        let mut inner = self.nodes.slots.len() as u64;
        let mut leaves = self.nodes.leaves.len() as u64;
        let mut loaded = 0u64;
        let levels: Vec<u8> = (0..8u8)
            .take_while(|l| tree_size >> (8 * u32::from(*l)) > 0)
            .collect();
        'levels: for level in levels.into_iter().rev() {
            let count = tree_size >> (8 * u32::from(level));
            for index in (0..count.div_ceil(TILE)).rev() {
                let width = (count - index * TILE).min(TILE);
                let (need_inner, need_leaves) = match level {
                    0 => (width, width),
                    _ => (2 * width, 0),
                };
                if need_inner > inner || need_leaves > leaves {
                    break 'levels;
                }
                let hashes = layout::hash_tile(self, &mut edge, level, index)?
                    .filter(|h| h.len() as u64 >= width)
                    .ok_or_else(|| StorageError::Missing(format!("tile {level}/{index}")))?;
                layout::expand_tile(level, index, &hashes[..width as usize], |l, i, h| {
                    // A full tile's root is the next level's hash: loaded with that tile.
                    if l < 8 * (level + 1) {
                        self.nodes.insert(l, i, h);
                        loaded += 1;
                    }
                });
                inner -= need_inner;
                leaves -= need_leaves;
            }
        }
        Ok(loaded)
    }

    /// Puts durable node hashes into the read cache.
    pub fn cache_nodes(&self, nodes: &[(u8, u64, Hash)]) {
        for &(level, index, h) in nodes {
            self.nodes.insert(level, index, h);
        }
    }

    /// The index of the leaf with this hash, if logged.
    pub fn leaf_index(&self, leaf: &Hash) -> Result<Option<u64>, StorageError> {
        self.get(CF_LEAF_INDEX, leaf.as_bytes())?
            .map(|v| decode_u64(&v))
            .transpose()
    }

    /// [`Store::leaf_index`] for many keys of one column family at once (`CF_LEAF_INDEX` or
    /// `CF_ASSERTIONS`): one batched lookup is much cheaper than one `get` per key.
    pub fn indexes(&self, cf: &str, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, StorageError> {
        let cf = self.cf(cf)?;
        self.db
            .batched_multi_get_cf(cf, keys, false)
            .into_iter()
            .map(|r| r?.map(|v| decode_u64(&v)).transpose())
            .collect()
    }

    /// The index of the entry that logged this assertion key, if any.
    pub fn assertion_index(&self, key: &[u8; 32]) -> Result<Option<u64>, StorageError> {
        self.get(CF_ASSERTIONS, key)?
            .map(|v| decode_u64(&v))
            .transpose()
    }

    /// The enrolment index and last sign count of a credential.
    pub fn credential(&self, credential_id: &[u8]) -> Result<Option<(u64, u32)>, StorageError> {
        self.get(CF_CREDENTIALS, credential_id)?
            .map(|v| decode_credential(&v))
            .transpose()
    }

    /// The leaf index of the revocation of the enrolment at `enrolment_index`, if one is
    /// stored (committed; callers bound it by the published size).
    pub fn revocation(&self, enrolment_index: u64) -> Result<Option<u64>, StorageError> {
        self.get(CF_REVOCATIONS, &enrolment_index.to_be_bytes())?
            .map(|v| decode_u64(&v))
            .transpose()
    }

    /// The signed checkpoint note for `size`, if one was signed at that size.
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>, StorageError> {
        self.get(CF_CHECKPOINTS, &size.to_be_bytes())?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| StorageError::Corrupt("checkpoint is not UTF-8".into()))
            })
            .transpose()
    }

    /// Every submitter token: its hash and the submitter's name, in hash order.
    pub fn submitters(&self) -> Result<Vec<([u8; 32], String)>, StorageError> {
        let mut out = Vec::new();
        let mut bad = false;
        // Token hashes are 32 bytes, so [0; 32] ..= [0xff; 32] plus one covers the family.
        self.scan_run(CF_SUBMITTERS, &[0u8; 32], &[0xffu8; 33], |k, v| {
            match (<[u8; 32]>::try_from(k), String::from_utf8(v.to_vec())) {
                (Ok(h), Ok(name)) => out.push((h, name)),
                _ => bad = true,
            }
        })?;
        if bad {
            return Err(StorageError::Corrupt(
                "a submitter record is malformed".into(),
            ));
        }
        Ok(out)
    }

    /// The submitter name registered for a token hash.
    pub fn submitter(&self, token_hash: &[u8; 32]) -> Result<Option<String>, StorageError> {
        self.get(CF_SUBMITTERS, token_hash)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| StorageError::Corrupt("submitter name is not UTF-8".into()))
            })
            .transpose()
    }
}

/// Decodes a big-endian `u64` value.
pub fn decode_u64(v: &[u8]) -> Result<u64, StorageError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| StorageError::Corrupt("index value is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(b))
}

/// Encodes a credential record.
pub fn encode_credential(enrolment_index: u64, sign_count: u32) -> [u8; 12] {
    let mut v = [0u8; 12];
    v[..8].copy_from_slice(&enrolment_index.to_be_bytes());
    v[8..].copy_from_slice(&sign_count.to_be_bytes());
    v
}

/// Decodes a credential record.
pub fn decode_credential(v: &[u8]) -> Result<(u64, u32), StorageError> {
    if v.len() != 12 {
        return Err(StorageError::Corrupt(
            "credential record is not 12 bytes".into(),
        ));
    }
    let idx = decode_u64(&v[..8])?;
    let mut c = [0u8; 4];
    c.copy_from_slice(&v[8..]);
    Ok((idx, u32::from_be_bytes(c)))
}

/// Encodes the tree state.
pub fn encode_tree(size: u64, peaks: &[Hash]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 32 * peaks.len());
    v.extend_from_slice(&size.to_be_bytes());
    for p in peaks {
        v.extend_from_slice(p.as_bytes());
    }
    v
}

/// Decodes the tree state.
pub fn decode_tree(v: &[u8]) -> Result<(u64, Vec<Hash>), StorageError> {
    if v.len() < 8 || (v.len() - 8) % 32 != 0 {
        return Err(StorageError::Corrupt("tree state has a bad length".into()));
    }
    let size = decode_u64(&v[..8])?;
    let peaks = v[8..]
        .chunks_exact(32)
        .filter_map(Hash::from_slice)
        .collect();
    Ok((size, peaks))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flushing_empties_the_memtables_and_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut wb = WriteBatch::default();
        for i in 0u64..100 {
            wb.put_cf(store.cf(CF_ENTRIES).unwrap(), i.to_be_bytes(), [7u8; 64]);
            wb.put_cf(
                store.cf(CF_LEAF_INDEX).unwrap(),
                [i as u8; 32],
                i.to_be_bytes(),
            );
        }
        let before = store.memtable_entries().unwrap();
        store.write_sync(wb).unwrap();
        assert_eq!(store.memtable_entries().unwrap(), before + 200);
        store.flush_memtables().unwrap();
        assert_eq!(store.memtable_entries().unwrap(), 0);
        assert_eq!(store.entry(99).unwrap(), Some(vec![7u8; 64]));
        assert_eq!(store.leaf_index(&Hash([5; 32])).unwrap(), Some(5));
    }

    /// A log of `n` distinct entries written by the sequencer (so in tiles and bundles).
    fn log_of(dir: &Path, n: u64) -> (Store, Vec<Vec<u8>>) {
        let store = Store::open(dir).unwrap();
        let signer = Arc::new(crate::signer::LogSigner::new("example.com/log", &[3; 32]).unwrap());
        let seq = crate::sequencer::start(
            store.clone(),
            signer,
            crate::sequencer::SequencerConfig::default(),
            Arc::new(crate::metrics::Metrics::new()),
        )
        .unwrap();
        let entries: Vec<Vec<u8>> = (0..n).map(|i| format!("entry {i}").into_bytes()).collect();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            for chunk in entries.chunks(1000) {
                let waits: Vec<_> = chunk
                    .iter()
                    .map(|e| {
                        seq.append(
                            e.clone(),
                            countersign_verifier::leaf_hash(e),
                            crate::sequencer::AppendKind::Other,
                        )
                    })
                    .collect();
                for w in waits {
                    w.await.unwrap();
                }
            }
            seq.shutdown().await;
        });
        (store, entries)
    }

    #[test]
    fn nodes_entries_and_tiles_come_from_the_stored_tiles() {
        let dir = tempfile::tempdir().unwrap();
        // Full tiles at levels 0 and 1, partial ones at 0, 1 and 2.
        let n = 65_536 + 3 * 256 + 17;
        let (store, entries) = log_of(dir.path(), n);
        let leaves: Vec<Hash> = entries
            .iter()
            .map(|e| countersign_verifier::leaf_hash(e))
            .collect();
        // Every node the proofs may ask for, from a fresh store (empty cache) and again from
        // the cache, against the reference tree.
        let mut want: Vec<(u8, u64, Hash)> = Vec::new();
        let mut stack = countersign_verifier::RootStack::default();
        for l in &leaves {
            stack.push_with(*l, |level, i, h| want.push((level, i, *h)));
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let addrs: Vec<(u8, u64)> = want.iter().map(|(l, i, _)| (*l, *i)).collect();
        let hashes: Vec<Hash> = want.iter().map(|(_, _, h)| *h).collect();
        for chunk in [&addrs[..1], &addrs[..]] {
            assert_eq!(store.nodes(chunk).unwrap(), hashes[..chunk.len()]);
        }
        assert_eq!(store.nodes(&addrs).unwrap(), hashes);
        // A node the tree does not have yet.
        assert!(store.nodes(&[(0, n)]).is_err());
        assert!(store.nodes(&[(17, 1)]).is_err());
        // Entries one by one and in runs crossing bundles, from bundles and from entry keys.
        for i in [0, 1, 255, 256, 65_535, n - 18, n - 17, n - 1] {
            assert_eq!(store.entry(i).unwrap().as_ref(), Some(&entries[i as usize]));
        }
        assert_eq!(store.entry(n).unwrap(), None);
        assert_eq!(store.entries(250, n).unwrap(), entries[250..]);
        assert_eq!(store.entries(3, 9).unwrap(), entries[3..9]);
        assert!(store.entries(n - 1, n + 1).is_err());
        // Full tiles and bundles and every width of the partial ones, against `grow`.
        let grown = crate::shared::integrate::grow(
            &crate::shared::integrate::Edge::empty(),
            Vec::new(),
            entries.iter().zip(&leaves).map(|(e, l)| (e.as_slice(), *l)),
        )
        .unwrap();
        assert_eq!(store.edge().unwrap(), grown.edge);
        for o in grown.tiles.iter().chain(&grown.bundles) {
            let width = if o.full {
                256
            } else {
                o.path.rsplit('/').next().unwrap().parse().unwrap()
            };
            let got = match o.level {
                Some(level) => store.hash_tile(level, o.index, width).unwrap(),
                None => store.entry_bundle(o.index, width).unwrap(),
            };
            assert_eq!(got, o.bytes, "{}", o.path);
            if width > 1 {
                let shorter = match o.level {
                    Some(level) => store.hash_tile(level, o.index, width - 1).unwrap(),
                    None => store.entry_bundle(o.index, width - 1).unwrap(),
                };
                assert!(o.bytes.starts_with(&shorter), "{} prefix", o.path);
            }
        }
        assert!(store.hash_tile(0, n / 256, 18).is_err());
        assert!(store.entry_bundle(n / 256, 18).is_err());
        // Warming from the tiles loads what the reference tree has, all of it at this size.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.warm_node_cache(n).unwrap(), want.len() as u64);
        for (l, i, h) in want.iter().step_by(97) {
            assert_eq!(store.nodes.get(*l, *i), Some(*h), "node {l}/{i}");
        }
        let fresh = Store::open(&dir.path().join("x")).unwrap();
        assert_eq!(fresh.warm_node_cache(0).unwrap(), 0);
    }

    #[test]
    fn records_round_trip() {
        assert_eq!(decode_credential(&encode_credential(7, 9)).unwrap(), (7, 9));
        let peaks = vec![countersign_verifier::leaf_hash(b"a")];
        assert_eq!(decode_tree(&encode_tree(1, &peaks)).unwrap(), (1, peaks));
        assert!(decode_tree(&[0u8; 9]).is_err());
        assert_eq!(tile_key(1, 2), [1, 0, 0, 0, 0, 0, 0, 0, 2]);
    }
}
