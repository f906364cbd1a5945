//! `countersign`: run the transparency log and its approval front end (`serve`), back it up
//! (`backup`), manage clients, approvers, submitters and auditors of a running server, and inspect its
//! approval requests (`requests`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use countersign::admin_client::{self, ApproverCmd, AuditorCmd, ClientCmd, SubmitterCmd};
use countersign::banner::Banner;
use countersign::requests::{self, RequestsCmd};
use countersign::Server;
use countersign_approvals::policy::serve::PolicyService;
use countersign_log::{RpPolicy, SequencerConfig};

mod witness_cmd;

/// mimalloc for Rust allocations: the request paths allocate many small buffers, which glibc
/// malloc served at a measurable share of the server's CPU (`benches/README.md`; RocksDB's own
/// C++ allocations still use the C library's malloc).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "countersign",
    version,
    about = "Countersign: passkey approvals of exact actions, logged in a public transparency log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the log. First start creates the data directory, the log key, the admin token
    /// (written once to DATA_DIR/admin.token) and DATA_DIR/log.vkey. Once listening, it prints
    /// the URLs to open, the log key and where the admin token is (standard error).
    Serve(ServeArgs),
    /// Copy a consistent snapshot of a log: asks the running server at --url, or, if none
    /// answers, opens the stopped data directory itself.
    Backup(BackupArgs),
    /// Manage CIBA clients (agents) of a running server.
    #[command(subcommand)]
    Client(ClientCmd),
    /// Manage approvers of a running server.
    #[command(subcommand)]
    Approver(ApproverCmd),
    /// Manage submitters (who may POST signed decisions to the log) of a running server.
    #[command(subcommand)]
    Submitter(SubmitterCmd),
    /// Manage auditors (who may read the audit feed, statements and evidence) of a running
    /// server.
    #[command(subcommand)]
    Auditor(AuditorCmd),
    /// List and inspect the approval requests of a running server.
    #[command(subcommand)]
    Requests(RequestsCmd),
    /// Write a period's decisions as one archive an auditor verifies offline with
    /// `countersign-verify export` (spec/export.md): from a running server (--url with an
    /// auditor's or the admin's token) or from a stopped data directory or a backup (--data-dir).
    Export(countersign::export::ExportArgs),
    /// Move an embedded log (a stopped data directory or a backup) into a shared deployment's
    /// PostgreSQL database and bucket (spec/shared-driver.md), every entry at its index: the
    /// shared log then signs the very checkpoint the embedded one did. Resumable.
    Migrate(countersign::migrate::MigrateArgs),
    /// Run a C2SP tlog-witness for any C2SP log: `keygen` makes its key, `serve` cosigns.
    #[command(subcommand)]
    Witness(witness_cmd::WitnessCmd),
    /// Follow a log: check each checkpoint (policy, consistency, witnesses' views) and every
    /// new entry, and alert on what is wrong or on a watched approver's passkeys
    /// (spec/monitor.md).
    Monitor(countersign::monitor::MonitorArgs),
    /// Approval policies (spec/policy.md): `check` a policy file offline, `show` the one in
    /// force.
    #[command(subcommand)]
    Policy(countersign::policy_cmd::PolicyCmd),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (RocksDB, log key, admin token, vkey).
    #[arg(
        long,
        env = "COUNTERSIGN_DATA_DIR",
        default_value = "./countersign-data"
    )]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "COUNTERSIGN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Log origin (checkpoint first line and key name). Fixed on first start (default
    /// "localhost/countersign"); a later start with a different value is refused.
    #[arg(long, env = "COUNTERSIGN_ORIGIN")]
    origin: Option<String>,
    /// WebAuthn RP ID decisions must be made for.
    #[arg(long, env = "COUNTERSIGN_RP_ID", default_value = "localhost")]
    rp_id: String,
    /// Origin the approval page runs on (repeatable; comma-separated in the env var).
    /// Default: http://localhost:PORT and http://127.0.0.1:PORT (https:// with --tls-cert).
    #[arg(long, env = "COUNTERSIGN_ALLOWED_ORIGIN", value_delimiter = ',')]
    allowed_origin: Vec<String>,
    /// Require the user-verified (UV) flag on assertions.
    #[arg(long, env = "COUNTERSIGN_REQUIRE_UV")]
    require_uv: bool,
    /// Appends that may wait for the sequencer; when full, appends get 503 + Retry-After.
    #[arg(long, env = "COUNTERSIGN_QUEUE_CAPACITY", default_value_t = 65_536)]
    queue_capacity: usize,
    /// Most entries committed in one batch (one fsync, one checkpoint).
    #[arg(long, env = "COUNTERSIGN_BATCH_MAX_ENTRIES", default_value_t = 4096)]
    batch_max_entries: usize,
    /// Longest (ms) the first entry of a batch waits for more; 0 commits what is queued as soon
    /// as the previous commit ends.
    #[arg(long, env = "COUNTERSIGN_BATCH_MAX_AGE_MS", default_value_t = 0)]
    batch_max_age_ms: u64,
    /// How often (ms) an idle log re-signs its checkpoint; /healthz fails after 3 missed.
    #[arg(
        long,
        env = "COUNTERSIGN_CHECKPOINT_INTERVAL_MS",
        default_value_t = 5000
    )]
    checkpoint_interval_ms: u64,
    /// Largest request body in bytes (a batch of decisions may be 16 times this).
    #[arg(long, env = "COUNTERSIGN_MAX_BODY_BYTES", default_value_t = countersign_log::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Connections open at once; more wait in the listen backlog.
    #[arg(long, env = "COUNTERSIGN_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "COUNTERSIGN_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request may take to be answered (408 after it); a live inbox stream counts
    /// only until its headers are sent.
    #[arg(long, env = "COUNTERSIGN_REQUEST_TIMEOUT", default_value_t = 30)]
    request_timeout: u64,
    /// Seconds a client has to send a request's body (408 after it).
    #[arg(long, env = "COUNTERSIGN_BODY_TIMEOUT", default_value_t = 10)]
    body_timeout: u64,
    /// Mirror the log's tiles, entry bundles and checkpoint to this URL as they are published,
    /// for tile clients to read without the server: s3://BUCKET/PREFIX (credentials, region and
    /// endpoint from AWS_*; AWS_ENDPOINT_URL for an S3-compatible store), gs://BUCKET/PREFIX
    /// (GOOGLE_*), az://CONTAINER/PREFIX (AZURE_*) or file:///DIR (for a static web server).
    /// With --database, the shared driver's bucket. Objects are written create-only and the checkpoint replaced only by
    /// compare-and-swap with one consistent with it; a bucket holding another log's checkpoint
    /// is refused at start (spec/tiles-mirror.md).
    #[arg(long, env = "COUNTERSIGN_TILES")]
    tiles: Option<String>,
    /// Run on the shared driver (spec/shared-driver.md): sequencing and the integrator lease in
    /// this PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DB), tiles and checkpoints
    /// in the --tiles bucket, keys from --data-dir (a copy of one data directory for every
    /// instance; nothing is written to it), and the approval front end's records in the same
    /// database. Any number of instances with the same --database, --tiles and --public-url
    /// serve one log and one front end. Needs --tiles.
    #[arg(
        long,
        env = "COUNTERSIGN_DATABASE",
        requires = "tiles",
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// With --database: how long (ms) an append waits for a checkpoint covering it to be
    /// published in the bucket before it is answered 503 not_published (it stays sequenced; a
    /// retry returns the same leaf once published).
    #[arg(long, env = "COUNTERSIGN_PUBLISH_TIMEOUT_MS", default_value_t = 10_000)]
    publish_timeout_ms: u64,
    #[command(flatten)]
    witness: countersign::args::WitnessArgs,
    #[command(flatten)]
    ciba: Box<countersign::args::ApprovalsArgs>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key. Both files
    /// are read again on SIGHUP (a renewed certificate without a restart).
    #[arg(
        long,
        env = "COUNTERSIGN_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 RSA or SEC1 EC); needs --tls-cert.
    #[arg(
        long,
        env = "COUNTERSIGN_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    tls_key: Option<PathBuf>,
    /// Serve the transparency log alone, without the approval front end (no CIBA endpoints,
    /// pages or admin API for clients and approvers; their records are kept untouched).
    #[arg(long, env = "COUNTERSIGN_LOG_ONLY", conflicts_with = "policy")]
    log_only: bool,
    /// Approval policy file (TOML, spec/policy.md): which actions need whom. Checked before the
    /// server listens (a bad file stops the start with FILE:LINE: message), logged as a policy
    /// entry unless it is the policy last logged, and read again on SIGHUP. Without it, no
    /// policy is in force (if one was, the empty policy is logged to say so).
    #[arg(long, env = "COUNTERSIGN_POLICY", value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BackupArgs {
    /// Directory to create with the snapshot (must not exist). Usable as a --data-dir.
    #[arg(long)]
    to: PathBuf,
    /// Data directory of the log (admin token for online backups; the store for offline ones).
    #[arg(
        long,
        env = "COUNTERSIGN_DATA_DIR",
        default_value = "./countersign-data"
    )]
    data_dir: PathBuf,
    /// URL of the running server.
    #[arg(long, env = "COUNTERSIGN_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

