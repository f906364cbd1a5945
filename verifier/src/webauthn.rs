//! WebAuthn Level 3 assertion verification (section 7.2, "Verifying an Authentication
//! Assertion"), steps 11 to 22 as they apply to a relying party that holds the credential's
//! public key; parsing of authenticator data (section 6.1) and client data (section 5.8.1).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::cose::{parse_cose_key_prefix, CoseKeyError};
use crate::crypto::{self, PublicKey};
use crate::hash::sha256;

/// The largest authenticator data accepted, in bytes (37 fixed bytes plus extensions).
pub const MAX_AUTHENTICATOR_DATA_BYTES: usize = 4096;
/// The largest clientDataJSON accepted, in bytes.
pub const MAX_CLIENT_DATA_BYTES: usize = 4096;
/// The largest signature accepted, in bytes (RSA-8192).
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// The largest credential ID a WebAuthn client may produce (section 4, "Credential ID").
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;

/// Authenticator data flag bits (section 6.1).
pub mod flags {
    /// User present.
    pub const UP: u8 = 0x01;
    /// User verified.
    pub const UV: u8 = 0x04;
    /// Backup eligible.
    pub const BE: u8 = 0x08;
    /// Backup state.
    pub const BS: u8 = 0x10;
    /// Attested credential data included.
    pub const AT: u8 = 0x40;
    /// Extension data included.
    pub const ED: u8 = 0x80;
}

/// Why an assertion was rejected. Each variant names the one check that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssertionError {
    /// clientDataJSON is not JSON, or lacks string `type`, `challenge` and `origin`, or gives
    /// `crossOrigin` or `topOrigin` a value of another type.
    ClientDataMalformed,
    /// clientDataJSON is JSON but not an object at the top level (an array, a string...): the
    /// members would otherwise be read by position.
    ClientDataNotObject,
    /// clientDataJSON names a member twice in one object, at any depth, whether the verifier
    /// reads that member or not: two parsers could keep different copies of it.
    ClientDataDuplicateMember {
        /// The member name, as decoded from the JSON string.
        name: String,
    },
    /// clientDataJSON is longer than [`MAX_CLIENT_DATA_BYTES`].
    ClientDataTooLarge,
    /// `type` is not `webauthn.get` (step 11).
    WrongType,
    /// `challenge` is not the expected challenge (step 12).
    ChallengeMismatch,
    /// `origin` is not one of the allowed origins (step 13).
    OriginNotAllowed {
        /// The origin the browser reported.
        origin: String,
    },
    /// The ceremony ran in a cross-origin iframe (`crossOrigin` true or a `topOrigin`); approval
    /// pages are never framed, so this is refused (step 14).
    CrossOrigin,
    /// Authenticator data is truncated or has bytes its flags do not account for.
    AuthenticatorDataMalformed(&'static str),
    /// `rpIdHash` is not SHA-256 of the relying party ID (step 15).
    RpIdHashMismatch,
    /// The UP flag is not set (step 16).
    UserNotPresent,
    /// UV is required and not set (step 17).
    UserNotVerified,
    /// BS is set while BE is not (step 18).
    InvalidBackupFlags,
    /// The credential public key is not usable.
    PublicKey(CoseKeyError),
    /// The signature is larger than [`MAX_SIGNATURE_BYTES`].
    SignatureTooLarge,
    /// The signature over `authenticatorData || SHA-256(clientDataJSON)` does not verify (step 21).
    BadSignature,
    /// The signature counter did not increase although the authenticator keeps one (step 22):
    /// the credential may have been cloned.
    SignCountNotIncreased {
        /// The counter stored for the credential.
        stored: u32,
        /// The counter in this assertion.
        received: u32,
    },
}

