//! The log entry codec, versions 1 and 2 (`spec/entry.md`): passkey enrolments, signed
//! decisions and revocations, each with exactly one encoding. Version 2 is an enrolment that
//! records how its attestation was checked; version 1 enrolments, written before it, still
//! decode.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::cose::{parse_cose_key, MAX_COSE_KEY_BYTES};
use crate::crypto::PublicKey;
use crate::webauthn::{
    MAX_AUTHENTICATOR_DATA_BYTES, MAX_CLIENT_DATA_BYTES, MAX_CREDENTIAL_ID_BYTES,
    MAX_SIGNATURE_BYTES,
};

/// The largest entry, in bytes: C2SP tlog-tiles entry bundles use 16-bit lengths.
pub const MAX_ENTRY_BYTES: usize = 65_535;
/// The entry format version of decisions and revocations, and of enrolments without an
/// attestation record.
pub const ENTRY_VERSION: u8 = 1;
/// The entry format version of an enrolment with an attestation record (kind 1 only).
pub const ENTRY_VERSION_ATTESTED_ENROLMENT: u8 = 2;
/// The longest approver or client identifier, in bytes.
pub const MAX_ID_BYTES: usize = 255;

const KIND_ENROLMENT: u8 = 1;
const KIND_DECISION: u8 = 2;
const KIND_REVOCATION: u8 = 3;
const KIND_POLICY: u8 = 4;
/// The largest policy a policy entry carries: its canonical JSON, in bytes.
pub const MAX_POLICY_ENTRY_BYTES: usize = 65_000;

/// Why bytes are not a valid entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// Larger than [`MAX_ENTRY_BYTES`].
    TooLarge,
    /// Empty, or a version other than 1 or 2.
    UnsupportedVersion,
    /// A kind byte other than 1 (enrolment), 2 (decision), 3 (revocation) or 4 (policy), or a
    /// version 2 entry of a kind other than 1.
    UnknownKind,
    /// The bytes end inside a field.
    Truncated,
    /// Bytes remain after the last field.
    TrailingBytes,
    /// A field holds a value outside its rules; the text names the field.
    InvalidField(&'static str),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::TooLarge => write!(f, "entry is larger than {MAX_ENTRY_BYTES} bytes"),
            EntryError::UnsupportedVersion => f.write_str("entry version is not 1 or 2"),
            EntryError::UnknownKind => f.write_str("unknown entry kind"),
            EntryError::Truncated => f.write_str("entry is truncated"),
            EntryError::TrailingBytes => f.write_str("entry has bytes after its last field"),
            EntryError::InvalidField(name) => write!(f, "entry field {name} is invalid"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EntryError {}

/// The approver's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Approved: the agent may act.
    Approve,
    /// Denied: the agent must not act.
    Deny,
}

impl Decision {
    /// `"approve"` or `"deny"`, as in the statement.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }

    /// Parses `"approve"` or `"deny"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Decision::Approve),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// A passkey enrolment: this credential may approve for this approver from now on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolment {
    /// Opaque approver identifier (never an e-mail address or a name).
    pub approver_id: String,
    /// WebAuthn credential ID.
    pub credential_id: Vec<u8>,
    /// The credential public key as a COSE_Key, exactly as the authenticator produced it.
    pub public_key: Vec<u8>,
    /// Authenticator model identifier (all zero when the authenticator does not say).
    pub aaguid: [u8; 16],
    /// Attestation statement format (`none`, `packed`, ...), lowercase ASCII.
    pub attestation_format: String,
    /// How the server checked the attestation (version 2), or not recorded (version 1).
    pub attestation: AttestationRecord,
    /// When the log accepted it, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// What an enrolment records of its attestation check (spec/entry.md, version 2; webauthn.md
/// A8), so an auditor can hold the enrolment to the same policy offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestationRecord {
    /// A version 1 enrolment: nothing recorded.
    NotRecorded,
    /// The server had no attestation policy: the AAGUID and format are the authenticator's
    /// claim.
    Unverified,
    /// The attestation was verified and its certificate chain led to this root.
    Verified {
        /// SHA-256 of the root certificate (DER).
        trust_anchor: [u8; 32],
    },
}

/// A passkey-signed decision on one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDecision {
    /// Approve or deny; must equal the `decision` inside the statement.
    pub decision: Decision,
    /// SHA-256 of the canonical statement.
    pub statement_hash: [u8; 32],
    /// The server's 32-byte nonce; the challenge is `nonce || statement_hash`.
    pub nonce: [u8; 32],
    /// Opaque approver identifier.
    pub approver_id: String,
    /// WebAuthn credential ID that signed.
    pub credential_id: Vec<u8>,
    /// The credential public key as a COSE_Key (same bytes as in the enrolment).
    pub public_key: Vec<u8>,
    /// authenticatorData of the assertion.
    pub authenticator_data: Vec<u8>,
    /// clientDataJSON of the assertion.
    pub client_data_json: Vec<u8>,
    /// The assertion signature.
    pub signature: Vec<u8>,
    /// When the log accepted it, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Log index of the enrolment entry of this credential.
    pub enrolment_index: u64,
}

