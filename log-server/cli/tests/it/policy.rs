//! `countersign serve --policy FILE` (issue 18) with the real binary: a malformed file refused
//! at start with its line; the policy logged as a policy entry (kind 4, its canonical bytes)
//! before it is in force; SIGHUP refusing a malformed file (old policy kept, nothing logged),
//! logging a changed one and logging nothing for the same one; restarts that reuse the entry,
//! or log the empty policy when started without --policy; `GET /v1/admin/policy` and
//! `countersign policy show` (server and data directory); the monitor's policy-changed notices;
//! a policy record that disagrees with the log stopping the start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use countersign_approvals::policy::parse_policy_toml;
use countersign_verifier::{Entry, ValidatedPolicy};
use serde_json::Value;

use crate::common::Receiver;
use crate::process::free_port;
use crate::web::get_text;

const V1: &str = r#"[groups]
treasury = ["apv_t1", "apv_t2", "apv_t3"]

[[rules]]
name = "payments over 1000"
when.type = "payment_initiation"
when.field = "instructedAmount.amount"
when.gt = "1000"
approvers = "treasury"
quorum = 2
"#;

/// V1 with its quorum raised and a second rule.
fn v2() -> String {
    format!(
        "{}\n[[rules]]\nname = \"deploys\"\nwhen.type = \"deploy\"\napprovers = [\"apv_p1\"]\nquorum = 1\n",
        V1.replace("quorum = 2", "quorum = 3")
    )
}

/// A string where the quorum should be: refused at line 3.
const BAD: &str =
    "[[rules]]\nname = \"r\"\nquorum = \"two\"\nwhen.type = \"x\"\napprovers = [\"apv_a\"]\n";

fn policy_of(text: &str) -> ValidatedPolicy {
    parse_policy_toml(text).unwrap()
}

fn bin() -> PathBuf {
    env!("CARGO_BIN_EXE_countersign").into()
}

