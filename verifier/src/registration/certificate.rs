//! Attestation certificates: what a leaf must say about itself (WebAuthn Level 3 sections
//! 8.2.1 and 8.6) and the key it certifies. Whether the chain leads to a root the operator
//! trusts, and whether it is within its validity period, needs trust anchors and a clock: the
//! server checks that (countersign-approvals, `attestation`), not this crate.

use alloc::vec::Vec;

use x509_cert::der::asn1::{ObjectIdentifier, OctetString};
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::{Certificate, Version};

use crate::crypto::PublicKey;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// id-fido-gen-ce-aaguid (WebAuthn section 8.2.1): the authenticator model, certified.
const OID_FIDO_AAGUID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.45724.1.1.4");

/// A parsed attestation certificate.
pub(super) struct Leaf(Certificate);

impl Leaf {
    /// Parses one DER certificate (all of `der`, nothing after it). RFC 5280 section 4.2: an
    /// extension may appear once, so a repeated one (two AAGUIDs, say) is refused.
    pub(super) fn parse(der: &[u8]) -> Result<Self, &'static str> {
        let cert = Certificate::from_der(der).map_err(|_| "not a DER X.509 certificate")?;
        let mut seen: Vec<&ObjectIdentifier> = Vec::new();
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            if seen.contains(&&ext.extn_id) {
                return Err("an extension appears twice in the certificate");
            }
            seen.push(&ext.extn_id);
        }
        Ok(Leaf(cert))
    }

    /// The key the certificate certifies, if it is one the signature backends take: P-256
    /// (ES256), RSA (RS256) or Ed25519 (EdDSA).
    pub(super) fn public_key(&self) -> Result<PublicKey, &'static str> {
        let spki = &self.0.tbs_certificate.subject_public_key_info;
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or("certificate key is not a whole number of bytes")?;
        let oid = spki.algorithm.oid;
        if oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            if curve != Some(OID_P256) {
                return Err("certificate key is on a curve other than P-256");
            }
            let key = p256::PublicKey::from_sec1_bytes(bits)
                .map_err(|_| "certificate key is not a P-256 point")?;
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let point = key.to_encoded_point(false);
            let mut out = [0u8; 65];
            out.copy_from_slice(point.as_bytes());
            Ok(PublicKey::Es256(out))
        } else if oid == OID_RSA {
            let key = rsa::pkcs1::RsaPublicKey::from_der(bits)
                .map_err(|_| "certificate RSA key is malformed")?;
            Ok(PublicKey::Rs256 {
                n: key.modulus.as_bytes().to_vec(),
                e: key.public_exponent.as_bytes().to_vec(),
            })
        } else if oid == OID_ED25519 {
            let key: [u8; 32] = bits
                .try_into()
                .map_err(|_| "certificate Ed25519 key is not 32 bytes")?;
            Ok(PublicKey::Ed25519(key))
        } else {
            Err("certificate key type is not supported (P-256, RSA or Ed25519)")
        }
    }

    /// The `packed` attestation certificate requirements (WebAuthn section 8.2.1): version 3;
    /// subject OU "Authenticator Attestation"; Basic Constraints present with CA false; the
    /// AAGUID extension, when present, not critical and equal to the authenticator data's
    /// AAGUID (else a certificate for one model could vouch for a key claiming another).
    pub(super) fn check_packed(&self, aaguid: &[u8; 16]) -> Result<(), &'static str> {
        let tbs = &self.0.tbs_certificate;
        if tbs.version != Version::V3 {
            return Err("attestation certificate is not X.509 version 3");
        }
        let ou_ok = tbs
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .any(|atv| {
                atv.oid == OID_OU
                    && matches!(atv.value.tag(), Tag::Utf8String | Tag::PrintableString)
                    && atv.value.value() == b"Authenticator Attestation"
            });
        if !ou_ok {
            return Err("attestation certificate subject OU is not \"Authenticator Attestation\"");
        }
        let mut basic = None;
        for ext in tbs.extensions.iter().flatten() {
            if ext.extn_id == OID_BASIC_CONSTRAINTS {
                let bc = BasicConstraints::from_der(ext.extn_value.as_bytes())
                    .map_err(|_| "attestation certificate basic constraints are malformed")?;
                basic = Some(bc.ca);
            } else if ext.extn_id == OID_FIDO_AAGUID {
                if ext.critical {
                    return Err("attestation certificate AAGUID extension is marked critical");
                }
                let v = OctetString::from_der(ext.extn_value.as_bytes())
                    .map_err(|_| "attestation certificate AAGUID extension is malformed")?;
                if v.as_bytes() != aaguid {
                    return Err(
                        "attestation certificate AAGUID differs from the authenticator data's",
                    );
                }
            }
        }
        match basic {
            Some(false) => Ok(()),
            Some(true) => Err("attestation certificate is a CA certificate"),
            None => Err("attestation certificate has no basic constraints"),
        }
    }
}
