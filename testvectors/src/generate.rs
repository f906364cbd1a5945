//! The vector generator. Everything is derived from fixed seeds, so the output is identical on
//! every run; `tests` checks that the files under `testvectors/` are what this code makes.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use countersign_verifier::{
    consistency_proof_ranges, flags, inclusion_proof_ranges, leaf_hash, root_from_leaf_hashes,
    Checkpoint, Decision, Enrolment, Entry, EvidenceBundle, Hash, LoggedEntry, Note, NoteSignature,
    RelyingParty, Revocation, SignedDecision, Statement, VerifierKey,
};
use ed25519_dalek::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::passkey::{Alg, AssertOptions, SoftPasskey};

/// The relying party all generated assertions are for.
pub const RP_ID: &str = "approve.countersign.test";
/// The approval page origin.
pub const ORIGIN: &str = "https://approve.countersign.test";
/// The generated log's origin (and checkpoint key name).
pub const LOG_ORIGIN: &str = "countersign.test/log";
/// Seed of the generated log's Ed25519 key.
pub const LOG_KEY_SEED: [u8; 32] = [0x11; 32];

/// Relative path -> pretty JSON text.
pub type Files = BTreeMap<String, String>;

pub(crate) fn put(files: &mut Files, path: String, v: Value) {
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    files.insert(path, s);
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// All vectors.
pub fn generate() -> Files {
    let mut f = Files::new();
    trees(&mut f);
    checkpoints(&mut f);
    policies(&mut f);
    entries(&mut f);
    assertions(&mut f);
    statements(&mut f);
    bundles(&mut f);
    revocations(&mut f);
    crate::approval_policies::approval_policies(&mut f);
    crate::quorum::entries(&mut f);
    crate::quorum::statements(&mut f);
    crate::quorum::bundles(&mut f);
    crate::quorum::revocations(&mut f);
    f
}

fn leaf_inputs(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("countersign test leaf {i}").into_bytes())
        .collect()
}

pub(crate) fn range_hashes(
    leaves: &[Hash],
    ranges: &[countersign_verifier::LeafRange],
) -> Vec<String> {
    ranges
        .iter()
        .map(|r| root_from_leaf_hashes(&leaves[r.start as usize..r.end as usize]).to_hex())
        .collect()
}

fn flip_hex(h: &str, bit: usize) -> String {
    let mut b = hex::decode(h).unwrap_or_default();
    if !b.is_empty() {
        let i = (bit / 8) % b.len();
        b[i] ^= 1 << (bit % 8);
    }
    hex::encode(b)
}

fn trees(f: &mut Files) {
    let inputs = leaf_inputs(70);
    let leaves: Vec<Hash> = inputs.iter().map(|l| leaf_hash(l)).collect();
    let root = |n: u64| root_from_leaf_hashes(&leaves[..n as usize]).to_hex();
    for (index, size) in [
        (0u64, 1u64),
        (0, 2),
        (5, 8),
        (6, 7),
        (12, 13),
        (31, 64),
        (40, 70),
        (69, 70),
    ] {
        let Ok(ranges) = inclusion_proof_ranges(index, size) else {
            continue;
        };
        let proof = range_hashes(&leaves, &ranges);
        let base = json!({
            "leaf": hex::encode(&inputs[index as usize]),
            "leaf_hash": leaves[index as usize].to_hex(),
            "index": index, "tree_size": size, "root": root(size), "proof": proof,
        });
        let name = format!("inclusion/valid-{index}-of-{size}.json");
        let mut v = base.clone();
        v["description"] = json!(format!("inclusion of leaf {index} in a tree of {size}"));
        v["expected"] = json!("valid");
        v["flags"] = json!([]);
        put(f, name, v);
        let mut muts: Vec<(&str, Value, &str)> = Vec::new();
        muts.push((
            "wrong-root",
            json!({"root": flip_hex(&root(size), 3)}),
            "does not lead to the expected root",
        ));
        muts.push(("wrong-leaf", json!({"leaf": hex::encode(b"not the leaf"), "leaf_hash": leaf_hash(b"not the leaf").to_hex()}), "does not lead to the expected root"));
        muts.push((
            "index-beyond-size",
            json!({"index": size}),
            "not smaller than the tree size",
        ));
        if !proof.is_empty() {
            let mut p = proof.clone();
            p[0] = flip_hex(&p[0], 77);
            muts.push((
                "bit-flip-proof",
                json!({"proof": p}),
                "does not lead to the expected root",
            ));
            let mut p = proof.clone();
            p.pop();
            muts.push(("truncated-proof", json!({"proof": p}), "too few hashes"));
            if proof.len() > 1 {
                let mut p = proof.clone();
                p.swap(0, 1);
                muts.push((
                    "swapped-proof-hashes",
                    json!({"proof": p}),
                    "does not lead to the expected root",
                ));
            }
        }
        let mut p = proof.clone();
        p.push(root(size));
        muts.push(("extended-proof", json!({"proof": p}), "too many hashes"));
        for (flag, change, err) in muts {
            let mut v = base.clone();
            if let (Some(o), Value::Object(c)) = (v.as_object_mut(), change) {
                o.extend(c);
            }
            v["description"] = json!(format!(
                "inclusion of leaf {index} in a tree of {size}, {flag}"
            ));
            v["expected"] = json!("invalid");
            v["flags"] = json!([flag]);
            v["error"] = json!(err);
            put(f, format!("inclusion/{flag}-{index}-of-{size}.json"), v);
        }
    }
    for (old, new) in [
        (1u64, 1u64),
        (1, 8),
        (3, 7),
        (4, 8),
        (6, 8),
        (13, 70),
        (64, 70),
        (0, 5),
    ] {
        let Ok(ranges) = consistency_proof_ranges(old, new) else {
            continue;
        };
        let proof = range_hashes(&leaves, &ranges);
        let base = json!({"old_size": old, "new_size": new, "old_root": root(old), "new_root": root(new), "proof": proof});
        let mut v = base.clone();
        v["description"] = json!(format!("consistency from {old} to {new}"));
        v["expected"] = json!("valid");
        v["flags"] = json!([]);
        put(f, format!("consistency/valid-{old}-to-{new}.json"), v);
        let mut muts: Vec<(&str, Value, &str)> = Vec::new();
        if old < new && old > 0 {
            muts.push((
                "swapped-roots",
                json!({"old_root": root(new), "new_root": root(old)}),
                "reproduce",
            ));
            muts.push((
                "wrong-old-root",
                json!({"old_root": flip_hex(&root(old), 9)}),
                "does not reproduce the",
            ));
            muts.push((
                "wrong-new-root",
                json!({"new_root": flip_hex(&root(new), 9)}),
                "does not reproduce the new root",
            ));
            let mut p = proof.clone();
            let last = p.len() - 1;
            p[last] = flip_hex(&p[last], 200);
            muts.push(("bit-flip-proof", json!({"proof": p}), "reproduce"));
            let mut p = proof.clone();
            p.pop();
            muts.push(("truncated-proof", json!({"proof": p}), "too few hashes"));
            let mut p = proof.clone();
            p.push(root(new));
            muts.push(("extended-proof", json!({"proof": p}), "too many hashes"));
        }
        muts.push((
            "old-larger-than-new",
            json!({"old_size": new + 1, "old_root": root(new)}),
            "old tree size is larger",
        ));
        for (flag, change, err) in muts {
            let mut v = base.clone();
            if let (Some(o), Value::Object(c)) = (v.as_object_mut(), change) {
                o.extend(c);
            }
            v["description"] = json!(format!("consistency from {old} to {new}, {flag}"));
            v["expected"] = json!("invalid");
            v["flags"] = json!([flag]);
            v["error"] = json!(err);
            put(f, format!("consistency/{flag}-{old}-to-{new}.json"), v);
        }
    }
}

