//! The witness client's tasks: the coordinator that picks the checkpoint every witness works
//! towards, and one task per witness that gets it cosigned (C2SP tlog-witness `add-checkpoint`,
//! the 409 path, back-off), stores what it gets, and reports what fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::client::{self, check_cosignatures, request_body, Failure};
use super::metrics::{FailureLabels, WitnessLabel};
use super::record::{self, Record};
use super::{lock, note_text, Target, Witnessing};
use crate::proofs::{consistency_proof, ProofRequestError};
use crate::sequencer::now_ms;

impl Witnessing {
    /// Waits for new checkpoints and hands them to the witness tasks, at most once per
    /// interval; refreshes the lag metrics meanwhile.
    pub(super) async fn coordinate(self: Arc<Self>, mut published: watch::Receiver<u64>) {
        let mut stop = self.stop.subscribe();
        // Stopped before this task first ran: no change will come.
        if *stop.borrow_and_update() {
            return;
        }
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                r = published.changed() => if r.is_err() { return },
                () = tokio::time::sleep(self.config.interval) => {
                    let latest = self.target.borrow().clone();
                    self.refresh_lag(&latest);
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
    pub(super) async fn follow(self: Arc<Self>, i: usize) {
        let mut target = self.target.subscribe();
        let mut stop = self.stop.subscribe();
        if *stop.borrow_and_update() {
            return;
        }
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
                    let latest = self.target.borrow().clone();
                    self.refresh_lag(&latest);
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
}