/// A credential withdrawn: it may not approve after this entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Opaque approver identifier.
    pub approver_id: String,
    /// WebAuthn credential ID.
    pub credential_id: Vec<u8>,
    /// Log index of the enrolment being revoked.
    pub enrolment_index: u64,
    /// Short lowercase reason (`lost`, `compromised`, `removed`, ...).
    pub reason: String,
    /// When the log accepted it, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// A version of the approval policy took effect (`spec/policy.md`): from this entry on, new
/// requests are evaluated under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyEntry {
    /// The policy's RFC 8785 canonical JSON (`spec/policy.md` P8), 1 to
    /// [`MAX_POLICY_ENTRY_BYTES`] bytes. The codec checks only the length; whoever relies on the
    /// policy checks that these bytes are the canonical form of a valid policy.
    pub policy: Vec<u8>,
    /// When the log accepted it, milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// A log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // entries are built and dropped one at a time
pub enum Entry {
    /// Kind 1.
    Enrolment(Enrolment),
    /// Kind 2.
    Decision(SignedDecision),
    /// Kind 3.
    Revocation(Revocation),
    /// Kind 4.
    Policy(PolicyEntry),
}

impl Entry {
    /// Encodes the entry. Fails if a field breaks its rules, so anything encoded decodes.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let mut w = Writer(Vec::with_capacity(256));
        w.0.push(match self {
            Entry::Enrolment(e) if e.attestation != AttestationRecord::NotRecorded => {
                ENTRY_VERSION_ATTESTED_ENROLMENT
            }
            _ => ENTRY_VERSION,
        });
        match self {
            Entry::Enrolment(e) => {
                w.0.push(KIND_ENROLMENT);
                w.id(&e.approver_id, "approver_id")?;
                w.credential_id(&e.credential_id)?;
                w.cose_key(&e.public_key)?;
                w.0.extend_from_slice(&e.aaguid);
                w.label(&e.attestation_format, "attestation_format")?;
                match e.attestation {
                    AttestationRecord::NotRecorded => {}
                    AttestationRecord::Unverified => {
                        w.0.push(0);
                        w.0.extend_from_slice(&[0; 32]);
                    }
                    AttestationRecord::Verified { trust_anchor } => {
                        w.0.push(1);
                        w.0.extend_from_slice(&trust_anchor);
                    }
                }
                w.u64(e.time_ms);
            }
            Entry::Decision(d) => {
                w.0.push(KIND_DECISION);
                w.0.push(match d.decision {
                    Decision::Approve => 1,
                    Decision::Deny => 2,
                });
                w.0.extend_from_slice(&d.statement_hash);
                w.0.extend_from_slice(&d.nonce);
                w.id(&d.approver_id, "approver_id")?;
                w.credential_id(&d.credential_id)?;
                w.cose_key(&d.public_key)?;
                w.bytes16(
                    &d.authenticator_data,
                    37,
                    MAX_AUTHENTICATOR_DATA_BYTES,
                    "authenticator_data",
                )?;
                w.bytes16(
                    &d.client_data_json,
                    1,
                    MAX_CLIENT_DATA_BYTES,
                    "client_data_json",
                )?;
                w.bytes16(&d.signature, 1, MAX_SIGNATURE_BYTES, "signature")?;
                w.u64(d.time_ms);
                w.u64(d.enrolment_index);
            }
            Entry::Revocation(r) => {
                w.0.push(KIND_REVOCATION);
                w.id(&r.approver_id, "approver_id")?;
                w.credential_id(&r.credential_id)?;
                w.u64(r.enrolment_index);
                w.label(&r.reason, "reason")?;
                w.u64(r.time_ms);
            }
            Entry::Policy(p) => {
                w.0.push(KIND_POLICY);
                w.bytes16(&p.policy, 1, MAX_POLICY_ENTRY_BYTES, "policy")?;
                w.u64(p.time_ms);
            }
        }
        if w.0.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge);
        }
        Ok(w.0)
    }

    /// Decodes an entry. Every byte string has one decoding and one encoding: unknown versions
    /// and kinds, out-of-range fields and trailing bytes are errors.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge);
        }
        let mut r = Reader(bytes);
        let version = r.u8().map_err(|_| EntryError::UnsupportedVersion)?;
        if version != ENTRY_VERSION && version != ENTRY_VERSION_ATTESTED_ENROLMENT {
            return Err(EntryError::UnsupportedVersion);
        }
        let kind = r.u8()?;
        if version == ENTRY_VERSION_ATTESTED_ENROLMENT && kind != KIND_ENROLMENT {
            return Err(EntryError::UnknownKind);
        }
        let entry = match kind {
            KIND_ENROLMENT => Entry::Enrolment(Enrolment {
                approver_id: r.id("approver_id")?,
                credential_id: r.credential_id()?,
                public_key: r.cose_key()?,
                aaguid: r.array()?,
                attestation_format: r.label("attestation_format")?,
                attestation: if version == ENTRY_VERSION {
                    AttestationRecord::NotRecorded
                } else {
                    let verified = r.u8()?;
                    let trust_anchor: [u8; 32] = r.array()?;
                    match verified {
                        // One encoding: a record that is not verified names no root.
                        0 if trust_anchor == [0; 32] => AttestationRecord::Unverified,
                        0 => return Err(EntryError::InvalidField("trust_anchor")),
                        1 => AttestationRecord::Verified { trust_anchor },
                        _ => return Err(EntryError::InvalidField("attestation_verified")),
                    }
                },
                time_ms: r.u64()?,
            }),
            KIND_DECISION => Entry::Decision(SignedDecision {
                decision: match r.u8()? {
                    1 => Decision::Approve,
                    2 => Decision::Deny,
                    _ => return Err(EntryError::InvalidField("decision")),
                },
                statement_hash: r.array()?,
                nonce: r.array()?,
                approver_id: r.id("approver_id")?,
                credential_id: r.credential_id()?,
                public_key: r.cose_key()?,
                authenticator_data: r.bytes16(
                    37,
                    MAX_AUTHENTICATOR_DATA_BYTES,
                    "authenticator_data",
                )?,
                client_data_json: r.bytes16(1, MAX_CLIENT_DATA_BYTES, "client_data_json")?,
                signature: r.bytes16(1, MAX_SIGNATURE_BYTES, "signature")?,
                time_ms: r.u64()?,
                enrolment_index: r.u64()?,
            }),
            KIND_REVOCATION => Entry::Revocation(Revocation {
                approver_id: r.id("approver_id")?,
                credential_id: r.credential_id()?,
                enrolment_index: r.u64()?,
                reason: r.label("reason")?,
                time_ms: r.u64()?,
            }),
            KIND_POLICY => Entry::Policy(PolicyEntry {
                policy: r.bytes16(1, MAX_POLICY_ENTRY_BYTES, "policy")?,
                time_ms: r.u64()?,
            }),
            _ => return Err(EntryError::UnknownKind),
        };
        if !r.0.is_empty() {
            return Err(EntryError::TrailingBytes);
        }
        Ok(entry)
    }

    /// The decoded entry as JSON, every field named as in `spec/entry.md`, byte strings in
    /// lowercase hex, with its `kind`. One rendering for the server's API and the CLI.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Entry::Enrolment(e) => {
                let mut v = json!({
                    "kind": "enrolment",
                    "approver_id": e.approver_id,
                    "credential_id": hex::encode(&e.credential_id),
                    "public_key": hex::encode(&e.public_key),
                    "aaguid": hex::encode(e.aaguid),
                    "attestation_format": e.attestation_format,
                    "time_ms": e.time_ms,
                });
                match e.attestation {
                    AttestationRecord::NotRecorded => {}
                    AttestationRecord::Unverified => {
                        v["attestation_verified"] = false.into();
                        v["trust_anchor"] = hex::encode([0u8; 32]).into();
                    }
                    AttestationRecord::Verified { trust_anchor } => {
                        v["attestation_verified"] = true.into();
                        v["trust_anchor"] = hex::encode(trust_anchor).into();
                    }
                }
                v
            }
            Entry::Decision(d) => json!({
                "kind": "decision",
                "decision": d.decision.as_str(),
                "statement_hash": hex::encode(d.statement_hash),
                "nonce": hex::encode(d.nonce),
                "approver_id": d.approver_id,
                "credential_id": hex::encode(&d.credential_id),
                "public_key": hex::encode(&d.public_key),
                "authenticator_data": hex::encode(&d.authenticator_data),
                "client_data_json": hex::encode(&d.client_data_json),
                "signature": hex::encode(&d.signature),
                "time_ms": d.time_ms,
                "enrolment_index": d.enrolment_index,
            }),
            Entry::Revocation(r) => json!({
                "kind": "revocation",
                "approver_id": r.approver_id,
                "credential_id": hex::encode(&r.credential_id),
                "enrolment_index": r.enrolment_index,
                "reason": r.reason,
                "time_ms": r.time_ms,
            }),
            Entry::Policy(p) => json!({
                "kind": "policy",
                "policy": String::from_utf8_lossy(&p.policy),
                "policy_sha256": hex::encode(crate::hash::sha256(&p.policy)),
                "time_ms": p.time_ms,
            }),
        }
    }

    /// `enrolment`, `decision`, `revocation` or `policy`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Entry::Enrolment(_) => "enrolment",
            Entry::Decision(_) => "decision",
            Entry::Revocation(_) => "revocation",
            Entry::Policy(_) => "policy",
        }
    }

    /// The approver the entry is about (empty for a policy entry, which is about no one).
    pub fn approver_id(&self) -> &str {
        match self {
            Entry::Enrolment(e) => &e.approver_id,
            Entry::Decision(d) => &d.approver_id,
            Entry::Revocation(r) => &r.approver_id,
            Entry::Policy(_) => "",
        }
    }

    /// When the log accepted the entry, milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> u64 {
        match self {
            Entry::Enrolment(e) => e.time_ms,
            Entry::Decision(d) => d.time_ms,
            Entry::Revocation(r) => r.time_ms,
            Entry::Policy(p) => p.time_ms,
        }
    }
}

