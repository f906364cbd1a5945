//! `countersign monitor`: follows a C2SP log's checkpoints and entries and raises an alert for
//! anything a log must never do or an approver must hear of (spec/monitor.md).
//!
//! One step ([`Monitor::step`]): read the log's checkpoint; check it under the policy; check it
//! extends the last one verified (a consistency proof from the hash tiles); compare it with
//! each witness's latest checkpoint of the log; then read every new entry through the entry
//! bundles, each bundle proved against the checkpoint before any of its entries is believed,
//! and check the entries. State is committed after each bundle.

pub mod alert;
pub mod entries;
pub mod fetch;
pub mod state;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use countersign_approvals::Secret;
use countersign_verifier::{
    leaf_hash, verify_checkpoint, verify_checkpoint_with_policy, verify_consistency, Checkpoint,
    Hash, Note, Policy, PolicyWitness, RootStack, MAX_POLICY_BYTES,
};

use alert::{Alert, Kind, Webhook};
use fetch::{FetchError, Reader};
use state::State;

/// Exit status: nothing wrong.
pub const EXIT_OK: i32 = 0;
/// Exit status: at least one alert.
pub const EXIT_ALERT: i32 = 1;
/// Exit status: unusable input, or the log could not be read.
pub const EXIT_UNUSABLE: i32 = 2;

