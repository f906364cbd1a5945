//! Signature primitives behind one interface, with two interchangeable backends.
//!
//! The pure-Rust backend (RustCrypto `p256` and `rsa`, `ed25519-dalek`) is always compiled and
//! works without `std`. The `fast` feature adds a `ring` backend for ES256 and RS256 and makes it
//! the default for [`verify`]; Ed25519 stays on ed25519-dalek, which is the faster of the two.
//! Both stay callable so tests can hold them to the same vectors.

use sha2::{Digest, Sha256};

/// The smallest RSA modulus accepted, in bits. Smaller keys are refused by both backends alike.
pub const RSA_MIN_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits; bounds the work one verification can cost.
pub const RSA_MAX_BITS: usize = 8192;

/// A public key in the form the signature backends take, extracted from a COSE key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    /// ECDSA P-256 with SHA-256 (COSE alg -7, ES256): the uncompressed SEC1 point `0x04 || x || y`.
    Es256([u8; 65]),
    /// Ed25519 (COSE alg -8, EdDSA): the 32-byte RFC 8032 encoding.
    Ed25519([u8; 32]),
    /// RSASSA-PKCS1-v1_5 with SHA-256 (COSE alg -257, RS256): big-endian modulus and exponent,
    /// without leading zero bytes.
    Rs256 {
        /// Modulus.
        n: alloc::vec::Vec<u8>,
        /// Public exponent.
        e: alloc::vec::Vec<u8>,
    },
}

impl PublicKey {
    /// The WebAuthn / COSE algorithm name.
    pub fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::Es256(_) => "ES256",
            PublicKey::Ed25519(_) => "EdDSA",
            PublicKey::Rs256 { .. } => "RS256",
        }
    }
}

/// Which implementation checks signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// RustCrypto and ed25519-dalek: portable, `no_std`.
    Pure,
    /// `ring` (feature `fast`).
    #[cfg(feature = "fast")]
    Ring,
}

impl Backend {
    /// `Ring` when the `fast` feature is on, `Pure` otherwise.
    pub const DEFAULT: Backend = {
        #[cfg(feature = "fast")]
        {
            Backend::Ring
        }
        #[cfg(not(feature = "fast"))]
        {
            Backend::Pure
        }
    };
}

/// Checks `signature` over `message` with `key`, using the default backend.
///
/// ES256 signatures are ASN.1 DER (as WebAuthn produces them), Ed25519 signatures are 64 bytes,
/// RS256 signatures are as long as the modulus. Returns `false` for any malformed input.
pub fn verify(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    verify_with(Backend::DEFAULT, key, message, signature)
}

/// [`verify`] with an explicit backend.
pub fn verify_with(backend: Backend, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    if let PublicKey::Rs256 { n, .. } = key {
        // Both backends get the same size policy, so results never depend on the backend.
        let bits = rsa_bits(n);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) || signature.len() != n.len() {
            return false;
        }
    }
    match backend {
        Backend::Pure => pure::verify(key, message, signature),
        #[cfg(feature = "fast")]
        Backend::Ring => fast::verify(key, message, signature),
    }
}

fn rsa_bits(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
    }
}

/// Ed25519 verification of a 64-byte signature (used for checkpoints and notes): plain RFC 8032
/// cofactorless verification, as Go's crypto/ed25519 does, so a Go sumdb/note verifier and this
/// one accept exactly the same notes. (Passkey signatures, through [`verify`], are checked
/// strictly.)
pub fn verify_ed25519(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    match ed25519_dalek::VerifyingKey::from_bytes(public_key) {
        Ok(key) => verify_ed25519_prepared(&key, message, signature),
        Err(_) => false,
    }
}

/// Ed25519 verification with a key decoded in advance (RFC 8032 section 5.1.7, cofactorless,
/// as [`verify_ed25519`]); saves the point decompression when one key checks many signatures.
pub fn verify_ed25519_prepared(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> bool {
    use ed25519_dalek::Verifier;
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

mod pure {
    use super::*;

    pub(super) fn verify(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        match key {
            PublicKey::Es256(point) => {
                use p256::ecdsa::signature::Verifier;
                let Ok(vk) = p256::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
                    return false;
                };
                let Ok(sig) = p256::ecdsa::Signature::from_der(signature) else {
                    return false;
                };
                vk.verify(message, &sig).is_ok()
            }
            PublicKey::Ed25519(pk) => {
                let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(pk) else {
                    return false;
                };
                let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                // A passkey's signature: strict verification (no weak key, no small-order R,
                // canonical S), which every honest signer passes.
                vk.verify_strict(message, &sig).is_ok()
            }
            PublicKey::Rs256 { n, e } => {
                let n = rsa::BigUint::from_bytes_be(n);
                let e = rsa::BigUint::from_bytes_be(e);
                let Ok(pk) = rsa::RsaPublicKey::new_with_max_size(n, e, RSA_MAX_BITS) else {
                    return false;
                };
                let digest = Sha256::digest(message);
                pk.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, signature)
                    .is_ok()
            }
        }
    }
}

#[cfg(feature = "fast")]
mod fast {
    use super::*;
    use ring::signature as rs;

    pub(super) fn verify(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        match key {
            PublicKey::Es256(point) => {
                rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_ASN1, point)
                    .verify(message, signature)
                    .is_ok()
            }
            // ed25519-dalek (with its SIMD backend) verifies in about half the time ring's
            // portable Ed25519 takes on x86_64 (measured in benches/), so both backends use it.
            PublicKey::Ed25519(_) => super::pure::verify(key, message, signature),
            PublicKey::Rs256 { n, e } => rs::RsaPublicKeyComponents { n, e }
                .verify(&rs::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passkey_signature_is_checked_strictly() {
        // The identity as public key, and the signature R = identity, S = 0: cofactorless
        // verification accepts it for every message ([0]B = R + [k]A); strict does not.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = [0u8; 64];
        forged[0] = 1;
        assert!(!verify_with(
            Backend::Pure,
            &PublicKey::Ed25519(identity),
            b"any",
            &forged
        ));
        let vk =
            ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap_or_else(|_| unreachable!());
        let sig = ed25519_dalek::Signature::from_bytes(&forged);
        use ed25519_dalek::Verifier;
        assert!(
            vk.verify(b"any", &sig).is_ok(),
            "the forgery works without strictness"
        );
    }

    #[test]
    fn rsa_bit_count() {
        assert_eq!(rsa_bits(&[0, 0, 1]), 1);
        assert_eq!(rsa_bits(&[0x80, 0]), 16);
        assert_eq!(rsa_bits(&[]), 0);
    }
}