impl PolicyEntry {
    /// The policy entry of `policy`, dated `time_ms`.
    #[cfg(feature = "std")]
    pub fn of(policy: &crate::ValidatedPolicy, time_ms: u64) -> Self {
        PolicyEntry {
            policy: policy.canonical_json(),
            time_ms,
        }
    }

    /// SHA-256 of the policy's canonical JSON: the policy hash (`spec/policy.md` P9).
    pub fn policy_hash(&self) -> [u8; 32] {
        crate::hash::sha256(&self.policy)
    }

    /// The policy, if the bytes are the canonical form of a valid policy (and only then: any
    /// other spelling of the same policy is refused, so one policy has one entry).
    #[cfg(feature = "std")]
    pub fn validated(&self) -> Result<crate::ValidatedPolicy, crate::PolicyJsonError> {
        let p = crate::ValidatedPolicy::from_json(&self.policy)?;
        if p.canonical_json() != self.policy {
            return Err(crate::PolicyJsonError::Json(
                "the policy entry does not hold the policy's canonical form".into(),
            ));
        }
        Ok(p)
    }
}

impl Enrolment {
    /// The parsed public key (the codec guarantees it parses).
    pub fn key(&self) -> Result<PublicKey, EntryError> {
        parse_cose_key(&self.public_key).map_err(|_| EntryError::InvalidField("public_key"))
    }
}