/// Whether the log lines may carry colours: only on a terminal, and not when `NO_COLOR` is set
/// to anything (<https://no-color.org>), so redirected logs hold no escape codes.
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        // A log line that cannot be written (standard error on a full or failing disk) is
        // dropped: by default the subscriber reports it with `eprintln!`, which panics when
        // standard error fails, and took the sequencer's writer thread down with it
        // (log-server/cli/tests/it/storage_faults.rs keeps the server's standard error on the
        // failing file system).
        .log_internal_errors(false)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(a) => rt.block_on(serve(a)),
        Command::Backup(a) => rt.block_on(backup(a)),
        Command::Client(c) => Ok(rt.block_on(admin_client::run_client(c))?),
        Command::Approver(c) => Ok(rt.block_on(admin_client::run_approver(c))?),
        Command::Submitter(c) => Ok(rt.block_on(admin_client::run_submitter(c))?),
        Command::Auditor(c) => Ok(rt.block_on(admin_client::run_auditor(c))?),
        Command::Requests(c) => Ok(rt.block_on(requests::run_requests(c))?),
        Command::Witness(c) => rt.block_on(witness_cmd::run(c)),
        Command::Policy(c) => {
            let code = rt.block_on(countersign::policy_cmd::run(c));
            drop(rt);
            std::process::exit(code)
        }
        Command::Monitor(a) => {
            let code = rt.block_on(countersign::monitor::run(a));
            drop(rt);
            std::process::exit(code)
        }
        Command::Migrate(a) => {
            let m = rt.block_on(countersign::migrate::run(a))?;
            println!(
                "migrated {} entries ({} already there), {} submitter token(s) and {} approval \
                 record(s) in {:.1} s; the shared log's checkpoint is the embedded log's:\n{}",
                m.size, m.already, m.submitters, m.records, m.seconds, m.checkpoint
            );
            if m.witness_records > 0 {
                println!(
                    "{} witness record(s) copied: start the instances with the same \
                     --witness-policy",
                    m.witness_records
                );
            }
            Ok(())
        }
        Command::Export(a) => {
            let s = rt.block_on(countersign::export::run(a))?;
            println!(
                "export written to {}: entries [{}, {}) of a tree of {}, {} decision(s) with their \
                 statement, {} withheld, {} event row(s), {:.1} MB in {:.1} s",
                s.path.display(),
                s.start,
                s.end,
                s.tree_size,
                s.decisions,
                s.withheld,
                s.events,
                s.bytes as f64 / 1e6,
                s.seconds
            );
            println!(
                "verify it with: countersign-verify export {} --log-key \"$(cat <data-dir>/log.vkey)\" --rp-id <rp id>",
                s.path.display()
            );
            Ok(())
        }
    }
}

