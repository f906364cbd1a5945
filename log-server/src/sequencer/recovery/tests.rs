#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use countersign_verifier::{leaf_hash, Hash};

fn signer(seed: u8) -> LogSigner {
    LogSigner::new("example.com/log", &[seed; 32]).unwrap()
}

/// Stores a tree state and a checkpoint note for size `size`, in one batch.
fn put(store: &Store, size: u64, peaks: &[Hash], note: &str) {
    let mut wb = WriteBatch::default();
    wb.put_cf(
        store.cf(CF_CHECKPOINTS).unwrap(),
        size.to_be_bytes(),
        note.as_bytes(),
    );
    wb.put_cf(
        store.cf(CF_META).unwrap(),
        META_TREE,
        encode_tree(size, peaks),
    );
    store.write_sync(wb).unwrap();
}

fn refusal(store: &Store, s: &LogSigner) -> String {
    match recover(store, s) {
        Ok(_) => panic!("a damaged store was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_empty_store_starts_at_size_zero_and_recovers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = recover(&store, &signer(1)).unwrap();
    assert_eq!(first.stack, RootStack::default());
    assert_eq!((first.edge.size(), first.bundle.len()), (0, 0));
    assert_eq!(
        store.checkpoint(0).unwrap().as_deref(),
        Some(first.note.as_str())
    );
    let again = recover(&store, &signer(1)).unwrap();
    assert_eq!((again.stack, again.note), (first.stack, first.note));
}

#[test]
fn a_store_that_disagrees_with_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = signer(1);
    let leaf = leaf_hash(b"one");

    // Size 1 needs one peak.
    put(&store, 1, &[], "x");
    assert_eq!(
        refusal(&store, &s),
        "storage is damaged: tree state has the wrong number of peaks"
    );

    // A tree state with no checkpoint for its size.
    let mut wb = WriteBatch::default();
    wb.put_cf(
        store.cf(CF_META).unwrap(),
        META_TREE,
        encode_tree(2, &[leaf_hash(b"peak")]),
    );
    store.write_sync(wb).unwrap();
    assert_eq!(
        refusal(&store, &s),
        "storage: no checkpoint stored for size 2"
    );

    // A checkpoint signed by another key.
    put(&store, 1, &[leaf], &signer(2).sign(1, leaf).unwrap());
    assert!(
        refusal(&store, &s).starts_with("storage is damaged: stored checkpoint does not verify: ")
    );

    // A checkpoint of this key for another root.
    put(&store, 1, &[leaf], &s.sign(1, leaf_hash(b"two")).unwrap());
    assert_eq!(
        refusal(&store, &s),
        "storage is damaged: stored checkpoint does not match the stored tree state"
    );

    // Tree state and checkpoint agree, but the tiles' edge is another tree's.
    put(&store, 1, &[leaf], &s.sign(1, leaf).unwrap());
    assert_eq!(
        refusal(&store, &s),
        "storage is damaged: the stored tile edge (size 0) does not match the stored tree \
         state (size 1)"
    );
    let grown = crate::shared::integrate::grow(
        &Edge::empty(),
        Vec::new(),
        [(b"other".as_slice(), leaf_hash(b"other"))],
    )
    .unwrap();
    let mut wb = WriteBatch::default();
    wb.put_cf(store.cf(CF_META).unwrap(), META_EDGE, grown.edge.encode());
    store.write_sync(wb).unwrap();
    assert!(refusal(&store, &s).contains("the stored tile edge (size 1) does not match"));

    // Its edge, but the incomplete bundle's entry is missing.
    let grown =
        crate::shared::integrate::grow(&Edge::empty(), Vec::new(), [(b"one".as_slice(), leaf)])
            .unwrap();
    let mut wb = WriteBatch::default();
    wb.put_cf(store.cf(CF_META).unwrap(), META_EDGE, grown.edge.encode());
    store.write_sync(wb).unwrap();
    assert_eq!(
        refusal(&store, &s),
        "storage: entries 0..1: 0 of them stored"
    );

    // Made consistent, it recovers, with the incomplete bundle.
    let mut wb = WriteBatch::default();
    wb.put_cf(
        store.cf(crate::storage::CF_ENTRIES).unwrap(),
        0u64.to_be_bytes(),
        b"one",
    );
    store.write_sync(wb).unwrap();
    let r = recover(&store, &s).unwrap();
    assert_eq!(r.stack.root(), leaf);
    assert_eq!(r.bundle, b"\x00\x03one");
}
