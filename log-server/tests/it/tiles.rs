//! A tile client: inclusion and consistency proofs built only from `/checkpoint`, hash tiles and
//! entry bundles, verified with the verifier crate.

use std::collections::HashMap;

use countersign_log::tiles::format_index;
use countersign_verifier::{
    consistency_proof_ranges, fold_subtrees, inclusion_proof_ranges, leaf_hash, node_hash,
    verify_consistency, verify_inclusion, Checkpoint, Entry, Hash, Revocation,
};

use crate::common::{hashes, TestLog};

struct TileClient<'a> {
    log: &'a TestLog,
    size: u64,
    cache: HashMap<String, Vec<u8>>,
}

impl TileClient<'_> {
    async fn fetch(&mut self, path: String) -> Vec<u8> {
        if let Some(b) = self.cache.get(&path) {
            return b.clone();
        }
        let r = self
            .log
            .client
            .get(format!("{}/{path}", self.log.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let cc = r.headers()["cache-control"].to_str().unwrap().to_owned();
        assert!(cc.contains("immutable"), "{path}: {cc}");
        let b = r.bytes().await.unwrap().to_vec();
        self.cache.insert(path, b.clone());
        b
    }

    fn path(kind: &str, n: u64, width: u64) -> String {
        if width == 256 {
            format!("tile/{kind}/{}", format_index(n))
        } else {
            format!("tile/{kind}/{}.p/{width}", format_index(n))
        }
    }

    /// Hash of the complete subtree (`level`, `index`) from the tile holding its leaves' level.
    async fn node(&mut self, level: u8, index: u64) -> Hash {
        let tile_level = u32::from(level / 8);
        let r = level % 8;
        let first = index << r;
        let count = 1u64 << r;
        let n = first / 256;
        let available = self.size >> (8 * tile_level);
        let width = (available - n * 256).min(256);
        let tile = self
            .fetch(Self::path(&tile_level.to_string(), n, width))
            .await;
        assert_eq!(tile.len() as u64, width * 32);
        let off = (first % 256) as usize;
        let mut hs: Vec<Hash> = (0..count as usize)
            .map(|k| Hash::from_slice(&tile[(off + k) * 32..(off + k + 1) * 32]).unwrap())
            .collect();
        while hs.len() > 1 {
            hs = hs.chunks(2).map(|c| node_hash(&c[0], &c[1])).collect();
        }
        hs[0]
    }

    async fn ranges_hashes(&mut self, ranges: &[countersign_verifier::LeafRange]) -> Vec<Hash> {
        let mut out = Vec::new();
        for r in ranges {
            let mut hs = Vec::new();
            for s in r.subtrees() {
                hs.push(self.node(s.level, s.index).await);
            }
            out.push(fold_subtrees(&hs).unwrap());
        }
        out
    }

    /// The leaf hash of entry `i`, from the entry bundle, cross-checked with the level-0 tile.
    async fn leaf(&mut self, i: u64) -> Hash {
        let n = i / 256;
        let width = (self.size - n * 256).min(256);
        let bundle = self.fetch(Self::path("entries", n, width)).await;
        let mut rest = &bundle[..];
        let mut entries = Vec::new();
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            entries.push(rest[2..2 + len].to_vec());
            rest = &rest[2 + len..];
        }
        assert_eq!(entries.len() as u64, width);
        let entry = &entries[(i % 256) as usize];
        Entry::decode(entry).unwrap();
        let h = leaf_hash(entry);
        assert_eq!(self.node(0, i).await, h);
        h
    }
}

/// Appends revocation entries `start..start + count` (their `time_ms`) from 16 tasks.
pub(crate) async fn fill(log: &TestLog, start: u64, count: u64) {
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let handle = log.state.log.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = start + t;
            while i < start + count {
                let e = Entry::Revocation(Revocation {
                    approver_id: "approver-1".into(),
                    credential_id: vec![7; 16],
                    enrolment_index: 0,
                    reason: "lost".into(),
                    time_ms: i,
                })
                .encode()
                .unwrap();
                handle.append_verified_entry(e).await.unwrap();
                i += 16;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_from_tiles_verify() {
    let log = TestLog::start().await;
    let mut pk = crate::common::passkey(1);
    let enrol = log.enrol(&pk, "approver-1").await;
    let token = log.submitter().await;
    let body = crate::common::signed_decision(&mut pk, "approver-1", enrol, 1, |_| {});
    let (status, _) = log.post("/v1/log/decisions", &token, &body).await;
    assert_eq!(status, 201);
    let small = log.checkpoint().await;
    assert_eq!(small.size, 2);
    fill(&log, 0, 298).await;
    let mid = log.checkpoint().await;
    assert_eq!(mid.size, 300);
    fill(&log, 298, 70_000 - 300).await;
    let big = log.checkpoint().await;
    assert_eq!(big.size, 70_000);

    for cp in [&small, &mid, &big] {
        check_size(&log, cp, &[&small, &mid, &big]).await;
    }
    // The shared C2SP vector for a 70,000-leaf tree names these partial tiles.
    for p in [
        "tile/0/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
        "tile/entries/273.p/112",
    ] {
        let r = log
            .client
            .get(format!("{}/{p}", log.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{p}");
    }
    for p in [
        "tile/0/274",
        "tile/0/273",
        "tile/0/273.p/113",
        "tile/2/000",
        "tile/3/000.p/1",
    ] {
        let r = log
            .client
            .get(format!("{}/{p}", log.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{p}");
    }
    log.stop().await;
}

async fn check_size(log: &TestLog, cp: &Checkpoint, all: &[&Checkpoint]) {
    let mut tc = TileClient {
        log,
        size: cp.size,
        cache: HashMap::new(),
    };
    let samples = [0, 1, cp.size / 3, cp.size / 2 + 1, cp.size - 1];
    for &i in samples.iter().filter(|&&i| i < cp.size) {
        let leaf = tc.leaf(i).await;
        let ranges = inclusion_proof_ranges(i, cp.size).unwrap();
        let proof = tc.ranges_hashes(&ranges).await;
        verify_inclusion(&leaf, i, cp.size, &proof, &cp.root).unwrap();
        // The JSON convenience endpoint must give the same proof.
        let (status, v) = log
            .get(&format!(
                "/v1/log/proof/inclusion?index={i}&tree_size={}",
                cp.size
            ))
            .await;
        assert_eq!(status, 200);
        assert_eq!(hashes(&v["inclusion_proof"]), proof);
        assert_eq!(v["leaf_hash"].as_str().unwrap(), leaf.to_hex());
    }
    for old in all.iter().filter(|o| o.size <= cp.size) {
        let ranges = consistency_proof_ranges(old.size, cp.size).unwrap();
        let proof = tc.ranges_hashes(&ranges).await;
        verify_consistency(old.size, cp.size, &old.root, &cp.root, &proof).unwrap();
        let (status, v) = log
            .get(&format!(
                "/v1/log/proof/consistency?first={}&second={}",
                old.size, cp.size
            ))
            .await;
        assert_eq!(status, 200);
        assert_eq!(hashes(&v["consistency_proof"]), proof);
    }
}
