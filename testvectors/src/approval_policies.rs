//! `testvectors/approval-policies/`: approval policies in their JSON form (`spec/policy.md`),
//! valid ones with their canonical bytes, hash and the outcome of sample requests, invalid ones
//! with the rule they break. Each expected outcome is written here by hand and checked against
//! the verifier before a file is written.

use countersign_verifier::{Outcome, ValidatedPolicy};
use serde_json::{json, Value};

use crate::generate::{put, Files};

fn pay(client: &str, amount: Value) -> Value {
    json!({
        "client_id": client,
        "authorization_details": [
            {"type": "payment_initiation", "instructedAmount": {"amount": amount, "currency": "EUR"}}
        ]
    })
}

/// A request and what the policy must say: `{"rule": name, "index", "quorum", "approvers"}`,
/// `{"rule": null}` for no rule, or `{"error": phrase}`.
fn request(req: Value, expect: Value) -> Value {
    json!({"request": req, "expect": expect})
}

fn matched(rule: &str, index: usize, quorum: u32, approvers: &[&str]) -> Value {
    json!({"rule": rule, "index": index, "quorum": quorum, "approvers": approvers})
}

/// What the verifier says about a request, in the vectors' `expect` form.
fn outcome(p: &ValidatedPolicy, req: &Value) -> Value {
    let client = req["client_id"].as_str().unwrap_or_default();
    match p.evaluate(client, &req["authorization_details"]) {
        Ok(Outcome::NoRuleMatched) => json!({"rule": null}),
        Ok(Outcome::Matched(m)) => {
            json!({"rule": m.rule, "index": m.index, "quorum": m.quorum, "approvers": m.approvers})
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

fn valid(f: &mut Files, name: &str, description: &str, policy: Value, requests: Vec<Value>) {
    let bytes = serde_json::to_vec(&policy).unwrap_or_default();
    let p = ValidatedPolicy::from_json(&bytes);
    assert!(
        p.is_ok(),
        "{name}: the generator's valid policy is refused: {p:?}"
    );
    let Ok(p) = p else { return };
    for r in &requests {
        let got = outcome(&p, &r["request"]);
        let want = &r["expect"];
        let agrees = match (want.get("error"), got.get("error")) {
            (Some(w), Some(g)) => g
                .as_str()
                .unwrap_or_default()
                .contains(w.as_str().unwrap_or("?")),
            _ => &got == want,
        };
        assert!(agrees, "{name}: {} gives {got}, not {want}", r["request"]);
    }
    let canonical = String::from_utf8(p.canonical_json()).unwrap_or_default();
    put(
        f,
        format!("approval-policies/{name}.json"),
        json!({
            "description": description,
            "expected": "valid",
            "flags": [],
            "policy": policy,
            "canonical_json": canonical,
            "sha256": hex::encode(p.hash()),
            "requests": requests,
        }),
    );
}

fn invalid(f: &mut Files, flag: &str, description: &str, policy: Value, error: &str) {
    let bytes = serde_json::to_vec(&policy).unwrap_or_default();
    let r = ValidatedPolicy::from_json(&bytes);
    assert!(
        matches!(&r, Err(e) if e.to_string().contains(error)),
        "{flag}: {r:?} is not an error saying {error:?}"
    );
    put(
        f,
        format!("approval-policies/invalid-{flag}.json"),
        json!({
            "description": description,
            "expected": "invalid",
            "flags": [flag],
            "policy": policy,
            "error": error,
        }),
    );
}

/// The example of `spec/policy.md` (issue 18).
fn example() -> Value {
    json!({
        "version": 1,
        "groups": {"treasury": ["apv_t1", "apv_t2", "apv_t3"]},
        "rules": [{
            "name": "payments over 1000",
            "when": {
                "type": "payment_initiation",
                "field": "instructedAmount.amount",
                "op": "gt",
                "value": "1000",
                "clients": ["agent-pay"]
            },
            "approvers": "treasury",
            "quorum": 2,
            "require_uv": true
        }]
    })
}

fn with(mut v: Value, path: &[&str], new: Value) -> Value {
    let mut at = &mut v;
    for (i, seg) in path.iter().enumerate() {
        at = if let Ok(n) = seg.parse::<usize>() {
            &mut at[n]
        } else if i + 1 == path.len() {
            if new.is_null() {
                if let Some(m) = at.as_object_mut() {
                    m.remove(*seg);
                }
                return v;
            }
            &mut at[*seg]
        } else {
            &mut at[*seg]
        };
    }
    *at = new;
    v
}

/// All approval policy vectors.
pub(crate) fn approval_policies(f: &mut Files) {
    const T: [&str; 3] = ["apv_t1", "apv_t2", "apv_t3"];
    valid(
        f,
        "valid-example",
        "spec/policy.md's example: payments over 1000 by agent-pay need 2 of the treasury group",
        example(),
        vec![
            request(
                pay("agent-pay", json!("1500.00")),
                matched("payments over 1000", 0, 2, &T),
            ),
            request(pay("agent-pay", json!("1000.00")), json!({"rule": null})),
            request(pay("agent-pay", json!(1000)), json!({"rule": null})),
            request(
                pay("agent-pay", json!(1000.01)),
                matched("payments over 1000", 0, 2, &T),
            ),
            request(pay("agent-other", json!("5000")), json!({"rule": null})),
            request(
                pay("agent-pay", json!("1e4")),
                json!({"error": "authorization_details[0].instructedAmount.amount: it is not a decimal"}),
            ),
            request(
                json!({"client_id": "agent-pay", "authorization_details": [{"type": "payment_initiation"}]}),
                json!({"error": "instructedAmount.amount: it is missing"}),
            ),
            request(
                pay("agent-pay", json!(true)),
                json!({"error": "it is a boolean, not a decimal string or number"}),
            ),
        ],
    );
    valid(
        f,
        "valid-first-match",
        "two rules over one type: the first that matches applies; `in` and listed approvers",
        json!({
            "version": 1,
            "groups": {"platform": ["apv_p2", "apv_p1"]},
            "rules": [
                {
                    "name": "production deploys",
                    "when": {"type": "deploy", "field": "tier", "op": "in", "values": ["0", "1"]},
                    "approvers": "platform",
                    "quorum": 2,
                    "require_attestation": true,
                    "max_expiry": 600
                },
                {
                    "name": "any deploy",
                    "when": {"type": "deploy"},
                    "approvers": ["apv_p1", "apv_dev"],
                    "quorum": 1
                }
            ]
        }),
        vec![
            request(
                json!({"client_id": "ci", "authorization_details": [{"type": "deploy", "tier": 1}]}),
                matched("production deploys", 0, 2, &["apv_p1", "apv_p2"]),
            ),
            request(
                json!({"client_id": "ci", "authorization_details": [{"type": "deploy", "tier": "2"}]}),
                matched("any deploy", 1, 1, &["apv_dev", "apv_p1"]),
            ),
            request(
                json!({"client_id": "ci", "authorization_details": [{"type": "deploy"}]}),
                json!({"error": "policy rule \"production deploys\" cannot evaluate authorization_details[0].tier: it is missing"}),
            ),
            request(
                json!({"client_id": "ci", "authorization_details": [{"type": "read"}]}),
                json!({"rule": null}),
            ),
        ],
    );
    let e = example();
    invalid(
        f,
        "quorum-above-eligible",
        "a quorum of 4 over a group of 3",
        with(e.clone(), &["rules", "0", "quorum"], json!(4)),
        "quorum 4 must be between 1 and the 3 eligible approvers",
    );
    invalid(
        f,
        "quorum-zero",
        "a quorum of 0",
        with(e.clone(), &["rules", "0", "quorum"], json!(0)),
        "quorum 0 must be between 1",
    );
    invalid(
        f,
        "unknown-group",
        "approvers names a group that is not defined",
        with(e.clone(), &["rules", "0", "approvers"], json!("tresury")),
        "not defined",
    );
    invalid(
        f,
        "bad-approver-id",
        "an e-mail address as an approver id",
        with(
            e.clone(),
            &["groups", "treasury"],
            json!(["apv_t1", "bob@example.com"]),
        ),
        "not a valid approver id",
    );
    invalid(
        f,
        "duplicate-approver",
        "an approver listed twice in a group",
        with(
            e.clone(),
            &["groups", "treasury"],
            json!(["apv_t1", "apv_t1"]),
        ),
        "listed twice",
    );
    invalid(
        f,
        "exponent-literal",
        "a literal with an exponent",
        with(e.clone(), &["rules", "0", "when", "value"], json!("1e3")),
        "is not a decimal",
    );
    invalid(
        f,
        "plus-literal",
        "a literal with a leading +",
        with(e.clone(), &["rules", "0", "when", "value"], json!("+1000")),
        "is not a decimal",
    );
    invalid(
        f,
        "field-without-comparison",
        "when.field without op",
        with(e.clone(), &["rules", "0", "when", "op"], Value::Null),
        "needs a comparison",
    );
    invalid(
        f,
        "in-without-list",
        "op in with a single value",
        with(e.clone(), &["rules", "0", "when", "op"], json!("in")),
        "in needs a non-empty list",
    );
    let mut two = example();
    let again = two["rules"][0].clone();
    if let Some(rules) = two["rules"].as_array_mut() {
        rules.push(again);
    }
    invalid(
        f,
        "duplicate-rule-name",
        "two rules with one name",
        two,
        "another rule is named",
    );
    invalid(
        f,
        "unknown-member",
        "a member the format does not define",
        with(e.clone(), &["rules", "0", "when", "colour"], json!("red")),
        "unknown field",
    );
    invalid(
        f,
        "unknown-version",
        "version 2",
        with(e, &["version"], json!(2)),
        "unsupported policy version 2",
    );
}
