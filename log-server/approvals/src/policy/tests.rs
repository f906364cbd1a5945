#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign_verifier::{Outcome, Unevaluable};
use serde_json::json;

use super::*;

/// The example of issue 18, as written there.
pub(crate) const EXAMPLE: &str = r#"[groups]
treasury = ["apv_t1", "apv_t2", "apv_t3"]

[[rules]]
name = "payments over 1000"
when.type = "payment_initiation"          # an authorization_details type
when.field = "instructedAmount.amount"    # a path into that entry
when.gt = "1000"                          # decimal comparison (also ge, lt, le, eq, in)
when.clients = ["agent-pay"]              # optional
approvers = "treasury"                    # a group, or a list of approver ids
quorum = 2                                # distinct approvers needed
require_uv = true                         # optional; also require_attestation, max_expiry
"#;

fn refused(text: &str) -> (Option<usize>, String) {
    let e = parse_policy_toml(text).unwrap_err();
    (e.line, e.to_string())
}

#[test]
fn the_issues_example_parses_and_evaluates() {
    let p = parse_policy_toml(EXAMPLE).unwrap();
    let r = &p.policy().rules[0];
    assert_eq!(r.name, "payments over 1000");
    assert_eq!(r.when.op, Some(Op::Gt));
    assert_eq!(r.when.value.as_deref(), Some("1000"));
    assert_eq!(r.quorum, 2);
    assert!(r.require_uv && !r.require_attestation);
    let details =
        json!([{"type": "payment_initiation", "instructedAmount": {"amount": "1000.01"}}]);
    let Outcome::Matched(m) = p.evaluate("agent-pay", &details).unwrap() else {
        panic!("no match")
    };
    assert_eq!(m.approvers, ["apv_t1", "apv_t2", "apv_t3"]);
    // Same policy, same bytes: a second parse, and the same policy with another layout.
    assert_eq!(parse_policy_toml(EXAMPLE).unwrap().hash(), p.hash());
    let relaid = r#"
[[rules]]
quorum = 2
approvers = "treasury"
name = "payments over 1000"
require_uv = true
require_attestation = false
[rules.when]
clients = ["agent-pay"]
gt = 1000
field = "instructedAmount.amount"
type = "payment_initiation"

[groups]
treasury = ["apv_t1", "apv_t2", "apv_t3"]
"#;
    assert_eq!(
        parse_policy_toml(relaid).unwrap().canonical_json(),
        p.canonical_json()
    );
}

#[test]
fn every_key_of_the_file() {
    let text = r#"
[groups]
platform = ["apv_p1", "apv_p2"]

[[rules]]
name = "deploys"
when.type = "deploy"
when.field = "target.tier"
when.in = ["1", 2]
approvers = ["apv_p2", "apv_p1", "apv_sre"]
quorum = 3
require_attestation = true
max_expiry = 600

[[rules]]
name = "refunds"
when = { type = "refund", field = "amount", le = "-0.5" }
approvers = "platform"
quorum = 1
"#;
    let p = parse_policy_toml(text).unwrap();
    let rules = &p.policy().rules;
    assert_eq!(rules[0].when.op, Some(Op::In));
    assert_eq!(
        rules[0].when.values,
        Some(vec!["1".to_string(), "2".to_string()])
    );
    assert_eq!(rules[0].max_expiry, Some(600));
    assert!(rules[0].require_attestation);
    assert_eq!(rules[1].when.op, Some(Op::Le));
    let Outcome::Matched(m) = p
        .evaluate("any", &json!([{"type": "deploy", "target": {"tier": 2}}]))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((m.index, m.quorum, m.max_expiry), (0, 3, Some(600)));
    assert_eq!(m.approvers, ["apv_p1", "apv_p2", "apv_sre"]);
    // An unevaluable entry is an error naming the rule and path.
    let e = p
        .evaluate("any", &json!([{"type": "refund", "amount": "ten"}]))
        .unwrap_err();
    assert!(
        matches!(&e, countersign_verifier::EvalError::Unevaluable { rule, reason: Unevaluable::NotDecimal(_), .. } if rule == "refunds"),
        "{e}"
    );
    // An empty file is a valid, empty policy.
    assert!(parse_policy_toml("").unwrap().policy().rules.is_empty());
}

#[test]
fn a_syntax_error_names_its_line() {
    let (line, msg) = refused("[groups]\ntreasury = [\"apv_t1\"\n\n[[rules]]\n");
    assert!(matches!(line, Some(2..=4)), "{line:?} {msg}");
    let (line, _) = refused("[groups]\na = [\"x\"]\n\nthis is not toml\n");
    assert_eq!(line, Some(4));
}