impl fmt::Display for AssertionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssertionError::ClientDataMalformed => {
                f.write_str("clientDataJSON is not valid client data")
            }
            AssertionError::ClientDataNotObject => {
                f.write_str("clientDataJSON is not a JSON object")
            }
            AssertionError::ClientDataDuplicateMember { name } => {
                write!(f, "clientDataJSON has a duplicated member {name:?}")
            }
            AssertionError::ClientDataTooLarge => write!(
                f,
                "clientDataJSON is larger than {MAX_CLIENT_DATA_BYTES} bytes"
            ),
            AssertionError::WrongType => {
                f.write_str("clientDataJSON type is not \"webauthn.get\"")
            }
            AssertionError::ChallengeMismatch => {
                f.write_str("challenge in clientDataJSON does not match the expected challenge")
            }
            AssertionError::OriginNotAllowed { origin } => {
                write!(f, "origin {origin:?} is not an allowed origin")
            }
            AssertionError::CrossOrigin => {
                f.write_str("assertion was made in a cross-origin frame")
            }
            AssertionError::AuthenticatorDataMalformed(why) => {
                write!(f, "malformed authenticator data: {why}")
            }
            AssertionError::RpIdHashMismatch => {
                f.write_str("rpIdHash does not match the relying party ID")
            }
            AssertionError::UserNotPresent => f.write_str("user presence (UP) flag is not set"),
            AssertionError::UserNotVerified => {
                f.write_str("user verification (UV) is required but the flag is not set")
            }
            AssertionError::InvalidBackupFlags => {
                f.write_str("backup state (BS) is set without backup eligibility (BE)")
            }
            AssertionError::PublicKey(e) => write!(f, "credential public key: {e}"),
            AssertionError::SignatureTooLarge => write!(
                f,
                "signature is larger than {MAX_SIGNATURE_BYTES} bytes"
            ),
            AssertionError::BadSignature => {
                f.write_str("signature does not verify with the credential public key")
            }
            AssertionError::SignCountNotIncreased { stored, received } => write!(
                f,
                "signature counter {received} is not greater than the stored {stored} (possible cloned authenticator)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AssertionError {}

/// Attested credential data (section 6.5.1), present in registration authenticator data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedCredential {
    /// Authenticator model.
    pub aaguid: [u8; 16],
    /// The new credential's ID.
    pub credential_id: Vec<u8>,
    /// The credential public key exactly as the authenticator encoded it (COSE_Key).
    pub public_key_cose: Vec<u8>,
    /// The parsed key.
    pub public_key: PublicKey,
}

/// Parsed authenticator data (section 6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatorData {
    /// SHA-256 of the RP ID the authenticator scoped the credential to.
    pub rp_id_hash: [u8; 32],
    /// The flags byte (see [`flags`]).
    pub flags: u8,
    /// The signature counter.
    pub sign_count: u32,
    /// Attested credential data, when the AT flag is set.
    pub attested_credential: Option<AttestedCredential>,
}

impl AuthenticatorData {
    /// Parses authenticator data. Attested credential data must be present exactly when AT is
    /// set, extensions (a CBOR map) exactly when ED is set, and nothing may follow them.
    pub fn parse(bytes: &[u8]) -> Result<Self, AssertionError> {
        use AssertionError::AuthenticatorDataMalformed as M;
        if bytes.len() > MAX_AUTHENTICATOR_DATA_BYTES {
            return Err(M("larger than 4096 bytes"));
        }
        if bytes.len() < 37 {
            return Err(M("shorter than 37 bytes"));
        }
        let mut rp_id_hash = [0u8; 32];
        rp_id_hash.copy_from_slice(&bytes[..32]);
        let flags = bytes[32];
        let sign_count = u32::from_be_bytes([bytes[33], bytes[34], bytes[35], bytes[36]]);
        let mut rest = &bytes[37..];
        let mut attested_credential = None;
        if flags & flags::AT != 0 {
            if rest.len() < 18 {
                return Err(M("attested credential data is truncated"));
            }
            let mut aaguid = [0u8; 16];
            aaguid.copy_from_slice(&rest[..16]);
            let id_len = u16::from_be_bytes([rest[16], rest[17]]) as usize;
            if id_len > MAX_CREDENTIAL_ID_BYTES {
                return Err(M("credential ID is longer than 1023 bytes"));
            }
            rest = &rest[18..];
            if rest.len() < id_len {
                return Err(M("credential ID is truncated"));
            }
            let credential_id = rest[..id_len].to_vec();
            rest = &rest[id_len..];
            let (public_key, used) =
                parse_cose_key_prefix(rest).map_err(AssertionError::PublicKey)?;
            attested_credential = Some(AttestedCredential {
                aaguid,
                credential_id,
                public_key_cose: rest[..used].to_vec(),
                public_key,
            });
            rest = &rest[used..];
        }
        if flags & flags::ED != 0 {
            let mut d = minicbor::Decoder::new(rest);
            match d.datatype() {
                Ok(minicbor::data::Type::Map) | Ok(minicbor::data::Type::MapIndef) => {}
                _ => return Err(M("extension data is not a CBOR map")),
            }
            d.skip()
                .map_err(|_| M("extension data is not well-formed CBOR"))?;
            rest = &rest[d.position()..];
        }
        if !rest.is_empty() {
            return Err(M("trailing bytes"));
        }
        Ok(AuthenticatorData {
            rp_id_hash,
            flags,
            sign_count,
            attested_credential,
        })
    }
}

