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

/// Numbers what is still queued for the feed under `prefix`, checks that the feed holds
/// `queued`, each record once, numbered contiguously from 1, with the counter at `counter` one
/// past the last, and returns the records in number order.
async fn numbered_feed(
    kv: &SharedKv,
    counter: &str,
    prefix: &str,
    queued: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    while kv.number_queued(counter, prefix, 1000).await.unwrap() > 0 {}
    let feed = tokio::task::block_in_place(|| kv.scan(prefix, 1000)).unwrap();
    let numbers: Vec<&str> = feed.iter().map(|(k, _)| k.as_str()).collect();
    let want: Vec<String> = (1..=queued.len() as u64)
        .map(|n| format!("{prefix}{n:016x}"))
        .collect();
    assert_eq!(numbers, want, "numbered contiguously from 1");
    let got: Vec<Vec<u8>> = feed.into_iter().map(|(_, v)| v).collect();
    let (mut sorted, mut want) = (got.clone(), queued.to_vec());
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "each queued record once");
    assert_eq!(
        tokio::task::block_in_place(|| kv.get_raw(counter)).unwrap(),
        Some(format!("{:016x}", queued.len() + 1).into_bytes())
    );
    got
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
    let got = numbered_feed(&a, "v/f-seq", "F/", &queued).await;
    assert_eq!(b.number_queued("v/f-seq", "F/", 1000).await.unwrap(), 0);
    // In recording order within each instance.
    for who in [b'a', b'b'] {
        let mine: Vec<&Vec<u8>> = got.iter().filter(|r| r[0] == who).collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted, "instance {} out of order", who as char);
    }

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

