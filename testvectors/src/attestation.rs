//! Attested software authenticators for tests: a generated root, intermediate and attestation
//! leaves (rcgen), `packed` full and `fido-u2f` attestation objects made by a [`SoftPasskey`],
//! and FIDO Metadata Service (MDS3) BLOBs signed by a generated signer. Nothing here is
//! deterministic (rcgen draws fresh keys): these feed tests, not the checked-in vectors.
#![allow(clippy::expect_used)] // test support: a generation failure is a broken test

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};

use crate::passkey::{Alg, SoftPasskey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A certificate and its key.
pub struct Issued {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
    key: KeyPair,
    params: CertificateParams,
}

impl Issued {
    /// SHA-256 of the DER certificate (the trust-anchor fingerprint enrolments record).
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// Signs `message` with the certificate's P-256 key: ASN.1 DER (WebAuthn) or, with
    /// `fixed`, `r || s` (JWS ES256).
    pub fn sign(&self, message: &[u8], fixed: bool) -> Vec<u8> {
        let sk = p256::ecdsa::SigningKey::from_pkcs8_der(&self.key.serialize_der())
            .expect("rcgen P-256 key");
        let sig: p256::ecdsa::Signature = sk.sign(message);
        if fixed {
            sig.to_bytes().to_vec()
        } else {
            sig.to_der().as_bytes().to_vec()
        }
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let issuer = self.params.clone().self_signed(&self.key).expect("issuer");
        let cert = params
            .clone()
            .signed_by(&key, &issuer, &self.key)
            .expect("sign");
        Issued {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
            params,
        }
    }
}

/// What an attestation leaf says.
#[derive(Clone, Debug)]
pub struct LeafOptions {
    /// Subject OU; WebAuthn wants "Authenticator Attestation".
    pub ou: String,
    /// The id-fido-gen-ce-aaguid extension, if any.
    pub aaguid: Option<[u8; 16]>,
    /// Basic Constraints CA true (a leaf must say false).
    pub ca: bool,
    /// Validity, as (year, month, day) pairs.
    pub not_before: (i32, u8, u8),
    /// End of validity.
    pub not_after: (i32, u8, u8),
}

impl LeafOptions {
    /// A leaf that meets WebAuthn section 8.2.1 for `aaguid`, valid 2020 to 2099.
    pub fn good(aaguid: [u8; 16]) -> Self {
        LeafOptions {
            ou: "Authenticator Attestation".into(),
            aaguid: Some(aaguid),
            ca: false,
            not_before: (2020, 1, 1),
            not_after: (2099, 1, 1),
        }
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    p
}

/// A test PKI: a self-signed root and an intermediate under it.
pub struct TestPki {
    /// The root (what an operator configures).
    pub root: Issued,
    /// The intermediate that issues leaves.
    pub intermediate: Issued,
}

impl TestPki {
    /// A fresh root named `name` and its intermediate.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let params = ca_params(&format!("{name} Root"));
        let cert = params.clone().self_signed(&key).expect("root");
        let root = Issued {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key,
            params,
        };
        let intermediate = root.issue(ca_params(&format!("{name} Intermediate")));
        TestPki { root, intermediate }
    }

    /// An attestation leaf issued by the intermediate.
    pub fn leaf(&self, o: &LeafOptions) -> Issued {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CountryName, "SE");
        p.distinguished_name
            .push(DnType::OrganizationName, "Countersign Test Authenticators");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, o.ou.as_str());
        p.distinguished_name
            .push(DnType::CommonName, "Test Attestation");
        p.is_ca = if o.ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p.not_before = rcgen::date_time_ymd(o.not_before.0, o.not_before.1, o.not_before.2);
        p.not_after = rcgen::date_time_ymd(o.not_after.0, o.not_after.1, o.not_after.2);
        if let Some(a) = o.aaguid {
            let mut content = vec![0x04, 0x10];
            content.extend_from_slice(&a);
            p.custom_extensions.push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4],
                content,
            ));
        }
        self.intermediate.issue(p)
    }

    /// The `x5c` chain of `leaf`: leaf, then the intermediate.
    pub fn chain(&self, leaf: &Issued) -> Vec<Vec<u8>> {
        vec![leaf.der.clone(), self.intermediate.der.clone()]
    }
}

fn encode_object(
    fmt: &str,
    stmt: impl FnOnce(&mut minicbor::Encoder<Vec<u8>>),
    auth: &[u8],
) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    let _ = e.map(3).and_then(|e| e.str("fmt")?.str(fmt));
    let _ = e.str("attStmt");
    stmt(&mut e);
    let _ = e.str("authData").and_then(|e| e.bytes(auth));
    e.into_writer()
}

