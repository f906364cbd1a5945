//! Registrations built byte by byte (an Ed25519 credential), each broken in one place.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alloc::format;
use alloc::string::ToString;
use alloc::vec;

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};

use super::*;

const RP: &str = "approve.example.test";
const ORIGIN: &str = "https://approve.example.test";
const CHALLENGE: &[u8] = b"sixteen byte chl";
const AAGUID: [u8; 16] = [0x42; 16];

fn sk() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// A CBOR head: major type and argument.
fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        _ => {
            let mut v = vec![m | 25];
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v
        }
    }
}
fn tstr(s: &str) -> Vec<u8> {
    [head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
}
fn bstr(b: &[u8]) -> Vec<u8> {
    [head(2, b.len() as u64), b.to_vec()].concat()
}
fn neg(n: i64) -> Vec<u8> {
    head(1, (-1 - n) as u64)
}

/// COSE_Key of the Ed25519 credential (RFC 9053: kty OKP, alg EdDSA, crv Ed25519, x).
fn cose_key() -> Vec<u8> {
    [
        head(5, 4),
        head(0, 1),
        head(0, 1),
        head(0, 3),
        neg(-8),
        neg(-1),
        head(0, 6),
        neg(-2),
        bstr(&sk().verifying_key().to_bytes()),
    ]
    .concat()
}

fn auth_data(flags_byte: u8, credential_id: &[u8]) -> Vec<u8> {
    let mut a = sha256(RP.as_bytes()).to_vec();
    a.push(flags_byte);
    a.extend_from_slice(&7u32.to_be_bytes());
    if flags_byte & flags::AT != 0 {
        a.extend_from_slice(&AAGUID);
        a.extend_from_slice(&(credential_id.len() as u16).to_be_bytes());
        a.extend_from_slice(credential_id);
        a.extend_from_slice(&cose_key());
    }
    a
}

fn client_data(type_: &str) -> Vec<u8> {
    let c = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(CHALLENGE);
    format!(r#"{{"type":"{type_}","challenge":"{c}","origin":"{ORIGIN}"}}"#).into_bytes()
}

/// `{fmt, attStmt, authData}` from already encoded parts.
fn attestation(fmt_: &str, stmt: &[u8], auth: &[u8]) -> Vec<u8> {
    [
        head(5, 3),
        tstr("fmt"),
        tstr(fmt_),
        tstr("attStmt"),
        stmt.to_vec(),
        tstr("authData"),
        bstr(auth),
    ]
    .concat()
}

/// A packed self attestation over `auth` and the client data.
fn packed_stmt(alg: i64, auth: &[u8], cd: &[u8]) -> Vec<u8> {
    let mut signed = auth.to_vec();
    signed.extend_from_slice(&sha256(cd));
    let sig = sk().sign(&signed).to_bytes();
    [head(5, 2), tstr("alg"), neg(alg), tstr("sig"), bstr(&sig)].concat()
}

const UP_UV_AT: u8 = flags::UP | flags::UV | flags::AT;

fn policy() -> RegistrationPolicy<'static> {
    RegistrationPolicy {
        rp_id: RP,
        allowed_origins: &[ORIGIN],
        require_user_verification: true,
        aaguid_allowlist: None,
    }
}

fn check(att: &[u8]) -> Result<RegisteredCredential, RegistrationError> {
    verify_registration(att, &client_data("webauthn.create"), CHALLENGE, &policy())
}

#[test]
fn none_and_packed_self_attestation_register_the_credential() {
    let auth = auth_data(UP_UV_AT, b"cred-1");
    let got = check(&attestation("none", &[0xa0], &auth)).unwrap();
    assert_eq!(got.credential_id, b"cred-1");
    assert_eq!(got.public_key_cose, cose_key());
    assert_eq!(got.aaguid, AAGUID);
    assert_eq!(got.attestation_format, "none");
    assert_eq!(got.trust, AttestationTrust::None);
    assert_eq!((got.flags, got.sign_count), (UP_UV_AT, 7));

    let cd = client_data("webauthn.create");
    let got = check(&attestation("packed", &packed_stmt(-8, &auth, &cd), &auth)).unwrap();
    assert_eq!(got.trust, AttestationTrust::SelfAttested);

    // A chain is checked (tests/it/attestation.rs); one that is not a certificate is refused.
    let x5c = [
        head(5, 3),
        tstr("alg"),
        neg(-7),
        tstr("sig"),
        bstr(b"sig"),
        tstr("x5c"),
        head(4, 1),
        bstr(b"cert"),
    ]
    .concat();
    assert_eq!(
        check(&attestation("packed", &x5c, &auth)),
        Err(RegistrationError::BadCertificate(
            "not a DER X.509 certificate"
        ))
    );
    // Another well-formed format name is accepted unchecked.
    let got = check(&attestation("android-key", &[0xa0], &auth)).unwrap();
    assert_eq!(got.trust, AttestationTrust::Unverified);
    assert_eq!(got.attestation_format, "android-key");
}

#[test]
fn the_attestation_statement_must_hold() {
    let auth = auth_data(UP_UV_AT, b"cred-1");
    let cd = client_data("webauthn.create");

    let e = check(&attestation("none", &[0xa1, 0x61, b'x', 0x00], &auth)).unwrap_err();
    assert_eq!(
        e,
        RegistrationError::BadAttestation("none with a non-empty statement")
    );
    assert_eq!(
        e.to_string(),
        "attestation statement does not hold: none with a non-empty statement"
    );

    // ES256 claimed for an EdDSA credential.
    let e = check(&attestation("packed", &packed_stmt(-7, &auth, &cd), &auth)).unwrap_err();
    assert_eq!(
        e,
        RegistrationError::BadAttestation(
            "self attestation algorithm differs from the credential's"
        )
    );

    // Signed over other authenticator data.
    let other = auth_data(UP_UV_AT, b"cred-2");
    let e = check(&attestation("packed", &packed_stmt(-8, &other, &cd), &auth)).unwrap_err();
    assert_eq!(
        e,
        RegistrationError::BadAttestation("self attestation signature does not verify")
    );

    let no_sig = [head(5, 2), tstr("alg"), neg(-8), tstr("ext"), head(0, 1)].concat();
    let e = check(&attestation("packed", &no_sig, &auth)).unwrap_err();
    assert_eq!(
        e,
        RegistrationError::BadAttestation("packed statement without alg or sig")
    );

    for (stmt, why) in [
        (
            [head(5, 1), head(0, 1), head(0, 1)].concat(),
            "attStmt member name",
        ),
        ([head(5, 1), tstr("alg"), tstr("x")].concat(), "attStmt alg"),
        (
            [head(5, 1), tstr("sig"), head(0, 1)].concat(),
            "attStmt sig",
        ),
    ] {
        assert_eq!(
            check(&attestation("packed", &stmt, &auth)),
            Err(RegistrationError::AttestationObjectMalformed(why)),
            "{why}"
        );
    }

    for bad in ["", "Packed", "fmt with spaces", &"x".repeat(33)] {
        assert_eq!(
            check(&attestation(bad, &[0xa0], &auth)),
            Err(RegistrationError::AttestationObjectMalformed(
                "fmt is not a known format name"
            )),
            "{bad:?}"
        );
    }
}

#[test]
fn the_attestation_object_must_be_the_three_member_map() {
    use RegistrationError::AttestationObjectMalformed as M;
    let auth = auth_data(UP_UV_AT, b"cred-1");
    let good = attestation("none", &[0xa0], &auth);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (tstr("fmt"), "not a CBOR map"),
        (vec![0xbf, 0xff], "indefinite-length map"),
        (head(5, 9), "too many members"),
        (
            [head(5, 1), head(0, 1), head(0, 1)].concat(),
            "member name is not a text string",
        ),
        (
            [head(5, 1), tstr("fmt"), head(0, 1)].concat(),
            "fmt is not a text string",
        ),
        (
            [head(5, 1), tstr("authData"), tstr("x")].concat(),
            "authData is not a byte string",
        ),
        (
            [head(5, 1), tstr("attStmt"), head(4, 0)].concat(),
            "attStmt is not a map",
        ),
        (
            [head(5, 1), tstr("attStmt"), head(5, 1)].concat(),
            "attStmt is not well-formed CBOR",
        ),
        (
            [head(5, 1), tstr("other"), vec![0x5f]].concat(),
            "not well-formed CBOR",
        ),
        (
            [
                head(5, 2),
                tstr("fmt"),
                tstr("none"),
                tstr("fmt"),
                tstr("none"),
            ]
            .concat(),
            "fmt given twice",
        ),
        (
            [
                head(5, 2),
                tstr("authData"),
                bstr(&auth),
                tstr("authData"),
                bstr(&auth),
            ]
            .concat(),
            "authData given twice",
        ),
        (
            [
                head(5, 2),
                tstr("attStmt"),
                vec![0xa0],
                tstr("attStmt"),
                vec![0xa0],
            ]
            .concat(),
            "attStmt given twice",
        ),
        ([good.clone(), vec![0]].concat(), "trailing bytes"),
        (
            [
                head(5, 2),
                tstr("fmt"),
                tstr("none"),
                tstr("attStmt"),
                vec![0xa0],
            ]
            .concat(),
            "fmt, attStmt or authData missing",
        ),
    ];
    for (bytes, why) in cases {
        let e = check(&bytes).unwrap_err();
        assert_eq!(e, M(why), "{why}");
        assert_eq!(
            e.to_string(),
            format!("malformed attestation object: {why}")
        );
    }
    // Unknown members are skipped.
    let mut extra = [head(5, 4), tstr("zzz"), head(0, 1)].concat();
    extra.extend_from_slice(&good[1..]);
    check(&extra).unwrap();

    let big = vec![0u8; MAX_ATTESTATION_OBJECT_BYTES + 1];
    let e = check(&big).unwrap_err();
    assert_eq!(e, RegistrationError::TooLarge);
    assert_eq!(
        e.to_string(),
        format!("attestation object is larger than {MAX_ATTESTATION_OBJECT_BYTES} bytes")
    );
}