/// Binds `addr`, saying in words what to do when it is taken.
async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!("{addr} is in use; pick another with --listen")
            }
            std::io::ErrorKind::AddrNotAvailable => {
                format!("{addr} is not an address of this machine; pick another with --listen")
            }
            std::io::ErrorKind::PermissionDenied => format!(
                "not allowed to listen on {addr} (ports below 1024 need privileges); pick \
                 another with --listen"
            ),
            _ => format!("cannot listen on {addr}"),
        };
        anyhow::Error::new(e).context(why)
    })
}

/// The certificate of `--tls-cert/--tls-key`, read before the server listens: a file that
/// cannot be used is said in words and the process exits with status 2 (a usage error), with
/// nothing bound or created.
fn tls_or_exit(a: &ServeArgs) -> Option<std::sync::Arc<countersign::tls::ReloadableCert>> {
    let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) else {
        return None;
    };
    match countersign::tls::ReloadableCert::open(cert, key) {
        Ok(c) => Some(std::sync::Arc::new(c)),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    }
}

/// The policy file of `--policy`, read and checked before the server listens: a file that
/// cannot be used is said as `FILE:LINE: message` and the process exits with status 2, with
/// nothing bound or created.
fn policy_or_exit(a: &ServeArgs) -> Option<(PathBuf, countersign_verifier::ValidatedPolicy)> {
    let path = a.policy.as_ref()?;
    match countersign_approvals::policy::serve::read_policy_file(path) {
        Ok(p) => Some((path.clone(), p)),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    }
}

