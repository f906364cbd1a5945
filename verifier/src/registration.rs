//! WebAuthn Level 3 registration verification (section 7.1, "Registering a New Credential"),
//! for enrolling an approver's passkey: client data, authenticator data with the new
//! credential, and the attestation statement formats `none`, `packed` (self and full) and
//! `fido-u2f` (sections 8.2, 8.6, 8.7; spec/webauthn.md A-rules).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use minicbor::data::Type;
use minicbor::Decoder;
use subtle::ConstantTimeEq;

use crate::cose::cose_alg;
use crate::crypto;
use crate::hash::sha256;
use crate::webauthn::{flags, AssertionError, AttestedCredential, AuthenticatorData, ClientData};
use crate::PublicKey;

mod certificate;
use certificate::Leaf;

/// The most certificates accepted in an `x5c` chain (leaf and intermediates).
pub const MAX_ATTESTATION_CERTIFICATES: usize = 8;
/// How deeply CBOR items may nest in an attestation object (its statements nest three deep).
const MAX_CBOR_DEPTH: u32 = 16;

/// The largest attestation object accepted, in bytes (certificate chains can be a few KiB).
pub const MAX_ATTESTATION_OBJECT_BYTES: usize = 16 * 1024;

/// How far the attestation statement was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestationTrust {
    /// `none`: the authenticator made no statement.
    None,
    /// `packed` self attestation: the credential key signed its own registration.
    SelfAttested,
    /// `packed` with `x5c`, or `fido-u2f`: the statement's signature verifies with the leaf of
    /// [`RegisteredCredential::attestation_chain`], which meets the format's certificate
    /// requirements. Whether the chain leads to a root anyone trusts is for the caller to
    /// check (the verifier has no trust anchors and no clock); until then the AAGUID is the
    /// authenticator's claim only.
    Certificate,
    /// Another well-formed format name (`tpm`, `android-key`, `apple`, ...): the statement was
    /// not checked at all, so the AAGUID is the authenticator's claim only.
    Unverified,
}

