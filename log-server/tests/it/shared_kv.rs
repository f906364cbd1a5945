//! The shared driver's key-value area (`countersign_log::shared::kv::SharedKv`) against a real
//! PostgreSQL, two handles on one database standing for two instances: a batch's last op per key
//! wins and scans come back in byte order; a record lock held by one instance makes the other
//! wait until it is released; records
//! queued at both are numbered once each, contiguously, in recording order; one instance hears
//! of the other's changes under the watched prefix (not of its own); an instance that went is
//! seen as not running. (That the database releases a dead session's advisory locks is tested
//! with the lease, in `pg.rs`.)

use std::time::{Duration, Instant};

use countersign_log::shared::kv::{Change, SharedKv};
use countersign_log::shared::pg::Db;
use countersign_log::shared::schema::MIGRATIONS;
use countersign_log::storage::kv::{Batch, Durability};

use crate::pg_support::TestDb;

async fn two(db: &TestDb) -> (SharedKv, SharedKv) {
    let a = Db::connect(&db.url, MIGRATIONS).await.unwrap();
    let b = Db::connect(&db.url, MIGRATIONS).await.unwrap();
    (
        SharedKv::open(a, "p/").await.unwrap(),
        SharedKv::open(b, "p/").await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_records_locks_the_feed_and_changes() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (a, b) = two(&db).await;

    // Last op per key wins; byte order (é after z, as in RocksDB).
    let mut batch = Batch::new();
    batch
        .put("k/1", b"one".to_vec())
        .put("k/2", b"two".to_vec())
        .delete("k/2")
        .put("k/z", b"z".to_vec())
        .put("k/\u{e9}", b"e".to_vec())
        .put("k/3", b"old".to_vec())
        .put("k/3", b"three".to_vec());
    a.commit(batch, Durability::Deferred).await.unwrap();
    let keys: Vec<String> = tokio::task::block_in_place(|| b.scan("k/", 10))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["k/1", "k/3", "k/z", "k/\u{e9}"]);
    assert_eq!(
        tokio::task::block_in_place(|| b.get_raw("k/3")).unwrap(),
        Some(b"three".to_vec())
    );
    assert_eq!(
        tokio::task::block_in_place(|| b.get_raw("k/2")).unwrap(),
        None
    );

    // A lock held at A: B waits for it, and gets it once A lets go.
    let held = a.lock("r/x").await.unwrap();
    let started = Instant::now();
    let waiter = tokio::spawn(async move {
        let g = b.lock("r/x").await.unwrap();
        drop(g);
        (b, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!waiter.is_finished(), "B took a lock A holds");
    drop(held);
    let (b, waited) = waiter.await.unwrap();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    // Different records do not wait for each other.
    let _x = a.lock("r/x").await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), b.lock("r/y"))
        .await
        .expect("another record's lock is free")
        .unwrap();

    // Changes under the watched prefix reach the other instance only.
    let mut heard_at_b = b.changes();
    let mut heard_at_a = a.changes();
    let mut batch = Batch::new();
    batch.put("p/alice/r1", vec![1]).put("k/9", vec![9]);
    a.commit(batch, Durability::Sync).await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), heard_at_b.recv())
        .await
        .unwrap()
        .unwrap();
    match change {
        Change::Keys(keys) => {
            assert_eq!(*keys, ["p/alice/r1"]);
            let values = b.get_many(&keys).await.unwrap();
            assert_eq!(values, [("p/alice/r1".to_owned(), Some(vec![1]))]);
        }
        Change::Resync => panic!("expected the key"),
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), heard_at_a.recv())
            .await
            .is_err(),
        "an instance hears its own changes"
    );

    // Records queued at both, numbered from either: each once, contiguous from 1.
    let mut queued = Vec::new();
    for round in 0..20u8 {
        for (who, kv) in [(b'a', &a), (b'b', &b)] {
            let records = vec![vec![who, round, 0], vec![who, round, 1]];
            queued.extend(records.clone());
            kv.commit_queued(Batch::new(), Some(("F/", &records)), Durability::Sync)
                .await
                .unwrap();
        }
        if round % 7 == 0 {
            a.number_queued("v/f-seq", "F/", 5).await.unwrap();
        }
    }
    while a.number_queued("v/f-seq", "F/", 1000).await.unwrap() > 0 {}
    assert_eq!(b.number_queued("v/f-seq", "F/", 1000).await.unwrap(), 0);
    let feed = tokio::task::block_in_place(|| a.scan("F/", 1000)).unwrap();
    let numbers: Vec<String> = feed.iter().map(|(k, _)| k.clone()).collect();
    let want: Vec<String> = (1..=queued.len() as u64)
        .map(|n| format!("F/{n:016x}"))
        .collect();
    assert_eq!(numbers, want, "numbered contiguously from 1");
    let mut got: Vec<Vec<u8>> = feed.into_iter().map(|(_, v)| v).collect();
    // In recording order within each instance.
    for who in [b'a', b'b'] {
        let mine: Vec<&Vec<u8>> = got.iter().filter(|r| r[0] == who).collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted, "instance {} out of order", who as char);
    }
    got.sort();
    queued.sort();
    assert_eq!(got, queued, "each queued record once");
    assert_eq!(
        tokio::task::block_in_place(|| a.get_raw("v/f-seq")).unwrap(),
        Some(format!("{:016x}", queued.len() + 1).into_bytes())
    );

    // An instance that goes is seen as not running.
    let b_id = b.instance_id().to_owned();
    assert!(a.instance_alive(&b_id).await.unwrap());
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.instance_alive(&b_id).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "a dropped instance still counts as running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
