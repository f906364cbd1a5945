//! The checkpoint signer: C2SP tlog-checkpoint bodies signed as C2SP signed notes with the
//! log's Ed25519 key. Only the sequencer calls [`LogSigner::sign`], so two checkpoints can only
//! ever be signed from the one in-memory tree.

use countersign_verifier::{Checkpoint, Hash, Note, NoteSignature, VerifierKey};
use ed25519_dalek::{Signer, SigningKey};

/// The log's signing key and identity. `Debug` never shows the key.
pub struct LogSigner {
    key: SigningKey,
    verifier: VerifierKey,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("vkey", &self.verifier.to_vkey())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Why a signer could not be built, or a checkpoint signed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SignerError {
    /// The origin cannot be a C2SP signed-note key name (the verifier says why).
    BadOrigin {
        /// The origin.
        origin: String,
        /// Why not.
        reason: String,
    },
    /// The checkpoint does not make a valid signed note (the verifier says why).
    Note(String),
}

impl std::fmt::Display for SignerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignerError::BadOrigin { origin, reason } => {
                write!(f, "invalid log origin {origin:?} as key name: {reason}")
            }
            SignerError::Note(reason) => write!(f, "note: {reason}"),
        }
    }
}

impl std::error::Error for SignerError {}

impl LogSigner {
    /// A signer for `origin` (also the key name, as C2SP logs do) from a 32-byte Ed25519 seed.
    pub fn new(origin: &str, seed: &[u8; 32]) -> Result<Self, SignerError> {
        let key = SigningKey::from_bytes(seed);
        let verifier =
            VerifierKey::ed25519(origin, key.verifying_key().to_bytes()).map_err(|e| {
                SignerError::BadOrigin {
                    origin: origin.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        Ok(LogSigner { key, verifier })
    }

    /// The origin line of every checkpoint.
    pub fn origin(&self) -> &str {
        self.verifier.name()
    }

    /// The verifier key (`<name>+<id>+<base64>`).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The signed note of the checkpoint for a tree of `size` leaves with root `root`.
    pub fn sign(&self, size: u64, root: Hash) -> Result<String, SignerError> {
        let body = Checkpoint {
            origin: self.origin().to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
        .to_text();
        let mut note = Note::new(&body).map_err(|e| SignerError::Note(e.to_string()))?;
        let sig = self.key.sign(body.as_bytes());
        note.push_signature(NoteSignature {
            name: self.origin().to_owned(),
            key_id: self.verifier.id(),
            signature: sig.to_bytes().to_vec(),
        })
        .map_err(|e| SignerError::Note(e.to_string()))?;
        Ok(note.to_text())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use countersign_verifier::{empty_root, verify_checkpoint};

    #[test]
    fn signed_checkpoints_verify() {
        let s = LogSigner::new("example.com/log", &[7u8; 32]).unwrap();
        let note = s.sign(0, empty_root()).unwrap();
        let v = verify_checkpoint(note.as_bytes(), s.verifier_key(), &[]).unwrap();
        assert_eq!(v.checkpoint.size, 0);
        assert!(!format!("{s:?}").contains("07070707"));
        let other = LogSigner::new("example.com/log", &[8u8; 32]).unwrap();
        assert!(verify_checkpoint(note.as_bytes(), other.verifier_key(), &[]).is_err());
    }
}

#[cfg(test)]
mod origin_tests;
