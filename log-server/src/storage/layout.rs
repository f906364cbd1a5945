//! The stored form of the tree: whole C2SP tiles and entry bundles (issue 21, point 1).
//!
//! - `tiles`: every full hash tile, key `tile level (1 byte) || tile index (u64 BE)`, value the
//!   256 hashes exactly as `/tile/<L>/<N>` serves them (8,192 bytes).
//! - `bundles`: every full entry bundle, key `bundle index (u64 BE)`, value the bundle exactly as
//!   `/tile/entries/<N>` serves it.
//! - `entries`: the entries of the incomplete bundle only, one key per leaf index (`u64` BE);
//!   the batch that completes a bundle writes it and deletes these keys.
//! - `meta/edge`: the tree's right edge ([`Edge::encode`]), the hashes of every incomplete
//!   tile, written with each batch's tree state.
//!
//! Integration is [`grow`], the step the shared driver uses too; the sequencer persists what it
//! returns. A data directory written before this layout (a key per entry and per node hash, in
//! `entries` and `hashes`) is rewritten into it once, when the store opens: resumable after a
//! crash at any point, checked against the stored tree state before the old node hashes go.

use std::time::{Duration, Instant};

use countersign_verifier::export::split_entry_bundle;
use countersign_verifier::{leaf_hash, node_hash, Hash, RootStack};
use rocksdb::WriteBatch;

use super::{decode_tree, StorageError, Store, CF_BUNDLES, CF_ENTRIES, CF_META, CF_TILES};
use crate::shared::integrate::{grow, Edge, Grown};

/// Hashes per full tile, entries per full bundle.
pub const TILE: u64 = 256;

/// Metadata key: the tree's edge, [`Edge::encode`].
pub const META_EDGE: &[u8] = b"edge";
/// Metadata key: the storage layout, one byte ([`LAYOUT_TILES`]). Absent in a data directory
/// written before tiles were the stored form.
pub const META_LAYOUT: &[u8] = b"layout";
/// The layout of this module.
pub const LAYOUT_TILES: u8 = 2;
/// Column family of the layout before tiles: one key per node hash, `level || index`. Emptied
/// and dropped once the store is rewritten into tiles.
pub const CF_OLD_HASHES: &str = "hashes";

/// Test-only: a migration started with this variable set to a tree size writes up to that
/// size, then aborts the process (no clean-up, as a crash), so the crash test can show that the
/// next open resumes it.
pub const MIGRATION_ABORT_ENV: &str = "COUNTERSIGN_TEST_MIGRATION_ABORT_AT";

/// Entries rewritten per synced batch by [`migrate`].
const MIGRATE_CHUNK: u64 = 16 * TILE;

/// Key of a full hash tile.
pub fn tile_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The entries `start..` encoded as an entry bundle (each after its 2-byte big-endian length),
/// by the integration step's own encoder.
pub fn encode_bundle(start: u64, entries: &[Vec<u8>]) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for (index, e) in (start..).zip(entries) {
        crate::shared::integrate::push_entry(&mut out, index, e)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
    }
    Ok(out)
}

/// The 256 entries of the stored full bundle `index`.
pub fn split_full_bundle(bytes: &[u8], index: u64) -> Result<Vec<&[u8]>, StorageError> {
    let entries = split_entry_bundle(bytes)
        .map_err(|e| StorageError::Corrupt(format!("entry bundle {index}: {e}")))?;
    if entries.len() as u64 != TILE {
        return Err(StorageError::Corrupt(format!(
            "entry bundle {index} holds {} entries, not 256",
            entries.len()
        )));
    }
    Ok(entries)
}

/// Calls `f` with every complete-subtree hash the tile (`tile_level`, `tile_index`) holding
/// `hashes` determines: the hashes themselves (tree level `8 tile_level`), then each level of
/// nodes above them inside the tile, up to the tile's root when it is full (255 node hashes
/// for a full tile).
pub fn expand_tile(
    tile_level: u8,
    tile_index: u64,
    hashes: &[Hash],
    mut f: impl FnMut(u8, u64, Hash),
) {
    let base = tile_level * 8;
    let mut first = tile_index * TILE;
    let mut row: Vec<Hash> = hashes.to_vec();
    let mut level = base;
    loop {
        for (k, h) in row.iter().enumerate() {
            f(level, first + k as u64, *h);
        }
        if row.len() < 2 {
            return;
        }
        row = row
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
        first /= 2;
        level += 1;
    }
}