impl SignedDecision {
    /// The WebAuthn challenge the approver signed: `nonce || statement_hash` (64 bytes).
    pub fn challenge(&self) -> [u8; 64] {
        challenge(&self.nonce, &self.statement_hash)
    }
}

/// `nonce || statement_hash`, the WebAuthn challenge of a decision (`spec/statement.md`).
pub fn challenge(nonce: &[u8; 32], statement_hash: &[u8; 32]) -> [u8; 64] {
    let mut c = [0u8; 64];
    c[..32].copy_from_slice(nonce);
    c[32..].copy_from_slice(statement_hash);
    c
}

/// Opaque ids: 1 to 255 bytes of ASCII letters, digits and `-._:~`, so they are safe in logs,
/// URLs and headers, and an e-mail address (no `@`) or a name (no spaces) cannot be one:
/// the public log never carries personal data (DESIGN.md, "Private by default").
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'~'))
}

fn is_valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn id(&mut self, s: &str, field: &'static str) -> Result<(), EntryError> {
        if !is_valid_id(s) {
            return Err(EntryError::InvalidField(field));
        }
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn label(&mut self, s: &str, field: &'static str) -> Result<(), EntryError> {
        if !is_valid_label(s) {
            return Err(EntryError::InvalidField(field));
        }
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn bytes16(
        &mut self,
        b: &[u8],
        min: usize,
        max: usize,
        field: &'static str,
    ) -> Result<(), EntryError> {
        if b.len() < min || b.len() > max {
            return Err(EntryError::InvalidField(field));
        }
        self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.0.extend_from_slice(b);
        Ok(())
    }
    fn credential_id(&mut self, b: &[u8]) -> Result<(), EntryError> {
        self.bytes16(b, 1, MAX_CREDENTIAL_ID_BYTES, "credential_id")
    }
    fn cose_key(&mut self, b: &[u8]) -> Result<(), EntryError> {
        parse_cose_key(b).map_err(|_| EntryError::InvalidField("public_key"))?;
        self.bytes16(b, 1, MAX_COSE_KEY_BYTES, "public_key")
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        let (a, b) = self.0.split_at_checked(n).ok_or(EntryError::Truncated)?;
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, EntryError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u64(&mut self) -> Result<u64, EntryError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EntryError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn string8(&mut self, field: &'static str) -> Result<String, EntryError> {
        let n = self.u8()? as usize;
        let b = self.take(n)?;
        core::str::from_utf8(b)
            .map(String::from)
            .map_err(|_| EntryError::InvalidField(field))
    }
    fn id(&mut self, field: &'static str) -> Result<String, EntryError> {
        let s = self.string8(field)?;
        if !is_valid_id(&s) {
            return Err(EntryError::InvalidField(field));
        }
        Ok(s)
    }
    fn label(&mut self, field: &'static str) -> Result<String, EntryError> {
        let s = self.string8(field)?;
        if !is_valid_label(&s) {
            return Err(EntryError::InvalidField(field));
        }
        Ok(s)
    }
    fn bytes16(
        &mut self,
        min: usize,
        max: usize,
        field: &'static str,
    ) -> Result<Vec<u8>, EntryError> {
        let n = self.u16()?;
        if n < min || n > max {
            return Err(EntryError::InvalidField(field));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn credential_id(&mut self) -> Result<Vec<u8>, EntryError> {
        self.bytes16(1, MAX_CREDENTIAL_ID_BYTES, "credential_id")
    }
    fn cose_key(&mut self) -> Result<Vec<u8>, EntryError> {
        let b = self.bytes16(1, MAX_COSE_KEY_BYTES, "public_key")?;
        parse_cose_key(&b).map_err(|_| EntryError::InvalidField("public_key"))?;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn okp() -> Vec<u8> {
        crate::cose::tests::okp()
    }

    fn enrolment() -> Entry {
        Entry::Enrolment(Enrolment {
            approver_id: "apv_1".into(),
            credential_id: alloc::vec![1, 2, 3],
            public_key: okp(),
            aaguid: [0; 16],
            attestation_format: "none".into(),
            attestation: AttestationRecord::NotRecorded,
            time_ms: 1_700_000_000_000,
        })
    }

    #[test]
    fn version_2_enrolments_record_the_attestation_and_version_1_still_decodes() {
        let Entry::Enrolment(v1) = enrolment() else {
            unreachable!()
        };
        let v1_bytes = Entry::Enrolment(v1.clone()).encode().unwrap();
        for (record, flag) in [
            (AttestationRecord::Unverified, 0u8),
            (
                AttestationRecord::Verified {
                    trust_anchor: [7; 32],
                },
                1,
            ),
        ] {
            let e = Entry::Enrolment(Enrolment {
                attestation: record,
                ..v1.clone()
            });
            let bytes = e.encode().unwrap();
            assert_eq!(bytes[0], 2);
            // The version 1 fields, then the record, then time_ms.
            let split = v1_bytes.len() - 8;
            assert_eq!(bytes[1..split], v1_bytes[1..split]);
            assert_eq!(bytes[split], flag);
            assert_eq!(Entry::decode(&bytes), Ok(e.clone()));
            assert_eq!(e.to_json()["attestation_verified"], flag == 1);
            for n in 0..bytes.len() {
                assert!(Entry::decode(&bytes[..n]).is_err(), "prefix {n}");
            }
            let mut bad = bytes.clone();
            bad[split] = 2;
            assert_eq!(
                Entry::decode(&bad),
                Err(EntryError::InvalidField("attestation_verified"))
            );
            let mut v1_again = bytes.clone();
            v1_again[0] = 1;
            assert_eq!(Entry::decode(&v1_again), Err(EntryError::TrailingBytes));
        }
        // Not verified, but naming a root: two encodings of one value otherwise.
        let mut bytes = Entry::Enrolment(Enrolment {
            attestation: AttestationRecord::Unverified,
            ..v1.clone()
        })
        .encode()
        .unwrap();
        let n = bytes.len();
        bytes[n - 9] = 1;
        assert_eq!(
            Entry::decode(&bytes),
            Err(EntryError::InvalidField("trust_anchor"))
        );
        // Version 2 is an enrolment only.
        let mut v2_decision = Entry::Enrolment(Enrolment {
            attestation: AttestationRecord::Unverified,
            ..v1
        })
        .encode()
        .unwrap();
        v2_decision[1] = 2;
        assert_eq!(Entry::decode(&v2_decision), Err(EntryError::UnknownKind));
        assert_eq!(Entry::decode(&v1_bytes).unwrap(), enrolment());
    }

    #[test]
    fn round_trip_and_every_truncation_fails() {
        let e = enrolment();
        let bytes = e.encode().unwrap();
        assert_eq!(e.to_json()["kind"], "enrolment");
        assert_eq!(e.to_json()["credential_id"], "010203");
        assert_eq!(Entry::decode(&bytes), Ok(e));
        for n in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Entry::decode(&longer), Err(EntryError::TrailingBytes));
        let mut v3 = bytes.clone();
        v3[0] = 3;
        assert_eq!(Entry::decode(&v3), Err(EntryError::UnsupportedVersion));
        let mut k = bytes;
        k[1] = 9;
        assert_eq!(Entry::decode(&k), Err(EntryError::UnknownKind));
    }

    #[test]
    fn encode_refuses_invalid_fields() {
        let Entry::Enrolment(mut e) = enrolment() else {
            unreachable!()
        };
        e.approver_id = "alice@example.com with space".into();
        assert_eq!(
            Entry::Enrolment(e.clone()).encode(),
            Err(EntryError::InvalidField("approver_id"))
        );
        e.approver_id = "a".into();
        e.public_key = alloc::vec![0xa0];
        assert_eq!(
            Entry::Enrolment(e).encode(),
            Err(EntryError::InvalidField("public_key"))
        );
    }
}
