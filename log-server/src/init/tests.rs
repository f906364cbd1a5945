#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::time::Duration;

fn config(data_dir: &Path) -> Config {
    Config {
        data_dir: data_dir.to_owned(),
        origin: Some("init.example/log".into()),
        policy: RpPolicy {
            rp_id: "approve.test".into(),
            allowed_origins: vec!["https://approve.test".into()],
            require_user_verification: true,
        },
        sequencer: SequencerConfig {
            queue_capacity: 16,
            batch_max_entries: 16,
            batch_max_age: Duration::ZERO,
            checkpoint_interval: Duration::from_secs(5),
        },
        max_body_bytes: crate::DEFAULT_MAX_BODY_BYTES,
        column_families: Vec::new(),
    }
}

fn refusal(dir: &Path) -> String {
    match start(config(dir)) {
        Ok(_) => panic!("started on an unusable data directory"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_key_file_that_is_no_seed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join(KEY_FILE);
    for bad in ["not hex\n", "abcd\n", &"00".repeat(33)] {
        fs::write(&key, bad).unwrap();
        assert_eq!(
            refusal(dir.path()),
            format!("{} does not hold a 32-byte hex seed", key.display())
        );
    }
    // A key file that cannot be read at all (here: a directory).
    fs::remove_file(&key).unwrap();
    fs::create_dir(&key).unwrap();
    let e = refusal(dir.path());
    assert!(
        e.starts_with(&format!("cannot read {}: ", key.display())),
        "{e}"
    );
    // Nothing else was created beside the unusable key.
    assert!(!dir.path().join(ADMIN_TOKEN_FILE).exists());
}

#[test]
fn a_store_with_a_tree_but_no_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&dir.path().join(DB_DIR)).unwrap();
        let mut wb = rocksdb::WriteBatch::default();
        wb.put_cf(
            store.cf(CF_META).unwrap(),
            META_TREE,
            crate::storage::encode_tree(0, &[]),
        );
        store.write_sync(wb).unwrap();
    }
    assert_eq!(refusal(dir.path()), "the store has a tree but no origin");
}
