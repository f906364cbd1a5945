//! The `countersign` binary's library: starts the log and the approval front end on one data
//! directory and composes their routers into one app, used by `main` and by the tests alike.
//!
//! Layer: the binary, the top of verifier <- log <- approvals <- binary. It may use every crate
//! below it; none of them uses it. Flags and signals live in `main`, the admin HTTP client of
//! every admin subcommand in [`admin_client`]
//! (and [`requests`]), what they print in [`text`] and [`times`], built-in TLS in [`tls`], the
//! approval policy commands (`check` offline, `show`) in [`policy_cmd`], the policy of `serve
//! --policy` put in force by [`Server::start_policy`].

pub mod admin_client;
pub mod args;
pub mod banner;
pub mod export;
pub mod migrate;
pub mod monitor;
pub mod policy_cmd;
pub mod requests;
pub mod text;
pub mod times;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use countersign_approvals::policy::serve::{PolicyService, PolicyStartError, StartOutcome};
use countersign_approvals::{Approvals, CibaConfig};
use countersign_log::{InitError, LogApi};

/// The whole server's router: the log's routes, and the front end's when it is on. With the
/// front end off its paths are not routed at all (the log's JSON 404).
pub fn app(log: LogApi, approvals: Option<Arc<Approvals>>) -> Router {
    let router = countersign_log::router(log);
    match approvals {
        Some(a) => router.merge(countersign_approvals::router(a)),
        None => router,
    }
}

/// A started server: the log, its front end if any, and what `serve` prints.
#[derive(Debug)]
pub struct Server {
    /// The log's HTTP state (its `log` is the [`countersign_log::LogHandle`]).
    pub api: LogApi,
    /// The approval front end, when started with one.
    pub approvals: Option<Arc<Approvals>>,
    /// The log's C2SP verifier key.
    pub vkey: String,
    /// True when this start created the admin token.
    pub created_admin_token: bool,
}

impl Server {
    /// Opens the log in `config.data_dir` (with the front end's column families, so a log
    /// started without the front end can take it on later) and, given `approvals`, the front end
    /// on it. Blocking: call from a blocking context.
    pub fn start(
        config: countersign_log::Config,
        approvals: Option<CibaConfig>,
    ) -> Result<Server, InitError> {
        Self::start_witnessed(config, approvals, None)
    }

    /// [`Server::start`], with the witness client started on the log (`--witness-policy`)
    /// before the front end: deliveries the front end resumes at start already wait for the
    /// witness quorum in quorum mode. Blocking, but within a tokio runtime (the witness client's
    /// tasks are spawned on it).
    pub fn start_witnessed(
        mut config: countersign_log::Config,
        approvals: Option<CibaConfig>,
        witness: Option<countersign_log::WitnessConfig>,
    ) -> Result<Server, InitError> {
        for cf in countersign_approvals::COLUMN_FAMILIES {
            if !config.column_families.contains(cf) {
                config.column_families.push(cf);
            }
        }
        let started = countersign_log::start(config)?;
        let mut api = started.api;
        if let Some(w) = witness {
            tokio::runtime::Handle::current()
                .block_on(api.log.start_witnessing(w))
                .map_err(|e| InitError::Config(e.to_string()))?;
        }
        let approvals = match approvals {
            Some(c) => {
                let a = countersign_approvals::open(api.log.clone(), api.admin.clone(), c)?;
                api.add_metrics(a.clone());
                Some(a)
            }
            None => None,
        };
        Ok(Server {
            api,
            approvals,
            vkey: started.vkey,
            created_admin_token: started.created_admin_token,
        })
    }

    /// Starts an instance of the shared driver: the log on the PostgreSQL database `database`
    /// and the bucket `bucket`, with the data directory's keys (`spec/shared-driver.md`), the
    /// witness client given `witness` (every instance runs it; the integrator sends), and given
    /// `approvals` the front end with its records in the same database.
    pub async fn start_shared(
        config: countersign_log::Config,
        approvals: Option<CibaConfig>,
        database: &str,
        bucket: countersign_log::mirror::Bucket,
        publish_timeout: std::time::Duration,
        witness: Option<countersign_log::WitnessConfig>,
    ) -> Result<Server, InitError> {
        let started = countersign_log::start_shared(
            &config,
            database,
            bucket,
            countersign_log::shared::SharedConfig {
                queue_capacity: config.sequencer.queue_capacity,
                publish_timeout,
                ..countersign_log::shared::SharedConfig::default()
            },
        )
        .await?;
        let mut api = started.api;
        if let Some(shared) = api.log.shared_log().cloned() {
            api.add_metrics(Arc::new(shared));
        }
        if let Some(w) = witness {
            api.log
                .start_witnessing(w)
                .await
                .map_err(|e| InitError::Config(e.to_string()))?;
        }
        let approvals = match approvals {
            Some(c) => {
                let a = countersign_approvals::open_shared(api.log.clone(), api.admin.clone(), c)
                    .await?;
                api.add_metrics(a.clone());
                Some(a)
            }
            None => None,
        };
        Ok(Server {
            api,
            approvals,
            vkey: started.vkey,
            created_admin_token: false,
        })
    }

    /// Puts the approval policy in force on the started front end
    /// ([`PolicyService::start`]): `file` is `serve --policy`'s path and its policy, already
    /// read. Logs what it did, and registers the reload counters on `/metrics`. `None` with the
    /// front end off.
    pub async fn start_policy(
        &mut self,
        file: Option<(std::path::PathBuf, countersign_verifier::ValidatedPolicy)>,
    ) -> Result<Option<Arc<PolicyService>>, PolicyStartError> {
        let Some(a) = self.approvals.clone() else {
            return Ok(None);
        };
        let shown = file.as_ref().map(|(p, _)| p.display().to_string());
        let (service, outcome) = PolicyService::start(a.clone(), file).await?;
        self.api.add_metrics(service.clone());
        match outcome {
            StartOutcome::NoPolicy => {}
            StartOutcome::Reused { index } | StartOutcome::Logged { index } => {
                let active = a.active_policy();
                let sha256 = active.map(|p| hex::encode(p.sha256)).unwrap_or_default();
                let logged = matches!(outcome, StartOutcome::Logged { .. });
                tracing::info!(
                    file = shown.as_deref().unwrap_or_default(),
                    index,
                    sha256,
                    "approval policy in force ({})",
                    if logged {
                        "logged now"
                    } else {
                        "the policy last logged; nothing logged"
                    }
                );
            }
            StartOutcome::Withdrawn { index } => tracing::info!(
                index,
                "no approval policy in force: started without --policy, so the empty policy \
                 was logged"
            ),
        }
        Ok(Some(service))
    }

    /// The composed router ([`app`]).
    pub fn app(&self) -> Router {
        app(self.api.clone(), self.approvals.clone())
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish and the sequencer
    /// commit what is queued ([`countersign_log::serve`]).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(listener, countersign_log::ServeLimits::default(), shutdown)
            .await
    }

    /// [`Server::serve`] with the given connection and request limits.
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        limits: countersign_log::ServeLimits,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_tls(listener, limits, None, shutdown).await
    }

    /// [`Server::serve_with`], over TLS when `tls` is given ([`tls::acceptor`]).
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        limits: countersign_log::ServeLimits,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.app();
        let log = self.api.log.clone();
        // The front end's tasks hold the log: drop ours once the server is done.
        let result = countersign_log::serve_tls(listener, app, log, limits, tls, shutdown).await;
        drop(self);
        result
    }
}