/// `countersign monitor`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Every step reads the log's checkpoint (GET URL/checkpoint) and checks it under the policy, \
checks it extends the last one seen (a consistency proof from the log's C2SP tiles), compares \
it with the latest checkpoint of each policy witness that has a URL (a split view is an alert \
with both signed notes), reads every new entry through the entry bundles and checks it: it \
decodes, a decision relies on an enrolment logged before it and not revoked before it, and \
every enrolment and revocation of a --watch-approver is reported. Alerts are single lines on \
standard error starting `countersign monitor: ALERT <kind>`, lines of DIR/alerts.jsonl with \
the evidence, and JSON POSTs to --webhook signed like the server's notifications \
(x-countersign-signature: sha256=HMAC(secret, timestamp \".\" body)). A new approval policy \
(a valid policy entry) is a notice, not an alert: a line on standard output \
`policy changed at log index N: sha256 H, R rules`, a line of alerts.jsonl and a webhook POST \
of kind policy-changed.

For cron: `countersign monitor --once --log URL --policy FILE --state DIR` prints nothing on \
standard error unless something is wrong, and exits 0 when nothing is (notices included), 1 \
on an alert, 2 when the input is unusable or the log cannot be read. spec/monitor.md describes the checks and the state.")]
pub struct MonitorArgs {
    /// The log's URL prefix (its C2SP tlog-tiles read API: URL/checkpoint, URL/tile/...).
    #[arg(long)]
    pub log: String,
    /// A C2SP tlog-policy file: the log's key, the witnesses (with their URLs, to compare
    /// checkpoints with) and the quorum of cosignatures each checkpoint needs.
    #[arg(long)]
    pub policy: PathBuf,
    /// Directory of the monitor's state (created if missing; locked: one monitor per directory).
    #[arg(long)]
    pub state: PathBuf,
    /// Report every enrolment and revocation of this approver id (repeatable).
    #[arg(long = "watch-approver", value_name = "ID")]
    pub watch_approver: Vec<String>,
    /// POST each alert as JSON to this URL.
    #[arg(long, requires = "webhook_secret_file")]
    pub webhook: Option<String>,
    /// File holding the webhook's HMAC key (its first line).
    #[arg(long, requires = "webhook")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Run one step and exit with its status (0 fine, 1 alert, 2 unusable or unreachable).
    #[arg(long)]
    pub once: bool,
    /// Time between steps without --once.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Print a line per step on standard error (what was verified and read).
    #[arg(long, short)]
    pub verbose: bool,
}

/// What a step found.
#[derive(Debug, Default)]
pub struct StepOutcome {
    /// Alerts raised (delivered, or kept to deliver).
    pub alerts: Vec<Kind>,
    /// The log's tree size after the step (0 when unknown).
    pub tree_size: u64,
    /// Entries read in the step.
    pub entries_read: u64,
}

impl StepOutcome {
    /// The exit status for `--once`: an alert other than the log being unreachable wins;
    /// notices (a policy change) count for nothing.
    pub fn exit_code(&self) -> i32 {
        let alerts: Vec<Kind> = self
            .alerts
            .iter()
            .copied()
            .filter(|k| k.is_alert())
            .collect();
        if alerts.iter().any(|k| *k != Kind::LogUnreachable) {
            EXIT_ALERT
        } else if alerts.is_empty() {
            EXIT_OK
        } else {
            EXIT_UNUSABLE
        }
    }
}

/// A monitor of one log.
pub struct Monitor {
    log_url: String,
    policy: Policy,
    watched: Vec<String>,
    reader: Reader,
    state: State,
    webhook: Option<Webhook>,
    verbose: bool,
    /// Conflicts already reported by this process: a loop does not repeat one every interval.
    reported: HashSet<String>,
    /// The kinds of the entry alerts committed in this step.
    entry_alerts: Vec<Kind>,
}

impl Monitor {
    /// Reads the policy, the webhook secret and the state directory.
    pub fn open(a: &MonitorArgs) -> anyhow::Result<Monitor> {
        let bytes =
            std::fs::read(&a.policy).with_context(|| format!("reading {}", a.policy.display()))?;
        if bytes.len() > MAX_POLICY_BYTES {
            anyhow::bail!(
                "{}: larger than {MAX_POLICY_BYTES} bytes",
                a.policy.display()
            );
        }
        let policy = Policy::parse(&bytes).with_context(|| a.policy.display().to_string())?;
        if policy.logs().is_empty() {
            anyhow::bail!("{}: the policy names no log", a.policy.display());
        }
        let webhook = match (&a.webhook, &a.webhook_secret_file) {
            (Some(url), Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let secret = text.lines().next().unwrap_or_default().trim().to_owned();
                if secret.is_empty() {
                    anyhow::bail!("{}: the webhook secret is empty", f.display());
                }
                Some(Webhook {
                    url: url.clone(),
                    secret: Secret::new(secret),
                    http: reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()?,
                })
            }
            _ => None,
        };
        Ok(Monitor {
            log_url: a.log.trim_end_matches('/').to_owned(),
            policy,
            watched: a.watch_approver.clone(),
            reader: Reader::new(&a.log, Duration::from_secs(30))?,
            state: State::open(&a.state)?,
            webhook,
            verbose: a.verbose,
            reported: HashSet::new(),
            entry_alerts: Vec::new(),
        })
    }

    /// One step (see the module documentation). Errors are the monitor's own (its state
    /// directory); what the log or a witness does wrong is an alert.
    pub async fn step(&mut self) -> anyhow::Result<StepOutcome> {
        let mut out = StepOutcome::default();
        // Alerts a crash left committed but undelivered go first.
        self.deliver().await?;
        let raised = self.check().await;
        let raised = match raised {
            Ok((size, read, alerts)) => {
                out.tree_size = size;
                out.entries_read = read;
                alerts
            }
            Err(StepError::State(e)) => return Err(e),
            Err(StepError::Conflict(a)) => vec![*a],
            Err(StepError::Fetch(e)) => vec![Alert::new(
                Kind::LogUnreachable,
                &self.log_url,
                &e.to_string(),
                format!("cannot read the log at {}: {e}", self.log_url),
            )],
        };
        out.alerts.append(&mut self.entry_alerts);
        out.alerts.extend(raised.iter().map(|a| a.kind));
        // Conflicts found by this process already are not queued again.
        let fresh: Vec<Alert> = raised
            .into_iter()
            .filter(|a| self.reported.insert(a.id.clone()))
            .collect();
        if !fresh.is_empty() {
            self.state.cursor.pending.extend(fresh);
            self.state.save()?;
        }
        self.deliver().await?;
        if self.verbose {
            eprintln!(
                "countersign monitor: {}: tree size {}, {} entries read, {} alert(s)",
                self.log_url,
                out.tree_size,
                out.entries_read,
                out.alerts.len()
            );
        }
        Ok(out)
    }

    /// The checks of a step: the tree size, the entries read, and the checkpoint-level alerts
    /// (entry alerts are committed with their bundle as they are found).
    async fn check(&mut self) -> Result<(u64, u64, Vec<Alert>), StepError> {
        let mut alerts = Vec::new();
        let note = self.reader.checkpoint().await?;
        let note_text = String::from_utf8_lossy(&note).into_owned();
        let verified = match verify_checkpoint_with_policy(&note, &self.policy) {
            Ok(v) => v,
            Err(e) => {
                let mut a = Alert::new(
                    Kind::PolicyFailure,
                    &self.log_url,
                    &note_text,
                    format!("the log's checkpoint does not satisfy the policy: {e}"),
                );
                a.checkpoint = Some(note_text);
                return Ok((0, 0, vec![a]));
            }
        };
        let new = verified.checkpoint;
        if let Some(old_text) = self.state.cursor.checkpoint.clone() {
            let old = body(&old_text).map_err(StepError::State)?;
            if old.origin != new.origin {
                return Err(StepError::State(anyhow::anyhow!(
                    "the state directory follows the log {:?}, not {:?}: give this log its own \
                     --state directory",
                    old.origin,
                    new.origin
                )));
            }
            if let Some(why) = self.extends(&old, &new).await? {
                let mut a = Alert::new(
                    Kind::InconsistentCheckpoint,
                    &self.log_url,
                    &format!("{old_text}\n{note_text}"),
                    format!(
                        "the log's checkpoint of size {} does not extend the last one seen, of \
                         size {}: {why}",
                        new.size, old.size
                    ),
                );
                a.checkpoint = Some(note_text);
                a.conflicting_checkpoint = Some(old_text);
                return Ok((new.size, 0, vec![a]));
            }
        }
        for w in self.policy.witnesses().to_vec() {
            if let Some(a) = self.compare_witness(&w, &new, &note_text).await {
                alerts.push(a);
            }
        }
        let read = match self.read_entries(&new, &note_text).await {
            Ok(read) => read,
            Err(StepError::Conflict(a)) => {
                alerts.push(*a);
                return Ok((new.size, 0, alerts));
            }
            Err(e) => return Err(e),
        };
        if read == 0 && self.state.cursor.checkpoint.as_deref() != Some(note_text.as_str()) {
            self.state.cursor.checkpoint = Some(note_text);
            self.state.save().map_err(StepError::State)?;
        }
        Ok((new.size, read, alerts))
    }

    /// Whether `new` extends `old`: `None` if so, else why not. Read errors are returned.
    async fn extends(
        &mut self,
        old: &Checkpoint,
        new: &Checkpoint,
    ) -> Result<Option<String>, StepError> {
        if new.size < old.size {
            return Ok(Some("the tree is smaller (a rollback)".into()));
        }
        if new.size == old.size {
            return Ok((new.root != old.root).then(|| "another root at the same size".into()));
        }
        let proof = self.reader.consistency_proof(old.size, new.size).await?;
        Ok(
            verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
                .err()
                .map(|e| format!("the consistency proof from its tiles fails: {e}")),
        )
    }

    /// Compares the log's checkpoint with witness `w`'s latest checkpoint of the log: a
    /// different root at one size, or trees that do not extend one another, is a split view.
    async fn compare_witness(
        &mut self,
        w: &PolicyWitness,
        log: &Checkpoint,
        log_note: &str,
    ) -> Option<Alert> {
        let url = w.url.as_deref()?;
        let reported = &mut self.reported;
        let mut warn = |what: String| {
            // Once per process: a witness that is down must not fill a loop's log.
            let line = format!("countersign monitor: warning: witness {}: {what}", w.name);
            if reported.insert(line.clone()) {
                eprintln!("{line}");
            }
            None
        };
        let bytes = match self.reader.witness_checkpoint(url, &log.origin).await {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => return warn(e.to_string()),
        };
        let log_key = self.policy.log_for_origin(&log.origin)?.clone();
        // The log's own signature is what makes the witness's note evidence against the log; a
        // cosignature by the witness, if present, must verify too.
        let theirs = match verify_checkpoint(&bytes, &log_key, std::slice::from_ref(&w.key)) {
            Ok(v) => v.checkpoint,
            Err(e) => return warn(format!("its checkpoint does not verify: {e}")),
        };
        let why = if theirs.size == log.size {
            (theirs.root != log.root).then(|| "another root at the same size".to_owned())
        } else {
            let (small, large) = if theirs.size < log.size {
                (&theirs, log)
            } else {
                (log, &theirs)
            };
            match self.reader.consistency_proof(small.size, large.size).await {
                Ok(p) => verify_consistency(small.size, large.size, &small.root, &large.root, &p)
                    .err()
                    .map(|e| format!("the two trees are not consistent: {e}")),
                // The witness has seen a larger tree than the log serves yet: checked on a later
                // step, once the log serves it.
                Err(FetchError::NotFound(_)) if theirs.size > log.size => None,
                Err(e) => return warn(format!("cannot read the tiles to compare: {e}")),
            }
        }?;
        let their_note = String::from_utf8_lossy(&bytes).into_owned();
        let mut a = Alert::new(
            Kind::SplitView,
            &self.log_url,
            &format!("{log_note}\n{their_note}"),
            format!(
                "split view: witness {} holds a checkpoint of size {} that conflicts with the \
                 log's of size {}: {why}",
                w.name, theirs.size, log.size
            ),
        );
        a.witness = Some(w.name.clone());
        a.checkpoint = Some(log_note.to_owned());
        a.conflicting_checkpoint = Some(their_note);
        Some(a)
    }

    /// Reads entries `[entries_read, new.size)` bundle by bundle: each bundle's leaves are
    /// proved against `new` first, then its entries checked and the step committed.
    async fn read_entries(&mut self, new: &Checkpoint, note: &str) -> Result<u64, StepError> {
        let start = self.state.cursor.entries_read;
        while self.state.cursor.entries_read < new.size {
            let at = self.state.cursor.entries_read;
            let bundle = at / 256;
            let entries = self.reader.entry_bundle(bundle, new.size).await?;
            let skip = usize::try_from(at - bundle * 256).unwrap_or(usize::MAX);
            let fresh = entries.get(skip..).unwrap_or_default();
            if fresh.is_empty() {
                // Unreachable with a bundle of the width asked for; a guard against looping.
                return Err(StepError::Fetch(FetchError::Malformed(format!(
                    "entry bundle {bundle} has no entry at index {at}"
                ))));
            }
            let mut stack = self.state.stack().map_err(StepError::State)?;
            for e in fresh {
                stack.push(leaf_hash(e));
            }
            if let Some(why) = self.proves(&stack, new).await? {
                let mut a = Alert::new(
                    Kind::InconsistentCheckpoint,
                    &self.log_url,
                    &format!("{note}\nbundle {bundle}"),
                    format!(
                        "entry bundle {bundle} does not lead to the log's checkpoint of size \
                         {}: {why}",
                        new.size
                    ),
                );
                a.checkpoint = Some(note.to_owned());
                return Err(StepError::Conflict(Box::new(a)));
            }
            let mut alerts = Vec::new();
            let mut journal = Vec::new();
            for (i, e) in fresh.iter().enumerate() {
                entries::check(
                    &self.log_url,
                    at + i as u64,
                    e,
                    &mut self.state.enrolments,
                    &self.watched,
                    &mut alerts,
                    &mut journal,
                );
            }
            let c = &mut self.state.cursor;
            c.checkpoint = Some(note.to_owned());
            c.entries_read = stack.size();
            c.peaks = stack.peaks().iter().map(Hash::to_hex).collect();
            self.entry_alerts.extend(alerts.iter().map(|a| a.kind));
            c.pending.extend(alerts);
            self.state.commit(&journal).map_err(StepError::State)?;
            self.deliver().await.map_err(StepError::State)?;
        }
        Ok(self.state.cursor.entries_read - start)
    }

    /// Whether the entries in `stack` are a prefix of the tree of `new`: `None` if so.
    async fn proves(
        &mut self,
        stack: &RootStack,
        new: &Checkpoint,
    ) -> Result<Option<String>, StepError> {
        let proof = if stack.size() == new.size {
            Vec::new()
        } else {
            self.reader
                .consistency_proof(stack.size(), new.size)
                .await?
        };
        Ok(
            verify_consistency(stack.size(), new.size, &stack.root(), &new.root, &proof)
                .err()
                .map(|e| e.to_string()),
        )
    }

    /// Writes pending alerts to `alerts.jsonl` (exactly once: its committed length is in the
    /// state) and standard error, then posts what the webhook has not accepted yet; the state
    /// records each stage, so a crash repeats at most the stage it interrupted.
    async fn deliver(&mut self) -> anyhow::Result<()> {
        if !self.state.cursor.pending.is_empty() {
            let pending = std::mem::take(&mut self.state.cursor.pending);
            self.state.append_alerts(&pending)?;
            for a in &pending {
                if a.kind.is_alert() {
                    eprintln!("{}", a.line());
                } else {
                    println!("{}", a.line());
                }
            }
            if self.webhook.is_some() {
                self.state.cursor.webhook_pending.extend(pending);
            }
            self.state.save()?;
        }
        if let Some(w) = &self.webhook {
            if self.state.cursor.webhook_pending.is_empty() {
                return Ok(());
            }
            let mut kept = Vec::new();
            for a in std::mem::take(&mut self.state.cursor.webhook_pending) {
                if !kept.is_empty() || !w.post(&a).await {
                    kept.push(a);
                }
            }
            if !kept.is_empty() {
                eprintln!(
                    "countersign monitor: warning: the webhook did not accept {} alert(s); \
                     they are sent again on the next step",
                    kept.len()
                );
            }
            self.state.cursor.webhook_pending = kept;
            self.state.save()?;
        }
        Ok(())
    }
}

/// Why a step's checks stopped.
enum StepError {
    /// The log could not be read.
    Fetch(FetchError),
    /// The monitor's own state failed.
    State(anyhow::Error),
    /// A conflict that ends the step.
    Conflict(Box<Alert>),
}

impl From<FetchError> for StepError {
    fn from(e: FetchError) -> Self {
        StepError::Fetch(e)
    }
}

/// The checkpoint body of a signed note the state holds.
fn body(note: &str) -> anyhow::Result<Checkpoint> {
    let n = Note::parse(note.as_bytes()).map_err(|e| anyhow::anyhow!("state.json: {e}"))?;
    Checkpoint::parse(n.text()).map_err(|e| anyhow::anyhow!("state.json: {e}"))
}

/// Runs the monitor: one step with `--once` (its exit status), else a step every `--interval`
/// until SIGTERM or Ctrl-C (0; 2 when the state fails). A signal during a step stops it after
/// the step, so the state is never left between two bundles by choice.
pub async fn run(a: MonitorArgs) -> i32 {
    let mut m = match Monitor::open(&a) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("countersign monitor: error: {e:#}");
            return EXIT_UNUSABLE;
        }
    };
    if a.once {
        return match m.step().await {
            Ok(o) => o.exit_code(),
            Err(e) => {
                eprintln!("countersign monitor: error: {e:#}");
                EXIT_UNUSABLE
            }
        };
    }
    // Installed only here: with --once the default handling stays, so a cron timeout's
    // SIGTERM still stops the process (the state is safe at any instant).
    let signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .and_then(|t| {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map(|i| (t, i))
        });
    let (mut term, mut int) = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("countersign monitor: error: installing the signal handlers: {e}");
            return EXIT_UNUSABLE;
        }
    };
    loop {
        if let Err(e) = m.step().await {
            eprintln!("countersign monitor: error: {e:#}");
            return EXIT_UNUSABLE;
        }
        tokio::select! {
            _ = term.recv() => return EXIT_OK,
            _ = int.recv() => return EXIT_OK,
            _ = tokio::time::sleep(a.interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_wins_over_an_unreachable_log_in_the_exit_status() {
        let status = |alerts: Vec<Kind>| {
            StepOutcome {
                alerts,
                ..StepOutcome::default()
            }
            .exit_code()
        };
        assert_eq!(status(vec![]), EXIT_OK);
        assert_eq!(status(vec![Kind::LogUnreachable]), EXIT_UNUSABLE);
        assert_eq!(status(vec![Kind::WatchedEnrolment]), EXIT_ALERT);
        assert_eq!(
            status(vec![Kind::LogUnreachable, Kind::SplitView]),
            EXIT_ALERT
        );
    }

    #[test]
    fn a_policy_change_is_a_notice_that_changes_no_exit_status() {
        let status = |alerts: Vec<Kind>| {
            StepOutcome {
                alerts,
                ..StepOutcome::default()
            }
            .exit_code()
        };
        assert_eq!(status(vec![Kind::PolicyChanged]), EXIT_OK);
        assert_eq!(
            status(vec![Kind::PolicyChanged, Kind::LogUnreachable]),
            EXIT_UNUSABLE
        );
        assert_eq!(
            status(vec![Kind::PolicyChanged, Kind::BadEntry]),
            EXIT_ALERT
        );
        assert!(Kind::BadEntry.is_alert() && !Kind::PolicyChanged.is_alert());
    }
}
