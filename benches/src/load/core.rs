//! In-process measurements on one disk, in one run: raw RocksDB synced `WriteBatch`es (the
//! ceiling), the log core appending pre-verified ~1 KiB entries, and building the same tree in
//! memory with our `RootStack`, `rs_merkle` and `ct-merkle`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use countersign_log::{Config, RpPolicy, SequencerConfig};
use countersign_verifier::{
    leaf_hash, node_hash, Decision, Enrolment, Entry, Hash, RootStack, SignedDecision,
};
use rocksdb::{Options, WriteBatch, WriteOptions, DB};

use super::stats::{summarise, CpuTimes, MachineLoad, Summary};

/// Results of `core`.
#[derive(Debug)]
pub struct CoreReport {
    /// Entries/s of raw RocksDB batches of 256 x 1 KiB, `sync=true`.
    pub rocksdb_per_sec: f64,
    /// Entries/s of raw RocksDB writing the same entries in the log's stored form: per 256
    /// entries one synced batch of their entry bundle (one value) and one 8 KiB hash tile.
    pub rocksdb_tiles_per_sec: f64,
    /// The machine while the tile-form raw ceiling was measured.
    pub rocksdb_tiles_machine: Option<MachineLoad>,
    /// Entries/s of raw RocksDB writing every value the log core writes for a decision, in the
    /// log's own store (its column families and tuning), in synced batches of 256: the stored
    /// form plus each entry's leaf-hash and assertion index keys, the credential's sign count,
    /// and a checkpoint and tree state per batch. No decisions, no hashing, no signing.
    pub rocksdb_same_bytes_per_sec: f64,
    /// The machine while that ceiling was measured.
    pub rocksdb_same_bytes_machine: Option<MachineLoad>,
    /// Entries/s of durable log-core appends.
    pub log_per_sec: f64,
    /// Latency of log-core appends (enqueue to durable checkpoint).
    pub log_latency: Summary,
    /// Leaves/s: our compact range (`RootStack::push`) over the same leaf hashes.
    pub rootstack_per_sec: f64,
    /// Leaves/s: `rs_merkle::MerkleTree::from_leaves` over the same leaf hashes.
    pub rs_merkle_bulk_per_sec: f64,
    /// Leaves/s: `rs_merkle` one leaf at a time (`insert` + `commit`), on a smaller tree.
    pub rs_merkle_incremental_per_sec: (f64, usize),
    /// Leaves/s: `ct_merkle::mem_backed_tree::MemoryBackedTree::push` of the entries + root.
    pub ct_merkle_per_sec: f64,
    /// Tree size of the log after the run.
    pub tree_size: u64,
    /// The machine while raw RocksDB was measured.
    pub rocksdb_machine: Option<MachineLoad>,
    /// The machine while the log core was measured.
    pub log_machine: Option<MachineLoad>,
}

#[derive(Clone)]
struct Rfc6962;

impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        countersign_verifier::sha256(data)
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => node_hash(&Hash(*left), &Hash(*r)).0,
            None => *left,
        }
    }
}

/// Pre-encoded decision entries of about `entry_bytes` bytes, all for one credential.
fn entries(
    count: usize,
    entry_bytes: usize,
    enrolment: &Enrolment,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let mut nonce = [0u8; 32];
        nonce[..8].copy_from_slice(&i.to_be_bytes());
        let pad = entry_bytes.saturating_sub(300).min(4000);
        let client_data_json = format!(
            "{{\"type\":\"webauthn.get\",\"challenge\":\"{i:016x}{}\",\"origin\":\"https://a.example\"}}",
            "A".repeat(pad)
        )
        .into_bytes();
        let mut authenticator_data = vec![0u8; 37];
        authenticator_data[32] = 0x05;
        let e = Entry::Decision(SignedDecision {
            decision: Decision::Approve,
            statement_hash: countersign_verifier::sha256(&i.to_le_bytes()),
            nonce,
            approver_id: enrolment.approver_id.clone(),
            credential_id: enrolment.credential_id.clone(),
            public_key: enrolment.public_key.clone(),
            authenticator_data,
            client_data_json,
            signature: vec![0x30; 70],
            time_ms: 1_700_000_000_000 + i,
            enrolment_index: 0,
        })
        .encode()
        .map_err(|e| anyhow::anyhow!("encoding a bench entry: {e}"))?;
        out.push(e);
    }
    Ok(out)
}

