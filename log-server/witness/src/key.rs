//! The witness's signing key, its file format, and `cosignature/v1` signing
//! (c2sp.org/tlog-cosignature).
//!
//! Key file: one line, `PRIVATE+KEY+<name>+<hex key id>+<base64(0x04 || 32-byte Ed25519 seed)>`
//! and a newline: the signer-key layout of Go's `sumdb/note` with the `cosignature/v1` type
//! byte 0x04, so the key ID (computed as in tlog-cosignature) is checked on load and the file
//! names the witness by itself.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_verifier::{
    cosignature_message, key_id, NoteSignature, VerifierKey, ALG_COSIGNATURE_V1,
};
use ed25519_dalek::{Signer, SigningKey};

const PREFIX: &str = "PRIVATE+KEY+";

/// Why a key file could not be written or read.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// The name is not a valid note key name (empty, or contains white space or `+`).
    BadName,
    /// The key file already exists; keygen never overwrites a key.
    Exists,
    /// Reading or writing the file failed.
    Io(std::io::Error),
    /// The file is not a witness key file; the text says what is wrong.
    Malformed(&'static str),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadName => {
                f.write_str("the witness name must be non-empty, with no white space and no '+'")
            }
            KeyError::Exists => {
                f.write_str("the key file already exists (keygen never overwrites a key)")
            }
            KeyError::Io(e) => write!(f, "key file: {e}"),
            KeyError::Malformed(why) => write!(f, "not a witness key file: {why}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The witness's Ed25519 `cosignature/v1` key and its name. `Debug` shows only the public half.
pub struct WitnessKey {
    name: String,
    signing: SigningKey,
    verifier: VerifierKey,
}

impl fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WitnessKey({}, private half redacted)",
            self.verifier.to_vkey()
        )
    }
}

impl WitnessKey {
    /// A key from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        let signing = SigningKey::from_bytes(seed);
        let verifier = VerifierKey::cosignature(name, signing.verifying_key().to_bytes())
            .map_err(|_| KeyError::BadName)?;
        Ok(WitnessKey {
            name: name.to_owned(),
            signing,
            verifier,
        })
    }

    /// A new random key.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_seed(name, &seed)
    }

    /// The witness name (its key name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key `<name>+<hex id>+<base64(0x04 || public key)>` logs and verifiers use.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The key file's content (module documentation).
    fn to_file_text(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_COSIGNATURE_V1);
        raw.extend_from_slice(self.signing.as_bytes());
        format!(
            "{PREFIX}{}+{:08x}+{}\n",
            self.name,
            self.verifier.id(),
            B64.encode(&raw)
        )
    }

    /// Parses a key file's content (module documentation).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let line = text.strip_suffix('\n').unwrap_or(text);
        let rest = line
            .strip_prefix(PREFIX)
            .ok_or(KeyError::Malformed("does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Malformed(
                "expected PRIVATE+KEY+<name>+<hex key id>+<base64 key>",
            ));
        };
        let raw = B64
            .decode(b64)
            .map_err(|_| KeyError::Malformed("key is not valid base64"))?;
        let Some((&alg, seed)) = raw.split_first() else {
            return Err(KeyError::Malformed("key is empty"));
        };
        if alg != ALG_COSIGNATURE_V1 {
            return Err(KeyError::Malformed(
                "not a cosignature/v1 key (type byte 0x04)",
            ));
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| KeyError::Malformed("Ed25519 seed is not 32 bytes"))?;
        let key = Self::from_seed(name, &seed)?;
        if format!("{:08x}", key.verifier.id()) != id_hex {
            return Err(KeyError::Malformed(
                "key id does not match the name and key",
            ));
        }
        Ok(key)
    }

    /// Writes the key to a new file `path` with mode 0600 and syncs it; refuses to replace an
    /// existing file ([`KeyError::Exists`]).
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists,
                _ => KeyError::Io(e),
            })?;
        f.write_all(self.to_file_text().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(KeyError::Io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(KeyError::Io)?;
        }
        Ok(())
    }

    /// Reads a key file written by [`WitnessKey::write_new`].
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = fs::read_to_string(path).map_err(KeyError::Io)?;
        Self::parse(&text)
    }

    /// A `cosignature/v1` signature line on `checkpoint_text` (the note text, with its final
    /// newline) at `timestamp`: `timestamp(8, big-endian) || Ed25519(cosignature message)`
    /// (c2sp.org/tlog-cosignature, "Format" and "Ed25519 signed message").
    pub fn cosign(&self, timestamp: u64, checkpoint_text: &str) -> NoteSignature {
        let msg = cosignature_message(timestamp, checkpoint_text);
        let sig = self.signing.sign(msg.as_bytes());
        let mut signature = Vec::with_capacity(72);
        signature.extend_from_slice(&timestamp.to_be_bytes());
        signature.extend_from_slice(&sig.to_bytes());
        NoteSignature {
            name: self.name.clone(),
            key_id: key_id(
                &self.name,
                ALG_COSIGNATURE_V1,
                &self.signing.verifying_key().to_bytes(),
            ),
            signature,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use countersign_verifier::Note;

    #[test]
    fn file_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.key");
        let k = WitnessKey::generate("witness.example/w1").unwrap();
        k.write_new(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let back = WitnessKey::read(&path).unwrap();
        assert_eq!(back.verifier(), k.verifier());
        let before = fs::read(&path).unwrap();
        let other = WitnessKey::generate("witness.example/w1").unwrap();
        assert!(matches!(other.write_new(&path), Err(KeyError::Exists)));
        assert_eq!(fs::read(&path).unwrap(), before);
        assert!(!format!("{k:?}").contains(&B64.encode(k.signing.as_bytes())));
    }

    #[test]
    fn rejects_bad_files() {
        let k = WitnessKey::from_seed("w", &[7; 32]).unwrap();
        let good = k.to_file_text();
        assert!(WitnessKey::parse(&good).is_ok());
        let wrong_id = good.replace(&format!("+{:08x}+", k.verifier.id()), "+00000000+");
        for bad in [
            "",
            "PRIVATE+KEY+w",
            &good[PREFIX.len()..],
            &wrong_id,
            &good.replace("PRIVATE+KEY+w+", "PRIVATE+KEY+v+"),
        ] {
            assert!(WitnessKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            WitnessKey::generate("bad name"),
            Err(KeyError::BadName)
        ));
    }

    #[test]
    fn cosignature_verifies_with_the_verifier_crate() {
        let k = WitnessKey::from_seed("witness.example/w1", &[9; 32]).unwrap();
        let text = "example.com/log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let mut note = Note::new(text).unwrap();
        note.push_signature(k.cosign(1_679_315_147, text)).unwrap();
        let v = note.verify(&[k.verifier().clone()]).unwrap();
        assert_eq!(v[0].timestamp, Some(1_679_315_147));
    }
}