/// The generated log's signing key.
pub fn log_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&LOG_KEY_SEED)
}

/// The generated log's verifier key.
pub fn log_vkey() -> VerifierKey {
    match VerifierKey::ed25519(LOG_ORIGIN, log_signing_key().verifying_key().to_bytes()) {
        Ok(k) => k,
        Err(_) => unreachable!("LOG_ORIGIN is a valid key name"),
    }
}

pub(crate) fn sign_note(text: &str, key: &ed25519_dalek::SigningKey, vkey: &VerifierKey) -> String {
    let Ok(mut n) = Note::new(text) else {
        return String::new();
    };
    let sig = key.sign(text.as_bytes()).to_bytes().to_vec();
    let _ = n.push_signature(NoteSignature {
        name: vkey.name().to_owned(),
        key_id: vkey.id(),
        signature: sig,
    });
    n.to_text()
}

/// `note` (a signed note whose text is `body`) with a `cosignature/v1` line added by the witness key
/// named `name` (Ed25519 seed bytes all `seed`) at time `ts`; and that witness's verifier key.
pub fn cosign(note: &str, body: &str, name: &str, seed: u8, ts: u64) -> (String, String) {
    let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let Ok(vk) = VerifierKey::cosignature(name, k.verifying_key().to_bytes()) else {
        return (String::new(), String::new());
    };
    let msg = countersign_verifier::cosignature_message(ts, body);
    let mut sig = ts.to_be_bytes().to_vec();
    sig.extend_from_slice(&k.sign(msg.as_bytes()).to_bytes());
    let line = NoteSignature {
        name: name.to_owned(),
        key_id: vk.id(),
        signature: sig,
    }
    .to_line();
    (format!("{note}{line}"), vk.to_vkey())
}

/// C2SP tlog-policy vectors: the specification's two-level example (2 of X1-X3 and any of
/// Y1-Y3) over a checkpoint of the test log, cosigned by various witnesses; and policies that
/// break the specification's rules.
fn policies(f: &mut Files) {
    let key = log_signing_key();
    let vkey = log_vkey();
    let body = Checkpoint {
        origin: LOG_ORIGIN.into(),
        size: 70,
        root: root_from_leaf_hashes(
            &leaf_inputs(70)
                .iter()
                .map(|l| leaf_hash(l))
                .collect::<Vec<_>>(),
        ),
        extensions: vec![],
    }
    .to_text();
    let note = sign_note(&body, &key, &vkey);
    // Witness i of the example: name, key name, seed.
    let witnesses = [
        ("X1", "x1.witness.test", 0x31u8),
        ("X2", "x2.witness.test", 0x32),
        ("X3", "x3.witness.test", 0x33),
        ("Y1", "y1.witness.test", 0x41),
        ("Y2", "y2.witness.test", 0x42),
        ("Y3", "y3.witness.test", 0x43),
    ];
    let wkey = |seed: u8, name: &str| {
        let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        VerifierKey::cosignature(name, k.verifying_key().to_bytes())
            .map(|v| v.to_vkey())
            .unwrap_or_default()
    };
    let mut example = format!(
        "# c2sp.org/tlog-policy, \"Example policy\"\nlog {}\n\n",
        vkey.to_vkey()
    );
    for (i, (n, kn, seed)) in witnesses.iter().enumerate() {
        example.push_str(&format!("witness {n} {}\n", wkey(*seed, kn)));
        if i == 2 {
            example.push_str("group X-witnesses 2 X1 X2 X3\n\n");
        }
    }
    example.push_str("group Y-witnesses any Y1 Y2 Y3\n\ngroup X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n");
    let cosigned_by = |names: &[&str]| {
        let mut n = note.clone();
        for (name, kn, seed) in &witnesses {
            if names.contains(name) {
                n = cosign(&n, &body, kn, *seed, 1_700_000_000).0;
            }
        }
        n
    };
    let mk = |desc: &str, policy: &str, note: &str, err: Option<(&str, &str)>| {
        let mut v = json!({
            "description": desc,
            "policy": policy,
            "note": note,
            "expected": if err.is_some() { "invalid" } else { "valid" },
            "flags": err.map(|(flag, _)| vec![flag]).unwrap_or_default(),
        });
        if let Some((_, e)) = err {
            v["error"] = json!(e);
        }
        v
    };
    let cases = [
        (
            "valid-example-quorum-met",
            mk("the specification's example policy; cosigned by X1, X3 and Y2 (two X, one Y)", &example, &cosigned_by(&["X1", "X3", "Y2"]), None),
        ),
        (
            "valid-example-all-cosigned",
            mk("the example policy; cosigned by all six witnesses", &example, &cosigned_by(&["X1", "X2", "X3", "Y1", "Y2", "Y3"]), None),
        ),
        (
            "invalid-example-one-x",
            mk("the example policy; cosigned by X1 and all Y: one X short", &example, &cosigned_by(&["X1", "Y1", "Y2", "Y3"]), Some(("quorum-not-met", "quorum is not met"))),
        ),
        (
            "invalid-example-no-y",
            mk("the example policy; cosigned by all X and no Y", &example, &cosigned_by(&["X1", "X2", "X3"]), Some(("quorum-not-met", "quorum is not met"))),
        ),
        (
            "invalid-example-bad-cosignature",
            mk(
                "the example policy; X2's cosignature is over another checkpoint (a bad signature by a known key rejects the note)",
                &example,
                &{
                    let other = body.replace("\n70\n", "\n71\n");
                    let mut n = cosigned_by(&["X1", "Y2"]);
                    let (with_bad, _) = cosign("", &other, "x2.witness.test", 0x32, 1_700_000_000);
                    n.push_str(&with_bad);
                    n
                },
                Some(("bit-flip-cosignature", "checkpoint signature")),
            ),
        ),
        (
            "valid-quorum-none",
            mk("quorum none: the log's signature alone", &format!("log {}\nquorum none\n", vkey.to_vkey()), &note, None),
        ),
        (
            "invalid-unknown-log",
            mk(
                "the policy lists another log only",
                &format!("log {}\nquorum none\n", VerifierKey::ed25519("other.test/log", [9; 32]).map(|k| k.to_vkey()).unwrap_or_default()),
                &note,
                Some(("unknown-log", "no (single) log")),
            ),
        ),
        (
            "invalid-policy-threshold",
            mk("a group threshold larger than its members", &format!("log {}\nwitness A {}\ngroup g 2 A\nquorum g\n", vkey.to_vkey(), wkey(0x31, "a.test")), &note, Some(("bad-threshold", "policy line 3"))),
        ),
        (
            "invalid-policy-forward-reference",
            mk("a group naming a witness defined after it", &format!("group g any A\nwitness A {}\nquorum g\n", wkey(0x31, "a.test")), &note, Some(("forward-reference", "policy line 1"))),
        ),
        (
            "invalid-policy-duplicate-key",
            mk("two witnesses with one public key", &format!("witness A {}\nwitness B {}\nquorum A\n", wkey(0x31, "a.test"), wkey(0x31, "b.test")), &note, Some(("duplicate-key", "policy line 2"))),
        ),
        (
            "invalid-policy-no-quorum",
            mk("no quorum line", &format!("log {}\n", vkey.to_vkey()), &note, Some(("no-quorum", "no quorum line"))),
        ),
        (
            "invalid-policy-none-member",
            mk("none as a group member", &format!("witness A {}\ngroup g any A none\nquorum g\n", wkey(0x31, "a.test")), &note, Some(("none-member", "policy line 2"))),
        ),
    ];
    for (name, v) in cases {
        put(f, format!("policies/{name}.json"), v);
    }
}

