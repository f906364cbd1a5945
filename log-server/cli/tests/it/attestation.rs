//! The attestation policy end to end: the enrolment page asks for `direct` attestation, a
//! passkey without a verified chain is refused with nothing written, and the enrolment entry
//! records the format, the verification and the root it led to.

use std::sync::Arc;

use base64::Engine;
use countersign_approvals::attestation::AttestationPolicy;
use countersign_testvectors::attestation::{LeafOptions, TestPki};
use countersign_testvectors::{Alg, SoftPasskey};
use countersign_verifier::{flags, AttestationRecord, Entry};
use serde_json::{json, Value};

use crate::common::*;

async fn link(s: &Server, id: &str) -> String {
    let (st, v) = s
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": id, "email": format!("{id}@example.com")}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v["enrolment_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// Starts an enrolment on `token` and finishes it with the attestation object `make` returns
/// for the challenge's clientDataJSON. Returns the start answer and the finish answer.
async fn enrol(
    s: &Server,
    token: &str,
    pk: &SoftPasskey,
    make: impl FnOnce(&[u8]) -> Vec<u8>,
) -> (Value, (u16, Value)) {
    let (st, started) = post_json(
        &s.http,
        &format!("{}/v1/enrol/start", s.url),
        "",
        "",
        &json!({"token": token}),
    )
    .await;
    assert_eq!(st, 200, "{started}");
    let ch = B64URL
        .decode(started["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let cdj = SoftPasskey::client_data_json("webauthn.create", &ch, ORIGIN, false, None);
    let att = make(&cdj);
    let finished = post_json(
        &s.http,
        &format!("{}/v1/enrol/finish", s.url),
        "",
        "",
        &json!({"ceremony_id": started["ceremony_id"], "token": token,
                "credential": pk.registration_json_with(&att, &cdj)}),
    )
    .await;
    (started, finished)
}

async fn logged_enrolment(s: &Server, index: u64) -> countersign_verifier::Enrolment {
    let v = s.get_json(&format!("/v1/log/entries/{index}")).await;
    let bytes = hex::decode(v["entry"].as_str().unwrap()).unwrap();
    assert_eq!(bytes[0], 2, "an enrolment is written as version 2");
    match Entry::decode(&bytes).unwrap() {
        Entry::Enrolment(e) => e,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn under_a_policy_only_an_anchored_attestation_enrols_and_its_root_is_logged() {
    let pki = TestPki::new("Vendor");
    let policy = Arc::new(AttestationPolicy::from_pem_roots(pki.root.pem.as_bytes()).unwrap());
    let s = Server::start_with(|mut c| {
        c.attestation = Some(policy);
        c
    })
    .await;
    let token = link(&s, "apv_att").await;
    let pk = SoftPasskey::new(Alg::Es256, 31, RP_ID);
    let up_uv = flags::UP | flags::UV;

    // none, self attestation, and a chain to another root: refused, nothing logged.
    let other = TestPki::new("Other");
    let stranger = other.leaf(&LeafOptions::good([9; 16]));
    let size = s.tree_size();
    for (make, words) in [
        (
            Box::new(|_: &[u8]| pk.attestation_object_none(up_uv)) as Box<dyn Fn(&[u8]) -> Vec<u8>>,
            "requires a verifiable attestation",
        ),
        (
            Box::new(|c: &[u8]| pk.attestation_object_packed_self(up_uv, c)),
            "requires a verifiable attestation",
        ),
        (
            Box::new(|c: &[u8]| {
                pk.attestation_object_packed_full(
                    up_uv,
                    [9; 16],
                    c,
                    &stranger,
                    &other.chain(&stranger),
                )
            }),
            "does not lead to a trusted root",
        ),
    ] {
        let (started, got) = enrol(&s, &token, &pk, make).await;
        assert_eq!(started["publicKey"]["attestation"], "direct");
        assert_refused("enrolment", &got, 400, "invalid_registration", &[words]);
        assert_eq!(s.tree_size(), size, "nothing is written");
    }

    // A chain to the configured root enrols, and the entry names that root.
    let leaf = pki.leaf(&LeafOptions::good([9; 16]));
    let (_, (st, v)) = enrol(&s, &token, &pk, |c| {
        pk.attestation_object_packed_full(up_uv, [9; 16], c, &leaf, &pki.chain(&leaf))
    })
    .await;
    assert_eq!(st, 201, "{v}");
    let e = logged_enrolment(&s, v["log_index"].as_u64().unwrap()).await;
    assert_eq!(e.attestation_format, "packed");
    assert_eq!(e.aaguid, [9; 16]);
    assert_eq!(
        e.attestation,
        AttestationRecord::Verified {
            trust_anchor: pki.root.fingerprint()
        }
    );
}

#[tokio::test]
async fn without_a_policy_attestation_is_optional_and_logged_as_not_verified() {
    let s = Server::start().await;
    let token = link(&s, "apv_free").await;
    let pk = SoftPasskey::new(Alg::Es256, 32, RP_ID);
    let (started, (st, v)) = enrol(&s, &token, &pk, |_| {
        pk.attestation_object_none(flags::UP | flags::UV)
    })
    .await;
    assert_eq!(started["publicKey"]["attestation"], "none");
    assert_eq!(st, 201, "{v}");
    let e = logged_enrolment(&s, v["log_index"].as_u64().unwrap()).await;
    assert_eq!(e.attestation_format, "none");
    assert_eq!(e.attestation, AttestationRecord::Unverified);
}