/// `countersign serve --policy ...` with its standard error in a file; killed when dropped.
struct Served {
    child: Option<Child>,
    data: PathBuf,
    log: PathBuf,
    url: String,
    http: reqwest::Client,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Served {
    /// Starts the server on `data` (standard error appended to `log`) and waits until it
    /// answers.
    async fn start(data: &Path, log: &Path, policy: Option<&Path>) -> Served {
        let port = free_port();
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")]);
        if let Some(p) = policy {
            cmd.arg("--policy").arg(p);
        }
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = cmd
            .env("RUST_LOG", "info")
            .env_remove("COUNTERSIGN_POLICY")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut s = Served {
            child: Some(child),
            data: data.to_owned(),
            log: log.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = s.http.get(format!("{}/healthz", s.url)).send().await {
                if r.status() == 200 {
                    return s;
                }
            }
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited ({st}):\n{}", s.stderr());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", s.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn token_file(&self) -> PathBuf {
        self.data.join("admin.token")
    }

    fn admin(&self) -> String {
        std::fs::read_to_string(self.token_file())
            .unwrap()
            .trim()
            .to_owned()
    }

    fn signal(&self, sig: &str) {
        let id = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([sig, &id])
            .status()
            .unwrap()
            .success());
    }

    /// SIGHUP, then waits until the server's log has `marker` once more than before.
    async fn hup_until(&self, marker: &str) {
        let before = self.stderr().matches(marker).count();
        self.signal("-HUP");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.stderr().matches(marker).count() <= before {
            assert!(
                Instant::now() < deadline,
                "no {marker:?} after SIGHUP:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, and waits for a clean exit.
    fn stop(&mut self) {
        self.signal("-TERM");
        let st = self.child.take().unwrap().wait().unwrap();
        assert!(st.success(), "stopped with {st}:\n{}", self.stderr());
    }

    /// The tree size of the served checkpoint.
    async fn tree_size(&self) -> u64 {
        let text = get_text(&self.http, &format!("{}/checkpoint", self.url)).await;
        text.lines().nth(1).unwrap().parse().unwrap()
    }

    /// The log's entries `[0, size)`, from the C2SP entry bundle (the tests' logs stay below
    /// 256 entries).
    async fn entries(&self) -> Vec<Vec<u8>> {
        let size = self.tree_size().await;
        assert!(size > 0 && size < 256);
        let bundle = self
            .http
            .get(format!("{}/tile/entries/000.p/{size}", self.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut rest = &bundle[..];
        while !rest.is_empty() {
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            out.push(rest[2..2 + n].to_vec());
            rest = &rest[2 + n..];
        }
        assert_eq!(out.len() as u64, size);
        out
    }

    /// `GET /v1/admin/policy` with `token`: status and JSON.
    async fn policy_api(&self, token: Option<&str>) -> (u16, Value) {
        let mut r = self.http.get(format!("{}/v1/admin/policy", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> String {
        get_text(&self.http, &format!("{}/metrics", self.url)).await
    }
}

/// The policy entry at `index`: it decodes as kind 4 and holds exactly `policy`'s canonical
/// bytes.
fn assert_policy_entry(entries: &[Vec<u8>], index: usize, policy: &ValidatedPolicy) {
    match Entry::decode(&entries[index]).unwrap() {
        Entry::Policy(p) => {
            assert_eq!(entries[index][1], 4, "kind byte of entry {index}");
            assert_eq!(p.policy, policy.canonical_json(), "bytes of entry {index}");
        }
        other => panic!("entry {index} is a {} entry", other.kind_name()),
    }
}

/// `countersign ARGS...` to completion.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(bin())
            .args(&args)
            .env("RUST_LOG", "warn")
            .env_remove("COUNTERSIGN_POLICY")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// `countersign policy show --url ... --token-file ...`: exit status and standard output.
async fn show_remote(s: &Served, json: bool) -> (i32, String) {
    let mut args = vec![
        "policy".into(),
        "show".into(),
        "--url".into(),
        s.url.clone(),
        "--token-file".into(),
        s.token_file().display().to_string(),
    ];
    if json {
        args.push("--json".into());
    }
    let out = run(args).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `countersign serve --data-dir DATA --policy FILE` on a free port, run to its exit: a start
/// these tests expect to be refused.
async fn serve_refused(data: &Path, policy: &Path) -> Output {
    run(vec![
        "serve".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--policy".into(),
        policy.display().to_string(),
    ])
    .await
}

/// `countersign monitor --once` of the log at `url`, with the policy and state under `mon`.
async fn monitor_once(url: &str, mon: &Path, extra: &[String]) -> Output {
    let mut args = vec![
        "monitor".into(),
        "--once".into(),
        "--log".into(),
        url.to_owned(),
        "--policy".into(),
        mon.join("policy").display().to_string(),
        "--state".into(),
        mon.join("state").display().to_string(),
    ];
    args.extend_from_slice(extra);
    run(args).await
}

/// `countersign policy show --data-dir DIR`: exit status, standard output and error.
async fn show_local(data: &Path) -> (i32, String, String) {
    let out = run(vec![
        "policy".into(),
        "show".into(),
        "--data-dir".into(),
        data.display().to_string(),
    ])
    .await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_malformed_policy_file_stops_the_start_with_its_line_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, BAD).unwrap();
    let data = dir.path().join("data");
    let out = serve_refused(&data, &file).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3: ", file.display())),
        "no FILE:LINE in: {stderr}"
    );
    assert!(
        !data.exists(),
        "the refused start created the data directory"
    );

    // A file that cannot be read is refused the same way, naming it.
    let missing = dir.path().join("missing.toml");
    let out = serve_refused(&data, &missing).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot read", missing.display())),
        "{stderr}"
    );
    assert!(!data.exists());
}

#[tokio::test]
async fn the_policy_is_logged_before_it_is_in_force_reloaded_on_sighup_and_withdrawn_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let (v1, v2_policy) = (policy_of(V1), policy_of(&v2()));
    let (h1, h2) = (hex::encode(v1.hash()), hex::encode(v2_policy.hash()));
    std::fs::write(&file, V1).unwrap();

    // Start with a valid file: one policy entry, the file's canonical bytes, in force.
    let mut s = Served::start(&data, &log, Some(&file)).await;
    assert_eq!(s.tree_size().await, 1);
    assert_policy_entry(&s.entries().await, 0, &v1);
    let (status, body) = s.policy_api(Some(&s.admin())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["index"], 0);
    assert_eq!(body["sha256"], h1.as_str());
    assert!(body["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        ValidatedPolicy::from_json(&serde_json::to_vec(&body["policy"]).unwrap()).unwrap(),
        v1
    );
    let (status, body) = s.policy_api(None).await;
    assert_eq!(status, 401, "{body}");
    // An auditor may read it too, and `policy show` takes an auditor's token.
    let made: Value = s
        .http
        .post(format!("{}/v1/admin/auditors", s.url))
        .bearer_auth(s.admin())
        .json(&serde_json::json!({"name": "audit-co"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auditor = made["token"].as_str().unwrap().to_owned();
    let (status, body) = s.policy_api(Some(&auditor)).await;
    assert_eq!((status, body["index"].as_u64()), (200, Some(0)), "{body}");
    let auditor_file = dir.path().join("auditor.token");
    std::fs::write(&auditor_file, format!("{auditor}\n")).unwrap();
    let out = run(vec![
        "policy".into(),
        "show".into(),
        "--url".into(),
        s.url.clone(),
        "--token-file".into(),
        auditor_file.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("sha256 {h1}")));
    let (status, _) = s.policy_api(Some("not-the-token")).await;
    assert_eq!(status, 401);
    let (code, out) = show_remote(&s, false).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("policy in force: log index 0, since "),
        "{out}"
    );
    assert!(out.contains(&format!("sha256 {h1}")), "{out}");
    assert!(out.contains("1 group, 1 rule"), "{out}");
    assert!(
        out.contains("rule 1 \"payments over 1000\": when a payment_initiation entry with instructedAmount.amount > 1000: 2 of 3 approvers (group treasury)"),
        "{out}"
    );

    // SIGHUP with a malformed file: refused with its line, the old policy stays, nothing logged.
    std::fs::write(&file, BAD).unwrap();
    s.hup_until("policy reload refused").await;
    assert!(
        s.stderr().contains(&format!("{}:3: ", file.display())),
        "{}",
        s.stderr()
    );
    assert_eq!(s.tree_size().await, 1);
    assert_eq!(
        s.policy_api(Some(&s.admin())).await.1["sha256"],
        h1.as_str()
    );
    assert!(
        s.metrics()
            .await
            .contains("countersign_policy_reloads_total{result=\"refused\"} 1"),
        "{}",
        s.metrics().await
    );

    // SIGHUP with a changed file: a new policy entry, in force.
    std::fs::write(&file, v2()).unwrap();
    s.hup_until("policy reloaded").await;
    assert_eq!(s.tree_size().await, 2);
    assert_policy_entry(&s.entries().await, 1, &v2_policy);
    let body = s.policy_api(Some(&s.admin())).await.1;
    assert_eq!(
        (body["index"].as_u64(), body["sha256"].as_str()),
        (Some(1), Some(h2.as_str()))
    );
    let (code, out) = show_remote(&s, true).await;
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["in_force"], true);
    assert_eq!(shown["index"], 1);
    assert_eq!(shown["sha256"], h2.as_str());
    assert_eq!(shown["rules"].as_array().unwrap().len(), 2);

    // SIGHUP with the same file: nothing logged.
    s.hup_until("policy unchanged").await;
    assert_eq!(s.tree_size().await, 2);
    let m = s.metrics().await;
    assert!(
        m.contains("countersign_policy_reloads_total{result=\"reloaded\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("countersign_policy_reloads_total{result=\"unchanged\"} 1"),
        "{m}"
    );

    // Restart with the same file: the entry is reused.
    s.stop();
    let (code, out, err) = show_local(&data).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("policy in force: log index 1, since "),
        "{out}"
    );
    assert!(out.contains(&format!("sha256 {h2}")), "{out}");
    let mut s = Served::start(&data, &log, Some(&file)).await;
    assert_eq!(s.tree_size().await, 2);
    assert_eq!(s.policy_api(Some(&s.admin())).await.1["index"], 1);

    // Restart without --policy: the empty policy is logged, and none is in force.
    s.stop();
    let s = Served::start(&data, &log, None).await;
    assert_eq!(s.tree_size().await, 3);
    let entries = s.entries().await;
    let empty = countersign_approvals::policy::serve::empty_policy().unwrap();
    assert_policy_entry(&entries, 2, &empty);
    let (status, body) = s.policy_api(Some(&s.admin())).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no_policy");
    assert_eq!(body["error_description"], "no approval policy is in force");
    let (code, out) = show_remote(&s, false).await;
    assert_eq!((code, out.as_str()), (0, "no policy in force\n"));
    let (code, out) = show_remote(&s, true).await;
    assert_eq!((code, out.as_str()), (0, "{\"in_force\":false}\n"));
    // A data directory a server holds cannot be read: exit 2, saying to ask the server.
    let (code, _, err) = show_local(&data).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ask it with --url instead"), "{err}");

    // Each policy entry logged is a policy.changed row of the audit feed, with its hash.
    let feed: Value = s
        .http
        .get(format!("{}/v1/audit/events", s.url))
        .bearer_auth(s.admin())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let he = hex::encode(empty.hash());
    let changes: Vec<(u64, String)> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event_type"] == "policy.changed")
        .map(|r| {
            (
                r["log_index"].as_u64().unwrap(),
                r["statement_sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(changes, [(0, h1.clone()), (1, h2.clone()), (2, he.clone())]);

    // The monitor reports each policy entry as a notice (stdout, alerts.jsonl, webhook) and
    // exits 0.
    let mon = dir.path().join("monitor");
    std::fs::create_dir(&mon).unwrap();
    let vkey = std::fs::read_to_string(data.join("log.vkey")).unwrap();
    std::fs::write(
        mon.join("policy"),
        format!("log {} {}\nquorum none\n", vkey.trim(), s.url),
    )
    .unwrap();
    std::fs::write(mon.join("secret"), "monitor-secret\n").unwrap();
    let hook = Receiver::start().await;
    let out = monitor_once(
        &s.url,
        &mon,
        &[
            "--webhook".into(),
            hook.url.clone(),
            "--webhook-secret-file".into(),
            mon.join("secret").display().to_string(),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("ALERT"), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("policy changed at log index 0: sha256 {h1}, 1 rule"),
            format!("policy changed at log index 1: sha256 {h2}, 2 rules"),
            format!("policy changed at log index 2: sha256 {he}, 0 rules"),
        ]
    );
    for (n, (index, sha)) in [(0, &h1), (1, &h2), (2, &he)].into_iter().enumerate() {
        let (_, notice) = hook.wait(n + 1).await;
        assert_eq!(notice["kind"], "policy-changed");
        assert_eq!(notice["index"], index);
        assert_eq!(notice["sha256"], sha.as_str());
    }
    let jsonl = std::fs::read_to_string(mon.join("state/alerts.jsonl")).unwrap();
    assert_eq!(jsonl.matches("\"policy-changed\"").count(), 3, "{jsonl}");

    // A second run has nothing new to report.
    let again = monitor_once(&s.url, &mon, &[]).await;
    assert_eq!(again.status.code(), Some(0));
    assert!(
        again.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // Started again without --policy: the empty policy is already the last one; nothing logged.
    let mut s = s;
    s.stop();
    let (code, out, err) = show_local(&data).await;
    assert_eq!((code, out.as_str()), (0, "no policy in force\n"), "{err}");
    let mut s = Served::start(&data, &log, None).await;
    assert_eq!(s.tree_size().await, 3);
    s.stop();
    // No server answers: exit 2.
    let (code, out) = show_remote(&s, false).await;
    assert_eq!((code, out.as_str()), (2, ""));
}

#[tokio::test]
async fn a_policy_record_that_disagrees_with_the_log_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    std::fs::write(&file, V1).unwrap();
    let mut s = Served::start(&data, &log, Some(&file)).await;
    s.stop();

    // The record now names entry 0 with another hash.
    {
        let d = countersign_approvals::audit::open_data_dir(&data).unwrap();
        let forged = countersign_approvals::policy::serve::PolicyRecord {
            index: 0,
            sha256: "00".repeat(32),
            in_force: true,
        };
        d.ciba
            .put_blocking(
                countersign_approvals::policy::serve::POLICY_RECORD_KEY,
                &forged,
            )
            .unwrap();
    }
    let (code, _, err) = show_local(&data).await;
    assert_eq!(code, 2);
    assert!(err.contains("log entry 0 has sha256"), "{err}");
    let out = serve_refused(&data, &file).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the approvals store says the last policy logged is log entry 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "the log's policy entry there has sha256 {}",
            hex::encode(policy_of(V1).hash())
        )),
        "{stderr}"
    );

    // A record naming an entry past the log's end is refused as well.
    {
        let d = countersign_approvals::audit::open_data_dir(&data).unwrap();
        let forged = countersign_approvals::policy::serve::PolicyRecord {
            index: 7,
            sha256: hex::encode(policy_of(V1).hash()),
            in_force: true,
        };
        d.ciba
            .put_blocking(
                countersign_approvals::policy::serve::POLICY_RECORD_KEY,
                &forged,
            )
            .unwrap();
    }
    let out = serve_refused(&data, &file).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the log's signed tree size is 1, so it has no entry 7"),
        "{stderr}"
    );
}
