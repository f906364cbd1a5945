//! Attestation statement formats (spec/webauthn.md A-rules): `packed` full and self and
//! `fido-u2f`, made by software authenticators under a generated PKI, each broken in one place.

use countersign_testvectors::attestation::{LeafOptions, TestPki};
use countersign_testvectors::{Alg, SoftPasskey};
use countersign_verifier::{
    flags, verify_registration, AttestationTrust, RegistrationError, RegistrationPolicy,
};

const RP: &str = "approve.example.test";
const ORIGIN: &str = "https://approve.example.test";
const CHALLENGE: [u8; 32] = [5; 32];
const AAGUID: [u8; 16] = [0xa5; 16];
const UP_UV: u8 = flags::UP | flags::UV;

fn cdj() -> Vec<u8> {
    SoftPasskey::client_data_json("webauthn.create", &CHALLENGE, ORIGIN, false, None)
}

fn policy() -> RegistrationPolicy<'static> {
    RegistrationPolicy {
        rp_id: RP,
        allowed_origins: &[ORIGIN],
        require_user_verification: true,
        aaguid_allowlist: None,
    }
}

fn check(att: &[u8]) -> Result<countersign_verifier::RegisteredCredential, RegistrationError> {
    verify_registration(att, &cdj(), &CHALLENGE, &policy())
}

#[test]
fn packed_full_attestation_verifies_and_returns_the_chain() {
    let pki = TestPki::new("Packed");
    let leaf = pki.leaf(&LeafOptions::good(AAGUID));
    let pk = SoftPasskey::new(Alg::EdDsa, 1, RP);
    let att = pk.attestation_object_packed_full(UP_UV, AAGUID, &cdj(), &leaf, &pki.chain(&leaf));
    let got = check(&att).unwrap();
    assert_eq!(got.trust, AttestationTrust::Certificate);
    assert_eq!(got.attestation_chain, pki.chain(&leaf));
    assert_eq!(got.attestation_format, "packed");
    assert_eq!(got.aaguid, AAGUID);

    // The allowlist is honoured for a certified AAGUID.
    let list = [AAGUID];
    let p = RegistrationPolicy {
        aaguid_allowlist: Some(&list),
        ..policy()
    };
    verify_registration(&att, &cdj(), &CHALLENGE, &p).unwrap();

    // A leaf without the AAGUID extension is fine (the extension is optional).
    let leaf = pki.leaf(&LeafOptions {
        aaguid: None,
        ..LeafOptions::good(AAGUID)
    });
    let att = pk.attestation_object_packed_full(
        UP_UV,
        AAGUID,
        &cdj(),
        &leaf,
        std::slice::from_ref(&leaf.der),
    );
    assert_eq!(check(&att).unwrap().trust, AttestationTrust::Certificate);
}

#[test]
fn packed_full_attestation_is_refused_when_broken() {
    let pki = TestPki::new("Packed");
    let pk = SoftPasskey::new(Alg::Es256, 2, RP);
    let good = pki.leaf(&LeafOptions::good(AAGUID));

    // Signed over other client data.
    let att = pk.attestation_object_packed_full(
        UP_UV,
        AAGUID,
        b"{}",
        &good,
        std::slice::from_ref(&good.der),
    );
    assert_eq!(
        check(&att).unwrap_err(),
        RegistrationError::BadAttestation("attestation signature does not verify")
    );

    // The certificate names another model than the authenticator data.
    let att = pk.attestation_object_packed_full(
        UP_UV,
        [1; 16],
        &cdj(),
        &good,
        std::slice::from_ref(&good.der),
    );
    let e = check(&att).unwrap_err();
    assert_eq!(
        e,
        RegistrationError::BadCertificate(
            "attestation certificate AAGUID differs from the authenticator data's"
        )
    );
    assert_eq!(
        e.to_string(),
        "attestation certificate refused: attestation certificate AAGUID differs from the \
         authenticator data's"
    );

    for (opts, why) in [
        (
            LeafOptions {
                ou: "Something Else".into(),
                ..LeafOptions::good(AAGUID)
            },
            "attestation certificate subject OU is not \"Authenticator Attestation\"",
        ),
        (
            LeafOptions {
                ca: true,
                ..LeafOptions::good(AAGUID)
            },
            "attestation certificate is a CA certificate",
        ),
    ] {
        let leaf = pki.leaf(&opts);
        let att = pk.attestation_object_packed_full(
            UP_UV,
            AAGUID,
            &cdj(),
            &leaf,
            std::slice::from_ref(&leaf.der),
        );
        assert_eq!(
            check(&att).unwrap_err(),
            RegistrationError::BadCertificate(why)
        );
    }

    // Not a certificate at all.
    let att = pk.attestation_object_packed_full(UP_UV, AAGUID, &cdj(), &good, &[b"cert".to_vec()]);
    assert_eq!(
        check(&att).unwrap_err(),
        RegistrationError::BadCertificate("not a DER X.509 certificate")
    );
}

