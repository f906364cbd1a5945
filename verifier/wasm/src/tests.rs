//! `handle` for each op, on the published vectors, and each way a request can be refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use serde_json::{json, Value};

use super::*;

fn vector(path: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testvectors/");
    serde_json::from_str(&std::fs::read_to_string(format!("{dir}{path}.json")).unwrap()).unwrap()
}

/// The relying party of the generated vectors, pinned as a caller must.
const RP: &str = "approve.countersign.test";

fn ask(request: &Value) -> Value {
    serde_json::from_str(&handle(&request.to_string())).unwrap()
}

fn b64(hex_text: &Value) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(hex::decode(hex_text.as_str().unwrap()).unwrap())
}

#[test]
fn verify_bundle_as_text_and_as_object() {
    let v = vector("bundles/valid-es256");
    let text = serde_json::to_string_pretty(&v["bundle"]).unwrap();
    for bundle in [json!(text), v["bundle"].clone()] {
        let a = ask(
            &json!({"op": "verify_bundle", "bundle": bundle, "log_key": v["log_key"], "rp_id": RP}),
        );
        assert_eq!(a["valid"], true, "{a}");
        assert_eq!(a["decision"], "approve");
        assert_eq!(
            (&a["expected"], &a["as_expected"]),
            (&json!("approve"), &json!(true))
        );
        assert_eq!(a["statement"], v["bundle"]["statement"]);
        assert_eq!(a["unsigned"], json!(["parties", "relying_party.origins"]));
        assert_eq!(a["parties"], v["bundle"]["parties"]);
        assert_eq!(
            (&a["decision_index"], &a["tree_size"]),
            (&json!(2), &json!(5))
        );
        assert_eq!(a["log_origin"], "countersign.test/log");
    }
}

#[test]
fn verify_bundle_reports_a_denial_and_the_expectation() {
    let v = vector("bundles/valid-deny");
    let base =
        json!({"op": "verify_bundle", "bundle": v["bundle"], "log_key": v["log_key"], "rp_id": RP});
    let a = ask(&base);
    assert_eq!(
        (&a["valid"], &a["decision"]),
        (&json!(true), &json!("deny"))
    );
    assert_eq!(a["as_expected"], false);
    for (expect, met) in [("deny", true), ("any", true), ("approve", false)] {
        let mut r = base.clone();
        r["expect"] = json!(expect);
        let a = ask(&r);
        assert_eq!(
            (&a["expected"], &a["as_expected"]),
            (&json!(expect), &json!(met))
        );
    }
    let mut r = base;
    r["expect"] = json!("maybe");
    assert_eq!(ask(&r)["valid"], Value::Null);
}

#[test]
fn verify_bundle_refuses_a_forgery_and_a_wrong_key() {
    let v = vector("bundles/valid-es256");
    for (field, value) in [
        ("binding_message", json!("Pay EUR 1.00 to ACME GmbH")),
        ("client_id", json!("agent-other")),
        ("decision", json!("deny")),
    ] {
        let mut b = v["bundle"].clone();
        b["statement"][field] = value;
        let a =
            ask(&json!({"op": "verify_bundle", "bundle": b, "log_key": v["log_key"], "rp_id": RP}));
        assert_eq!(a["valid"], false, "{field}: {a}");
        assert_eq!(a["check"], "bundle");
        assert!(
            a["error"]
                .as_str()
                .unwrap()
                .contains("does not hash to the statement hash"),
            "{a}"
        );
    }
    // A well-formed key of another log: invalid (the checkpoint is not its); a malformed key:
    // the request cannot be answered.
    let witness = vector("checkpoints/valid-cosigned")["keys"][1].clone();
    let witness = countersign_verifier::VerifierKey::parse(witness.as_str().unwrap()).unwrap();
    let other =
        countersign_verifier::VerifierKey::ed25519("countersign.test/log", *witness.public_key())
            .unwrap()
            .to_vkey();
    let a =
        ask(&json!({"op": "verify_bundle", "bundle": v["bundle"], "log_key": other, "rp_id": RP}));
    assert_eq!(
        (&a["valid"], &a["check"]),
        (&json!(false), &json!("bundle")),
        "{a}"
    );
    assert!(a["error"].as_str().unwrap().contains("checkpoint"), "{a}");
    let a = ask(&json!({"op": "verify_bundle", "bundle": v["bundle"], "log_key": "nope"}));
    assert_eq!(a["valid"], Value::Null, "{a}");
    assert!(a["error"].as_str().unwrap().starts_with("log_key: "), "{a}");
    // Policy members reach the verifier.
    let mut r = json!({"op": "verify_bundle", "bundle": v["bundle"], "log_key": v["log_key"], "rp_id": "evil.test"});
    assert_eq!(ask(&r)["valid"], false);
    r["rp_id"] = json!(null);
    r["origin"] = json!("https://evil.test");
    assert_eq!(ask(&r)["valid"], false);
    r["origin"] = json!("https://approve.countersign.test");
    assert_eq!(ask(&r)["valid"], true, "the origin alone pins the RP");
    // UV is required unless the caller says otherwise.
    let nouv = vector("bundles/uv-missing");
    let mut r = json!({"op": "verify_bundle", "bundle": nouv["bundle"], "log_key": nouv["log_key"], "rp_id": RP});
    assert_eq!(ask(&r)["valid"], false);
    r["require_uv"] = json!(false);
    assert_eq!(ask(&r)["valid"], true);
    r["require_uv"] = json!(true);
    assert_eq!(ask(&r)["valid"], false);
}

