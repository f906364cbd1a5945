//! What the log's handlers share: their state, and the metrics of other crates they serve.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::FromRef;

use super::extract::AdminAuth;
use crate::log::LogHandle;

/// Metrics of another crate, served after the log's own on `GET /metrics`.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// The registry to render.
    fn registry(&self) -> &prometheus_client::registry::Registry;
}

/// Everything a handler of the log's router needs.
#[derive(Clone, Debug)]
pub struct LogApi {
    /// The log.
    pub log: LogHandle,
    /// The admin check.
    pub admin: AdminAuth,
    /// The data directory (for backups of the key files).
    pub(crate) data_dir: PathBuf,
    /// Largest accepted request body.
    pub(crate) max_body_bytes: usize,
    /// Idle re-signing interval, for /healthz freshness.
    pub(crate) checkpoint_interval_ms: u64,
    /// Other crates' metrics, rendered after the log's.
    pub(crate) metrics_sources: Vec<Arc<dyn MetricsSource>>,
}

impl LogApi {
    /// Serves `source`'s metrics after the log's own on `GET /metrics`.
    pub fn add_metrics(&mut self, source: Arc<dyn MetricsSource>) {
        self.metrics_sources.push(source);
    }
}

impl MetricsSource for crate::shared::SharedLog {
    fn registry(&self) -> &prometheus_client::registry::Registry {
        crate::shared::SharedLog::registry(self)
    }
}

impl FromRef<LogApi> for AdminAuth {
    fn from_ref(api: &LogApi) -> AdminAuth {
        api.admin.clone()
    }
}