/// The members of clientDataJSON we check (section 5.8.1). Other members are ignored, as the
/// spec requires; a member given twice, in any object of the document, is an error.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClientData {
    /// `webauthn.get` or `webauthn.create`.
    #[serde(rename = "type")]
    pub type_: String,
    /// base64url (no padding) of the challenge.
    pub challenge: String,
    /// The origin of the page that ran the ceremony.
    pub origin: String,
    /// True when run in a cross-origin iframe.
    #[serde(rename = "crossOrigin", default, deserialize_with = "non_null")]
    pub cross_origin: Option<bool>,
    /// The top-level origin, present only when framed.
    #[serde(rename = "topOrigin", default, deserialize_with = "non_null")]
    pub top_origin: Option<String>,
}

/// An optional member that, when present, must not be `null` (the spec types them as boolean
/// and string; `null` is what a sloppy client writes, and we refuse to guess its meaning).
fn non_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// What a first pass over clientDataJSON found: whether the value is an object, and the first
/// member name (in document order) that some object repeats. Member names are compared decoded,
/// so `"type"` and `"\u0074ype"` are the same name.
struct Shape {
    object: bool,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl ShapeVisitor {
    fn scalar<E>(self) -> Result<Shape, E> {
        Ok(Shape {
            object: false,
            duplicate: None,
        })
    }
}

impl<'de> serde::de::Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        self.scalar()
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut duplicate = None;
        while let Some(inner) = seq.next_element::<Shape>()? {
            duplicate = duplicate.or(inner.duplicate);
        }
        Ok(Shape {
            object: false,
            duplicate,
        })
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut names = alloc::collections::BTreeSet::new();
        let mut duplicate = None;
        while let Some(name) = map.next_key::<String>()? {
            let inner = map.next_value::<Shape>()?;
            if duplicate.is_none() && names.contains(&name) {
                duplicate = Some(name);
            } else {
                names.insert(name);
            }
            duplicate = duplicate.or(inner.duplicate);
        }
        Ok(Shape {
            object: true,
            duplicate,
        })
    }
}

impl ClientData {
    /// Parses clientDataJSON (`spec/webauthn.md` W3 and W4): too large is
    /// `ClientDataTooLarge`; not JSON is `ClientDataMalformed`; JSON but not an object is
    /// `ClientDataNotObject`; a member named twice in any object is `ClientDataDuplicateMember`;
    /// a missing or mistyped member the verifier reads is `ClientDataMalformed`.
    pub fn parse(bytes: &[u8]) -> Result<Self, AssertionError> {
        if bytes.len() > MAX_CLIENT_DATA_BYTES {
            return Err(AssertionError::ClientDataTooLarge);
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let shape = Shape::deserialize(&mut de).map_err(|_| AssertionError::ClientDataMalformed)?;
        de.end().map_err(|_| AssertionError::ClientDataMalformed)?;
        if !shape.object {
            return Err(AssertionError::ClientDataNotObject);
        }
        if let Some(name) = shape.duplicate {
            return Err(AssertionError::ClientDataDuplicateMember { name });
        }
        // Only an object reaches serde's derive, which would also read an array by position.
        serde_json::from_slice(bytes).map_err(|_| AssertionError::ClientDataMalformed)
    }

    /// Checks type, challenge, origin and framing (steps 11 to 14 for `webauthn.get`, and the
    /// same checks with `webauthn.create` for registration).
    pub fn check(
        &self,
        expected_type: &str,
        challenge: &[u8],
        allowed_origins: &[&str],
    ) -> Result<(), AssertionError> {
        if self.type_ != expected_type {
            return Err(AssertionError::WrongType);
        }
        let got = B64URL
            .decode(self.challenge.as_bytes())
            .map_err(|_| AssertionError::ChallengeMismatch)?;
        if got.len() != challenge.len() || !bool::from(got.ct_eq(challenge)) {
            return Err(AssertionError::ChallengeMismatch);
        }
        if !allowed_origins.iter().any(|o| *o == self.origin) {
            return Err(AssertionError::OriginNotAllowed {
                origin: self.origin.clone(),
            });
        }
        if self.cross_origin == Some(true) || self.top_origin.is_some() {
            return Err(AssertionError::CrossOrigin);
        }
        Ok(())
    }
}

/// What the relying party expects of an assertion.
#[derive(Clone, Debug)]
pub struct AssertionPolicy<'a> {
    /// The RP ID (a domain) the credential is scoped to.
    pub rp_id: &'a str,
    /// Origins the approval page is served from, e.g. `https://approve.example.com`.
    pub allowed_origins: &'a [&'a str],
    /// Whether UV must be set.
    pub require_user_verification: bool,
    /// The signature counter stored for the credential, if any was stored.
    pub stored_sign_count: Option<u32>,
}

