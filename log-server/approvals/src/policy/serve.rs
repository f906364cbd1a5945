//! The approval policy of a running server (`serve --policy FILE`, `spec/policy.md` "Serving a
//! policy"): read at start, logged as a policy entry before it takes effect, re-read on reload,
//! and put in force with [`Approvals::set_active_policy`].
//!
//! Invariant: whatever [`Approvals::active_policy`] returns is a policy entry of the log covered
//! by a signed checkpoint, and the front end's record (`v/policy`) names it. The record lets a
//! restart with the same file reuse the entry instead of logging the same policy again; it is
//! checked against the log at every start, so a store and a log that disagree stop the start.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use countersign_log::{AppendError, Appended, StorageError};
use countersign_verifier::{ApprovalPolicy, Entry, ValidatedPolicy};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use super::{parse_policy_toml, ActivePolicy, PolicyFileError};
use crate::state::Approvals;
use crate::store::{Batch, Durability};

/// Key of [`PolicyRecord`] in the front end's store.
pub const POLICY_RECORD_KEY: &str = "v/policy";

/// The last policy this server logged (`v/policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRecord {
    /// Log index of its policy entry.
    pub index: u64,
    /// Hex SHA-256 of the policy's canonical JSON.
    pub sha256: String,
    /// Whether it is in force. False after a start without `--policy`: the entry is then the
    /// empty policy, logged to show that none is in force, or the last policy of a server that
    /// no longer serves one.
    pub in_force: bool,
}

/// Why a policy file cannot be used ([`read_policy_file`]). `Display` starts with the file's
/// path, and the line at fault when there is one (`FILE:LINE: message`).
#[derive(Debug)]
#[non_exhaustive]
pub enum PolicyLoadError {
    /// The file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not UTF-8 text.
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a valid policy.
    Refused {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        error: PolicyFileError,
    },
}

impl fmt::Display for PolicyLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyLoadError::Read { path, source } => {
                write!(
                    f,
                    "{}: cannot read the policy file: {source}",
                    path.display()
                )
            }
            PolicyLoadError::NotText { path } => {
                write!(f, "{}: the policy file is not UTF-8 text", path.display())
            }
            PolicyLoadError::Refused { path, error } => match error.line {
                Some(l) => write!(f, "{}:{l}: {}", path.display(), error.kind),
                None => write!(f, "{}: {}", path.display(), error.kind),
            },
        }
    }
}

impl std::error::Error for PolicyLoadError {}

/// Reads and validates the policy file at `path` ([`parse_policy_toml`]). Blocking.
pub fn read_policy_file(path: &Path) -> Result<ValidatedPolicy, PolicyLoadError> {
    let bytes = std::fs::read(path).map_err(|source| PolicyLoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| PolicyLoadError::NotText {
        path: path.to_owned(),
    })?;
    parse_policy_toml(&text).map_err(|error| PolicyLoadError::Refused {
        path: path.to_owned(),
        error,
    })
}

/// The empty policy (no groups, no rules): logged when a server that served a policy starts
/// without one, so the log shows that none is in force.
pub fn empty_policy() -> Result<ValidatedPolicy, countersign_verifier::ApprovalPolicyError> {
    ApprovalPolicy::new(Default::default(), Vec::new()).validate()
}

/// Why the policy could not be put in force at start ([`PolicyService::start`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum PolicyStartError {
    /// The front end's store could not be read or written.
    Storage(StorageError),
    /// The record of the last policy logged does not match the log.
    RecordMismatch {
        /// The log index the record names.
        index: u64,
        /// The policy hash the record names.
        sha256: String,
        /// What the log holds instead.
        why: String,
    },
    /// The log did not accept the policy entry.
    Append(AppendError),
    /// The empty policy did not validate (a bug).
    Empty(countersign_verifier::ApprovalPolicyError),
}

impl fmt::Display for PolicyStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyStartError::Storage(e) => {
                write!(f, "reading or writing the policy record failed: {e}")
            }
            PolicyStartError::RecordMismatch { index, sha256, why } => write!(
                f,
                "the approvals store says the last policy logged is log entry {index} (sha256 \
                 {sha256}), but {why}; the log and the approvals store of this data directory \
                 do not belong together (restore both from one backup)"
            ),
            PolicyStartError::Append(e) => write!(f, "logging the policy entry failed: {e}"),
            PolicyStartError::Empty(e) => write!(f, "the empty policy is refused: {e}"),
        }
    }
}