/// The unsigned checkpoint body of the generated log's tree of `leaves`.
pub(crate) fn checkpoint_body(leaves: &[Hash]) -> String {
    Checkpoint {
        origin: LOG_ORIGIN.into(),
        size: leaves.len() as u64,
        root: root_from_leaf_hashes(leaves),
        extensions: vec![],
    }
    .to_text()
}

fn checkpoints(f: &mut Files) {
    let key = log_signing_key();
    let vkey = log_vkey();
    let leaves: Vec<Hash> = leaf_inputs(70).iter().map(|l| leaf_hash(l)).collect();
    let body = checkpoint_body(&leaves);
    let note = sign_note(&body, &key, &vkey);
    let mk = |desc: &str,
              note: &str,
              keys: Vec<String>,
              expected: &str,
              flag: Option<&str>,
              err: Option<&str>| {
        let mut v = json!({"description": desc, "note": note, "keys": keys, "expected": expected, "flags": flag.map(|x| vec![x]).unwrap_or_default()});
        if let Some(e) = err {
            v["error"] = json!(e);
        }
        v
    };
    put(
        f,
        "checkpoints/valid.json".into(),
        mk(
            "a checkpoint signed by the log key",
            &note,
            vec![vkey.to_vkey()],
            "valid",
            None,
            None,
        ),
    );
    let (cosigned, wkey) = cosign(
        &note,
        &body,
        "witness.countersign.test/w1",
        0x22,
        1_700_000_000,
    );
    put(
        f,
        "checkpoints/valid-cosigned.json".into(),
        mk(
            "a checkpoint with a cosignature/v1 witness signature, checked with both keys",
            &cosigned,
            vec![vkey.to_vkey(), wkey.clone()],
            "valid",
            None,
            None,
        ),
    );
    put(
        f,
        "checkpoints/valid-unknown-witness-ignored.json".into(),
        mk(
            "a cosigned checkpoint checked with the log key only: the unknown witness is ignored",
            &cosigned,
            vec![vkey.to_vkey()],
            "valid",
            None,
            None,
        ),
    );
    // Tamper: body, signature, key.
    let tampered = note.replacen("\n70\n", "\n71\n", 1);
    put(
        f,
        "checkpoints/tampered-size.json".into(),
        mk(
            "tree size changed after signing",
            &tampered,
            vec![vkey.to_vkey()],
            "invalid",
            Some("tampered-body"),
            Some("invalid signature"),
        ),
    );
    let mut lines: Vec<String> = note.split_inclusive('\n').map(str::to_owned).collect();
    if let Some(last) = lines.last_mut() {
        let sig_b64 = last
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_owned();
        use base64::Engine;
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&sig_b64)
            .unwrap_or_default();
        if raw.len() > 10 {
            raw[10] ^= 0x01;
        }
        *last = last.replace(
            &sig_b64,
            &base64::engine::general_purpose::STANDARD.encode(raw),
        );
    }
    put(
        f,
        "checkpoints/bit-flip-signature.json".into(),
        mk(
            "one bit of the signature flipped",
            &lines.concat(),
            vec![vkey.to_vkey()],
            "invalid",
            Some("bit-flip-signature"),
            Some("invalid signature"),
        ),
    );
    let other = ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]);
    let other_v = VerifierKey::ed25519(LOG_ORIGIN, other.verifying_key().to_bytes())
        .unwrap_or_else(|_| vkey.clone());
    put(
        f,
        "checkpoints/wrong-key.json".into(),
        mk(
            "signed by another key under the log's name",
            &sign_note(&body, &other, &other_v),
            vec![vkey.to_vkey()],
            "invalid",
            Some("wrong-key"),
            Some("no signature from any of the given keys"),
        ),
    );
    let (bad_cosig, _) = cosign(
        &note,
        &body.replacen("70", "69", 1),
        "witness.countersign.test/w1",
        0x22,
        1_700_000_000,
    );
    put(
        f,
        "checkpoints/bad-witness-signature.json".into(),
        mk(
            "a known witness's cosignature over another checkpoint rejects the note",
            &bad_cosig,
            vec![vkey.to_vkey(), wkey],
            "invalid",
            Some("bad-cosignature"),
            Some("invalid signature"),
        ),
    );
    put(
        f,
        "checkpoints/no-blank-line.json".into(),
        mk(
            "signature not separated by a blank line",
            &note.replacen("\n\n", "\n", 1),
            vec![vkey.to_vkey()],
            "invalid",
            Some("malformed"),
            Some("malformed signed note"),
        ),
    );
    put(
        f,
        "checkpoints/missing-final-newline.json".into(),
        mk(
            "last signature line without its newline",
            note.trim_end(),
            vec![vkey.to_vkey()],
            "invalid",
            Some("malformed"),
            Some("malformed signed note"),
        ),
    );
}