/// The hash tile (`level`, `index`) as hashes: the stored full tile, or the edge's incomplete
/// tile at that level if it is that one. `None` if the tree has neither (yet).
pub(super) fn hash_tile(
    store: &Store,
    edge: &mut Option<Edge>,
    level: u8,
    index: u64,
) -> Result<Option<Vec<Hash>>, StorageError> {
    let cf = store.cf(CF_TILES)?;
    let read_full = || -> Result<Option<Vec<Hash>>, StorageError> {
        match store.db.get_pinned_cf(cf, tile_key(level, index))? {
            Some(b) if b.len() == (TILE as usize) * Hash::LEN => Ok(Some(
                b.chunks_exact(Hash::LEN)
                    .filter_map(Hash::from_slice)
                    .collect(),
            )),
            Some(b) => Err(StorageError::Corrupt(format!(
                "tile {level}/{index} is {} bytes long",
                b.len()
            ))),
            None => Ok(None),
        }
    };
    if let Some(t) = read_full()? {
        return Ok(Some(t));
    }
    if edge.is_none() {
        *edge = Some(store.edge()?);
    }
    let Some(e) = edge.as_ref() else {
        return Ok(None);
    };
    match e.partial_tile(level) {
        Some((i, hashes)) if i == index && !hashes.is_empty() => Ok(Some(hashes.to_vec())),
        // The edge has moved past it since the first read: the same batch wrote the full tile.
        Some((i, _)) if i > index => read_full(),
        _ => Ok(None),
    }
}

/// Rewrites a data directory of the layout before tiles into [`LAYOUT_TILES`], once (a store
/// already in it, or a new one, costs one key lookup). The entries are read in order, in
/// chunks, and integrated with [`grow`]: each chunk's full bundles and tiles, the deletion of
/// the entry keys they hold, and the edge reached are one synced batch, so a crash leaves the
/// old layout plus a prefix of the new one, and the next open resumes at the stored edge. At
/// the end the root of the tiles must be the stored tree state's; only then is the layout
/// marked and the old node hashes dropped. Progress is logged every few seconds.
pub(super) fn migrate(store: &mut Store) -> Result<(), StorageError> {
    let meta = store.cf(CF_META)?;
    if store.db.get_pinned_cf(meta, META_LAYOUT)?.is_some() {
        return Ok(());
    }
    let Some(tree) = store.get(CF_META, super::META_TREE)? else {
        // A new store: nothing to move.
        return mark_and_drop_old(store);
    };
    let (size, peaks) = decode_tree(&tree)?;
    let stack = RootStack::from_parts(size, peaks)
        .ok_or_else(|| StorageError::Corrupt("tree state has the wrong number of peaks".into()))?;
    let mut edge = match store.get(CF_META, META_EDGE)? {
        Some(b) => {
            Edge::decode(&b).map_err(|e| StorageError::Corrupt(format!("stored tree edge: {e}")))?
        }
        None => Edge::empty(),
    };
    let abort_at: Option<u64> = std::env::var(MIGRATION_ABORT_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let started = Instant::now();
    let from = edge.size();
    tracing::info!(
        entries = size,
        resumed_at = from,
        "rewriting the data directory into tiles and entry bundles (once)"
    );
    let tail = from - from % TILE;
    let mut bundle = encode_bundle(tail, &store.tail_entries(tail, from)?)?;
    let mut last_report = Instant::now();
    while edge.size() < size {
        let at = edge.size();
        let mut end = size.min(at + MIGRATE_CHUNK);
        if let Some(a) = abort_at.filter(|a| *a > at) {
            end = end.min(a);
        }
        let entries = store.tail_entries(at, end)?;
        let Grown {
            edge: grown,
            tiles,
            bundles,
        } = grow(
            &edge,
            std::mem::take(&mut bundle),
            entries.iter().map(|e| (e.as_slice(), leaf_hash(e))),
        )
        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut wb = WriteBatch::default();
        persist(store, &mut wb, at, &grown, tiles, bundles, &mut bundle)?;
        store.write_sync(wb)?;
        edge = grown;
        if abort_at == Some(edge.size()) {
            tracing::warn!(
                at = edge.size(),
                "{MIGRATION_ABORT_ENV}: aborting the migration"
            );
            std::process::abort();
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            let done = edge.size() - from;
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                at = edge.size(),
                of = size,
                percent = format!("{:.1}", 100.0 * edge.size() as f64 / size.max(1) as f64),
                eta_s = ((size - edge.size()) as f64 / rate.max(1.0)).round() as u64,
                "rewriting into tiles"
            );
        }
    }
    if edge.root() != stack.root() {
        return Err(StorageError::Corrupt(format!(
            "the stored entries do not hash to the stored tree (size {size}): the data \
             directory is damaged; restore it from a backup"
        )));
    }
    mark_and_drop_old(store)?;
    // The old entry keys were deleted by range; compacting frees their space now.
    store
        .db
        .compact_range_cf(store.cf(CF_ENTRIES)?, None::<&[u8]>, None::<&[u8]>);
    tracing::info!(
        entries = size,
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "data directory rewritten into tiles and entry bundles"
    );
    Ok(())
}

