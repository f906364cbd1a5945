//! The witness client: gets the log's checkpoints cosigned by the witnesses of a C2SP
//! `tlog-policy` (C2SP tlog-witness `add-checkpoint`), keeps what each witness cosigned durably,
//! and offers the checkpoint with the cosignatures gathered so far (`spec/witnessing.md`).
//!
//! It runs beside the sequencer, never in its way: a coordinator task waits for each new
//! checkpoint and, at most once per interval, makes it the target every witness task works
//! towards (one task per witness, so a slow or dead witness delays no other). A witness task
//! sends the target with a consistency proof from the size the witness last cosigned, follows a
//! 409 to the size the witness names, checks the cosignature it gets (key, signature over the
//! exact checkpoint text, timestamp near our clock), stores it, and updates the gathered views.
//! Appends never take a lock of this module; in quorum mode they wait on a watch channel.

mod client;
mod config;
mod metrics;
mod record;
mod source;
mod tasks;

pub use client::{check_cosignatures, parse_size, request_body, Failure};
pub use config::{WitnessConfig, WitnessConfigError, WitnessMode};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign_verifier::PolicyWitness;
use tokio::sync::watch;

use crate::sequencer::Published;
use crate::storage::{StorageError, Store};
use metrics::{WitnessLabel, WitnessMetrics};
use record::Record;
pub(crate) use source::{Changes, LogView};

/// Every witness record of an embedded store, (witness verifier key, record JSON): what
/// `countersign migrate` copies to a shared deployment, so that it serves the cosignatures
/// gathered before the move at once and goes on from where each witness is.
pub fn stored_records(store: &Store) -> Result<Vec<(String, String)>, StorageError> {
    record::all(store)
}

/// A checkpoint with the cosignatures gathered for it.
#[derive(Clone, Debug)]
pub struct Cosigned {
    /// The checkpoint; its `note` carries the log's signature then the cosignature lines.
    pub checkpoint: Published,
    /// The policy names of the witnesses whose cosignature it carries.
    pub cosigned_by: Vec<String>,
}

/// A waiting append or token gave up: the quorum did not cosign a checkpoint covering it in
/// time. The entry itself is logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumTimeout {
    /// The leaf index waited for.
    pub index: u64,
    /// How long it waited.
    pub waited: Duration,
}

impl std::fmt::Display for QuorumTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entry {} is logged, but no checkpoint covering it reached the witness quorum within \
             {} s",
            self.index,
            self.waited.as_secs()
        )
    }
}

impl std::error::Error for QuorumTimeout {}

/// One witness's state besides its durable record, for health and metrics.
#[derive(Clone, Debug, Default)]
struct Status {
    /// The latest failure, when the latest exchange failed: kind, text, when (ms).
    failing: Option<(&'static str, String, u64)>,
    /// When its cosigned checkpoint stopped being the latest (for the lag in seconds).
    behind_since: Option<Instant>,
}

struct Slot {
    witness: PolicyWitness,
    vkey: String,
    endpoint: String,
    record: Mutex<Record>,
    status: Mutex<Status>,
}

/// The checkpoint every witness task works towards.
#[derive(Clone, Debug)]
struct Target {
    published: Published,
    text: String,
    /// When the coordinator saw it published (the start of the cosigning latency).
    seen: Instant,
}

/// The running witness client of one log. Cheap to share; [`Witnessing::stop`] ends its tasks.
pub struct Witnessing {
    config: WitnessConfig,
    /// The log (a handle without this client).
    source: Box<dyn LogView>,
    slots: Vec<Slot>,
    target: watch::Sender<Target>,
    latest: watch::Sender<Option<Cosigned>>,
    quorum: watch::Sender<Option<Cosigned>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    fully_cosigned: AtomicU64,
    metrics: WitnessMetrics,
    http: reqwest::Client,
    /// Held while the cosigned checkpoint is put in the bucket (the shared driver).
    publishing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Witnessing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witnessing")
            .field("mode", &self.config.mode)
            .field("witnesses", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// The text (body) of a signed note: everything up to its blank line.
fn note_text(note: &str) -> &str {
    match note.find("\n\n") {
        Some(i) => &note[..i + 1],
        None => note,
    }
}

/// Why the witness client could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum WitnessStartError {
    /// Its records could not be read.
    Storage(StorageError),
    /// The HTTP client could not be built.
    Http(String),
    /// Witnessing was already started on this log.
    AlreadyStarted,
}

impl std::fmt::Display for WitnessStartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WitnessStartError::Storage(e) => write!(f, "witness records: {e}"),
            WitnessStartError::Http(e) => write!(f, "witness HTTP client: {e}"),
            WitnessStartError::AlreadyStarted => f.write_str("witnessing is already started"),
        }
    }
}