/// Why a registration was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The client data or authenticator data check of that name failed (same checks as for
    /// assertions, with `type` `webauthn.create`).
    Ceremony(AssertionError),
    /// The attestation object is not the CBOR map `{fmt, attStmt, authData}`; the text says how.
    AttestationObjectMalformed(&'static str),
    /// Larger than [`MAX_ATTESTATION_OBJECT_BYTES`].
    TooLarge,
    /// Authenticator data without attested credential data (AT flag).
    NoCredential,
    /// The attestation statement does not hold (bad self-attestation signature, wrong algorithm,
    /// `none` with a non-empty statement).
    BadAttestation(&'static str),
    /// The attestation certificate (the leaf of `x5c`) does not meet the format's
    /// requirements, or is not a certificate; the text says how.
    BadCertificate(&'static str),
    /// The authenticator is not on the operator's AAGUID allowlist, or its AAGUID is not
    /// certified by an attestation certificate (an allowlist is only honoured for AAGUIDs
    /// that a certificate vouches for).
    AaguidNotAllowed,
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationError::Ceremony(e) => write!(f, "{e}"),
            RegistrationError::AttestationObjectMalformed(why) => {
                write!(f, "malformed attestation object: {why}")
            }
            RegistrationError::TooLarge => write!(
                f,
                "attestation object is larger than {MAX_ATTESTATION_OBJECT_BYTES} bytes"
            ),
            RegistrationError::NoCredential => {
                f.write_str("authenticator data carries no attested credential data")
            }
            RegistrationError::BadAttestation(why) => {
                write!(f, "attestation statement does not hold: {why}")
            }
            RegistrationError::BadCertificate(why) => {
                write!(f, "attestation certificate refused: {why}")
            }
            RegistrationError::AaguidNotAllowed => f.write_str(
                "this authenticator model (AAGUID) is not on the allowlist, or no attestation \
                 certificate vouches for it",
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RegistrationError {}

impl From<AssertionError> for RegistrationError {
    fn from(e: AssertionError) -> Self {
        RegistrationError::Ceremony(e)
    }
}

/// What the relying party expects of a registration.
#[derive(Clone, Debug)]
pub struct RegistrationPolicy<'a> {
    /// RP ID the credential must be scoped to.
    pub rp_id: &'a str,
    /// Origins the enrolment page is served from.
    pub allowed_origins: &'a [&'a str],
    /// Whether the UV flag must be set.
    pub require_user_verification: bool,
    /// If set, only these authenticator models may enrol, and only with an attestation
    /// certificate ([`AttestationTrust::Certificate`]): a model an authenticator merely claims
    /// is no model at all.
    pub aaguid_allowlist: Option<&'a [[u8; 16]]>,
}

/// A verified new credential, ready to be logged as an enrolment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredCredential {
    /// Credential ID.
    pub credential_id: Vec<u8>,
    /// The public key as the authenticator encoded it (COSE_Key).
    pub public_key_cose: Vec<u8>,
    /// Authenticator model.
    pub aaguid: [u8; 16],
    /// The attestation format as given (`none`, `packed`, ...).
    pub attestation_format: String,
    /// How far the attestation was checked.
    pub trust: AttestationTrust,
    /// The `x5c` certificates (DER, leaf first) for [`AttestationTrust::Certificate`]; empty
    /// otherwise. The caller validates the path to its trust anchors.
    pub attestation_chain: Vec<Vec<u8>>,
    /// Flags of the registration authenticator data.
    pub flags: u8,
    /// Initial signature counter.
    pub sign_count: u32,
}

/// Refuses a map key that occurs twice anywhere in the CBOR item at `d` (compared as encoded
/// bytes), and indefinite-length arrays and maps: a decoder that keeps the first `alg` and one
/// that keeps the last would otherwise read two statements from one object, and CTAP2's
/// canonical CBOR, in which authenticators write attestation objects, has neither.
fn check_unique_keys(input: &[u8], d: &mut Decoder<'_>, depth: u32) -> Result<(), &'static str> {
    if depth > MAX_CBOR_DEPTH {
        return Err("CBOR nested too deeply");
    }
    let bad = "not well-formed CBOR";
    match d.datatype().map_err(|_| bad)? {
        Type::Map => {
            let n = d.map().map_err(|_| bad)?.ok_or(bad)?;
            let mut keys: Vec<&[u8]> = Vec::new();
            for _ in 0..n {
                let start = d.position();
                check_unique_keys(input, d, depth + 1)?;
                keys.push(&input[start..d.position()]);
                check_unique_keys(input, d, depth + 1)?;
            }
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err("a map key appears twice");
            }
        }
        Type::Array => {
            let n = d.array().map_err(|_| bad)?.ok_or(bad)?;
            for _ in 0..n {
                check_unique_keys(input, d, depth + 1)?;
            }
        }
        Type::MapIndef | Type::ArrayIndef => return Err("indefinite-length map or array"),
        Type::Tag => {
            d.tag().map_err(|_| bad)?;
            check_unique_keys(input, d, depth + 1)?;
        }
        _ => d.skip().map_err(|_| bad)?,
    }
    Ok(())
}

/// Parses `attestationObject` into (fmt, attStmt bytes, authData).
fn parse_attestation_object(bytes: &[u8]) -> Result<(String, &[u8], &[u8]), RegistrationError> {
    use RegistrationError::AttestationObjectMalformed as M;
    let mut d = Decoder::new(bytes);
    let n = d
        .map()
        .map_err(|_| M("not a CBOR map"))?
        .ok_or(M("indefinite-length map"))?;
    if n > 8 {
        return Err(M("too many members"));
    }
    let (mut fmt_, mut stmt, mut auth) = (None, None, None);
    for _ in 0..n {
        let key = d.str().map_err(|_| M("member name is not a text string"))?;
        let start = d.position();
        match key {
            "fmt" => {
                if fmt_.is_some() {
                    return Err(M("fmt given twice"));
                }
                fmt_ = Some(
                    d.str()
                        .map_err(|_| M("fmt is not a text string"))?
                        .to_string(),
                );
            }
            "authData" => {
                if auth.is_some() {
                    return Err(M("authData given twice"));
                }
                auth = Some(d.bytes().map_err(|_| M("authData is not a byte string"))?);
            }
            "attStmt" => {
                if stmt.is_some() {
                    return Err(M("attStmt given twice"));
                }
                if !matches!(d.datatype(), Ok(Type::Map)) {
                    return Err(M("attStmt is not a map"));
                }
                d.skip().map_err(|_| M("attStmt is not well-formed CBOR"))?;
                stmt = Some(&bytes[start..d.position()]);
            }
            _ => d.skip().map_err(|_| M("not well-formed CBOR"))?,
        }
    }
    if d.position() != bytes.len() {
        return Err(M("trailing bytes"));
    }
    check_unique_keys(bytes, &mut Decoder::new(bytes), 0).map_err(M)?;
    match (fmt_, stmt, auth) {
        (Some(f), Some(s), Some(a)) => Ok((f, s, a)),
        _ => Err(M("fmt, attStmt or authData missing")),
    }
}

/// The members of a `packed` or `fido-u2f` statement (sections 8.2 and 8.6).
struct Statement<'a> {
    alg: Option<i64>,
    sig: Option<&'a [u8]>,
    x5c: Option<Vec<&'a [u8]>>,
}

