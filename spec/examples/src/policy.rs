//! The worked examples of `spec/policy.md`: the example policy in its canonical form and
//! hash, what it says about sample requests, and the decimal comparisons, all computed by the
//! verifier.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use countersign_verifier as cv;
use cv::{
    ApprovalPolicy, ApprovalPolicyErrorKind as K, ApprovalRule, Approvers, Condition, Decimal,
    DecimalError, Op, Outcome, ValidatedPolicy,
};
use serde_json::json;

/// The policy of `spec/policy.md`'s example file, built from the verifier's types (the
/// approvals crate's test checks that the TOML in the document reads to the same bytes).
fn example() -> ValidatedPolicy {
    let mut groups = BTreeMap::new();
    groups.insert(
        "treasury".to_string(),
        vec!["apv_t1".into(), "apv_t2".into(), "apv_t3".into()],
    );
    ApprovalPolicy::new(
        groups,
        vec![ApprovalRule {
            name: "payments over 1000".into(),
            when: Condition {
                kind: "payment_initiation".into(),
                field: Some("instructedAmount.amount".into()),
                op: Some(Op::Gt),
                value: Some("1000".into()),
                values: None,
                clients: Some(vec!["agent-pay".into()]),
            },
            approvers: Approvers::Group("treasury".into()),
            quorum: 2,
            require_uv: true,
            require_attestation: false,
            max_expiry: None,
        }],
    )
    .validate()
    .unwrap()
}

/// The fragments `{{policy_*}}` of `spec/templates/policy.md`.
pub fn fragments() -> Vec<(&'static str, String)> {
    let p = example();
    let canon = p.canonical_json();
    let mut out = vec![
        ("policy_canon", String::from_utf8(canon.clone()).unwrap()),
        ("policy_canon_len", canon.len().to_string()),
        ("policy_hash", hex::encode(p.hash())),
    ];
    let pretty: serde_json::Value = serde_json::from_slice(&canon).unwrap();
    out.push((
        "policy_pretty",
        serde_json::to_string_pretty(&pretty).unwrap(),
    ));
    assert_eq!(ValidatedPolicy::from_json(&canon).unwrap(), p);

    let pay = |amount: serde_json::Value| json!([{"type": "payment_initiation", "instructedAmount": {"amount": amount, "currency": "EUR"}}]);
    let cases = [
        ("agent-pay", pay(json!("1500.00"))),
        ("agent-pay", pay(json!(1000.5))),
        ("agent-pay", pay(json!("1000.00"))),
        ("agent-other", pay(json!("5000"))),
        ("agent-pay", json!([{"type": "account_information"}])),
        ("agent-pay", pay(json!("1,500"))),
        ("agent-pay", pay(json!(null))),
        (
            "agent-pay",
            json!([{"type": "payment_initiation", "instructedAmount": {"currency": "EUR"}}]),
        ),
        (
            "agent-pay",
            json!([
                {"type": "payment_initiation", "instructedAmount": {"amount": "20"}},
                {"type": "payment_initiation", "instructedAmount": {"amount": "3000"}}
            ]),
        ),
    ];
    let mut t = String::from("| client_id | authorization_details | outcome |\n|---|---|---|\n");
    for (client, details) in cases {
        let outcome = match p.evaluate(client, &details) {
            Ok(Outcome::NoRuleMatched) => {
                "no rule: the `login_hint` approver, quorum 1".to_string()
            }
            Ok(Outcome::Matched(m)) => format!(
                "rule `{}` (index {}): quorum {} of {}{}",
                m.rule,
                m.index,
                m.quorum,
                m.approvers.join(", "),
                if m.require_uv { ", UV required" } else { "" }
            ),
            Err(e) => format!("**error**: {e}"),
        };
        let _ = writeln!(t, "| `{client}` | `{details}` | {outcome} |");
    }
    out.push(("policy_eval", t));

    let mut d = String::from("| a | b | a compared with b |\n|---|---|---|\n");
    for (a, b) in [
        ("1000", "1000.00"),
        ("999.999", "1000"),
        ("0.1", "0.10"),
        ("-1", "0"),
        ("-0", "0"),
        ("0.45", "0.5"),
        ("007", "7"),
    ] {
        let o = Decimal::parse(a).unwrap().cmp(&Decimal::parse(b).unwrap());
        let _ = writeln!(d, "| `{a}` | `{b}` | {o:?} |");
    }
    out.push(("policy_decimals", d));

    let mut r = String::from("| text | refused because |\n|---|---|\n");
    for t in ["", "+5", "1e3", ".5", "5.", "1,000", " 1", "0x10"] {
        let e: DecimalError = Decimal::parse(t).unwrap_err();
        let _ = writeln!(r, "| `\"{t}\"` | {e} |");
    }
    let long = "1".repeat(41);
    let _ = writeln!(r, "| 41 digits | {} |", Decimal::parse(&long).unwrap_err());
    out.push(("policy_decimal_refusals", r));

    let mut e = String::from("| variant | message |\n|---|---|\n");
    for kind in [
        K::UnsupportedVersion(2),
        K::TooMany("rules", cv::MAX_POLICY_RULES),
        K::BadGroupName,
        K::NoApprovers,
        K::BadApproverId("bob@example.com".into()),
        K::DuplicateApprover("apv_t1".into()),
        K::BadRuleName,
        K::DuplicateRuleName("payments over 1000".into()),
        K::UnknownGroup("tresury".into()),
        K::BadQuorum {
            quorum: 4,
            eligible: 3,
        },
        K::BadType,
        K::BadField,
        K::FieldWithoutComparison,
        K::ComparisonWithoutField,
        K::BadOperand(Op::Gt),
        K::BadOperand(Op::In),
        K::BadDecimal("1e3".into(), DecimalError::BadCharacter),
        K::BadClients,
        K::BadMaxExpiry(0),
    ] {
        let msg = kind.to_string();
        let name = format!("{kind:?}");
        let name = name
            .split(['(', ' '])
            .next()
            .unwrap_or_default()
            .to_string();
        let _ = writeln!(e, "| `{name}` | {msg} |");
    }
    out.push(("policy_errors", e));
    out
}
