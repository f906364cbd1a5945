//! Generates the worked examples of `spec/*.md` (version 1) and renders the documents from
//! `spec/templates/`: every value in a spec comes from running the verifier and the software
//! passkey, never from typing. `--check` fails if a document is out of date.
// A documentation build tool: any failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine;
use countersign_testvectors::{Alg, AssertOptions, SoftPasskey};
use countersign_verifier as cv;
use cv::{
    canonical_json, check_execution, leaf_hash, node_hash, parse_cose_key, sha256,
    verify_assertion, verify_checkpoint, verify_inclusion, Assertion, AssertionError,
    AssertionPolicy, BundleError, BundlePolicy, Checkpoint, CheckpointError, Decision, Enrolment,
    Entry, EntryError, EvidenceBundle, ExecutionError, Hash, LoggedEntry, Note, NoteError,
    NoteSignature, ProofError, RelyingParty, Revocation, SignedDecision, Statement, StatementError,
    TlogProof, TlogProofError, VerifierKey,
};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;

mod policy;
mod quorum;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

const ORIGIN: &str = "countersign.example/log";
const WITNESS: &str = "witness.example/w1";
const RP_ID: &str = "countersign.example";
const WEB_ORIGIN: &str = "https://countersign.example";

struct Out(BTreeMap<String, String>);
impl Out {
    fn put(&mut self, k: &str, v: impl Into<String>) {
        let v: String = v.into();
        self.0
            .insert(k.to_string(), v.trim_end_matches('\n').to_string());
    }
}

fn seq(start: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        *b = start + i as u8;
    }
    s
}

fn wrap(h: &str, n: usize) -> String {
    h.as_bytes()
        .chunks(n)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Field-by-field dump: offset, length, name, hex (continuation lines indented).
struct Dump {
    off: usize,
    s: String,
    all: Vec<u8>,
}
impl Dump {
    fn new() -> Self {
        Dump {
            off: 0,
            s: String::new(),
            all: Vec::new(),
        }
    }
    fn f(&mut self, name: &str, b: &[u8]) {
        let h = hex::encode(b);
        let chunks: Vec<&str> = h
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        for (i, c) in chunks.iter().enumerate() {
            if i == 0 {
                let _ = writeln!(
                    self.s,
                    "{:>5}  {:>4}  {:<26} {}",
                    self.off,
                    b.len(),
                    name,
                    c
                );
            } else {
                let _ = writeln!(self.s, "{:>5}  {:>4}  {:<26} {}", "", "", "", c);
            }
        }
        self.off += b.len();
        self.all.extend_from_slice(b);
    }
}

/// An error as a Markdown code span (`Debug` form) and its message; double backticks when the
/// `Debug` form itself contains one.
fn err_cell(e: &(impl std::fmt::Debug + std::fmt::Display)) -> String {
    let d = format!("{e:?}");
    if d.contains('`') {
        format!("`` {d} ``: {e}")
    } else {
        format!("`{d}`: {e}")
    }
}

fn rfc6962_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => cv::empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_pow2_below(n);
            node_hash(&rfc6962_root(&leaves[..k]), &rfc6962_root(&leaves[k..]))
        }
    }
}

