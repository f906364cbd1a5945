//! `countersign-bench shared`: the shared driver (PostgreSQL and a bucket) in this process,
//! against the real engines, beside raw PostgreSQL inserting the same entries in the same
//! batches and beside the embedded driver, in one run on one machine.
//!
//! Each phase appends `count` entries of `entry_bytes` random bytes, `concurrency` in flight,
//! and times each append from the call to its answer: for the shared driver that is from the
//! request to a checkpoint covering it published in the bucket (what "acknowledged" means
//! there), for the embedded driver to a synced write with its signed checkpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use countersign_log::bucket::Bucket;
use countersign_log::sequencer::{AppendKind, SequencerConfig};
use countersign_log::shared::{SharedConfig, SharedLog};
use countersign_log::signer::LogSigner;
use countersign_verifier::leaf_hash;
use tokio_postgres::NoTls;

use super::stats::{summarise, CpuTimes, MachineLoad, Summary};

/// One timed phase.
#[derive(Debug)]
pub struct Phase {
    /// What ran.
    pub name: String,
    /// Entries per second.
    pub per_sec: f64,
    /// Latency of each append (raw PostgreSQL: of each batch's transaction).
    pub latency: Summary,
    /// Mean entries per sequencing transaction.
    pub mean_batch: f64,
    /// How busy the machine was.
    pub machine: Option<MachineLoad>,
}

/// Every phase of a run.
#[derive(Debug)]
pub struct SharedReport {
    /// In the order run.
    pub phases: Vec<Phase>,
}

fn entries(count: usize, entry_bytes: usize) -> Arc<Vec<Vec<u8>>> {
    Arc::new(
        (0..count)
            .map(|i| {
                let mut e = vec![0u8; entry_bytes.max(16)];
                rand::Rng::fill(&mut rand::thread_rng(), &mut e[..]);
                e[..8].copy_from_slice(&(i as u64).to_be_bytes());
                e
            })
            .collect(),
    )
}