/// Raw RocksDB: `batches` WriteBatches of 256 x 1 KiB values, each written with `sync=true`.
pub fn rocksdb_ceiling(dir: &Path, total_entries: usize) -> anyhow::Result<f64> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    let db = DB::open(&opts, dir.join("raw-rocksdb"))?;
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    let value = vec![0xabu8; 1024];
    let batches = total_entries.div_ceil(256);
    let start = Instant::now();
    for b in 0..batches as u64 {
        let mut wb = WriteBatch::default();
        for i in 0..256u64 {
            wb.put((b * 256 + i).to_be_bytes(), &value);
        }
        db.write_opt(wb, &wo)?;
    }
    Ok((batches * 256) as f64 / start.elapsed().as_secs_f64())
}

/// Raw RocksDB in the log's stored form: per 256 entries of 1 KiB, one `sync=true` batch of
/// one value holding them (an entry bundle: each with its 2-byte length) and one 8 KiB value
/// (a hash tile).
pub fn rocksdb_tiles_ceiling(dir: &Path, total_entries: usize) -> anyhow::Result<f64> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    let db = DB::open(&opts, dir.join("raw-rocksdb-tiles"))?;
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    let batches = total_entries.div_ceil(256);
    let mut bundle = Vec::with_capacity(256 * 1026);
    let mut tile = vec![0u8; 256 * 32];
    let start = Instant::now();
    for b in 0..batches as u64 {
        bundle.clear();
        for i in 0..256u64 {
            bundle.extend_from_slice(&1024u16.to_be_bytes());
            let mut entry = [0xabu8; 1024];
            entry[..8].copy_from_slice(&(b * 256 + i).to_be_bytes());
            bundle.extend_from_slice(&entry);
        }
        tile[..8].copy_from_slice(&b.to_be_bytes());
        let mut wb = WriteBatch::default();
        wb.put(b.to_be_bytes(), &bundle);
        let mut key = [0u8; 9];
        key[1..].copy_from_slice(&b.to_be_bytes());
        wb.put(key, &tile);
        db.write_opt(wb, &wo)?;
    }
    Ok((batches * 256) as f64 / start.elapsed().as_secs_f64())
}