/// Writes under the watched prefix wait for their change notice, which needs a connection of
/// the pool: many at once on a pool of two all complete (a writer gives its connection back
/// before it waits), every change reaches the other instance, and the notices are coalesced
/// (far fewer than the writes). A key and the record it names are read in one go; locks released in one
/// statement are free again at the other instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_watched_writes_on_a_small_pool_completes_and_is_heard() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let small = Db::connect_with_pool_size(&db.url, MIGRATIONS, 2)
        .await
        .unwrap();
    let a = std::sync::Arc::new(SharedKv::open(small, "p/").await.unwrap());
    let b = SharedKv::open(Db::connect(&db.url, MIGRATIONS).await.unwrap(), "p/")
        .await
        .unwrap();
    let mut heard = b.changes();
    const WRITES: usize = 64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..WRITES {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let mut batch = Batch::new();
            batch.put(format!("p/apv/{i:03}"), b"open".to_vec());
            a.commit(batch, Durability::Deferred).await
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("a write waited for ever")
            .unwrap()
            .unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let (mut keys, mut notices) = (std::collections::BTreeSet::new(), 0);
    while keys.len() < WRITES {
        match tokio::time::timeout(Duration::from_secs(10), heard.recv()).await {
            Ok(Ok(Change::Keys(k))) => {
                notices += 1;
                keys.extend(k.iter().cloned());
            }
            other => panic!("{} of {WRITES} changes heard, then {other:?}", keys.len()),
        }
    }
    let want: std::collections::BTreeSet<String> =
        (0..WRITES).map(|i| format!("p/apv/{i:03}")).collect();
    assert_eq!(keys, want);
    // Coalesced: the writes that commit while a notice is out share the next (2 notices for 64
    // writes in runs here; one per write before).
    assert!(
        notices <= WRITES / 4,
        "{notices} notices for {WRITES} writes: not coalesced"
    );

    // A pointer and the record it names, in one read: by text and by a JSON member.
    let mut batch = Batch::new();
    batch
        .put("q/one", b"abc".to_vec())
        .put("r/abc", b"record".to_vec())
        .put("s/x", br#"{"approver_id":"ann"}"#.to_vec())
        .put("a/ann", b"ann's".to_vec())
        .put("q/dangling", b"zzz".to_vec())
        .put("s/n", br#"{"approver_id":7}"#.to_vec())
        .put("a/7", b"not named by a number".to_vec());
    a.commit(batch, Durability::Sync).await.unwrap();
    assert_eq!(
        b.get_via("q/one", "r/", None).await.unwrap(),
        Some((b"abc".to_vec(), Some(b"record".to_vec())))
    );
    assert_eq!(
        b.get_via("s/x", "a/", Some("approver_id")).await.unwrap(),
        Some((
            br#"{"approver_id":"ann"}"#.to_vec(),
            Some(b"ann's".to_vec())
        ))
    );
    assert_eq!(
        b.get_via("s/x", "a/", Some("missing")).await.unwrap(),
        Some((br#"{"approver_id":"ann"}"#.to_vec(), None))
    );
    assert_eq!(
        b.get_via("q/dangling", "r/", None).await.unwrap(),
        Some((b"zzz".to_vec(), None))
    );
    assert_eq!(b.get_via("q/none", "r/", None).await.unwrap(), None);
    // Only a string member names a record (as on the embedded store).
    assert_eq!(
        b.get_via("s/n", "a/", Some("approver_id")).await.unwrap(),
        Some((br#"{"approver_id":7}"#.to_vec(), None))
    );

    // Locks taken and dropped together are released together, and free at the other instance.
    let guards: Vec<_> = futures_util::future::join_all((0..8).map(|i| {
        let a = a.clone();
        async move { a.lock(&format!("r/{i}")).await.map(|_| ()) }
    }))
    .await;
    assert!(guards.iter().all(Result::is_ok));
    for i in 0..8 {
        let g = tokio::time::timeout(Duration::from_secs(10), b.lock(&format!("r/{i}")))
            .await
            .expect("a released lock is still held")
            .unwrap();
        drop(g);
    }
}

/// The feed numbered from both instances at once, while both queue: every record once,
/// contiguously from 1 (numbering reads the queue only once it holds the counter's lock, so two
/// numberings never take the same record); a counter that is not 16 hex digits is damage,
/// reported as such, and nothing queued is moved or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn numbering_at_two_instances_at_once_numbers_each_record_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (a, b) = two(&db).await;
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut numberers = Vec::new();
    for kv in [a.clone(), b.clone()] {
        let done = done.clone();
        numberers.push(tokio::spawn(async move {
            let mut moved = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                moved += kv.number_queued("v/g-seq", "G/", 3).await.unwrap();
            }
            moved
        }));
    }
    let mut queued = Vec::new();
    let mut writers = Vec::new();
    for (who, kv) in [(b'a', a.clone()), (b'b', b.clone())] {
        let records: Vec<Vec<u8>> = (0..150u8).map(|i| vec![who, i]).collect();
        queued.extend(records.clone());
        writers.push(tokio::spawn(async move {
            for r in records {
                kv.commit_queued(Batch::new(), Some(("G/", &[r])), Durability::Sync)
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut moved = 0;
    for n in numberers {
        moved += n.await.unwrap();
    }
    numbered_feed(&a, "v/g-seq", "G/", &queued).await;
    assert!(moved > 0, "the concurrent numberers numbered some of it");

    // A damaged counter: the error says so, and the queued record stays queued.
    for damaged in [
        &b"zz"[..],
        b"8000000000000000",
        b"00000000000000001",
        b"000000000000000A",
    ] {
        let mut batch = Batch::new();
        batch.put("v/h-seq", damaged.to_vec());
        a.commit(batch, Durability::Sync).await.unwrap();
        a.commit_queued(Batch::new(), Some(("H/", &[vec![1]])), Durability::Sync)
            .await
            .unwrap();
        let e = a.number_queued("v/h-seq", "H/", 10).await.unwrap_err();
        assert!(
            matches!(&e, countersign_log::storage::StorageError::Corrupt(m) if m.contains("v/h-seq")),
            "{damaged:?}: {e}"
        );
        assert!(tokio::task::block_in_place(|| a.scan("H/", 10))
            .unwrap()
            .is_empty());
    }
    let mut batch = Batch::new();
    batch.put("v/h-seq", b"0000000000000007".to_vec());
    a.commit(batch, Durability::Sync).await.unwrap();
    assert_eq!(a.number_queued("v/h-seq", "H/", 10).await.unwrap(), 4);
    let feed = tokio::task::block_in_place(|| a.scan("H/", 10)).unwrap();
    let numbers: Vec<&str> = feed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        numbers,
        [
            "H/0000000000000007",
            "H/0000000000000008",
            "H/0000000000000009",
            "H/000000000000000a"
        ]
    );
}
