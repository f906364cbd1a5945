//! The shared driver against the real engines: PostgreSQL (`COUNTERSIGN_TEST_DATABASE`) and a
//! SeaweedFS S3 server (`COUNTERSIGN_TEST_S3_BUCKET`), both started by scripts/test.sh. Several
//! instances in one process, each with its own connections, as separate processes would have:
//! appends through all of them make one tree, the bucket verifies as a tlog-tiles log, the
//! integrator fails over when its session dies, a second deployment on the same bucket is
//! refused, an unreachable bucket fails appends closed and they resume, and an altered object
//! stops integration naming it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use countersign_log::error::AppendError;
use countersign_log::mirror::Bucket;
use countersign_log::sequencer::AppendKind;
use countersign_log::shared::reads::TileReader;
use countersign_log::shared::{SharedConfig, SharedError, SharedLog};
use countersign_log::signer::LogSigner;
use countersign_verifier::{leaf_hash, verify_checkpoint};

use crate::pg_support::TestDb;

const ORIGIN: &str = "shared.example/log";

fn signer(seed: u8) -> Arc<LogSigner> {
    Arc::new(LogSigner::new(ORIGIN, &[seed; 32]).unwrap())
}

fn s3_url() -> Option<String> {
    crate::s3_support::bucket_url("shared")
}

/// A directory bucket of the test's own: the temporary directory (kept while it lives), the
/// bucket's directory in it, and its `file://` URL.
fn dir_bucket() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let url = format!("file://{}", root.display());
    (dir, root, url)
}

/// [`config`] with appends answered 503 after 2 s without publication.
fn quick() -> SharedConfig {
    SharedConfig {
        publish_timeout: Duration::from_secs(2),
        ..config()
    }
}

fn config() -> SharedConfig {
    SharedConfig {
        publish_timeout: Duration::from_secs(20),
        lease_poll: Duration::from_millis(200),
        ..SharedConfig::default()
    }
}

async fn start(db: &TestDb, bucket: &str, seed: u8, config: SharedConfig) -> SharedLog {
    SharedLog::start(&db.url, Bucket::open(bucket).unwrap(), signer(seed), config)
        .await
        .unwrap_or_else(|e| panic!("starting an instance: {e}"))
}

fn entry(n: u64) -> Vec<u8> {
    format!("entry {n} {:x}", rand::random::<u64>()).into_bytes()
}

async fn append(
    log: &SharedLog,
    e: Vec<u8>,
) -> Result<countersign_log::sequencer::Appended, AppendError> {
    let leaf = leaf_hash(&e);
    log.append(e, leaf, AppendKind::Other).await
}

/// Waits until `log` is (or is not) the integrator.
async fn wait_leader(log: &SharedLog, leader: bool, within: Duration) -> Duration {
    let t = Instant::now();
    let mut rx = log.status();
    tokio::time::timeout(within, rx.wait_for(|s| s.leader == leader))
        .await
        .unwrap_or_else(|_| panic!("leader={leader} not reached within {within:?}"))
        .unwrap();
    t.elapsed()
}

/// Checks the bucket as a reader would: its checkpoint verifies, and every `(index, entry)`
/// has an inclusion proof from the bucket's tiles against it, and its bundle holds the bytes.
async fn check_bucket(bucket: &str, seed: u8, acked: &[(u64, Vec<u8>)]) -> u64 {
    let b = Bucket::open(bucket).unwrap();
    let note = b
        .get("checkpoint")
        .await
        .unwrap()
        .expect("a checkpoint in the bucket");
    let cp = verify_checkpoint(&note, signer(seed).verifier_key(), &[]).unwrap();
    let size = cp.checkpoint.size;
    let reader = TileReader::new(b, 64 << 20);
    for (index, e) in acked {
        assert!(
            *index < size,
            "acknowledged entry {index} beyond the bucket's {size}"
        );
        let (leaf, _proof) = reader
            .inclusion_proof(*index, size, &cp.checkpoint.root)
            .await
            .unwrap_or_else(|err| panic!("entry {index}: {err}"));
        assert_eq!(leaf, leaf_hash(e), "entry {index}");
        assert_eq!(
            reader.entry(*index, size).await.unwrap().as_deref(),
            Some(e.as_slice())
        );
    }
    size
}