/// Raw RocksDB writing what the log core writes per decision entry, in the log's own store
/// (see [`CoreReport::rocksdb_same_bytes_per_sec`]).
pub fn rocksdb_same_bytes_ceiling(dir: &Path, total_entries: usize) -> anyhow::Result<f64> {
    use countersign_log::storage::{
        tile_key, Store, CF_ASSERTIONS, CF_BUNDLES, CF_CHECKPOINTS, CF_CREDENTIALS, CF_LEAF_INDEX,
        CF_META, CF_TILES, META_TREE,
    };
    let store = Store::open(&dir.join("raw-rocksdb-same-bytes"))?;
    let cf = |n: &str| store.cf(n).map_err(|e| anyhow::anyhow!("{e}"));
    let (bundles, tiles, leaves, assertions, creds, checkpoints, meta) = (
        cf(CF_BUNDLES)?,
        cf(CF_TILES)?,
        cf(CF_LEAF_INDEX)?,
        cf(CF_ASSERTIONS)?,
        cf(CF_CREDENTIALS)?,
        cf(CF_CHECKPOINTS)?,
        cf(CF_META)?,
    );
    let batches = total_entries.div_ceil(256) as u64;
    let mut bundle = Vec::with_capacity(256 * 1026);
    let mut tile = vec![0u8; 256 * 32];
    let note = [b'n'; 180];
    let tree = [0u8; 8 + 20 * 32];
    let start = Instant::now();
    for b in 0..batches {
        bundle.clear();
        let mut wb = WriteBatch::default();
        for i in b * 256..(b + 1) * 256 {
            bundle.extend_from_slice(&1024u16.to_be_bytes());
            let mut entry = [0xabu8; 1024];
            entry[..8].copy_from_slice(&i.to_be_bytes());
            bundle.extend_from_slice(&entry);
            let index = i.to_be_bytes();
            wb.put_cf(leaves, countersign_verifier::sha256(&index), index);
            wb.put_cf(
                assertions,
                countersign_verifier::sha256(&(!i).to_be_bytes()),
                index,
            );
            wb.put_cf(creds, b"bench-credential", [0u8; 12]);
        }
        tile[..8].copy_from_slice(&b.to_be_bytes());
        wb.put_cf(bundles, b.to_be_bytes(), &bundle);
        wb.put_cf(tiles, tile_key(0, b), &tile);
        wb.put_cf(checkpoints, ((b + 1) * 256).to_be_bytes(), note);
        wb.put_cf(meta, META_TREE, tree);
        store.write_sync(wb).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok((batches * 256) as f64 / start.elapsed().as_secs_f64())
}

/// Runs every measurement. The log is left in `dir/log` (usable with `serve --data-dir`).
pub async fn run(
    dir: &Path,
    count: usize,
    entry_bytes: usize,
    concurrency: usize,
    group: usize,
) -> anyhow::Result<CoreReport> {
    let cpu = CpuTimes::now();
    let rocksdb_per_sec = rocksdb_ceiling(dir, count.min(256 * 2000))?;
    let rocksdb_machine = cpu.and_then(CpuTimes::until_now);
    let cpu = CpuTimes::now();
    let rocksdb_tiles_per_sec = rocksdb_tiles_ceiling(dir, count)?;
    let rocksdb_tiles_machine = cpu.and_then(CpuTimes::until_now);
    let cpu = CpuTimes::now();
    let rocksdb_same_bytes_per_sec = rocksdb_same_bytes_ceiling(dir, count)?;
    let rocksdb_same_bytes_machine = cpu.and_then(CpuTimes::until_now);

    let pk = countersign_testvectors::SoftPasskey::new(
        countersign_testvectors::Alg::Es256,
        1,
        "localhost",
    );
    let enrolment = Enrolment {
        approver_id: "bench-approver".into(),
        credential_id: pk.credential_id().to_vec(),
        public_key: pk.cose_public_key(),
        aaguid: [0; 16],
        attestation_format: "none".into(),
        attestation: countersign_verifier::AttestationRecord::NotRecorded,
        time_ms: 1_700_000_000_000,
    };
    let all = entries(count, entry_bytes, &enrolment)?;
    let mean = all.iter().map(Vec::len).sum::<usize>() / all.len().max(1);
    eprintln!("{count} entries of {mean} bytes on average");

    let data = dir.join("log");
    let cfg = Config {
        data_dir: data.clone(),
        origin: None,
        policy: RpPolicy {
            rp_id: "localhost".into(),
            allowed_origins: vec!["http://localhost:8080".into()],
            require_user_verification: false,
        },
        sequencer: SequencerConfig {
            queue_capacity: 1 << 17,
            batch_max_entries: 4096,
            batch_max_age: Duration::ZERO,
            checkpoint_interval: Duration::from_secs(5),
        },
        max_body_bytes: countersign_log::DEFAULT_MAX_BODY_BYTES,
        column_families: Vec::new(),
    };
    let started = tokio::task::spawn_blocking(move || countersign_log::start(cfg)).await??;
    let log = started.api.log.clone();
    let enrol_entry = Entry::Enrolment(enrolment)
        .encode()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let e = log.append_verified_entry(enrol_entry).await?;
    if e.index != 0 {
        bail!(
            "run core on a fresh --dir (the enrolment landed at {})",
            e.index
        );
    }
    let shared = Arc::new(all);
    let cpu = CpuTimes::now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    // `concurrency` entries in flight: that many one-entry tasks, or concurrency / group tasks
    // each waiting for a group of `group` entries.
    let group = group.max(1);
    let appenders = (concurrency.max(1) / group).max(1);
    let per_task = count.div_ceil(appenders);
    for t in 0..appenders {
        let (log, shared) = (log.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            let mut order = Vec::with_capacity(per_task);
            let end = ((t + 1) * per_task).min(shared.len());
            let mut i = t * per_task;
            while i < end {
                let n = group.min(end - i);
                let t0 = Instant::now();
                if group == 1 {
                    let a = log.append_verified_entry(shared[i].clone()).await?;
                    lat.push(t0.elapsed());
                    order.push((a.index, i));
                } else {
                    let batch = shared[i..i + n].to_vec();
                    let results = log.append_verified_entries(batch).await;
                    let took = t0.elapsed();
                    for (k, r) in results.into_iter().enumerate() {
                        let a = r?;
                        lat.push(took);
                        order.push((a.index, i + k));
                    }
                }
                i += n;
            }
            Ok::<_, countersign_log::AppendError>((lat, order))
        }));
    }
    let mut lat = Vec::with_capacity(count);
    // Leaf order is the order the sequencer saw the entries, not the order they were made.
    let mut by_index = vec![usize::MAX; count + 1];
    for t in tasks {
        let (l, order) = t.await?.context("log-core append failed")?;
        lat.extend(l);
        for (index, i) in order {
            if let Some(slot) = by_index.get_mut(index as usize) {
                *slot = i;
            }
        }
    }
    let log_per_sec = count as f64 / start.elapsed().as_secs_f64();
    let log_machine = cpu.and_then(CpuTimes::until_now);
    let tree_size = log.published().size;
    let root = log.published().root;
    for line in log.metrics().render().lines() {
        if line.ends_with("_sum") || line.contains("_sum ") || line.contains("_count ") {
            eprintln!("metric {line}");
        }
    }
    log.shutdown().await;

    // In-memory trees over the same leaves (including the enrolment at index 0).
    let leaves: Vec<Hash> = std::iter::once(leaf_hash(
        &Entry::Enrolment(Enrolment {
            approver_id: "bench-approver".into(),
            credential_id: pk.credential_id().to_vec(),
            public_key: pk.cose_public_key(),
            aaguid: [0; 16],
            attestation_format: "none".into(),
            attestation: countersign_verifier::AttestationRecord::NotRecorded,
            time_ms: 1_700_000_000_000,
        })
        .encode()
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
    .chain(
        by_index[1..]
            .iter()
            .filter_map(|&i| shared.get(i))
            .map(|e| leaf_hash(e)),
    )
    .collect();
    if leaves.len() != count + 1 {
        bail!("the log did not append every entry exactly once");
    }

    let t = Instant::now();
    let mut stack = RootStack::default();
    for l in &leaves {
        stack.push(*l);
    }
    let ours = stack.root();
    let rootstack_per_sec = leaves.len() as f64 / t.elapsed().as_secs_f64();
    if ours != root {
        bail!("the log's root differs from the in-memory root");
    }

    let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    let t = Instant::now();
    let tree = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&raw);
    let rs_root = tree.root();
    let rs_merkle_bulk_per_sec = raw.len() as f64 / t.elapsed().as_secs_f64();
    if rs_root != Some(ours.0) {
        bail!("rs_merkle computed another root");
    }

    let n_inc = raw.len().min(20_000);
    let t = Instant::now();
    let mut inc = rs_merkle::MerkleTree::<Rfc6962>::new();
    for l in &raw[..n_inc] {
        inc.insert(*l).commit();
    }
    let inc_root = inc.root();
    let rs_inc = n_inc as f64 / t.elapsed().as_secs_f64();
    if inc_root.is_none() {
        bail!("rs_merkle incremental tree has no root");
    }

    let t = Instant::now();
    let mut ct =
        ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2_digest011::Sha256, Vec<u8>>::new();
    ct.push(
        Entry::Enrolment(Enrolment {
            approver_id: "bench-approver".into(),
            credential_id: pk.credential_id().to_vec(),
            public_key: pk.cose_public_key(),
            aaguid: [0; 16],
            attestation_format: "none".into(),
            attestation: countersign_verifier::AttestationRecord::NotRecorded,
            time_ms: 1_700_000_000_000,
        })
        .encode()
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    for e in by_index[1..].iter().filter_map(|&i| shared.get(i)) {
        ct.push(e.clone());
    }
    let ct_root = ct.root();
    let ct_merkle_per_sec = leaves.len() as f64 / t.elapsed().as_secs_f64();
    if ct_root.as_bytes().as_slice() != ours.0.as_slice() {
        bail!("ct-merkle computed another root");
    }

    Ok(CoreReport {
        rocksdb_per_sec,
        rocksdb_tiles_per_sec,
        rocksdb_tiles_machine,
        rocksdb_same_bytes_per_sec,
        rocksdb_same_bytes_machine,
        log_per_sec,
        log_latency: summarise(&mut lat),
        rootstack_per_sec,
        rs_merkle_bulk_per_sec,
        rs_merkle_incremental_per_sec: (rs_inc, n_inc),
        ct_merkle_per_sec,
        tree_size,
        rocksdb_machine,
        log_machine,
    })
}
