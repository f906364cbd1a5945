//! The witness client's tasks: the coordinator that picks the checkpoint every witness works
//! towards, and one task per witness that gets it cosigned (C2SP tlog-witness `add-checkpoint`,
//! the 409 path, back-off), stores what it gets, and reports what fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{self, check_cosignatures, request_body, Failure};
use super::metrics::{FailureLabels, WitnessLabel};
use super::record::Record;
use super::source::Changes;
use super::{lock, note_text, Target, Witnessing};
use crate::proofs::ProofRequestError;
use crate::sequencer::now_ms;
use crate::shared::pg::{Listener, Notice};
use crate::shared::witnessed::Cosigned;

impl Witnessing {
    /// Waits for new checkpoints and hands them to the witness tasks, at most once per
    /// interval; refreshes the lag metrics meanwhile.
    pub(super) async fn coordinate(self: Arc<Self>, mut published: Changes) {
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
            published.mark_seen();
            let p = self.source.published();
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
            // On the shared driver only the integrator sends; the others look again each
            // interval (one of them is the next integrator).
            if !self.source.sends() {
                // A failure seen while this instance was the integrator is not its to report
                // any more (its /healthz would stay unhealthy for good).
                lock(&self.slots[i].status).failing = None;
                backoff = Some(self.config.interval);
                continue;
            }
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
                    self.publish_cosigned(&t).await;
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
        // What an earlier integrator got from this witness counts (its size is where the
        // witness is).
        if self.source.shared_log().is_some() {
            let vkeys = [slot.vkey.clone()];
            match self.source.records(&vkeys).await {
                Ok(mut r) => {
                    self.newer_record(i, r.remove(0));
                }
                Err(e) => return Err(Failure::Transport(format!("witness record: {e}"))),
            }
            if lock(&slot.record).text == t.text {
                return Ok(());
            }
        }
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
                match self.source.consistency_proof(old, t.published.size).await {
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
                    self.source.save(&slot.vkey, &r).await.map_err(|e| {
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

impl Witnessing {
    /// Takes `r`, read from the database, as witness `i`'s record if it is ahead of the one
    /// held (the log never forks, so a witness's record only grows).
    /// Whether it did.
    fn newer_record(&self, i: usize, r: Record) -> bool {
        let mut held = lock(&self.slots[i].record);
        let ahead = r.size > held.size
            || (r.size == held.size && held.lines.is_empty() && !r.lines.is_empty());
        if ahead {
            *held = r;
        }
        ahead
    }

    /// The shared driver's follower, on every instance: reads the witnesses' records when one
    /// is saved (and each interval, notifications being lost while a listener reconnects) and
    /// rebuilds the views from them when a record moved or a checkpoint was published since
    /// (a record ahead of this instance's published checkpoint counts once it has it).
    pub(super) async fn follow_records(self: Arc<Self>, mut listener: Listener) {
        let mut stop = self.stop.subscribe();
        if *stop.borrow_and_update() {
            return;
        }
        let every = self.config.interval.max(Duration::from_millis(200));
        let mut restored_at = self.source.published().size;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                n = listener.next() => if matches!(n, Notice::Reconnected) {
                    tracing::debug!("witness records: listener reconnected");
                },
                () = tokio::time::sleep(every) => {}
            }
            let vkeys: Vec<String> = self.slots.iter().map(|s| s.vkey.clone()).collect();
            let read = async {
                let mut moved = false;
                for (i, r) in self.source.records(&vkeys).await?.into_iter().enumerate() {
                    moved |= self.newer_record(i, r);
                }
                let published = self.source.published().size;
                if moved || published != restored_at {
                    self.restore().await?;
                    restored_at = published;
                }
                Ok::<(), crate::error::StorageError>(())
            };
            if let Err(e) = read.await {
                tracing::warn!(error = %e, "cannot read the witnesses' records");
            }
        }
    }

    /// On the shared driver, puts the checkpoint `t` with the cosignatures gathered for it in
    /// the bucket in place of the log's own (compare-and-swap; never over a newer one). One
    /// witness task at a time; a write that lost a race (another task's, the integrator's) is
    /// tried again with what is gathered then.
    async fn publish_cosigned(&self, t: &Target) {
        let Some(shared) = self.source.shared_log() else {
            return;
        };
        let _one = self.publishing.lock().await;
        for _ in 0..4 {
            let Some(c) = self.latest() else { return };
            if c.checkpoint.size != t.published.size || c.checkpoint.root != t.published.root {
                return;
            }
            match shared.publish_cosigned(&c.checkpoint.note).await {
                Ok(Cosigned::Raced) => continue,
                Ok(Cosigned::Put) => {
                    tracing::debug!(
                        size = c.checkpoint.size,
                        "cosigned checkpoint in the bucket"
                    );
                    return;
                }
                Ok(Cosigned::NotNeeded) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot put the cosigned checkpoint in the bucket");
                    return;
                }
            }
        }
    }
}
