//! The operator's attestation policy (spec/webauthn.md A8): which roots an attestation
//! certificate chain must lead to, from PEM files and from a FIDO Metadata Service (MDS3)
//! BLOB, and which authenticator models the BLOB's status reports rule out. The verifier crate
//! checks what a statement says about itself; this checks it against trust anchors and the
//! clock, which the verifier does not have.

use base64::Engine;
use countersign_verifier::{AttestationTrust, RegisteredCredential};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
pub use rustls_pki_types::UnixTime;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};
use x509_cert::der::asn1::OctetString;
use x509_cert::der::Decode;

use crate::util::B64URL;

/// MDS3 status reports after which an authenticator model may not enrol: its keys or its user
/// verification can no longer be relied on (FIDO Metadata Service v3.0, AuthenticatorStatus).
pub const REFUSED_STATUSES: [&str; 5] = [
    "REVOKED",
    "USER_VERIFICATION_BYPASS",
    "ATTESTATION_KEY_COMPROMISE",
    "USER_KEY_REMOTE_COMPROMISE",
    "USER_KEY_PHYSICAL_COMPROMISE",
];

/// A trusted root certificate.
#[derive(Clone, Debug)]
struct Root {
    der: Vec<u8>,
    fingerprint: [u8; 32],
}

impl Root {
    fn new(der: Vec<u8>) -> Result<Self, PolicyError> {
        let r = Root {
            fingerprint: Sha256::digest(&der).into(),
            der,
        };
        webpki::anchor_from_trusted_cert(&CertificateDer::from(r.der.as_slice()))
            .map_err(|e| PolicyError(format!("a root is not a usable certificate: {e}")))?;
        Ok(r)
    }
}

/// One authenticator model of the metadata BLOB.
#[derive(Clone, Debug)]
struct Model {
    aaguid: Option<[u8; 16]>,
    key_identifiers: Vec<String>,
    roots: Vec<Root>,
    /// The status of the latest report (by effectiveDate), if any.
    status: Option<String>,
}

/// The attestation policy: refuse any registration that is not a certificate-backed
/// attestation anchored in one of these roots.
#[derive(Clone, Debug, Default)]
pub struct AttestationPolicy {
    roots: Vec<Root>,
    models: Option<Vec<Model>>,
    require_certified: bool,
}

/// The policy could not be loaded (a bad PEM file, an MDS BLOB whose signature or chain does
/// not hold, ...). Refuses the server's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

/// Why a registration was refused by the attestation policy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestationRefused {
    /// `none`, self attestation or a format the server cannot verify.
    NotCertified {
        /// The statement format.
        format: String,
    },
    /// The chain leads to no configured root (or is expired, or malformed); the text is the
    /// path validation error.
    NotAnchored(String),
    /// The model's latest MDS status report rules it out.
    Status(String),
    /// The operator requires FIDO certification, and the model's latest status is not one.
    NotFidoCertified(Option<String>),
}

impl std::fmt::Display for AttestationRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttestationRefused::NotCertified { format } => write!(
                f,
                "this server requires a verifiable attestation (packed with a certificate, or \
                 fido-u2f); the authenticator gave {format:?} without a certificate"
            ),
            AttestationRefused::NotAnchored(why) => write!(
                f,
                "the attestation certificate chain does not lead to a trusted root: {why}"
            ),
            AttestationRefused::Status(s) => write!(
                f,
                "this authenticator model is refused: its FIDO metadata status is {s}"
            ),
            AttestationRefused::NotFidoCertified(s) => write!(
                f,
                "this authenticator model is not FIDO certified (metadata status: {})",
                s.as_deref().unwrap_or("none")
            ),
        }
    }
}

impl std::error::Error for AttestationRefused {}

/// Accepts any extended key usage: FIDO attestation certificates carry none or vendor ones,
/// and what they may attest is decided by the root they chain to, not by an EKU.
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

