//! The attestation policy against generated PKIs, MDS BLOBs and attested software
//! authenticators.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign_testvectors::attestation::{mds_blob, LeafOptions, MdsEntry, TestPki};
use countersign_testvectors::{Alg, SoftPasskey};
use countersign_verifier::{flags, verify_registration, RegistrationPolicy};

use super::*;

const RP: &str = "approve.example.test";
const ORIGIN: &str = "https://approve.example.test";
const AAGUID: [u8; 16] = [0x5a; 16];
const UP_UV: u8 = flags::UP | flags::UV;

fn now() -> UnixTime {
    UnixTime::now()
}

fn cdj() -> Vec<u8> {
    SoftPasskey::client_data_json("webauthn.create", &[1; 32], ORIGIN, false, None)
}

fn register(att: &[u8]) -> RegisteredCredential {
    verify_registration(
        att,
        &cdj(),
        &[1; 32],
        &RegistrationPolicy {
            rp_id: RP,
            allowed_origins: &[ORIGIN],
            require_user_verification: true,
            aaguid_allowlist: None,
        },
    )
    .unwrap()
}

fn packed(pki: &TestPki, opts: &LeafOptions) -> RegisteredCredential {
    let leaf = pki.leaf(opts);
    let pk = SoftPasskey::new(Alg::Es256, 1, RP);
    register(&pk.attestation_object_packed_full(UP_UV, AAGUID, &cdj(), &leaf, &pki.chain(&leaf)))
}

fn u2f(pki: &TestPki) -> RegisteredCredential {
    let leaf = pki.leaf(&LeafOptions::good(AAGUID));
    let pk = SoftPasskey::new(Alg::Es256, 2, RP);
    // A U2F token holds one certificate, issued here by the root itself... through the
    // intermediate, which the statement cannot carry: so the test PKI's intermediate is the
    // configured root for U2F.
    register(&pk.attestation_object_fido_u2f(UP_UV, &cdj(), &leaf))
}

#[test]
fn a_chain_to_a_pem_root_is_accepted_with_the_root_fingerprint() {
    let pki = TestPki::new("Vendor");
    let policy = AttestationPolicy::from_pem_roots(pki.root.pem.as_bytes()).unwrap();
    let reg = packed(&pki, &LeafOptions::good(AAGUID));
    assert_eq!(policy.check(&reg, now()), Ok(pki.root.fingerprint()));

    // fido-u2f: one certificate, issued by the intermediate, configured as a root.
    let policy = AttestationPolicy::from_pem_roots(pki.intermediate.pem.as_bytes()).unwrap();
    assert_eq!(
        policy.check(&u2f(&pki), now()),
        Ok(pki.intermediate.fingerprint())
    );
}

#[test]
fn chains_to_other_roots_and_expired_leaves_are_refused() {
    let pki = TestPki::new("Vendor");
    let other = TestPki::new("Other");
    let policy = AttestationPolicy::from_pem_roots(other.root.pem.as_bytes()).unwrap();
    let e = policy
        .check(&packed(&pki, &LeafOptions::good(AAGUID)), now())
        .unwrap_err();
    assert!(matches!(e, AttestationRefused::NotAnchored(_)), "{e}");
    assert!(
        e.to_string().contains("does not lead to a trusted root"),
        "{e}"
    );

    let policy = AttestationPolicy::from_pem_roots(pki.root.pem.as_bytes()).unwrap();
    let expired = LeafOptions {
        not_before: (2015, 1, 1),
        not_after: (2019, 1, 1),
        ..LeafOptions::good(AAGUID)
    };
    let e = policy.check(&packed(&pki, &expired), now()).unwrap_err();
    assert!(
        matches!(&e, AttestationRefused::NotAnchored(w) if w.contains("Expired")),
        "{e:?}"
    );
}

#[test]
fn none_self_and_unverifiable_formats_are_refused_under_a_policy() {
    let pki = TestPki::new("Vendor");
    let policy = AttestationPolicy::from_pem_roots(pki.root.pem.as_bytes()).unwrap();
    let pk = SoftPasskey::new(Alg::Es256, 3, RP);
    let none = register(&pk.attestation_object_none(UP_UV));
    let selfa = register(&pk.attestation_object_packed_self(UP_UV, &cdj()));
    let mut tpm = pk.attestation_object_none(UP_UV);
    // "none" -> "tpm\0"... rewrite the fmt text string: 0x64 'none' -> 0x63 'tpm'.
    let pos = tpm.windows(5).position(|w| w == b"\x64none").unwrap();
    tpm.splice(pos..pos + 5, *b"\x63tpm");
    let tpm = register(&tpm);
    for (reg, fmt) in [(none, "none"), (selfa, "packed"), (tpm, "tpm")] {
        let e = policy.check(&reg, now()).unwrap_err();
        assert_eq!(e, AttestationRefused::NotCertified { format: fmt.into() });
        assert!(e.to_string().contains("requires a verifiable attestation"));
    }
}

fn mds_policy(pki: &TestPki, mds: &TestPki, entries: &[MdsEntry]) -> AttestationPolicy {
    let signer = mds.leaf(&LeafOptions::good([0; 16]));
    let blob = mds_blob(&signer, &mds.chain(&signer), entries);
    let _ = pki;
    let mut p = AttestationPolicy::default();
    p.load_mds(blob.as_bytes(), mds.root.pem.as_bytes(), now())
        .unwrap();
    p
}

