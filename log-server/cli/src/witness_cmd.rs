//! `countersign witness keygen|serve`: the C2SP tlog-witness of the `countersign-witness` crate
//! as commands (spec/witness.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use countersign_verifier::Policy;
use countersign_witness::{Witness, WitnessKey};

/// Run a C2SP tlog-witness for any C2SP log (spec/witness.md).
#[derive(Subcommand)]
pub enum WitnessCmd {
    /// Make a witness key and print its verifier key.
    ///
    /// Writes a new key to --key-file (mode 0600; an existing file is never overwritten) and
    /// prints the witness's verifier key,
    /// `<name>+<hex key id>+<base64(0x04 || public key)>`, on standard output: the key logs and
    /// verifiers put in their tlog-policy `witness` lines. The file holds one line,
    /// `PRIVATE+KEY+<name>+<hex key id>+<base64(0x04 || 32-byte Ed25519 seed)>`.
    Keygen(KeygenArgs),
    /// Serve the witness.
    ///
    /// `POST http://ADDR/add-checkpoint` (c2sp.org/tlog-witness) cosigns, with
    /// cosignature/v1, each checkpoint signed by a log of --logs and consistent with the last
    /// one cosigned for it; `GET http://ADDR/checkpoint/<origin>` returns that last cosigned
    /// checkpoint (for monitors); `GET /health`. Stops gracefully on SIGTERM or Ctrl-C.
    Serve(WitnessServeArgs),
}

/// `countersign witness keygen`.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// The witness's name: its key name, by convention a schema-less URL such as
    /// `witness.example.com/w1` (no spaces, no '+').
    #[arg(long)]
    name: String,
    /// Where to write the private key (must not exist).
    #[arg(long)]
    key_file: PathBuf,
}

/// `countersign witness serve`.
#[derive(clap::Args)]
pub struct WitnessServeArgs {
    /// The private key written by `countersign witness keygen` (it also holds the name).
    #[arg(long, env = "COUNTERSIGN_WITNESS_KEY_FILE")]
    key_file: PathBuf,
    /// A C2SP tlog-policy file: each `log <vkey> [url]` line is a log witnessed, its key name
    /// being the log's origin. Other lines (`witness`, `group`) are checked and ignored; the
    /// file needs its one `quorum` line, and `quorum none` will do.
    #[arg(long)]
    logs: PathBuf,
    /// Address to listen on; the submission and monitoring prefixes are its root.
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: SocketAddr,
    /// Directory of the per-log state (one file per log; created if missing). One witness
    /// process per directory: two would not see each other's state.
    #[arg(long, default_value = "./countersign-witness-data")]
    data_dir: PathBuf,
}

/// Runs a witness command.
pub async fn run(cmd: WitnessCmd) -> anyhow::Result<()> {
    match cmd {
        WitnessCmd::Keygen(a) => {
            let key = WitnessKey::generate(&a.name)?;
            key.write_new(&a.key_file)
                .with_context(|| format!("writing {}", a.key_file.display()))?;
            println!("{}", key.verifier().to_vkey());
            Ok(())
        }
        WitnessCmd::Serve(a) => serve(a).await,
    }
}

async fn serve(a: WitnessServeArgs) -> anyhow::Result<()> {
    let key = WitnessKey::read(&a.key_file)
        .with_context(|| format!("reading {}", a.key_file.display()))?;
    let policy = std::fs::read(&a.logs).with_context(|| format!("reading {}", a.logs.display()))?;
    let policy = Policy::parse(&policy).with_context(|| format!("in {}", a.logs.display()))?;
    let witness = Arc::new(Witness::open(key, &policy, &a.data_dir)?);
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    // Installed before the first request is answered, so an early SIGTERM stops it gracefully.
    let shutdown = shutdown_signal()?;
    tracing::info!(
        listen = %listener.local_addr()?,
        vkey = %witness.verifier().to_vkey(),
        logs = witness.origins().count(),
        "witness serving"
    );
    let app = countersign_witness::router(witness)
        // Slow clients cannot hold a connection and a blocking thread for ever.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            Duration::from_secs(10),
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped");
    Ok(())
}

fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutdown requested");
    })
}
