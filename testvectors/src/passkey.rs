//! A software passkey: a deterministic WebAuthn authenticator and client in one, for tests,
//! vector generation and the load generator. It produces exactly what a browser returns
//! (COSE public key, authenticatorData, clientDataJSON, signature), and can be told to break
//! one rule at a time for negative tests.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use countersign_verifier::flags;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

/// The passkey's signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 / SHA-256 (COSE -7).
    Es256,
    /// Ed25519 (COSE -8).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 / SHA-256, 2048-bit (COSE -257).
    Rs256,
}

impl Alg {
    /// All three, in a fixed order.
    pub const ALL: [Alg; 3] = [Alg::Es256, Alg::EdDsa, Alg::Rs256];

    /// `ES256`, `EdDSA` or `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Rs256 => "RS256",
        }
    }
}

enum Key {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
    Rs256(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
}

/// One assertion, as a browser hands it to the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionParts {
    /// authenticatorData.
    pub authenticator_data: Vec<u8>,
    /// clientDataJSON.
    pub client_data_json: Vec<u8>,
    /// The signature over `authenticatorData || SHA-256(clientDataJSON)`.
    pub signature: Vec<u8>,
}

/// How to make an assertion; the defaults are a valid, user-verified `webauthn.get`.
#[derive(Clone, Debug)]
pub struct AssertOptions<'a> {
    /// The challenge bytes (base64url-encoded into clientDataJSON).
    pub challenge: &'a [u8],
    /// The page origin.
    pub origin: &'a str,
    /// clientDataJSON `type`.
    pub client_type: &'a str,
    /// RP ID hashed into authenticatorData; `None` uses the passkey's own.
    pub rp_id: Option<&'a str>,
    /// The flags byte.
    pub flags: u8,
    /// Adds `"crossOrigin":true`.
    pub cross_origin: bool,
    /// Adds a `topOrigin`.
    pub top_origin: Option<&'a str>,
    /// Flip this bit of the signature after signing (negative tests).
    pub flip_signature_bit: Option<usize>,
    /// Sign these clientDataJSON bytes instead of the ones the other options describe
    /// (malformed client data, signed as an attacker's client would).
    pub raw_client_data: Option<&'a [u8]>,
}

impl<'a> AssertOptions<'a> {
    /// A valid `webauthn.get` for `challenge` on `origin`, with UP and UV set.
    pub fn new(challenge: &'a [u8], origin: &'a str) -> Self {
        AssertOptions {
            challenge,
            origin,
            client_type: "webauthn.get",
            rp_id: None,
            flags: flags::UP | flags::UV,
            cross_origin: false,
            top_origin: None,
            flip_signature_bit: None,
            raw_client_data: None,
        }
    }
}

/// A software passkey bound to one RP ID.
pub struct SoftPasskey {
    alg: Alg,
    key: Key,
    credential_id: Vec<u8>,
    rp_id: String,
    sign_count: u32,
}