#[test]
fn the_ceremony_and_authenticator_data_are_checked() {
    let att = |flags_byte, id: &[u8]| attestation("none", &[0xa0], &auth_data(flags_byte, id));

    let e = verify_registration(
        &att(UP_UV_AT, b"c"),
        &client_data("webauthn.get"),
        CHALLENGE,
        &policy(),
    )
    .unwrap_err();
    assert_eq!(e, RegistrationError::Ceremony(AssertionError::WrongType));
    assert_eq!(e.to_string(), AssertionError::WrongType.to_string());
    assert_eq!(
        verify_registration(
            &att(UP_UV_AT, b"c"),
            &client_data("webauthn.create"),
            b"another challenge",
            &policy()
        ),
        Err(RegistrationError::Ceremony(
            AssertionError::ChallengeMismatch
        ))
    );

    let other_rp = RegistrationPolicy {
        rp_id: "other.test",
        ..policy()
    };
    assert_eq!(
        verify_registration(
            &att(UP_UV_AT, b"c"),
            &client_data("webauthn.create"),
            CHALLENGE,
            &other_rp
        ),
        Err(RegistrationError::Ceremony(
            AssertionError::RpIdHashMismatch
        ))
    );
    assert_eq!(
        check(&att(flags::UV | flags::AT, b"c")),
        Err(RegistrationError::Ceremony(AssertionError::UserNotPresent))
    );
    assert_eq!(
        check(&att(flags::UP | flags::AT, b"c")),
        Err(RegistrationError::Ceremony(AssertionError::UserNotVerified))
    );
    assert_eq!(
        check(&att(UP_UV_AT | flags::BS, b"c")),
        Err(RegistrationError::Ceremony(
            AssertionError::InvalidBackupFlags
        ))
    );
    // Backed up and eligible is fine.
    check(&att(UP_UV_AT | flags::BS | flags::BE, b"c")).unwrap();

    let e = check(&att(flags::UP | flags::UV, b"c")).unwrap_err();
    assert_eq!(e, RegistrationError::NoCredential);
    assert_eq!(
        e.to_string(),
        "authenticator data carries no attested credential data"
    );
    assert_eq!(
        check(&att(UP_UV_AT, b"")),
        Err(RegistrationError::NoCredential)
    );
}

#[test]
fn the_aaguid_allowlist_is_enforced() {
    let att = attestation("none", &[0xa0], &auth_data(UP_UV_AT, b"c"));
    let cd = client_data("webauthn.create");
    let only_other = [[1u8; 16]];
    let p = RegistrationPolicy {
        aaguid_allowlist: Some(&only_other),
        ..policy()
    };
    let e = verify_registration(&att, &cd, CHALLENGE, &p).unwrap_err();
    assert_eq!(e, RegistrationError::AaguidNotAllowed);
    assert_eq!(
        e.to_string(),
        "this authenticator model (AAGUID) is not on the allowlist, or no attestation \
         certificate vouches for it"
    );
    // Listed, but only claimed (no certificate): refused too. A certified AAGUID that is
    // listed passes (tests/it/attestation.rs).
    let both = [[1u8; 16], AAGUID];
    let p = RegistrationPolicy {
        aaguid_allowlist: Some(&both),
        ..policy()
    };
    assert_eq!(
        verify_registration(&att, &cd, CHALLENGE, &p),
        Err(RegistrationError::AaguidNotAllowed)
    );
}
