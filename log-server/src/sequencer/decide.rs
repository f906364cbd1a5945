//! The rules that decide one append against what is already logged, shared by both drivers:
//! the embedded builder asks RocksDB and the batches it has in flight, the shared driver asks
//! what it read from PostgreSQL inside its sequencing transaction. Each driver persists the
//! [`Effects`] of a new entry its own way.

use std::collections::HashMap;

use countersign_verifier::{Entry, Hash};

use crate::error::{AppendError, RefusalReason};
use crate::storage::StorageError;

use super::handle::AppendKind;

/// Maps keyed by hashes and ids: foldhash (seeded per process) rather than SipHash, which was a
/// fifth of the builder's time (profile of `countersign-bench core`).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The decision for one request of a batch.
pub(crate) enum Outcome {
    New(u64),
    Existing(u64),
    Failed(AppendError),
}

/// What is logged before the batch being decided (the batch's own entries are in the
/// [`Pending`] the rules keep).
pub(crate) trait Committed {
    /// Index of an exactly identical logged leaf.
    fn leaf(&self, leaf: &Hash) -> Result<Option<u64>, StorageError>;
    /// Index of the decision that carried this assertion.
    fn assertion(&self, key: &[u8; 32]) -> Result<Option<u64>, StorageError>;
    /// Enrolment index and last sign count of a credential.
    fn credential(&self, id: &[u8]) -> Result<Option<(u64, u32)>, StorageError>;
    /// Index of the first revocation of the enrolment at `enrolment_index`.
    fn revocation(&self, enrolment_index: u64) -> Result<Option<u64>, StorageError>;
    /// Bytes of a logged entry.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError>;
}

/// What the batch being decided has logged so far, which later requests of the same batch are
/// decided against before [`Committed`].
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) leaves: FastMap<Hash, u64>,
    pub(crate) assertions: FastMap<[u8; 32], u64>,
    pub(crate) creds: FastMap<Vec<u8>, (u64, u32)>,
    /// Enrolments logged by the batch (only they are read back by a later decision).
    pub(crate) entries: FastMap<u64, Vec<u8>>,
    /// Enrolment index -> index of its revocation.
    pub(crate) revoked: FastMap<u64, u64>,
}

/// What a new entry changes besides the entry itself and its leaf-hash index.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// The enrolment it is the first revocation of.
    pub(crate) revokes: Option<u64>,
    /// A credential's new state: id, enrolment index, sign count.
    pub(crate) credential: Option<(Vec<u8>, u64, u32)>,
    /// The assertion key it logs.
    pub(crate) assertion: Option<[u8; 32]>,
}

/// The decision for one request: an outcome, or a new entry at `index` with its effects.
pub(crate) enum Decided {
    Done(Outcome),
    New(Effects),
}

impl Pending {
    fn credential(
        &self,
        c: &impl Committed,
        id: &[u8],
    ) -> Result<Option<(u64, u32)>, StorageError> {
        match self.creds.get(id) {
            Some(v) => Ok(Some(*v)),
            None => c.credential(id),
        }
    }

    fn revocation(&self, c: &impl Committed, enrolment: u64) -> Result<Option<u64>, StorageError> {
        match self.revoked.get(&enrolment) {
            Some(v) => Ok(Some(*v)),
            None => c.revocation(enrolment),
        }
    }

    fn entry(&self, c: &impl Committed, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        match self.entries.get(&index) {
            Some(e) => Ok(Some(e.clone())),
            None => c.entry(index),
        }
    }