/// Adds to `wb` what one integration step leaves: the full tiles and bundles, the deletion of
/// the entry keys of the bundles completed (those at and after `from`'s bundle), the new edge,
/// and the entry keys of the new incomplete bundle's entries from `from` on. `partial` is set
/// to the new incomplete bundle's bytes.
pub(crate) fn persist(
    store: &Store,
    wb: &mut WriteBatch,
    from: u64,
    edge: &Edge,
    tiles: Vec<crate::shared::integrate::Object>,
    bundles: Vec<crate::shared::integrate::Object>,
    partial: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let cf_tiles = store.cf(CF_TILES)?;
    let cf_bundles = store.cf(CF_BUNDLES)?;
    let cf_entries = store.cf(CF_ENTRIES)?;
    for t in tiles.into_iter().filter(|t| t.full) {
        wb.put_cf(cf_tiles, tile_key(t.level.unwrap_or(0), t.index), t.bytes);
    }
    let to = edge.size();
    let (old_tail, new_tail) = (from - from % TILE, to - to % TILE);
    if new_tail > old_tail {
        // The entry keys of the bundles this step completed (those earlier steps wrote, and
        // in a migration all of them).
        wb.delete_range_cf(cf_entries, old_tail.to_be_bytes(), new_tail.to_be_bytes());
    }
    partial.clear();
    for b in bundles {
        if b.full {
            wb.put_cf(cf_bundles, b.index.to_be_bytes(), b.bytes);
        } else {
            *partial = b.bytes;
        }
    }
    // The new incomplete bundle's entries from `from` on, one key each.
    let entries = split_entry_bundle(partial)
        .map_err(|e| StorageError::Corrupt(format!("the new partial bundle: {e}")))?;
    for (at, e) in (new_tail..).zip(entries).filter(|(at, _)| *at >= from) {
        wb.put_cf(cf_entries, at.to_be_bytes(), e);
    }
    wb.put_cf(store.cf(CF_META)?, META_EDGE, edge.encode());
    Ok(())
}