#[test]
fn fido_u2f_attestation_verifies_and_is_refused_when_broken() {
    let pki = TestPki::new("U2F");
    // Two leaves of the same DER length, so that the splice below keeps the CBOR byte string's
    // length right (an ECDSA signature's DER length varies by a byte or two with its random
    // values; among 20 leaves, of at most 5 lengths, two always share one).
    let leaves: Vec<_> = (0..20)
        .map(|_| pki.leaf(&LeafOptions::good(AAGUID)))
        .collect();
    let (i, j) = (0..leaves.len())
        .flat_map(|i| (i + 1..leaves.len()).map(move |j| (i, j)))
        .find(|&(i, j)| leaves[i].der.len() == leaves[j].der.len())
        .expect("two of 20 leaves share a DER length");
    let (leaf, other) = (&leaves[i], &leaves[j]);
    let pk = SoftPasskey::new(Alg::Es256, 3, RP);
    let att = pk.attestation_object_fido_u2f(UP_UV, &cdj(), leaf);
    let got = check(&att).unwrap();
    assert_eq!(got.trust, AttestationTrust::Certificate);
    assert_eq!(got.attestation_format, "fido-u2f");
    assert_eq!(got.attestation_chain, vec![leaf.der.clone()]);

    let bad = pk.attestation_object_fido_u2f(UP_UV, b"{}", leaf);
    assert_eq!(
        check(&bad).unwrap_err(),
        RegistrationError::BadAttestation("attestation signature does not verify")
    );
    // Another leaf than the one that signed.
    let mut swapped = pk.attestation_object_fido_u2f(UP_UV, &cdj(), leaf);
    let pos = swapped
        .windows(leaf.der.len())
        .position(|w| w == leaf.der)
        .unwrap();
    swapped.splice(pos..pos + leaf.der.len(), other.der.iter().copied());
    assert_eq!(
        check(&swapped).unwrap_err(),
        RegistrationError::BadAttestation("attestation signature does not verify")
    );
}

/// `{fmt, attStmt, authData}` with attStmt given as raw CBOR.
fn object(fmt: &str, stmt: &[u8], auth: &[u8]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.map(3).unwrap().str("fmt").unwrap().str(fmt).unwrap();
    e.str("attStmt").unwrap();
    let mut v = e.into_writer();
    v.extend_from_slice(stmt);
    let mut e = minicbor::Encoder::new(v);
    e.str("authData").unwrap().bytes(auth).unwrap();
    e.into_writer()
}

#[test]
fn a_duplicated_key_anywhere_in_the_attestation_object_is_refused() {
    let pk = SoftPasskey::new(Alg::Es256, 4, RP);
    let auth = pk.registration_authenticator_data(UP_UV, AAGUID);
    let mut signed = auth.clone();
    signed.extend_from_slice(&countersign_verifier::sha256(&cdj()));
    let sig = pk.sign_raw(&signed);
    let stmt = |members: &[(&str, i64, &[u8])]| {
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(members.len() as u64).unwrap();
        for (k, alg, sig) in members {
            e.str(k).unwrap();
            if *k == "alg" {
                e.i64(*alg).unwrap();
            } else {
                e.bytes(sig).unwrap();
            }
        }
        e.into_writer()
    };
    // A valid self attestation, then the same with `alg` and `sig` repeated: a decoder keeping
    // the last would read the second pair.
    let good = stmt(&[("alg", -7, &[]), ("sig", 0, &sig)]);
    assert_eq!(
        check(&object("packed", &good, &auth)).unwrap().trust,
        AttestationTrust::SelfAttested
    );
    let dup_alg = stmt(&[("alg", -7, &[]), ("sig", 0, &sig), ("alg", -257, &[])]);
    let dup_sig = stmt(&[("alg", -7, &[]), ("sig", 0, b"junk"), ("sig", 0, &sig)]);
    for s in [dup_alg, dup_sig] {
        assert_eq!(
            check(&object("packed", &s, &auth)).unwrap_err(),
            RegistrationError::AttestationObjectMalformed("a map key appears twice")
        );
    }
    // In any format, and nested: a duplicated key inside an unknown member's map.
    let nested = [&[0xa1, 0x63][..], b"ext", &[0xa2, 0x01, 0x00, 0x01, 0x00]].concat();
    assert_eq!(
        check(&object("tpm", &nested, &auth)).unwrap_err(),
        RegistrationError::AttestationObjectMalformed("a map key appears twice")
    );
    // At the top level, in a member the verifier does not read.
    let mut top = object("none", &[0xa0], &auth);
    top[0] = 0xa5;
    top.extend_from_slice(&[0x61, b'z', 0x00, 0x61, b'z', 0x01]);
    assert_eq!(
        check(&top).unwrap_err(),
        RegistrationError::AttestationObjectMalformed("a map key appears twice")
    );
    // Indefinite-length maps are not CTAP2 canonical CBOR either.
    let indef = [&[0xa1, 0x63][..], b"ext", &[0xbf, 0x01, 0x00, 0xff]].concat();
    assert_eq!(
        check(&object("tpm", &indef, &auth)).unwrap_err(),
        RegistrationError::AttestationObjectMalformed("indefinite-length map or array")
    );
}

#[test]
fn an_allowlist_is_not_satisfied_by_an_uncertified_aaguid() {
    let pk = SoftPasskey::new(Alg::Es256, 5, RP);
    let list = [[7u8; 16]];
    let p = RegistrationPolicy {
        aaguid_allowlist: Some(&list),
        ..policy()
    };
    // Self attestation claims AAGUID 07..07, which is listed, but nothing certifies it.
    let att = pk.attestation_object_packed_self(UP_UV, &cdj());
    assert_eq!(
        verify_registration(&att, &cdj(), &CHALLENGE, &p).unwrap_err(),
        RegistrationError::AaguidNotAllowed
    );
}
