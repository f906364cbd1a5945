//! C2SP tlog-proof (`c2sp.org/tlog-proof@v1`): a text form of "this entry is at this index of
//! this checkpointed tree", verifiable offline.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::checkpoint::{parse_decimal, verify_checkpoint, CheckpointError, VerifiedCheckpoint};
use crate::hash::Hash;
use crate::note::VerifierKey;
use crate::proof::{verify_inclusion, ProofError, MAX_PROOF_HASHES};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional opaque extra data (unauthenticated).
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry.
    pub index: u64,
    /// Inclusion proof, leaf sibling first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

/// Why a tlog-proof was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlogProofError {
    /// The text breaks the format; the text says which rule.
    Malformed(&'static str),
    /// The checkpoint does not verify.
    Checkpoint(CheckpointError),
    /// The inclusion proof does not verify against the checkpoint.
    Inclusion(ProofError),
}

impl fmt::Display for TlogProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlogProofError::Malformed(why) => write!(f, "malformed tlog-proof: {why}"),
            TlogProofError::Checkpoint(e) => write!(f, "tlog-proof {e}"),
            TlogProofError::Inclusion(e) => write!(f, "tlog-proof inclusion: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TlogProofError {}

impl TlogProof {
    /// Formats the proof.
    pub fn to_text(&self) -> String {
        let mut s = String::from(HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            s.push_str(&B64.encode(extra));
            s.push('\n');
        }
        s.push_str(&alloc::format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&B64.encode(h.0));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        use TlogProofError::Malformed as M;
        if text.len() > crate::note::MAX_NOTE_BYTES + 8 * 1024 {
            return Err(M("too large"));
        }
        let Some((head, checkpoint)) = text.split_once("\n\n") else {
            return Err(M("no blank line before the checkpoint"));
        };
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(M("first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or(M("missing index line"))?;
        let mut extra = None;
        if let Some(b) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(b).map_err(|_| M("extra is not base64"))?);
            line = lines.next().ok_or(M("missing index line"))?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or(M("index line is not 'index <decimal>'"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return Err(M("too many proof hashes"));
            }
            let h = B64
                .decode(l)
                .ok()
                .and_then(|b| Hash::from_slice(&b))
                .ok_or(M("proof line is not a base64 SHA-256 hash"))?;
            proof.push(h);
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: String::from(checkpoint),
        })
    }

    /// Verifies the checkpoint with `log_key` (and any `witnesses`) and that `leaf_hash` is at
    /// [`TlogProof::index`] of its tree.
    pub fn verify(
        &self,
        leaf_hash: &Hash,
        log_key: &VerifierKey,
        witnesses: &[VerifierKey],
    ) -> Result<VerifiedCheckpoint, TlogProofError> {
        let cp = verify_checkpoint(self.checkpoint.as_bytes(), log_key, witnesses)
            .map_err(TlogProofError::Checkpoint)?;
        verify_inclusion(
            leaf_hash,
            self.index,
            cp.checkpoint.size,
            &self.proof,
            &cp.checkpoint.root,
        )
        .map_err(TlogProofError::Inclusion)?;
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    const CP: &str = "example.com/log\n2\nAAAA\n\n— example.com/log sig\n";

    fn proof() -> TlogProof {
        TlogProof {
            extra: Some(b"opaque".to_vec()),
            index: 1,
            proof: alloc::vec![Hash([1; 32]), Hash([2; 32])],
            checkpoint: CP.to_string(),
        }
    }

    #[test]
    fn the_text_form_round_trips() {
        let p = proof();
        assert_eq!(TlogProof::parse(&p.to_text()), Ok(p.clone()));
        let bare = TlogProof {
            extra: None,
            proof: Vec::new(),
            ..p
        };
        assert_eq!(TlogProof::parse(&bare.to_text()), Ok(bare));
    }

    #[test]
    fn malformed_text_is_refused_with_the_rule_it_breaks() {
        let good = proof().to_text();
        let (head, cp) = good.split_once("\n\n").unwrap();
        let h = B64.encode([3u8; 32]);
        let many = (0..=MAX_PROOF_HASHES)
            .map(|_| h.clone())
            .collect::<Vec<_>>();
        let cases: [(String, &str); 13] = [
            (String::new(), "no blank line before the checkpoint"),
            (head.to_string(), "no blank line before the checkpoint"),
            (
                good.replacen("tlog-proof@v1", "tlog-proof@v2", 1),
                "first line is not c2sp.org/tlog-proof@v1",
            ),
            (format!("{HEADER}\n\n{cp}"), "missing index line"),
            (
                format!("{HEADER}\nextra b3BhcXVl\n\n{cp}"),
                "missing index line",
            ),
            (
                good.replacen("extra b3BhcXVl", "extra b3BhcXVl!", 1),
                "extra is not base64",
            ),
            (
                good.replacen("index 1", "index 01", 1),
                "index line is not 'index <decimal>'",
            ),
            (
                good.replacen("index 1", "index -1", 1),
                "index line is not 'index <decimal>'",
            ),
            (
                good.replacen("index 1", "index  1", 1),
                "index line is not 'index <decimal>'",
            ),
            (
                good.replacen("index 1", "index 18446744073709551616", 1),
                "index line is not 'index <decimal>'",
            ),
            (
                format!("{HEADER}\nindex 1\n{}\n\n{cp}", &h[..40]),
                "proof line is not a base64 SHA-256 hash",
            ),
            (
                format!("{HEADER}\nindex 1\n{}\n\n{cp}", many.join("\n")),
                "too many proof hashes",
            ),
            (
                format!(
                    "{good}{}",
                    "x".repeat(crate::note::MAX_NOTE_BYTES + 8 * 1024)
                ),
                "too large",
            ),
        ];
        for (text, why) in cases {
            assert_eq!(
                TlogProof::parse(&text),
                Err(TlogProofError::Malformed(why)),
                "{text:.200}"
            );
        }
        // A base64 hash of the wrong length, and a stray empty line among the hashes.
        let short = format!("{HEADER}\nindex 1\n{}\n\n{cp}", B64.encode([3u8; 31]));
        assert!(matches!(
            TlogProof::parse(&short),
            Err(TlogProofError::Malformed(_))
        ));
        let stray = good.replacen("index 1\n", "index 1\n\n", 1);
        let p = TlogProof::parse(&stray).unwrap();
        assert!(p.proof.is_empty() && p.checkpoint != CP, "{p:?}");
    }
}
