//! The shared driver's reads (`shared::reads::TileReader`) from a directory bucket the tile
//! mirror filled: proofs, node hashes, entries and tiles are the embedded log's at several
//! sizes (partial level-0 and level-1 tiles, and older sizes whose partial tiles are gone);
//! a wrong root, an altered, truncated or deleted object is refused naming the object; the
//! cache answers a repeated request without the bucket and keeps within its bytes.

use std::path::Path;
use std::time::Duration;

use countersign_log::mirror::{Bucket, TileMirror};
use countersign_log::proofs;
use countersign_log::shared::reads::{ReadError, TileReader};
use countersign_log::storage::Store;
use countersign_verifier::{root_from_leaf_hashes, Hash};

use crate::common::TestLog;
use crate::files::files_under;
use crate::tiles::fill;

const WAIT: Duration = Duration::from_secs(60);
const CACHE: usize = 64 << 20;

fn reader(dir: &Path, cache_bytes: usize) -> TileReader {
    TileReader::new(
        Bucket::open(&format!("file://{}", dir.display())).unwrap(),
        cache_bytes,
    )
}

/// Indices worth checking in a tree of `size`: the edges of tiles and of the tree, and a
/// spread between.
fn indices(size: u64) -> Vec<u64> {
    let mut v: Vec<u64> = [0, 1, 2, 255, 256, 257, 511, 512, 1023, 1024, 2047, 2048]
        .into_iter()
        .chain([size.saturating_sub(2), size.saturating_sub(1)])
        .chain((0..size).step_by(61))
        .filter(|&i| i < size)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The log's leaf hashes `[0, size)`, from its store.
fn leaves(store: &Store, size: u64) -> Vec<Hash> {
    let addrs: Vec<(u8, u64)> = (0..size).map(|i| (0, i)).collect();
    store.nodes(&addrs).unwrap()
}

fn tampered(e: ReadError, path: &str) {
    match e {
        ReadError::Tampered(m) => assert!(m.contains(path), "{m} does not name {path}"),
        other => panic!("not Tampered naming {path}: {other:?}"),
    }
}

/// Everything `r` reads at `size` (the bucket's size) is the log's; `earlier` are sizes the
/// bucket had before, with their roots.
async fn check_size(r: &TileReader, store: &Store, dir: &Path, size: u64, earlier: &[u64]) {
    let all = leaves(store, size);
    let root = root_from_leaf_hashes(&all);
    let root_at = |n: u64| root_from_leaf_hashes(&all[..n as usize]);

    // Inclusion at this size and at every earlier one.
    for &s in earlier.iter().chain([&size]) {
        for i in indices(s) {
            let got = r.inclusion_proof(i, s, &root_at(s)).await.unwrap();
            let want = proofs::leaf_and_inclusion_proof(store, i, s).unwrap();
            assert_eq!(got, want, "inclusion of {i} in {s}");
            assert_eq!(got.0, all[i as usize]);
        }
    }
    // Consistency from many sizes to this one, and between earlier sizes.
    let mut firsts: Vec<u64> = (0..=size).step_by(97).collect();
    firsts.extend([1, 255, 256, 257, 512, size - 1, size]);
    firsts.extend(earlier);
    for first in firsts.into_iter().filter(|&f| f <= size) {
        let got = r
            .consistency_proof(first, size, &root_at(first), &root)
            .await
            .unwrap();
        assert_eq!(
            got,
            proofs::consistency_proof(store, first, size).unwrap(),
            "consistency {first} to {size}"
        );
    }
    for (k, &second) in earlier.iter().enumerate() {
        for &first in &earlier[..k] {
            let got = r
                .consistency_proof(first, second, &root_at(first), &root_at(second))
                .await
                .unwrap();
            assert_eq!(
                got,
                proofs::consistency_proof(store, first, second).unwrap()
            );
        }
    }
    // Entries, and none past the tree.
    for i in indices(size) {
        let got = r.entry(i, size).await.unwrap();
        assert_eq!(got, store.entry(i).unwrap(), "entry {i} of {size}");
        assert!(got.is_some());
    }
    assert_eq!(r.entry(size, size).await.unwrap(), None);
    // Node hashes, level-1 tile ones too.
    let mut addrs: Vec<(u8, u64)> = vec![(0, 0), (0, size - 1), (3, 1)];
    for level in 8..=11u8 {
        if size >> level > 0 {
            addrs.push((level, 0));
            addrs.push((level, (size >> level) - 1));
        }
    }
    assert_eq!(
        r.nodes(&addrs, size).await.unwrap(),
        store.nodes(&addrs).unwrap()
    );
    // Every object under tile/, as the bucket holds it.
    let files = files_under(dir);
    assert!(files.keys().any(|k| k.starts_with("tile/1/")));
    for (path, bytes) in files.iter().filter(|(k, _)| k.starts_with("tile/")) {
        let got = r.tile(path).await.unwrap().unwrap();
        assert_eq!(&got[..], &bytes[..], "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_entries_and_tiles_from_a_bucket_are_the_logs() {
    let log = TestLog::start().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tiles");
    let bucket = Bucket::open(&format!("file://{}", dir.display())).unwrap();
    let m = TileMirror::start(log.state.log.clone(), bucket)
        .await
        .unwrap();
    let store = log.state.log.store().unwrap().clone();
    // One reader across sizes (its cache holds tiles of earlier sizes: still right, as every
    // path is immutable) and a fresh one at each size.
    let shared = reader(&dir, CACHE);
    let mut earlier: Vec<u64> = Vec::new();
    let mut size = 0;
    for next in [300u64, 1000, 2100, 2560, 3001] {
        fill(&log, size, next - size).await;
        size = next;
        assert_eq!(log.state.log.published().size, size);
        m.wait_for(size, WAIT).await.unwrap();
        match size {
            // Level-1 tile 0 is partial, of width 8.
            2100 => assert!(dir.join("tile/1/000.p/8").is_file()),
            // The partial tiles of 300 are gone: read as the prefix of their full tile.
            1000 => {
                assert!(!dir.join("tile/0/001.p/44").exists());
                assert!(!dir.join("tile/entries/001.p/44").exists());
            }
            _ => {}
        }
        check_size(&shared, &store, &dir, size, &earlier).await;
        check_size(&reader(&dir, CACHE), &store, &dir, size, &earlier).await;
        earlier.push(size);
    }

    // Out of range.
    let root = log.state.log.published().root;
    let r = reader(&dir, CACHE);
    for e in [
        r.inclusion_proof(size, size, &root).await.unwrap_err(),
        r.inclusion_proof(0, 0, &root).await.unwrap_err(),
        r.consistency_proof(size + 1, size, &root, &root)
            .await
            .unwrap_err(),
        // Leaves 2816..3072: not all in the tree.
        r.nodes(&[(8, 11)], size).await.unwrap_err(),
        r.nodes(&[(0, size)], size).await.unwrap_err(),
        r.tile("checkpoint").await.unwrap_err(),
        r.tile("tile/0/1").await.unwrap_err(),
        r.tile("tile/0/000.p/256").await.unwrap_err(),
    ] {
        assert!(matches!(e, ReadError::OutOfRange(_)), "{e:?}");
    }
    assert_eq!(r.tile("tile/0/999").await.unwrap(), None);

    // A wrong root: refused, naming the tiles read.
    let wrong = Hash([7; 32]);
    tampered(
        r.inclusion_proof(5, size, &wrong).await.unwrap_err(),
        "tile/0/000",
    );
    tampered(
        r.consistency_proof(1000, size, &wrong, &root)
            .await
            .unwrap_err(),
        "tile/",
    );
    tampered(
        r.consistency_proof(size, size, &wrong, &root)
            .await
            .unwrap_err(),
        "roots",
    );
    // Still right with the right root (and `r` now holds tile/0/002).
    r.inclusion_proof(5, size, &root).await.unwrap();
    r.inclusion_proof(700, size, &root).await.unwrap();

    // One byte of leaf 700's hash flipped: a fresh reader refuses its proof and its entry,
    // naming the tile; the cache of a reader that read it before it was altered still has the
    // log's bytes, and answers right.
    let tile = dir.join("tile/0/002");
    let good = std::fs::read(&tile).unwrap();
    let mut bad = good.clone();
    bad[(700 % 256) * 32] ^= 1;
    std::fs::write(&tile, &bad).unwrap();
    let fresh = reader(&dir, CACHE);
    tampered(
        fresh.inclusion_proof(700, size, &root).await.unwrap_err(),
        "tile/0/002",
    );
    let e = fresh.entry(700, size).await.unwrap_err();
    tampered(e.clone(), "tile/0/002");
    tampered(e, "tile/entries/002");
    // Another leaf of the same tile: its proof reads the altered hash inside a sibling subtree.
    tampered(
        fresh.inclusion_proof(513, size, &root).await.unwrap_err(),
        "tile/0/002",
    );
    r.inclusion_proof(700, size, &root).await.unwrap();
    // Repaired: read again (the refused tile was dropped from the cache).
    std::fs::write(&tile, &good).unwrap();
    fresh.inclusion_proof(700, size, &root).await.unwrap();
    assert_eq!(
        fresh.entry(700, size).await.unwrap(),
        store.entry(700).unwrap()
    );

    // A truncated level-1 tile, an altered entry bundle.
    let l1 = dir.join("tile/1/000.p/11");
    let l1_good = std::fs::read(&l1).unwrap();
    std::fs::write(&l1, &l1_good[..l1_good.len() - 1]).unwrap();
    let t = reader(&dir, CACHE);
    tampered(
        t.inclusion_proof(0, size, &root).await.unwrap_err(),
        "tile/1/000.p/11",
    );
    // Repaired: the refused tile is read again.
    std::fs::write(&l1, &l1_good).unwrap();
    t.inclusion_proof(0, size, &root).await.unwrap();
    let bundle = dir.join("tile/entries/001");
    let bundle_good = std::fs::read(&bundle).unwrap();
    let mut bundle_bad = bundle_good.clone();
    let last = bundle_bad.len() - 1;
    bundle_bad[last] ^= 1;
    std::fs::write(&bundle, &bundle_bad).unwrap();
    tampered(
        reader(&dir, CACHE).entry(511, size).await.unwrap_err(),
        "tile/entries/001",
    );
    std::fs::write(&bundle, &bundle_good).unwrap();

    // Deleted tiles: missing, named.
    std::fs::remove_file(&l1).unwrap();
    match reader(&dir, CACHE)
        .inclusion_proof(0, size, &root)
        .await
        .unwrap_err()
    {
        ReadError::Missing(p) => assert!(p.contains("tile/1/000.p/11"), "{p}"),
        e => panic!("{e:?}"),
    }
    std::fs::write(&l1, &l1_good).unwrap();
    std::fs::remove_file(&tile).unwrap();
    match reader(&dir, CACHE).entry(600, size).await.unwrap_err() {
        ReadError::Missing(p) => assert_eq!(p, "tile/0/002"),
        e => panic!("{e:?}"),
    }
    std::fs::write(&tile, &good).unwrap();

    // The cache: a second identical request reads nothing from the bucket.
    let c = reader(&dir, CACHE);
    let first = c.inclusion_proof(1234, size, &root).await.unwrap();
    let after_first = c.stats();
    assert!(after_first.misses > 0);
    assert_eq!(after_first.hits, 0);
    let second = c.inclusion_proof(1234, size, &root).await.unwrap();
    let after_second = c.stats();
    assert_eq!(first, second);
    assert_eq!(after_second.misses, after_first.misses);
    assert_eq!(after_second.hits, after_first.misses);
    assert!(after_second.bytes > 8192);

    // Bounded: room for two full hash tiles (8 KiB each, with their paths) at most.
    // The same requests through an unbounded cache read each object once; through the small
    // one, objects dropped for others are read again.
    let bound = 2 * (8192 + 16);
    let small = reader(&dir, bound);
    let big = reader(&dir, CACHE);
    for i in indices(size) {
        let want = proofs::leaf_and_inclusion_proof(&store, i, size).unwrap();
        assert_eq!(small.inclusion_proof(i, size, &root).await.unwrap(), want);
        assert_eq!(small.entry(i, size).await.unwrap(), store.entry(i).unwrap());
        big.inclusion_proof(i, size, &root).await.unwrap();
        big.entry(i, size).await.unwrap();
        let s = small.stats();
        assert!(s.bytes <= bound, "{s:?}");
    }
    let (s, b) = (small.stats(), big.stats());
    assert!(s.hits > 0 && s.objects > 0, "{s:?}");
    assert!(s.misses > b.misses, "{s:?} {b:?}");
    assert_eq!(b.misses as usize, b.objects);
    // No cache at all: every object read from the bucket, answers still right.
    let none = reader(&dir, 0);
    for _ in 0..2 {
        let want = proofs::leaf_and_inclusion_proof(&store, 1234, size).unwrap();
        assert_eq!(none.inclusion_proof(1234, size, &root).await.unwrap(), want);
    }
    let s = none.stats();
    assert_eq!((s.hits, s.bytes, s.objects), (0, 0, 0));
    assert_eq!(s.misses, 2 * after_first.misses);

    log.stop().await;
}
