//! Prometheus metrics (text exposition via `prometheus-client`).

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// All metrics of one log.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Leaves in the latest signed checkpoint.
    pub tree_size: Gauge,
    /// Appends waiting for the sequencer.
    pub queue_depth: Gauge,
    /// Entries per committed batch.
    pub batch_size: Histogram,
    /// Seconds from the HTTP request arriving to the answer (appends only).
    pub append_latency: Histogram,
    /// Seconds from enqueueing an entry to its checkpoint being durable.
    pub integration_latency: Histogram,
    /// Seconds spent in the synced RocksDB write of a batch.
    pub fsync_seconds: Histogram,
    /// Appends rejected because the queue was full.
    pub rejected_full: Counter,
    /// Entries appended (new leaves).
    pub appended: Counter,
    /// Appends answered with an existing leaf (dedup or replay).
    pub deduplicated: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("countersign");
        let tree_size = Gauge::default();
        let queue_depth = Gauge::default();
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let append_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let integration_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let fsync_seconds = Histogram::new(exponential_buckets(0.00002, 2.0, 18));
        let rejected_full = Counter::default();
        let appended = Counter::default();
        let deduplicated = Counter::default();
        registry.register(
            "tree_size",
            "Leaves in the latest signed checkpoint",
            tree_size.clone(),
        );
        registry.register(
            "queue_depth",
            "Appends waiting for the sequencer",
            queue_depth.clone(),
        );
        registry.register(
            "batch_size",
            "Entries per committed batch",
            batch_size.clone(),
        );
        registry.register(
            "append_latency_seconds",
            "Time from an append request arriving to its answer",
            append_latency.clone(),
        );
        registry.register(
            "integration_latency_seconds",
            "Time from enqueueing an entry to a durable checkpoint covering it",
            integration_latency.clone(),
        );
        registry.register(
            "fsync_seconds",
            "Time spent in the synced RocksDB write of one batch",
            fsync_seconds.clone(),
        );
        registry.register(
            "queue_full_rejections",
            "Appends answered 503 because the queue was full",
            rejected_full.clone(),
        );
        registry.register("appended_entries", "New leaves appended", appended.clone());
        registry.register(
            "deduplicated_appends",
            "Appends answered with an existing leaf",
            deduplicated.clone(),
        );
        Metrics {
            registry,
            tree_size,
            queue_depth,
            batch_size,
            append_latency,
            integration_latency,
            fsync_seconds,
            rejected_full,
            appended,
            deduplicated,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.render_with(std::iter::empty())
    }

    /// The Prometheus text exposition, with other registries' metrics after ours.
    pub fn render_with<'a>(&self, extra: impl IntoIterator<Item = &'a Registry>) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut s, &self.registry);
        for r in extra {
            let _ = encode_registry(&mut s, r);
        }
        let _ = encode_eof(&mut s);
        s
    }
}