/// The bucket's checkpoint object.
async fn checkpoint_in(bucket: &str) -> Option<Vec<u8>> {
    Bucket::open(bucket)
        .unwrap()
        .get("checkpoint")
        .await
        .unwrap()
}

/// An instance with another (new) database, the key of `seed` and `bucket` refuses to start.
async fn another_database_is_refused(bucket: &str, seed: u8) {
    let other = TestDb::create().await.unwrap();
    let err = SharedLog::start(
        &other.url,
        Bucket::open(bucket).unwrap(),
        signer(seed),
        config(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SharedError::Bucket(_)), "{err}");
    assert!(
        err.to_string()
            .contains("not signed by this deployment's database"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_make_one_tree_and_the_bucket_verifies() {
    let (Some(db), Some(bucket)) = (TestDb::create().await, s3_url()) else {
        return;
    };
    let a = start(&db, &bucket, 1, config()).await;
    let b = start(&db, &bucket, 1, config()).await;
    let mut tasks = Vec::new();
    for i in 0..400u64 {
        let log = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let e = entry(i);
            let got = append(&log, e.clone()).await.unwrap();
            assert!(!got.existing);
            assert!(got.tree_size > got.index);
            (got.index, e)
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let mut indexes: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..400).collect::<Vec<_>>(),
        "contiguous, none twice"
    );
    // An entry no entry bundle holds is refused before it is sequenced (it would stop
    // integration), and nothing is added.
    match append(&a, vec![7u8; 65_536]).await {
        Err(AppendError::Refused { detail, .. }) => {
            assert!(detail.contains("entry bundle"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // The same entry through the other instance is the same leaf.
    let (i0, e0) = acked[0].clone();
    let again = append(&b, e0.clone()).await.unwrap();
    assert!(again.existing);
    assert_eq!(again.index, i0);
    assert_eq!(again.leaf_hash, leaf_hash(&e0));
    assert_eq!(check_bucket(&bucket, 1, &acked).await, 400);
    // Exactly one of them integrates.
    let leaders = [&a, &b]
        .iter()
        .filter(|l| l.status().borrow().leader)
        .count();
    assert_eq!(leaders, 1);
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_integrator_fails_over_when_its_session_dies() {
    let (Some(db), Some(bucket)) = (TestDb::create().await, s3_url()) else {
        return;
    };
    let a = start(&db, &bucket, 2, config()).await;
    wait_leader(&a, true, Duration::from_secs(5)).await;
    let b = start(&db, &bucket, 2, config()).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        let e = entry(i);
        acked.push((append(&b, e.clone()).await.unwrap().index, e));
    }
    // The integrator's session ends as when its process is killed: the database releases the
    // lease, and the other instance takes over.
    let admin = db.admin().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l \
             JOIN pg_stat_activity s ON s.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND s.datname = $1",
            &[&db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "one advisory lock (the lease) was held");
    // `a` stops integrating at once; whichever instance takes the lease next, someone does
    // within 5 s, and appends go on.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 50..150 {
        let log = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let e = entry(i);
            (append(&log, e.clone()).await.unwrap().index, e)
        }));
    }
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "appends resumed after {took:?}"
    );
    assert_eq!(check_bucket(&bucket, 2, &acked).await, 150);
    // Shutting the integrator down hands the lease over within 5 s.
    let (leader, other) = if a.status().borrow().leader {
        (a, b)
    } else {
        (b, a)
    };
    leader.shutdown();
    let took = wait_leader(&other, true, Duration::from_secs(5)).await;
    eprintln!("failover after shutdown: {took:?}");
    let e = entry(999);
    let got = append(&other, e.clone()).await.unwrap();
    acked.push((got.index, e));
    assert_eq!(check_bucket(&bucket, 2, &acked).await, 151);
    other.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_deployment_on_the_same_bucket_is_refused() {
    let (Some(db), Some(bucket)) = (TestDb::create().await, s3_url()) else {
        return;
    };
    let a = start(&db, &bucket, 3, config()).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let e = entry(i);
        acked.push((append(&a, e.clone()).await.unwrap().index, e));
    }
    let before = checkpoint_in(&bucket).await;
    // Another database, the same key and bucket: it must not publish.
    another_database_is_refused(&bucket, 3).await;
    // Another key on the first database: refused, naming the key.
    let err = SharedLog::start(&db.url, Bucket::open(&bucket).unwrap(), signer(9), config())
        .await
        .unwrap_err();
    assert!(matches!(err, SharedError::Mismatch(_)), "{err}");
    assert!(err.to_string().contains(ORIGIN), "{err}");
    // Nothing moved the bucket's checkpoint.
    assert_eq!(checkpoint_in(&bucket).await, before);
    assert_eq!(check_bucket(&bucket, 3, &acked).await, 20);
    a.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_fails_appends_closed_and_they_resume() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (dir, root, url) = dir_bucket();
    let a = start(&db, &url, 4, quick()).await;
    let first = entry(0);
    let got = append(&a, first.clone()).await.unwrap();
    assert_eq!(got.index, 0);
    // The bucket goes away: its directory becomes a file, so every write fails.
    let aside = dir.path().join("aside");
    std::fs::rename(&root, &aside).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let e = entry(1);
    let err = append(&a, e.clone()).await.unwrap_err();
    assert!(
        matches!(err, AppendError::NotPublished { index: 1, .. }),
        "{err:?}"
    );
    let retrying = a.status().borrow().retrying.clone();
    assert!(retrying.is_some(), "the status names the failure");
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, a.registry()).unwrap();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("countersign_shared_integration_failures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no failure counter in:\n{metrics}"));
    assert!(failures > 0, "the failed passes are counted");
    // Back: the sequenced entry is published by itself and a retry gets the same leaf.
    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&aside, &root).unwrap();
    let mut rx = a.subscribe();
    tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|p| p.size >= 2))
        .await
        .expect("published after the bucket came back")
        .unwrap();
    let again = append(&a, e.clone()).await.unwrap();
    assert_eq!((again.index, again.existing), (1, true));
    assert_eq!(check_bucket(&url, 4, &[(0, first), (1, e)]).await, 2);
    a.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_object_stops_integration_naming_it() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (_dir, root, url) = dir_bucket();
    let a = start(&db, &url, 5, quick()).await;
    for i in 0..10 {
        append(&a, entry(i)).await.unwrap();
    }
    // Someone plants other bytes where the first full entry bundle will go.
    let planted = root.join("tile/entries/000");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, b"not this log's entries").unwrap();
    let mut tasks = Vec::new();
    for i in 10..300 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move { append(&a, entry(i)).await }));
    }
    let mut refused = 0;
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            assert!(matches!(e, AppendError::NotPublished { .. }), "{e:?}");
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "entries past the altered bundle are not acknowledged"
    );
    let stopped = a
        .status()
        .borrow()
        .stopped
        .clone()
        .expect("integration stopped");
    assert!(stopped.contains("tile/entries/000"), "{stopped}");
    // The bucket's checkpoint never covers the altered bundle.
    let note = std::fs::read(root.join("checkpoint")).unwrap();
    let cp = verify_checkpoint(&note, signer(5).verifier_key(), &[]).unwrap();
    assert!(cp.checkpoint.size < 256, "{}", cp.checkpoint.size);
    a.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_come_back_by_themselves_after_the_database_restarts() {
    // Its own server, restarted under it (the shared test server stays up for the others).
    if crate::pg_support::server_url().is_none() {
        return;
    }
    let server = crate::pg_support::OwnServer::start();
    let (_dir, _, url) = dir_bucket();
    let a = SharedLog::start(
        &server.url(),
        Bucket::open(&url).unwrap(),
        signer(6),
        quick(),
    )
    .await
    .unwrap();
    let before = entry(0);
    assert_eq!(append(&a, before.clone()).await.unwrap().index, 0);
    server.run("restart");
    // Appends may fail while the pool finds its connections dead (503, nothing appended);
    // within seconds they are taken again, and integration resumes under a new lease.
    let t = Instant::now();
    let after = entry(1);
    let got = loop {
        match append(&a, after.clone()).await {
            Ok(got) => break got,
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        AppendError::Unavailable | AppendError::NotPublished { .. }
                    ),
                    "{e:?}"
                );
                assert!(t.elapsed() < Duration::from_secs(30), "not back: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    eprintln!("appends taken again {:?} after the restart", t.elapsed());
    assert_eq!(got.index, 1);
    assert!(wait_leader(&a, true, Duration::from_secs(10)).await < Duration::from_secs(10));
    assert_eq!(check_bucket(&url, 6, &[(0, before), (1, after)]).await, 2);
    a.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bucket_is_written_again_from_the_database() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (_dir, root, url) = dir_bucket();
    // A new deployment publishes its empty tree's checkpoint at once: the bucket is claimed.
    let a = start(&db, &url, 8, config()).await;
    let mut rx = a.status();
    rx.wait_for(|s| s.leader).await.unwrap();
    let t = Instant::now();
    while !root.join("checkpoint").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no checkpoint in a new bucket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut acked = Vec::new();
    for i in 0..300 {
        let e = entry(i);
        acked.push((append(&a, e.clone()).await.unwrap().index, e));
    }
    a.shutdown();
    // The bucket is lost; the next integrator writes it all again from the database.
    std::fs::remove_dir_all(&root).unwrap();
    let b = start(&db, &url, 8, config()).await;
    let t = Instant::now();
    while !root.join("checkpoint").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the bucket was not written again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(check_bucket(&url, 8, &acked).await, 300);
    b.shutdown();
}

/// The shared driver on Azure Blob Storage (`az://`, through the same `object_store` crate),
/// against Azurite, Microsoft's emulator: the store answers conditional writes as the rules
/// need (a create over an object and an update with a stale ETag refused, leaving it), two
/// instances make one tree that verifies from the container, the partial tiles of a full tile
/// are removed, and another deployment on the same container is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shared_driver_runs_on_azure_blob_storage() {
    let (Some(db), Some(bucket)) = (TestDb::create().await, crate::s3_support::az_url("shared"))
    else {
        return;
    };
    let container = bucket
        .strip_prefix("az://")
        .and_then(|r| r.split_once('/'))
        .unwrap();
    let store = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(container.0)
        .build()
        .unwrap();
    use object_store::ObjectStore;
    let probe = object_store::path::Path::from(format!("{}/probe", container.1));
    store
        .put(&probe, object_store::PutPayload::from_static(b"first"))
        .await
        .unwrap();
    crate::mirror::conditional_writes_are_refused(&store, &probe).await;

    let a = start(&db, &bucket, 11, config()).await;
    let b = start(&db, &bucket, 11, config()).await;
    let mut tasks = Vec::new();
    for i in 0..300u64 {
        let log = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let e = entry(i);
            (append(&log, e.clone()).await.unwrap().index, e)
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    assert_eq!(check_bucket(&bucket, 11, &acked).await, 300);
    let bundle = Bucket::open(&bucket)
        .unwrap()
        .get("tile/entries/000")
        .await
        .unwrap();
    assert!(
        bundle.is_some(),
        "the full entry bundle is in the container"
    );
    // Served to tile clients with the tlog-tiles caching rules.
    for (rel, cache) in [
        ("tile/0/000", "public, max-age=31536000, immutable"),
        ("tile/0/001.p/44", "no-cache"),
        ("checkpoint", "no-cache"),
    ] {
        let path = object_store::path::Path::from(format!("{}/{rel}", container.1));
        let got = store.get(&path).await.unwrap();
        let cc = got.attributes.get(&object_store::Attribute::CacheControl);
        assert_eq!(cc.map(|v| v.as_ref()), Some(cache), "{rel}");
    }
    // The partial tiles of the full first tile are removed (off the appends' path).
    let partials = object_store::path::Path::from(format!("{}/tile/0/000.p", container.1));
    let t = Instant::now();
    loop {
        use futures_util::TryStreamExt;
        let left: Vec<_> = store.list(Some(&partials)).try_collect().await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "partial tiles left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another database on the same container: refused, and the checkpoint stays.
    let before = checkpoint_in(&bucket).await;
    another_database_is_refused(&bucket, 11).await;
    assert_eq!(checkpoint_in(&bucket).await, before);
    a.shutdown();
    b.shutdown();
}
