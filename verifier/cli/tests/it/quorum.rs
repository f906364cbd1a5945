//! `countersign-verify bundle` on version 2 (quorum) bundles: what it shows of the rule, the
//! quorum and each approval, in text and JSON, and the exit status of each failure.

use serde_json::Value;

use crate::{run, s, vectors, write_tmp};

fn read(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(vectors().join(format!("bundles/{name}.json"))).unwrap(),
    )
    .unwrap()
}

fn verify(v: &Value, extra: &[&str]) -> std::process::Output {
    // Its own directory: the tests run in parallel.
    let tmp = tempfile::tempdir().unwrap();
    let mut a = vec![
        "bundle".to_string(),
        write_tmp(tmp.path(), "bundle.json", &v["bundle"]),
        "--log-key".into(),
        s(&v["log_key"]),
        "--rp-id".into(),
        "approve.countersign.test".into(),
    ];
    a.extend(extra.iter().map(|x| x.to_string()));
    run(&a, None)
}

#[test]
fn a_quorum_bundle_shows_the_rule_and_every_approval() {
    let v = read("quorum-valid-2-of-3");
    let out = verify(&v, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with(
            "OK: evidence verified; 2 distinct approvers APPROVED this action (quorum 2)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "\napproval rule: \"payments over 1000\" (quorum 2 of the 3 eligible approvers \
             apv_t1, apv_t2, apv_t3; policy entry at index 1, sha256 "
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "\napprovals:     2 of 2 needed, distinct approvers: apv_t1 (index 7, enrolment 2, \
             user verified: true), apv_t2 (index 8, enrolment 3, user verified: true)"
        ),
        "{text}"
    );
    assert!(
        text.contains("decision:      APPROVE by approver apv_t2 "),
        "{text}"
    );

    let out = verify(&v, &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["bundle_version"], 2);
    assert_eq!(j["quorum"], 2);
    assert_eq!(j["approver_id"], "apv_t2");
    let approvals: Vec<(&str, u64)> = j["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["approver_id"].as_str().unwrap(),
                a["decision_index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(approvals, [("apv_t1", 7), ("apv_t2", 8)]);
    let p = &j["approval_policy"];
    assert_eq!(
        (&p["index"], &p["rule"], &p["quorum"]),
        (
            &Value::from(1),
            &Value::from("payments over 1000"),
            &Value::from(2)
        )
    );
    assert_eq!(
        p["eligible"],
        serde_json::json!(["apv_t1", "apv_t2", "apv_t3"])
    );
    assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn a_quorum_denial_and_a_no_rule_approval() {
    let out = verify(&read("quorum-valid-denial"), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.starts_with("DENIED: "), "{text}");
    assert!(!text.contains("\napprovals:"), "{text}");
    let out = verify(
        &read("quorum-valid-denial"),
        &["--expect", "deny", "--json"],
    );
    assert_eq!(out.status.code(), Some(0));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["approvals"], serde_json::json!([]));
    assert_eq!(j["approver_id"], "apv_t3");

    let out = verify(&read("quorum-valid-no-rule"), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("OK: evidence verified; the approver APPROVED this action"),
        "{text}"
    );
    assert!(
        text.contains("\napproval rule: none matched (the named approver alone) (quorum 1 of the 1 eligible approvers apv_7f3a9c;"),
        "{text}"
    );
}

#[test]
fn every_quorum_failure_exits_1_naming_it() {
    for (name, phrase) in [
        ("quorum-approval-removed", "quorum not met: 2 approvals needed, 1 present"),
        (
            "quorum-non-eligible-approver",
            "approver \"apv_7f3a9c\" is not one of the statement's eligible approvers",
        ),
        ("quorum-lowered", "does not hash to the statement hash"),
        ("quorum-duplicate-approver", "approver \"apv_t1\" approved more than once"),
        (
            "quorum-other-policy-quorum",
            "the logged policy gives quorum 3, the statement says 2",
        ),
        (
            "quorum-policy-wrong-index",
            "the statement names the policy entry at log index 1, the bundle's policy entry is at 0",
        ),
    ] {
        let out = verify(&read(name), &["--json"]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["valid"], false, "{name}");
        assert_eq!(j["check"], "bundle", "{name}");
        assert!(
            j["error"].as_str().unwrap().contains(phrase),
            "{name}: {j}"
        );
    }
}
