//! The revocation check of `spec/evidence-bundle.md` (rules R1-R4): given every entry of the log
//! up to a verified bundle's checkpoint, it proves the entries authentic (their RFC 6962 root is
//! the checkpoint's) and that no revocation of the decision's enrolment came before the
//! decision. A bundle alone cannot show this (rule B8); a copy of the log, such as a mirror of
//! its entry bundles, can.

use core::fmt;

use crate::entry::{Entry, EntryError};
use crate::hash::{leaf_hash, Hash, RootStack};

/// What the revocation check needs of a verified decision: where it and its enrolment are, and
/// the checkpoint its evidence leads to. `VerifiedBundle::revocation_subject` makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationSubject {
    /// Log index of the decision.
    pub decision_index: u64,
    /// Log index of the enrolment of the credential that signed it.
    pub enrolment_index: u64,
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// Root hash of the checkpoint.
    pub root: Hash,
}

/// What a passed revocation check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationCheck {
    /// Entries read and proved against the checkpoint (its tree size).
    pub entries: u64,
    /// The first revocation of the enrolment, if one was logged after the decision: the
    /// decision stands, but the credential decides nothing after that index.
    pub revoked_after: Option<u64>,
}

/// Why the revocation check failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationError {
    /// The credential's enrolment was revoked before the decision (rule R3): the decision was
    /// made by a revoked credential.
    RevokedBefore {
        /// Log index of the revocation.
        revocation_index: u64,
    },
    /// Fewer or more entries than the checkpoint's tree size were given (rule R1).
    EntryCount {
        /// The checkpoint's tree size.
        expected: u64,
        /// How many were given (at most one more than expected is counted).
        got: u64,
    },
    /// The entries' RFC 6962 root is not the checkpoint's: they are not the log's entries
    /// (rule R2), and nothing can be concluded from them.
    EntriesDoNotMatchCheckpoint,
    /// The revocation subject is not consistent (a decision or enrolment index not below the
    /// tree size, an enrolment not before the decision).
    InvalidSubject,
    /// An entry of kind 3 that does not decode (rule R4).
    Entry {
        /// Its log index.
        index: u64,
        /// What is wrong with it.
        error: EntryError,
    },
}

impl fmt::Display for RevocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationError::RevokedBefore { revocation_index } => write!(
                f,
                "the credential was revoked at log index {revocation_index}, before the decision"
            ),
            RevocationError::EntryCount { expected, got } => write!(
                f,
                "the checkpoint covers {expected} entries but {got}{} were given",
                if got > expected { " or more" } else { "" }
            ),
            RevocationError::EntriesDoNotMatchCheckpoint => f.write_str(
                "the entries do not hash to the checkpoint's root: they are not this log's",
            ),
            RevocationError::InvalidSubject => f.write_str(
                "the decision and enrolment indices are not in the checkpointed tree in order",
            ),
            RevocationError::Entry { index, error } => write!(f, "entry {index}: {error}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RevocationError {}

/// Checks that the decision of `subject` was not made by a revoked credential
/// (`spec/evidence-bundle.md`, rules R1-R4). `entries` are the log's entries from index 0, in
/// order, exactly `subject.tree_size` of them.
///
/// Every entry is hashed into the RFC 6962 tree (section 2.1) and the root compared with the
/// checkpoint's, so entries that are not the log's are refused
/// ([`RevocationError::EntriesDoNotMatchCheckpoint`]) whatever they hold. A revocation (kind 3)
/// naming `subject.enrolment_index` at an index below the decision's is
/// [`RevocationError::RevokedBefore`]; one after it is reported in
/// [`RevocationCheck::revoked_after`]. Untrusted input never panics; memory stays at one tree
/// path.
pub fn check_not_revoked<I, E>(
    subject: &RevocationSubject,
    entries: I,
) -> Result<RevocationCheck, RevocationError>
where
    I: IntoIterator<Item = E>,
    E: AsRef<[u8]>,
{
    if subject.enrolment_index >= subject.decision_index
        || subject.decision_index >= subject.tree_size
    {
        return Err(RevocationError::InvalidSubject);
    }
    let mut stack = RootStack::default();
    let mut revoked: Option<u64> = None;
    for entry in entries {
        let index = stack.size();
        if index == subject.tree_size {
            return Err(RevocationError::EntryCount {
                expected: subject.tree_size,
                got: index + 1,
            });
        }
        let bytes = entry.as_ref();
        stack.push(leaf_hash(bytes));
        // Only revocations are decoded: byte 1 is the kind (spec/entry.md, rule E3).
        if revoked.is_none() && bytes.get(1) == Some(&3) {
            match Entry::decode(bytes) {
                Ok(Entry::Revocation(r)) => {
                    if r.enrolment_index == subject.enrolment_index {
                        revoked = Some(index);
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(RevocationError::Entry { index, error }),
            }
        }
    }
    if stack.size() != subject.tree_size {
        return Err(RevocationError::EntryCount {
            expected: subject.tree_size,
            got: stack.size(),
        });
    }
    // Hash's PartialEq is constant-time.
    if stack.root() != subject.root {
        return Err(RevocationError::EntriesDoNotMatchCheckpoint);
    }
    match revoked {
        Some(revocation_index) if revocation_index < subject.decision_index => {
            Err(RevocationError::RevokedBefore { revocation_index })
        }
        revoked_after => Ok(RevocationCheck {
            entries: subject.tree_size,
            revoked_after,
        }),
    }
}

#[cfg(test)]
mod tests;
