//! How a verified evidence bundle is reported (`spec/evidence-bundle.md` B13 to B15): the
//! decision a caller expects, the members no signature covers, and one JSON rendering of the
//! verdict that `countersign-verify` and the WebAssembly verifier both print.

use core::fmt;
use std::vec::Vec;

use serde_json::{json, Value};

use crate::bundle::{EvidenceBundle, VerifiedBundle};
use crate::entry::Decision;

/// The members of a bundle that no signature or hash covers (B14), as JSON paths. `parties`
/// names who the opaque ids stand for; `relying_party.origins` is the bundle's own list of
/// allowed origins, while the origin the passkey signed is [`VerifiedBundle::origin`]. Anyone
/// holding the bundle can change them without the verification noticing.
pub const UNSIGNED_BUNDLE_MEMBERS: [&str; 2] = ["parties", "relying_party.origins"];

/// The decision a caller acts on (B13). A verified bundle whose decision is not the expected one
/// is reported as such, so that a script checking only "is it verified" cannot act on a denial.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expectation {
    /// Only an approval is what the caller wants (the default: an executor about to act).
    #[default]
    Approve,
    /// Only a denial (an auditor confirming that a request was refused).
    Deny,
    /// Either decision (an auditor checking that evidence is genuine, whatever it says).
    Any,
}

/// An expectation other than `approve`, `deny` or `any`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownExpectation;

impl fmt::Display for UnknownExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the expected decision is one of approve, deny or any")
    }
}

impl std::error::Error for UnknownExpectation {}

impl Expectation {
    /// Parses `approve`, `deny` or `any`.
    pub fn parse(s: &str) -> Result<Self, UnknownExpectation> {
        match s {
            "approve" => Ok(Expectation::Approve),
            "deny" => Ok(Expectation::Deny),
            "any" => Ok(Expectation::Any),
            _ => Err(UnknownExpectation),
        }
    }

    /// `approve`, `deny` or `any`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Expectation::Approve => "approve",
            Expectation::Deny => "deny",
            Expectation::Any => "any",
        }
    }

    /// Whether `decision` is what the caller expects.
    pub fn admits(&self, decision: Decision) -> bool {
        match self {
            Expectation::Approve => decision == Decision::Approve,
            Expectation::Deny => decision == Decision::Deny,
            Expectation::Any => true,
        }
    }
}

