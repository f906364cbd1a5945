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
mod metrics;
mod record;

pub use client::{check_cosignatures, parse_size, request_body, Failure};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign_verifier::{Policy, PolicyError, PolicyWitness};
use tokio::sync::watch;

use crate::proofs::{consistency_proof, ProofRequestError};
use crate::sequencer::{now_ms, Published, Shared};
use crate::storage::{StorageError, Store};
use metrics::{FailureLabels, WitnessLabel, WitnessMetrics};
use record::Record;

/// When a checkpoint is served and answers appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessMode {
    /// At once, signed by the log; cosignatures are added as they arrive (the default).
    Publish,
    /// Only once the policy's quorum has cosigned it; appends (and the approval front end's
    /// tokens) wait for it.
    Quorum,
}

/// How the log is witnessed (`countersign serve --witness-policy ...`).
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    /// The policy: its witnesses (each with its submission prefix) and its quorum.
    pub policy: Policy,
    /// Shortest time between two checkpoints sent to the witnesses.
    pub interval: Duration,
    /// Publish at once, or only once the quorum has cosigned.
    pub mode: WitnessMode,
    /// In quorum mode, how long an append or a token waits for the quorum before it fails.
    pub quorum_timeout: Duration,
    /// Largest accepted distance between a cosignature's timestamp and the log's clock.
    pub max_skew: Duration,
    /// How long one request to a witness may take.
    pub request_timeout: Duration,
}

/// Why a witness policy cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WitnessConfigError {
    /// The file is not a valid `tlog-policy`.
    Policy(PolicyError),
    /// The policy names no witness.
    NoWitnesses,
    /// A witness has no URL (its submission prefix).
    NoUrl {
        /// The witness's name in the policy.
        witness: String,
    },
    /// A witness's URL is not one this client can post to.
    BadUrl {
        /// The witness's name in the policy.
        witness: String,
        /// Its URL.
        url: String,
    },
}

impl std::fmt::Display for WitnessConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WitnessConfigError::Policy(e) => write!(f, "witness policy: {e}"),
            WitnessConfigError::NoWitnesses => f.write_str(
                "witness policy: it names no witness (add `witness <name> <vkey> <url>` lines)",
            ),
            WitnessConfigError::NoUrl { witness } => write!(
                f,
                "witness policy: witness {witness} has no URL; give its tlog-witness submission \
                 prefix after its key (`witness {witness} <vkey> http://host:port`)"
            ),
            WitnessConfigError::BadUrl { witness, url } => write!(
                f,
                "witness policy: witness {witness} has URL {url:?}; this build speaks plain \
                 http:// to witnesses (put a TLS-terminating proxy on the loopback for an \
                 https:// witness)"
            ),
        }
    }
}

impl std::error::Error for WitnessConfigError {}