#[test]
fn verify_bundle_needs_a_pinned_or_explicitly_trusted_rp() {
    let v = vector("bundles/valid-es256");
    let mut r = json!({"op": "verify_bundle", "bundle": v["bundle"], "log_key": v["log_key"]});
    let a = ask(&r);
    assert_eq!(a["valid"], Value::Null, "{a}");
    assert!(a["error"].as_str().unwrap().contains("rp_id"), "{a}");
    r["trust_bundle_rp"] = json!(true);
    let a = ask(&r);
    assert_eq!(
        (&a["valid"], &a["rp_pinned"]),
        (&json!(true), &json!(false)),
        "{a}"
    );
    r["rp_id"] = json!(RP);
    assert_eq!(ask(&r)["valid"], Value::Null, "trust and a pin together");
    r["trust_bundle_rp"] = json!(false);
    let a = ask(&r);
    assert_eq!(
        (&a["valid"], &a["rp_pinned"]),
        (&json!(true), &json!(true)),
        "{a}"
    );
    // The bundle naming another RP is refused under a pin, accepted (and said) when trusted.
    let w = vector("bundles/wrong-rp-id");
    let a = ask(
        &json!({"op": "verify_bundle", "bundle": w["bundle"], "log_key": w["log_key"], "rp_id": RP}),
    );
    assert_eq!(a["valid"], false, "{a}");
}