impl SoftPasskey {
    /// A `packed` full attestation: `leaf` signs `authData || SHA-256(clientDataJSON)` with
    /// ES256, and `chain` (leaf first) is the statement's `x5c`.
    pub fn attestation_object_packed_full(
        &self,
        flags_byte: u8,
        aaguid: [u8; 16],
        client_data_json: &[u8],
        leaf: &Issued,
        chain: &[Vec<u8>],
    ) -> Vec<u8> {
        let auth = self.registration_authenticator_data(flags_byte, aaguid);
        let mut signed = auth.clone();
        signed.extend_from_slice(&Sha256::digest(client_data_json));
        let sig = leaf.sign(&signed, false);
        encode_object(
            "packed",
            |e| {
                let _ = e
                    .map(3)
                    .and_then(|e| e.str("alg")?.i8(-7)?.str("sig")?.bytes(&sig)?.str("x5c"))
                    .and_then(|e| e.array(chain.len() as u64));
                for c in chain {
                    let _ = e.bytes(c);
                }
            },
            &auth,
        )
    }

    /// A `fido-u2f` attestation (WebAuthn section 8.6; the passkey must be ES256): `leaf`
    /// signs `0x00 || rpIdHash || SHA-256(clientDataJSON) || credentialId || 0x04 || x || y`.
    pub fn attestation_object_fido_u2f(
        &self,
        flags_byte: u8,
        client_data_json: &[u8],
        leaf: &Issued,
    ) -> Vec<u8> {
        assert_eq!(self.alg(), Alg::Es256, "fido-u2f credentials are P-256");
        let auth = self.registration_authenticator_data(flags_byte, [0; 16]);
        let key = countersign_verifier::parse_cose_key(&self.cose_public_key()).expect("key");
        let countersign_verifier::PublicKey::Es256(point) = key else {
            unreachable!("an ES256 passkey")
        };
        let mut signed = vec![0u8];
        signed.extend_from_slice(&auth[..32]);
        signed.extend_from_slice(&Sha256::digest(client_data_json));
        signed.extend_from_slice(self.credential_id());
        signed.extend_from_slice(&point);
        let sig = leaf.sign(&signed, false);
        encode_object(
            "fido-u2f",
            |e| {
                let _ = e
                    .map(2)
                    .and_then(|e| e.str("sig")?.bytes(&sig)?.str("x5c")?.array(1))
                    .and_then(|e| e.bytes(&leaf.der));
            },
            &auth,
        )
    }

    /// The `PublicKeyCredential` JSON for a registration with this attestation object and
    /// clientDataJSON.
    pub fn registration_json_with(
        &self,
        attestation_object: &[u8],
        client_data_json: &[u8],
    ) -> serde_json::Value {
        serde_json::json!({
            "id": B64URL.encode(self.credential_id()),
            "rawId": B64URL.encode(self.credential_id()),
            "type": "public-key",
            "response": {
                "attestationObject": B64URL.encode(attestation_object),
                "clientDataJSON": B64URL.encode(client_data_json),
            },
        })
    }
}

/// One MDS3 metadata BLOB entry.
#[derive(Clone, Debug)]
pub struct MdsEntry {
    /// The authenticator model (for FIDO2 authenticators).
    pub aaguid: Option<[u8; 16]>,
    /// Subject key identifiers, hex (for U2F authenticators).
    pub key_identifiers: Vec<String>,
    /// `attestationRootCertificates` (DER).
    pub roots: Vec<Vec<u8>>,
    /// Status reports, as (status, effectiveDate).
    pub status: Vec<(String, String)>,
}

/// The AAGUID in the MDS text form (8-4-4-4-12 hex digits).
pub fn aaguid_text(a: &[u8; 16]) -> String {
    let h = hex::encode(a);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// An MDS3 BLOB (a JWS compact serialisation, ES256) over `entries`, signed by `signer` with
/// `x5c` = `chain`.
pub fn mds_blob(signer: &Issued, chain: &[Vec<u8>], entries: &[MdsEntry]) -> String {
    let header = serde_json::json!({
        "alg": "ES256",
        "typ": "JWT",
        "x5c": chain.iter().map(|c| B64.encode(c)).collect::<Vec<_>>(),
    });
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let mut v = serde_json::json!({
                "metadataStatement": {
                    "description": "Countersign test authenticator",
                    "attestationRootCertificates":
                        e.roots.iter().map(|c| B64.encode(c)).collect::<Vec<_>>(),
                },
                "statusReports": e.status.iter().map(|(s, d)| serde_json::json!({
                    "status": s, "effectiveDate": d,
                })).collect::<Vec<_>>(),
                "timeOfLastStatusChange": "2024-01-01",
            });
            if let Some(a) = e.aaguid {
                v["aaguid"] = aaguid_text(&a).into();
            }
            if !e.key_identifiers.is_empty() {
                v["attestationCertificateKeyIdentifiers"] = e.key_identifiers.clone().into();
            }
            v
        })
        .collect();
    let payload = serde_json::json!({
        "legalHeader": "test data",
        "no": 1,
        "nextUpdate": "2099-01-01",
        "entries": entries,
    });
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(payload.to_string())
    );
    let sig = signer.sign(signing_input.as_bytes(), true);
    format!("{signing_input}.{}", B64URL.encode(sig))
}
