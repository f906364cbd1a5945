//! `countersign export` (spec/export.md) from a running server over the audit API and from an
//! online backup opened offline: the archives hold every entry, every decision's statement
//! (hashing to its entry), every row, escaped CSV, and bundles that verify; a token that is
//! not an auditor's is refused and writes nothing.
//!
//! With `COUNTERSIGN_EXPORT_ARCHIVES` set, the archives are also copied there, so that
//! `scripts/test.sh` can check them with `countersign-verify export` (code that did not write
//! them).

use std::collections::BTreeMap;
use std::path::Path;

use countersign::export::{run, ExportArgs};
use countersign_approvals::policy::parse_policy_toml;
use countersign_verifier::export::{
    csv_header, log_event_row, split_entry_bundle, EventRow, EventType, Manifest, StatementLine,
    Totals,
};
use countersign_verifier::{BundlePolicy, Entry, EvidenceBundle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;

fn args(out: &Path) -> ExportArgs {
    ExportArgs {
        out: out.to_owned(),
        from: None,
        from_index: None,
        to: None,
        to_index: None,
        bundles: true,
        tar: false,
        url: None,
        token_file: None,
        data_dir: None,
        rp_id: None,
        origins: Vec::new(),
        quiet: true,
    }
}

/// Every file of the archive but the manifest, by relative path.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = crate::files::files_under(dir);
    out.remove("MANIFEST.json");
    out
}

/// What the archive must be, checked here with the shared definitions (the independent check
/// is `countersign-verify export`, run by scripts/test.sh on the copies).
fn check_archive(dir: &Path, s: &Server, expect_decisions: usize) -> Manifest {
    check_archive_but(dir, s, expect_decisions, &[])
}

/// [`check_archive`], where the decisions at `no_bundle` (approvals that completed no quorum)
/// have no bundle and every other decision has one.
fn check_archive_but(
    dir: &Path,
    s: &Server,
    expect_decisions: usize,
    no_bundle: &[u64],
) -> Manifest {
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("MANIFEST.json")).unwrap()).unwrap();
    let files = files_of(dir);
    let hashes: BTreeMap<String, String> = files
        .iter()
        .map(|(k, v)| (k.clone(), hex::encode(Sha256::digest(v))))
        .collect();
    assert_eq!(
        m.files, hashes,
        "the manifest lists every file with its hash"
    );
    assert_eq!(m.log_key, s.vkey.to_vkey());
    assert_eq!(m.log_origin, "flow.example/log");
    assert_eq!((m.start, m.end), (0, m.tree_size));

    // Entries, from the entry bundles.
    let mut entries = Vec::new();
    for (path, bytes) in &files {
        if path.starts_with("tile/entries/") {
            entries.extend(
                split_entry_bundle(bytes)
                    .unwrap()
                    .into_iter()
                    .map(<[u8]>::to_vec),
            );
        }
    }
    assert_eq!(
        entries.len() as u64,
        m.end,
        "entries [0, end) are all there"
    );

    let statements: Vec<StatementLine> = std::str::from_utf8(&files["statements.jsonl"])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(statements.len(), expect_decisions);
    assert!(m.withheld.is_empty(), "{:?}", m.withheld);
    let by_index: BTreeMap<u64, &StatementLine> = statements.iter().map(|l| (l.index, l)).collect();

    let rows: Vec<EventRow> = std::str::from_utf8(&files["events.jsonl"])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, e) in entries.iter().enumerate() {
        let i = i as u64;
        let st = by_index.get(&i).map(|l| &l.statement);
        assert_eq!(
            rows[i as usize],
            log_event_row(i, e, st).unwrap(),
            "row {i} is its entry's"
        );
        if let Entry::Decision(_) = Entry::decode(e).unwrap() {
            assert!(st.is_some(), "decision {i} has its statement");
        } else {
            assert!(st.is_none());
        }
    }
    let mut csv = csv_header();
    let mut totals = Totals::default();
    for r in &rows {
        csv.push_str(&r.to_csv_record());
        totals.add(r.event_type);
    }
    assert_eq!(
        std::str::from_utf8(&files["events.csv"]).unwrap(),
        csv,
        "the CSV is the rows"
    );
    let html = std::str::from_utf8(&files["report.html"]).unwrap();
    let totals_json = serde_json::to_string(&totals).unwrap();
    assert!(html.contains(&totals_json), "report totals {totals_json}");

    // Bundles verify and are the statements'.
    for (i, l) in &by_index {
        let path = format!("bundles/{i}.json");
        if no_bundle.contains(i) {
            assert!(!files.contains_key(&path), "{path} is there");
            continue;
        }
        let b = EvidenceBundle::from_json(&files[&path]).unwrap();
        let v = b.verify(&s.vkey, &BundlePolicy::default()).unwrap();
        assert_eq!(v.statement, l.statement);
        assert_eq!(b.decision.index, *i);
    }
    m
}