#[test]
fn a_bundle_object_naming_a_member_twice_is_refused() {
    let v = vector("bundles/valid-es256");
    let bundle = v["bundle"].to_string();
    let dup = bundle.replacen("{", r#"{"version":1,"#, 1);
    let request = format!(
        r#"{{"op":"verify_bundle","log_key":{},"bundle":{dup}}}"#,
        v["log_key"]
    );
    let a: Value = serde_json::from_str(&handle(&request)).unwrap();
    assert_eq!(a["valid"], Value::Null, "{a}");
    assert!(
        a["error"].as_str().unwrap().contains("duplicate member"),
        "{a}"
    );
}

#[test]
fn verify_checkpoint_lists_every_signature() {
    let v = vector("checkpoints/valid-cosigned");
    let keys = v["keys"].as_array().unwrap();
    let a = ask(
        &json!({"op": "verify_checkpoint", "note": v["note"], "log_key": keys[0], "witnesses": [keys[1]]}),
    );
    assert_eq!(a["valid"], true, "{a}");
    assert_eq!(
        (&a["origin"], &a["size"]),
        (&json!("countersign.test/log"), &json!(70))
    );
    assert_eq!(a["root"].as_str().unwrap().len(), 64);
    let sigs = a["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2, "{a}");
    assert_eq!(
        (&sigs[0]["role"], &sigs[0]["verified"]),
        (&json!("log"), &json!(true))
    );
    assert_eq!(
        (&sigs[1]["role"], &sigs[1]["verified"]),
        (&json!("witness"), &json!(true))
    );
    assert!(sigs[1]["timestamp"].is_u64(), "{a}");
    // Without the witness key, its line is reported and not verified.
    let a = ask(&json!({"op": "verify_checkpoint", "note": v["note"], "log_key": keys[0]}));
    let sigs = a["signatures"].as_array().unwrap();
    assert_eq!(
        (&sigs[1]["role"], &sigs[1]["verified"]),
        (&json!("unknown key"), &json!(false))
    );
    assert_eq!(sigs[1]["key_id"].as_str().unwrap().len(), 8);
    // Tampered, or checked with another key: invalid, the check named.
    let bad = v["note"].as_str().unwrap().replacen("\n70\n", "\n71\n", 1);
    let a = ask(&json!({"op": "verify_checkpoint", "note": bad, "log_key": keys[0]}));
    assert_eq!(
        (&a["valid"], &a["check"]),
        (&json!(false), &json!("checkpoint")),
        "{a}"
    );
    let a = ask(&json!({"op": "verify_checkpoint", "note": v["note"], "log_key": keys[1]}));
    assert_eq!(a["valid"], false, "{a}");
    let a = ask(&json!({"op": "verify_checkpoint", "note": "no signatures\n", "log_key": keys[0]}));
    assert_eq!(a["valid"], false, "{a}");
}

#[test]
fn verify_inclusion_by_entry_or_leaf_hash() {
    let v = vector("inclusion/valid-5-of-8");
    let n = |x: &Value| {
        x.as_u64()
            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            .unwrap()
    };
    let base = json!({"op": "verify_inclusion", "index": n(&v["index"]), "size": n(&v["tree_size"]), "root": v["root"], "proof": v["proof"]});
    let mut by_entry = base.clone();
    by_entry["entry"] = json!(b64(&v["leaf"]));
    let mut by_hex = base.clone();
    by_hex["entry_hex"] = v["leaf"].clone();
    let mut by_hash = base.clone();
    by_hash["leaf_hash"] = v["leaf_hash"].clone();
    for r in [&by_entry, &by_hex, &by_hash] {
        let a = ask(r);
        assert_eq!(a["valid"], true, "{a}");
        assert_eq!(a["leaf_hash"], v["leaf_hash"]);
    }
    let mut wrong = by_entry.clone();
    wrong["index"] = json!(4);
    let a = ask(&wrong);
    assert_eq!(
        (&a["valid"], &a["check"]),
        (&json!(false), &json!("inclusion")),
        "{a}"
    );
    assert_eq!(a["leaf_hash"], v["leaf_hash"]);
    let mut both = by_entry;
    both["leaf_hash"] = v["leaf_hash"].clone();
    for bad in [
        both,
        base.clone(),
        json!({"op": "verify_inclusion", "leaf_hash": "zz", "index": 0, "size": 1, "root": v["root"], "proof": []}),
        json!({"op": "verify_inclusion", "leaf_hash": v["leaf_hash"], "index": -1, "size": 1, "root": v["root"], "proof": []}),
        json!({"op": "verify_inclusion", "leaf_hash": v["leaf_hash"], "index": 0, "size": 1, "root": v["root"], "proof": "x"}),
        json!({"op": "verify_inclusion", "entry": "not base64!", "index": 0, "size": 1, "root": v["root"], "proof": []}),
    ] {
        assert_eq!(ask(&bad)["valid"], Value::Null, "{bad}");
    }
}

#[test]
fn decode_entry_and_its_leaf_hash() {
    for kind in ["decision", "enrolment", "revocation"] {
        let v = vector(&format!("entries/valid-{kind}"));
        let a = ask(&json!({"op": "decode_entry", "entry": b64(&v["entry"])}));
        assert_eq!(a["valid"], true, "{a}");
        assert_eq!(
            (&a["kind"], &a["fields"]["kind"]),
            (&json!(kind), &json!(kind))
        );
        assert_eq!(a["leaf_hash"], v["leaf_hash"]);
    }
    let v = vector("entries/trailing-bytes");
    let a = ask(&json!({"op": "decode_entry", "entry_hex": v["entry"]}));
    assert_eq!(
        (&a["valid"], &a["check"]),
        (&json!(false), &json!("entry")),
        "{a}"
    );
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("after its last field"),
        "{a}"
    );
    assert_eq!(ask(&json!({"op": "decode_entry"}))["valid"], Value::Null);
}

#[test]
fn requests_that_cannot_be_answered() {
    for (request, says) in [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("[1]", "not a JSON object"),
        (r#"{"op": 1}"#, "\"op\" is not a string"),
        (r#"{"nop": "x"}"#, "missing member \"op\""),
        (r#"{"op": "sign_bundle"}"#, "unknown op \"sign_bundle\""),
        (
            r#"{"op": "verify_bundle", "log_key": "x+00000000+AQ=="}"#,
            "log_key: ",
        ),
        (
            r#"{"op": "verify_bundle", "bundle": 5, "log_key": "countersign.test/log+9b5d646a+AdBKsjJ0K7SrOhNovUYV5ObQIkq3GgFrr4UgozLJd4c3"}"#,
            "neither a string nor an object",
        ),
    ] {
        let a: Value = serde_json::from_str(&handle(request)).unwrap();
        assert_eq!(a["valid"], Value::Null, "{request}: {a}");
        assert!(
            a["error"].as_str().unwrap().contains(says),
            "{request}: {a}"
        );
    }
    let a: Value = serde_json::from_str(&handle_bytes(b"\xff\xfe")).unwrap();
    assert_eq!(a["valid"], Value::Null, "{a}");
    // Over the limit: refused before parsing, whatever it holds.
    let big = format!(
        r#"{{"op": "decode_entry", "entry": "{}"}}"#,
        "A".repeat(MAX_REQUEST_BYTES)
    );
    let a: Value = serde_json::from_str(&handle(&big)).unwrap();
    assert_eq!(a["valid"], Value::Null);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("larger than 4194304 bytes"),
        "{a}"
    );
}