/// Validates `chain` (leaf first) to one of `roots` at `now`; the root it led to.
fn anchor<'r>(
    chain: &[Vec<u8>],
    roots: impl Iterator<Item = &'r Root>,
    now: UnixTime,
) -> Result<&'r Root, String> {
    let leaf = chain.first().ok_or("no certificate")?;
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let ee = EndEntityCert::try_from(&leaf_der).map_err(|e| e.to_string())?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let mut last = String::from("no root is configured for this authenticator");
    for root in roots {
        let root_der = CertificateDer::from(root.der.as_slice());
        let Ok(ta) = webpki::anchor_from_trusted_cert(&root_der) else {
            continue;
        };
        match ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[ta],
            &intermediates,
            now,
            AnyUsage,
            None,
            None,
        ) {
            Ok(_) => return Ok(root),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Every certificate of a PEM text.
fn pem_certificates(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>, PolicyError> {
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| PolicyError(format!("{what}: not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(PolicyError(format!("{what}: no certificate in the file")));
    }
    Ok(certs)
}

#[derive(Deserialize)]
struct JwsHeader {
    alg: String,
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    next_update: Option<String>,
    entries: Vec<BlobEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlobEntry {
    aaguid: Option<String>,
    #[serde(default)]
    attestation_certificate_key_identifiers: Vec<String>,
    metadata_statement: Option<Statement>,
    #[serde(default)]
    status_reports: Vec<StatusReport>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(default)]
    attestation_root_certificates: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusReport {
    status: String,
    effective_date: Option<String>,
}

fn parse_aaguid(s: &str) -> Option<[u8; 16]> {
    let h: String = s.chars().filter(|c| *c != '-').collect();
    hex::decode(h).ok()?.try_into().ok()
}

/// The subject key identifier of a certificate, lower-case hex (how MDS3 names U2F models).
fn subject_key_identifier(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let ext = cert
        .tbs_certificate
        .extensions?
        .into_iter()
        .find(|e| e.extn_id.to_string() == "2.5.29.14")?;
    let ski = OctetString::from_der(ext.extn_value.as_bytes()).ok()?;
    Some(hex::encode(ski.as_bytes()))
}

impl AttestationPolicy {
    /// A policy of PEM roots only (`serve --attestation-roots`).
    pub fn from_pem_roots(pem: &[u8]) -> Result<Self, PolicyError> {
        let mut p = AttestationPolicy::default();
        p.add_pem_roots(pem)?;
        Ok(p)
    }

    /// Adds the roots of a PEM file.
    pub fn add_pem_roots(&mut self, pem: &[u8]) -> Result<(), PolicyError> {
        for der in pem_certificates(pem, "attestation roots")? {
            self.roots.push(Root::new(der)?);
        }
        Ok(())
    }

    /// Refuse models whose latest MDS status is not `FIDO_CERTIFIED*` (and models the BLOB
    /// does not list).
    pub fn require_fido_certified(&mut self, yes: bool) {
        self.require_certified = yes;
    }

    /// Whether [`Self::require_fido_certified`] was asked without an MDS BLOB to answer it.
    pub fn certification_without_mds(&self) -> bool {
        self.require_certified && self.models.is_none()
    }

    /// Loads an MDS3 BLOB (`serve --attestation-mds`, FIDO Metadata Service v3.0 section 3):
    /// a JWS whose header `x5c` chain MUST lead to one of the roots in `mds_root_pem` at
    /// `now`, signed ES256 or RS256 by the chain's leaf. Returns the BLOB's `nextUpdate`.
    pub fn load_mds(
        &mut self,
        blob: &[u8],
        mds_root_pem: &[u8],
        now: UnixTime,
    ) -> Result<Option<String>, PolicyError> {
        let bad = |why: &str| PolicyError(format!("MDS BLOB: {why}"));
        let text = std::str::from_utf8(blob)
            .map_err(|_| bad("not UTF-8"))?
            .trim();
        let mut parts = text.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                "not a JWS compact serialisation (three dot-separated parts)",
            ));
        };
        let header: JwsHeader = serde_json::from_slice(
            &B64URL
                .decode(h)
                .map_err(|_| bad("header is not base64url"))?,
        )
        .map_err(|e| bad(&format!("header: {e}")))?;
        let sig = B64URL
            .decode(s)
            .map_err(|_| bad("signature is not base64url"))?;
        let std64 = base64::engine::general_purpose::STANDARD;
        let chain: Vec<Vec<u8>> = header
            .x5c
            .iter()
            .map(|c| std64.decode(c))
            .collect::<Result<_, _>>()
            .map_err(|_| bad("x5c is not base64"))?;
        let roots: Vec<Root> = pem_certificates(mds_root_pem, "MDS root")?
            .into_iter()
            .map(Root::new)
            .collect::<Result<_, _>>()?;
        anchor(&chain, roots.iter(), now)
            .map_err(|e| bad(&format!("signing certificate chain: {e}")))?;
        let leaf = CertificateDer::from(chain[0].as_slice());
        let ee = EndEntityCert::try_from(&leaf).map_err(|e| bad(&e.to_string()))?;
        let signed = format!("{h}.{p}");
        let ok = match header.alg.as_str() {
            "ES256" => p256::ecdsa::Signature::from_slice(&sig)
                .map(|s| s.to_der().as_bytes().to_vec())
                .is_ok_and(|der| {
                    ee.verify_signature(webpki::ring::ECDSA_P256_SHA256, signed.as_bytes(), &der)
                        .is_ok()
                }),
            "RS256" => ee
                .verify_signature(
                    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
                    signed.as_bytes(),
                    &sig,
                )
                .is_ok(),
            other => return Err(bad(&format!("unsupported alg {other:?} (ES256 or RS256)"))),
        };
        if !ok {
            return Err(bad("the signature does not verify with the x5c leaf"));
        }
        let blob: Blob = serde_json::from_slice(
            &B64URL
                .decode(p)
                .map_err(|_| bad("payload is not base64url"))?,
        )
        .map_err(|e| bad(&format!("payload: {e}")))?;
        let mut models = Vec::new();
        for e in blob.entries {
            let roots = e
                .metadata_statement
                .map(|m| m.attestation_root_certificates)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| std64.decode(c).ok())
                .filter_map(|der| Root::new(der).ok())
                .collect();
            // The latest report by effectiveDate (ISO 8601 dates compare as text); a tie goes
            // to the later one in the list.
            let status = e
                .status_reports
                .iter()
                .enumerate()
                .max_by(|(i, a), (j, b)| {
                    (a.effective_date.as_deref().unwrap_or(""), i)
                        .cmp(&(b.effective_date.as_deref().unwrap_or(""), j))
                })
                .map(|(_, r)| r.status.clone());
            models.push(Model {
                aaguid: e.aaguid.as_deref().and_then(parse_aaguid),
                key_identifiers: e
                    .attestation_certificate_key_identifiers
                    .iter()
                    .map(|k| k.to_ascii_lowercase())
                    .collect(),
                roots,
                status,
            });
        }
        self.models = Some(models);
        Ok(blob.next_update)
    }

    /// The MDS model of a registration: by AAGUID, or for `fido-u2f` (no AAGUID) by the
    /// leaf's subject key identifier.
    fn model(&self, reg: &RegisteredCredential) -> Option<&Model> {
        let models = self.models.as_ref()?;
        if reg.aaguid != [0; 16] {
            return models.iter().find(|m| m.aaguid == Some(reg.aaguid));
        }
        let ski = subject_key_identifier(reg.attestation_chain.first()?)?;
        models.iter().find(|m| m.key_identifiers.contains(&ski))
    }

    /// Checks a verified registration against the policy at `now` (spec/webauthn.md A8):
    /// the SHA-256 fingerprint of the root its chain leads to.
    pub fn check(
        &self,
        reg: &RegisteredCredential,
        now: UnixTime,
    ) -> Result<[u8; 32], AttestationRefused> {
        if reg.trust != AttestationTrust::Certificate || reg.attestation_chain.is_empty() {
            return Err(AttestationRefused::NotCertified {
                format: reg.attestation_format.clone(),
            });
        }
        let model = self.model(reg);
        if let Some(s) = model.and_then(|m| m.status.as_deref()) {
            if REFUSED_STATUSES.contains(&s) {
                return Err(AttestationRefused::Status(s.to_owned()));
            }
        }
        if self.require_certified {
            let status = model.and_then(|m| m.status.clone());
            if !status
                .as_deref()
                .is_some_and(|s| s.starts_with("FIDO_CERTIFIED"))
            {
                return Err(AttestationRefused::NotFidoCertified(status));
            }
        }
        let roots = self
            .roots
            .iter()
            .chain(model.into_iter().flat_map(|m| m.roots.iter()));
        anchor(&reg.attestation_chain, roots, now)
            .map(|r| r.fingerprint)
            .map_err(AttestationRefused::NotAnchored)
    }
}

#[cfg(test)]
mod tests;