impl SoftPasskey {
    /// A passkey whose key and credential ID are derived from `seed`: the same seed always
    /// gives the same passkey, so generated vectors are reproducible.
    pub fn new(alg: Alg, seed: u64, rp_id: &str) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut secret = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut secret);
        let key = match alg {
            Alg::Es256 => {
                // A 32-byte string is a valid P-256 scalar except with negligible probability;
                // re-derive until it is.
                let mut s = secret;
                loop {
                    if let Ok(k) = p256::ecdsa::SigningKey::from_bytes(&s.into()) {
                        break Key::Es256(k);
                    }
                    s = Sha256::digest(s).into();
                }
            }
            Alg::EdDsa => Key::EdDsa(ed25519_dalek::SigningKey::from_bytes(&secret)),
            Alg::Rs256 => {
                let mut k = None;
                while k.is_none() {
                    k = rsa::RsaPrivateKey::new(&mut rng, 2048).ok();
                }
                let Some(k) = k else { unreachable!() };
                Key::Rs256(Box::new(rsa::pkcs1v15::SigningKey::<Sha256>::new(k)))
            }
        };
        let mut credential_id = vec![0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rng, &mut credential_id);
        SoftPasskey {
            alg,
            key,
            credential_id,
            rp_id: rp_id.to_owned(),
            sign_count: 0,
        }
    }

    /// The algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The credential ID.
    pub fn credential_id(&self) -> &[u8] {
        &self.credential_id
    }

    /// The RP ID the passkey is scoped to.
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// The counter of the last assertion (0 for a passkey that does not count, as most synced
    /// passkeys do not).
    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }

    /// Makes the passkey count signatures: the next assertion carries `last + 1`. A `last` of 0
    /// is taken as 1, since a counter of 0 means "does not count" (WebAuthn section 6.1.1).
    pub fn set_counting(&mut self, last: u32) {
        self.sign_count = last.max(1);
    }

    /// The public key as a COSE_Key (CBOR map with integer labels, RFC 9052 / RFC 9053).
    pub fn cose_public_key(&self) -> Vec<u8> {
        let mut e = minicbor::Encoder::new(Vec::new());
        // Writing into a Vec cannot fail.
        let _ = match &self.key {
            Key::Es256(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (p.x(), p.y()) else {
                    unreachable!("uncompressed point has coordinates")
                };
                e.map(5)
                    .and_then(|e| e.i8(1)?.i8(2))
                    .and_then(|e| e.i8(3)?.i8(-7))
                    .and_then(|e| e.i8(-1)?.i8(1))
                    .and_then(|e| e.i8(-2)?.bytes(x))
                    .and_then(|e| e.i8(-3)?.bytes(y))
                    .map(|_| ())
            }
            Key::EdDsa(k) => e
                .map(4)
                .and_then(|e| e.i8(1)?.i8(1))
                .and_then(|e| e.i8(3)?.i8(-8))
                .and_then(|e| e.i8(-1)?.i8(6))
                .and_then(|e| e.i8(-2)?.bytes(k.verifying_key().as_bytes()))
                .map(|_| ()),
            Key::Rs256(k) => {
                use rsa::traits::PublicKeyParts;
                let sk: &rsa::RsaPrivateKey = k.as_ref().as_ref();
                let pk = sk.to_public_key();
                e.map(4)
                    .and_then(|e| e.i8(1)?.i8(3))
                    .and_then(|e| e.i8(3)?.i16(-257))
                    .and_then(|e| e.i8(-1)?.bytes(&pk.n().to_bytes_be()))
                    .and_then(|e| e.i8(-2)?.bytes(&pk.e().to_bytes_be()))
                    .map(|_| ())
            }
        };
        e.into_writer()
    }

    /// Signs raw bytes with the credential key (DER for ES256).
    pub fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        use rsa::signature::{SignatureEncoding, Signer};
        match &self.key {
            Key::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            Key::EdDsa(k) => k.sign(message).to_bytes().to_vec(),
            Key::Rs256(k) => k.sign(message).to_vec(),
        }
    }

    /// The clientDataJSON a browser would produce, members in the order Chromium writes them.
    pub fn client_data_json(
        client_type: &str,
        challenge: &[u8],
        origin: &str,
        cross_origin: bool,
        top_origin: Option<&str>,
    ) -> Vec<u8> {
        let mut s = format!(
            "{{\"type\":{},\"challenge\":\"{}\",\"origin\":{},\"crossOrigin\":{}",
            serde_json::Value::from(client_type),
            B64URL.encode(challenge),
            serde_json::Value::from(origin),
            cross_origin
        );
        if let Some(t) = top_origin {
            s.push_str(&format!(",\"topOrigin\":{}", serde_json::Value::from(t)));
        }
        s.push('}');
        s.into_bytes()
    }

    /// Makes an assertion as described by `opts`.
    pub fn assert_with(&mut self, opts: &AssertOptions<'_>) -> AssertionParts {
        if self.sign_count != 0 {
            self.sign_count = self.sign_count.wrapping_add(1);
        }
        let rp_id = opts.rp_id.unwrap_or(&self.rp_id);
        let mut authenticator_data = Vec::with_capacity(37);
        authenticator_data.extend_from_slice(&Sha256::digest(rp_id.as_bytes()));
        authenticator_data.push(opts.flags);
        authenticator_data.extend_from_slice(&self.sign_count.to_be_bytes());
        let client_data_json = match opts.raw_client_data {
            Some(raw) => raw.to_vec(),
            None => Self::client_data_json(
                opts.client_type,
                opts.challenge,
                opts.origin,
                opts.cross_origin,
                opts.top_origin,
            ),
        };
        let mut signed = authenticator_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data_json));
        let mut signature = self.sign_raw(&signed);
        if let Some(bit) = opts.flip_signature_bit {
            let i = (bit / 8) % signature.len();
            signature[i] ^= 1 << (bit % 8);
        }
        AssertionParts {
            authenticator_data,
            client_data_json,
            signature,
        }
    }

    /// A valid, user-verified assertion over `challenge` on `origin`.
    pub fn assert(&mut self, challenge: &[u8], origin: &str) -> AssertionParts {
        self.assert_with(&AssertOptions::new(challenge, origin))
    }

    /// Registration authenticator data (AT set) for this credential, with `aaguid`.
    pub fn registration_authenticator_data(&self, flags_byte: u8, aaguid: [u8; 16]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&Sha256::digest(self.rp_id.as_bytes()));
        a.push(flags_byte | flags::AT);
        a.extend_from_slice(&self.sign_count.to_be_bytes());
        a.extend_from_slice(&aaguid);
        a.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        a.extend_from_slice(&self.credential_id);
        a.extend_from_slice(&self.cose_public_key());
        a
    }

    /// A `none`-attestation object (CBOR `{fmt: "none", attStmt: {}, authData}`) as returned by
    /// `navigator.credentials.create`.
    pub fn attestation_object_none(&self, flags_byte: u8) -> Vec<u8> {
        let auth = self.registration_authenticator_data(flags_byte, [0u8; 16]);
        let mut e = minicbor::Encoder::new(Vec::new());
        let _ = e
            .map(3)
            .and_then(|e| e.str("fmt")?.str("none"))
            .and_then(|e| e.str("attStmt")?.map(0))
            .and_then(|e| e.str("authData")?.bytes(&auth));
        e.into_writer()
    }
}

