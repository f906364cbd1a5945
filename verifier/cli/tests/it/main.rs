//! Runs `countersign-verify` on every generated vector: exit 0 for the valid ones (3 for a valid
//! denial), exit 1 with the failed check named for the invalid ones, exit 2 for usage errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod export;
mod quorum;
mod tiles;

// The directory cargo gives at run time, not the one compiled in: a test binary built from
// another checkout sharing the target directory would otherwise read that checkout's files.
fn vectors() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../../testvectors")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_countersign-verify"))
}

fn run(args: &[String], stdin: Option<&str>) -> Output {
    let mut c = bin();
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

fn write_tmp(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p.display().to_string()
}

fn push(a: &mut Vec<String>, flag: &str, value: String) {
    a.push(flag.into());
    a.push(value);
}

/// The command line (and standard input) for one vector.
fn args_for(kind: &str, v: &Value, tmp: &Path) -> (Vec<String>, Option<String>) {
    let mut a: Vec<String> = vec![];
    let mut stdin = None;
    match kind {
        "inclusion" => {
            push(&mut a, "--leaf", s(&v["leaf"]));
            push(&mut a, "--index", s(&v["index"]));
            push(&mut a, "--tree-size", s(&v["tree_size"]));
            push(&mut a, "--root", s(&v["root"]));
            for p in v["proof"].as_array().unwrap() {
                push(&mut a, "--proof", s(p));
            }
            a.insert(0, "inclusion".into());
        }
        "consistency" => {
            for (flag, key) in [
                ("--old-size", "old_size"),
                ("--old-root", "old_root"),
                ("--new-size", "new_size"),
                ("--new-root", "new_root"),
            ] {
                push(&mut a, flag, s(&v[key]));
            }
            for p in v["proof"].as_array().unwrap() {
                push(&mut a, "--proof", s(p));
            }
            a.insert(0, "consistency".into());
        }
        "checkpoints" => {
            for k in v["keys"].as_array().unwrap() {
                push(&mut a, "--key", s(k));
            }
            a.insert(0, "note".into());
            a.push("-".into());
            stdin = Some(s(&v["note"]));
        }
        "entries" => {
            push(&mut a, "--hex", s(&v["entry"]));
            a.insert(0, "entry".into());
        }
        "assertions" => {
            for (flag, key) in [
                ("--public-key", "public_key"),
                ("--authenticator-data", "authenticator_data"),
                ("--client-data-json", "client_data_json"),
                ("--signature", "signature"),
                ("--rp-id", "rp_id"),
                ("--origin", "origin"),
                ("--challenge", "challenge"),
            ] {
                push(&mut a, flag, s(&v[key]));
            }
            // UV is required by default.
            if !v["require_uv"].as_bool().unwrap() {
                a.push("--allow-no-uv".into());
            }
            a.insert(0, "assertion".into());
        }
        "statements" => {
            a.push("statement".into());
            a.push("-".into());
            if let Some(n) = v.get("nonce") {
                push(&mut a, "--nonce", s(n));
            }
            stdin = Some(match v.get("statement_text") {
                Some(t) => s(t),
                None => v["statement"].to_string(),
            });
        }
        "revocation" => {
            a.push("bundle".into());
            a.push(write_tmp(tmp, "bundle.json", &v["bundle"]));
            push(&mut a, "--log-key", s(&v["log_key"]));
            let lines: Vec<String> = v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| format!("{}\n", s(e)))
                .collect();
            let p = tmp.join("entries.txt");
            std::fs::write(&p, lines.concat()).unwrap();
            push(&mut a, "--entries", p.display().to_string());
            a.push("--trust-bundle-rp".into());
        }
        "bundles" => {
            a.push("bundle".into());
            a.push(write_tmp(tmp, "bundle.json", &v["bundle"]));
            push(&mut a, "--log-key", s(&v["log_key"]));
            // The vectors check a bundle against the relying party it names (the RP mutations
            // break the bundle's own consistency); pinning is tested on its own below.
            a.push("--trust-bundle-rp".into());
            if v.get("require_uv").and_then(Value::as_bool) != Some(true) {
                a.push("--allow-no-uv".into());
            }
            if let Some(action) = v.get("action") {
                push(&mut a, "--action", write_tmp(tmp, "action.json", action));
            }
        }
        _ => panic!("{kind}"),
    }
    (a, stdin)
}