fn largest_pow2_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 section 2.1.1 `PATH(m, D[n])`.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = largest_pow2_below(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(rfc6962_root(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(rfc6962_root(&leaves[..k]));
        p
    }
}

fn sign_note(
    text: &str,
    log: &SigningKey,
    log_vk: &VerifierKey,
    wit: &SigningKey,
    wit_vk: &VerifierKey,
    ts: u64,
) -> String {
    let mut note = Note::new(text).unwrap();
    let sig = log.sign(text.as_bytes()).to_bytes().to_vec();
    note.push_signature(NoteSignature {
        name: log_vk.name().into(),
        key_id: log_vk.id(),
        signature: sig,
    })
    .unwrap();
    let msg = cv::cosignature_message(ts, text);
    let mut cs = ts.to_be_bytes().to_vec();
    cs.extend_from_slice(&wit.sign(msg.as_bytes()).to_bytes());
    note.push_signature(NoteSignature {
        name: wit_vk.name().into(),
        key_id: wit_vk.id(),
        signature: cs,
    })
    .unwrap();
    note.to_text()
}

fn main() {
    let mut o = Out(BTreeMap::new());

    // ---------------------------------------------------------------- keys
    let log_seed = seq(0x00);
    let wit_seed = seq(0x20);
    let log_sk = SigningKey::from_bytes(&log_seed);
    let wit_sk = SigningKey::from_bytes(&wit_seed);
    let log_vk = VerifierKey::ed25519(ORIGIN, log_sk.verifying_key().to_bytes()).unwrap();
    let wit_vk = VerifierKey::cosignature(WITNESS, wit_sk.verifying_key().to_bytes()).unwrap();
    assert_eq!(VerifierKey::parse(&log_vk.to_vkey()).unwrap(), log_vk);
    assert_eq!(VerifierKey::parse(&wit_vk.to_vkey()).unwrap(), wit_vk);
    o.put("log_seed", hex::encode(log_seed));
    o.put("log_pub", hex::encode(log_sk.verifying_key().to_bytes()));
    o.put("log_vkey", log_vk.to_vkey());
    o.put("log_keyid", format!("{:08x}", log_vk.id()));
    let mut idin = ORIGIN.as_bytes().to_vec();
    idin.push(0x0a);
    idin.push(0x01);
    idin.extend_from_slice(&log_sk.verifying_key().to_bytes());
    o.put("log_keyid_input", wrap(&hex::encode(&idin), 64));
    o.put("log_keyid_sha", hex::encode(sha256(&idin)));
    o.put("wit_seed", hex::encode(wit_seed));
    o.put("wit_pub", hex::encode(wit_sk.verifying_key().to_bytes()));
    o.put("wit_vkey", wit_vk.to_vkey());
    o.put("wit_keyid", format!("{:08x}", wit_vk.id()));

    // ---------------------------------------------------------------- passkeys
    let mut alice = SoftPasskey::new(Alg::Es256, 1, RP_ID);
    let bob = SoftPasskey::new(Alg::EdDsa, 2, RP_ID);
    let alice_cose = alice.cose_public_key();
    let bob_cose = bob.cose_public_key();
    o.put("alice_cose", wrap(&hex::encode(&alice_cose), 64));
    o.put("alice_cose_len", alice_cose.len().to_string());
    o.put("alice_cred", hex::encode(alice.credential_id()));
    o.put("bob_cose", wrap(&hex::encode(&bob_cose), 64));
    o.put("bob_cose_len", bob_cose.len().to_string());
    o.put("bob_cred", hex::encode(bob.credential_id()));
    let cv::PublicKey::Es256(point) = parse_cose_key(&alice_cose).unwrap() else {
        panic!()
    };
    o.put("alice_x", hex::encode(&point[1..33]));
    o.put("alice_y", hex::encode(&point[33..]));
    let cv::PublicKey::Ed25519(bx) = parse_cose_key(&bob_cose).unwrap() else {
        panic!()
    };
    o.put("bob_x", hex::encode(bx));

    // ---------------------------------------------------------------- statement
    // The statement as a server might write it: members in display order, indented.
    let statement_text = r#"{
  "version": 1,
  "log_origin": "countersign.example/log",
  "request_id": "req_7Qm2xV9kLp3T",
  "client_id": "agent-payments",
  "approver_id": "apv_alice",
  "scope": "openid payments",
  "binding_message": "Pay 42.00 EUR to ACME (ref 7Q)",
  "authorization_details": [
    {
      "type": "payment_initiation",
      "instructedAmount": { "currency": "EUR", "amount": "42.00" },
      "creditorName": "ACME GmbH",
      "creditorAccount": { "iban": "DE02100100109307118603" },
      "remittanceInformationUnstructured": "Invoice 2026-0042 – März"
    }
  ],
  "requested_at": 1767225600,
  "expires_at": 1767225900,
  "decision": "approve"
}
"#
    .to_string();
    let statement_json: serde_json::Value = serde_json::from_str(&statement_text).unwrap();
    let statement = Statement::from_json(statement_text.as_bytes()).unwrap();
    let canon = statement.canonical_json().unwrap();
    let st_hash = statement.hash().unwrap();
    assert_eq!(st_hash, sha256(&canon));
    o.put("statement_input", statement_text.clone());
    o.put("statement_canon", String::from_utf8(canon.clone()).unwrap());
    o.put("statement_canon_len", canon.len().to_string());
    o.put("statement_canon_hex", wrap(&hex::encode(&canon), 64));
    o.put("statement_hash", hex::encode(st_hash));
    let nonce = seq(0x40);
    o.put("nonce", hex::encode(nonce));
    let challenge = cv::challenge(&nonce, &st_hash);
    o.put("challenge", wrap(&hex::encode(challenge), 64));
    o.put("challenge_b64url", B64URL.encode(challenge));

    // JCS corner cases, from the code.
    let demo = json!({"\u{fb33}": "hebrew", "\u{1f600}": "emoji", "b": [1e21, 0.1, -0.0, 1e-7, 100.0, 9007199254740991u64], "a\u{e9}": "\u{20ac}\n\"", "A": true});
    let demo_in = serde_json::to_string(&demo).unwrap();
    o.put("jcs_demo_in", demo_in);
    o.put(
        "jcs_demo_out",
        String::from_utf8(canonical_json(&demo).unwrap()).unwrap(),
    );

    // ---------------------------------------------------------------- assertion (ES256)
    let parts = alice.assert(&challenge, WEB_ORIGIN);
    let key = parse_cose_key(&alice_cose).unwrap();
    let policy = AssertionPolicy {
        rp_id: RP_ID,
        allowed_origins: &[WEB_ORIGIN],
        require_user_verification: true,
        stored_sign_count: Some(0),
    };
    let a = Assertion {
        authenticator_data: &parts.authenticator_data,
        client_data_json: &parts.client_data_json,
        signature: &parts.signature,
    };
    let va = verify_assertion(&key, &a, &challenge, &policy).unwrap();
    assert!(va.user_verified());
    o.put(
        "authdata",
        wrap(&hex::encode(&parts.authenticator_data), 64),
    );
    o.put("rpidhash", hex::encode(sha256(RP_ID.as_bytes())));
    o.put(
        "cdj_text",
        String::from_utf8(parts.client_data_json.clone()).unwrap(),
    );
    o.put("cdj_hex", wrap(&hex::encode(&parts.client_data_json), 64));
    o.put("cdj_len", parts.client_data_json.len().to_string());
    o.put("cdj_hash", hex::encode(sha256(&parts.client_data_json)));
    let mut signed = parts.authenticator_data.clone();
    signed.extend_from_slice(&sha256(&parts.client_data_json));
    o.put("signed_msg", wrap(&hex::encode(&signed), 64));
    o.put("sig", wrap(&hex::encode(&parts.signature), 64));
    o.put("sig_len", parts.signature.len().to_string());

    // Negative assertions, each produced by the software passkey and checked by the code.
    let mut neg = String::new();
    let mut run =
        |label: &str, pk: &mut SoftPasskey, opts: AssertOptions<'_>, pol: &AssertionPolicy<'_>| {
            let p = pk.assert_with(&opts);
            let r = verify_assertion(
                &key,
                &Assertion {
                    authenticator_data: &p.authenticator_data,
                    client_data_json: &p.client_data_json,
                    signature: &p.signature,
                },
                &challenge,
                pol,
            );
            let e = r
                .err()
                .map(|e| format!("`{e:?}`: {e}"))
                .unwrap_or("accepted".into());
            let _ = writeln!(neg, "| {label} | {e} |");
        };
    let other = [7u8; 64];
    run(
        "`type` is `webauthn.create`",
        &mut alice,
        AssertOptions {
            client_type: "webauthn.create",
            ..AssertOptions::new(&challenge, WEB_ORIGIN)
        },
        &policy,
    );
    run(
        "challenge of another statement",
        &mut alice,
        AssertOptions::new(&other, WEB_ORIGIN),
        &policy,
    );
    run(
        "origin `https://evil.example`",
        &mut alice,
        AssertOptions::new(&challenge, "https://evil.example"),
        &policy,
    );
    run(
        "`crossOrigin: true`",
        &mut alice,
        AssertOptions {
            cross_origin: true,
            ..AssertOptions::new(&challenge, WEB_ORIGIN)
        },
        &policy,
    );
    run(
        "`topOrigin` present",
        &mut alice,
        AssertOptions {
            top_origin: Some("https://frame.example"),
            ..AssertOptions::new(&challenge, WEB_ORIGIN)
        },
        &policy,
    );
    run(
        "RP ID `evil.example` hashed",
        &mut alice,
        AssertOptions {
            rp_id: Some("evil.example"),
            ..AssertOptions::new(&challenge, WEB_ORIGIN)
        },
        &policy,
    );
    run(
        "flags UV only (UP clear)",
        &mut alice,
        AssertOptions {
            flags: cv::flags::UV,
            ..AssertOptions::new(&challenge, WEB_ORIGIN)
        },
        &policy,
    );
    run(
        "flags UP only, UV required",
        &mut alice,
        AssertOptions {
            flags: cv::flags::UP,
            ..AssertOptions::new(&challenge, WEB_ORIGIN)
        },
        &policy,
    );
    run(
        "flags UP, UV, BS without BE",
        &mut alice,
        AssertOptions {
            flags: cv::flags::UP | cv::flags::UV | cv::flags::BS,
            ..AssertOptions::new(&challenge, WEB_ORIGIN)
        },
        &policy,
    );
    run(
        "one signature bit flipped",
        &mut alice,
        AssertOptions {
            flip_signature_bit: Some(100),
            ..AssertOptions::new(&challenge, WEB_ORIGIN)
        },
        &policy,
    );
    let pol5 = AssertionPolicy {
        stored_sign_count: Some(5),
        ..policy.clone()
    };
    run(
        "signCount 0, stored 5",
        &mut alice,
        AssertOptions::new(&challenge, WEB_ORIGIN),
        &pol5,
    );
    o.put("assert_neg", neg);

    // COSE key parsing, from the code.
    let mut ke = String::new();
    let mut k1 = |label: &str, b: &[u8]| {
        let r = parse_cose_key(b)
            .map(|k| format!("accepted ({})", k.algorithm()))
            .unwrap_or_else(|e| format!("`{e:?}`: {e}"));
        let _ = writeln!(ke, "| {label} | {r} |");
    };
    let mut off_curve = alice_cose.clone();
    *off_curve.last_mut().unwrap() ^= 0x01;
    k1("Alice's key, last byte of `y` changed", &off_curve);
    // {1: 3, 3: -257, -1: n (256 bytes), -2: e}; the modulus is arbitrary, parsing does not use it.
    let rsa = |e: &[u8]| {
        let mut k = vec![
            0xa4, 0x01, 0x03, 0x03, 0x39, 0x01, 0x00, 0x20, 0x59, 0x01, 0x00,
        ];
        k.extend_from_slice(&[0xc5; 256]);
        k.push(0x21);
        k.push(0x40 + e.len() as u8);
        k.extend_from_slice(e);
        k
    };
    k1("RSA, `e` = 65537", &rsa(&[0x01, 0x00, 0x01]));
    k1(
        "RSA, `e` = 65537 written with three leading zero bytes",
        &rsa(&[0, 0, 0, 0x01, 0x00, 0x01]),
    );
    k1("RSA, `e` = 3", &rsa(&[0x03]));
    k1("RSA, `e` = 2^33 - 1", &rsa(&[0x01, 0xff, 0xff, 0xff, 0xff]));
    k1("RSA, `e` = 1", &rsa(&[0x01]));
    k1("RSA, `e` = 65536 (even)", &rsa(&[0x01, 0x00, 0x00]));
    k1("RSA, `e` = 2^33 + 1", &rsa(&[0x02, 0x00, 0x00, 0x00, 0x01]));
    o.put("cose_neg", ke);

    // clientDataJSON parsing and steps 11-14, from the code.
    let mut cde = String::new();
    let cb = B64URL.encode(challenge);
    let mut d0 = |text: String| {
        let r = cv::ClientData::parse(text.as_bytes())
            .and_then(|c| c.check("webauthn.get", &challenge, &[WEB_ORIGIN]))
            .err()
            .map(|e| format!("`{e:?}`: {e}"))
            .unwrap_or("accepted".into());
        let _ = writeln!(cde, "| `{}` | {r} |", text.replace(&cb, "..."));
    };
    let mut d1 = |members: &str, pad: &str| {
        d0(format!("{{\"type\":\"webauthn.get\",\"challenge\":\"{cb}{pad}\",\"origin\":\"{WEB_ORIGIN}\"{members}}}"))
    };
    d1("", "");
    d1(",\"crossOrigin\":false", "");
    d1(",\"other_keys_can_be_added_here\":\"x\"", "");
    d1(",\"crossOrigin\":null", "");
    d1(",\"topOrigin\":null", "");
    d1(",\"crossOrigin\":\"false\"", "");
    d1(",\"type\":\"webauthn.get\"", "");
    d1(",\"\\u0074ype\":\"webauthn.create\"", "");
    d1(",\"other\":\"x\",\"other\":\"y\"", "");
    d1(",\"other\":{\"a\":[{\"b\":1,\"b\":2}]}", "");
    d1("", "==");
    d1(",\"crossOrigin\":true", "");
    d1(",\"topOrigin\":\"https://countersign.example\"", "");
    d0(format!("[\"webauthn.get\",\"{cb}\",\"{WEB_ORIGIN}\"]"));
    o.put("client_data_neg", cde);

    // ---------------------------------------------------------------- entries
    let enr_bob = Entry::Enrolment(Enrolment {
        approver_id: "apv_bob".into(),
        credential_id: bob.credential_id().to_vec(),
        public_key: bob_cose.clone(),
        aaguid: [0; 16],
        attestation_format: "none".into(),
        attestation: countersign_verifier::AttestationRecord::NotRecorded,
        time_ms: 1767052800000,
    });
    let aaguid: [u8; 16] = hex::decode("fbfc3007154e4ecc8c0b6e020557d7bd")
        .unwrap()
        .try_into()
        .unwrap();
    let enr_alice_s = Enrolment {
        approver_id: "apv_alice".into(),
        credential_id: alice.credential_id().to_vec(),
        public_key: alice_cose.clone(),
        aaguid,
        attestation_format: "packed".into(),
        attestation: countersign_verifier::AttestationRecord::NotRecorded,
        time_ms: 1767139200000,
    };
    let enr_alice = Entry::Enrolment(enr_alice_s.clone());
    let rev_bob = Entry::Revocation(Revocation {
        approver_id: "apv_bob".into(),
        credential_id: bob.credential_id().to_vec(),
        enrolment_index: 0,
        reason: "lost".into(),
        time_ms: 1767182400000,
    });
    let dec_s = SignedDecision {
        decision: Decision::Approve,
        statement_hash: st_hash,
        nonce,
        approver_id: "apv_alice".into(),
        credential_id: alice.credential_id().to_vec(),
        public_key: alice_cose.clone(),
        authenticator_data: parts.authenticator_data.clone(),
        client_data_json: parts.client_data_json.clone(),
        signature: parts.signature.clone(),
        time_ms: 1767225642123,
        enrolment_index: 1,
    };
    let dec = Entry::Decision(dec_s.clone());

    // Enrolment dump.
    let mut d = Dump::new();
    d.f("version", &[1]);
    d.f("kind (1 = enrolment)", &[1]);
    d.f("approver_id length", &[9]);
    d.f("approver_id \"apv_alice\"", b"apv_alice");
    d.f(
        "credential_id length",
        &(alice.credential_id().len() as u16).to_be_bytes(),
    );
    d.f("credential_id", alice.credential_id());
    d.f(
        "public_key length",
        &(alice_cose.len() as u16).to_be_bytes(),
    );
    d.f("public_key (COSE_Key)", &alice_cose);
    d.f("aaguid", &aaguid);
    d.f("attestation_format length", &[6]);
    d.f("attestation_format", b"packed");
    d.f("time_ms 1767139200000", &1767139200000u64.to_be_bytes());
    let enr_bytes = enr_alice.encode().unwrap();
    assert_eq!(d.all, enr_bytes);
    assert_eq!(Entry::decode(&enr_bytes).unwrap(), enr_alice);
    o.put("enr_dump", d.s.clone());
    o.put("enr_len", enr_bytes.len().to_string());
    o.put("enr_hex", wrap(&hex::encode(&enr_bytes), 64));
    o.put("enr_leaf", leaf_hash(&enr_bytes).to_hex());

    let mut d = Dump::new();
    d.f("version", &[1]);
    d.f("kind (2 = decision)", &[2]);
    d.f("decision (1 = approve)", &[1]);
    d.f("statement_hash", &st_hash);
    d.f("nonce", &nonce);
    d.f("approver_id length", &[9]);
    d.f("approver_id \"apv_alice\"", b"apv_alice");
    d.f(
        "credential_id length",
        &(alice.credential_id().len() as u16).to_be_bytes(),
    );
    d.f("credential_id", alice.credential_id());
    d.f(
        "public_key length",
        &(alice_cose.len() as u16).to_be_bytes(),
    );
    d.f("public_key (COSE_Key)", &alice_cose);
    d.f(
        "authenticator_data length",
        &(parts.authenticator_data.len() as u16).to_be_bytes(),
    );
    d.f("authenticator_data", &parts.authenticator_data);
    d.f(
        "client_data_json length",
        &(parts.client_data_json.len() as u16).to_be_bytes(),
    );
    d.f("client_data_json", &parts.client_data_json);
    d.f(
        "signature length",
        &(parts.signature.len() as u16).to_be_bytes(),
    );
    d.f("signature (DER)", &parts.signature);
    d.f("time_ms 1767225642123", &1767225642123u64.to_be_bytes());
    d.f("enrolment_index 1", &1u64.to_be_bytes());
    let dec_bytes = dec.encode().unwrap();
    assert_eq!(d.all, dec_bytes);
    assert_eq!(Entry::decode(&dec_bytes).unwrap(), dec);
    o.put("dec_dump", d.s.clone());
    o.put("dec_len", dec_bytes.len().to_string());
    o.put("dec_hex", wrap(&hex::encode(&dec_bytes), 64));
    o.put("dec_leaf", leaf_hash(&dec_bytes).to_hex());

    let mut d = Dump::new();
    d.f("version", &[1]);
    d.f("kind (3 = revocation)", &[3]);
    d.f("approver_id length", &[7]);
    d.f("approver_id \"apv_bob\"", b"apv_bob");
    d.f(
        "credential_id length",
        &(bob.credential_id().len() as u16).to_be_bytes(),
    );
    d.f("credential_id", bob.credential_id());
    d.f("enrolment_index 0", &0u64.to_be_bytes());
    d.f("reason length", &[4]);
    d.f("reason \"lost\"", b"lost");
    d.f("time_ms 1767182400000", &1767182400000u64.to_be_bytes());
    let rev_bytes = rev_bob.encode().unwrap();
    assert_eq!(d.all, rev_bytes);
    o.put("rev_dump", d.s.clone());
    o.put("rev_len", rev_bytes.len().to_string());
    let bob_bytes = enr_bob.encode().unwrap();
    o.put("bob_enr_hex", wrap(&hex::encode(&bob_bytes), 64));

    // Entry decoding errors, from the code.
    let mut ee = String::new();
    let mut e1 = |label: &str, b: &[u8]| {
        let r = Entry::decode(b)
            .err()
            .map(|e| format!("`{e:?}`: {e}"))
            .unwrap_or("accepted".into());
        let _ = writeln!(ee, "| {label} | {r} |");
    };
    e1("empty input", &[]);
    let mut x = enr_bytes.clone();
    x[0] = 3;
    e1("version byte 3", &x);
    {
        use countersign_verifier::AttestationRecord;
        let Ok(Entry::Enrolment(mut v2)) = Entry::decode(&enr_bytes) else {
            unreachable!("the example enrolment decodes")
        };
        v2.attestation = AttestationRecord::Unverified;
        let v2_bytes = Entry::Enrolment(v2).encode().unwrap_or_default();
        let flag = v2_bytes.len() - 8 - 33;
        let mut x = v2_bytes.clone();
        x[flag] = 2;
        e1("version 2 enrolment, `attestation_verified` 2", &x);
        let mut x = v2_bytes.clone();
        x[flag + 1] = 1;
        e1(
            "version 2 enrolment, not verified, non-zero `trust_anchor`",
            &x,
        );
        let mut x = v2_bytes.clone();
        x[1] = 2;
        e1("version 2 with kind 2", &x);
    }
    let mut x = enr_bytes.clone();
    x[1] = 5;
    e1("kind byte 5", &x);
    e1(
        "enrolment without its last byte",
        &enr_bytes[..enr_bytes.len() - 1],
    );
    let mut x = enr_bytes.clone();
    x.push(0);
    e1("enrolment with one byte appended", &x);
    let mut x = enr_bytes.clone();
    x[3] = b' ';
    e1("space in approver_id", &x);
    let mut x = enr_bytes.clone();
    assert_eq!(x[6], b'_');
    x[6] = b'@';
    e1(
        "approver_id \"apv@alice\" (`@` is not in the id alphabet)",
        &x,
    );
    let mut x = dec_bytes.clone();
    x[2] = 3;
    e1("decision byte 3", &x);
    let mut x = enr_bytes.clone();
    let fmt_off = enr_bytes.len() - 8 - 6;
    x[fmt_off] = b'P';
    e1("attestation_format \"Packed\"", &x);
    assert_eq!(enr_bytes[fmt_off - 1], 6);
    let mut x = enr_bytes[..fmt_off - 1].to_vec();
    x.push(0);
    x.extend_from_slice(&enr_bytes[enr_bytes.len() - 8..]);
    e1("attestation_format empty (length 0)", &x);
    let cose_off = 2 + 1 + 9 + 2 + alice.credential_id().len() + 2;
    let mut x = enr_bytes.clone();
    x[cose_off + 4] = 0x27; // alg -8 with EC2
    e1("COSE key: kty EC2 with alg -8", &x);
    let mut x = enr_bytes.clone();
    x[cose_off + alice_cose.len() - 1] ^= 0x01;
    e1(
        "COSE key: last byte of `y` changed (point not on P-256)",
        &x,
    );
    e1("65,536 bytes", &vec![1u8; 65536]);
    o.put("entry_neg", ee);

    // ---------------------------------------------------------------- tree and checkpoint
    let entries = [
        bob_bytes.clone(),
        enr_bytes.clone(),
        rev_bytes.clone(),
        dec_bytes.clone(),
    ];
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let root = rfc6962_root(&leaves);
    assert_eq!(root, cv::root_from_leaf_hashes(&leaves));
    let mut tl = String::new();
    for (i, l) in leaves.iter().enumerate() {
        let kind = Entry::decode(&entries[i]).unwrap().kind_name();
        let _ = writeln!(
            tl,
            "| {i} | {kind} ({}) | `{}` |",
            Entry::decode(&entries[i]).unwrap().approver_id(),
            l.to_hex()
        );
    }
    o.put("tree_leaves", tl);
    o.put("root_hex", root.to_hex());
    o.put("root_b64", B64.encode(root.0));
    let dec_proof = path(3, &leaves);
    let enr_proof = path(1, &leaves);
    verify_inclusion(&leaves[3], 3, 4, &dec_proof, &root).unwrap();
    verify_inclusion(&leaves[1], 1, 4, &enr_proof, &root).unwrap();

    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: 4,
        root,
        extensions: vec![],
    };
    let body = cp.to_text();
    assert_eq!(Checkpoint::parse(&body).unwrap(), cp);
    o.put("cp_body", body.clone());
    let ts = 1767225700u64;
    let signed_note = sign_note(&body, &log_sk, &log_vk, &wit_sk, &wit_vk, ts);
    let vc = verify_checkpoint(
        signed_note.as_bytes(),
        &log_vk,
        std::slice::from_ref(&wit_vk),
    )
    .unwrap();
    assert_eq!(vc.cosignatures.len(), 1);
    assert_eq!(vc.cosignatures[0].timestamp, Some(ts));
    o.put("cp_note", signed_note.clone());
    o.put(
        "cp_log_sig",
        hex::encode(log_sk.sign(body.as_bytes()).to_bytes()),
    );
    o.put("cosig_msg", cv::cosignature_message(ts, &body));
    o.put("cosig_ts", ts.to_string());
    o.put("cosig_ts_hex", hex::encode(ts.to_be_bytes()));
    o.put(
        "cosig_sig",
        hex::encode(
            wit_sk
                .sign(cv::cosignature_message(ts, &body).as_bytes())
                .to_bytes(),
        ),
    );
    o.put("cp_note_bytes", signed_note.len().to_string());

    // Checkpoint verification errors.
    let mut ce = String::new();
    let mut c1 = |label: &str, b: &str, keys: &[VerifierKey]| {
        let r = verify_checkpoint(b.as_bytes(), &log_vk, keys)
            .err()
            .map(|e| format!("`{e:?}`: {e}"))
            .unwrap_or("accepted".into());
        let _ = writeln!(ce, "| {label} | {r} |");
    };
    c1(
        "the note above, witness key not configured",
        &signed_note,
        &[],
    );
    let tampered = signed_note.replacen("\n4\n", "\n5\n", 1);
    c1("tree size changed to 5", &tampered, &[]);
    let other_sk = SigningKey::from_bytes(&seq(0x60));
    let other_vk = VerifierKey::ed25519(ORIGIN, other_sk.verifying_key().to_bytes()).unwrap();
    let unknown_only = {
        let mut n = Note::new(&body).unwrap();
        n.push_signature(NoteSignature {
            name: ORIGIN.into(),
            key_id: other_vk.id(),
            signature: other_sk.sign(body.as_bytes()).to_bytes().to_vec(),
        })
        .unwrap();
        n.to_text()
    };
    c1(
        "signed only by another key of the same name",
        &unknown_only,
        &[],
    );
    let wrong_origin_body = Checkpoint {
        origin: "other.example/log".into(),
        ..cp.clone()
    }
    .to_text();
    let wo = {
        let mut n = Note::new(&wrong_origin_body).unwrap();
        n.push_signature(NoteSignature {
            name: ORIGIN.into(),
            key_id: log_vk.id(),
            signature: log_sk
                .sign(wrong_origin_body.as_bytes())
                .to_bytes()
                .to_vec(),
        })
        .unwrap();
        n.to_text()
    };
    c1(
        "log key signs a body whose origin is `other.example/log`",
        &wo,
        &[],
    );
    let wit_only = {
        let n = Note::parse(signed_note.as_bytes()).unwrap();
        let mut m = Note::new(n.text()).unwrap();
        m.push_signature(n.signatures()[1].clone()).unwrap();
        m.to_text()
    };
    c1(
        "only the witness cosignature, witness key configured",
        &wit_only,
        std::slice::from_ref(&wit_vk),
    );
    let ts63 = sign_note(&body, &log_sk, &log_vk, &wit_sk, &wit_vk, 1u64 << 63);
    c1(
        "cosignature with timestamp 2^63 (otherwise correctly signed), witness key configured",
        &ts63,
        std::slice::from_ref(&wit_vk),
    );
    let bad_wit = {
        let mut n = Note::parse(signed_note.as_bytes()).unwrap();
        let mut sigs = n.signatures().to_vec();
        sigs[1].signature[20] ^= 1;
        let mut m = Note::new(n.text()).unwrap();
        for s in sigs {
            m.push_signature(s).unwrap();
        }
        n = m;
        n.to_text()
    };
    c1(
        "witness cosignature with a flipped bit, witness key configured",
        &bad_wit,
        std::slice::from_ref(&wit_vk),
    );
    c1("same note, witness key not configured", &bad_wit, &[]);
    o.put("cp_neg", ce);

    // ---------------------------------------------------------------- bundle
    let bundle = EvidenceBundle {
        version: 1,
        statement: statement.clone(),
        decision: LoggedEntry {
            index: 3,
            entry: hex::encode(&dec_bytes),
            inclusion_proof: dec_proof.iter().map(|h| h.to_hex()).collect(),
        },
        enrolment: LoggedEntry {
            index: 1,
            entry: hex::encode(&enr_bytes),
            inclusion_proof: enr_proof.iter().map(|h| h.to_hex()).collect(),
        },
        approvals: Vec::new(),
        policy: None,
        checkpoint: signed_note.clone(),
        relying_party: RelyingParty {
            rp_id: RP_ID.into(),
            origins: vec![WEB_ORIGIN.into()],
        },
        parties: Some(
            json!({"apv_alice": "Alice Example, Treasury", "agent-payments": "Payments agent (prod)"}),
        ),
    };
    let bj = bundle.to_json();
    let parsed = EvidenceBundle::from_json(bj.as_bytes()).unwrap();
    let vb = parsed
        .verify(
            &log_vk,
            &BundlePolicy {
                witnesses: std::slice::from_ref(&wit_vk),
                rp_id: Some(RP_ID),
                origin: None,
                require_user_verification: true,
            },
        )
        .unwrap();
    o.put("bundle_json", bj.clone());
    o.put("bundle_verified", format!(
        "decision        {:?}\nstatement_hash  {}\ndecision_index  {}\nenrolment_index {}\ndecided_at_ms   {}\nenrolled_at_ms  {}\nalgorithm       {}\nuser_verified   {}\norigin          {}\ntree_size       {}\nroot            {}\ncosignatures    {}",
        vb.decision, hex::encode(vb.statement_hash), vb.decision_index, vb.enrolment_index, vb.decided_at_ms, vb.enrolled_at_ms, vb.algorithm, vb.user_verified, vb.origin, vb.tree_size, vb.root.to_hex(), vb.cosignatures.len()
    ));
    o.put(
        "dec_proof",
        dec_proof
            .iter()
            .map(|h| h.to_hex())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    o.put(
        "enr_proof",
        enr_proof
            .iter()
            .map(|h| h.to_hex())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let tp = parsed.decision_tlog_proof().unwrap();
    let tpp = TlogProof::parse(&tp).unwrap();
    tpp.verify(&leaves[3], &log_vk, std::slice::from_ref(&wit_vk))
        .unwrap();
    assert_eq!(tpp.to_text(), tp);
    o.put("tlog_proof", tp);
    let enr_tp = TlogProof {
        extra: None,
        index: 1,
        proof: enr_proof.clone(),
        checkpoint: signed_note.clone(),
    }
    .to_text();
    TlogProof::parse(&enr_tp)
        .unwrap()
        .verify(&leaves[1], &log_vk, &[])
        .unwrap();

    // Bundle negative cases (one link broken at a time).
    let mut be = String::new();
    let pol = BundlePolicy {
        witnesses: &[],
        rp_id: None,
        origin: None,
        require_user_verification: false,
    };
    let mut b1 = |label: &str, f: &dyn Fn(&mut EvidenceBundle)| {
        let mut b = parsed.clone();
        f(&mut b);
        let r = b
            .verify(&log_vk, &pol)
            .err()
            .map(|e| format!("`{e:?}`: {e}"))
            .unwrap_or("accepted".into());
        let _ = writeln!(be, "| {label} | {r} |");
    };
    b1("`version` 2", &|b| b.version = 2);
    b1("checkpoint tree size edited", &|b| {
        b.checkpoint = b.checkpoint.replacen("\n4\n", "\n5\n", 1)
    });
    b1("statement `log_origin` of another log", &|b| {
        b.statement.log_origin = "other.example/log".into()
    });
    b1("decision entry hex has odd length", &|b| {
        b.decision.entry.push('0')
    });
    b1("decision entry hex in upper case", &|b| {
        b.decision.entry = b.decision.entry.to_uppercase()
    });
    b1("decision index 2", &|b| b.decision.index = 2);
    b1("decision proof with a hash dropped", &|b| {
        b.decision.inclusion_proof.pop();
    });
    b1("enrolment proof first hash changed", &|b| {
        b.enrolment.inclusion_proof[0] = "00".repeat(32)
    });
    b1("enrolment proof first hash in upper case", &|b| {
        b.enrolment.inclusion_proof[0] = b.enrolment.inclusion_proof[0].to_uppercase()
    });
    let rev_proof: Vec<String> = path(2, &leaves).iter().map(|h| h.to_hex()).collect();
    let rev_hex = hex::encode(&rev_bytes);
    b1("`enrolment` holds the revocation at index 2", &|b| {
        b.enrolment = LoggedEntry {
            index: 2,
            entry: rev_hex.clone(),
            inclusion_proof: rev_proof.clone(),
        };
    });
    let bob_proof: Vec<String> = path(0, &leaves).iter().map(|h| h.to_hex()).collect();
    let bob_hex = hex::encode(&bob_bytes);
    b1("`enrolment` is Bob's enrolment at index 0", &|b| {
        b.enrolment = LoggedEntry {
            index: 0,
            entry: bob_hex.clone(),
            inclusion_proof: bob_proof.clone(),
        };
    });
    b1("statement amount changed to 4200.00", &|b| {
        b.statement.authorization_details[0]["instructedAmount"]["amount"] = json!("4200.00")
    });
    b1(
        "statement padded (member `pad` of 40,000 characters) above 32,768 canonical bytes",
        &|b| b.statement.authorization_details[0]["pad"] = json!("x".repeat(40000)),
    );
    b1("statement `decision` `deny`", &|b| {
        b.statement.decision = "deny".into()
    });
    b1("statement `binding_message` empty", &|b| {
        b.statement.binding_message = String::new()
    });
    b1("statement `expires_at` 1767225640", &|b| {
        b.statement.expires_at = 1767225640
    });
    b1("relying party `rp_id` `evil.example`", &|b| {
        b.relying_party.rp_id = "evil.example".into()
    });
    b1("relying party origins `[\"https://evil.example\"]`", &|b| {
        b.relying_party.origins = vec!["https://evil.example".into()]
    });
    o.put("bundle_neg", be);
    let mut bp = String::new();
    let mut p1 = |label: &str, text: String| {
        assert_ne!(text, bj, "{label}: the edit did not apply");
        let r = EvidenceBundle::from_json(text.as_bytes())
            .err()
            .map(|e| err_cell(&e))
            .unwrap_or("accepted".into());
        let _ = writeln!(bp, "| {label} | {} |", r.replace('|', "\\|"));
    };
    p1(
        "`creditorName` given twice in the statement's `authorization_details`",
        bj.replacen(
            "\"creditorName\": \"ACME GmbH\"",
            "\"creditorName\": \"ACME GmbH\", \"creditorName\": \"EVIL Ltd\"",
            1,
        ),
    );
    p1(
        "`apv_alice` given twice in `parties`",
        bj.replacen(
            "\"apv_alice\": \"Alice Example, Treasury\"",
            "\"apv_alice\": \"Alice Example, Treasury\", \"apv_alice\": \"Mallory\"",
            1,
        ),
    );
    p1(
        "an extra top-level member `note`",
        bj.replacen('{', "{\n  \"note\": \"x\",", 1),
    );
    p1(
        "top-level `version` 2",
        bj.replacen("\"version\": 1,", "\"version\": 2,", 1),
    );
    o.put("bundle_parse_neg", bp);
    let r = parsed
        .verify(
            &log_vk,
            &BundlePolicy {
                rp_id: Some("other.example"),
                ..pol.clone()
            },
        )
        .err()
        .unwrap();
    o.put("bundle_neg_policy_rp", format!("`{r:?}`: {r}"));
    let r = parsed
        .verify(
            &log_vk,
            &BundlePolicy {
                origin: Some("https://other.example"),
                ..pol.clone()
            },
        )
        .err()
        .unwrap();
    o.put("bundle_neg_policy_origin", format!("`{r:?}`: {r}"));

    // Execution check.
    let mut xe = String::new();
    let mut x1 = |label: &str, action: serde_json::Value, now: Option<u64>, st: &Statement| {
        let r = check_execution(st, &action, now)
            .err()
            .map(|e| format!("`{e:?}`: {e}"))
            .unwrap_or("accepted (Ok)".into());
        let _ = writeln!(xe, "| {label} | {r} |");
    };
    let same_reordered: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&statement.authorization_details).unwrap())
            .unwrap();
    x1(
        "the approved array, members reordered, at 1767225800",
        same_reordered.clone(),
        Some(1767225800),
        &statement,
    );
    x1(
        "`{\"authorization_details\": <same>, \"note\": \"x\"}`",
        json!({"authorization_details": same_reordered.clone(), "note": "x"}),
        None,
        &statement,
    );
    let mut changed = same_reordered.clone();
    changed[0]["instructedAmount"]["amount"] = json!("42.01");
    x1("amount `42.01`", changed, None, &statement);
    x1(
        "the approved array at 1767225901",
        same_reordered.clone(),
        Some(1767225901),
        &statement,
    );
    x1(
        "`{\"type\": \"payment_initiation\"}` (an object, not an array)",
        json!({"type":"payment_initiation"}),
        None,
        &statement,
    );
    x1("`[]`", json!([]), None, &statement);
    let mut denied = statement.clone();
    denied.decision = "deny".into();
    x1(
        "any action, statement decision `deny`",
        same_reordered.clone(),
        None,
        &denied,
    );
    o.put("exec_neg", xe);

    // ---------------------------------------------------------------- statement negatives
    let mut se = String::new();
    let mut s1 = |label: &str, text: String| {
        let r = Statement::from_json(text.as_bytes())
            .and_then(|s| s.hash().map(|_| ()))
            .err()
            .map(|e| err_cell(&e))
            .unwrap_or("accepted".into());
        let _ = writeln!(
            se,
            "| {label} | {}|",
            r.replace('|', "\\|").replace('\n', " ") + " "
        );
    };
    let base = statement_json.clone();
    let with = |k: &str, v: serde_json::Value| {
        let mut j = base.clone();
        j[k] = v;
        serde_json::to_string(&j).unwrap()
    };
    s1("`version` 3", with("version", json!(3)));
    s1("`version` 2 without `policy`", with("version", json!(2)));
    s1("extra member `note`", with("note", json!("x")));
    s1(
        "`decision` given twice",
        serde_json::to_string(&base)
            .unwrap()
            .replacen('{', "{\"decision\":\"deny\",", 1),
    );
    let dup_details = serde_json::to_string(&base).unwrap().replacen(
        "\"creditorName\":\"ACME GmbH\"",
        "\"creditorName\":\"ACME GmbH\",\"creditorName\":\"EVIL Ltd\"",
        1,
    );
    assert!(dup_details.contains("EVIL Ltd"));
    s1(
        "`creditorName` given twice inside `authorization_details`",
        dup_details,
    );
    s1(
        "`requested_at` 9007199254740992 (2^53)",
        with("requested_at", json!(9007199254740992u64)),
    );
    s1(
        "`expires_at` 9007199254740993",
        with("expires_at", json!(9007199254740993u64)),
    );
    s1("`log_origin` empty", with("log_origin", json!("")));
    s1(
        "`request_id` `\"req 1\"`",
        with("request_id", json!("req 1")),
    );
    s1(
        "`approver_id` `\"alice@example.com\"`",
        with("approver_id", json!("alice@example.com")),
    );
    s1(
        "`scope` containing U+200F (right-to-left mark)",
        with("scope", json!("openid\u{200f} payments")),
    );
    s1(
        "`binding_message` with a newline",
        with("binding_message", json!("Pay\nnow")),
    );
    s1(
        "`binding_message` containing U+202E (right-to-left override)",
        with("binding_message", json!("Pay 42.00 EUR to \u{202e}EMCA")),
    );
    s1(
        "`binding_message` of 257 characters",
        with("binding_message", json!("é".repeat(257))),
    );
    s1(
        "`authorization_details` `{}`",
        with("authorization_details", json!({})),
    );
    s1(
        "element without `type`",
        with("authorization_details", json!([{"amount": "1"}])),
    );
    s1(
        "integer 9007199254740992 in `authorization_details`",
        with(
            "authorization_details",
            json!([{"type":"t","n": 9007199254740992u64}]),
        ),
    );
    s1(
        "`expires_at` equal to `requested_at`",
        with("expires_at", json!(1767225600u64)),
    );
    s1(
        "`decision` `\"Approve\"`",
        with("decision", json!("Approve")),
    );
    s1("`requested_at` `-1`", with("requested_at", json!(-1)));
    o.put("statement_neg", se);

    // ---------------------------------------------------------------- probes (report only)
    let mut pr = String::new();
    let dup = serde_json::to_string(&base).unwrap().replacen(
        "\"creditorName\":\"ACME GmbH\"",
        "\"creditorName\":\"ACME GmbH\",\"creditorName\":\"EVIL Ltd\"",
        1,
    );
    let _ = writeln!(
        pr,
        "dup-in-details: {:?}",
        Statement::from_json(dup.as_bytes())
            .map(|s| String::from_utf8(canonical_json(&s.authorization_details).unwrap()).unwrap())
    );
    let big = with("requested_at", json!(9007199254740993u64));
    let big = big.replace("1767225900", "9007199254740999");
    let _ = writeln!(
        pr,
        "big-top-level-int: {:?}",
        Statement::from_json(big.as_bytes())
            .map(|s| String::from_utf8(s.canonical_json().unwrap()).unwrap())
    );
    let mut ub = parsed.clone();
    ub.decision.entry = ub.decision.entry.to_uppercase();
    ub.enrolment.inclusion_proof[0] = ub.enrolment.inclusion_proof[0].to_uppercase();
    let _ = writeln!(
        pr,
        "uppercase-hex-bundle: {:?}",
        ub.verify(&log_vk, &pol).map(|_| "accepted")
    );
    let mut e = enr_alice_s.clone();
    e.attestation_format = String::new();
    let _ = writeln!(
        pr,
        "empty-attestation-format: {:?}",
        Entry::Enrolment(e.clone()).encode().map(|b| b.len())
    );
    e.attestation_format = "none".into();
    e.approver_id = "alice@example.com".into();
    let _ = writeln!(
        pr,
        "email-approver-id: {:?}",
        Entry::Enrolment(e).encode().map(|b| b.len())
    );
    let nulls = format!("{{\"type\":\"webauthn.get\",\"challenge\":\"{}\",\"origin\":\"{}\",\"crossOrigin\":null,\"topOrigin\":null}}", B64URL.encode(challenge), WEB_ORIGIN);
    let cd = cv::ClientData::parse(nulls.as_bytes())
        .and_then(|c| c.check("webauthn.get", &challenge, &[WEB_ORIGIN]));
    let _ = writeln!(pr, "crossOrigin-null/topOrigin-null: {:?}", cd);
    let rlo = with("binding_message", json!("Pay 42.00 EUR to \u{202e}EMCA"));
    let _ = writeln!(
        pr,
        "bidi-override-binding-message: {:?}",
        Statement::from_json(rlo.as_bytes()).map(|_| "accepted")
    );
    // Cosignature timestamp above 2^63-1.
    let big_ts = u64::MAX;
    let n2 = sign_note(&body, &log_sk, &log_vk, &wit_sk, &wit_vk, big_ts);
    let _ = writeln!(
        pr,
        "cosig-ts-u64max: {:?}",
        verify_checkpoint(n2.as_bytes(), &log_vk, std::slice::from_ref(&wit_vk))
            .map(|v| v.cosignatures[0].timestamp)
    );
    // Execution check: duplicate keys in action.
    let dupa: serde_json::Value = serde_json::from_str(
        &serde_json::to_string(&statement.authorization_details)
            .unwrap()
            .replacen(
                "\"amount\":\"42.00\"",
                "\"amount\":\"99999.00\",\"amount\":\"42.00\"",
                1,
            ),
    )
    .unwrap();
    let _ = writeln!(
        pr,
        "exec-dup-keys: {:?}",
        check_execution(&statement, &dupa, None)
    );
    // Bundle: statement above 32 KiB inside a bundle.
    let mut lb = parsed.clone();
    lb.statement.authorization_details[0]["pad"] = json!("x".repeat(40000));
    let _ = writeln!(
        pr,
        "statement-over-32KiB-in-bundle: {:?}",
        lb.verify(&log_vk, &pol).err()
    );
    // Decision logged exactly at expiry.
    let _ = writeln!(pr, "policy.origin ignores bundle origins: {:?}", {
        let mut b = parsed.clone();
        b.relying_party.origins = vec![];
        b.verify(
            &log_vk,
            &BundlePolicy {
                origin: Some(WEB_ORIGIN),
                ..pol.clone()
            },
        )
        .map(|_| "accepted")
    });
    // Note: text with CR / DEL.
    let _ = writeln!(
        pr,
        "note-with-DEL: {:?}",
        Note::parse(format!("a\x7fb\n\n{}", signed_note.split("\n\n").nth(1).unwrap()).as_bytes())
            .map(|_| "parsed")
    );
    // webauthn challenge with padding
    let padded = format!(
        "{{\"type\":\"webauthn.get\",\"challenge\":\"{}==\",\"origin\":\"{}\"}}",
        B64URL.encode(challenge),
        WEB_ORIGIN
    );
    let _ = writeln!(
        pr,
        "challenge-with-padding: {:?}",
        cv::ClientData::parse(padded.as_bytes()).and_then(|c| c.check(
            "webauthn.get",
            &challenge,
            &[WEB_ORIGIN]
        ))
    );
    o.put("probes", pr);

    // ---------------------------------------------------------------- all error messages
    let mut em = String::new();
    let _ = writeln!(em, "## EntryError");
    for e in [
        EntryError::TooLarge,
        EntryError::UnsupportedVersion,
        EntryError::UnknownKind,
        EntryError::Truncated,
        EntryError::TrailingBytes,
        EntryError::InvalidField("approver_id"),
    ] {
        let _ = writeln!(em, "{e:?} | {e}");
    }
    let _ = writeln!(em, "## AssertionError");
    for e in [
        AssertionError::ClientDataMalformed,
        AssertionError::ClientDataNotObject,
        AssertionError::ClientDataDuplicateMember {
            name: "type".into(),
        },
        AssertionError::ClientDataTooLarge,
        AssertionError::WrongType,
        AssertionError::ChallengeMismatch,
        AssertionError::OriginNotAllowed {
            origin: "https://evil.example".into(),
        },
        AssertionError::CrossOrigin,
        AssertionError::AuthenticatorDataMalformed("trailing bytes"),
        AssertionError::RpIdHashMismatch,
        AssertionError::UserNotPresent,
        AssertionError::UserNotVerified,
        AssertionError::InvalidBackupFlags,
        AssertionError::PublicKey(cv::CoseKeyError::Unsupported),
        AssertionError::SignatureTooLarge,
        AssertionError::BadSignature,
        AssertionError::SignCountNotIncreased {
            stored: 5,
            received: 5,
        },
    ] {
        let _ = writeln!(em, "{e:?} | {e}");
    }
    let _ = writeln!(em, "## BundleError");
    for e in [
        BundleError::TooLarge,
        BundleError::Malformed("x".into()),
        BundleError::UnsupportedVersion,
        BundleError::Checkpoint(CheckpointError::Malformed("x")),
        BundleError::WrongLog,
        BundleError::Entry {
            which: "decision",
            error: EntryError::Truncated,
        },
        BundleError::WrongKind("enrolment"),
        BundleError::Inclusion {
            which: "decision",
            error: ProofError::RootMismatch,
        },
        BundleError::EnrolmentIndexMismatch,
        BundleError::EnrolmentNotBeforeDecision,
        BundleError::CredentialMismatch("public key"),
        BundleError::Statement(StatementError::InvalidField("scope")),
        BundleError::StatementHashMismatch,
        BundleError::StatementApproverMismatch,
        BundleError::DecisionMismatch,
        BundleError::DecidedAfterExpiry,
        BundleError::DecidedBeforeRequest,
        BundleError::RelyingPartyMismatch,
        BundleError::Assertion(AssertionError::BadSignature),
    ] {
        let _ = writeln!(em, "{e:?} | {e}");
    }
    let _ = writeln!(em, "## Note/Checkpoint/TlogProof/Execution");
    for e in [
        NoteError::TooLarge,
        NoteError::TooManySignatures,
        NoteError::BadSignature {
            key: "k+00000000".into(),
        },
        NoteError::NoVerifiedSignature,
    ] {
        let _ = writeln!(em, "{e:?} | {e}");
    }
    let e = CheckpointError::WrongOrigin { found: "x".into() };
    let _ = writeln!(em, "{e:?} | {e}");
    let e = TlogProofError::Malformed("x");
    let _ = writeln!(em, "{e:?} | {e}");
    for e in [
        ExecutionError::Denied,
        ExecutionError::ActionMismatch,
        ExecutionError::Expired,
        ExecutionError::MalformedAction("x".into()),
    ] {
        let _ = writeln!(em, "{e:?} | {e}");
    }
    o.put("errors", em);

    for (k, v) in policy::fragments() {
        o.put(k, v);
    }
    for (k, v) in quorum::fragments() {
        o.put(k, v);
    }

    render(&o.0);
}