/// An auditor's token for `s`, in a file under `dir`.
async fn auditor_token(s: &Server, dir: &Path) -> std::path::PathBuf {
    let (st, v) = s
        .admin_post("/v1/admin/auditors", json!({"name": "audit-firm"}))
        .await;
    assert_eq!(st, 201, "{v}");
    let token = dir.join("auditor.token");
    std::fs::write(&token, v["token"].as_str().unwrap()).unwrap();
    token
}

fn keep(dir: &Path, name: &str, s: &Server) {
    if let Ok(to) = std::env::var("COUNTERSIGN_EXPORT_ARCHIVES") {
        std::fs::write(
            Path::new(&to).join(format!("{name}.vkey")),
            s.vkey.to_vkey(),
        )
        .unwrap();
        let to = Path::new(&to).join(name);
        let _ = std::fs::remove_dir_all(&to);
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(dir)
            .arg(&to)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_from_a_server_and_from_a_backup_hold_every_decision() {
    let s = Server::start().await;
    let client = s.add_client("agent-export", "poll", None).await;
    let alice = s.add_approver("apv_export", 91).await;

    // Two approvals (one with a binding message a spreadsheet would run), a denial, and a
    // request left to expire.
    let mut ids = Vec::new();
    for (msg, decision) in [
        ("Pay 42.00 EUR to ACME", "approve"),
        ("=HYPERLINK(\"https://x.test\",\"Pay 5\")", "approve"),
        ("-5 EUR refund to @bob", "deny"),
    ] {
        let id = client.ask("apv_export", &[("binding_message", msg)]).await;
        let rid = alice.only_request().await;
        alice.decide(&rid, decision).await;
        ids.push(id);
    }
    let (st, v) = client.token(&ids[0]).await;
    assert_eq!(st, 200, "{v}");
    let _expiring = client
        .ask(
            "apv_export",
            &[
                ("requested_expiry", "1"),
                ("binding_message", "Left to expire"),
            ],
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    countersign_approvals::cleanup::sweep(&s.approvals, countersign_approvals::util::now_secs())
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();

    // A token that is not an auditor's is refused, and nothing is left behind.
    let bad = tmp.path().join("bad.token");
    std::fs::write(&bad, "0".repeat(64)).unwrap();
    let mut a = args(&tmp.path().join("refused"));
    a.url = Some(s.url.clone());
    a.token_file = Some(bad);
    let e = run(a).await.unwrap_err();
    assert!(format!("{e:#}").contains("401"), "{e:#}");
    assert!(!tmp.path().join("refused").exists());
    assert!(!tmp.path().join("refused.partial").exists());

    // From the running server, with an auditor's token.
    let token = auditor_token(&s, tmp.path()).await;
    let remote = tmp.path().join("remote");
    let mut a = args(&remote);
    a.url = Some(s.url.clone());
    a.token_file = Some(token.clone());
    let summary = run(a).await.unwrap();
    assert_eq!(summary.decisions, 3);
    let m = check_archive(&remote, &s, 3);
    assert_eq!(m.relying_party.rp_id, RP_ID);
    let jsonl = std::fs::read_to_string(remote.join("events.jsonl")).unwrap();
    let rows: Vec<EventRow> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |t: EventType| rows.iter().filter(|r| r.event_type == t).count();
    assert_eq!(count(EventType::DecisionApproved), 2);
    assert_eq!(count(EventType::DecisionDenied), 1);
    assert_eq!(count(EventType::CredentialEnrolled), 1);
    assert_eq!(count(EventType::RequestCreated), 4, "{jsonl}");
    assert_eq!(count(EventType::RequestExpired), 1, "{jsonl}");
    assert_eq!(count(EventType::TokenIssued), 1, "{jsonl}");
    let csv = std::fs::read_to_string(remote.join("events.csv")).unwrap();
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"https://x.test\"\",\"\"Pay 5\"\")\""),
        "{csv}"
    );
    assert!(csv.contains(",'-5 EUR refund to @bob,"), "{csv}");
    assert!(
        !csv.contains(",=HYPERLINK") && !csv.contains(",-5 EUR"),
        "{csv}"
    );
    keep(&remote, "remote", &s);

    // The same export again refuses to overwrite.
    let mut a = args(&remote);
    a.url = Some(s.url.clone());
    a.token_file = Some(token.clone());
    assert!(format!("{:#}", run(a).await.unwrap_err()).contains("already exists"));

    // A range by index, as a tar file.
    let tar_path = tmp.path().join("range.tar");
    let mut a = args(&tar_path);
    a.url = Some(s.url.clone());
    a.token_file = Some(token.clone());
    a.from_index = Some(2);
    a.to_index = Some(3);
    a.tar = true;
    let summary = run(a).await.unwrap();
    assert_eq!((summary.start, summary.end, summary.decisions), (2, 3, 1));
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
    for e in ar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_str().unwrap().to_owned());
    }
    assert_eq!(names[0], "MANIFEST.json");
    assert!(names.contains(&"statements.jsonl".to_owned()), "{names:?}");
    keep(&tar_path, "range.tar", &s);

    // From an online backup, opened offline (the relying party is server configuration).
    let backup = tmp.path().join("backup");
    let (st, v) = s
        .admin_post("/v1/admin/backup", json!({"to": backup}))
        .await;
    assert_eq!(st, 200, "{v}");
    let offline = tmp.path().join("offline");
    let mut a = args(&offline);
    a.data_dir = Some(backup.clone());
    let e = run(a).await.unwrap_err();
    assert!(format!("{e:#}").contains("--rp-id"), "{e:#}");
    let mut a = args(&offline);
    a.data_dir = Some(backup);
    a.rp_id = Some(RP_ID.into());
    a.origins = vec![ORIGIN.into()];
    run(a).await.unwrap();
    let m2 = check_archive(&offline, &s, 3);
    assert_eq!(m2.tree_size, m.tree_size);
    assert_eq!(
        std::fs::read(offline.join("statements.jsonl")).unwrap(),
        std::fs::read(remote.join("statements.jsonl")).unwrap(),
        "the backup holds the same evidence"
    );
    keep(&offline, "offline", &s);
}

