//! A data directory of the layout before tiles (one key per entry and per node hash) opens into
//! tiles and entry bundles (`storage::layout`): the same checkpoint and, byte for byte, the
//! tiles and bundles the release that wrote it served (`tests/data/layout-v1/expected.json`,
//! recorded from that release), also when the rewrite is cut short by a crash and resumed at
//! the next start. The log then grows on the new layout, consistent with the old checkpoint.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use countersign_verifier::{
    leaf_hash, verify_checkpoint, verify_consistency, verify_inclusion, Hash, VerifierKey,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::log_common::{hashes, passkey, TestLog};
use crate::process::{free_port, Process};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/layout-v1");
const ABORT_ENV: &str = "COUNTERSIGN_TEST_MIGRATION_ABORT_AT";
const ORIGIN: &str = "localhost/countersign";

/// The column families the database's latest OPTIONS file names.
fn column_families(db: &Path) -> Vec<String> {
    let mut options: Vec<_> = std::fs::read_dir(db)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("OPTIONS-")
                .and_then(|n| n.parse::<u64>().ok())
                .map(|n| (n, name))
        })
        .collect();
    options.sort();
    let text = std::fs::read_to_string(db.join(&options.last().unwrap().1)).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("[CFOptions \""))
        .map(|l| l.trim_end_matches("\"]").to_owned())
        .collect()
}

async fn get_bytes(client: &reqwest::Client, url: &str) -> (u16, Vec<u8>) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_data_directory_is_rewritten_into_tiles_once_even_across_a_crash() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/expected.json")).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .args(["xzf", &format!("{FIXTURE}/data.tgz"), "-C"])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success());
    let dir = tmp.path().join("data");
    std::fs::rename(tmp.path().join("log"), &dir).unwrap();
    let db = dir.join("db");
    assert!(column_families(&db).contains(&"hashes".to_owned()));
    let vkey = VerifierKey::parse(&std::fs::read_to_string(dir.join("log.vkey")).unwrap()).unwrap();
    let old = verify_checkpoint(
        expected["checkpoint"].as_str().unwrap().as_bytes(),
        &vkey,
        &[],
    )
    .unwrap()
    .checkpoint;
    assert_eq!(old.size, 701);

    // The rewrite stops (a crash: SIGABRT, nothing cleaned up) after entries 0..600 are in
    // tiles: two full bundles, the third's first 88 entries still one key each.
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--origin", ORIGIN])
        .env(ABORT_ENV, "600")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(6), "{said}");
    assert!(
        said.contains("rewriting the data directory into tiles"),
        "{said}"
    );
    // Not finished: the old node hashes are still there.
    assert!(column_families(&db).contains(&"hashes".to_owned()));

    // The next start resumes and finishes it; the server then serves exactly what the old
    // release served.
    let mut server = Process::spawn(&dir, port, &["--origin", ORIGIN]);
    let client = reqwest::Client::new();
    server.wait_ready(&client).await;
    for (path, want) in expected["paths"].as_object().unwrap() {
        let (status, body) = get_bytes(&client, &format!("{}/{path}", server.url)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            hex::encode(Sha256::digest(&body)),
            want["sha256"].as_str().unwrap(),
            "{path} differs from what the release that wrote the directory served"
        );
    }
    // Tiles of sizes the tree has passed stay served as before; proofs check against the
    // old checkpoint.
    for index in [0u64, 255, 256, 599, 600, 700] {
        let (status, v) = get_bytes(
            &client,
            &format!(
                "{}/v1/log/proof/inclusion?index={index}&tree_size=701",
                server.url
            ),
        )
        .await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&v).unwrap();
        let (_, entry) =
            get_bytes(&client, &format!("{}/v1/log/entries/{index}", server.url)).await;
        let entry: Value = serde_json::from_slice(&entry).unwrap();
        let bytes = hex::decode(entry["entry"].as_str().unwrap()).unwrap();
        verify_inclusion(
            &leaf_hash(&bytes),
            index,
            701,
            &hashes(&v["inclusion_proof"]),
            &old.root,
        )
        .unwrap_or_else(|e| panic!("entry {index}: {e:?}"));
    }
    server.terminate();
    assert!(!column_families(&db).contains(&"hashes".to_owned()));

    // The log grows on the new layout: past the third bundle's end, consistent with the old
    // checkpoint; the third tile and bundle, now full, begin with what the old release served
    // as their partial forms.
    let log = TestLog::start_in(tmp, |mut c| {
        c.origin = Some(ORIGIN.into());
        c
    })
    .await;
    for i in 0..70 {
        log.enrol(&passkey(1000 + i), &format!("approver-{i}"))
            .await;
    }
    let cp = log.checkpoint().await;
    assert_eq!(cp.size, 771);
    let (status, v) = log
        .get(&format!(
            "/v1/log/proof/consistency?first=701&second={}",
            cp.size
        ))
        .await;
    assert_eq!(status, 200);
    verify_consistency(
        701,
        cp.size,
        &old.root,
        &cp.root,
        &hashes(&v["consistency_proof"]),
    )
    .unwrap();
    for (full, partial) in [
        ("tile/0/002", "tile/0/002.p/189"),
        ("tile/entries/002", "tile/entries/002.p/189"),
    ] {
        let (status, body) = get_bytes(&log.client, &format!("{}/{full}", log.url)).await;
        assert_eq!(status, 200, "{full}");
        let want = &expected["paths"][partial];
        let len = want["len"].as_u64().unwrap() as usize;
        assert_eq!(
            hex::encode(Sha256::digest(&body[..len])),
            want["sha256"].as_str().unwrap(),
            "{full}"
        );
    }
    // Every level-0 hash of the new tree is in its tiles, and they make its root.
    let mut leaves = Vec::new();
    for path in ["tile/0/000", "tile/0/001", "tile/0/002", "tile/0/003.p/3"] {
        let (status, body) = get_bytes(&log.client, &format!("{}/{path}", log.url)).await;
        assert_eq!(status, 200, "{path}");
        leaves.extend(body.chunks(32).map(|c| Hash::from_slice(c).unwrap()));
    }
    assert_eq!(
        countersign_verifier::root_from_leaf_hashes(&leaves),
        cp.root
    );
    log.stop().await;
}