fn okp_cose() -> Vec<u8> {
    SoftPasskey::new(Alg::EdDsa, 1, RP_ID).cose_public_key()
}

fn entries(f: &mut Files) {
    let pk = SoftPasskey::new(Alg::EdDsa, 1, RP_ID);
    let enrol = Entry::Enrolment(Enrolment {
        approver_id: "apv_7f3a9c".into(),
        credential_id: pk.credential_id().to_vec(),
        public_key: pk.cose_public_key(),
        aaguid: [0; 16],
        attestation_format: "none".into(),
        attestation: countersign_verifier::AttestationRecord::NotRecorded,
        time_ms: 1_767_225_600_000,
    });
    let mut pk2 = SoftPasskey::new(Alg::EdDsa, 1, RP_ID);
    let nonce = [0x42u8; 32];
    let sh: [u8; 32] = Sha256::digest(b"example statement").into();
    let a = pk2.assert(&countersign_verifier::challenge(&nonce, &sh), ORIGIN);
    let dec = Entry::Decision(SignedDecision {
        decision: Decision::Approve,
        statement_hash: sh,
        nonce,
        approver_id: "apv_7f3a9c".into(),
        credential_id: pk.credential_id().to_vec(),
        public_key: pk.cose_public_key(),
        authenticator_data: a.authenticator_data,
        client_data_json: a.client_data_json,
        signature: a.signature,
        time_ms: 1_767_225_660_000,
        enrolment_index: 0,
    });
    let rev = Entry::Revocation(Revocation {
        approver_id: "apv_7f3a9c".into(),
        credential_id: pk.credential_id().to_vec(),
        enrolment_index: 0,
        reason: "lost".into(),
        time_ms: 1_767_312_000_000,
    });
    for (name, e) in [
        ("enrolment", &enrol),
        ("decision", &dec),
        ("revocation", &rev),
    ] {
        let Ok(bytes) = e.encode() else { continue };
        put(
            f,
            format!("entries/valid-{name}.json"),
            json!({
                "description": format!("a canonical {name} entry"),
                "entry": hex::encode(&bytes), "leaf_hash": leaf_hash(&bytes).to_hex(),
                "kind": name, "expected": "valid", "flags": [],
            }),
        );
    }
    let Ok(base) = enrol.encode() else { return };
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "version"),
        ("truncated", base[..base.len() - 1].to_vec(), "truncated"),
        (
            "trailing-bytes",
            [&base[..], &[0]].concat(),
            "after its last field",
        ),
        (
            "unknown-version",
            [&[3u8][..], &base[1..]].concat(),
            "version",
        ),
        (
            "unknown-kind",
            [&base[..1], &[9u8][..], &base[2..]].concat(),
            "unknown entry kind",
        ),
    ];
    let mut bad_id = base.clone();
    bad_id[3] = b' ';
    cases.push(("space-in-approver-id", bad_id, "approver_id"));
    let e2 = Entry::Enrolment(Enrolment {
        public_key: vec![0xa0],
        ..match &enrol {
            Entry::Enrolment(e) => e.clone(),
            _ => unreachable!(),
        }
    });
    // Encode refuses it; build the bytes by hand from the valid prefix to show the decoder does too.
    let _ = e2;
    let id_len = base[2] as usize;
    let cred_off = 3 + id_len;
    let cred_len = u16::from_be_bytes([base[cred_off], base[cred_off + 1]]) as usize;
    let key_off = cred_off + 2 + cred_len;
    let key_len = u16::from_be_bytes([base[key_off], base[key_off + 1]]) as usize;
    let mut bad_key = base[..key_off].to_vec();
    bad_key.extend_from_slice(&1u16.to_be_bytes());
    bad_key.push(0xa0);
    bad_key.extend_from_slice(&base[key_off + 2 + key_len..]);
    cases.push(("unparseable-cose-key", bad_key, "public_key"));
    let mut long_len = base.clone();
    long_len[cred_off] = 0xff;
    cases.push(("credential-id-length-too-large", long_len, "credential_id"));
    for (flag, bytes, err) in cases {
        put(
            f,
            format!("entries/{flag}.json"),
            json!({
                "description": format!("an enrolment entry, {flag}"),
                "entry": hex::encode(&bytes), "expected": "invalid", "flags": [flag], "error": err,
            }),
        );
    }
    let _ = okp_cose();
}

