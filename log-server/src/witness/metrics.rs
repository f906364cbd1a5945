//! The witness client's metrics, rendered after the log's own on `GET /metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a per-witness metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WitnessLabel {
    pub witness: String,
}

/// Labels of a failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FailureLabels {
    pub witness: String,
    pub kind: String,
}

/// Every witness metric.
#[derive(Debug)]
pub(crate) struct WitnessMetrics {
    pub registry: Registry,
    pub failures: Family<FailureLabels, Counter>,
    pub lag_entries: Family<WitnessLabel, Gauge>,
    pub lag_seconds: Family<WitnessLabel, Gauge<f64, AtomicU64>>,
    pub cosigned_size: Family<WitnessLabel, Gauge>,
    pub cosign_latency: Histogram,
    pub quorum_size: Gauge,
    pub quorum_timeouts: Counter,
}

impl WitnessMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("countersign_witness");
        let failures = Family::<FailureLabels, Counter>::default();
        let lag_entries = Family::<WitnessLabel, Gauge>::default();
        let lag_seconds = Family::<WitnessLabel, Gauge<f64, AtomicU64>>::default();
        let cosigned_size = Family::<WitnessLabel, Gauge>::default();
        let cosign_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        let quorum_size = Gauge::default();
        let quorum_timeouts = Counter::default();
        registry.register(
            "failures",
            "Witness requests that failed, by witness and kind (transport, forbidden, \
             unknown_log, inconsistent, conflict, bad_request, status, bad_cosignature)",
            failures.clone(),
        );
        registry.register(
            "lag_entries",
            "Entries between the latest checkpoint and the latest one the witness cosigned",
            lag_entries.clone(),
        );
        registry.register(
            "lag_seconds",
            "Seconds since the first checkpoint the witness has not cosigned was published \
             (0 when it cosigned the latest)",
            lag_seconds.clone(),
        );
        registry.register(
            "cosigned_size",
            "Size of the latest checkpoint the witness cosigned",
            cosigned_size.clone(),
        );
        registry.register(
            "cosign_latency_seconds",
            "Time from a checkpoint's publication to it carrying the cosignatures of every \
             witness of the policy",
            cosign_latency.clone(),
        );
        registry.register(
            "quorum_size",
            "Size of the latest checkpoint whose cosignatures meet the policy's quorum",
            quorum_size.clone(),
        );
        registry.register(
            "quorum_timeouts",
            "Appends and token requests that gave up waiting for the witness quorum",
            quorum_timeouts.clone(),
        );
        WitnessMetrics {
            registry,
            failures,
            lag_entries,
            lag_seconds,
            cosigned_size,
            cosign_latency,
            quorum_size,
            quorum_timeouts,
        }
    }
}
