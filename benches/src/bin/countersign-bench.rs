//! `countersign-bench`: load generator for the Countersign log.
//!
//! - `append`: enrols its own software passkeys (admin token from `--data-dir`), creates a
//!   submitter, and submits signed decisions; prints throughput and latency percentiles.
//! - `read`: loads the inclusion-proof or tile endpoints.
//! - `flow`: complete OpenID CIBA approval flows (request, passkey decision, token, evidence);
//!   with `--quorum`, 2-of-3 flows against single-approval flows in the same run.
//! - `core`: in-process log core vs raw RocksDB vs in-memory Merkle trees, on one disk.
//! - `shared`: in-process shared driver (PostgreSQL and a bucket) with one and two instances,
//!   beside raw PostgreSQL inserting the same entries in the same batches and beside the
//!   embedded driver.

use std::path::PathBuf;

/// The server's allocator: `core` runs the log in this process, and should measure it as
/// `countersign serve` runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use countersign_benches::load::{core, flow, flow_quorum, http, shared, stats};

#[derive(Parser)]
#[command(
    name = "countersign-bench",
    version,
    about = "Load generator for the Countersign log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit signed decisions over HTTP.
    Append {
        /// Server URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The server's data directory (the admin token is read from it).
        #[arg(long, default_value = "./countersign-data")]
        data_dir: PathBuf,
        /// Decisions to submit.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Write `<index> <leaf_hash_hex>` per acknowledged entry, as soon as acknowledged.
        #[arg(long)]
        ack_file: Option<PathBuf>,
        /// Open-loop target rate in requests/s (default: closed loop, as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Origin to put in clientDataJSON (default: the URL's scheme://host:port).
        #[arg(long)]
        origin: Option<String>,
        /// RP ID the passkeys sign for.
        #[arg(long, default_value = "localhost")]
        rp_id: String,
        /// Distinct passkeys (and approvers) to spread decisions over.
        #[arg(long, default_value_t = 8)]
        passkeys: usize,
        /// Decisions per request: 1 posts each to /v1/log/decisions, more (up to 256) post
        /// groups to /v1/log/decisions/batch.
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// Load read endpoints.
    Read {
        /// Server URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// What to read.
        #[arg(long, value_enum, default_value = "inclusion")]
        kind: http::ReadKind,
        /// Requests.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Complete CIBA approval flows through the public endpoints, with software passkeys.
    Flow {
        /// Server URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The server's data directory (the admin token is read from it).
        #[arg(long, default_value = "./countersign-data")]
        data_dir: PathBuf,
        /// Complete flows to run.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Flows in flight (one approver each).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Write each approved flow's evidence bundle to DIR/<auth_req_id>.json.
        #[arg(long)]
        evidence_dir: Option<PathBuf>,
        /// Deny every K-th flow (0: approve all).
        #[arg(long, default_value_t = 10)]
        deny_every: usize,
        /// Origin to put in clientDataJSON (default: the URL's scheme://host:port).
        #[arg(long)]
        origin: Option<String>,
        /// RP ID the passkeys are bound to.
        #[arg(long, default_value = "localhost")]
        rp_id: String,
        /// The server's process id: prints its CPU per flow, in ES256 checks (target <= 10).
        #[arg(long)]
        server_pid: Option<u32>,
        /// Compare 2-of-3 flows with single-approval flows (needs --server-pid and
        /// --policy-file); every flow is approved, --deny-every is not used, and --count is per
        /// kind and round.
        #[arg(long, requires_all = ["server_pid", "policy_file"])]
        quorum: bool,
        /// With --quorum: the file the server was started with (`serve --policy FILE`); the
        /// bench overwrites it with its own policy and sends the server SIGHUP.
        #[arg(long, requires = "quorum")]
        policy_file: Option<PathBuf>,
        /// With --quorum: rounds of (single phase, 2-of-3 phase).
        #[arg(long, default_value_t = 2, requires = "quorum")]
        rounds: usize,
    },
    /// In-process: the shared driver against a PostgreSQL server and a bucket, with one and
    /// two instances, beside raw PostgreSQL and the embedded driver (fresh databases are
    /// created on the server for each phase).
    Shared {
        /// A PostgreSQL server URL whose user may create databases.
        #[arg(long, env = "COUNTERSIGN_DATABASE", hide_env_values = true)]
        database: String,
        /// A bucket URL (s3://BUCKET/PREFIX, with AWS_*, or file:///DIR); each phase writes
        /// under a prefix of its own.
        #[arg(long)]
        tiles: String,
        /// Entries to append in each phase.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Entry size in bytes (a decision entry is about 600).
        #[arg(long, default_value_t = 600)]
        entry_bytes: usize,
        /// Appends in flight.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// In-process: log core vs raw RocksDB vs rs_merkle and ct-merkle.
    Core {
        /// Fresh directory to work in (the log is left in DIR/log).
        #[arg(long)]
        dir: PathBuf,
        /// Entries to append.
        #[arg(long, default_value_t = 500_000)]
        count: usize,
        /// Approximate entry size.
        #[arg(long, default_value_t = 1024)]
        entry_bytes: usize,
        /// Entries in flight (queued or being committed) at any time.
        #[arg(long, default_value_t = 8192)]
        concurrency: usize,
        /// Entries each appender hands the log at once (`append_verified_entries`), like the
        /// raw ceiling's 256-entry WriteBatches; 1 = one task per entry (`append_verified_entry`).
        #[arg(long, default_value_t = 256)]
        group: usize,
    },
}

/// The report of `flow --quorum`: each phase, then the CPU per flow of each kind and the ratio.
fn print_quorum(r: &flow_quorum::QuorumReport) {
    use flow_quorum::Kind;
    println!(
        "flow --quorum: the run's policy is log entry {}",
        r.policy_index
    );
    for p in &r.phases {
        println!(
            "round {} {:>6}: {} ok, {} errors in {:.2} s: {:.1} flows/s; server CPU {:.0} us/flow; \
             latency {}; machine {}",
            p.round,
            p.kind.to_string(),
            p.ok,
            p.errors,
            p.elapsed.as_secs_f64(),
            p.flows_per_sec(),
            p.server_cpu_secs * 1e6 / p.ok.max(1) as f64,
            p.latency,
            stats::machine(p.machine)
        );
        for e in &p.first_errors {
            println!("  error: {e}");
        }
    }
    println!("ES256 assertion checks on all cores (ring): {}", r.es256);
    let check = r.es256_check_secs();
    for kind in [Kind::Single, Kind::Quorum] {
        let secs = r.cpu_per_flow(kind);
        println!(
            "server CPU per {kind} flow, all rounds: {:.0} us = {:.1} ES256 checks",
            secs * 1e6,
            secs / check
        );
    }
    let ratio = r.ratio();
    println!(
        "2-of-3 / single server CPU per flow: {ratio:.2} (target <= 2: {})",
        if ratio <= 2.0 && r.errors() == 0 {
            "met"
        } else if r.errors() > 0 {
            "not measured: some flows failed"
        } else {
            "NOT met"
        }
    );
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Append {
                url,
                data_dir,
                count,
                concurrency,
                ack_file,
                rate,
                origin,
                rp_id,
                passkeys,
                batch,
            } => {
                let r = http::append(http::AppendOptions {
                    url,
                    data_dir,
                    count,
                    concurrency,
                    ack_file,
                    rate,
                    origin,
                    rp_id,
                    passkeys,
                    batch,
                })
                .await?;
                let rate = r.ok as f64 / r.elapsed.as_secs_f64();
                println!(
                    "append: {} ok, {} failed in {:.2} s: {:.0} decisions/s",
                    r.ok,
                    r.failed,
                    r.elapsed.as_secs_f64(),
                    rate
                );
                println!("append latency (submit to checkpointed answer): {}", r.latency);
                println!("machine during the run: {}", stats::machine(r.machine));
                println!("ES256 assertion checks on all cores (ring): {}", r.es256);
                println!(
                    "HTTP decisions reach {:.0}% of the faster ES256 rate ({:.0}/s)",
                    100.0 * rate / r.es256.per_sec().max(1.0),
                    r.es256.per_sec()
                );
            }
            Command::Read {
                url,
                kind,
                count,
                concurrency,
            } => {
                let r = http::read(&url, kind, count, concurrency).await?;
                println!(
                    "read {kind:?} at tree size {}: {:.0} requests/s, {} failed; {}",
                    r.tree_size, r.per_sec, r.failed, r.latency
                );
                println!("machine during the run: {}", stats::machine(r.machine));
            }
            Command::Flow {
                url,
                data_dir,
                count,
                concurrency,
                evidence_dir,
                deny_every,
                origin,
                rp_id,
                server_pid,
                quorum,
                policy_file,
                rounds,
            } => {
                if let (true, Some(server_pid), Some(policy_file)) =
                    (quorum, server_pid, policy_file)
                {
                    let r = flow_quorum::run(flow_quorum::QuorumOptions {
                        url,
                        data_dir,
                        policy_file,
                        server_pid,
                        count,
                        concurrency,
                        rounds,
                        evidence_dir,
                        origin,
                        rp_id,
                    })
                    .await?;
                    print_quorum(&r);
                    return Ok(());
                }
                let r = flow::run(flow::FlowOptions {
                    url,
                    data_dir,
                    count,
                    concurrency,
                    evidence_dir,
                    deny_every,
                    origin,
                    rp_id,
                    server_pid,
                })
                .await?;
                let rate = r.flows_per_sec();
                println!(
                    "flow: {} approved, {} denied, {} errors in {:.2} s: {:.1} flows/s ({} evidence bundles written)",
                    r.approved,
                    r.denied,
                    r.errors,
                    r.elapsed.as_secs_f64(),
                    rate,
                    r.evidence_written
                );
                for e in &r.first_errors {
                    println!("  error: {e}");
                }
                println!("flow latency (/bc-authorize to token or access_denied): {}", r.flow_latency);
                println!("/bc-authorize latency: {}", r.bc_authorize_latency);
                println!("/v1/evidence latency: {}", r.evidence_latency);
                println!("machine during the run: {}", stats::machine(r.machine));
                println!("ES256 assertion checks on all cores (ring): {}", r.es256);
                println!(
                    "flows reach {:.2}% of the faster ES256 rate ({:.0}/s)",
                    100.0 * rate / r.es256.per_sec().max(1.0),
                    r.es256.per_sec(),
                );
                if let Some((secs, checks)) = r.server_cpu_per_flow() {
                    println!(
                        "server CPU per flow: {:.0} us = {:.1} ES256 checks (target <= 10: {})",
                        secs * 1e6,
                        checks,
                        if checks <= 10.0 { "met" } else { "NOT met" }
                    );
                }
                let p99_ms = r.bc_authorize_latency.p99.as_secs_f64() * 1000.0;
                println!(
                    "/bc-authorize p99 {:.2} ms (target < 10 ms: {})",
                    p99_ms,
                    if p99_ms < 10.0 { "met" } else { "NOT met" }
                );
            }
            Command::Shared {
                database,
                tiles,
                count,
                entry_bytes,
                concurrency,
            } => {
                let r = shared::run(&database, &tiles, count, entry_bytes, concurrency).await?;
                println!(
                    "{count} entries of {entry_bytes} bytes per phase, {concurrency} in flight"
                );
                for p in &r.phases {
                    println!(
                        "{}: {:.0} entries/s; mean batch {:.1}; latency {}; machine {}",
                        p.name,
                        p.per_sec,
                        p.mean_batch,
                        p.latency,
                        stats::machine(p.machine)
                    );
                }
                for pair in r.phases[1..].chunks(2) {
                    if let [s, raw] = pair {
                        println!(
                            "{} at {:.0}% of {}",
                            s.name,
                            100.0 * s.per_sec / raw.per_sec.max(1.0),
                            raw.name
                        );
                    }
                }
                println!(
                    "shared driver, 1 instance, at {:.0}% of the embedded driver",
                    100.0 * r.phases[1].per_sec / r.phases[0].per_sec.max(1.0)
                );
            }
            Command::Core {
                dir,
                count,
                entry_bytes,
                concurrency,
                group,
            } => {
                std::fs::create_dir_all(&dir)?;
                let r = core::run(&dir, count, entry_bytes, concurrency, group).await?;
                println!(
                    "raw RocksDB WriteBatch 256 x 1 KiB sync=true: {:.0} entries/s ({})",
                    r.rocksdb_per_sec,
                    stats::machine(r.rocksdb_machine)
                );
                println!(
                    "raw RocksDB in the stored form, per 256 x 1 KiB one bundle + one 8 KiB tile, sync=true: {:.0} entries/s ({})",
                    r.rocksdb_tiles_per_sec,
                    stats::machine(r.rocksdb_tiles_machine)
                );
                println!(
                    "raw RocksDB writing what the log writes (stored form + index keys + sign count + checkpoint, the log's store and tuning), 256 per synced batch: {:.0} entries/s ({})",
                    r.rocksdb_same_bytes_per_sec,
                    stats::machine(r.rocksdb_same_bytes_machine)
                );
                println!(
                    "log core, pre-verified entries in groups of {}, {} in flight, durable + signed checkpoint: {:.0} entries/s ({:.0}% of RocksDB 256 x 1 KiB, {:.0}% of RocksDB in the stored form, {:.0}% of RocksDB writing what the log writes); latency {}",
                    group.max(1),
                    concurrency.max(1),
                    r.log_per_sec,
                    100.0 * r.log_per_sec / r.rocksdb_per_sec.max(1.0),
                    100.0 * r.log_per_sec / r.rocksdb_tiles_per_sec.max(1.0),
                    100.0 * r.log_per_sec / r.rocksdb_same_bytes_per_sec.max(1.0),
                    r.log_latency
                );
                println!("machine during the log core run: {}", stats::machine(r.log_machine));
                println!("tree size {}", r.tree_size);
                println!("in memory, same leaves: RootStack {:.0} leaves/s", r.rootstack_per_sec);
                println!(
                    "rs_merkle from_leaves {:.0} leaves/s; rs_merkle insert+commit per leaf {:.0} leaves/s (first {} leaves)",
                    r.rs_merkle_bulk_per_sec, r.rs_merkle_incremental_per_sec.0, r.rs_merkle_incremental_per_sec.1
                );
                println!(
                    "ct-merkle MemoryBackedTree push (hashes the entry) + root: {:.0} leaves/s",
                    r.ct_merkle_per_sec
                );
            }
        }
        Ok(())
    })
}
