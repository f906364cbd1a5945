//! WebAuthn Level 3 registration verification (section 7.1, "Registering a New Credential"),
//! for enrolling an approver's passkey: client data, authenticator data with the new
//! credential, and the attestation statement formats `none` and `packed` (self attestation).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use minicbor::data::Type;
use minicbor::Decoder;
use subtle::ConstantTimeEq;

use crate::cose::cose_alg;
use crate::crypto;
use crate::hash::sha256;
use crate::webauthn::{flags, AssertionError, AuthenticatorData, ClientData};

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
    /// A format with a certificate chain (`packed` with `x5c`, `tpm`, `android-key`, `apple`,
    /// `fido-u2f`, ...): the chain was not checked against any trust root, so the AAGUID is
    /// the authenticator's claim only.
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
    /// The authenticator is not on the operator's AAGUID allowlist.
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
            RegistrationError::AaguidNotAllowed => {
                f.write_str("this authenticator model (AAGUID) is not on the allowlist")
            }
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
    /// If set, only these authenticator models may enrol.
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
    /// Flags of the registration authenticator data.
    pub flags: u8,
    /// Initial signature counter.
    pub sign_count: u32,
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
    match (fmt_, stmt, auth) {
        (Some(f), Some(s), Some(a)) => Ok((f, s, a)),
        _ => Err(M("fmt, attStmt or authData missing")),
    }
}

/// Reads a `packed` statement: `{alg, sig, x5c?}`. Returns (alg, sig, has_x5c).
fn parse_packed(stmt: &[u8]) -> Result<(i64, &[u8], bool), RegistrationError> {
    use RegistrationError::AttestationObjectMalformed as M;
    let mut d = Decoder::new(stmt);
    // parse_attestation_object only hands over a definite-length map.
    let n = d.map().ok().flatten().ok_or(M("attStmt"))?;
    let (mut alg, mut sig, mut x5c) = (None, None, false);
    for _ in 0..n {
        match d.str().map_err(|_| M("attStmt member name"))? {
            "alg" => alg = Some(d.i64().map_err(|_| M("attStmt alg"))?),
            "sig" => sig = Some(d.bytes().map_err(|_| M("attStmt sig"))?),
            "x5c" => {
                x5c = true;
                d.skip().map_err(|_| M("attStmt x5c"))?;
            }
            _ => d.skip().map_err(|_| M("attStmt"))?,
        }
    }
    match (alg, sig) {
        (Some(a), Some(s)) => Ok((a, s, x5c)),
        _ => Err(RegistrationError::BadAttestation(
            "packed statement without alg or sig",
        )),
    }
}

/// Verifies a registration (WebAuthn Level 3 section 7.1, steps 5 to 22, without trust-root
/// evaluation of certificate chains) for `challenge`, and returns the new credential.
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
    let trust = match fmt_.as_str() {
        "none" => {
            // An empty map is the only valid `none` statement (section 8.7).
            if stmt != [0xa0] {
                return Err(RegistrationError::BadAttestation(
                    "none with a non-empty statement",
                ));
            }
            AttestationTrust::None
        }
        "packed" => {
            let (alg, sig, x5c) = parse_packed(stmt)?;
            if x5c {
                AttestationTrust::Unverified
            } else {
                // Self attestation (section 8.2): the credential key signs
                // authData || SHA-256(clientDataJSON) with its own algorithm.
                if alg != cose_alg(&cred.public_key) {
                    return Err(RegistrationError::BadAttestation(
                        "self attestation algorithm differs from the credential's",
                    ));
                }
                let mut signed = Vec::with_capacity(auth_bytes.len() + 32);
                signed.extend_from_slice(auth_bytes);
                signed.extend_from_slice(&sha256(client_data_json));
                if !crypto::verify(&cred.public_key, &signed, sig) {
                    return Err(RegistrationError::BadAttestation(
                        "self attestation signature does not verify",
                    ));
                }
                AttestationTrust::SelfAttested
            }
        }
        f if !f.is_empty()
            && f.len() <= 32
            && f.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            AttestationTrust::Unverified
        }
        _ => {
            return Err(RegistrationError::AttestationObjectMalformed(
                "fmt is not a known format name",
            ))
        }
    };
    if let Some(list) = policy.aaguid_allowlist {
        if !list.contains(&cred.aaguid) {
            return Err(RegistrationError::AaguidNotAllowed);
        }
    }
    Ok(RegisteredCredential {
        credential_id: cred.credential_id,
        public_key_cose: cred.public_key_cose,
        aaguid: cred.aaguid,
        attestation_format: fmt_,
        trust,
        flags: auth.flags,
        sign_count: auth.sign_count,
    })
}

#[cfg(test)]
mod tests;