/// Substitutes `{{name}}` in `spec/templates/*.md` with the fragments and writes `spec/*.md`;
/// with `--check`, compares instead and exits 1 if a spec is out of date.
fn render(fragments: &BTreeMap<String, String>) {
    let check = std::env::args().any(|a| a == "--check");
    let spec = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("..");
    let mut templates: Vec<_> = std::fs::read_dir(spec.join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    templates.sort();
    let mut stale = 0;
    for t in templates {
        let text = std::fs::read_to_string(&t).unwrap();
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("{{") {
            out.push_str(&rest[..i]);
            let end = rest[i..]
                .find("}}")
                .unwrap_or_else(|| panic!("{}: unclosed {{{{", t.display()));
            let name = &rest[i + 2..i + end];
            let frag = fragments
                .get(name)
                .unwrap_or_else(|| panic!("{}: no fragment {name}", t.display()));
            out.push_str(frag);
            rest = &rest[i + end + 2..];
        }
        out.push_str(rest);
        let dst = spec.join(t.file_name().unwrap());
        if check {
            if std::fs::read_to_string(&dst).ok().as_deref() != Some(out.as_str()) {
                eprintln!("stale: {}", dst.display());
                stale += 1;
            }
        } else {
            std::fs::write(&dst, out).unwrap();
            println!("rendered {}", dst.display());
        }
    }
    if stale > 0 {
        eprintln!("{stale} spec documents differ from their examples: run `cargo run -p countersign-spec-examples`");
        std::process::exit(1);
    }
}
