//! The worked examples of approval policies in the log: the policy entry of `spec/entry.md`
//! (kind 4), the version 2 statement of `spec/statement.md`, and the version 2 evidence bundle of
//! `spec/evidence-bundle.md`. They are the test vectors' (`testvectors/src/quorum.rs`: log
//! `countersign.test/log`, passkeys `SoftPasskey::new(Alg::Es256, 300..)`), verified here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use countersign_testvectors::quorum::{quorum_bundles, sample_policy, v2_statement, TREASURY};
use countersign_verifier as cv;
use cv::{BundlePolicy, Decision, Entry, EvidenceBundle, PolicyEntry, Statement};
use serde_json::{json, Value};

use crate::{err_cell, wrap, Dump};

/// `(name, text)` of every fragment.
pub fn fragments() -> BTreeMap<&'static str, String> {
    let mut o = BTreeMap::new();
    policy_entry(&mut o);
    statement(&mut o);
    bundle(&mut o);
    o
}

fn policy_entry(o: &mut BTreeMap<&'static str, String>) {
    let policy = sample_policy();
    let time_ms = 1_767_225_001_000u64;
    let entry = Entry::Policy(PolicyEntry::of(&policy, time_ms));
    let bytes = entry.encode().unwrap();
    let canonical = policy.canonical_json();
    let mut d = Dump::new();
    d.f("version", &[1]);
    d.f("kind", &[4]);
    d.f("policy length", &(canonical.len() as u16).to_be_bytes());
    d.f("policy", &canonical);
    d.f("time_ms", &time_ms.to_be_bytes());
    assert_eq!(d.all, bytes, "the dump is the encoding");
    let Entry::Policy(back) = Entry::decode(&bytes).unwrap() else {
        panic!("not a policy entry")
    };
    assert_eq!(back.validated().unwrap(), policy);
    o.insert("policy_entry_dump", d.s);
    o.insert("policy_entry_len", bytes.len().to_string());
    o.insert(
        "policy_entry_json",
        String::from_utf8(canonical.clone()).unwrap(),
    );
    o.insert("policy_entry_hash", hex::encode(back.policy_hash()));
    o.insert("policy_entry_hex", wrap(&hex::encode(&bytes), 64));
    o.insert("policy_entry_leaf", cv::leaf_hash(&bytes).to_hex());

    let mut rows = String::new();
    let mut row = |label: &str, b: &[u8]| {
        let r = match Entry::decode(b) {
            Err(e) => err_cell(&e),
            Ok(Entry::Policy(p)) => match p.validated() {
                Err(e) => format!("decodes; `validated()`: {}", err_cell(&e)),
                Ok(_) => "accepted".into(),
            },
            Ok(_) => "another kind".into(),
        };
        let _ = writeln!(rows, "| {label} | {} |", r.replace('|', "\\|"));
    };
    let with_policy = |p: &[u8]| {
        let mut b = vec![1u8, 4];
        b.extend_from_slice(&(p.len() as u16).to_be_bytes());
        b.extend_from_slice(p);
        b.extend_from_slice(&time_ms.to_be_bytes());
        b
    };
    row(
        "policy entry without its last byte",
        &bytes[..bytes.len() - 1],
    );
    row(
        "policy entry with one byte appended",
        &[&bytes[..], &[0]].concat(),
    );
    row("policy length 0", &with_policy(&[]));
    let mut long = bytes.clone();
    long[2..4].copy_from_slice(&(canonical.len() as u16 + 9).to_be_bytes());
    row("policy length 9 more than the bytes that follow", &long);
    row(
        "policy length 65,001",
        &[&[1u8, 4][..], &65_001u16.to_be_bytes()[..]].concat(),
    );
    row(
        "version byte 2 with kind 4",
        &[&[2u8][..], &bytes[1..]].concat(),
    );
    let mut spaced = b"{ ".to_vec();
    spaced.extend_from_slice(&canonical[1..]);
    row(
        "the same policy with a space after `{` (not its canonical form)",
        &with_policy(&spaced),
    );
    let text = String::from_utf8(canonical.clone()).unwrap();
    let q4 = text.replace("\"quorum\":2", "\"quorum\":4");
    assert_ne!(q4, text);
    row(
        "a policy whose rule asks quorum 4 of 3",
        &with_policy(q4.as_bytes()),
    );
    row(
        "a policy that is not JSON (`policy`)",
        &with_policy(b"policy"),
    );
    o.insert("policy_entry_neg", rows);
}

fn statement_example() -> Statement {
    v2_statement(
        "0101",
        "1250.00",
        Decision::Approve,
        1,
        Some("payments over 1000"),
        2,
        &TREASURY,
    )
}