/// A fresh database on the server at `server_url`: its URL.
async fn fresh_database(server_url: &str) -> anyhow::Result<String> {
    let (client, conn) = tokio_postgres::connect(server_url, NoTls)
        .await
        .with_context(|| "connecting to the PostgreSQL server".to_owned())?;
    tokio::spawn(conn);
    let name = format!("bench_{:032x}", rand::random::<u128>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let mut url = url::Url::parse(server_url)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// Runs `concurrency` tasks calling `one(task, item)` for every item, timing each call:
/// seconds taken, the calls' latencies, how busy the machine was.
async fn drive<T, F, Fut>(
    all: Arc<Vec<T>>,
    concurrency: usize,
    one: F,
) -> anyhow::Result<(f64, Summary, Option<MachineLoad>)>
where
    T: Clone + Send + Sync + 'static,
    F: Fn(usize, T) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let machine = CpuTimes::now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency.max(1) {
        let (all, next, one) = (all.clone(), next.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = all.get(i) else { break };
                let t = Instant::now();
                one(task, item.clone()).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((
        started.elapsed().as_secs_f64(),
        summarise(&mut lat),
        machine.and_then(|m| m.until_now()),
    ))
}

/// The shared driver with `instances` instances on one fresh database and bucket prefix,
/// appends spread over them.
async fn shared_phase(
    server_url: &str,
    bucket_url: &str,
    instances: usize,
    all: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
) -> anyhow::Result<Phase> {
    let db = fresh_database(server_url).await?;
    let prefix = format!("{bucket_url}/bench-{:032x}", rand::random::<u128>());
    let signer = Arc::new(LogSigner::new("bench.example/shared", &[7; 32])?);
    let mut logs = Vec::new();
    for _ in 0..instances.max(1) {
        logs.push(
            SharedLog::start(
                &db,
                Bucket::open(&prefix)?,
                signer.clone(),
                SharedConfig::default(),
            )
            .await?,
        );
    }
    let logs = Arc::new(logs);
    let turn = Arc::new(AtomicUsize::new(0));
    let count = all.len() as f64;
    let (secs, latency, machine) = {
        let (logs, turn) = (logs.clone(), turn.clone());
        drive(all.clone(), concurrency, move |_, e: Vec<u8>| {
            let (logs, turn) = (logs.clone(), turn.clone());
            async move {
                let log = &logs[turn.fetch_add(1, Ordering::Relaxed) % logs.len()];
                let leaf = leaf_hash(&e);
                log.append(e, leaf, AppendKind::Other)
                    .await
                    .map_err(|e| anyhow::anyhow!("append: {e}"))?;
                Ok(())
            }
        })
        .await?
    };
    let (batches, entries): (u64, u64) = logs
        .iter()
        .map(|l| l.sequencing_stats())
        .fold((0, 0), |(b, n), (b2, n2)| (b + b2, n + n2));
    for l in logs.iter() {
        l.shutdown();
    }
    Ok(Phase {
        name: format!(
            "shared driver, {} instance{}",
            instances,
            if instances == 1 { "" } else { "s" }
        ),
        per_sec: count / secs,
        latency,
        mean_batch: entries as f64 / batches.max(1) as f64,
        machine,
    })
}

/// Raw PostgreSQL: `writers` connections each inserting batches of `batch` entries, each in
/// one transaction that locks a one-row sequence (the same coordination the shared driver's
/// sequencing does, without its rules, indexes beyond the leaf hash, or any publication).
async fn raw_phase(
    server_url: &str,
    all: Arc<Vec<Vec<u8>>>,
    writers: usize,
    batch: usize,
) -> anyhow::Result<Phase> {
    let db = fresh_database(server_url).await?;
    let (setup, conn) = tokio_postgres::connect(&db, NoTls).await?;
    tokio::spawn(conn);
    setup
        .batch_execute(
            "CREATE TABLE seq (id smallint PRIMARY KEY, next bigint NOT NULL);
             INSERT INTO seq VALUES (1, 0);
             CREATE TABLE entries (idx bigint PRIMARY KEY, leaf_hash bytea NOT NULL UNIQUE,
                                   data bytea NOT NULL);",
        )
        .await?;
    let batch = batch.max(1);
    let chunks: Arc<Vec<Vec<Vec<u8>>>> = Arc::new(all.chunks(batch).map(|c| c.to_vec()).collect());
    // One connection per writer, each used by its writer only.
    let mut clients = Vec::new();
    for _ in 0..writers.max(1) {
        let (c, conn) = tokio_postgres::connect(&db, NoTls).await?;
        tokio::spawn(conn);
        clients.push(tokio::sync::Mutex::new(c));
    }
    let clients = Arc::new(clients);
    let (secs, latency, machine) = drive(chunks, writers, move |w, chunk: Vec<Vec<u8>>| {
        let clients = clients.clone();
        async move {
            let mut c = clients[w].lock().await;
            let tx = c.transaction().await?;
            let first: i64 = tx
                .query_one("SELECT next FROM seq WHERE id = 1 FOR UPDATE", &[])
                .await?
                .get(0);
            let idx: Vec<i64> = (0..chunk.len() as i64).map(|k| first + k).collect();
            let leaves: Vec<Vec<u8>> = chunk
                .iter()
                .map(|e| leaf_hash(e).as_bytes().to_vec())
                .collect();
            tx.execute(
                "INSERT INTO entries SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])",
                &[&idx, &leaves, &chunk],
            )
            .await?;
            tx.execute(
                "UPDATE seq SET next = $1 WHERE id = 1",
                &[&(first + chunk.len() as i64)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        }
    })
    .await?;
    Ok(Phase {
        name: format!("raw PostgreSQL, {writers} writer(s), batches of {batch}"),
        per_sec: all.len() as f64 / secs,
        latency,
        mean_batch: batch as f64,
        machine,
    })
}

/// The embedded driver (RocksDB) in a temporary directory, the same entries.
async fn embedded_phase(all: Arc<Vec<Vec<u8>>>, concurrency: usize) -> anyhow::Result<Phase> {
    let dir = tempfile::tempdir()?;
    let started = countersign_log::start(countersign_log::Config {
        data_dir: dir.path().join("log"),
        origin: Some("bench.example/embedded".into()),
        policy: countersign_log::RpPolicy {
            rp_id: "localhost".into(),
            allowed_origins: vec!["http://localhost".into()],
            require_user_verification: false,
        },
        sequencer: SequencerConfig::default(),
        max_body_bytes: countersign_log::DEFAULT_MAX_BODY_BYTES,
        column_families: Vec::new(),
    })?;
    let log = started.api.log.clone();
    let seq = log
        .sequencer()
        .context("the embedded log has a sequencer")?
        .clone();
    let count = all.len() as f64;
    let (secs, latency, machine) = drive(all, concurrency, move |_, e: Vec<u8>| {
        let seq = seq.clone();
        async move {
            let leaf = leaf_hash(&e);
            seq.append(e, leaf, AppendKind::Other)
                .await
                .map_err(|e| anyhow::anyhow!("append: {e}"))?;
            Ok(())
        }
    })
    .await?;
    log.shutdown().await;
    Ok(Phase {
        name: "embedded driver (RocksDB)".into(),
        per_sec: count / secs,
        latency,
        mean_batch: f64::NAN,
        machine,
    })
}

/// Runs every phase: embedded, shared with one then two instances, and raw PostgreSQL with
/// the mean batch size the shared driver reached, with one then two writers.
pub async fn run(
    database: &str,
    bucket: &str,
    count: usize,
    entry_bytes: usize,
    concurrency: usize,
) -> anyhow::Result<SharedReport> {
    let all = entries(count, entry_bytes);
    let mut phases = vec![embedded_phase(all.clone(), concurrency).await?];
    for instances in [1, 2] {
        let p = shared_phase(database, bucket, instances, all.clone(), concurrency).await?;
        let batch = p.mean_batch.round().max(1.0) as usize;
        phases.push(p);
        // Settle: the instances' last integration passes end.
        tokio::time::sleep(Duration::from_millis(500)).await;
        phases.push(raw_phase(database, all.clone(), instances, batch).await?);
    }
    Ok(SharedReport { phases })
}