/// Under a 2-of-3 policy, every approval is its own leaf, and the export holds every one's
/// statement whatever became of its request: a quorum reached, a denial after an approval, an
/// expiry after an approval. The approval that completed the quorum and the denial have bundles
/// (version 2) that verify; the approvals short of a quorum have none (none could verify).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_every_approval_of_a_quorum_whatever_its_end() {
    let s = Server::start().await;
    let pay = s.add_client("agent-pay", "poll", None).await;
    let t1 = s.add_approver("apv_t1", 11).await;
    let t2 = s.add_approver("apv_t2", 12).await;
    let t3 = s.add_approver("apv_t3", 13).await;
    let policy = parse_policy_toml(crate::quorum::POLICY).unwrap();
    crate::quorum::put_in_force(&s, &policy).await;
    let details = crate::quorum::payment("2500");
    let ask = |expiry: &'static str| {
        let (pay, details) = (&pay, &details);
        async move {
            pay.ask(
                "apv_t1",
                &[
                    ("authorization_details", details.as_str()),
                    ("requested_expiry", expiry),
                ],
            )
            .await
        }
    };

    // The quorum reached: t1, then t2.
    let done = ask("300").await;
    let done_rid = t1.only_request().await;
    let first = t1.decide(&done_rid, "approve").await;
    let second = t2.decide(&done_rid, "approve").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, v) = pay.token(&done).await;
    assert_eq!(st, 200, "{v}");

    // An approval, then a denial.
    let _denied = ask("300").await;
    let denied_rid = t1.only_request().await;
    let third = t1.decide(&denied_rid, "approve").await;
    let fourth = t3.decide(&denied_rid, "deny").await;
    assert_eq!(fourth["status"], "denied", "{fourth}");

    // An approval, then the request expires.
    let late = ask("3").await;
    let late_rid = t1.only_request().await;
    let fifth = t1.decide(&late_rid, "approve").await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (st, v) = pay.token(&late).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("expired_token")),
        "{v}"
    );
    countersign_approvals::cleanup::sweep(&s.approvals, countersign_approvals::util::now_secs())
        .await
        .unwrap();

    let index = |v: &Value| v["log_index"].as_u64().unwrap_or_else(|| panic!("{v}"));
    let partial = [index(&first), index(&third), index(&fifth)];

    let tmp = tempfile::tempdir().unwrap();
    let token = auditor_token(&s, tmp.path()).await;
    let dir = tmp.path().join("quorum");
    let mut a = args(&dir);
    a.url = Some(s.url.clone());
    a.token_file = Some(token);
    let summary = run(a).await.unwrap();
    assert_eq!(summary.decisions, 5);
    let m = check_archive_but(&dir, &s, 5, &partial);
    assert_eq!(m.withheld.len(), 0);

    // The completing approval's bundle holds both approvals; the denial's, the denial alone.
    let bundle = |v: &Value| {
        EvidenceBundle::from_json(
            &std::fs::read(dir.join(format!("bundles/{}.json", index(v)))).unwrap(),
        )
        .unwrap()
    };
    let b = bundle(&second);
    assert_eq!(
        b.approvals.len(),
        1,
        "the earlier approval is in the bundle"
    );
    assert_eq!(b.approvals[0].decision.index, index(&first));
    assert!(b.verify(&s.vkey, &BundlePolicy::default()).is_ok());
    assert!(bundle(&fourth).approvals.is_empty());
    let jsonl = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let rows: Vec<EventRow> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |t: EventType| rows.iter().filter(|r| r.event_type == t).count();
    assert_eq!(count(EventType::DecisionApproved), 4, "{jsonl}");
    assert_eq!(count(EventType::DecisionDenied), 1, "{jsonl}");
    assert_eq!(count(EventType::RequestCreated), 3, "{jsonl}");
    assert_eq!(count(EventType::RequestExpired), 1, "{jsonl}");
    assert_eq!(count(EventType::TokenIssued), 1, "{jsonl}");
    keep(&dir, "quorum", &s);
}