/// The parts of an assertion as the client returns them.
#[derive(Clone, Copy, Debug)]
pub struct Assertion<'a> {
    /// authenticatorData.
    pub authenticator_data: &'a [u8],
    /// clientDataJSON.
    pub client_data_json: &'a [u8],
    /// The signature.
    pub signature: &'a [u8],
}

/// What a verified assertion established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The authenticator flags.
    pub flags: u8,
    /// The new signature counter (store it for the next step-22 check).
    pub sign_count: u32,
    /// The origin the ceremony ran on.
    pub origin: String,
}

impl VerifiedAssertion {
    /// True when the authenticator verified the user (PIN, biometric).
    pub fn user_verified(&self) -> bool {
        self.flags & flags::UV != 0
    }
}

/// The signature-counter rule (WebAuthn Level 3 section 7.2 step 22): when the stored or the
/// received counter is non-zero, the received one must be greater, else the credential may have
/// been cloned. Exposed so a relying party that checks the counter later (after a replay lookup,
/// or again inside a commit) applies the same rule.
pub fn check_sign_count(stored: u32, received: u32) -> Result<(), AssertionError> {
    if (stored != 0 || received != 0) && received <= stored {
        return Err(AssertionError::SignCountNotIncreased { stored, received });
    }
    Ok(())
}

/// Verifies a WebAuthn assertion for `challenge` made with `public_key`, in the order of
/// `spec/webauthn.md`; the first failed check is returned.
pub fn verify_assertion(
    public_key: &PublicKey,
    assertion: &Assertion<'_>,
    challenge: &[u8],
    policy: &AssertionPolicy<'_>,
) -> Result<VerifiedAssertion, AssertionError> {
    verify_assertion_with(
        crypto::Backend::DEFAULT,
        public_key,
        assertion,
        challenge,
        policy,
    )
}