/// Marks the store as [`LAYOUT_TILES`] and drops the old node hashes, if any.
fn mark_and_drop_old(store: &mut Store) -> Result<(), StorageError> {
    let mut wb = WriteBatch::default();
    wb.put_cf(store.cf(CF_META)?, META_LAYOUT, [LAYOUT_TILES]);
    store.write_sync(wb)?;
    if store.db.cf_handle(CF_OLD_HASHES).is_some() {
        let db = std::sync::Arc::get_mut(&mut store.db).ok_or_else(|| {
            StorageError::Stopped("the store is in use while its layout changes".into())
        })?;
        db.drop_cf(CF_OLD_HASHES)?;
        if let Some(names) = std::sync::Arc::get_mut(&mut store.cf_names) {
            names.retain(|n| n != CF_OLD_HASHES);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::{encode_tree, META_TREE};

    /// A store of the layout before tiles holding `entries`: one key per entry, the tree state
    /// of `tree_of` (normally the same entries), the old node-hash family, no layout mark.
    fn old_layout(dir: &std::path::Path, entries: &[Vec<u8>], tree_of: &[Vec<u8>]) {
        // Written with RocksDB directly: opening a `Store` would rewrite it at once.
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&opts, dir, [CF_ENTRIES, CF_OLD_HASHES, CF_META]).unwrap();
        let mut stack = RootStack::default();
        for e in tree_of {
            stack.push(leaf_hash(e));
        }
        let mut wb = WriteBatch::default();
        for (i, e) in entries.iter().enumerate() {
            wb.put_cf(
                db.cf_handle(CF_ENTRIES).unwrap(),
                (i as u64).to_be_bytes(),
                e,
            );
        }
        wb.put_cf(
            db.cf_handle(CF_OLD_HASHES).unwrap(),
            tile_key(0, 0),
            [0u8; 32],
        );
        let meta = db.cf_handle(CF_META).unwrap();
        wb.put_cf(meta, META_TREE, encode_tree(stack.size(), stack.peaks()));
        db.write(wb).unwrap();
    }

    fn entries(n: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("old entry {i}").into_bytes())
            .collect()
    }

    #[test]
    fn an_old_store_is_rewritten_into_tiles_and_the_old_hashes_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let all = entries(600);
        old_layout(dir.path(), &all, &all);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.get(CF_META, META_LAYOUT).unwrap(),
            Some(vec![LAYOUT_TILES])
        );
        assert!(store.db.cf_handle(CF_OLD_HASHES).is_none());
        let edge = store.edge().unwrap();
        assert_eq!(edge.size(), 600);
        // Two full bundles; the third's 88 entries one key each, nothing else left as keys.
        for b in 0..2u64 {
            let bytes = store.get(CF_BUNDLES, &b.to_be_bytes()).unwrap().unwrap();
            let got = split_full_bundle(&bytes, b).unwrap();
            assert_eq!(got, all[(b * 256) as usize..((b + 1) * 256) as usize]);
        }
        assert_eq!(store.tail_entries(512, 600).unwrap(), all[512..]);
        assert!(store.tail_entries(0, 1).is_err());
        assert_eq!(store.entries(0, 600).unwrap(), all);
        // Opening again changes nothing.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.edge().unwrap(), edge);
    }

    #[test]
    fn an_old_store_whose_entries_are_not_its_tree_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut all = entries(300);
        let tree = all.clone();
        all[7] = b"altered".to_vec();
        old_layout(dir.path(), &all, &tree);
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("do not hash to the stored tree"), "{e}");
        // Still refused at the next open (nothing marked), not half-accepted.
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("do not hash to the stored tree"), "{e}");

        // Entries missing below the stored size.
        let dir = tempfile::tempdir().unwrap();
        let all = entries(300);
        old_layout(dir.path(), &all[..290], &all);
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("entries 0..300: 290 of them stored"), "{e}");
    }

    #[test]
    fn damaged_tiles_and_bundles_are_named_not_served() {
        let ok: Vec<Vec<u8>> = entries(256);
        let bundle = encode_bundle(768, &ok).unwrap();
        assert_eq!(split_full_bundle(&bundle, 3).unwrap(), ok);
        // One entry short, truncated, and one entry too many.
        let short = encode_bundle(768, &ok[..255]).unwrap();
        assert!(split_full_bundle(&short, 3)
            .unwrap_err()
            .to_string()
            .contains("entry bundle 3 holds 255 entries"));
        assert!(split_full_bundle(&bundle[..bundle.len() - 1], 3).is_err());
        let mut long = ok.clone();
        long.push(b"x".to_vec());
        assert!(split_full_bundle(&encode_bundle(768, &long).unwrap(), 3).is_err());
        let e = encode_bundle(5, &[vec![0; 65_536]])
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 5 is 65536 bytes long"), "{e}");

        // A stored tile of the wrong length.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut wb = WriteBatch::default();
        wb.put_cf(store.cf(CF_TILES).unwrap(), tile_key(0, 0), [0u8; 8191]);
        store.write_sync(wb).unwrap();
        let e = store.hash_tile(0, 0, 256).unwrap_err().to_string();
        assert!(e.contains("tile 0/0 is 8191 bytes long"), "{e}");
        assert!(store.nodes(&[(1, 0)]).is_err());
    }

    #[test]
    fn a_tile_expands_into_every_complete_subtree_it_holds() {
        let leaves: Vec<Hash> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut want = std::collections::HashMap::new();
        let mut stack = RootStack::default();
        for l in &leaves {
            stack.push_with(*l, |level, i, h| {
                want.insert((level, i), *h);
            });
        }
        // The full tile 0/0 and the partial 0/1 (44 hashes).
        for (index, hashes) in [(0u64, &leaves[..256]), (1, &leaves[256..])] {
            let mut n = 0;
            expand_tile(0, index, hashes, |l, i, h| {
                assert_eq!(want.get(&(l, i)), Some(&h), "node {l}/{i}");
                n += 1;
            });
            // 256 + 128 + ... + 1 for the full tile; 44 + 22 + 11 + 5 + 2 + 1 for the partial.
            assert_eq!(n, if index == 0 { 511 } else { 85 });
        }
    }
}