/// Reads `{alg?, sig?, x5c?}`; other members are skipped. Duplicates were refused with the
/// whole object ([`check_unique_keys`]).
fn parse_statement(stmt: &[u8]) -> Result<Statement<'_>, RegistrationError> {
    use RegistrationError::AttestationObjectMalformed as M;
    let mut d = Decoder::new(stmt);
    // parse_attestation_object only hands over a definite-length map.
    let n = d.map().ok().flatten().ok_or(M("attStmt"))?;
    let mut s = Statement {
        alg: None,
        sig: None,
        x5c: None,
    };
    for _ in 0..n {
        match d.str().map_err(|_| M("attStmt member name"))? {
            "alg" => s.alg = Some(d.i64().map_err(|_| M("attStmt alg"))?),
            "sig" => s.sig = Some(d.bytes().map_err(|_| M("attStmt sig"))?),
            "x5c" => {
                let len = d
                    .array()
                    .map_err(|_| M("attStmt x5c is not an array"))?
                    .ok_or(M("attStmt x5c is not an array"))?;
                if len == 0 || len > MAX_ATTESTATION_CERTIFICATES as u64 {
                    return Err(M("attStmt x5c holds no or too many certificates"));
                }
                let mut certs = Vec::new();
                for _ in 0..len {
                    certs.push(
                        d.bytes()
                            .map_err(|_| M("attStmt x5c member is not a byte string"))?,
                    );
                }
                s.x5c = Some(certs);
            }
            _ => d.skip().map_err(|_| M("attStmt"))?,
        }
    }
    Ok(s)
}

/// `authData || SHA-256(clientDataJSON)`, what `packed` statements sign (section 8.2).
fn packed_message(auth: &[u8], client_data_json: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(auth.len() + 32);
    m.extend_from_slice(auth);
    m.extend_from_slice(&sha256(client_data_json));
    m
}

/// `packed` (section 8.2): full attestation with `x5c`, else self attestation.
fn verify_packed(
    stmt: &Statement<'_>,
    cred: &AttestedCredential,
    auth: &[u8],
    client_data_json: &[u8],
) -> Result<(AttestationTrust, Vec<Vec<u8>>), RegistrationError> {
    use RegistrationError::BadAttestation as Bad;
    let (Some(alg), Some(sig)) = (stmt.alg, stmt.sig) else {
        return Err(Bad("packed statement without alg or sig"));
    };
    let signed = packed_message(auth, client_data_json);
    match &stmt.x5c {
        Some(chain) => {
            let leaf = Leaf::parse(chain[0]).map_err(RegistrationError::BadCertificate)?;
            leaf.check_packed(&cred.aaguid)
                .map_err(RegistrationError::BadCertificate)?;
            let key = leaf
                .public_key()
                .map_err(RegistrationError::BadCertificate)?;
            if alg != cose_alg(&key) {
                return Err(Bad("alg differs from the attestation certificate's key"));
            }
            if !crypto::verify(&key, &signed, sig) {
                return Err(Bad("attestation signature does not verify"));
            }
            let chain = chain.iter().map(|c| c.to_vec()).collect();
            Ok((AttestationTrust::Certificate, chain))
        }
        None => {
            // Self attestation: the credential key signs with its own algorithm.
            if alg != cose_alg(&cred.public_key) {
                return Err(Bad(
                    "self attestation algorithm differs from the credential's",
                ));
            }
            if !crypto::verify(&cred.public_key, &signed, sig) {
                return Err(Bad("self attestation signature does not verify"));
            }
            Ok((AttestationTrust::SelfAttested, Vec::new()))
        }
    }
}

