//! C2SP signed notes (c2sp.org/signed-note): parsing, verifier keys, Ed25519 signatures and
//! C2SP tlog-cosignature (`cosignature/v1`) witness cosignatures.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::crypto;
use crate::hash::sha256;

/// The largest note accepted, in bytes. Checkpoints are a few hundred bytes; the bound keeps a
/// hostile note from costing more than a few signature checks.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// The most signature lines a note may carry (the same cap as Go's `sumdb/note`).
pub const MAX_SIGNATURES: usize = 100;

/// Signature type byte for Ed25519 (C2SP signed-note).
pub const ALG_ED25519: u8 = 0x01;
/// Signature type byte for timestamped Ed25519 witness cosignatures (C2SP tlog-cosignature).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Why a note, or a verifier key, was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is not a well-formed signed note; the text says which rule it breaks.
    Malformed(&'static str),
    /// The note is larger than [`MAX_NOTE_BYTES`].
    TooLarge,
    /// The note has more than [`MAX_SIGNATURES`] signature lines.
    TooManySignatures,
    /// A signature whose key name and ID match a known key does not verify: the note is rejected
    /// whole, since a known key never signs something else under the same name.
    BadSignature {
        /// The key's `<name>+<hex id>`.
        key: String,
    },
    /// None of the signatures is from a known key.
    NoVerifiedSignature,
    /// A verifier key string is malformed; the text says how.
    BadVerifierKey(&'static str),
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::Malformed(why) => write!(f, "malformed signed note: {why}"),
            NoteError::TooLarge => write!(f, "signed note is larger than {MAX_NOTE_BYTES} bytes"),
            NoteError::TooManySignatures => {
                write!(f, "signed note has more than {MAX_SIGNATURES} signatures")
            }
            NoteError::BadSignature { key } => write!(f, "invalid signature for key {key}"),
            NoteError::NoVerifiedSignature => {
                f.write_str("signed note has no signature from any of the given keys")
            }
            NoteError::BadVerifierKey(why) => write!(f, "malformed verifier key: {why}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NoteError {}

/// C2SP key ID: the first four bytes, big-endian, of `SHA-256(name || 0x0A || type || key)`.
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut buf = Vec::with_capacity(name.len() + 2 + public_key.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(alg);
    buf.extend_from_slice(public_key);
    let h = sha256(&buf);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// Key names are non-empty and contain no Unicode white space and no `+` (C2SP signed-note).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A public key that signatures on notes are checked against, with its name and key ID.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    alg: u8,
    key: [u8; 32],
    /// The key decompressed once, when the verifier key is made, rather than on every
    /// signature; `None` if the bytes are not a curve point (every signature then fails).
    prepared: Option<ed25519_dalek::VerifyingKey>,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl VerifierKey {
    /// An Ed25519 note key (type 0x01) named `name`.
    pub fn ed25519(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        Self::new(name, ALG_ED25519, public_key)
    }

    /// A witness cosignature key (type 0x04, C2SP tlog-cosignature) named `name`.
    pub fn cosignature(name: &str, public_key: [u8; 32]) -> Result<Self, NoteError> {
        Self::new(name, ALG_COSIGNATURE_V1, public_key)
    }

    fn new(name: &str, alg: u8, key: [u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::BadVerifierKey(
                "key name is empty or contains a space or '+'",
            ));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id: key_id(name, alg, &key),
            alg,
            key,
            prepared: ed25519_dalek::VerifyingKey::from_bytes(&key).ok(),
        })
    }

    /// Parses a verifier key `<name>+<hex id>+<base64(type || key)>` (C2SP signed-note; the
    /// form Go's `note.NewVerifier` takes). The key ID must match the one computed from the key.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let vkey = vkey.trim_end_matches(['\n', '\r']);
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadVerifierKey(
                "expected <name>+<hex key id>+<base64 key>",
            ));
        };
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::BadVerifierKey("key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id_hex, 16)
            .map_err(|_| NoteError::BadVerifierKey("key id is not 8 hex digits"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::BadVerifierKey("key is not valid base64"))?;
        let Some((&alg, key)) = raw.split_first() else {
            return Err(NoteError::BadVerifierKey("key is empty"));
        };
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(NoteError::BadVerifierKey(
                "unsupported signature type (only Ed25519 0x01 and cosignature/v1 0x04)",
            ));
        }
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::BadVerifierKey("Ed25519 key is not 32 bytes"))?;
        let k = Self::new(name, alg, key)?;
        if k.id != id {
            return Err(NoteError::BadVerifierKey(
                "key id does not match the name and key",
            ));
        }
        Ok(k)
    }

    /// The verifier key string `<name>+<hex id>+<base64(type || key)>`.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(self.alg);
        raw.extend_from_slice(&self.key);
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-bit key ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.key
    }

    /// True for a witness cosignature (`cosignature/v1`) key.
    pub fn is_cosignature(&self) -> bool {
        self.alg == ALG_COSIGNATURE_V1
    }

    fn check(&self, text: &str, sig: &[u8]) -> Option<Option<u64>> {
        if self.alg == ALG_COSIGNATURE_V1 {
            // timestamp(8, big-endian) || Ed25519 signature over the cosigned message.
            let (ts, s) = sig.split_at_checked(8)?;
            let ts = u64::from_be_bytes(ts.try_into().ok()?);
            // C2SP tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1.
            if ts > i64::MAX as u64 {
                return None;
            }
            let msg = cosignature_message(ts, text);
            let vk = self.prepared.as_ref()?;
            crypto::verify_ed25519_prepared(vk, msg.as_bytes(), s).then_some(Some(ts))
        } else {
            let vk = self.prepared.as_ref()?;
            crypto::verify_ed25519_prepared(vk, text.as_bytes(), sig).then_some(None)
        }
    }
}

