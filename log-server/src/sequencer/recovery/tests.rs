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
    let (stack, note) = recover(&store, &signer(1)).unwrap();
    assert_eq!(stack, RootStack::default());
    assert_eq!(store.checkpoint(0).unwrap().as_deref(), Some(note.as_str()));
    let (again, note_again) = recover(&store, &signer(1)).unwrap();
    assert_eq!((again, note_again), (stack, note));
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

    // Made consistent, it recovers.
    put(&store, 1, &[leaf], &s.sign(1, leaf).unwrap());
    let (stack, _) = recover(&store, &s).unwrap();
    assert_eq!(stack.root(), leaf);
}