#[test]
fn an_unknown_key_names_its_line() {
    let (line, msg) = refused(&EXAMPLE.replace("quorum = 2", "quorum = 2\nquorom = 2"));
    assert_eq!(line, Some(12), "{msg}");
    assert!(msg.contains("quorom"), "{msg}");
    let (line, msg) = refused(&EXAMPLE.replace("when.gt", "when.gte"));
    assert_eq!(line, Some(8), "{msg}");
    assert!(msg.contains("gte"), "{msg}");
    let (line, msg) = refused(&format!("version = 1\n{EXAMPLE}"));
    assert_eq!(line, Some(1), "{msg}");
}

#[test]
fn a_float_or_wrong_type_names_its_line() {
    let (line, msg) = refused(&EXAMPLE.replace("when.gt = \"1000\"", "when.gt = 1000.5"));
    assert_eq!(line, Some(8), "{msg}");
    assert!(msg.contains("not an exact decimal"), "{msg}");
    let (line, msg) = refused(&EXAMPLE.replace("quorum = 2", "quorum = -1"));
    assert_eq!(line, Some(11), "{msg}");
    let (line, msg) = refused(&EXAMPLE.replace("approvers = \"treasury\"", "approvers = 3"));
    assert_eq!(line, Some(10), "{msg}");
}

#[test]
fn a_bad_rule_names_the_line_of_its_key() {
    let second = format!(
        "{EXAMPLE}\n[[rules]]\nname = \"second\"\nwhen.type = \"x\"\napprovers = \"treasury\"\nquorum = 4\n"
    );
    // Lines: EXAMPLE has 12 lines, a blank line, then [[rules]] at 14, quorum at 18.
    let (line, msg) = refused(&second);
    assert_eq!(line, Some(18), "{msg}");
    assert_eq!(
        msg,
        "line 18: rule \"second\": quorum 4 must be between 1 and the 3 eligible approvers"
    );
    let (line, msg) =
        refused(&EXAMPLE.replace("approvers = \"treasury\"", "approvers = \"tresury\""));
    assert_eq!(line, Some(10), "{msg}");
    assert!(msg.contains("\"tresury\""), "{msg}");
    let (line, msg) = refused(&EXAMPLE.replace("\"1000\"", "\"1e3\""));
    assert!(matches!(line, Some(5..=9)), "{line:?} {msg}");
    assert!(msg.contains("not a decimal"), "{msg}");
    let (line, msg) =
        refused(&EXAMPLE.replace("when.gt = \"1000\"", "when.gt = \"1\"\nwhen.lt = \"5\""));
    assert!(matches!(line, Some(5..=9)), "{line:?} {msg}");
    assert!(msg.contains("at most one"), "{msg}");
    let (line, msg) = refused(&format!("{EXAMPLE}max_expiry = 0\n"));
    assert_eq!(line, Some(13), "{msg}");
    let dup = format!("{EXAMPLE}\n[[rules]]\nname = \"payments over 1000\"\nwhen.type = \"x\"\napprovers = \"treasury\"\nquorum = 1\n");
    let (line, msg) = refused(&dup);
    assert_eq!(line, Some(15), "{msg}");
}

#[test]
fn a_bad_group_names_its_line() {
    let (line, msg) = refused(&EXAMPLE.replace("\"apv_t3\"", "\"bob@example.com\""));
    assert_eq!(line, Some(2), "{msg}");
    assert!(msg.contains("group \"treasury\""), "{msg}");
    let (line, msg) = refused(&EXAMPLE.replace("\"apv_t3\"", "\"apv_t1\""));
    assert_eq!(line, Some(2), "{msg}");
    assert!(msg.contains("twice"), "{msg}");
}

#[test]
fn an_oversized_file_is_refused() {
    let big = format!("# {}\n", "x".repeat(MAX_POLICY_FILE_BYTES));
    assert_eq!(
        parse_policy_toml(&big).unwrap_err().kind,
        PolicyFileErrorKind::TooLarge
    );
}

/// `spec/policy.md` shows this file, and its canonical form and hash as the verifier computes them
/// (`countersign-spec-examples`): the TOML front end reads the document's file to those bytes.
#[test]
fn the_spec_example_reads_to_the_documented_bytes() {
    let spec = include_str!("../../../../spec/policy.md");
    assert!(spec.contains(&format!("```toml\n{EXAMPLE}```")));
    let p = parse_policy_toml(EXAMPLE).unwrap();
    let canon = String::from_utf8(p.canonical_json()).unwrap();
    assert!(spec.contains(&format!("```\n{canon}\n```")));
    assert!(spec.contains(&format!("```\n{}\n```", hex::encode(p.hash()))));
}