/// [`verify_assertion`] with an explicit signature backend.
pub fn verify_assertion_with(
    backend: crypto::Backend,
    public_key: &PublicKey,
    assertion: &Assertion<'_>,
    challenge: &[u8],
    policy: &AssertionPolicy<'_>,
) -> Result<VerifiedAssertion, AssertionError> {
    let client = ClientData::parse(assertion.client_data_json)?;
    client.check("webauthn.get", challenge, policy.allowed_origins)?;
    let auth = AuthenticatorData::parse(assertion.authenticator_data)?;
    if auth.attested_credential.is_some() {
        return Err(AssertionError::AuthenticatorDataMalformed(
            "assertion carries attested credential data",
        ));
    }
    if !bool::from(auth.rp_id_hash.ct_eq(&sha256(policy.rp_id.as_bytes()))) {
        return Err(AssertionError::RpIdHashMismatch);
    }
    if auth.flags & flags::UP == 0 {
        return Err(AssertionError::UserNotPresent);
    }
    if policy.require_user_verification && auth.flags & flags::UV == 0 {
        return Err(AssertionError::UserNotVerified);
    }
    if auth.flags & flags::BS != 0 && auth.flags & flags::BE == 0 {
        return Err(AssertionError::InvalidBackupFlags);
    }
    if assertion.signature.len() > MAX_SIGNATURE_BYTES {
        return Err(AssertionError::SignatureTooLarge);
    }
    let mut signed = Vec::with_capacity(assertion.authenticator_data.len() + 32);
    signed.extend_from_slice(assertion.authenticator_data);
    signed.extend_from_slice(&sha256(assertion.client_data_json));
    if !crypto::verify_with(backend, public_key, &signed, assertion.signature) {
        return Err(AssertionError::BadSignature);
    }
    if let Some(stored) = policy.stored_sign_count {
        check_sign_count(stored, auth.sign_count)?;
    }
    Ok(VerifiedAssertion {
        flags: auth.flags,
        sign_count: auth.sign_count,
        origin: client.origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticator_data_bounds() {
        let mut a = alloc::vec![0u8; 37];
        assert!(AuthenticatorData::parse(&a).is_ok());
        a.push(0);
        assert!(AuthenticatorData::parse(&a).is_err());
        assert!(AuthenticatorData::parse(&a[..36]).is_err());
        let mut ed = alloc::vec![0u8; 37];
        ed[32] = flags::ED;
        assert!(AuthenticatorData::parse(&ed).is_err());
        ed.push(0xa0);
        assert!(AuthenticatorData::parse(&ed).is_ok());
        let mut at = alloc::vec![0u8; 37];
        at[32] = flags::AT;
        assert!(AuthenticatorData::parse(&at).is_err());
    }

    #[test]
    fn sign_count_rule() {
        assert!(
            check_sign_count(0, 0).is_ok(),
            "a passkey that does not count"
        );
        assert!(check_sign_count(0, 1).is_ok());
        assert!(check_sign_count(5, 6).is_ok());
        for (stored, received) in [(5, 5), (5, 4), (5, 0)] {
            assert_eq!(
                check_sign_count(stored, received),
                Err(AssertionError::SignCountNotIncreased { stored, received })
            );
        }
    }

    #[test]
    fn client_data_rejects_duplicates_and_junk() {
        assert!(
            ClientData::parse(br#"{"type":"webauthn.get","challenge":"AA","origin":"x"}"#).is_ok()
        );
        assert!(ClientData::parse(
            br#"{"type":"webauthn.get","type":"webauthn.get","challenge":"AA","origin":"x"}"#
        )
        .is_err());
        assert!(ClientData::parse(b"[]").is_err());
        assert!(ClientData::parse(b"{").is_err());
    }

    #[test]
    fn client_data_strict_shape() {
        use AssertionError as E;
        let dup = |n: &str| {
            Err(E::ClientDataDuplicateMember {
                name: String::from(n),
            })
        };
        // An array carries the three members by position: serde's derive would accept it.
        assert_eq!(
            ClientData::parse(br#"["webauthn.get","AA","x"]"#),
            Err(E::ClientDataNotObject)
        );
        assert_eq!(ClientData::parse(br#""x""#), Err(E::ClientDataNotObject));
        assert_eq!(ClientData::parse(b"null"), Err(E::ClientDataNotObject));
        assert_eq!(
            ClientData::parse(
                br#"{"type":"webauthn.get","type":"webauthn.get","challenge":"AA","origin":"x"}"#
            ),
            dup("type")
        );
        assert_eq!(
            ClientData::parse(
                br#"{"type":"webauthn.get","challenge":"AA","origin":"x","extra":1,"extra":2}"#
            ),
            dup("extra")
        );
        // Names are compared decoded.
        assert_eq!(
            ClientData::parse(br#"{"type":"webauthn.get","challenge":"AA","origin":"x","\u0074ype":"webauthn.create"}"#),
            dup("type")
        );
        assert_eq!(
            ClientData::parse(br#"{"type":"webauthn.get","challenge":"AA","origin":"x","ext":[{"a":1},{"b":{"c":1,"c":2}}]}"#),
            dup("c")
        );
        // The same name in two objects is not a duplicate.
        assert!(ClientData::parse(
            br#"{"type":"webauthn.get","challenge":"AA","origin":"x","a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}"#
        )
        .is_ok());
        // Syntax errors stay malformed, even after a duplicate.
        assert_eq!(
            ClientData::parse(br#"{"a":1,"a":2,"#),
            Err(E::ClientDataMalformed)
        );
        assert_eq!(
            ClientData::parse(br#"{"type":"webauthn.get","challenge":"AA","origin":"x"} {}"#),
            Err(E::ClientDataMalformed)
        );
    }
}