fn assertions(f: &mut Files) {
    let challenge: Vec<u8> = (0u8..64).collect();
    for (i, alg) in Alg::ALL.iter().enumerate() {
        let seed = 100 + i as u64;
        let name = alg.name().to_ascii_lowercase();
        let mut pk = SoftPasskey::new(*alg, seed, RP_ID);
        let cose = hex::encode(pk.cose_public_key());
        let wrong_challenge = [0xeeu8; 64];
        // clientDataJSON a conforming browser never writes, each signed correctly: only the
        // strict parse (spec/webauthn.md W4) refuses them.
        let cb = B64URL.encode(&challenge);
        let cd_array = format!(r#"["webauthn.get","{cb}","{ORIGIN}"]"#);
        let cd_dup_unknown = format!(
            r#"{{"type":"webauthn.get","challenge":"{cb}","origin":"{ORIGIN}","extra":"a","extra":"b"}}"#
        );
        let cd_dup_escaped = format!(
            r#"{{"type":"webauthn.get","challenge":"{cb}","origin":"{ORIGIN}","\u0074ype":"webauthn.create"}}"#
        );
        let cd_dup_nested = format!(
            r#"{{"type":"webauthn.get","challenge":"{cb}","origin":"{ORIGIN}","extra":{{"a":[{{"b":1,"b":2}}]}}}}"#
        );
        let mut cases: Vec<(&str, AssertOptions, bool, &str)> = vec![
            ("valid", AssertOptions::new(&challenge, ORIGIN), false, ""),
            (
                "wrong-origin",
                AssertOptions {
                    origin: "https://evil.example",
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "not an allowed origin",
            ),
            (
                "wrong-rp-id",
                AssertOptions {
                    rp_id: Some("evil.example"),
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "rpIdHash",
            ),
            (
                "wrong-type",
                AssertOptions {
                    client_type: "webauthn.create",
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "webauthn.get",
            ),
            (
                "wrong-challenge",
                AssertOptions::new(&wrong_challenge, ORIGIN),
                false,
                "challenge",
            ),
            (
                "up-missing",
                AssertOptions {
                    flags: flags::UV,
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "user presence",
            ),
            (
                "uv-missing",
                AssertOptions {
                    flags: flags::UP,
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                true,
                "user verification",
            ),
            (
                "bit-flip-signature",
                AssertOptions {
                    flip_signature_bit: Some(8 * 20 + 3),
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "signature does not verify",
            ),
            (
                "cross-origin",
                AssertOptions {
                    cross_origin: true,
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "cross-origin",
            ),
            (
                "top-origin",
                AssertOptions {
                    cross_origin: true,
                    top_origin: Some("https://evil.example"),
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "cross-origin",
            ),
            (
                "bs-without-be",
                AssertOptions {
                    flags: flags::UP | flags::UV | flags::BS,
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "backup state",
            ),
        ];
        for (flag, raw, err) in [
            ("client-data-array", &cd_array, "not a JSON object"),
            (
                "client-data-duplicate-unknown-member",
                &cd_dup_unknown,
                "duplicated member \"extra\"",
            ),
            (
                "client-data-duplicate-escaped-member",
                &cd_dup_escaped,
                "duplicated member \"type\"",
            ),
            (
                "client-data-duplicate-nested-member",
                &cd_dup_nested,
                "duplicated member \"b\"",
            ),
        ] {
            cases.push((
                flag,
                AssertOptions {
                    raw_client_data: Some(raw.as_bytes()),
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                err,
            ));
        }
        if *alg == Alg::EdDsa {
            cases.push((
                "valid-uv-not-required",
                AssertOptions {
                    flags: flags::UP,
                    ..AssertOptions::new(&challenge, ORIGIN)
                },
                false,
                "",
            ));
        }
        for (flag, opts, require_uv, err) in cases.drain(..) {
            let a = pk.assert_with(&opts);
            let valid = flag.starts_with("valid");
            let mut v = json!({
                "description": format!("{} assertion, {flag}", alg.name()),
                "algorithm": alg.name(),
                "public_key": cose,
                "authenticator_data": hex::encode(&a.authenticator_data),
                "client_data_json": hex::encode(&a.client_data_json),
                "signature": hex::encode(&a.signature),
                "rp_id": RP_ID, "origin": ORIGIN,
                "challenge": hex::encode(&challenge),
                "require_uv": require_uv,
                "expected": if valid { "valid" } else { "invalid" },
                "flags": if valid { vec![] } else { vec![flag] },
            });
            if !valid {
                v["error"] = json!(err);
            }
            put(f, format!("assertions/{name}-{flag}.json"), v);
        }
        if *alg == Alg::EdDsa {
            // A weak (small-order) key: the identity. With R = the identity and S = 0, the
            // cofactorless equation holds for every message, so this "signature" matches any
            // assertion; the key must be refused (issue 13).
            let a = pk.assert_with(&AssertOptions::new(&challenge, ORIGIN));
            let mut cose = vec![
                0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20, 0x01,
            ];
            cose.extend_from_slice(&[0u8; 31]);
            let mut forged = vec![0u8; 64];
            forged[0] = 1;
            put(
                f,
                format!("assertions/{name}-weak-key.json"),
                json!({
                    "description": "EdDSA assertion under the identity as public key, with a signature any message matches",
                    "algorithm": alg.name(),
                    "public_key": hex::encode(&cose),
                    "authenticator_data": hex::encode(&a.authenticator_data),
                    "client_data_json": hex::encode(&a.client_data_json),
                    "signature": hex::encode(&forged),
                    "rp_id": RP_ID, "origin": ORIGIN,
                    "challenge": hex::encode(&challenge),
                    "require_uv": true,
                    "expected": "invalid",
                    "flags": ["weak-key"],
                    "error": "small order",
                }),
            );
        }
    }
}

/// A sample statement.
pub fn sample_statement(request: &str, decision: Decision) -> Statement {
    Statement {
        version: 1,
        log_origin: LOG_ORIGIN.into(),
        request_id: format!("req_{request}"),
        client_id: "agent-payments".into(),
        approver_id: "apv_7f3a9c".into(),
        policy: None,
        scope: "openid payments".into(),
        binding_message: "Pay EUR 1,250.00 to ACME GmbH".into(),
        authorization_details: json!([{
            "type": "payment_initiation",
            "instructedAmount": {"currency": "EUR", "amount": "1250.00"},
            "creditorName": "ACME GmbH",
            "creditorAccount": {"iban": "DE02120300000000202051"},
            "remittanceInformationUnstructured": "Invoice 2026-0042"
        }]),
        requested_at: 1_767_225_600,
        expires_at: 1_767_225_900,
        decision: decision.as_str().into(),
    }
}

fn statements(f: &mut Files) {
    for (name, d) in [("approve", Decision::Approve), ("deny", Decision::Deny)] {
        let s = sample_statement("0001", d);
        let (Ok(c), Ok(h)) = (s.canonical_json(), s.hash()) else {
            continue;
        };
        let nonce = [0x5au8; 32];
        put(
            f,
            format!("statements/valid-{name}.json"),
            json!({
                "description": format!("a statement with decision {name}, its RFC 8785 form, hash and challenge"),
                "statement": serde_json::to_value(&s).unwrap_or_default(),
                "canonical_json": String::from_utf8_lossy(&c),
                "sha256": hex::encode(h),
                "nonce": hex::encode(nonce),
                "challenge": hex::encode(countersign_verifier::challenge(&nonce, &h)),
                "expected": "valid", "flags": [],
            }),
        );
    }
    let base =
        serde_json::to_value(sample_statement("0001", Decision::Approve)).unwrap_or_default();
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut v = base.clone();
    v["extra"] = json!(1);
    cases.push(("unknown-member", v, "unknown field"));
    let mut v = base.clone();
    v["decision"] = json!("maybe");
    cases.push(("bad-decision", v, "decision"));
    let mut v = base.clone();
    v["version"] = json!(3);
    cases.push(("unknown-version", v, "version"));
    let mut v = base.clone();
    v["binding_message"] = json!("line one\nline two");
    cases.push(("control-character-in-binding-message", v, "binding_message"));
    let mut v = base.clone();
    v["authorization_details"] = json!({"type": "x"});
    cases.push((
        "authorization-details-not-array",
        v,
        "authorization_details",
    ));
    let mut v = base.clone();
    v["authorization_details"] = json!([{"type": "x", "amount": 9007199254740993u64}]);
    cases.push(("unsafe-integer", v, "authorization_details"));
    let mut v = base.clone();
    v["expires_at"] = v["requested_at"].clone();
    cases.push(("expires-before-requested", v, "expires_at"));
    let mut v = base.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("scope");
    }
    cases.push(("missing-member", v, "missing field"));
    let mut v = base.clone();
    v["binding_message"] = json!("Pay EUR \u{202E}00.052,1 to ACME GmbH");
    cases.push(("bidi-override-in-binding-message", v, "binding_message"));
    // What the approver reads must be what is signed (issue 13): one vector per class of
    // character that displays as something else or as nothing, in authorization_details.
    let mut v = base.clone();
    v["authorization_details"][0]["creditorAccount"] =
        json!({"iban": "DE89\u{202E}3704 0044 0532 0130 00"});
    cases.push((
        "bidi-override-in-authorization-details",
        v,
        "authorization_details",
    ));
    let mut v = base.clone();
    v["authorization_details"][0]["instructedAmount"]["amount\u{200B}"] = json!("9999.00");
    cases.push((
        "zero-width-space-in-member-name",
        v,
        "authorization_details",
    ));
    let mut v = base.clone();
    v["authorization_details"][0]["creditorName"] = json!("ACME\u{2060} GmbH");
    cases.push((
        "word-joiner-in-authorization-details",
        v,
        "authorization_details",
    ));
    let mut v = base.clone();
    v["authorization_details"][0]["creditorName"] =
        json!("ACME GmbH\u{E0001}\u{E0050}\u{E0041}\u{E0059}");
    cases.push((
        "tag-characters-in-authorization-details",
        v,
        "authorization_details",
    ));
    let mut v = base.clone();
    v["authorization_details"][0]["creditorName"] = json!("ACME GmbH\r\nMallory Ltd");
    cases.push((
        "control-character-in-authorization-details",
        v,
        "authorization_details",
    ));
    let mut v = base.clone();
    v["binding_message"] = json!("Pay 42.00 EUR to ACME\u{200B} GmbH");
    cases.push(("zero-width-space-in-binding-message", v, "binding_message"));
    let text = serde_json::to_string(&base).unwrap_or_default().replacen(
        "\"creditorName\":\"ACME GmbH\"",
        "\"creditorName\":\"ACME GmbH\",\"creditorName\":\"Mallory Ltd\"",
        1,
    );
    put(
        f,
        "statements/duplicate-member.json".into(),
        json!({
            "description": "a statement whose authorization_details names creditorName twice (RFC 8785 requires I-JSON)",
            "statement_text": text, "expected": "invalid", "flags": ["duplicate-member"], "error": "duplicate member",
        }),
    );
    for (flag, v, err) in cases {
        put(
            f,
            format!("statements/{flag}.json"),
            json!({
                "description": format!("a statement, {flag}"), "statement": v,
                "expected": "invalid", "flags": [flag], "error": err,
            }),
        );
    }
}

/// A small log with one enrolment and two decisions, and the bundle of the first decision.
pub fn sample_bundle(alg: Alg, seed: u64) -> (EvidenceBundle, Vec<Vec<u8>>) {
    sample_bundle_with_flags(alg, seed, flags::UP | flags::UV, Decision::Approve)
}

/// [`sample_bundle`] with the assertion's authenticator flags byte (e.g. without UV) and the
/// decision given.
fn sample_bundle_with_flags(
    alg: Alg,
    seed: u64,
    flags_byte: u8,
    decision: Decision,
) -> (EvidenceBundle, Vec<Vec<u8>>) {
    sample_bundle_in_log(
        alg,
        seed,
        flags_byte,
        decision,
        Vec::new(),
        vec![b"unrelated entry 3".to_vec(), b"unrelated entry 4".to_vec()],
    )
}

/// [`sample_bundle_with_flags`] in a log with `between` logged after the enrolment (index 1)
/// and before the decision, and `after` logged after the decision.
fn sample_bundle_in_log(
    alg: Alg,
    seed: u64,
    flags_byte: u8,
    decision: Decision,
    between: Vec<Vec<u8>>,
    after: Vec<Vec<u8>>,
) -> (EvidenceBundle, Vec<Vec<u8>>) {
    let mut pk = SoftPasskey::new(alg, seed, RP_ID);
    let key = log_signing_key();
    let vkey = log_vkey();
    let enrol = Entry::Enrolment(Enrolment {
        approver_id: "apv_7f3a9c".into(),
        credential_id: pk.credential_id().to_vec(),
        public_key: pk.cose_public_key(),
        aaguid: [0; 16],
        attestation_format: "none".into(),
        attestation: countersign_verifier::AttestationRecord::NotRecorded,
        time_ms: 1_767_225_000_000,
    });
    let mut log: Vec<Vec<u8>> = vec![
        b"unrelated entry 0".to_vec(),
        enrol.encode().unwrap_or_default(),
    ];
    log.extend(between);
    let decision_index = log.len() as u64;
    let statement = sample_statement("0001", decision);
    let sh = statement.hash().unwrap_or_default();
    let nonce: [u8; 32] = Sha256::digest(seed.to_be_bytes()).into();
    let challenge = countersign_verifier::challenge(&nonce, &sh);
    let a = pk.assert_with(&AssertOptions {
        flags: flags_byte,
        ..AssertOptions::new(&challenge, ORIGIN)
    });
    let dec = Entry::Decision(SignedDecision {
        decision,
        statement_hash: sh,
        nonce,
        approver_id: statement.approver_id.clone(),
        credential_id: pk.credential_id().to_vec(),
        public_key: pk.cose_public_key(),
        authenticator_data: a.authenticator_data,
        client_data_json: a.client_data_json,
        signature: a.signature,
        time_ms: 1_767_225_660_000,
        enrolment_index: 1,
    });
    log.push(dec.encode().unwrap_or_default());
    log.extend(after);
    let leaves: Vec<Hash> = log.iter().map(|e| leaf_hash(e)).collect();
    let size = leaves.len() as u64;
    let body = checkpoint_body(&leaves);
    let proof = |i: u64| {
        range_hashes(
            &leaves,
            &inclusion_proof_ranges(i, size).unwrap_or_default(),
        )
    };
    let bundle = EvidenceBundle {
        version: 1,
        statement,
        decision: LoggedEntry {
            index: decision_index,
            entry: hex::encode(&log[decision_index as usize]),
            inclusion_proof: proof(decision_index),
        },
        enrolment: LoggedEntry {
            index: 1,
            entry: hex::encode(&log[1]),
            inclusion_proof: proof(1),
        },
        approvals: Vec::new(),
        policy: None,
        checkpoint: sign_note(&body, &key, &vkey),
        relying_party: RelyingParty {
            rp_id: RP_ID.into(),
            origins: vec![ORIGIN.into()],
        },
        parties: Some(
            json!({"approver": {"id": "apv_7f3a9c", "name": "Alice Example"}, "client": {"id": "agent-payments", "name": "Payments agent"}}),
        ),
    };
    (bundle, log)
}

fn bundles(f: &mut Files) {
    let vkey = log_vkey().to_vkey();
    for (i, alg) in Alg::ALL.iter().enumerate() {
        let (b, _) = sample_bundle(*alg, 200 + i as u64);
        put(
            f,
            format!("bundles/valid-{}.json", alg.name().to_ascii_lowercase()),
            json!({
                "description": format!("a complete evidence bundle for an {} passkey approval", alg.name()),
                "log_key": vkey, "bundle": serde_json::to_value(&b).unwrap_or_default(),
                "action": b.statement.authorization_details,
                "expected": "valid", "flags": [],
            }),
        );
    }
    // A verified denial: valid evidence, which an executor must still not act on
    // (`countersign-verify bundle` exits 3 for it unless `--expect deny`).
    let (denial, _) =
        sample_bundle_with_flags(Alg::Es256, 203, flags::UP | flags::UV, Decision::Deny);
    put(
        f,
        "bundles/valid-deny.json".into(),
        json!({
            "description": "a complete evidence bundle for an ES256 passkey denial: the evidence \
                            is valid and records decision deny",
            "log_key": vkey, "bundle": serde_json::to_value(&denial).unwrap_or_default(),
            "decision": "deny", "expected": "valid", "flags": [],
        }),
    );
    let (b, _) = sample_bundle(Alg::Es256, 200);
    let base = serde_json::to_value(&b).unwrap_or_default();
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    // Each link broken in turn.
    let mut v = base.clone();
    v["checkpoint"] = json!(b.checkpoint.replacen(&format!("\n{}\n", 5), "\n6\n", 1));
    cases.push(("tampered-checkpoint", v, "checkpoint"));
    let mut v = base.clone();
    v["statement"]["log_origin"] = json!("other.test/log");
    cases.push(("statement-wrong-log", v, "different log"));
    let mut v = base.clone();
    v["decision"]["index"] = json!(3);
    cases.push((
        "decision-wrong-index",
        v,
        "decision entry is not in the checkpointed tree",
    ));
    let mut v = base.clone();
    v["decision"]["inclusion_proof"][0] =
        json!(flip_hex(b.decision.inclusion_proof[0].as_str(), 1));
    cases.push((
        "decision-bit-flip-proof",
        v,
        "decision entry is not in the checkpointed tree",
    ));
    let mut v = base.clone();
    v["enrolment"]["inclusion_proof"][0] =
        json!(flip_hex(b.enrolment.inclusion_proof[0].as_str(), 1));
    cases.push((
        "enrolment-bit-flip-proof",
        v,
        "enrolment entry is not in the checkpointed tree",
    ));
    let mut v = base.clone();
    v["decision"]["entry"] = json!(flip_hex(&b.decision.entry, 8 * 40));
    cases.push((
        "decision-entry-bit-flip",
        v,
        "decision entry is not in the checkpointed tree",
    ));
    let mut v = base.clone();
    v["enrolment"] = base["decision"].clone();
    cases.push((
        "enrolment-is-decision",
        v,
        "enrolment entry is of the wrong kind",
    ));
    for (field, value) in [
        ("request_id", json!("req_0002")),
        ("client_id", json!("agent-other")),
        ("scope", json!("openid")),
        ("binding_message", json!("Pay EUR 9,999.00 to ACME GmbH")),
        ("expires_at", json!(1_767_229_999)),
        ("requested_at", json!(1_767_225_601)),
    ] {
        let mut v = base.clone();
        v["statement"][field] = value;
        cases.push((
            Box::leak(format!("statement-changed-{}", slug(field)).into_boxed_str()),
            v,
            "does not hash to the statement hash",
        ));
    }
    let mut v = base.clone();
    v["statement"]["authorization_details"][0]["instructedAmount"]["amount"] = json!("12500.00");
    cases.push((
        "statement-changed-amount",
        v,
        "does not hash to the statement hash",
    ));
    let mut v = base.clone();
    v["statement"]["authorization_details"][0]["creditorAccount"]["iban"] =
        json!("DE02120300000000202052");
    cases.push((
        "statement-changed-recipient",
        v,
        "does not hash to the statement hash",
    ));
    let mut v = base.clone();
    v["statement"]["decision"] = json!("deny");
    cases.push((
        "statement-changed-decision",
        v,
        "does not hash to the statement hash",
    ));
    let mut v = base.clone();
    v["relying_party"]["rp_id"] = json!("evil.example");
    cases.push(("wrong-rp-id", v, "rpIdHash"));
    let mut v = base.clone();
    v["relying_party"]["origins"] = json!(["https://evil.example"]);
    cases.push(("wrong-origin", v, "not an allowed origin"));
    let mut v = base.clone();
    v["version"] = json!(2);
    cases.push(("unknown-version", v, "version"));
    let mut v = base.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("checkpoint");
    }
    cases.push(("missing-checkpoint", v, "missing field"));
    for (flag, v, err) in cases {
        put(
            f,
            format!("bundles/{flag}.json"),
            json!({
                "description": format!("an ES256 evidence bundle, {flag}"),
                "log_key": vkey, "bundle": v, "expected": "invalid", "flags": [flag], "error": err,
            }),
        );
    }
    // A decision whose passkey did not verify the user (UP without UV): the log took it (its
    // policy may not require UV), and a verifier that requires UV (`--require-uv`) refuses it;
    // without that flag the same bundle verifies.
    let (no_uv, _) = sample_bundle_with_flags(Alg::Es256, 200, flags::UP, Decision::Approve);
    put(
        f,
        "bundles/uv-missing.json".into(),
        json!({
            "description": "an ES256 evidence bundle whose assertion has UP but not UV: valid \
                            unless user verification is required (require_uv)",
            "log_key": vkey, "bundle": serde_json::to_value(&no_uv).unwrap_or_default(),
            "expected": "invalid", "flags": ["uv-missing"], "require_uv": true,
            "error": "user verification",
        }),
    );
    // Execution check: the approved action passes, a different one does not.
    let approved = b.statement.authorization_details.clone();
    let mut other = approved.clone();
    other[0]["instructedAmount"]["amount"] = json!("1250.01");
    put(
        f,
        "bundles/action-mismatch.json".into(),
        json!({
            "description": "a valid bundle with an action that differs from the approved one by one cent",
            "log_key": vkey, "bundle": base, "action": other,
            "expected": "invalid", "flags": ["action-mismatch"], "error": "action differs",
        }),
    );
    let mut reordered = serde_json::Map::new();
    if let Some(o) = approved[0].as_object() {
        for (k, val) in o.iter().rev() {
            reordered.insert(k.clone(), val.clone());
        }
    }
    put(
        f,
        "bundles/action-reordered-matches.json".into(),
        json!({
            "description": "the approved action with its members in another order still matches (RFC 8785)",
            "log_key": vkey, "bundle": serde_json::to_value(&b).unwrap_or_default(),
            "action": {"authorization_details": [Value::Object(reordered)]},
            "expected": "valid", "flags": [],
        }),
    );
}

/// A revocation of the sample log's enrolment (index 1) or of another one.
fn sample_revocation(enrolment_index: u64, time_ms: u64) -> Vec<u8> {
    Entry::Revocation(Revocation {
        approver_id: "apv_7f3a9c".into(),
        credential_id: vec![0x5a; 16],
        enrolment_index,
        reason: "lost".into(),
        time_ms,
    })
    .encode()
    .unwrap_or_default()
}

/// The revocation check (`spec/evidence-bundle.md`, R rules): a valid bundle and the log's
/// entries up to its checkpoint, hex, in order.
fn revocations(f: &mut Files) {
    let vkey = log_vkey().to_vkey();
    let hexes = |log: &[Vec<u8>]| log.iter().map(hex::encode).collect::<Vec<_>>();
    let mut put_case = |name: &str,
                        description: &str,
                        b: &EvidenceBundle,
                        entries: Vec<String>,
                        error: Option<&str>,
                        revoked_after: Option<u64>| {
        let mut v = json!({
            "description": description,
            "log_key": vkey, "bundle": serde_json::to_value(b).unwrap_or_default(),
            "entries": entries,
        });
        match error {
            None => {
                v["expected"] = json!("valid");
                v["flags"] = json!([]);
                v["revoked_after"] = json!(revoked_after);
            }
            Some(e) => {
                v["expected"] = json!("invalid");
                v["flags"] = json!([name]);
                v["error"] = json!(e);
            }
        }
        put(f, format!("revocation/{name}.json"), v);
    };
    let flags_byte = flags::UP | flags::UV;
    let (b, log) = sample_bundle(Alg::Es256, 200);
    put_case(
        "valid-not-revoked",
        "the sample log holds no revocation: the decision stands",
        &b,
        hexes(&log),
        None,
        None,
    );
    let (b, log) = sample_bundle_in_log(
        Alg::Es256,
        210,
        flags_byte,
        Decision::Approve,
        vec![sample_revocation(0, 1_767_225_100_000)],
        vec![sample_revocation(1, 1_767_225_700_000), unrelated_entry(5)],
    );
    put_case(
        "valid-revoked-after",
        "a revocation of another enrolment before the decision, and of the decision's own \
         enrolment after it: the decision stands (the credential decides nothing after index 4)",
        &b,
        hexes(&log),
        None,
        Some(4),
    );
    let (b, log) = sample_bundle_in_log(
        Alg::Es256,
        211,
        flags_byte,
        Decision::Approve,
        vec![sample_revocation(1, 1_767_225_100_000)],
        vec![unrelated_entry(4)],
    );
    put_case(
        "revoked-before",
        "the decision's enrolment was revoked at index 2, before the decision at index 3",
        &b,
        hexes(&log),
        Some("revoked at log index 2, before the decision"),
        None,
    );
    let mut dropped = log.clone();
    dropped.remove(2);
    put_case(
        "revocation-left-out",
        "the revoked-before log with its revocation left out: one entry short of the checkpoint",
        &b,
        hexes(&dropped),
        Some("the checkpoint covers 5 entries but 4 were given"),
        None,
    );
    let mut swapped = log.clone();
    swapped[2] = unrelated_entry(2);
    put_case(
        "revocation-swapped",
        "the revoked-before log with its revocation replaced by another entry: the entries are \
         not the log's",
        &b,
        hexes(&swapped),
        Some("do not hash to the checkpoint's root"),
        None,
    );
    let mut longer = log.clone();
    longer.push(unrelated_entry(5));
    put_case(
        "entries-beyond-checkpoint",
        "one entry more than the checkpoint covers",
        &b,
        hexes(&longer),
        Some("the checkpoint covers 5 entries but 6 or more were given"),
        None,
    );
}

/// An entry of no kind the revocation check reads (it never decodes them).
fn unrelated_entry(n: u8) -> Vec<u8> {
    format!("unrelated entry {n}").into_bytes()
}