impl SoftPasskey {
    /// A `packed` self-attestation object: the credential key signs
    /// `authData || SHA-256(clientDataJSON)` (WebAuthn section 8.2).
    pub fn attestation_object_packed_self(
        &self,
        flags_byte: u8,
        client_data_json: &[u8],
    ) -> Vec<u8> {
        let auth = self.registration_authenticator_data(flags_byte, [7u8; 16]);
        let mut signed = auth.clone();
        signed.extend_from_slice(&Sha256::digest(client_data_json));
        let sig = self.sign_raw(&signed);
        let alg: i16 = match self.alg {
            Alg::Es256 => -7,
            Alg::EdDsa => -8,
            Alg::Rs256 => -257,
        };
        let mut e = minicbor::Encoder::new(Vec::new());
        let _ = e
            .map(3)
            .and_then(|e| e.str("fmt")?.str("packed"))
            .and_then(|e| {
                e.str("attStmt")?
                    .map(2)?
                    .str("alg")?
                    .i16(alg)?
                    .str("sig")?
                    .bytes(&sig)
            })
            .and_then(|e| e.str("authData")?.bytes(&auth));
        e.into_writer()
    }
}

impl SoftPasskey {
    /// The `PublicKeyCredential` JSON a page posts after `navigator.credentials.get`
    /// (WebAuthn Level 3 `toJSON()` form, base64url without padding).
    pub fn assertion_json(&self, a: &AssertionParts) -> serde_json::Value {
        serde_json::json!({
            "id": B64URL.encode(&self.credential_id),
            "rawId": B64URL.encode(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": B64URL.encode(&a.authenticator_data),
                "clientDataJSON": B64URL.encode(&a.client_data_json),
                "signature": B64URL.encode(&a.signature),
            },
        })
    }