fn entry(roots: &[&TestPki], status: &[(&str, &str)]) -> MdsEntry {
    MdsEntry {
        aaguid: Some(AAGUID),
        key_identifiers: vec![],
        roots: roots.iter().map(|p| p.root.der.clone()).collect(),
        status: status
            .iter()
            .map(|(s, d)| (s.to_string(), d.to_string()))
            .collect(),
    }
}

#[test]
fn mds_roots_anchor_their_model_and_status_reports_are_honoured() {
    let pki = TestPki::new("Vendor");
    let mds = TestPki::new("FIDO MDS");
    let reg = packed(&pki, &LeafOptions::good(AAGUID));

    let p = mds_policy(
        &pki,
        &mds,
        &[entry(&[&pki], &[("FIDO_CERTIFIED_L1", "2021-01-01")])],
    );
    assert_eq!(p.check(&reg, now()), Ok(pki.root.fingerprint()));

    // The latest report counts, whatever the order of the list.
    for status in [
        vec![
            ("REVOKED", "2024-05-01"),
            ("FIDO_CERTIFIED_L1", "2021-01-01"),
        ],
        vec![
            ("FIDO_CERTIFIED_L1", "2021-01-01"),
            ("USER_VERIFICATION_BYPASS", "2023-01-01"),
        ],
    ] {
        let p = mds_policy(&pki, &mds, &[entry(&[&pki], &status)]);
        let e = p.check(&reg, now()).unwrap_err();
        assert!(matches!(e, AttestationRefused::Status(_)), "{e:?}");
        assert!(e.to_string().contains("metadata status is"), "{e}");
    }
    let p = mds_policy(
        &pki,
        &mds,
        &[entry(
            &[&pki],
            &[("REVOKED", "2020-01-01"), ("FIDO_CERTIFIED", "2022-01-01")],
        )],
    );
    assert!(p.check(&reg, now()).is_ok());

    // A model the BLOB does not list, or listed with another root, has no anchor.
    let mut elsewhere = entry(&[&pki], &[]);
    elsewhere.aaguid = Some([1; 16]);
    let p = mds_policy(&pki, &mds, &[elsewhere]);
    assert!(matches!(
        p.check(&reg, now()),
        Err(AttestationRefused::NotAnchored(_))
    ));
    let other = TestPki::new("Other");
    let p = mds_policy(&pki, &mds, &[entry(&[&other], &[])]);
    assert!(matches!(
        p.check(&reg, now()),
        Err(AttestationRefused::NotAnchored(_))
    ));

    // FIDO certification, when required.
    let mut p = mds_policy(
        &pki,
        &mds,
        &[entry(&[&pki], &[("NOT_FIDO_CERTIFIED", "2021-01-01")])],
    );
    assert!(p.check(&reg, now()).is_ok());
    p.require_fido_certified(true);
    assert_eq!(
        p.check(&reg, now()),
        Err(AttestationRefused::NotFidoCertified(Some(
            "NOT_FIDO_CERTIFIED".into()
        )))
    );
}

#[test]
fn a_u2f_model_is_found_by_its_key_identifier() {
    let pki = TestPki::new("U2F vendor");
    let mds = TestPki::new("FIDO MDS");
    let reg = u2f(&pki);
    let ski = subject_key_identifier(&reg.attestation_chain[0]).unwrap();
    let e = MdsEntry {
        aaguid: None,
        key_identifiers: vec![ski.to_uppercase()],
        roots: vec![pki.intermediate.der.clone()],
        status: vec![("REVOKED".into(), "2024-01-01".into())],
    };
    let p = mds_policy(&pki, &mds, &[e]);
    assert_eq!(
        p.check(&reg, now()),
        Err(AttestationRefused::Status("REVOKED".into()))
    );
}

#[test]
fn an_mds_blob_must_be_signed_by_a_chain_to_the_configured_root() {
    let mds = TestPki::new("FIDO MDS");
    let signer = mds.leaf(&LeafOptions::good([0; 16]));
    let blob = mds_blob(&signer, &mds.chain(&signer), &[]);
    let mut p = AttestationPolicy::default();
    assert_eq!(
        p.load_mds(blob.as_bytes(), mds.root.pem.as_bytes(), now()),
        Ok(Some("2099-01-01".into()))
    );

    // One payload byte changed.
    let mut parts: Vec<String> = blob.split('.').map(String::from).collect();
    let mut payload = B64URL.decode(&parts[1]).unwrap();
    let i = payload.len() - 3;
    payload[i] ^= 1;
    parts[1] = B64URL.encode(&payload);
    let tampered = parts.join(".");
    let e = p
        .load_mds(tampered.as_bytes(), mds.root.pem.as_bytes(), now())
        .unwrap_err();
    assert!(e.0.contains("signature does not verify"), "{e}");

    // Signed by a chain to another root.
    let other = TestPki::new("Not FIDO");
    let e = p
        .load_mds(blob.as_bytes(), other.root.pem.as_bytes(), now())
        .unwrap_err();
    assert!(e.0.contains("signing certificate chain"), "{e}");

    // A leaf that signs but is not the x5c leaf.
    let impostor = other.leaf(&LeafOptions::good([0; 16]));
    let forged = mds_blob(&impostor, &mds.chain(&signer), &[]);
    let e = p
        .load_mds(forged.as_bytes(), mds.root.pem.as_bytes(), now())
        .unwrap_err();
    assert!(e.0.contains("signature does not verify"), "{e}");
}

#[test]
fn bad_pem_roots_are_refused() {
    assert!(AttestationPolicy::from_pem_roots(b"").is_err());
    assert!(AttestationPolicy::from_pem_roots(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    .is_err());
}