/// On each SIGHUP, reads the certificate files again and the policy file again. A certificate
/// that cannot be used is logged as an error and the one served so far stays; so does the
/// policy in force when the policy file is refused ([`PolicyService::reload`] logs each
/// outcome). The handler is installed before the server listens: SIGHUP's default action
/// would end the process.
fn reload_on_sighup(
    cert: Option<std::sync::Arc<countersign::tls::ReloadableCert>>,
    policy: Option<std::sync::Arc<PolicyService>>,
) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Some(cert) = &cert {
                // File reads: off the async workers.
                let c = cert.clone();
                match tokio::task::spawn_blocking(move || c.reload()).await {
                    Ok(Ok(())) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                    Ok(Err(e)) => tracing::error!(
                        error = %e,
                        "SIGHUP: TLS certificate not reloaded; still serving the previous one"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS certificate reload task failed")
                    }
                }
            }
            if let Some(p) = &policy {
                p.reload().await;
            }
        }
    });
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let tls = tls_or_exit(&a);
    let policy_file = policy_or_exit(&a);
    let acceptor = match &tls {
        Some(cert) => Some(countersign::tls::acceptor(cert.clone()).context("TLS configuration")?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Bound before anything is created: a busy port must not leave a new data directory (keys
    // and an admin token) behind. The bound address, not the flag, names the port, so that
    // `--listen 127.0.0.1:0` gets origins and URLs with the port it was given.
    let listener = bind(a.listen).await?;
    let bound = listener.local_addr()?;
    let port = bound.port();
    let allowed_origins = if a.allowed_origin.is_empty() {
        vec![
            format!("{scheme}://localhost:{port}"),
            format!("{scheme}://127.0.0.1:{port}"),
        ]
    } else {
        a.allowed_origin
    };
    let config = countersign_log::Config {
        data_dir: a.data_dir.clone(),
        origin: a.origin,
        policy: RpPolicy {
            rp_id: a.rp_id,
            allowed_origins,
            require_user_verification: a.require_uv,
        },
        sequencer: SequencerConfig {
            queue_capacity: a.queue_capacity,
            batch_max_entries: a.batch_max_entries.max(1),
            batch_max_age: Duration::from_millis(a.batch_max_age_ms),
            checkpoint_interval: Duration::from_millis(a.checkpoint_interval_ms.max(10)),
        },
        max_body_bytes: a.max_body_bytes,
        column_families: Vec::new(),
    };
    let approvals = if a.log_only {
        None
    } else {
        Some(a.ciba.config_with(bound, tls.is_some())?)
    };
    let public_url = approvals.as_ref().map(|c| c.public_url.clone());
    if tls.is_some()
        && public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://"))
    {
        tracing::warn!(
            "--public-url is http:// but the server speaks only HTTPS: passkeys, links and the \
             OpenID issuer will name a URL nobody can reach"
        );
    }
    if approvals
        .as_ref()
        .is_some_and(|c| c.authorization_details_types.is_empty())
    {
        tracing::warn!(
            "any authorization_details type is accepted, and discovery lists none; name the \
             types agents may ask for with --authorization-details-type TYPE (repeatable) or \
             COUNTERSIGN_AUTHORIZATION_DETAILS_TYPES=TYPE,TYPE"
        );
    }
    // Read and checked before anything starts: a bad policy must not leave a half-started log.
    let witness = a.witness.config().context("--witness-policy")?;
    let bucket = match &a.tiles {
        Some(url) => Some(countersign_log::mirror::Bucket::open(url)?),
        None => None,
    };
    let mut started = match (&a.database, bucket) {
        (Some(database), Some(bucket)) => {
            let url = bucket.url().to_owned();
            let publish_timeout = Duration::from_millis(a.publish_timeout_ms.max(1));
            let s = Server::start_shared(
                config,
                approvals,
                database,
                bucket,
                publish_timeout,
                witness,
            )
            .await
            .with_context(|| format!("starting on the shared driver (--tiles {url})"))?;
            tracing::info!(tiles = url, "serving the log on the shared driver");
            s
        }
        (_, bucket) => {
            let mut s = tokio::task::spawn_blocking(move || {
                Server::start_witnessed(config, approvals, witness)
            })
            .await?
            .context("starting the server")?;
            // The bucket is checked (reachable, no other log's checkpoint) before the first
            // request.
            if let Some(bucket) = bucket {
                let url = bucket.url().to_owned();
                let mirror = countersign_log::mirror::TileMirror::start(s.api.log.clone(), bucket)
                    .await
                    .with_context(|| format!("--tiles {url}"))?;
                s.api.add_metrics(mirror);
                tracing::info!(url, "mirroring tiles and checkpoints");
            }
            s
        }
    };
    // In force (and logged) before the first request is accepted.
    let policy = started
        .start_policy(policy_file)
        .await
        .context("putting the approval policy in force")?;
    let data_dir = std::path::absolute(&a.data_dir).unwrap_or(a.data_dir);
    let admin_token = data_dir.join(countersign_log::ADMIN_TOKEN_FILE);
    eprint!(
        "{}",
        Banner {
            bound,
            public_url: public_url.as_deref(),
            vkey: &started.vkey,
            data_dir: &data_dir,
            admin_token: &admin_token,
            created_admin_token: started.created_admin_token,
            tls: tls.is_some(),
        }
    );
    // The handlers are installed before the first request is answered: a SIGTERM sent as soon
    // as the server answers must stop it gracefully, not kill it.
    let shutdown = shutdown_signal()?;
    let reloadable_policy = policy.filter(|p| p.file().is_some());
    if tls.is_some() || reloadable_policy.is_some() {
        reload_on_sighup(tls, reloadable_policy)?;
    }
    tracing::info!(listen = %bound, tls = acceptor.is_some(), "serving");
    let limits = countersign_log::ServeLimits {
        max_connections: a.max_connections.max(1),
        header_timeout: Duration::from_secs(a.header_timeout.max(1)),
        request_timeout: Duration::from_secs(a.request_timeout.max(1)),
        body_timeout: Duration::from_secs(a.body_timeout.max(1)),
        ..countersign_log::ServeLimits::default()
    };
    started
        .serve_tls(listener, limits, acceptor, shutdown)
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. Both handlers are registered here, at once, not when the
/// returned future is first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutdown requested; finishing queued appends");
    })
}

async fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let to = std::path::absolute(&a.to)?;
    let target = admin_client::Target {
        url: a.url.clone(),
        data_dir: a.data_dir.clone(),
    };
    let asked = admin_client::call(
        &target,
        reqwest::Method::POST,
        "/v1/admin/backup",
        Some(serde_json::json!({ "to": to })),
    )
    .await;
    match asked {
        Ok(v) => {
            println!(
                "backup of tree size {} written to {}",
                v["tree_size"],
                to.display()
            );
            return Ok(());
        }
        // No token here, or no server: the data directory is not being served from here.
        Err(admin_client::CliError::NoToken { .. }) => {
            eprintln!(
                "no admin token in the data directory; backing up the stopped data directory"
            );
        }
        Err(admin_client::CliError::Unreachable { .. }) => {
            eprintln!(
                "no server at {}; backing up the stopped data directory",
                a.url
            );
        }
        Err(e) => bail!(e),
    }
    let size =
        tokio::task::spawn_blocking(move || countersign_log::backup_offline(&a.data_dir, &to))
            .await??;
    println!("offline backup of tree size {size} written");
    Ok(())
}