/// The message a `cosignature/v1` witness signs: `cosignature/v1\ntime <t>\n` then the
/// checkpoint text (C2SP tlog-cosignature).
pub fn cosignature_message(timestamp: u64, checkpoint_text: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (the first four bytes of the decoded signature).
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Formats the line `— <name> <base64(key id || signature)>\n`.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, B64.encode(raw))
    }
}

/// A parsed, not yet verified, signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// A signature that verified, with its key and (for cosignatures) its timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The key that made it.
    pub key: VerifierKey,
    /// For a `cosignature/v1`, the time the witness signed (seconds since the Unix epoch).
    pub timestamp: Option<u64>,
}

impl Note {
    /// Builds an unsigned note from its text, which must end in a newline.
    pub fn new(text: &str) -> Result<Self, NoteError> {
        check_text_chars(text)?;
        if !text.ends_with('\n') {
            return Err(NoteError::Malformed("text does not end in a newline"));
        }
        Ok(Note {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note (C2SP signed-note "Format"): UTF-8, no control characters but
    /// newline, the text separated from one or more signature lines by the last blank line.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge);
        }
        let s = core::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        check_text_chars(s)?;
        let Some(split) = s.rfind("\n\n") else {
            return Err(NoteError::Malformed(
                "no blank line between text and signatures",
            ));
        };
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::Malformed(
                "signature block does not end in a newline",
            ));
        };
        if sigs.is_empty() {
            return Err(NoteError::Malformed("no signature lines"));
        }
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(NoteError::Malformed(
                    "signature line does not start with an em dash and a space",
                ));
            };
            let Some((name, b64)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed("signature line has no signature"));
            };
            if !is_valid_key_name(name) {
                return Err(NoteError::Malformed("invalid key name in signature line"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not valid base64"))?;
            if raw.len() < 5 {
                return Err(NoteError::Malformed("signature is too short"));
            }
            let (id, sig) = raw.split_at(4);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
                signature: sig.to_vec(),
            });
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line (the caller signs [`Note::text`]).
    pub fn push_signature(&mut self, sig: NoteSignature) -> Result<(), NoteError> {
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        if !is_valid_key_name(&sig.name) {
            return Err(NoteError::Malformed("invalid key name in signature line"));
        }
        self.signatures.push(sig);
        Ok(())
    }

    /// The note in its wire form: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out
    }

    /// Checks the signatures against `keys` (C2SP signed-note "Signatures"): signatures from
    /// unknown keys are ignored, any failing signature from a known key rejects the note, and at
    /// least one must verify. Returns the verified signatures, one per key.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<VerifiedSignature>, NoteError> {
        let mut verified: Vec<VerifiedSignature> = Vec::new();
        for sig in &self.signatures {
            let Some(key) = keys
                .iter()
                .find(|k| k.name == sig.name && k.id == sig.key_id)
            else {
                continue;
            };
            let Some(timestamp) = key.check(&self.text, &sig.signature) else {
                return Err(NoteError::BadSignature {
                    key: format!("{}+{:08x}", key.name, key.id),
                });
            };
            if !verified.iter().any(|v| v.key == *key) {
                verified.push(VerifiedSignature {
                    key: key.clone(),
                    timestamp,
                });
            }
        }
        if verified.is_empty() {
            return Err(NoteError::NoVerifiedSignature);
        }
        Ok(verified)
    }
}

fn check_text_chars(s: &str) -> Result<(), NoteError> {
    if s.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::Malformed(
            "contains a control character other than newline",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    #[test]
    fn vkey_round_trip() {
        let k = VerifierKey::parse(PETER).unwrap();
        assert_eq!(k.name(), "PeterNeumann");
        assert_eq!(k.id(), 0xc74f20a3);
        assert_eq!(k.to_vkey(), PETER);
    }

    #[test]
    fn vkey_rejects() {
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        let line = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let ok = format!("hello\n\n{line}");
        assert!(Note::parse(ok.as_bytes()).is_ok());
        for bad in [
            format!("hello\n{line}"),
            format!("hello\n\n{}", line.trim_end()),
            format!("\x01hello\n\n{line}"),
            format!("hello\n\n{line}extra\n"),
            "hello\n\n\u{2014} Peter Neumann AAAAAAAA\n".to_owned(),
            "hello\n\n\u{2014} PeterNeumann AAAA\n".to_owned(),
            "hello\n\n".to_owned(),
        ] {
            assert!(Note::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            Note::parse(&[0xff, b'\n', b'\n']),
            Err(NoteError::Malformed("not UTF-8"))
        );
        let many = format!("hello\n\n{}", line.repeat(101));
        assert_eq!(
            Note::parse(many.as_bytes()),
            Err(NoteError::TooManySignatures)
        );
        let huge = "a".repeat(MAX_NOTE_BYTES + 1);
        assert_eq!(Note::parse(huge.as_bytes()), Err(NoteError::TooLarge));
    }
}
