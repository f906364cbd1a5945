//! `verify_evidence`: an evidence bundle (`spec/evidence-bundle.md`) checked in process by the
//! verifier crate, as `countersign-verify bundle` checks it, down to the log's checkpoint
//! signature.

use countersign_verifier::{
    bundle_report, BundlePolicy, Decision, EvidenceBundle, Expectation, VerifierKey,
};
use serde_json::{json, Value};

/// What [`countersign_verifier::EvidenceBundle::verify`] checks, in its order, for the verdict.
pub const CHECKED: [&str; 6] = [
    "the checkpoint is signed by the log key",
    "the statement names the checkpoint's log",
    "the decision and enrolment entries are in the checkpointed tree (RFC 6962 inclusion proofs)",
    "the decision relies on the bundle's enrolment, logged earlier, of the same credential",
    "SHA-256 of the RFC 8785 canonical statement is the statement hash in the decision entry, with the same approver and decision, logged between request and expiry",
    "the approver's passkey signed nonce || SHA-256(statement) (WebAuthn assertion: type, challenge, origin, rpIdHash, flags, signature)",
];

/// The verdict on `bytes` (a bundle as JSON) under `log_key`, with the relying party pinned to
/// `rp_id`/`origin` when given. Never fails: a bundle that is not one is invalid.
pub fn verdict(
    bytes: &[u8],
    log_key: &VerifierKey,
    key_source: &str,
    rp_id: Option<&str>,
    origin: Option<&str>,
) -> Value {
    let rp_pinned = rp_id.is_some() || origin.is_some();
    let base = json!({
        "checked": CHECKED,
        "log_key": log_key.to_vkey(),
        "log_key_source": key_source,
        "rp_pinned": rp_pinned,
    });
    let invalid = |reason: String| {
        let mut v = base.clone();
        v["valid"] = json!(false);
        v["reason"] = json!(reason);
        v
    };
    let bundle = match EvidenceBundle::from_json(bytes) {
        Ok(b) => b,
        Err(e) => return invalid(e.to_string()),
    };
    let policy = BundlePolicy {
        rp_id,
        origin,
        ..BundlePolicy::default()
    };
    match bundle.verify(log_key, &policy) {
        Err(e) => invalid(e.to_string()),
        Ok(v) => {
            let mut out = base;
            out["valid"] = json!(true);
            out["decision"] = json!(v.decision.as_str());
            out["approved"] = json!(v.decision == Decision::Approve);
            out["statement_sha256"] = json!(hex::encode(v.statement_hash));
            out["log_index"] = json!(v.decision_index);
            out["request_id"] = json!(v.statement.request_id);
            out["authorization_details"] = v.statement.authorization_details.clone();
            out["report"] = bundle_report(&bundle, &v, Expectation::Any);
            if !rp_pinned {
                out["warning"] = json!(format!(
                    "relying party not pinned: accepted the bundle's own rp_id {:?} (start \
                     countersign-mcp with --rp-id or --origin to pin it)",
                    bundle.relying_party.rp_id
                ));
            }
            out
        }
    }
}

/// The text rendering of a verdict.
pub fn to_text(v: &Value) -> String {
    if v["valid"] == json!(true) {
        let mut t = format!(
            "VALID: a logged {} decision (log index {}, statement_sha256 {}), verified against \
             the log key {} ({}).",
            v["decision"].as_str().unwrap_or("?"),
            v["log_index"],
            v["statement_sha256"].as_str().unwrap_or("?"),
            v["log_key"].as_str().unwrap_or("?"),
            v["log_key_source"].as_str().unwrap_or("?"),
        );
        if let Some(w) = v["warning"].as_str() {
            t.push_str(&format!("\nWARNING: {w}"));
        }
        t.push_str("\nChecked:");
        for c in CHECKED {
            t.push_str(&format!("\n- {c}"));
        }
        t
    } else {
        format!(
            "INVALID: {}\nThis bundle is no evidence of a decision.",
            v["reason"].as_str().unwrap_or("?")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector() -> (Value, VerifierKey) {
        let v: Value = serde_json::from_str(include_str!(
            "../../../testvectors/bundles/valid-es256.json"
        ))
        .unwrap();
        let key = VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap();
        (v["bundle"].clone(), key)
    }

    #[test]
    fn the_valid_vector_verifies_and_pinning_is_reported() {
        let (b, key) = vector();
        let bytes = b.to_string().into_bytes();
        let v = verdict(&bytes, &key, "pinned", None, None);
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["decision"], "approve");
        assert_eq!(v["approved"], true);
        assert_eq!(v["log_index"], 2);
        assert_eq!(v["rp_pinned"], false);
        assert!(v["warning"].is_string());
        assert_eq!(v["statement_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(
            v["authorization_details"],
            b["statement"]["authorization_details"]
        );
        let v = verdict(
            &bytes,
            &key,
            "pinned",
            Some("approve.countersign.test"),
            None,
        );
        assert_eq!((&v["valid"], &v["rp_pinned"]), (&json!(true), &json!(true)));
        assert!(v.get("warning").is_none());
        assert!(to_text(&v).starts_with("VALID"));
    }

    #[test]
    fn tampered_bundles_and_wrong_pins_are_invalid() {
        let (b, key) = vector();
        let mut t = b.clone();
        t["statement"]["binding_message"] = json!("Pay ACME 9999 EUR");
        let v = verdict(t.to_string().as_bytes(), &key, "pinned", None, None);
        assert_eq!(v["valid"], false);
        assert!(v["reason"].as_str().unwrap().contains("statement"), "{v}");
        assert!(v.get("decision").is_none());
        assert!(to_text(&v).starts_with("INVALID"));
        let v = verdict(
            b.to_string().as_bytes(),
            &key,
            "pinned",
            Some("evil.test"),
            None,
        );
        assert_eq!(v["valid"], false);
        assert!(verdict(b"not json", &key, "pinned", None, None)["valid"] == false);
    }
}