fn statement(o: &mut BTreeMap<&'static str, String>) {
    let s = statement_example();
    let canonical = s.canonical_json().unwrap();
    o.insert(
        "statement_v2_input",
        serde_json::to_string_pretty(&s).unwrap(),
    );
    o.insert("statement_v2_canon_len", canonical.len().to_string());
    o.insert("statement_v2_canon", String::from_utf8(canonical).unwrap());
    o.insert("statement_v2_hash", hex::encode(s.hash().unwrap()));

    let base = serde_json::to_value(&s).unwrap();
    let mut rows = String::new();
    let mut row = |label: &str, v: Value| {
        let r = Statement::from_json(v.to_string().as_bytes())
            .and_then(|s| s.hash().map(|_| ()))
            .err()
            .map(|e| err_cell(&e))
            .unwrap_or("accepted".into());
        let _ = writeln!(rows, "| {label} | {} |", r.replace('|', "\\|"));
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        v
    };
    row(
        "`approvers` not sorted",
        with(&|v| v["policy"]["approvers"] = json!(["apv_t2", "apv_t1", "apv_t3"])),
    );
    row(
        "`approvers` naming `apv_t1` twice",
        with(&|v| v["policy"]["approvers"] = json!(["apv_t1", "apv_t1", "apv_t3"])),
    );
    row(
        "`approvers` empty",
        with(&|v| v["policy"]["approvers"] = json!([])),
    );
    row("`quorum` 0", with(&|v| v["policy"]["quorum"] = json!(0)));
    row(
        "`quorum` 4 of 3 approvers",
        with(&|v| v["policy"]["quorum"] = json!(4)),
    );
    row(
        "`rule` null with quorum 2",
        with(&|v| v["policy"]["rule"] = Value::Null),
    );
    row(
        "`rule` absent",
        with(&|v| {
            v["policy"].as_object_mut().unwrap().remove("rule");
        }),
    );
    row(
        "`rule` with a leading space",
        with(&|v| v["policy"]["rule"] = json!(" payments over 1000")),
    );
    row(
        "`index` 2^53",
        with(&|v| v["policy"]["index"] = json!(9_007_199_254_740_992u64)),
    );
    row(
        "member `hash` inside `policy`",
        with(&|v| v["policy"]["hash"] = json!("00")),
    );
    row("`policy` null", with(&|v| v["policy"] = Value::Null));
    row(
        "`policy` absent",
        with(&|v| {
            v.as_object_mut().unwrap().remove("policy");
        }),
    );
    row(
        "`approver_id` `apv_t1` beside `policy`",
        with(&|v| v["approver_id"] = json!("apv_t1")),
    );
    row(
        "`approver_id` empty beside `policy`",
        with(&|v| v["approver_id"] = json!("")),
    );
    row(
        "`version` 1 with `policy`",
        with(&|v| v["version"] = json!(1)),
    );
    o.insert("statement_v2_neg", rows);
}

/// The bundle as shown: every entry's hex cut to its first 24 digits, proofs to their first
/// hash, so the structure fits on a page (the whole bundle is the test vector).
fn abbreviated(b: &Value) -> Value {
    fn cut(l: &mut Value) {
        if let Some(e) = l["entry"].as_str() {
            let short = format!("{}... ({} bytes)", &e[..24], e.len() / 2);
            l["entry"] = json!(short);
        }
        if let Some(p) = l["inclusion_proof"].as_array() {
            let n = p.len();
            let first = p[0].as_str().unwrap_or_default().to_owned();
            l["inclusion_proof"] = json!([first, format!("... ({n} hashes)")]);
        }
    }
    let mut b = b.clone();
    cut(&mut b["decision"]);
    cut(&mut b["enrolment"]);
    cut(&mut b["policy"]);
    if let Some(a) = b["approvals"].as_array_mut() {
        for l in a {
            cut(&mut l["decision"]);
            cut(&mut l["enrolment"]);
        }
    }
    b
}

fn bundle(o: &mut BTreeMap<&'static str, String>) {
    let key = countersign_testvectors::generate::log_vkey();
    let cases = quorum_bundles();
    let (_, valid, _, _) = cases.iter().find(|c| c.0 == "quorum-valid-2-of-3").unwrap();
    o.insert(
        "bundle_v2_json",
        serde_json::to_string_pretty(&abbreviated(valid)).unwrap(),
    );
    let b = EvidenceBundle::from_json(valid.to_string().as_bytes()).unwrap();
    let v = b.verify(&key, &BundlePolicy::default()).unwrap();
    let p = v.policy.as_ref().unwrap();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "decision        {} (the approval that completed the quorum), by {}, log index {}",
        v.decision.as_str(),
        v.approver_id,
        v.decision_index
    );
    for a in &v.approvals {
        let _ = writeln!(
            out,
            "approval        {} at log index {} (enrolment {}, user verified {})",
            a.approver_id, a.decision_index, a.enrolment_index, a.user_verified
        );
    }
    let _ = writeln!(
        out,
        "policy entry    log index {}, sha256 {}",
        p.index,
        hex::encode(p.sha256)
    );
    let _ = writeln!(
        out,
        "rule            {:?}, quorum {} of {}",
        p.rule.as_deref().unwrap_or("(none)"),
        p.quorum,
        p.eligible.join(", ")
    );
    let _ = writeln!(
        out,
        "checkpoint      tree size {}, root {}",
        v.tree_size, v.root
    );
    o.insert("bundle_v2_verified", out);
    o.insert("bundle_v2_log_key", key.to_vkey());

    let mut rows = String::new();
    for (name, bundle, want, description) in &cases {
        let Some(want) = want else { continue };
        let r = EvidenceBundle::from_json(bundle.to_string().as_bytes())
            .and_then(|b| b.verify(&key, &BundlePolicy::default()));
        let e = r.err().unwrap();
        assert!(e.to_string().contains(want), "{name}: {e}");
        let _ = writeln!(
            rows,
            "| `{name}` | {description} | {} |",
            err_cell(&e).replace('|', "\\|")
        );
    }
    o.insert("bundle_v2_neg", rows);
}