impl std::error::Error for PolicyStartError {}

impl From<StorageError> for PolicyStartError {
    fn from(e: StorageError) -> Self {
        PolicyStartError::Storage(e)
    }
}

/// What [`PolicyService::start`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// No policy given and none ever logged (or none in force already): nothing logged.
    NoPolicy,
    /// The file's policy is the one last logged: its entry is reused, nothing logged.
    Reused {
        /// Its entry's log index.
        index: u64,
    },
    /// The file's policy was logged at `index` and is in force.
    Logged {
        /// Its entry's log index.
        index: u64,
    },
    /// No policy given while the last one logged has groups or rules: the empty policy was
    /// logged at `index`; none is in force.
    Withdrawn {
        /// The empty policy's entry.
        index: u64,
    },
}

/// What [`PolicyService::reload`] did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The server runs without `--policy`: there is no file to read.
    NoFile,
    /// The file is refused; the policy in force stays.
    Refused(PolicyLoadError),
    /// The file holds the policy in force: nothing logged.
    Unchanged {
        /// The policy entry in force.
        index: u64,
        /// Its policy hash.
        sha256: [u8; 32],
    },
    /// The new policy was logged at `index` and is now in force.
    Reloaded {
        /// Its entry's log index.
        index: u64,
        /// Its policy hash.
        sha256: [u8; 32],
    },
    /// Logging it failed; the policy in force stays.
    Failed(String),
}

impl ReloadOutcome {
    /// The `result` label of `countersign_policy_reloads_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ReloadOutcome::NoFile => "no_file",
            ReloadOutcome::Refused(_) => "refused",
            ReloadOutcome::Unchanged { .. } => "unchanged",
            ReloadOutcome::Reloaded { .. } => "reloaded",
            ReloadOutcome::Failed(_) => "failed",
        }
    }
}

/// The policy of a running server: its file, and reloads of it, one at a time.
pub struct PolicyService {
    approvals: Arc<Approvals>,
    file: Option<PathBuf>,
    /// Held for a whole reload: two reloads at once could log one file twice.
    reloading: tokio::sync::Mutex<()>,
    registry: Registry,
    reloads: Family<[(&'static str, &'static str); 1], Counter>,
}

impl fmt::Debug for PolicyService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyService")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl countersign_log::MetricsSource for PolicyService {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

fn mismatch(r: &PolicyRecord, why: impl Into<String>) -> PolicyStartError {
    PolicyStartError::RecordMismatch {
        index: r.index,
        sha256: r.sha256.clone(),
        why: why.into(),
    }
}

/// The policy of the entry `r` names, if the log holds that policy entry there under a signed
/// checkpoint.
fn logged_policy(a: &Approvals, r: &PolicyRecord) -> Result<ValidatedPolicy, PolicyStartError> {
    let size = a.log.published().size;
    if r.index >= size {
        return Err(mismatch(
            r,
            format!(
                "the log's signed tree size is {size}, so it has no entry {}",
                r.index
            ),
        ));
    }
    let bytes = crate::util::wait(a.log.entry(r.index))?
        .ok_or_else(|| mismatch(r, "the log has no entry at that index"))?;
    let entry = Entry::decode(&bytes)
        .map_err(|e| mismatch(r, format!("the log's entry there does not decode: {e}")))?;
    let Entry::Policy(p) = entry else {
        return Err(mismatch(
            r,
            format!(
                "the log's entry there is a {} entry, not a policy entry (kind 4)",
                entry.kind_name()
            ),
        ));
    };
    let logged = hex::encode(p.policy_hash());
    if logged != r.sha256 {
        return Err(mismatch(
            r,
            format!("the log's policy entry there has sha256 {logged}"),
        ));
    }
    p.validated().map_err(|e| {
        mismatch(
            r,
            format!("the log's entry there does not hold a valid policy: {e}"),
        )
    })
}