    /// Decides `entry` (leaf hash `leaf`, checks `kind`) as the entry at `index`, and records
    /// it in the batch when it is new.
    pub(crate) fn decide(
        &mut self,
        c: &impl Committed,
        entry: &[u8],
        leaf: &Hash,
        kind: &AppendKind,
        index: u64,
    ) -> Result<Decided, StorageError> {
        if let Some(&i) = self.leaves.get(leaf) {
            return Ok(Decided::Done(Outcome::Existing(i)));
        }
        if let Some(i) = c.leaf(leaf)? {
            return Ok(Decided::Done(Outcome::Existing(i)));
        }
        let refused = |reason, text: String| {
            Ok(Decided::Done(Outcome::Failed(AppendError::refused(
                reason, text,
            ))))
        };
        let mut fx = Effects::default();
        match kind {
            AppendKind::Other => {}
            AppendKind::Revocation {
                enrolment_index,
                refuse_repeat,
            } => match self.revocation(c, *enrolment_index)? {
                Some(first) if *refuse_repeat => {
                    return refused(
                        RefusalReason::AlreadyRevoked,
                        format!("the enrolment was already revoked by entry {first}"),
                    )
                }
                Some(_) => {}
                None => fx.revokes = Some(*enrolment_index),
            },
            AppendKind::Enrolment { credential_id } => {
                if let Some((enrolled, _)) = self.credential(c, credential_id)? {
                    return match self.entry(c, enrolled)? {
                        Some(o) if same_enrolment(&o, entry) => {
                            Ok(Decided::Done(Outcome::Existing(enrolled)))
                        }
                        _ => refused(
                            RefusalReason::CredentialConflict,
                            "this credential id is already enrolled with a different approver \
                             or key"
                                .into(),
                        ),
                    };
                }
                fx.credential = Some((credential_id.clone(), index, 0));
            }
            AppendKind::Decision {
                assertion_key,
                credential_id,
                enrolment_index,
                sign_count,
            } => {
                let seen = match self.assertions.get(assertion_key) {
                    Some(i) => Some(*i),
                    None => c.assertion(assertion_key)?,
                };
                if let Some(i) = seen {
                    return Ok(Decided::Done(Outcome::Existing(i)));
                }
                let Some((enrol, stored_count)) = self.credential(c, credential_id)? else {
                    return refused(
                        RefusalReason::UnknownCredential,
                        "the credential is not enrolled in this log".into(),
                    );
                };
                if enrol != *enrolment_index {
                    return refused(
                        RefusalReason::WrongEnrolment,
                        "enrolment_index is not this credential's enrolment".into(),
                    );
                }
                // Re-checked here: a revocation may have been decided after the decision's own
                // checks, in this batch or one still being written.
                if let Some(r) = self.revocation(c, enrol)? {
                    return refused(
                        RefusalReason::Revoked,
                        format!("the credential's enrolment was revoked by entry {r}"),
                    );
                }
                // WebAuthn L3 step 22, re-checked here because two decisions from one
                // credential may have been verified concurrently against the same count.
                if let Err(e) = countersign_verifier::check_sign_count(stored_count, *sign_count) {
                    return refused(RefusalReason::SignCount, e.to_string());
                }
                if *sign_count != stored_count {
                    fx.credential = Some((credential_id.clone(), enrol, *sign_count));
                }
                // Both zero (a passkey that does not count): nothing to store.
                fx.assertion = Some(*assertion_key);
            }
        }
        if let Some(e) = fx.revokes {
            self.revoked.insert(e, index);
        }
        if let Some((id, enrol, count)) = &fx.credential {
            self.creds.insert(id.clone(), (*enrol, *count));
        }
        if let Some(k) = fx.assertion {
            self.assertions.insert(k, index);
        }
        self.leaves.insert(*leaf, index);
        if matches!(kind, AppendKind::Enrolment { .. }) {
            // Only enrolments are ever read back by a later decision of the same batch.
            self.entries.insert(index, entry.to_vec());
        }
        Ok(Decided::New(fx))
    }
}

/// Whether two encoded enrolments are the same apart from the time the log set.
pub(crate) fn same_enrolment(a: &[u8], b: &[u8]) -> bool {
    match (Entry::decode(a), Entry::decode(b)) {
        (Ok(Entry::Enrolment(mut x)), Ok(Entry::Enrolment(y))) => {
            x.time_ms = y.time_ms;
            x == y
        }
        _ => false,
    }
}
