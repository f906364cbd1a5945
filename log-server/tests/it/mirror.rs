//! The tile mirror (`serve --tiles`, spec/tiles-mirror.md) to a directory: what it writes is
//! what the log serves (tiles, entry bundles, the checkpoint), the root recomputed from the
//! mirrored tiles is the checkpoint's, partial tiles go once their full tile exists, a restart
//! resumes, another log's directory is refused without a byte written, an altered object
//! stops the mirror naming it, its checkpoint never moving past it, and a failing store is
//! retried until the mirror catches up by itself.
//!
//! With `COUNTERSIGN_TEST_S3_BUCKET` set (scripts/test.sh starts a SeaweedFS S3 server and sets
//! it with the `AWS_*` variables), the same runs against S3, with its headers and its
//! compare-and-swap.

use std::collections::BTreeMap;
use std::time::Duration;

use countersign_log::mirror::{new_tiles, tile_path, Bucket, TileMirror, IMMUTABLE, NO_CACHE};
use countersign_verifier::{leaf_hash, root_from_leaf_hashes, verify_checkpoint, Hash};

use crate::common::TestLog;
use crate::files::files_under;
use crate::tiles::fill;

const WAIT: Duration = Duration::from_secs(30);

/// The mirror's metrics as `/metrics` renders them.
fn metrics_text(m: &TileMirror) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(
        &mut text,
        countersign_log::http::MetricsSource::registry(m),
    )
    .unwrap();
    text
}