impl PolicyService {
    /// Puts the policy of `file` in force on a started front end, before it serves requests
    /// (`spec/policy.md` S1-S4): `parsed` is the file's policy, already read
    /// ([`read_policy_file`]) so that a bad file stops the start before anything listens.
    ///
    /// The file's policy is logged unless it is the one last logged; without a file, the empty
    /// policy is logged if the last one logged had groups or rules, and none is in force.
    pub async fn start(
        approvals: Arc<Approvals>,
        file: Option<(PathBuf, ValidatedPolicy)>,
    ) -> Result<(Arc<PolicyService>, StartOutcome), PolicyStartError> {
        let reloads = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let mut registry = Registry::with_prefix("countersign_policy");
        registry.register(
            "reloads",
            "Policy file reloads (SIGHUP), by result: reloaded, unchanged, refused, failed",
            reloads.clone(),
        );
        let (path, policy) = match file {
            Some((p, v)) => (Some(p), Some(v)),
            None => (None, None),
        };
        let service = Arc::new(PolicyService {
            approvals,
            file: path,
            reloading: tokio::sync::Mutex::new(()),
            registry,
            reloads,
        });
        let outcome = service.put_in_force_at_start(policy).await?;
        Ok((service, outcome))
    }

    async fn put_in_force_at_start(
        &self,
        policy: Option<ValidatedPolicy>,
    ) -> Result<StartOutcome, PolicyStartError> {
        let a = &self.approvals;
        let record: Option<PolicyRecord> = a.store.get(POLICY_RECORD_KEY).await?;
        let last = match &record {
            Some(r) => Some(logged_policy(a, r)?),
            None => None,
        };
        match (policy, record, last) {
            (Some(p), Some(r), Some(_)) if r.sha256 == hex::encode(p.hash()) => {
                if !r.in_force {
                    self.write_record(r.index, None, &p, true).await?;
                }
                self.activate(p, r.index);
                Ok(StartOutcome::Reused { index: r.index })
            }
            (Some(p), _, _) => {
                let appended = self.log(&p).await?;
                let index = appended.index;
                self.write_record(index, Some(&appended), &p, true).await?;
                self.activate(p, index);
                Ok(StartOutcome::Logged { index })
            }
            (None, Some(r), Some(last)) => {
                let empty = empty_policy().map_err(PolicyStartError::Empty)?;
                a.set_active_policy(None);
                if last != empty {
                    let appended = self.log(&empty).await?;
                    let index = appended.index;
                    self.write_record(index, Some(&appended), &empty, false)
                        .await?;
                    Ok(StartOutcome::Withdrawn { index })
                } else {
                    if r.in_force {
                        self.write_record(r.index, None, &last, false).await?;
                    }
                    Ok(StartOutcome::NoPolicy)
                }
            }
            (None, _, _) => {
                a.set_active_policy(None);
                Ok(StartOutcome::NoPolicy)
            }
        }
    }

    /// Appends `p`'s policy entry; returns the append once a signed checkpoint covers it (what
    /// an [`Appended`] means).
    async fn log(&self, p: &ValidatedPolicy) -> Result<Appended, PolicyStartError> {
        self.approvals
            .log
            .append_policy(p)
            .await
            .map_err(PolicyStartError::Append)
    }

    /// Writes the record naming the entry at `index`; with `appended` (the entry was just
    /// logged), the entry's `policy.changed` audit event in the same write.
    async fn write_record(
        &self,
        index: u64,
        appended: Option<&Appended>,
        p: &ValidatedPolicy,
        in_force: bool,
    ) -> Result<(), StorageError> {
        let record = PolicyRecord {
            index,
            sha256: hex::encode(p.hash()),
            in_force,
        };
        let a = &self.approvals;
        let mut batch = Batch::new();
        batch.put_json(POLICY_RECORD_KEY, &record)?;
        let event = match appended {
            Some(ap) => crate::audit::appended_event(&a.log, ap, None).await,
            None => None,
        };
        let events: Vec<_> = event.into_iter().collect();
        a.store
            .commit_with_events(batch, &events, Durability::Sync)
            .await
    }

