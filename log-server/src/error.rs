//! The log's typed errors. None of them knows HTTP: statuses are assigned by [`crate::http`].

pub use crate::storage::StorageError;

/// Why an entry was refused: which check failed. Each reason has a stable machine-readable
/// [`code`](RefusalReason::code), the `error` member of the HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The request itself is malformed (not JSON, a field that is not hex, ...).
    InvalidRequest,
    /// The enrolment's public key is not a supported COSE key.
    InvalidPublicKey,
    /// The entry does not encode (a field too long, an unknown version, ...).
    InvalidEntry,
    /// `enrolment_index` is not in the log.
    UnknownEnrolment,
    /// The enrolment at `enrolment_index` is for another approver or credential.
    EnrolmentMismatch,
    /// The entry at `enrolment_index` is not an enrolment.
    NotAnEnrolment,
    /// `enrolment_index` is not this credential's enrolment.
    WrongEnrolment,
    /// The credential is not enrolled in this log.
    UnknownCredential,
    /// The credential id is already enrolled with another approver or key.
    CredentialConflict,
    /// The WebAuthn assertion does not verify.
    InvalidAssertion,
    /// The signature counter did not increase (a possibly cloned authenticator).
    SignCount,
    /// The entry would be stamped after the deadline its submitter set (a decision on a request
    /// that expired while it was being logged).
    TooLate,
    /// The credential's enrolment has been revoked: it may not decide anything after its
    /// revocation entry (`spec/entry.md`, kind 3).
    Revoked,
    /// The enrolment already has a revocation entry; a second one is not logged.
    AlreadyRevoked,
}

impl RefusalReason {
    /// The machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            RefusalReason::InvalidRequest => "invalid_request",
            RefusalReason::InvalidPublicKey => "invalid_public_key",
            RefusalReason::InvalidEntry => "invalid_entry",
            RefusalReason::UnknownEnrolment => "unknown_enrolment",
            RefusalReason::EnrolmentMismatch => "enrolment_mismatch",
            RefusalReason::NotAnEnrolment => "not_an_enrolment",
            RefusalReason::WrongEnrolment => "wrong_enrolment",
            RefusalReason::UnknownCredential => "unknown_credential",
            RefusalReason::CredentialConflict => "credential_conflict",
            RefusalReason::InvalidAssertion => "invalid_assertion",
            RefusalReason::SignCount => "sign_count",
            RefusalReason::TooLate => "too_late",
            RefusalReason::Revoked => "revoked",
            RefusalReason::AlreadyRevoked => "already_revoked",
        }
    }
}

/// Why an append failed. Nothing was written for it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    /// The entry failed a check.
    Refused {
        /// Which check.
        reason: RefusalReason,
        /// What was wrong, in words a submitter can act on.
        detail: String,
    },
    /// The queue is full; retry later.
    QueueFull,
    /// The log is shutting down.
    ShuttingDown,
    /// Storage failed; the entry was not appended.
    Storage,
    /// Quorum mode: the entry is logged (at `index`), but no checkpoint covering it reached the
    /// witness quorum in time; retrying returns the same leaf.
    NotWitnessed {
        /// The entry's leaf index.
        index: u64,
    },
    /// Shared driver: the database could not be reached or failed; nothing was appended.
    Unavailable,
    /// Shared driver: the entry is sequenced (at `index`), but no checkpoint covering it was
    /// published in the bucket in time; retrying returns the same leaf once one is.
    NotPublished {
        /// The entry's leaf index.
        index: u64,
        /// Why integration is behind (the bucket unreachable, ...), for operators.
        reason: String,
    },
}

impl AppendError {
    /// A refusal for `reason`.
    pub fn refused(reason: RefusalReason, detail: impl Into<String>) -> Self {
        AppendError::Refused {
            reason,
            detail: detail.into(),
        }
    }

    /// The refusal's reason, if the entry was refused by a check.
    pub fn reason(&self) -> Option<RefusalReason> {
        match self {
            AppendError::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Refused { reason, detail } => write!(f, "{}: {detail}", reason.code()),
            AppendError::QueueFull => f.write_str("the append queue is full"),
            AppendError::ShuttingDown => f.write_str("the log is shutting down"),
            AppendError::Storage => f.write_str("storage failed; nothing was appended"),
            AppendError::NotWitnessed { index } => write!(
                f,
                "entry {index} is logged, but no checkpoint covering it reached the witness \
                 quorum in time"
            ),
            AppendError::Unavailable => {
                f.write_str("the database is unavailable; nothing was appended")
            }
            AppendError::NotPublished { index, reason } => write!(
                f,
                "entry {index} is sequenced, but no checkpoint covering it is published yet \
                 ({reason})"
            ),
        }
    }
}

impl std::error::Error for AppendError {}

/// Why the log could not start or be backed up. The message says what to fix.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitError {
    /// A file or directory could not be read, written or created.
    Io {
        /// What was being done, and to which path.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The data directory holds something this log cannot use (a bad key file, another
    /// origin, ...).
    Unusable(String),
    /// The configuration is invalid.
    Config(String),
    /// The store failed.
    Storage(StorageError),
}

impl InitError {
    /// An I/O failure doing `what` on `path`.
    pub fn io(what: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        InitError::Io {
            what: format!("{what} {}", path.display()),
            source,
        }
    }
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::Io { what, source } => write!(f, "{what}: {source}"),
            InitError::Unusable(s) | InitError::Config(s) => f.write_str(s),
            InitError::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::Io { source, .. } => Some(source),
            InitError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StorageError> for InitError {
    fn from(e: StorageError) -> Self {
        InitError::Storage(e)
    }
}

#[cfg(test)]
mod tests;
