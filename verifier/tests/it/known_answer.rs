//! Known-answer tests from public sources, as extracted in `testvectors/known-answer/` (see its
//! README for repositories and commits):
//! - RFC 6962 reference tree: transparency-dev/merkle@417fb0c314750d94e53942e9f92e79b6d35915db
//!   (testonly/constants.go, testdata/inclusion, testdata/consistency);
//! - Go sumdb/note: golang/mod@fe2ec04f7c3c3aa6fad97631aafcff6e49e2d1db (sumdb/note/note_test.go,
//!   sumdb/tlog/note_test.go); C2SP@5ba5ee830903e91240fc6f9f3a7a9293d49e69c9 examples;
//! - W3C WebAuthn Level 3 test vectors: w3c/webauthn@146d0db03cb88e69a8f6f0c3c168221abe73504b.

use base64::Engine;
use countersign_verifier::*;
use serde_json::Value;

use crate::{hexs, load_json};

fn rfc() -> Value {
    load_json("known-answer/rfc6962-c2sp-vectors.json")
}

fn h(v: &Value) -> Option<Hash> {
    Hash::from_hex(v.as_str().unwrap())
}

fn proof(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| h(x).unwrap())
        .collect()
}

#[test]
fn rfc6962_roots_and_nodes() {
    let d = rfc();
    let m = &d["rfc6962_merkle"];
    let leaves: Vec<Hash> = m["leaf_inputs_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| leaf_hash(&hexs(l)))
        .collect();
    for (size, root) in m["roots_hex"].as_object().unwrap() {
        let n: usize = size.parse().unwrap();
        assert_eq!(
            Some(root_from_leaf_hashes(&leaves[..n])),
            h(root),
            "size {n}"
        );
    }
    // Level 0 node hashes are the leaf hashes; each level above pairs the one below.
    let levels = m["node_hashes_by_level_hex"].as_object().unwrap();
    let mut level: Vec<Hash> = leaves.clone();
    for l in 0..levels.len() {
        let want: Vec<Hash> = levels[&l.to_string()]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| h(x).unwrap())
            .collect();
        assert_eq!(level, want, "level {l}");
        if level.len() > 1 {
            level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
    }
}

#[test]
fn rfc6962_inclusion_proofs() {
    let d = rfc();
    let m = &d["rfc6962_merkle"];
    let mut seen = (0, 0);
    for key in ["inclusion_proofs", "negative_inclusion_proofs"] {
        for v in m[key].as_array().unwrap() {
            let valid = v["expect_valid"].as_bool().unwrap();
            let got = match (h(&v["leaf_hash_hex"]), h(&v["root_hex"])) {
                (Some(leaf), Some(root)) => verify_inclusion(
                    &leaf,
                    v["leaf_index"].as_u64().unwrap(),
                    v["tree_size"].as_u64().unwrap(),
                    &proof(&v["proof_hex"]),
                    &root,
                )
                .is_ok(),
                _ => false,
            };
            assert_eq!(got, valid, "{}", v["source"]);
            if valid {
                seen.0 += 1
            } else {
                seen.1 += 1
            }
        }
    }
    assert!(seen.0 >= 5 && seen.1 >= 4, "{seen:?}");
}

#[test]
fn rfc6962_consistency_proofs() {
    let d = rfc();
    let m = &d["rfc6962_merkle"];
    for key in ["consistency_proofs", "negative_consistency_proofs"] {
        for v in m[key].as_array().unwrap() {
            // A root that is not 32 bytes cannot even be stated as a Hash: invalid.
            let got = match (h(&v["root1_hex"]), h(&v["root2_hex"])) {
                (Some(r1), Some(r2)) => verify_consistency(
                    v["size1"].as_u64().unwrap(),
                    v["size2"].as_u64().unwrap(),
                    &r1,
                    &r2,
                    &proof(&v["proof_hex"]),
                )
                .is_ok(),
                _ => false,
            };
            assert_eq!(got, v["expect_valid"].as_bool().unwrap(), "{}", v["source"]);
        }
    }
}

fn go() -> Value {
    rfc()["signed_note"]["go_sumdb_vectors"].clone()
}

fn key(name: &str) -> VerifierKey {
    VerifierKey::parse(go()["verifier_keys"][name].as_str().unwrap()).unwrap()
}

#[test]
fn go_note_verifier_keys() {
    let g = go();
    for name in ["PeterNeumann", "EnochRoot"] {
        let k = key(name);
        assert_eq!(
            format!("{:08x}", k.id()),
            g["key_ids_hex"][name].as_str().unwrap()
        );
        assert_eq!(k.to_vkey(), g["verifier_keys"][name].as_str().unwrap());
    }
    for bad in g["bad_verifier_keys"].as_array().unwrap() {
        assert!(VerifierKey::parse(bad.as_str().unwrap()).is_err(), "{bad}");
    }
    let p = &rfc()["signed_note"]["production_vkey_example"];
    let k = VerifierKey::parse(p["vkey"].as_str().unwrap()).unwrap();
    assert_eq!(
        format!("{:08x}", k.id()),
        p["key_id_recomputed"].as_str().unwrap()
    );
}

#[test]
fn go_note_open() {
    let g = go();
    let peter_only = g["signed_note_peter_only"].as_str().unwrap();
    let both = g["signed_note_both"].as_str().unwrap();
    let (p, e) = (key("PeterNeumann"), key("EnochRoot"));

    let n = Note::parse(peter_only.as_bytes()).unwrap();
    assert_eq!(n.text(), g["note_text"].as_str().unwrap());
    let v = n.verify(std::slice::from_ref(&p)).unwrap();
    assert_eq!(v.len(), 1);

    let n = Note::parse(both.as_bytes()).unwrap();
    assert_eq!(
        n.verify(std::slice::from_ref(&p)).unwrap().len(),
        1,
        "unknown EnochRoot ignored"
    );
    assert_eq!(n.verify(&[p.clone(), e]).unwrap().len(), 2);
    assert_eq!(n.verify(&[]), Err(NoteError::NoVerifiedSignature));

    // 101 signature lines: Go caps at 100.
    let line = g["signature_lines"]["PeterNeumann"].as_str().unwrap();
    let many = format!("{}\n{}", g["note_text"].as_str().unwrap(), line.repeat(101));
    assert_eq!(
        Note::parse(many.as_bytes()),
        Err(NoteError::TooManySignatures)
    );

    // "ABCD" inserted at character 60 of Peter's line: a known key's bad signature.
    let idx = peter_only.find(line).unwrap();
    let mut chars: Vec<char> = line.chars().collect();
    chars.splice(60..60, "ABCD".chars());
    let tampered = format!(
        "{}{}",
        &peter_only[..idx],
        chars.into_iter().collect::<String>()
    );
    let err = Note::parse(tampered.as_bytes()).and_then(|n| n.verify(std::slice::from_ref(&p)));
    assert_eq!(
        err,
        Err(NoteError::BadSignature {
            key: "PeterNeumann+c74f20a3".into()
        })
    );
}

#[test]
fn go_note_sign_is_byte_identical() {
    let g = go();
    // PRIVATE+KEY+<name>+<hex id>+base64(0x01 || seed): split on '+' at most 4 times.
    let sk = g["signer_key_PeterNeumann"].as_str().unwrap();
    let parts: Vec<&str> = sk.splitn(5, '+').collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(parts[4])
        .unwrap();
    assert_eq!(raw[0], 1);
    let seed: [u8; 32] = raw[1..].try_into().unwrap();
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let vk = VerifierKey::ed25519("PeterNeumann", signing.verifying_key().to_bytes()).unwrap();
    assert_eq!(vk, key("PeterNeumann"));
    let mut n = Note::new(g["note_text"].as_str().unwrap()).unwrap();
    use ed25519_dalek::Signer;
    let sig = signing.sign(n.text().as_bytes());
    n.push_signature(NoteSignature {
        name: "PeterNeumann".into(),
        key_id: vk.id(),
        signature: sig.to_bytes().to_vec(),
    })
    .unwrap();
    assert_eq!(n.to_text(), g["signed_note_peter_only"].as_str().unwrap());
}

#[test]
fn c2sp_examples() {
    let d = rfc();
    let ex = &d["signed_note"]["c2sp_example"];
    let k = VerifierKey::parse(ex["vkey"].as_str().unwrap()).unwrap();
    Note::parse(ex["note"].as_str().unwrap().as_bytes())
        .unwrap()
        .verify(&[k])
        .unwrap();

    let t = &d["checkpoints"]["go_sumdb_tree_note"];
    let c = Checkpoint::parse(t["text"].as_str().unwrap()).unwrap();
    assert_eq!(c.size, t["tree_size"].as_u64().unwrap());
    assert_eq!(Some(c.root), h(&t["root_hex"]));
    assert_eq!(c.root, leaf_hash(b"hello world"));

    let cp = &d["checkpoints"]["c2sp_checkpoint_example"];
    let body = cp["body"].as_str().unwrap();
    assert_eq!(Checkpoint::parse(body).unwrap().to_text(), body);
    let note = format!("{body}\n{}", cp["signature_line"].as_str().unwrap());
    let n = Note::parse(note.as_bytes()).unwrap();
    assert_eq!(n.signatures()[0].name, "example.com/behind-the-sofa");

    // A cosignature line parses to key ID || timestamp || signature.
    let cs = &d["checkpoints"]["c2sp_cosigned_checkpoint_example"];
    let note = format!("{body}\n{}", cs["cosignature_line"].as_str().unwrap());
    let n = Note::parse(note.as_bytes()).unwrap();
    let s = &n.signatures()[0];
    assert_eq!(
        format!("{:08x}", s.key_id),
        cs["decoded"]["key_id_hex"].as_str().unwrap()
    );
    assert_eq!(
        u64::from_be_bytes(s.signature[..8].try_into().unwrap()),
        cs["decoded"]["timestamp"].as_u64().unwrap()
    );
    assert_eq!(s.signature.len() - 8, 64);
}

fn webauthn() -> Value {
    load_json("known-answer/webauthn-l3-vectors.json")
}

#[test]
fn webauthn_l3_assertions() {
    let d = webauthn();
    let origin = d["conventions"]["origin"].as_str().unwrap();
    let rp_id = d["conventions"]["rp_id"].as_str().unwrap();
    let mut checked = 0;
    for v in d["vectors"].as_array().unwrap() {
        let id = v["id"].as_str().unwrap();
        let dv = &v["derived"];
        let cose = hexs(&dv["credential_public_key_cose_hex"]);
        let reg = AuthenticatorData::parse(&hexs(&dv["registration_authData_hex"]));
        let alg = dv["cose_alg"].as_i64().unwrap();
        let key = match parse_cose_key(&cose) {
            Ok(k) => k,
            Err(e) => {
                assert!(![-7, -8, -257].contains(&alg), "{id}: {e}");
                assert_eq!(e, CoseKeyError::Unsupported, "{id}");
                assert_eq!(
                    reg,
                    Err(AssertionError::PublicKey(CoseKeyError::Unsupported)),
                    "{id}"
                );
                continue;
            }
        };
        // The registration authData carries the same key in its attested credential data.
        let reg = reg.unwrap();
        let att = reg.attested_credential.as_ref().unwrap();
        assert_eq!(att.public_key_cose, cose, "{id}");
        assert_eq!(att.public_key, key, "{id}");
        assert_eq!(
            att.credential_id,
            hexs(&v["registration"]["credential_id"]["hex"]),
            "{id}"
        );

        let a = &v["authentication"];
        let authn = hexs(&a["authenticatorData"]["hex"]);
        let cdj = hexs(&a["clientDataJSON"]["hex"]);
        let mut sig = hexs(&a["signature"]["hex"]);
        let challenge = hexs(&a["challenge"]["hex"]);
        let policy = AssertionPolicy {
            rp_id,
            allowed_origins: &[origin],
            require_user_verification: false,
            stored_sign_count: None,
        };
        let framed = id.contains("crossOrigin") || id.contains("topOrigin");
        for backend in backends() {
            let r = verify_assertion_with(
                backend,
                &key,
                &Assertion {
                    authenticator_data: &authn,
                    client_data_json: &cdj,
                    signature: &sig,
                },
                &challenge,
                &policy,
            );
            if framed {
                assert_eq!(r, Err(AssertionError::CrossOrigin), "{id}");
            } else {
                let ok = r.unwrap_or_else(|e| panic!("{id} {backend:?}: {e}"));
                assert_eq!(
                    ok.user_verified(),
                    dv["authentication_flags"].as_u64().unwrap() & 4 != 0
                );
                let uv = verify_assertion_with(
                    backend,
                    &key,
                    &Assertion {
                        authenticator_data: &authn,
                        client_data_json: &cdj,
                        signature: &sig,
                    },
                    &challenge,
                    &AssertionPolicy {
                        require_user_verification: true,
                        ..policy.clone()
                    },
                );
                assert_eq!(uv.is_err(), !ok.user_verified(), "{id}");
            }
            // Signature over the same data, last byte flipped.
            let last = sig.len() - 1;
            sig[last] ^= 1;
            let r =
                verify_signature_with(backend, &key, &[&authn[..], &sha256(&cdj)].concat(), &sig);
            assert!(!r, "{id}");
            sig[last] ^= 1;
            assert!(
                verify_signature_with(backend, &key, &[&authn[..], &sha256(&cdj)].concat(), &sig),
                "{id}"
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked, 12,
        "the ES256, RS256 and EdDSA vectors (ES384, ES512, Ed448 are unsupported)"
    );
}

pub fn backends() -> Vec<Backend> {
    #[allow(unused_mut)]
    let mut b = vec![Backend::Pure];
    #[cfg(feature = "fast")]
    b.push(Backend::Ring);
    b
}

#[test]
fn webauthn_project_vector_binds_the_payload() {
    let d = webauthn();
    let p = &d["project_generated_vectors"][0];
    let key = parse_cose_key(&hexs(&p["credential_public_key_cose_hex"])).unwrap();
    let nonce: [u8; 32] = hexs(&p["nonce_hex"]).try_into().unwrap();
    let payload_hash = sha256(p["payload_utf8"].as_str().unwrap().as_bytes());
    let c = challenge(&nonce, &payload_hash);
    assert_eq!(hex::encode(c), p["challenge_hex"].as_str().unwrap());
    let authn = hexs(&p["authenticatorData_hex"]);
    let cdj = hexs(&p["clientDataJSON_hex"]);
    let sig = hexs(&p["signature_hex"]);
    let policy = AssertionPolicy {
        rp_id: p["rp_id"].as_str().unwrap(),
        allowed_origins: &[p["origin"].as_str().unwrap()],
        require_user_verification: true,
        stored_sign_count: Some(6),
    };
    let a = Assertion {
        authenticator_data: &authn,
        client_data_json: &cdj,
        signature: &sig,
    };
    for backend in backends() {
        let ok = verify_assertion_with(backend, &key, &a, &c, &policy).unwrap();
        assert_eq!(ok.sign_count, 7);
        let other =
            sha256(b"{\"action\":\"wire_transfer\",\"amount_usd\":500001,\"to\":\"Vendor X\"}");
        assert_eq!(
            verify_assertion_with(backend, &key, &a, &challenge(&nonce, &other), &policy),
            Err(AssertionError::ChallengeMismatch)
        );
        assert!(matches!(
            verify_assertion_with(
                backend,
                &key,
                &a,
                &c,
                &AssertionPolicy {
                    stored_sign_count: Some(7),
                    ..policy.clone()
                }
            ),
            Err(AssertionError::SignCountNotIncreased {
                stored: 7,
                received: 7
            })
        ));
    }
}

#[test]
fn webauthn_l3_registrations() {
    let d = webauthn();
    let origin = d["conventions"]["origin"].as_str().unwrap();
    let rp_id = d["conventions"]["rp_id"].as_str().unwrap();
    let policy = RegistrationPolicy {
        rp_id,
        allowed_origins: &[origin],
        require_user_verification: false,
        aaguid_allowlist: None,
    };
    let mut seen = std::collections::BTreeMap::new();
    for v in d["vectors"].as_array().unwrap() {
        let id = v["id"].as_str().unwrap();
        let r = &v["registration"];
        let ao = hexs(&r["attestationObject"]["hex"]);
        let cdj = hexs(&r["clientDataJSON"]["hex"]);
        let challenge = hexs(&r["challenge"]["hex"]);
        let got = verify_registration(&ao, &cdj, &challenge, &policy);
        let alg = v["derived"]["cose_alg"].as_i64().unwrap();
        let framed = id.contains("crossOrigin") || id.contains("topOrigin");
        if ![-7, -8, -257].contains(&alg) {
            assert_eq!(
                got,
                Err(RegistrationError::Ceremony(AssertionError::PublicKey(
                    CoseKeyError::Unsupported
                ))),
                "{id}"
            );
            continue;
        }
        if framed {
            assert_eq!(
                got,
                Err(RegistrationError::Ceremony(AssertionError::CrossOrigin)),
                "{id}"
            );
            continue;
        }
        let c = got.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            c.public_key_cose,
            hexs(&v["derived"]["credential_public_key_cose_hex"]),
            "{id}"
        );
        assert_eq!(c.aaguid.to_vec(), hexs(&r["aaguid"]["hex"]), "{id}");
        assert_eq!(
            c.attestation_format,
            v["derived"]["attestation_fmt"].as_str().unwrap(),
            "{id}"
        );
        *seen.entry(format!("{:?}", c.trust)).or_insert(0) += 1;
        // Wrong challenge, origin and RP ID are refused.
        assert_eq!(
            verify_registration(&ao, &cdj, &[0u8; 32], &policy),
            Err(RegistrationError::Ceremony(
                AssertionError::ChallengeMismatch
            ))
        );
        assert!(verify_registration(
            &ao,
            &cdj,
            &challenge,
            &RegistrationPolicy {
                rp_id: "example.com",
                ..policy.clone()
            }
        )
        .is_err());
        let allow = [[0u8; 16]];
        assert_eq!(
            verify_registration(
                &ao,
                &cdj,
                &challenge,
                &RegistrationPolicy {
                    aaguid_allowlist: Some(&allow),
                    ..policy.clone()
                }
            ),
            Err(RegistrationError::AaguidNotAllowed),
            "{id}"
        );
        // Truncated attestation objects never panic and are refused.
        for cut in [0, 1, ao.len() / 2, ao.len() - 1] {
            assert!(verify_registration(&ao[..cut], &cdj, &challenge, &policy).is_err());
        }
    }
    assert!(seen.get("None").copied().unwrap_or(0) >= 2, "{seen:?}");
    assert!(
        seen.get("SelfAttested").copied().unwrap_or(0) >= 1,
        "{seen:?}"
    );
    assert!(
        seen.get("Unverified").copied().unwrap_or(0) >= 1,
        "{seen:?}"
    );
}