impl std::error::Error for WitnessStartError {}

impl Witnessing {
    /// Loads the witnesses' records and starts the coordinator and one task per witness on the
    /// current tokio runtime (on the shared driver, also the task that follows the records the
    /// integrator saves).
    pub(crate) async fn start(
        config: WitnessConfig,
        source: Box<dyn LogView>,
    ) -> Result<Arc<Witnessing>, WitnessStartError> {
        let witnesses = config.policy.witnesses().to_vec();
        let vkeys: Vec<String> = witnesses.iter().map(|w| w.key.to_vkey()).collect();
        let records = source
            .records(&vkeys)
            .await
            .map_err(WitnessStartError::Storage)?;
        let mut slots = Vec::new();
        for ((w, vkey), record) in witnesses.into_iter().zip(vkeys).zip(records) {
            let prefix = w.url.clone().unwrap_or_default();
            slots.push(Slot {
                endpoint: format!("{}/add-checkpoint", prefix.trim_end_matches('/')),
                witness: w,
                vkey,
                record: Mutex::new(record),
                status: Mutex::new(Status::default()),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WitnessStartError::Http(e.to_string()))?;
        // Subscribed before the first target is read: a checkpoint published meanwhile is
        // still seen as new by the coordinator.
        let published_rx = source.changes();
        let published = source.published();
        let target = Target {
            text: note_text(&published.note).to_owned(),
            published,
            seen: Instant::now(),
        };
        // Subscribed before the records are read again by the follower task.
        let listener = match source.listen().await {
            None => None,
            Some(l) => Some(l.map_err(WitnessStartError::Storage)?),
        };
        let w = Arc::new(Witnessing {
            config,
            source,
            slots,
            target: watch::channel(target).0,
            latest: watch::channel(None).0,
            quorum: watch::channel(None).0,
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            fully_cosigned: AtomicU64::new(0),
            metrics: WitnessMetrics::new(),
            http,
            publishing: tokio::sync::Mutex::new(()),
        });
        // What was cosigned before the restart is no sample of the cosigning latency.
        let sizes = w.slots.iter().map(|s| lock(&s.record).size);
        w.fully_cosigned
            .store(sizes.max().unwrap_or(0), Ordering::Relaxed);
        w.restore().await.map_err(WitnessStartError::Storage)?;
        let mut tasks = vec![tokio::spawn(w.clone().coordinate(published_rx))];
        for i in 0..w.slots.len() {
            tasks.push(tokio::spawn(w.clone().follow(i)));
        }
        if let Some(l) = listener {
            tasks.push(tokio::spawn(w.clone().follow_records(l)));
        }
        *lock(&w.tasks) = tasks;
        tracing::info!(
            witnesses = w.slots.len(),
            mode = ?w.config.mode,
            shared = w.source.shared_log().is_some(),
            "witnessing started"
        );
        Ok(w)
    }

    /// The configuration.
    pub fn config(&self) -> &WitnessConfig {
        &self.config
    }

    /// Stops the tasks and waits for them (in-flight requests are dropped; what a witness
    /// cosigned meanwhile is recovered by the 409 path at the next start).
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// The latest checkpoint with the cosignatures gathered for it, if it has any.
    pub fn latest(&self) -> Option<Cosigned> {
        self.latest.borrow().clone()
    }

    /// The latest checkpoint whose cosignatures meet the policy's quorum.
    pub fn quorum_checkpoint(&self) -> Option<Cosigned> {
        self.quorum.borrow().clone()
    }

    /// The checkpoint readers are served: in quorum mode the latest quorum checkpoint (`None`
    /// before the first); otherwise `published` with the cosignatures gathered for it.
    pub fn served(&self, published: Published) -> Option<Published> {
        match self.config.mode {
            WitnessMode::Quorum if self.gates() => self.quorum_checkpoint().map(|c| c.checkpoint),
            _ => Some(match self.latest() {
                Some(c)
                    if c.checkpoint.size == published.size
                        && c.checkpoint.root == published.root =>
                {
                    c.checkpoint
                }
                _ => published,
            }),
        }
    }

    /// Whether publication waits for the witnesses: quorum mode with a quorum other than
    /// `quorum none` (which every checkpoint meets).
    pub fn gates(&self) -> bool {
        self.config.mode == WitnessMode::Quorum && self.config.policy.quorum().is_some()
    }

    /// Waits until a checkpoint meeting the quorum covers leaf `index` (at most the quorum
    /// timeout) and returns it.
    pub async fn wait_covered(&self, index: u64) -> Result<Cosigned, QuorumTimeout> {
        let started = Instant::now();
        let mut rx = self.quorum.subscribe();
        let waited = tokio::time::timeout(self.config.quorum_timeout, async {
            loop {
                let covered = rx
                    .borrow_and_update()
                    .as_ref()
                    .filter(|c| c.checkpoint.size > index)
                    .cloned();
                if let Some(c) = covered {
                    return c;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        waited.map_err(|_| {
            self.metrics.quorum_timeouts.inc();
            let e = QuorumTimeout {
                index,
                waited: started.elapsed(),
            };
            tracing::warn!(alert = "witness_quorum_timeout", "{e}");
            e
        })
    }

    /// The metrics registry (rendered by `GET /metrics`).
    pub fn registry(&self) -> &prometheus_client::registry::Registry {
        &self.metrics.registry
    }

    /// Health: one JSON object per witness, and whether the witnesses not failing can meet the
    /// quorum.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let published = self.source.published();
        let mut failing = Vec::with_capacity(self.slots.len());
        let list: Vec<serde_json::Value> = self
            .slots
            .iter()
            .map(|s| {
                let r = lock(&s.record).clone();
                let st = lock(&s.status).clone();
                failing.push(st.failing.is_some());
                let mut o = serde_json::json!({
                    "name": s.witness.name,
                    "url": s.witness.url,
                    "status": if st.failing.is_some() { "failing" } else { "ok" },
                    "cosigned_size": r.size,
                    "lag_entries": published.size.saturating_sub(r.size),
                });
                if let Some((kind, detail, at)) = st.failing {
                    o["failure"] = serde_json::json!({
                        "kind": kind, "detail": detail, "at_ms": at,
                    });
                }
                o
            })
            .collect();
        let quorum_reachable = self.config.policy.quorum_met_by(|i| !failing[i]);
        let q = self.quorum_checkpoint().map(|c| c.checkpoint.size);
        (
            quorum_reachable,
            serde_json::json!({
                "mode": match self.config.mode {
                    WitnessMode::Publish => "publish",
                    WitnessMode::Quorum => "quorum",
                },
                "quorum_reachable": quorum_reachable,
                "quorum_size": q,
                "witnesses": list,
            }),
        )
    }

    /// The views from the records (the latest checkpoint any witness cosigned, and the latest
    /// meeting the quorum), read back from the log's checkpoints: at start, and on the shared
    /// driver whenever another instance saved a record. Views only move forward.
    async fn restore(&self) -> Result<(), StorageError> {
        let mut sizes: Vec<u64> = self
            .slots
            .iter()
            .map(|s| lock(&s.record).size)
            .filter(|s| *s > 0)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let published = self.source.published();
        for size in sizes {
            if size > published.size {
                continue;
            }
            let note = if size == published.size {
                Some(published.note.to_string())
            } else {
                self.source.checkpoint_at(size).await?
            };
            let Some(note) = note else { continue };
            let Ok(cp) = countersign_verifier::Checkpoint::parse(note_text(&note)) else {
                continue;
            };
            let t = Target {
                text: note_text(&note).to_owned(),
                published: Published {
                    size,
                    root: cp.root,
                    note: note.into(),
                },
                seen: Instant::now(),
            };
            self.gathered(&t);
        }
        let latest = self.target.borrow().clone();
        self.refresh_lag(&latest);
        Ok(())
    }

    /// Rebuilds the views for checkpoint `t` from the witnesses' records.
    fn gathered(&self, t: &Target) {
        let mut note = t.published.note.to_string();
        let mut who = vec![false; self.slots.len()];
        for (i, s) in self.slots.iter().enumerate() {
            let r = lock(&s.record);
            if r.text == t.text && !r.lines.is_empty() {
                note.push_str(&r.lines);
                who[i] = true;
            }
        }
        if !who.iter().any(|w| *w) {
            return;
        }
        let cosigned = Cosigned {
            checkpoint: Published {
                size: t.published.size,
                root: t.published.root,
                note: note.into(),
            },
            cosigned_by: self
                .slots
                .iter()
                .zip(&who)
                .filter(|(_, w)| **w)
                .map(|(s, _)| s.witness.name.clone())
                .collect(),
        };
        let newer = |v: &mut Option<Cosigned>, c: &Cosigned| {
            if v.as_ref().is_none_or(|v| {
                v.checkpoint.size < c.checkpoint.size
                    || (v.checkpoint.size == c.checkpoint.size
                        && v.cosigned_by.len() < c.cosigned_by.len())
            }) {
                *v = Some(c.clone());
                true
            } else {
                false
            }
        };
        if self.config.policy.quorum_met_by(|i| who[i]) {
            let size = cosigned.checkpoint.size;
            if self.quorum.send_if_modified(|v| newer(v, &cosigned)) {
                self.metrics.quorum_size.set(size as i64);
            }
        }
        let all = who.iter().all(|w| *w);
        self.latest.send_if_modified(|v| newer(v, &cosigned));
        if all
            && self
                .fully_cosigned
                .fetch_max(t.published.size, Ordering::Relaxed)
                < t.published.size
        {
            self.metrics
                .cosign_latency
                .observe(t.seen.elapsed().as_secs_f64());
        }
    }

    /// Sets each witness's lag gauges against the latest target.
    fn refresh_lag(&self, t: &Target) {
        for s in &self.slots {
            let r = lock(&s.record).clone();
            let label = WitnessLabel {
                witness: s.witness.name.clone(),
            };
            let mut st = lock(&s.status);
            let behind = r.text != t.text;
            if !behind {
                st.behind_since = None;
            } else if st.behind_since.is_none() {
                st.behind_since = Some(t.seen);
            }
            self.metrics
                .lag_entries
                .get_or_create(&label)
                .set(t.published.size.saturating_sub(r.size) as i64);
            self.metrics
                .lag_seconds
                .get_or_create(&label)
                .set(st.behind_since.map_or(0.0, |s| s.elapsed().as_secs_f64()));
            self.metrics
                .cosigned_size
                .get_or_create(&label)
                .set(r.size as i64);
        }
    }
}

/// Locks a mutex of this module, whose holders never panic while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
