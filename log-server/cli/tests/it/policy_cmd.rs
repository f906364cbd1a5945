//! `countersign policy check`, run as a binary: a good file's summary, a bad file's line and exit
//! status, and the explanation of a sample request (a rule, no rule, an unevaluable request).

use std::path::Path;
use std::process::{Command, Output};

/// The issue's example policy (2 of the treasury group for agent-pay's payments over 1000).
const EXAMPLE: &str = include_str!("../../../../testvectors/policy-toml/treasury.toml");

/// The line of `EXAMPLE` that starts with `start`, counted from 1.
fn line_of(start: &str) -> usize {
    EXAMPLE.lines().position(|l| l.starts_with(start)).unwrap() + 1
}

fn policy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .arg("policy")
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn out(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap(),
        String::from_utf8(o.stdout.clone()).unwrap(),
        String::from_utf8(o.stderr.clone()).unwrap(),
    )
}

fn payment(client: &str, amount: &str) -> String {
    serde_json::json!({
        "client_id": client,
        "authorization_details": [{"type": "payment_initiation", "instructedAmount": {"amount": amount, "currency": "EUR"}}]
    })
    .to_string()
}

#[test]
fn a_good_file_is_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "policy.toml", EXAMPLE);
    let (code, stdout, stderr) = out(&policy(&[&f]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid policy, 1 group, 1 rule"), "{stdout}");
    assert!(
        stdout.contains("group treasury: apv_t1, apv_t2, apv_t3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rule 1 \"payments over 1000\": when a payment_initiation entry with instructedAmount.amount > 1000, from agent-pay: 2 of 3 approvers (group treasury)"),
        "{stdout}"
    );
    let parsed = countersign_approvals::policy::parse_policy_toml(EXAMPLE).unwrap();
    assert!(
        stdout.contains(&format!("sha256 {}", hex::encode(parsed.hash()))),
        "{stdout}"
    );

    let (code, stdout, _) = out(&policy(&[&f, "--json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["sha256"], hex::encode(parsed.hash()));
    assert_eq!(v["rules"][0]["quorum"], 2);
    assert_eq!(
        v["rules"][0]["approvers"],
        serde_json::json!(["apv_t1", "apv_t2", "apv_t3"])
    );
    assert_eq!(v["policy"]["rules"][0]["when"]["op"], "gt");
}

#[test]
fn a_bad_file_exits_1_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.toml",
        &EXAMPLE.replace("quorum = 2", "quorum = 4"),
    );
    let (code, stdout, stderr) = out(&policy(&[&f]));
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{f}:{}: rule \"payments over 1000\": quorum 4 must be between 1 and the 3 eligible approvers",
            line_of("quorum")
        )
    );
    let f = write(
        dir.path(),
        "typo.toml",
        &EXAMPLE.replace("when.field", "when.feild"),
    );
    let (code, _, stderr) = out(&policy(&[&f]));
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!(
            "{f}:{}: unknown field `feild`",
            line_of("when.field")
        )),
        "{stderr}"
    );
    let f = write(dir.path(), "syntax.toml", "[groups\n");
    let (code, _, stderr) = out(&policy(&[&f]));
    assert_eq!(code, 1);
    assert!(stderr.starts_with(&format!("{f}:1: ")), "{stderr}");

    let (code, stdout, _) = out(&policy(&[&f, "--json"]));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (v["valid"].clone(), v["line"].clone()),
        (false.into(), 1.into())
    );

    // A file that is not there cannot be checked: exit 2, not a verdict on a policy.
    let missing = dir.path().join("missing.toml");
    let (code, _, stderr) = out(&policy(&[missing.to_str().unwrap()]));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn a_request_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "policy.toml", EXAMPLE);

    let (code, stdout, _) = out(&policy(&[
        &f,
        "--request",
        &payment("agent-pay", "1000.01"),
    ]));
    assert_eq!(code, 0);
    assert!(
        stdout.ends_with(
            "request: rule 1 \"payments over 1000\" applies: 2 of apv_t1, apv_t2, apv_t3\n"
        ),
        "{stdout}"
    );

    // 1000.00 is not over 1000, and another client's payment is not the rule's.
    for (client, amount) in [("agent-pay", "1000.00"), ("agent-other", "5000")] {
        let (code, stdout, _) = out(&policy(&[&f, "--request", &payment(client, amount)]));
        assert_eq!(code, 0);
        assert!(
            stdout
                .ends_with("request: no rule applies: the login_hint approver alone (quorum 1)\n"),
            "{stdout}"
        );
    }

    // From a file, with --json.
    let req = write(dir.path(), "req.json", &payment("agent-pay", "2000"));
    let (code, stdout, _) = out(&policy(&[&f, "--json", "--request", &format!("@{req}")]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["request"]["outcome"], "matched");
    assert_eq!(v["request"]["quorum"], 2);
    assert_eq!(v["request"]["require_uv"], true);

    // An amount the rule cannot compare: refused (exit 1), naming the rule and the path.
    let (code, stdout, _) = out(&policy(&[&f, "--request", &payment("agent-pay", "1,500")]));
    assert_eq!(code, 1);
    assert!(
        stdout.contains("request: refused: policy rule \"payments over 1000\" cannot evaluate authorization_details[0].instructedAmount.amount: it is not a decimal"),
        "{stdout}"
    );
    let missing = serde_json::json!({"client_id": "agent-pay", "authorization_details": [{"type": "payment_initiation"}]}).to_string();
    let (code, stdout, _) = out(&policy(&[&f, "--json", "--request", &missing]));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["request"]["outcome"], "error");
    assert!(v["request"]["error"]
        .as_str()
        .unwrap()
        .contains("it is missing"));

    // A request that is not a request: exit 2.
    for bad in [
        "not json",
        r#"{"authorization_details": []}"#,
        r#"{"client_id": "c", "authorization_details": {}}"#,
    ] {
        let (code, _, stderr) = out(&policy(&[&f, "--request", bad]));
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains("--request"), "{stderr}");
    }
}