    fn activate(&self, policy: ValidatedPolicy, index: u64) {
        let sha256 = policy.hash();
        self.approvals
            .set_active_policy(Some(Arc::new(ActivePolicy {
                policy,
                index,
                sha256,
            })));
    }

    /// The policy file (`--policy`), if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads the file again (SIGHUP, `spec/policy.md` S5): a refused file, or a log that does
    /// not take the entry, leaves the policy in force; the same policy logs nothing; a new one
    /// is logged, then put in force (requests already made keep the policy their statement
    /// names). Logs and counts the outcome.
    pub async fn reload(&self) -> ReloadOutcome {
        let outcome = self.reload_inner().await;
        self.reloads
            .get_or_create(&[("result", outcome.label())])
            .inc();
        match &outcome {
            ReloadOutcome::NoFile => {
                tracing::info!("policy not reloaded: the server runs without --policy")
            }
            ReloadOutcome::Refused(e) => {
                tracing::error!("policy reload refused: {e}; the policy in force stays")
            }
            ReloadOutcome::Unchanged { index, sha256 } => tracing::info!(
                index,
                sha256 = %hex::encode(sha256),
                "policy unchanged: the file holds the policy in force; nothing logged"
            ),
            ReloadOutcome::Reloaded { index, sha256 } => tracing::info!(
                index,
                sha256 = %hex::encode(sha256),
                "policy reloaded: logged at index {index}, in force for new requests"
            ),
            ReloadOutcome::Failed(why) => {
                tracing::error!("policy reload failed: {why}; the policy in force stays")
            }
        }
        outcome
    }

    async fn reload_inner(&self) -> ReloadOutcome {
        let Some(path) = self.file.clone() else {
            return ReloadOutcome::NoFile;
        };
        let _one = self.reloading.lock().await;
        // A file read: off the async workers.
        let read = tokio::task::spawn_blocking(move || read_policy_file(&path)).await;
        let policy = match read {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return ReloadOutcome::Refused(e),
            Err(e) => return ReloadOutcome::Failed(format!("the file read task failed: {e}")),
        };
        let sha256 = policy.hash();
        if let Some(current) = self.approvals.active_policy() {
            if current.sha256 == sha256 {
                return ReloadOutcome::Unchanged {
                    index: current.index,
                    sha256,
                };
            }
        }
        let appended = match self.log(&policy).await {
            Ok(a) => a,
            Err(e) => return ReloadOutcome::Failed(e.to_string()),
        };
        let index = appended.index;
        // The entry is logged: from here on the new policy is what the log says took effect, so
        // it is put in force even if the record cannot be written (the next start then logs
        // the file's policy again, which is harmless).
        if let Err(e) = self
            .write_record(index, Some(&appended), &policy, true)
            .await
        {
            tracing::error!(
                index,
                error = %e,
                "the policy record was not written; the next start logs the policy again"
            );
        }
        self.activate(policy, index);
        ReloadOutcome::Reloaded { index, sha256 }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_refusal_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[groups]\nt = [\"a\"]\n\n[[rules]]\nname = 3\n").unwrap();
        let e = read_policy_file(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:5: ", path.display())), "{e}");
        let missing = dir.path().join("nope.toml");
        let e = read_policy_file(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read", missing.display())),
            "{e}"
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let e = read_policy_file(&path).unwrap_err().to_string();
        assert!(e.ends_with("not UTF-8 text"), "{e}");
    }

    #[test]
    fn the_empty_policy_is_valid_and_has_nothing_in_it() {
        let e = empty_policy().unwrap();
        assert!(e.policy().groups.is_empty() && e.policy().rules.is_empty());
        assert_eq!(ValidatedPolicy::from_json(&e.canonical_json()).unwrap(), e);
    }

    #[test]
    fn the_record_refuses_unknown_members() {
        let ok: PolicyRecord =
            serde_json::from_str(r#"{"index":3,"sha256":"ab","in_force":true}"#).unwrap();
        assert_eq!(ok.index, 3);
        assert!(serde_json::from_str::<PolicyRecord>(
            r#"{"index":3,"sha256":"ab","in_force":true,"x":1}"#
        )
        .is_err());
    }
}