/// `fido-u2f` (section 8.6): one P-256 certificate signs
/// `0x00 || rpIdHash || SHA-256(clientDataJSON) || credentialId || 0x04 || x || y`.
fn verify_fido_u2f(
    stmt: &Statement<'_>,
    cred: &AttestedCredential,
    rp_id_hash: &[u8; 32],
    client_data_json: &[u8],
) -> Result<(AttestationTrust, Vec<Vec<u8>>), RegistrationError> {
    use RegistrationError::BadAttestation as Bad;
    let (Some(sig), Some(chain)) = (stmt.sig, &stmt.x5c) else {
        return Err(Bad("fido-u2f statement without sig or x5c"));
    };
    if stmt.alg.is_some() {
        return Err(Bad("fido-u2f statement with an alg"));
    }
    if chain.len() != 1 {
        return Err(Bad("fido-u2f x5c is not exactly one certificate"));
    }
    let leaf = Leaf::parse(chain[0]).map_err(RegistrationError::BadCertificate)?;
    let key = leaf
        .public_key()
        .map_err(RegistrationError::BadCertificate)?;
    if !matches!(key, PublicKey::Es256(_)) {
        return Err(RegistrationError::BadCertificate(
            "fido-u2f certificate key is not on P-256",
        ));
    }
    let PublicKey::Es256(point) = &cred.public_key else {
        return Err(Bad("fido-u2f credential key is not an ES256 key"));
    };
    let mut signed = Vec::with_capacity(1 + 32 + 32 + cred.credential_id.len() + 65);
    signed.push(0x00);
    signed.extend_from_slice(rp_id_hash);
    signed.extend_from_slice(&sha256(client_data_json));
    signed.extend_from_slice(&cred.credential_id);
    signed.extend_from_slice(point);
    if !crypto::verify(&key, &signed, sig) {
        return Err(Bad("attestation signature does not verify"));
    }
    Ok((
        AttestationTrust::Certificate,
        Vec::from([chain[0].to_vec()]),
    ))
}

/// Verifies a registration (WebAuthn Level 3 section 7.1, steps 5 to 22, and the statement
/// formats of section 8 named in the module doc, without trust-root evaluation of certificate
/// chains: that needs trust anchors and a clock, and is the caller's) for `challenge`, and
/// returns the new credential. spec/webauthn.md, rules A1-A9.
pub fn verify_registration(
    attestation_object: &[u8],
    client_data_json: &[u8],
    challenge: &[u8],
    policy: &RegistrationPolicy<'_>,
) -> Result<RegisteredCredential, RegistrationError> {
    if attestation_object.len() > MAX_ATTESTATION_OBJECT_BYTES {
        return Err(RegistrationError::TooLarge);
    }
    let client = ClientData::parse(client_data_json)?;
    client.check("webauthn.create", challenge, policy.allowed_origins)?;
    let (fmt_, stmt, auth_bytes) = parse_attestation_object(attestation_object)?;
    let auth = AuthenticatorData::parse(auth_bytes)?;
    if !bool::from(auth.rp_id_hash.ct_eq(&sha256(policy.rp_id.as_bytes()))) {
        return Err(AssertionError::RpIdHashMismatch.into());
    }
    if auth.flags & flags::UP == 0 {
        return Err(AssertionError::UserNotPresent.into());
    }
    if policy.require_user_verification && auth.flags & flags::UV == 0 {
        return Err(AssertionError::UserNotVerified.into());
    }
    if auth.flags & flags::BS != 0 && auth.flags & flags::BE == 0 {
        return Err(AssertionError::InvalidBackupFlags.into());
    }
    let cred = auth
        .attested_credential
        .ok_or(RegistrationError::NoCredential)?;
    if cred.credential_id.is_empty() {
        return Err(RegistrationError::NoCredential);
    }
    let (trust, attestation_chain) = match fmt_.as_str() {
        "none" => {
            // An empty map is the only valid `none` statement (section 8.7).
            if stmt != [0xa0] {
                return Err(RegistrationError::BadAttestation(
                    "none with a non-empty statement",
                ));
            }
            (AttestationTrust::None, Vec::new())
        }
        "packed" => verify_packed(&parse_statement(stmt)?, &cred, auth_bytes, client_data_json)?,
        "fido-u2f" => verify_fido_u2f(
            &parse_statement(stmt)?,
            &cred,
            &auth.rp_id_hash,
            client_data_json,
        )?,
        f if !f.is_empty()
            && f.len() <= 32
            && f.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            (AttestationTrust::Unverified, Vec::new())
        }
        _ => {
            return Err(RegistrationError::AttestationObjectMalformed(
                "fmt is not a known format name",
            ))
        }
    };
    if let Some(list) = policy.aaguid_allowlist {
        if trust != AttestationTrust::Certificate || !list.contains(&cred.aaguid) {
            return Err(RegistrationError::AaguidNotAllowed);
        }
    }
    Ok(RegisteredCredential {
        credential_id: cred.credential_id,
        public_key_cose: cred.public_key_cose,
        aaguid: cred.aaguid,
        attestation_format: fmt_,
        trust,
        attestation_chain,
        flags: auth.flags,
        sign_count: auth.sign_count,
    })
}

#[cfg(test)]
mod tests;
