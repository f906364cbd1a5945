//! C2SP tlog-checkpoint bodies (c2sp.org/tlog-checkpoint) and their verification as signed notes.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::hash::Hash;
use crate::note::{Note, NoteError, VerifiedSignature, VerifierKey};

/// A checkpoint: the log's origin, a tree size and the root hash of that tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line, which is also its signing key name.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root hash of the first `size` leaves.
    pub root: Hash,
    /// Extension lines after the root (opaque; none are defined by us).
    pub extensions: Vec<String>,
}

/// Why a checkpoint was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signed note around it is invalid or not signed by the log key.
    Note(NoteError),
    /// The body breaks a tlog-checkpoint rule; the text says which.
    Malformed(&'static str),
    /// Other keys signed the note, but the log key did not.
    NotSignedByLog,
    /// The origin line is not the expected log origin.
    WrongOrigin {
        /// What the checkpoint says.
        found: String,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Note(e) => write!(f, "checkpoint signature: {e}"),
            CheckpointError::Malformed(why) => write!(f, "malformed checkpoint: {why}"),
            CheckpointError::NotSignedByLog => {
                f.write_str("checkpoint carries no signature by the log key")
            }
            CheckpointError::WrongOrigin { found } => {
                write!(f, "checkpoint is for log {found:?}, not the expected one")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CheckpointError {}

impl From<NoteError> for CheckpointError {
    fn from(e: NoteError) -> Self {
        CheckpointError::Note(e)
    }
}

impl Checkpoint {
    /// Parses a checkpoint body (the text of the note, ending in a newline): origin, decimal tree
    /// size without leading zeros, base64 root hash, then optional non-empty extension lines.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(CheckpointError::Malformed("does not end in a newline"));
        };
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("empty origin line"));
        }
        let size_line = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing tree size line"))?;
        let size = parse_decimal(size_line).ok_or(CheckpointError::Malformed(
            "tree size is not a canonical decimal",
        ))?;
        let root_line = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing root hash line"))?;
        let root = B64
            .decode(root_line)
            .ok()
            .and_then(|b| Hash::from_slice(&b))
            .ok_or(CheckpointError::Malformed(
                "root hash is not 32 bytes of base64",
            ))?;
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(CheckpointError::Malformed("empty extension line"));
            }
            extensions.push(l.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The checkpoint body, ready to be signed as a note's text.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

/// Parses a canonical decimal `u64`: ASCII digits, no sign, no leading zeros except `0` itself.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// A checkpoint whose signature by the log key has been verified, with any witness
/// cosignatures that also verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint body.
    pub checkpoint: Checkpoint,
    /// The signed note text it was read from.
    pub note_text: String,
    /// Witness cosignatures that verified against the keys given besides the log key.
    pub cosignatures: Vec<VerifiedSignature>,
}

/// Verifies a signed checkpoint note: it must carry a valid signature by `log_key`, and its
/// origin line must equal the log key's name (the C2SP convention our logs follow). Other keys
/// in `witnesses` are checked if present; bad signatures from any known key reject the note.
pub fn verify_checkpoint(
    note: &[u8],
    log_key: &VerifierKey,
    witnesses: &[VerifierKey],
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let parsed = Note::parse(note)?;
    let mut keys = Vec::with_capacity(witnesses.len() + 1);
    keys.push(log_key.clone());
    keys.extend_from_slice(witnesses);
    let verified = parsed.verify(&keys)?;
    if !verified.iter().any(|v| v.key == *log_key) {
        return Err(CheckpointError::NotSignedByLog);
    }
    let checkpoint = Checkpoint::parse(parsed.text())?;
    if checkpoint.origin != log_key.name() {
        return Err(CheckpointError::WrongOrigin {
            found: checkpoint.origin,
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        note_text: parsed.text().to_owned(),
        cosignatures: verified.into_iter().filter(|v| v.key != *log_key).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_c2sp_example() {
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let c = Checkpoint::parse(body).unwrap();
        assert_eq!(c.origin, "example.com/behind-the-sofa");
        assert_eq!(c.size, 20852163);
        assert_eq!(c.to_text(), body);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "\n",
            "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",
            "o\n18446744073709551616\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("+1"), None);
    }
}

#[cfg(test)]
mod rule_tests;