#[test]
fn every_vector_through_the_cli() {
    let tmp = std::env::temp_dir().join(format!("countersign-verify-it-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut n = 0;
    for kind in [
        "inclusion",
        "consistency",
        "checkpoints",
        "entries",
        "assertions",
        "statements",
        "bundles",
        "revocation",
    ] {
        let mut paths: Vec<_> = std::fs::read_dir(vectors().join(kind))
            .unwrap()
            .map(|d| d.unwrap().path())
            .collect();
        paths.sort();
        for p in paths {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            let (args, stdin) = args_for(kind, &v, &tmp);
            let out = run(&args, stdin.as_deref());
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            match v["expected"].as_str().unwrap() {
                // A verified denial is valid evidence on which nothing may act.
                "valid" if v.get("decision").is_some_and(|d| d == "deny") => {
                    assert_eq!(out.status.code(), Some(3), "{}: {stdout}", p.display());
                    assert!(stdout.starts_with("DENIED: "), "{}: {stdout}", p.display());
                }
                "valid" => assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{}: {stdout}{stderr}",
                    p.display()
                ),
                _ => {
                    assert_eq!(
                        out.status.code(),
                        Some(1),
                        "{}: {stdout}{stderr}",
                        p.display()
                    );
                    let want = v["error"].as_str().unwrap();
                    assert!(stdout.starts_with("INVALID ("), "{}: {stdout}", p.display());
                    assert!(
                        stdout.contains(want),
                        "{}: {stdout:?} does not name {want:?}",
                        p.display()
                    );
                }
            }
            n += 1;
        }
    }
    assert!(n > 150, "ran {n} vectors");
    std::fs::remove_dir_all(&tmp).ok();
}

/// A reader that closes its end early (`| head -1`, `| grep -q`) gets the verdict as the exit
/// code, not a panic on the broken pipe (exit 101).
#[test]
fn closed_stdout_keeps_the_verdict() {
    let dir = vectors().join("bundles");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("valid-es256.json")).unwrap())
            .unwrap();
    let tmp = std::env::temp_dir().join(format!("countersign-verify-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (args, _) = args_for("bundles", &v, &tmp);
    for _ in 0..3 {
        let mut child = bin()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the child has started writing (it takes milliseconds to start).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn json_output_and_usage_errors() {
    let dir = vectors().join("bundles");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("valid-es256.json")).unwrap())
            .unwrap();
    let tmp = std::env::temp_dir().join(format!("countersign-verify-json-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (mut args, _) = args_for("bundles", &v, &tmp);
    args.push("--json".into());
    args.push("--tlog-proof".into());
    let out = run(&args, None);
    assert_eq!(out.status.code(), Some(0));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["decision"], "approve");
    assert!(j["tlog_proof"]
        .as_str()
        .unwrap()
        .starts_with("c2sp.org/tlog-proof@v1\nindex 2\n"));

    // An invalid bundle with --json: exit 1, and the JSON names the failed check.
    let bad: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("statement-changed-amount.json")).unwrap(),
    )
    .unwrap();
    let (mut args, _) = args_for("bundles", &bad, &tmp);
    args.push("--json".into());
    let out = run(&args, None);
    assert_eq!(out.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["valid"], false, "{j}");
    assert!(
        j["check"].as_str().is_some_and(|c| !c.is_empty()),
        "the failed check is named: {j}"
    );

    // The human summary says who approved what.
    let (args, _) = args_for("bundles", &v, &tmp);
    let out = run(&args, None);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "APPROVE by approver apv_7f3a9c",
        "client agent-payments",
        "index 2",
        "tree size 5",
    ] {
        assert!(text.contains(needle), "{text}");
    }

    // Usage and I/O errors exit 2.
    for bad in [
        vec![
            "inclusion",
            "--leaf",
            "zz",
            "--index",
            "0",
            "--tree-size",
            "1",
            "--root",
            "00",
        ],
        vec![
            "inclusion",
            "--leaf-hash",
            &"AB".repeat(32),
            "--index",
            "0",
            "--tree-size",
            "1",
            "--root",
            &"00".repeat(32),
        ],
        vec![
            "bundle",
            "/nonexistent/bundle.json",
            "--log-key",
            "x+00000000+AQ==",
        ],
        vec!["note", "--key", "not-a-key", "-"],
        vec!["frobnicate"],
        // Hex that is not hex, or hashes of the wrong length, in every other command.
        vec![
            "consistency",
            "--old-size",
            "1",
            "--old-root",
            "xyz",
            "--new-size",
            "2",
            "--new-root",
            &"00".repeat(32),
        ],
        vec![
            "consistency",
            "--old-size",
            "1",
            "--old-root",
            &"00".repeat(31),
            "--new-size",
            "2",
            "--new-root",
            &"00".repeat(32),
        ],
        vec![
            "assertion",
            "--public-key",
            "not-hex",
            "--authenticator-data",
            "00",
            "--client-data-json",
            "00",
            "--signature",
            "00",
            "--rp-id",
            "example.org",
            "--origin",
            "https://example.org",
            "--challenge",
            "00",
        ],
        vec!["entry", "--hex", "0g"],
        vec!["statement", "/nonexistent/statement.json"],
        vec!["statement", "-", "--nonce", "short"],
        vec!["bundle", "-", "--log-key", "x+00000000+AQ==", "--now", "1"],
    ] {
        let out = run(
            &bad.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            Some(""),
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// The bundle's policy flags and `inclusion --leaf-hash` on valid input: what passes, what fails
/// with the check named (exit 1), and what is a usage error (exit 2).
#[test]
fn bundle_flags_and_leaf_hash() {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("bundles/valid-es256.json")).unwrap(),
    )
    .unwrap();
    let tmp = std::env::temp_dir().join(format!("countersign-verify-flags-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (mut base, _) = args_for("bundles", &v, &tmp);
    base.retain(|a| a != "--trust-bundle-rp" && a != "--allow-no-uv");
    let rp = &v["bundle"]["relying_party"];
    let rp_id = s(&rp["rp_id"]);
    let origin = s(&rp["origins"][0]);
    let expires = v["bundle"]["statement"]["expires_at"].as_u64().unwrap();
    // A well-formed key that signed nothing here.
    let stranger = "witness.test+0c31e31e+AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g";
    let with = |extra: &[String]| {
        let mut a = base.clone();
        a.extend_from_slice(extra);
        // Without a pin of its own, the case trusts the bundle's relying party.
        if !extra.iter().any(|x| x == "--rp-id" || x == "--origin") {
            a.push("--trust-bundle-rp".into());
        }
        a.push("--json".into());
        run(&a, None)
    };
    let strs = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let passes: Vec<Vec<String>> = vec![
        strs(&["--rp-id", &rp_id]),
        strs(&["--origin", &origin]),
        strs(&["--require-uv"]),
        strs(&["--now", &(expires - 1).to_string()]),
        strs(&["--witness", stranger]),
    ];
    for extra in &passes {
        let out = with(extra);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{extra:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fails: Vec<(Vec<String>, &str)> = vec![
        (strs(&["--rp-id", "evil.test"]), "relying party id"),
        (strs(&["--origin", "https://evil.test"]), "origin"),
        (strs(&["--now", &(expires + 1).to_string()]), "expire"),
    ];
    for (extra, word) in &fails {
        let out = with(extra);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["valid"], false, "{j}");
        let said = j["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(said.contains(word), "{extra:?}: {j}");
    }
    for extra in [
        strs(&["--witness", "not-a-key"]),
        strs(&["--origin"]),
        strs(&["--now", "soon"]),
    ] {
        let out = with(&extra);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A decision made without user verification: refused by default (exit 1, the check named),
    // verified with --allow-no-uv.
    let nouv: Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("bundles/uv-missing.json")).unwrap(),
    )
    .unwrap();
    let (mut a, _) = args_for("bundles", &nouv, &tmp);
    assert!(!a.iter().any(|x| x == "--allow-no-uv"), "{a:?}");
    a.push("--json".into());
    let mut allowed = a.clone();
    allowed.push("--allow-no-uv".into());
    let out = run(&allowed, None);
    assert_eq!(out.status.code(), Some(0), "{allowed:?}");
    let out = run(&a, None);
    assert_eq!(out.status.code(), Some(1), "{a:?}");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let said = j["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(said.contains("user verification"), "{j}");

    // inclusion --leaf-hash on a valid proof, and the same proof for another leaf hash.
    for name in ["valid-0-of-1", "valid-5-of-8"] {
        let p = vectors().join(format!("inclusion/{name}.json"));
        let Ok(text) = std::fs::read_to_string(&p) else {
            panic!("no vector {}", p.display())
        };
        let iv: Value = serde_json::from_str(&text).unwrap();
        let (mut a, _) = args_for("inclusion", &iv, &tmp);
        let at = a.iter().position(|x| x == "--leaf").unwrap();
        a[at] = "--leaf-hash".into();
        a[at + 1] = s(&iv["leaf_hash"]);
        assert_eq!(run(&a, None).status.code(), Some(0), "{name}: {a:?}");
        a[at + 1] = "ab".repeat(32);
        assert_eq!(run(&a, None).status.code(), Some(1), "{name}: {a:?}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// `bundle` exits 0 only for the decision expected (an approval unless `--expect` says
/// otherwise), 3 for a verified bundle recording the other one, and always names the decision,
/// the expectation and the members no signature covers.
#[test]
fn bundle_exit_status_follows_the_expected_decision() {
    let read = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(vectors().join(format!("bundles/{name}.json"))).unwrap(),
        )
        .unwrap()
    };
    let (approval, denial) = (read("valid-es256"), read("valid-deny"));
    assert_eq!(denial["bundle"]["statement"]["decision"], "deny");
    let tmp = std::env::temp_dir().join(format!("countersign-verify-exp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let run_with = |v: &Value, name: &str, extra: &[&str]| {
        let mut a = vec![
            "bundle".to_string(),
            write_tmp(&tmp, name, &v["bundle"]),
            "--log-key".into(),
            s(&v["log_key"]),
            "--rp-id".into(),
            "approve.countersign.test".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        run(&a, None)
    };
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();

    // Text: the headline says what was decided, and the unsigned members are named.
    let cases: [(&Value, &[&str], i32, &str); 7] = [
        (
            &approval,
            &[],
            0,
            "OK: evidence verified; the approver APPROVED",
        ),
        (
            &approval,
            &["--expect", "approve"],
            0,
            "OK: evidence verified; the approver APPROVED",
        ),
        (
            &denial,
            &[],
            3,
            "DENIED: evidence verified; the approver refused this action",
        ),
        (
            &denial,
            &["--expect", "deny"],
            0,
            "OK: evidence verified; the approver DENIED",
        ),
        (
            &approval,
            &["--expect", "deny"],
            3,
            "APPROVED, NOT DENIED: ",
        ),
        (
            &approval,
            &["--expect", "any"],
            0,
            "OK: evidence verified; the approver APPROVED",
        ),
        (
            &denial,
            &["--expect", "any"],
            0,
            "OK: evidence verified; the approver DENIED",
        ),
    ];
    for (v, extra, code, headline) in cases {
        let out = run_with(v, "b.json", extra);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {t}");
        assert!(t.starts_with(headline), "{extra:?}: {t}");
        assert!(
            t.contains("\nunsigned:      parties, relying_party.origins (covered by no signature"),
            "{t}"
        );
        assert!(t.contains("\nparties:       {"), "{t}");
    }

    // JSON: valid, the decision, the expectation and whether it was met, the unsigned members.
    for (v, extra, code, decision, expected, met) in [
        (&approval, &[][..], 0, "approve", "approve", true),
        (&denial, &[][..], 3, "deny", "approve", false),
        (&denial, &["--expect", "deny"][..], 0, "deny", "deny", true),
        (
            &approval,
            &["--expect", "deny"][..],
            3,
            "approve",
            "deny",
            false,
        ),
        (&denial, &["--expect", "any"][..], 0, "deny", "any", true),
    ] {
        let mut e = extra.to_vec();
        e.push("--json");
        let out = run_with(v, "b.json", &e);
        assert_eq!(out.status.code(), Some(code), "{e:?}");
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["valid"], true, "{j}");
        assert_eq!(j["decision"], decision, "{j}");
        assert_eq!(j["expected"], expected, "{j}");
        assert_eq!(j["as_expected"], met, "{j}");
        assert_eq!(
            j["unsigned"],
            serde_json::json!(["parties", "relying_party.origins"])
        );
        assert_eq!(j["parties"], v["bundle"]["parties"]);
        assert_eq!(j["statement"], v["bundle"]["statement"]);
    }

    // A denial never passes the execution check: exit 3 before the action is compared; and
    // --action asks for an approval, so it goes with no other expectation (usage, exit 2).
    let action = write_tmp(&tmp, "action.json", &approval["action"]);
    let out = run_with(&denial, "b.json", &["--action", &action]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    for other in ["deny", "any"] {
        let out = run_with(
            &approval,
            "b.json",
            &["--action", &action, "--expect", other],
        );
        assert_eq!(out.status.code(), Some(2), "{other}");
    }
    let out = run_with(&approval, "b.json", &["--expect", "maybe"]);
    assert_eq!(out.status.code(), Some(2));
    // A forged denial (one statement field changed) is invalid, not a denial.
    let mut forged = denial.clone();
    forged["bundle"]["statement"]["binding_message"] = "Pay EUR 1.00 to ACME GmbH".into();
    let out = run_with(&forged, "b.json", &["--expect", "deny"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // The help text documents every exit status.
    let out = run(&["bundle".to_string(), "--help".to_string()], None);
    let help = text(&out);
    for needle in [
        "Exit status:",
        "  0  ",
        "  1  ",
        "  2  ",
        "  3  ",
        "--expect",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// `bundle` with the relying party given, or not, in each way.
#[test]
fn bundle_needs_a_pinned_or_explicitly_trusted_relying_party() {
    let tmp = std::env::temp_dir().join(format!("countersign-verify-rp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let load = |name: &str| -> Value {
        let p = vectors().join(format!("bundles/{name}.json"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let valid = load("valid-es256");
    let file = write_tmp(&tmp, "valid.json", &valid["bundle"]);
    let base = |extra: &[&str]| -> Output {
        let mut a: Vec<String> = vec!["bundle".into(), file.clone()];
        push(&mut a, "--log-key", s(&valid["log_key"]));
        a.extend(extra.iter().map(|x| x.to_string()));
        run(&a, None)
    };
    // Neither a pin nor --trust-bundle-rp: a usage error that says what to pass.
    let out = base(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--rp-id") && stderr.contains("--trust-bundle-rp"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    // Pinned by RP ID or by origin.
    for pin in [
        &["--rp-id", "approve.countersign.test"][..],
        &["--origin", "https://approve.countersign.test"][..],
    ] {
        let out = base(pin);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{pin:?}: {stdout}");
        assert!(!stdout.contains("NOT PINNED"), "{stdout}");
    }
    let out = base(&["--rp-id", "evil.example"]);
    assert_eq!(out.status.code(), Some(1));
    // Trusted: verified, and said loudly, in text and in JSON.
    let out = base(&["--trust-bundle-rp"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .contains("RELYING PARTY NOT PINNED"),
        "{stdout}"
    );
    let out = base(&["--trust-bundle-rp", "--json"]);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["rp_pinned"], false, "{j}");
    let out = base(&["--rp-id", "approve.countersign.test", "--json"]);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["rp_pinned"], true, "{j}");
    // Both at once is a contradiction.
    let out = base(&["--trust-bundle-rp", "--rp-id", "approve.countersign.test"]);
    assert_eq!(out.status.code(), Some(2));
    // relying_party.origins is unsigned: a pinned origin takes its place, so a bundle listing
    // the wrong one still verifies when the passkey signed on the pinned origin.
    let wrong = load("wrong-origin");
    let wf = write_tmp(&tmp, "wrong.json", &wrong["bundle"]);
    let mut a: Vec<String> = vec!["bundle".into(), wf];
    push(&mut a, "--log-key", s(&wrong["log_key"]));
    push(
        &mut a,
        "--origin",
        "https://approve.countersign.test".into(),
    );
    let out = run(&a, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(&tmp).ok();
}

/// User verification is required unless `--allow-no-uv`; `--require-uv` is still accepted.
#[test]
fn user_verification_is_required_by_default() {
    let tmp = std::env::temp_dir().join(format!("countersign-verify-uv-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let p = vectors().join("bundles/uv-missing.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let file = write_tmp(&tmp, "nouv.json", &v["bundle"]);
    for (extra, code) in [
        (&[][..], 1),
        (&["--require-uv"][..], 1),
        (&["--allow-no-uv"][..], 0),
        (&["--allow-no-uv", "--require-uv"][..], 2),
    ] {
        let mut a: Vec<String> = vec!["bundle".into(), file.clone()];
        push(&mut a, "--log-key", s(&v["log_key"]));
        push(&mut a, "--rp-id", "approve.countersign.test".into());
        a.extend(extra.iter().map(|x| x.to_string()));
        let out = run(&a, None);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {stdout}");
        if code == 1 {
            assert!(stdout.contains("user verification"), "{stdout}");
        }
    }
    // The assertion subcommand: the EdDSA vector made without UV.
    let p = vectors().join("assertions/eddsa-valid-uv-not-required.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    for (extra, code) in [(None, 1), (Some("--allow-no-uv"), 0)] {
        let mut a: Vec<String> = vec!["assertion".into()];
        for (flag, key) in [
            ("--public-key", "public_key"),
            ("--authenticator-data", "authenticator_data"),
            ("--client-data-json", "client_data_json"),
            ("--signature", "signature"),
            ("--rp-id", "rp_id"),
            ("--origin", "origin"),
            ("--challenge", "challenge"),
        ] {
            push(&mut a, flag, s(&v[key]));
        }
        a.extend(extra.map(String::from));
        let out = run(&a, None);
        assert_eq!(out.status.code(), Some(code), "{extra:?}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// Writes `entries` as the C2SP entry bundles a mirror of the log keeps under `dir`: full
/// bundles `tile/entries/<N>`, and the last one partial (`<N>.p/<W>`) or, with `full_last`, the
/// full bundle of a larger tree (the verifier reads its first W entries).
fn write_tiles(dir: &Path, entries: &[Vec<u8>], full_last: bool) {
    let bundle = |chunk: &[Vec<u8>]| {
        let mut out = Vec::new();
        for e in chunk {
            out.extend_from_slice(&(e.len() as u16).to_be_bytes());
            out.extend_from_slice(e);
        }
        out
    };
    let tiles = dir.join("tile/entries");
    std::fs::create_dir_all(&tiles).unwrap();
    for (n, chunk) in entries.chunks(256).enumerate() {
        assert!(n < 1000, "small logs only");
        let name = format!("{n:03}");
        if chunk.len() == 256 {
            std::fs::write(tiles.join(&name), bundle(chunk)).unwrap();
        } else if full_last {
            let mut padded = chunk.to_vec();
            padded.resize(256, b"a later entry".to_vec());
            std::fs::write(tiles.join(&name), bundle(&padded)).unwrap();
        } else {
            let p = tiles.join(format!("{name}.p"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join(chunk.len().to_string()), bundle(chunk)).unwrap();
        }
    }
}

/// `bundle --entries` reads a mirror's entry bundles as well as hex lines; without it the output
/// says that revocation was not checked; a revoked credential is invalid evidence (exit 1), a
/// missing or broken entries file a usage error (exit 2).
#[test]
fn bundle_revocation_check_reads_entry_bundles() {
    let tmp = std::env::temp_dir().join(format!("countersign-verify-rev-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let load = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(vectors().join(format!("revocation/{name}.json"))).unwrap(),
        )
        .unwrap()
    };
    let entries_of = |v: &Value| -> Vec<Vec<u8>> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| hex::decode(e.as_str().unwrap()).unwrap())
            .collect()
    };
    let base = |v: &Value, extra: &[&str]| -> Vec<String> {
        let mut a = vec![
            "bundle".to_string(),
            write_tmp(&tmp, "b.json", &v["bundle"]),
            "--log-key".into(),
            s(&v["log_key"]),
            "--rp-id".into(),
            "approve.countersign.test".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();

    // Without --entries: verified, and the output says revocation was not checked.
    let ok = load("valid-revoked-after");
    let out = run(&base(&ok, &[]), None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("\nrevocation:    NOT CHECKED"),
        "{}",
        text(&out)
    );
    let out = run(&base(&ok, &["--json"]), None);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["revocation"], serde_json::json!({"checked": false}));

    for full_last in [false, true] {
        let dir = tmp.join(format!("mirror-{full_last}"));
        let _ = std::fs::remove_dir_all(&dir);
        write_tiles(&dir, &entries_of(&ok), full_last);
        let d = dir.display().to_string();
        let out = run(&base(&ok, &["--entries", &d]), None);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            text(&out).contains("not revoked before the decision (revoked afterwards, at index 4)"),
            "{}",
            text(&out)
        );
        let out = run(&base(&ok, &["--entries", &d, "--json"]), None);
        let j: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            j["revocation"],
            serde_json::json!({"checked": true, "entries": 6, "revoked_after": 4})
        );

        let revoked = load("revoked-before");
        let dir = tmp.join(format!("mirror-revoked-{full_last}"));
        let _ = std::fs::remove_dir_all(&dir);
        write_tiles(&dir, &entries_of(&revoked), full_last);
        let out = run(
            &base(&revoked, &["--entries", &dir.display().to_string()]),
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out)
                .starts_with("INVALID (revocation): the credential was revoked at log index 2"),
            "{}",
            text(&out)
        );
    }

    // A mirror missing its bundles, or a line that is not hex: usage or I/O errors (exit 2).
    let empty = tmp.join("empty-mirror");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(
        &base(&ok, &["--entries", &empty.display().to_string()]),
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let bad = tmp.join("bad.txt");
    std::fs::write(&bad, "00zz\n").unwrap();
    let out = run(&base(&ok, &["--entries", &bad.display().to_string()]), None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(&base(&ok, &["--entries", "/nonexistent/entries"]), None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    std::fs::remove_dir_all(&tmp).ok();
}

/// `--policy` on `bundle` and `note`: a 2-of-2 policy accepts the bundle whose checkpoint both
/// witnesses cosigned, refuses it with one cosignature removed or altered (exit 1, check
/// `policy`), `quorum none` accepts the bare bundle, and a bad policy file is unusable (exit 2).
#[test]
fn policy_quorum_on_bundles_and_notes() {
    use countersign_testvectors::generate::cosign;
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("bundles/valid-es256.json")).unwrap(),
    )
    .unwrap();
    let tmp =
        std::env::temp_dir().join(format!("countersign-verify-policy-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let log_key = s(&v["log_key"]);
    let note = s(&v["bundle"]["checkpoint"]);
    let body = &note[..note.find("\n\n").unwrap() + 1];
    let (one, wa) = cosign(&note, body, "wa.test", 41, 1_700_000_000);
    let (both, wb) = cosign(&one, body, "wb.test", 42, 1_700_000_100);
    let policy = |quorum: &str| {
        let p = tmp.join(format!("policy-{}.txt", quorum.replace(' ', "-")));
        std::fs::write(
            &p,
            format!(
                "# two witnesses, both needed\nlog {log_key}\nwitness A {wa}\nwitness B {wb}\n\
                 group both all A B\n{quorum}\n"
            ),
        )
        .unwrap();
        p.to_string_lossy().into_owned()
    };
    let bundle_with = |name: &str, checkpoint: &str| {
        let mut b = v["bundle"].clone();
        b["checkpoint"] = checkpoint.into();
        write_tmp(&tmp, name, &b)
    };
    let verify = |file: &str, policy: &str| {
        run(
            &[
                "bundle".into(),
                file.into(),
                "--policy".into(),
                policy.into(),
                "--trust-bundle-rp".into(),
                "--allow-no-uv".into(),
                "--json".into(),
            ],
            None,
        )
    };
    let json = |out: &Output| -> Value { serde_json::from_slice(&out.stdout).unwrap() };

    // Both cosignatures, no --log-key: the policy's log is used.
    let out = verify(&bundle_with("both.json", &both), &policy("quorum both"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        json(&out)["policy"]["cosigned_by"],
        serde_json::json!(["A", "B"])
    );

    // One removed.
    let out = verify(&bundle_with("one.json", &one), &policy("quorum both"));
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["check"], "policy", "{j}");
    assert!(s(&j["error"]).contains("cosigned only by A"), "{j}");

    // One altered (a byte of B's signature, the note's last line).
    let mut altered = both.clone().into_bytes();
    let at = altered.len() - 4;
    altered[at] = if altered[at] == b'x' { b'y' } else { b'x' };
    let altered = String::from_utf8(altered).unwrap();
    let out = verify(
        &bundle_with("altered.json", &altered),
        &policy("quorum both"),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Without cosignatures: refused under the quorum, accepted under `quorum none`.
    let bare = bundle_with("bare.json", &note);
    assert_eq!(verify(&bare, &policy("quorum both")).status.code(), Some(1));
    let out = verify(&bare, &policy("quorum none"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A bad policy file names its line.
    let bad = tmp.join("bad-policy.txt");
    std::fs::write(
        &bad,
        format!("log {log_key}\ngroup g any nobody\nquorum g\n"),
    )
    .unwrap();
    let out = verify(&bundle_with("both2.json", &both), &bad.to_string_lossy());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));

    // `note --policy` on the checkpoints alone.
    let note_check = |text: &str| {
        run(
            &[
                "note".into(),
                "--policy".into(),
                policy("quorum both"),
                "-".into(),
                "--json".into(),
            ],
            Some(text),
        )
    };
    assert_eq!(note_check(&both).status.code(), Some(0));
    let out = note_check(&one);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["check"], "policy");
    let _ = std::fs::remove_dir_all(&tmp);
}
