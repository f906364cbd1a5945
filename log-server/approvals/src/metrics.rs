//! Metrics of the approval front end, served after the log's own on `GET /metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label set of one label.
pub type Label1 = [(&'static str, &'static str); 1];
/// Label set of two labels.
pub type Label2 = [(&'static str, &'static str); 2];

/// Counters of requests, decisions, tokens, deliveries and the approval store's writer.
#[derive(Debug)]
pub struct CibaMetrics {
    registry: Registry,
    /// Requests accepted at `/bc-authorize`.
    pub requests: Counter,
    /// Decisions logged, by `decision` (approve, deny).
    pub decisions: Family<Label1, Counter>,
    /// Decisions the log refused, by `reason` (the refusal's code: `sign_count` for a possible
    /// cloned authenticator, `invalid_assertion`, ...) and `replayed` for a reused signature.
    pub decisions_refused: Family<Label1, Counter>,
    /// Token responses issued (poll and ping at `/token`, push in the delivery).
    pub tokens: Counter,
    /// Deliveries, by `kind` (ping, push, webhook, email) and `outcome` (delivered, failed: every
    /// attempt was refused or failed).
    pub deliveries: Family<Label2, Counter>,
    /// Requests refused by a limit ([`crate::limits`]), by `reason`.
    pub limited: Family<Label1, Counter>,
}

impl CibaMetrics {
    /// Registers the counters, with the approval store writer's own (`store`).
    pub fn new(store: &countersign_log::storage::kv::WriteCounters) -> Self {
        let (requests, tokens) = (Counter::default(), Counter::default());
        let (decisions, deliveries) = (Family::default(), Family::default());
        let (decisions_refused, limited) = (Family::default(), Family::default());
        let mut registry = Registry::with_prefix("countersign_ciba");
        let counters: [(&str, &str, Counter); 5] = [
            (
                "requests",
                "Approval requests accepted at /bc-authorize",
                requests.clone(),
            ),
            ("tokens_issued", "Token responses issued", tokens.clone()),
            (
                "store_writes",
                "Writes submitted to the approval store",
                store.jobs.clone(),
            ),
            (
                "store_batches",
                "RocksDB write batches the approval store made of them",
                store.writes.clone(),
            ),
            (
                "store_synced_batches",
                "Of those, synced ones (one fsync each)",
                store.synced_writes.clone(),
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c);
        }
        registry.register(
            "decisions",
            "Decisions logged, by decision",
            decisions.clone(),
        );
        registry.register(
            "decisions_refused",
            "Decisions refused (nothing logged), by reason",
            decisions_refused.clone(),
        );
        registry.register(
            "deliveries",
            "Ping, push, webhook and e-mail deliveries, by kind and outcome",
            deliveries.clone(),
        );
        registry.register(
            "limited",
            "Requests refused by a limit on abusive load, by reason",
            limited.clone(),
        );
        CibaMetrics {
            registry,
            limited,
            requests,
            decisions,
            decisions_refused,
            tokens,
            deliveries,
        }
    }

    /// Counts a request refused by a limit.
    pub fn refused(&self, reason: &'static str) {
        self.limited.get_or_create(&[("reason", reason)]).inc();
    }

    /// The registry, for the text exposition.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts a delivery's outcome.
    pub fn delivered(&self, kind: &'static str, ok: bool) {
        let outcome = if ok { "delivered" } else { "failed" };
        self.deliveries
            .get_or_create(&[("kind", kind), ("outcome", outcome)])
            .inc();
    }
}