impl WitnessConfig {
    /// A configuration from a `tlog-policy` file's bytes, with the default interval (1 s),
    /// mode (publish), quorum timeout (30 s), skew (10 min) and request timeout (10 s). Every
    /// witness needs an `http://` URL.
    pub fn from_policy(bytes: &[u8]) -> Result<Self, WitnessConfigError> {
        let policy = Policy::parse(bytes).map_err(WitnessConfigError::Policy)?;
        if policy.witnesses().is_empty() {
            return Err(WitnessConfigError::NoWitnesses);
        }
        for w in policy.witnesses() {
            let Some(url) = &w.url else {
                return Err(WitnessConfigError::NoUrl {
                    witness: w.name.clone(),
                });
            };
            let ok = url
                .strip_prefix("http://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return Err(WitnessConfigError::BadUrl {
                    witness: w.name.clone(),
                    url: url.clone(),
                });
            }
        }
        Ok(WitnessConfig {
            policy,
            interval: Duration::from_secs(1),
            mode: WitnessMode::Publish,
            quorum_timeout: Duration::from_secs(30),
            max_skew: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
        })
    }
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
    store: Store,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    target: watch::Sender<Target>,
    latest: watch::Sender<Option<Cosigned>>,
    quorum: watch::Sender<Option<Cosigned>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    fully_cosigned: AtomicU64,
    metrics: WitnessMetrics,
    http: reqwest::Client,
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
    /// current tokio runtime.
    pub(crate) fn start(
        config: WitnessConfig,
        store: Store,
        shared: Arc<Shared>,
    ) -> Result<Arc<Witnessing>, WitnessStartError> {
        let mut slots = Vec::new();
        for w in config.policy.witnesses() {
            let vkey = w.key.to_vkey();
            let record = record::load(&store, &vkey).map_err(WitnessStartError::Storage)?;
            let prefix = w.url.clone().unwrap_or_default();
            slots.push(Slot {
                witness: w.clone(),
                vkey,
                endpoint: format!("{}/add-checkpoint", prefix.trim_end_matches('/')),
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
        let published_rx = shared.subscribe();
        let published = shared.published();
        let target = Target {
            text: note_text(&published.note).to_owned(),
            published,
            seen: Instant::now(),
        };
        let w = Arc::new(Witnessing {
            config,
            store,
            shared,
            slots,
            target: watch::channel(target).0,
            latest: watch::channel(None).0,
            quorum: watch::channel(None).0,
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            fully_cosigned: AtomicU64::new(0),
            metrics: WitnessMetrics::new(),
            http,
        });
        w.restore().map_err(WitnessStartError::Storage)?;
        let mut tasks = vec![tokio::spawn(w.clone().coordinate(published_rx))];
        for i in 0..w.slots.len() {
            tasks.push(tokio::spawn(w.clone().follow(i)));
        }
        *lock(&w.tasks) = tasks;
        tracing::info!(
            witnesses = w.slots.len(),
            mode = ?w.config.mode,
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
            WitnessMode::Quorum => self.quorum_checkpoint().map(|c| c.checkpoint),
            WitnessMode::Publish => Some(match self.latest() {
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
        let published = self.shared.published();
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

    /// At start: the views from the stored records (the latest checkpoint any witness
    /// cosigned, and the latest meeting the quorum), read back from the log's checkpoints.
    fn restore(&self) -> Result<(), StorageError> {
        let mut sizes: Vec<u64> = self
            .slots
            .iter()
            .map(|s| lock(&s.record).size)
            .filter(|s| *s > 0)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let published = self.shared.published();
        for size in sizes {
            if size > published.size {
                continue;
            }
            let note = if size == published.size {
                Some(published.note.to_string())
            } else {
                self.store.checkpoint(size)?
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
        self.refresh_lag(&self.target.borrow().clone());
        Ok(())
    }

    /// Waits for new checkpoints and hands them to the witness tasks, at most once per
    /// interval; refreshes the lag metrics meanwhile.
    async fn coordinate(self: Arc<Self>, mut published: watch::Receiver<u64>) {
        let mut stop = self.stop.subscribe();
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                r = published.changed() => if r.is_err() { return },
                () = tokio::time::sleep(self.config.interval) => {
                    self.refresh_lag(&self.target.borrow().clone());
                    continue;
                }
            }
            let seen = Instant::now();
            let wait = self.config.interval.saturating_sub(last.elapsed());
            if !wait.is_zero() {
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            published.borrow_and_update();
            let p = self.shared.published();
            let current = self.target.borrow().published.clone();
            if p.size == current.size && p.root == current.root {
                continue;
            }
            last = Instant::now();
            let t = Target {
                text: note_text(&p.note).to_owned(),
                published: p,
                seen,
            };
            self.refresh_lag(&t);
            self.target.send_replace(t);
        }
    }

    /// One witness's task: gets the target cosigned, retrying failures with a back-off.
    async fn follow(self: Arc<Self>, i: usize) {
        let mut target = self.target.subscribe();
        let mut stop = self.stop.subscribe();
        let mut backoff: Option<Duration> = Some(Duration::ZERO);
        let max_backoff =
            (self.config.interval * 20).clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            match backoff {
                Some(d) => tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(d) => {}
                },
                None => tokio::select! {
                    _ = stop.changed() => return,
                    r = target.changed() => if r.is_err() { return },
                },
            }
            let t = target.borrow_and_update().clone();
            if lock(&self.slots[i].record).text == t.text {
                backoff = None;
                continue;
            }
            let outcome = tokio::select! {
                _ = stop.changed() => return,
                o = self.submit(i, &t) => o,
            };
            match outcome {
                Ok(()) => {
                    backoff = None;
                    self.gathered(&t);
                    self.refresh_lag(&self.target.borrow().clone());
                }
                Err(f) => {
                    self.failed(i, &f);
                    let next = backoff
                        .unwrap_or_default()
                        .saturating_mul(2)
                        .max(self.config.interval)
                        .min(max_backoff);
                    backoff = Some(next);
                }
            }
        }
    }

    /// Sends `t` to witness `i`, following 409s, and stores the cosignature it returns.
    async fn submit(&self, i: usize, t: &Target) -> Result<(), Failure> {
        let slot = &self.slots[i];
        let mut old = lock(&slot.record).size;
        // A witness that lost its state answers 409 once (with 0 or its size); one that
        // changes its answer at every request is not followed for ever.
        for _ in 0..3 {
            if old > t.published.size {
                return Err(Failure::Conflict(format!(
                    "the witness cosigned a tree of {old} entries, larger than ours ({})",
                    t.published.size
                )));
            }
            let proof = if old == 0 || old == t.published.size {
                Vec::new()
            } else {
                match consistency_proof(&self.store, old, t.published.size) {
                    Ok(p) => p,
                    Err(ProofRequestError::OutOfRange(w)) => {
                        return Err(Failure::Conflict(w.to_owned()))
                    }
                    Err(ProofRequestError::Storage(e)) => {
                        return Err(Failure::Transport(format!("no consistency proof: {e}")))
                    }
                }
            };
            let body = request_body(old, &proof, &t.published.note);
            match client::post(&self.http, &slot.endpoint, body).await? {
                client::Answer::Cosigned(b) => {
                    let lines = check_cosignatures(
                        &b,
                        &t.text,
                        &slot.witness.key,
                        now_ms(),
                        self.config.max_skew.as_millis() as u64,
                    )?;
                    let r = Record {
                        size: t.published.size,
                        text: t.text.clone(),
                        lines,
                        at_ms: now_ms(),
                    };
                    let store = self.store.clone();
                    let vkey = slot.vkey.clone();
                    let r2 = r.clone();
                    tokio::task::spawn_blocking(move || record::save(&store, &vkey, &r2))
                        .await
                        .map_err(|e| Failure::Transport(format!("record task: {e}")))?
                        .map_err(|e| {
                            tracing::error!(error = %e, "cannot store a witness record");
                            Failure::Transport(format!("cannot store the cosignature: {e}"))
                        })?;
                    let label = WitnessLabel {
                        witness: slot.witness.name.clone(),
                    };
                    self.metrics
                        .cosigned_size
                        .get_or_create(&label)
                        .set(r.size as i64);
                    *lock(&slot.record) = r;
                    let was_failing = lock(&slot.status).failing.take();
                    if was_failing.is_some() {
                        tracing::info!(witness = %slot.witness.name, size = t.published.size, "witness cosigns again");
                    }
                    return Ok(());
                }
                client::Answer::Conflict(size) if size == old => {
                    return Err(Failure::Conflict(format!(
                        "the witness holds size {size} but refuses it as the old size (another \
                         root at that size?)"
                    )));
                }
                client::Answer::Conflict(size) => {
                    tracing::info!(witness = %slot.witness.name, ours = old, theirs = size, "witness answered 409; resending from its size");
                    // The witness's own word on what it holds: the next request starts there.
                    lock(&slot.record).size = size;
                    old = size;
                }
            }
        }
        Err(Failure::Conflict(
            "the witness kept answering 409 with another size".into(),
        ))
    }

    /// Reports a failure: a warn line, the failure metric, and the witness's health detail.
    fn failed(&self, i: usize, f: &Failure) {
        let slot = &self.slots[i];
        tracing::warn!(
            alert = "witness_failure",
            witness = %slot.witness.name,
            url = slot.witness.url.as_deref().unwrap_or_default(),
            kind = f.kind(),
            "witness did not cosign: {f}"
        );
        self.metrics
            .failures
            .get_or_create(&FailureLabels {
                witness: slot.witness.name.clone(),
                kind: f.kind().to_owned(),
            })
            .inc();
        lock(&slot.status).failing = Some((f.kind(), f.to_string(), now_ms()));
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