    /// The `PublicKeyCredential` JSON a page posts after `navigator.credentials.create`: a
    /// `none` attestation with UP and UV set, for `challenge` on `origin`.
    pub fn registration_json(&self, challenge: &[u8], origin: &str) -> serde_json::Value {
        let cdj = Self::client_data_json("webauthn.create", challenge, origin, false, None);
        let att = self.attestation_object_none(flags::UP | flags::UV);
        serde_json::json!({
            "id": B64URL.encode(&self.credential_id),
            "rawId": B64URL.encode(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": B64URL.encode(att),
                "clientDataJSON": B64URL.encode(cdj),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_verifier::{
        parse_cose_key, verify_assertion, verify_registration, Assertion, AssertionPolicy,
        AttestationTrust, RegistrationError, RegistrationPolicy,
    };

    #[test]
    fn registrations_verify() {
        for alg in Alg::ALL {
            let pk = SoftPasskey::new(alg, 9, "example.com");
            let challenge = [3u8; 32];
            let cdj = SoftPasskey::client_data_json(
                "webauthn.create",
                &challenge,
                "https://example.com",
                false,
                None,
            );
            let policy = RegistrationPolicy {
                rp_id: "example.com",
                allowed_origins: &["https://example.com"],
                require_user_verification: true,
                aaguid_allowlist: None,
            };
            let none = pk.attestation_object_none(flags::UP | flags::UV);
            let c = verify_registration(&none, &cdj, &challenge, &policy).unwrap();
            assert_eq!(c.trust, AttestationTrust::None);
            assert_eq!(c.public_key_cose, pk.cose_public_key());
            assert_eq!(c.credential_id, pk.credential_id());
            let packed = pk.attestation_object_packed_self(flags::UP | flags::UV, &cdj);
            let c = verify_registration(&packed, &cdj, &challenge, &policy).unwrap();
            assert_eq!(c.trust, AttestationTrust::SelfAttested);
            assert_eq!(c.aaguid, [7u8; 16]);
            // The self-attestation covers clientDataJSON: a signature over other bytes fails.
            let bad = pk.attestation_object_packed_self(flags::UP | flags::UV, b"{}");
            assert_eq!(
                verify_registration(&bad, &cdj, &challenge, &policy),
                Err(RegistrationError::BadAttestation(
                    "self attestation signature does not verify"
                ))
            );
            let no_uv = pk.attestation_object_none(flags::UP);
            assert!(verify_registration(&no_uv, &cdj, &challenge, &policy).is_err());
        }
    }

    #[test]
    fn every_algorithm_verifies_and_is_deterministic() {
        for alg in Alg::ALL {
            let mut pk = SoftPasskey::new(alg, 7, "example.com");
            let again = SoftPasskey::new(alg, 7, "example.com");
            assert_eq!(pk.cose_public_key(), again.cose_public_key());
            let key = parse_cose_key(&pk.cose_public_key()).unwrap();
            let challenge = [9u8; 64];
            let a = pk.assert(&challenge, "https://example.com");
            let policy = AssertionPolicy {
                rp_id: "example.com",
                allowed_origins: &["https://example.com"],
                require_user_verification: true,
                stored_sign_count: None,
            };
            let parts = Assertion {
                authenticator_data: &a.authenticator_data,
                client_data_json: &a.client_data_json,
                signature: &a.signature,
            };
            verify_assertion(&key, &parts, &challenge, &policy).unwrap();
            assert!(verify_assertion(&key, &parts, &[8u8; 64], &policy).is_err());
        }
    }
}