/// The verdict on a bundle that verified (B15), as one JSON object: `valid` (true), the decision
/// and whether it is the `expected` one (`as_expected`), the statement and every value
/// [`VerifiedBundle`] holds, byte strings in lowercase hex, the witnesses that cosigned, the
/// unsigned members ([`UNSIGNED_BUNDLE_MEMBERS`]) and, if the bundle has it, `parties` as given.
/// `quorum` and `approvals` (every approving decision in log order) are always present;
/// `approval_policy` (index, sha256, rule, quorum, eligible) for a version 2 bundle.
pub fn bundle_report(bundle: &EvidenceBundle, v: &VerifiedBundle, expect: Expectation) -> Value {
    let s = &v.statement;
    let cosignatures: Vec<Value> = v
        .cosignatures
        .iter()
        .map(|c| {
            json!({
                "name": c.key.name(),
                "key_id": std::format!("{:08x}", c.key.id()),
                "timestamp": c.timestamp,
            })
        })
        .collect();
    let mut out = json!({
        "valid": true,
        "decision": v.decision.as_str(),
        "expected": expect.as_str(),
        "as_expected": expect.admits(v.decision),
        "approver_id": v.approver_id,
        "client_id": s.client_id,
        "request_id": s.request_id,
        // A struct of strings, numbers and a JSON value always serialises.
        "statement": serde_json::to_value(s).unwrap_or(Value::Null),
        "statement_hash": hex::encode(v.statement_hash),
        "authorization_details": s.authorization_details,
        "log_origin": s.log_origin,
        "decision_index": v.decision_index,
        "decision_leaf_hash": v.decision_leaf_hash.to_hex(),
        "enrolment_index": v.enrolment_index,
        "decided_at_ms": v.decided_at_ms,
        "enrolled_at_ms": v.enrolled_at_ms,
        "tree_size": v.tree_size,
        "root": v.root.to_hex(),
        "algorithm": v.algorithm,
        "user_verified": v.user_verified,
        "origin": v.origin,
        "rp_id": bundle.relying_party.rp_id,
        "cosignatures": cosignatures,
        "unsigned": UNSIGNED_BUNDLE_MEMBERS,
    });
    let approvals: Vec<Value> = v
        .approvals
        .iter()
        .map(|a| {
            json!({
                "approver_id": a.approver_id,
                "decision_index": a.decision_index,
                "enrolment_index": a.enrolment_index,
                "decided_at_ms": a.decided_at_ms,
                "user_verified": a.user_verified,
            })
        })
        .collect();
    if let Some(o) = out.as_object_mut() {
        o.insert("bundle_version".into(), json!(bundle.version));
        o.insert("quorum".into(), json!(s.quorum()));
        o.insert("approvals".into(), Value::Array(approvals));
        if let Some(p) = &v.policy {
            o.insert(
                "approval_policy".into(),
                json!({
                    "index": p.index,
                    "sha256": hex::encode(p.sha256),
                    "logged_at_ms": p.logged_at_ms,
                    "rule": p.rule,
                    "quorum": p.quorum,
                    "eligible": p.eligible,
                }),
            );
        }
        if let Some(parties) = &bundle.parties {
            o.insert("parties".into(), parties.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn expectations() {
        for (s, e) in [
            ("approve", Expectation::Approve),
            ("deny", Expectation::Deny),
            ("any", Expectation::Any),
        ] {
            assert_eq!(Expectation::parse(s), Ok(e));
            assert_eq!(e.as_str(), s);
        }
        assert_eq!(Expectation::parse("Approve"), Err(UnknownExpectation));
        assert_eq!(Expectation::default(), Expectation::Approve);
        assert!(Expectation::Approve.admits(Decision::Approve));
        assert!(!Expectation::Approve.admits(Decision::Deny));
        assert!(Expectation::Deny.admits(Decision::Deny));
        assert!(!Expectation::Deny.admits(Decision::Approve));
        assert!(
            Expectation::Any.admits(Decision::Approve) && Expectation::Any.admits(Decision::Deny)
        );
    }

    #[test]
    fn report_of_the_vector() {
        let v: Value =
            serde_json::from_str(include_str!("../../testvectors/bundles/valid-es256.json"))
                .unwrap();
        let b = EvidenceBundle::from_json(v["bundle"].to_string().as_bytes()).unwrap();
        let key = crate::note::VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap();
        let verified = b
            .verify(&key, &crate::bundle::BundlePolicy::default())
            .unwrap();
        let r = bundle_report(&b, &verified, Expectation::Approve);
        assert_eq!(
            (&r["valid"], &r["decision"]),
            (&json!(true), &json!("approve"))
        );
        assert_eq!(
            (&r["expected"], &r["as_expected"]),
            (&json!("approve"), &json!(true))
        );
        assert_eq!(r["unsigned"], json!(["parties", "relying_party.origins"]));
        assert_eq!(r["parties"], v["bundle"]["parties"]);
        assert_eq!(r["statement"], v["bundle"]["statement"]);
        assert_eq!(r["decision_index"], 2);
        assert_eq!(r["root"], json!(verified.root.to_hex()));
        assert_eq!(r["approver_id"], json!("apv_7f3a9c"));
        assert_eq!((&r["quorum"], &r["bundle_version"]), (&json!(1), &json!(1)));
        assert_eq!(r["approvals"][0]["decision_index"], 2);
        assert_eq!(r["approvals"].as_array().map(Vec::len), Some(1));
        assert!(r.get("approval_policy").is_none());
        let r = bundle_report(&b, &verified, Expectation::Deny);
        assert_eq!(
            (&r["expected"], &r["as_expected"]),
            (&json!("deny"), &json!(false))
        );
        let mut without = b.clone();
        without.parties = None;
        assert!(bundle_report(&without, &verified, Expectation::Any)
            .get("parties")
            .is_none());
    }
}