async fn served(log: &TestLog, path: &str) -> Vec<u8> {
    let r = log
        .client
        .get(format!("{}/{path}", log.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.bytes().await.unwrap().to_vec()
}

/// The mirror at `size`: every tile of the tree is there with the log's bytes, no partial tile
/// of a full one is, the checkpoint is the log's, and the root recomputed from the level-0 tiles (each
/// hash the leaf hash of its entry in the bundles) is the checkpoint's.
async fn check_mirror(log: &TestLog, objects: &BTreeMap<String, Vec<u8>>, size: u64) {
    let cp = verify_checkpoint(&objects["checkpoint"], &log.vkey, &[]).unwrap();
    assert_eq!(cp.checkpoint.size, size);
    let want = new_tiles(0, size);
    for &(level, index, width) in &want {
        let p = tile_path(level, index, width);
        let got = objects
            .get(&p)
            .unwrap_or_else(|| panic!("{p} is not mirrored"));
        assert_eq!(*got, served(log, &p).await, "{p}");
    }
    // Besides the tree's tiles, only narrower partial tiles of earlier checkpoints whose tile
    // is not full yet (a client holding such a checkpoint still reads them).
    let wanted: Vec<String> = want.iter().map(|&(l, i, w)| tile_path(l, i, w)).collect();
    for k in objects.keys().filter(|k| k.starts_with("tile/")) {
        if wanted.contains(k) {
            continue;
        }
        let (full, _) = k
            .split_once(".p/")
            .unwrap_or_else(|| panic!("{k}: a full tile the tree does not have"));
        assert!(
            !objects.contains_key(full),
            "{k} is left though {full} is there"
        );
        assert!(
            wanted.iter().any(|w| w.starts_with(&format!("{full}.p/"))),
            "{k}: not a tile the tree has a partial of"
        );
    }

    let mut leaves = Vec::new();
    let mut entries = Vec::new();
    for &(level, index, width) in &want {
        let b = &objects[&tile_path(level, index, width)];
        match level {
            Some(0) => leaves.extend(b.chunks(32).map(|c| Hash::from_slice(c).unwrap())),
            None => {
                let mut rest = &b[..];
                while !rest.is_empty() {
                    let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    entries.push(rest[2..2 + n].to_vec());
                    rest = &rest[2 + n..];
                }
            }
            _ => {}
        }
    }
    assert_eq!(leaves.len() as u64, size);
    assert_eq!(entries.len() as u64, size);
    for (e, l) in entries.iter().zip(&leaves) {
        assert_eq!(leaf_hash(e), *l);
    }
    assert_eq!(root_from_leaf_hashes(&leaves), cp.checkpoint.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_mirror_holds_the_log_for_a_tile_client() {
    let log = TestLog::start().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tiles");
    let bucket = Bucket::open(&format!("file://{}", dir.display())).unwrap();
    let m = TileMirror::start(log.state.log.clone(), bucket)
        .await
        .unwrap();

    fill(&log, 0, 300).await;
    let size = log.state.log.published().size;
    assert_eq!(size, 300);
    m.wait_for(300, WAIT).await.unwrap();
    let objects = files_under(&dir);
    check_mirror(&log, &objects, 300).await;
    assert!(objects.contains_key("tile/0/001.p/44"));

    // Past 512: tile 1 is full, and its partial tiles are gone.
    fill(&log, 300, 300).await;
    m.wait_for(600, WAIT).await.unwrap();
    let objects = files_under(&dir);
    check_mirror(&log, &objects, 600).await;
    assert!(!objects.keys().any(|k| k.starts_with("tile/0/001.p/")));
    assert!(!objects.keys().any(|k| k.starts_with("tile/entries/001.p/")));

    // A restart resumes on the same directory.
    let data = log.stop_keep().await;
    // The mirror lets go of the log once it closed; dropping it drops the last handle.
    m.finished().await;
    drop(m);
    let log = TestLog::start_in(data, |c| c).await;
    let bucket = Bucket::open(&format!("file://{}", dir.display())).unwrap();
    let m = TileMirror::start(log.state.log.clone(), bucket)
        .await
        .unwrap();
    fill(&log, 600, 100).await;
    m.wait_for(700, WAIT).await.unwrap();
    check_mirror(&log, &files_under(&dir), 700).await;

    // Another log's mirror on this directory is refused at start, and writes nothing.
    let other = TestLog::start().await;
    fill(&other, 0, 10).await;
    let before = files_under(&dir);
    let bucket = Bucket::open(&format!("file://{}", dir.display())).unwrap();
    let e = TileMirror::start(other.state.log.clone(), bucket)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not this log's"), "{e}");
    assert_eq!(files_under(&dir), before);
    other.stop().await;
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_object_stops_the_mirror_naming_it() {
    let log = TestLog::start().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tiles");
    // Other bytes where the first entry bundles will go.
    for w in 1..=5 {
        let p = dir.join(format!("tile/entries/000.p/{w}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not this log's entries").unwrap();
    }
    let bucket = Bucket::open(&format!("file://{}", dir.display())).unwrap();
    let m = TileMirror::start(log.state.log.clone(), bucket)
        .await
        .unwrap();
    fill(&log, 0, 5).await;
    let e = m.wait_for(5, WAIT).await.unwrap_err();
    assert!(e.contains("tile/entries/000.p/"), "{e}");
    assert!(e.contains("other bytes than this log's"), "{e}");
    // The checkpoint never covers what the bucket holds wrongly.
    let objects = files_under(&dir);
    if let Some(cp) = objects.get("checkpoint") {
        let cp = verify_checkpoint(cp, &log.vkey, &[]).unwrap();
        assert_eq!(cp.checkpoint.size, 0);
    }
    for w in 1..=5 {
        assert_eq!(
            objects[&format!("tile/entries/000.p/{w}")],
            b"not this log's entries"
        );
    }
    // Operators see it on /metrics.
    let text = metrics_text(&m);
    assert!(
        text.contains("countersign_tiles_mirror_stopped 1"),
        "{text}"
    );
    log.stop().await;
}

/// The same against S3 (SeaweedFS in scripts/test.sh): headers, compare-and-swap, and a
/// second log refused on the same bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_mirror_with_headers_and_one_log_per_bucket() {
    let Ok(bucket_url) = std::env::var("COUNTERSIGN_TEST_S3_BUCKET") else {
        // scripts/test.sh (and so CI) always runs it against a real S3 server.
        assert!(
            std::env::var_os("CI").is_none(),
            "COUNTERSIGN_TEST_S3_BUCKET is not set under CI: scripts/test.sh starts an S3 server"
        );
        eprintln!(
            "COUNTERSIGN_TEST_S3_BUCKET is not set: scripts/test.sh sets it with an S3 server"
        );
        return;
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    // A prefix of its own, so runs do not meet.
    let prefix = format!("run-{}-{}", std::process::id(), rand::random::<u32>());
    let url = format!("{bucket_url}/{prefix}");
    let log = TestLog::start().await;
    let m = TileMirror::start(log.state.log.clone(), Bucket::open(&url).unwrap())
        .await
        .unwrap();
    fill(&log, 0, 300).await;
    m.wait_for(300, WAIT).await.unwrap();

    // Read back anonymously over plain HTTP, as a tile client would.
    let bucket = bucket_url.trim_start_matches("s3://");
    let base = format!("{endpoint}/{bucket}/{prefix}");
    let http = reqwest::Client::new();
    let mut objects = BTreeMap::new();
    let mut paths: Vec<String> = new_tiles(0, 300)
        .into_iter()
        .map(|(l, i, w)| tile_path(l, i, w))
        .collect();
    paths.push("checkpoint".into());
    for p in &paths {
        let r = http.get(format!("{base}/{p}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        let cc = r.headers()["cache-control"].to_str().unwrap().to_owned();
        let full = p.starts_with("tile/") && !p.contains(".p/");
        assert_eq!(cc, if full { IMMUTABLE } else { NO_CACHE }, "{p}");
        objects.insert(p.clone(), r.bytes().await.unwrap().to_vec());
    }
    let cp = verify_checkpoint(&objects["checkpoint"], &log.vkey, &[]).unwrap();
    assert_eq!(cp.checkpoint.size, 300);

    // Another log on the same bucket and prefix is refused, and the checkpoint stays.
    let other = TestLog::start().await;
    let e = TileMirror::start(other.state.log.clone(), Bucket::open(&url).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not this log's"), "{e}");
    let again = http.get(format!("{base}/checkpoint")).send().await.unwrap();
    assert_eq!(again.bytes().await.unwrap().to_vec(), objects["checkpoint"]);

    // The store answers conditional writes as S3 does (the mirror relies on it): a create over
    // an existing object and an update with a stale ETag are both refused, and leave it.
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .unwrap();
    let path = object_store::path::Path::from(format!("{prefix}/checkpoint"));
    conditional_writes_are_refused(&store, &path).await;
    let again = http.get(format!("{base}/checkpoint")).send().await.unwrap();
    assert_eq!(again.bytes().await.unwrap().to_vec(), objects["checkpoint"]);

    // The log goes on; the bucket follows.
    fill(&log, 300, 300).await;
    m.wait_for(600, WAIT).await.unwrap();
    let r = http
        .get(format!("{base}/tile/0/001.p/44"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the partial tile went once its full tile was written"
    );
    other.stop().await;
    log.stop().await;
}

/// A store that fails (here a directory whose `tile` is a file, so no tile can be written) is
/// retried, not given up: the checkpoint does not move past what is written, the failures are
/// counted, and once the store works again the mirror catches up by itself, nothing missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_is_retried_and_the_mirror_catches_up() {
    let log = TestLog::start().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tile"), b"in the way").unwrap();
    let bucket = Bucket::open(&format!("file://{}", dir.display())).unwrap();
    let m = TileMirror::start(log.state.log.clone(), bucket)
        .await
        .unwrap();
    fill(&log, 0, 20).await;
    // It keeps failing, and says so.
    let mut rx = m.status();
    tokio::time::timeout(WAIT, rx.wait_for(|s| s.retrying.is_some()))
        .await
        .unwrap()
        .unwrap();
    let retrying = m.status().borrow().retrying.clone().unwrap();
    assert!(retrying.starts_with("bucket: "), "{retrying}");
    assert!(
        m.status().borrow().stopped.is_none(),
        "a failing store is not a conflict"
    );
    if let Ok(cp) = std::fs::read(dir.join("checkpoint")) {
        let cp = verify_checkpoint(&cp, &log.vkey, &[]).unwrap();
        assert_eq!(
            cp.checkpoint.size, 0,
            "no checkpoint past tiles not written"
        );
    }
    let text = metrics_text(&m);
    let failures: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("countersign_tiles_mirror_write_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 1, "{text}");

    // The store works again: the mirror catches up without being told.
    std::fs::remove_file(dir.join("tile")).unwrap();
    fill(&log, 20, 10).await;
    m.wait_for(30, WAIT).await.unwrap();
    check_mirror(&log, &files_under(&dir), 30).await;
    assert!(m.status().borrow().retrying.is_none());
    log.stop().await;
}

/// The rules the bucket relies on, as `store` answers them for the existing object `path`: a
/// create over it is refused (`AlreadyExists`), and so is an update with a stale ETag
/// (`Precondition`). The object is left as it was.
pub(crate) async fn conditional_writes_are_refused(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
) {
    let before = store.get(path).await.unwrap().bytes().await.unwrap();
    let forged = object_store::PutPayload::from(b"forged\n".to_vec());
    let e = store
        .put_opts(path, forged.clone(), object_store::PutMode::Create.into())
        .await
        .unwrap_err();
    assert!(
        matches!(e, object_store::Error::AlreadyExists { .. }),
        "{e}"
    );
    let stale = object_store::UpdateVersion {
        e_tag: Some("\"0x8D000000000000\"".into()),
        version: None,
    };
    let e = store
        .put_opts(path, forged, object_store::PutMode::Update(stale).into())
        .await
        .unwrap_err();
    assert!(matches!(e, object_store::Error::Precondition { .. }), "{e}");
    let after = store.get(path).await.unwrap().bytes().await.unwrap();
    assert_eq!(after, before);
}
