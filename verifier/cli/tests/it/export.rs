//! `countersign-verify export`: a valid archive built by `countersign_testvectors::archive`
//! verifies (as a directory and as a tar file), and each single mutation of it fails with exit 1
//! naming the file, index and check; unusable input exits 2. Mutations are made consistent
//! wherever they can be (file hashes in the manifest, CSV and report rewritten from the rows),
//! so that only the check under test can catch them.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use countersign_testvectors::archive::{build, checkpoint_of, Archive, ArchiveSpec, Flaw};
use countersign_testvectors::generate::{ORIGIN, RP_ID};
use countersign_verifier::export::{csv_header, EventRow, Manifest, Totals, TOTALS_ELEMENT_ID};
use countersign_verifier::{sha256, VerifierKey};
use serde_json::Value;

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_countersign-verify"))
}

/// A valid archive of 270 decisions (so the tree has a level-1 tile and two entry bundles),
/// built once per test process under cargo's temporary directory; each test works on a copy.
fn template() -> &'static (PathBuf, Archive) {
    static T: OnceLock<(PathBuf, Archive)> = OnceLock::new();
    T.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // Templates of earlier runs (an hour old: not a test process running now).
        if let Ok(dirs) = std::fs::read_dir(&base) {
            for d in dirs.flatten() {
                let old = d
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|e| e.as_secs() > 3600);
                if old
                    && d.file_name()
                        .to_string_lossy()
                        .starts_with("export-template-")
                {
                    let _ = std::fs::remove_dir_all(d.path());
                }
            }
        }
        let dir = base.join(format!("export-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = ArchiveSpec {
            decisions: 270,
            withhold: 3,
            ..ArchiveSpec::default()
        };
        let a = build(&dir, &spec).unwrap();
        (dir, a)
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// A fresh copy of the template archive.
fn fresh() -> (tempfile::TempDir, PathBuf, Archive) {
    let (dir, a) = template();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("archive");
    copy_dir(dir, &d);
    (tmp, d, a.clone())
}

fn verify_with(dir: &Path, key: &str, extra: &[&str]) -> Output {
    let mut c = bin();
    c.arg("--json")
        .arg("export")
        .arg(dir)
        .args(["--log-key", key, "--rp-id", RP_ID])
        .args(extra);
    c.output().unwrap()
}

fn verify(dir: &Path, a: &Archive) -> Output {
    verify_with(dir, &a.log_key, &[])
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn assert_ok(out: &Output) -> Value {
    let r = report(out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["verified"], true);
    r
}

/// Exit 1 with a failure of `check` in `file` (at `index` if given).
fn assert_fails(out: &Output, check: &str, file: &str, index: Option<u64>) {
    let r = report(out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert_eq!(r["verified"], false);
    let hit = r["failures"].as_array().unwrap().iter().any(|f| {
        f["check"] == check
            && f["file"].as_str().unwrap().starts_with(file)
            && index.is_none_or(|i| f["index"] == i)
    });
    assert!(hit, "no {check} failure in {file} at {index:?}: {r:#}");
}

fn manifest(dir: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(dir.join("MANIFEST.json")).unwrap()).unwrap()
}

fn write_manifest(dir: &Path, m: &Manifest) {
    std::fs::write(
        dir.join("MANIFEST.json"),
        serde_json::to_string_pretty(m).unwrap(),
    )
    .unwrap();
}

/// Makes MANIFEST.json's `files` the hashes of the files as they now are.
fn rehash(dir: &Path) {
    let mut m = manifest(dir);
    for (f, h) in m.files.iter_mut() {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            *h = hex::encode(sha256(&b));
        }
    }
    write_manifest(dir, &m);
}

fn flip(dir: &Path, rel: &str, at: usize) {
    let p = dir.join(rel);
    let mut b = std::fs::read(&p).unwrap();
    b[at] ^= 0x01;
    std::fs::write(p, b).unwrap();
}

fn lines(dir: &Path, rel: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(rel))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(dir: &Path, rel: &str, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(dir.join(rel), s).unwrap();
}

/// Rewrites events.jsonl, and from it events.csv and the report's totals, then rehashes: the
/// rows are then consistent everywhere and only the event checks can see the change.
fn rewrite_events(dir: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let mut rows = lines(dir, "events.jsonl");
    f(&mut rows);
    write_lines(dir, "events.jsonl", &rows);
    let mut csv = csv_header();
    let mut totals = Totals::default();
    for r in &rows {
        let row: EventRow = serde_json::from_str(r).unwrap();
        csv.push_str(&row.to_csv_record());
        totals.add(row.event_type);
    }
    std::fs::write(dir.join("events.csv"), csv).unwrap();
    set_totals(dir, &totals);
    rehash(dir);
}

fn set_totals(dir: &Path, t: &Totals) {
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let open = format!("id=\"{TOTALS_ELEMENT_ID}\">");
    let start = html.find(&open).unwrap() + open.len();
    let end = start + html[start..].find("</script>").unwrap();
    let html = format!(
        "{}{}{}",
        &html[..start],
        serde_json::to_string(t).unwrap(),
        &html[end..]
    );
    std::fs::write(dir.join("report.html"), html).unwrap();
}

fn row_index(rows: &[String], pred: impl Fn(&Value) -> bool) -> usize {
    rows.iter()
        .position(|r| pred(&serde_json::from_str::<Value>(r).unwrap()))
        .unwrap()
}

#[test]
fn valid_archive_verifies() {
    let (_t, d, a) = fresh();
    let r = assert_ok(&verify(&d, &a));
    assert_eq!(r["start"], a.start);
    assert_eq!(r["end"], a.end);
    assert_eq!(r["tree_size"], a.tree_size);
    assert_eq!(r["withheld"], 3);
    assert_eq!(r["decisions"], 271);
    assert_eq!(r["failures"], serde_json::json!([]));
    assert!(
        a.tree_size > 256 && a.end > 256,
        "the tree must have a level-1 tile"
    );
    // Text output, other RP pins.
    let out = bin()
        .args(["export", d.to_str().unwrap(), "--log-key", &a.log_key])
        .args(["--origin", ORIGIN])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK: archive verified"));
    let out = bin()
        .args(["export", d.to_str().unwrap(), "--log-key", &a.log_key])
        .arg("--trust-archive-rp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("RELYING PARTY NOT PINNED"));
}

#[test]
fn valid_archive_verifies_as_tar_and_with_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("a");
    let a = build(
        &d,
        &ArchiveSpec {
            bundles: true,
            ..ArchiveSpec::default()
        },
    )
    .unwrap();
    let r = assert_ok(&verify(&d, &a));
    assert_eq!(r["decisions"], 13);
    // The same files in a tar, regular-file members named by their relative paths.
    let tar_path = tmp.path().join("a.tar");
    let mut t = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let mut files = vec!["MANIFEST.json".to_owned()];
    files.extend(manifest(&d).files.keys().cloned());
    for f in &files {
        t.append_path_with_name(d.join(f), f).unwrap();
    }
    t.into_inner().unwrap();
    assert_ok(&verify(&tar_path, &a));
    // A bundle that is not the decision's line fails check 9.
    let b = manifest(&d)
        .files
        .keys()
        .find(|f| f.starts_with("bundles/"))
        .unwrap()
        .clone();
    let text = std::fs::read_to_string(d.join(&b)).unwrap();
    std::fs::write(d.join(&b), text.replace("\"version\": 1", "\"version\": 2")).unwrap();
    rehash(&d);
    assert_fails(&verify(&d, &a), "bundles", &b, None);
}

#[test]
fn tar_with_a_mutation_fails_too() {
    let (t, d, a) = fresh();
    flip(&d, "statements.jsonl", 40);
    let tar_path = t.path().join("a.tar");
    let mut tb = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let mut files = vec!["MANIFEST.json".to_owned()];
    files.extend(manifest(&d).files.keys().cloned());
    for f in &files {
        tb.append_path_with_name(d.join(f), f).unwrap();
    }
    tb.into_inner().unwrap();
    assert_fails(&verify(&tar_path, &a), "manifest", "statements.jsonl", None);
}

/// A line in another JSON form than the exporter's (spaces, members in another order) still
/// holds the statement: it is read the strict way and verifies.
#[test]
fn statement_line_in_another_form_verifies() {
    let (_t, d, a) = fresh();
    let mut ls = lines(&d, "statements.jsonl");
    let target = a.statement_indexes[5];
    let n = row_index(&ls, |v| v["index"] == target);
    let v: Value = serde_json::from_str(&ls[n]).unwrap();
    ls[n] = format!(
        "{{ \"statement\": {}, \"index\": {} }}",
        serde_json::to_string_pretty(&v["statement"])
            .unwrap()
            .replace('\n', " "),
        v["index"]
    );
    write_lines(&d, "statements.jsonl", &ls);
    rehash(&d);
    assert_ok(&verify(&d, &a));
}

/// A member named twice, in the statement or deep in its authorization_details, is refused
/// (each reader would keep another copy), though the copy kept by a lax reader hashes right.
#[test]
fn statement_line_naming_a_member_twice() {
    for (what, from, to) in [
        (
            "binding_message",
            "\"binding_message\":",
            "\"binding_message\":\"Pay 1 EUR\",\"binding_message\":",
        ),
        (
            "authorization_details[0].type",
            "\"type\":",
            "\"type\":\"account_information\",\"type\":",
        ),
    ] {
        let (_t, d, a) = fresh();
        let mut ls = lines(&d, "statements.jsonl");
        let target = a.statement_indexes[5];
        let n = row_index(&ls, |v| v["index"] == target);
        assert!(ls[n].contains(from), "{what}: {}", ls[n]);
        ls[n] = ls[n].replacen(from, to, 1);
        write_lines(&d, "statements.jsonl", &ls);
        rehash(&d);
        let out = verify(&d, &a);
        assert_fails(&out, "decisions", "statements.jsonl", Some(target));
        let r = report(&out);
        let named = r["failures"].as_array().unwrap().iter().any(|f| {
            f["file"] == "statements.jsonl"
                && f["index"] == target
                && f["detail"].as_str().unwrap().contains("duplicate")
        });
        assert!(named, "{what}: no failure names the duplicate: {r:#}");
    }
}

#[test]
fn statement_line_byte() {
    let (_t, d, a) = fresh();
    let mut ls = lines(&d, "statements.jsonl");
    let target = a.statement_indexes[5];
    let n = row_index(&ls, |v| v["index"] == target);
    // One byte of the binding message.
    ls[n] = ls[n].replacen("(ref", "(reF", 1);
    write_lines(&d, "statements.jsonl", &ls);
    rehash(&d);
    assert_fails(
        &verify(&d, &a),
        "decisions",
        "statements.jsonl",
        Some(target),
    );
}

#[test]
fn level1_tile_byte() {
    let (_t, d, a) = fresh();
    let level1 = manifest(&d)
        .files
        .keys()
        .find(|f| f.starts_with("tile/1/"))
        .unwrap()
        .clone();
    flip(&d, &level1, 7);
    rehash(&d);
    assert_fails(&verify(&d, &a), "tiles", &level1, Some(0));
}

#[test]
fn level0_tile_byte() {
    let (_t, d, a) = fresh();
    // Hash 300's first byte, in the partial level-0 tile: not under a level-1 hash, so only
    // the root and the entry comparison can see it.
    let tile = manifest(&d)
        .files
        .keys()
        .find(|f| f.starts_with("tile/0/001"))
        .unwrap()
        .clone();
    flip(&d, &tile, (260 - 256) * 32);
    rehash(&d);
    let out = verify(&d, &a);
    assert_fails(&out, "tiles", "tile/0", None);
    assert_fails(&out, "entries", "tile/entries/001", Some(260));
}

#[test]
fn level0_tile_byte_beyond_the_range() {
    // A leaf after `end` is covered by the tiles only: the root must catch it.
    let (_t, d, a) = fresh();
    let tile = manifest(&d)
        .files
        .keys()
        .find(|f| f.starts_with("tile/0/001"))
        .unwrap()
        .clone();
    flip(&d, &tile, ((a.tree_size - 1 - 256) * 32) as usize);
    rehash(&d);
    assert_fails(&verify(&d, &a), "tiles", "tile/0", None);
}

#[test]
fn entry_bundle_byte() {
    let (_t, d, a) = fresh();
    // The last byte of the first bundle: inside entry 255's signature.
    let len = std::fs::read(d.join("tile/entries/000")).unwrap().len();
    flip(&d, "tile/entries/000", len - 3);
    rehash(&d);
    assert_fails(&verify(&d, &a), "entries", "tile/entries/000", Some(255));
}

#[test]
fn checkpoint_signature_byte() {
    let (_t, d, a) = fresh();
    let text = std::fs::read_to_string(d.join("checkpoint")).unwrap();
    let sig_line = text.lines().last().unwrap();
    // A base64 character of the signature, well past the key id.
    let at = text.len() - 1 - 10;
    assert!(sig_line.len() > 20);
    let mut b = text.into_bytes();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(d.join("checkpoint"), b).unwrap();
    rehash(&d);
    assert_fails(&verify(&d, &a), "checkpoint", "checkpoint", None);
}

#[test]
fn manifest_hash() {
    let (_t, d, a) = fresh();
    let mut m = manifest(&d);
    let h = m.files.get_mut("events.csv").unwrap();
    *h = h.replacen(&h[..1], if &h[..1] == "0" { "1" } else { "0" }, 1);
    write_manifest(&d, &m);
    assert_fails(&verify(&d, &a), "manifest", "events.csv", None);
}

#[test]
fn unlisted_byte_change_is_caught_by_the_manifest() {
    let (_t, d, a) = fresh();
    flip(&d, "report.html", 3);
    assert_fails(&verify(&d, &a), "manifest", "report.html", None);
}

#[test]
fn deleted_log_event_row() {
    let (_t, d, a) = fresh();
    let idx = a.start + 7;
    rewrite_events(&d, |rows| {
        let n = row_index(rows, |v| v["log_index"] == idx);
        rows.remove(n);
    });
    assert_fails(&verify(&d, &a), "events", "events.jsonl", Some(idx));
}

#[test]
fn deleted_request_created_row() {
    let (_t, d, a) = fresh();
    let target = a.statement_indexes[3];
    let req = format!("req_{target:06}");
    rewrite_events(&d, |rows| {
        let n = row_index(rows, |v| {
            v["event_type"] == "request.created" && v["request_id"] == req.as_str()
        });
        rows.remove(n);
    });
    assert_fails(&verify(&d, &a), "events", "events.jsonl", Some(target));
}

#[test]
fn added_row() {
    let (_t, d, a) = fresh();
    let target = a.statement_indexes[3];
    let req = format!("req_{target:06}");
    rewrite_events(&d, |rows| {
        let n = row_index(rows, |v| {
            v["event_type"] == "request.created" && v["request_id"] == req.as_str()
        });
        let dup = rows[n].clone();
        rows.insert(n + 1, dup);
    });
    assert_fails(&verify(&d, &a), "events", "events.jsonl", None);
}

#[test]
fn added_undecided_row_outside_the_window() {
    let (_t, d, a) = fresh();
    rewrite_events(&d, |rows| {
        let n = row_index(rows, |v| v["request_id"] == "req_undecided_2");
        let mut v: Value = serde_json::from_str(&rows[n]).unwrap();
        v["request_id"] = "req_undecided_9".into();
        v["time_utc"] = "2030-01-01T00:00:00.000Z".into();
        rows.push(serde_json::to_string(&v).unwrap());
    });
    assert_fails(&verify(&d, &a), "events", "events.jsonl", None);
}

#[test]
fn altered_log_event_row() {
    let (_t, d, a) = fresh();
    let idx = a.statement_indexes[4];
    rewrite_events(&d, |rows| {
        let n = row_index(rows, |v| v["log_index"] == idx);
        rows[n] = rows[n].replacen("(ref", "(reF", 1);
    });
    assert_fails(&verify(&d, &a), "events", "events.jsonl", Some(idx));
}

#[test]
fn altered_outside_row() {
    let (_t, d, a) = fresh();
    let target = a.statement_indexes[6];
    let req = format!("req_{target:06}");
    rewrite_events(&d, |rows| {
        let n = row_index(rows, |v| {
            v["event_type"] == "request.created" && v["request_id"] == req.as_str()
        });
        rows[n] = rows[n].replacen("(ref", "(reF", 1);
    });
    assert_fails(&verify(&d, &a), "events", "events.jsonl", None);
}

#[test]
fn token_issued_for_a_denial() {
    let (_t, d, a) = fresh();
    // The third decision of the loop (j = 2) is a denial: index start + 3 + 2.
    let denied = a.start + 5;
    let req = format!("req_{denied:06}");
    rewrite_events(&d, |rows| {
        let n = row_index(rows, |v| {
            v["event_type"] == "request.created" && v["request_id"] == req.as_str()
        });
        let mut v: Value = serde_json::from_str(&rows[n]).unwrap();
        v["event_type"] = "token.issued".into();
        let last = rows.len();
        v["time_utc"] = serde_json::from_str::<Value>(&rows[last - 1]).unwrap()["time_utc"].clone();
        rows.push(serde_json::to_string(&v).unwrap());
    });
    assert_fails(&verify(&d, &a), "events", "events.jsonl", None);
}

/// Exit 1 with an events.jsonl failure whose detail contains `text`.
fn assert_event_failure(out: &Output, text: &str) {
    let r = report(out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    let hit = r["failures"].as_array().unwrap().iter().any(|f| {
        f["check"] == "events"
            && f["file"] == "events.jsonl"
            && f["detail"].as_str().unwrap().contains(text)
    });
    assert!(hit, "no events failure saying {text:?}: {r:#}");
}

/// The request id of an approval that has a token.issued row, and that row's position.
fn token_row(rows: &[String]) -> (String, usize) {
    let n = row_index(rows, |v| v["event_type"] == "token.issued");
    let v: Value = serde_json::from_str(&rows[n]).unwrap();
    (v["request_id"].as_str().unwrap().to_owned(), n)
}

#[test]
fn altered_token_issued_row() {
    let (_t, d, a) = fresh();
    let mut req = String::new();
    rewrite_events(&d, |rows| {
        let (r, n) = token_row(rows);
        req = r;
        rows[n] = rows[n].replacen("(ref", "(reF", 1);
    });
    assert_event_failure(
        &verify(&d, &a),
        &format!("the token.issued row of {req} is not the one made from its statement"),
    );
}

#[test]
fn repeated_token_issued_row() {
    let (_t, d, a) = fresh();
    let mut req = String::new();
    rewrite_events(&d, |rows| {
        let (r, n) = token_row(rows);
        req = r;
        let again = rows[n].clone();
        rows.insert(n + 1, again);
    });
    assert_event_failure(
        &verify(&d, &a),
        &format!("a second token.issued row for {req}"),
    );
}

#[test]
fn outside_row_not_in_its_one_form() {
    let (_t, d, a) = fresh();
    rewrite_events(&d, |rows| {
        let (_, n) = token_row(rows);
        // The same row, with a space after the first colon: equal as JSON, not as X6.
        rows[n] = rows[n].replacen("\":", "\": ", 1);
    });
    assert_event_failure(&verify(&d, &a), "not in the form of X6");
}

#[test]
fn altered_csv_row() {
    let (_t, d, a) = fresh();
    let mut ls = lines(&d, "events.csv");
    ls[10] = ls[10].replacen("decision.approved", "decision.denied", 1);
    let mut s = ls.join("\r\n");
    s.push_str("\r\n");
    std::fs::write(d.join("events.csv"), s).unwrap();
    rehash(&d);
    assert_fails(&verify(&d, &a), "events", "events.csv", None);
}

#[test]
fn report_total() {
    let (_t, d, a) = fresh();
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    std::fs::write(
        d.join("report.html"),
        html.replacen("\"decisions_denied\":", "\"decisions_denied\":1", 1),
    )
    .unwrap();
    rehash(&d);
    assert_fails(&verify(&d, &a), "report", "report.html", None);
}

#[test]
fn withheld_item_added() {
    let (_t, d, a) = fresh();
    let mut m = manifest(&d);
    let idx = a.statement_indexes[2];
    m.withheld.push(countersign_verifier::export::Withheld {
        index: idx,
        reason: "not_held".into(),
    });
    m.withheld.sort_by_key(|w| w.index);
    write_manifest(&d, &m);
    assert_fails(&verify(&d, &a), "decisions", "statements.jsonl", Some(idx));
}

#[test]
fn withheld_item_removed() {
    let (_t, d, a) = fresh();
    let mut m = manifest(&d);
    let w = m.withheld.remove(1);
    write_manifest(&d, &m);
    assert_fails(
        &verify(&d, &a),
        "decisions",
        "statements.jsonl",
        Some(w.index),
    );
}

#[test]
fn withheld_names_a_non_decision() {
    let (_t, d, a) = fresh();
    let mut m = manifest(&d);
    m.withheld.push(countersign_verifier::export::Withheld {
        index: a.revocation_index,
        reason: "not_held".into(),
    });
    m.withheld.sort_by_key(|w| w.index);
    write_manifest(&d, &m);
    assert_fails(
        &verify(&d, &a),
        "decisions",
        "MANIFEST.json",
        Some(a.revocation_index),
    );
}

#[test]
fn statement_line_for_a_non_decision() {
    let (_t, d, a) = fresh();
    let mut ls = lines(&d, "statements.jsonl");
    // A copy of the first line (index 3) given the index of the enrolment at 5.
    let mut v: Value = serde_json::from_str(&ls[0]).unwrap();
    v["index"] = a.enrolment_in_range.into();
    let n = row_index(&ls, |x| x["index"].as_u64().unwrap() > a.enrolment_in_range);
    ls.insert(n, serde_json::to_string(&v).unwrap());
    write_lines(&d, "statements.jsonl", &ls);
    rehash(&d);
    assert_fails(
        &verify(&d, &a),
        "decisions",
        "statements.jsonl",
        Some(a.enrolment_in_range),
    );
}

#[test]
fn statement_line_beyond_the_range() {
    let (_t, d, a) = fresh();
    let mut ls = lines(&d, "statements.jsonl");
    let mut v: Value = serde_json::from_str(&ls[0]).unwrap();
    v["index"] = a.end.into();
    ls.push(serde_json::to_string(&v).unwrap());
    write_lines(&d, "statements.jsonl", &ls);
    rehash(&d);
    assert_fails(
        &verify(&d, &a),
        "decisions",
        "statements.jsonl",
        Some(a.end),
    );
}

#[test]
fn trusted_checkpoints() {
    let (t, d, a) = fresh();
    // The same tree at a smaller size: the archive extends it.
    let same = t.path().join("same");
    std::fs::write(&same, a.checkpoint(100)).unwrap();
    let r = assert_ok(&verify_with(
        &d,
        &a.log_key,
        &["--trusted-checkpoint", same.to_str().unwrap()],
    ));
    assert_eq!(r["trusted_checkpoint_size"], 100);
    // Its full size too.
    std::fs::write(&same, a.checkpoint(a.tree_size)).unwrap();
    assert_ok(&verify_with(
        &d,
        &a.log_key,
        &["--trusted-checkpoint", same.to_str().unwrap()],
    ));
    // A different tree (one entry differs) signed by the same key: exit 1.
    let mut other = a.entries[..100].to_vec();
    other[50] = a.entries[60].clone();
    let diff = t.path().join("diff");
    std::fs::write(&diff, checkpoint_of(&other)).unwrap();
    assert_fails(
        &verify_with(
            &d,
            &a.log_key,
            &["--trusted-checkpoint", diff.to_str().unwrap()],
        ),
        "trusted checkpoint",
        "--trusted-checkpoint",
        None,
    );
    // A larger tree than the archive's.
    let mut longer = a.entries.clone();
    longer.push(a.entries[3].clone());
    std::fs::write(&diff, checkpoint_of(&longer)).unwrap();
    assert_fails(
        &verify_with(
            &d,
            &a.log_key,
            &["--trusted-checkpoint", diff.to_str().unwrap()],
        ),
        "trusted checkpoint",
        "--trusted-checkpoint",
        None,
    );
}

#[test]
fn wrong_log_key_exits_1() {
    let (_t, d, _a) = fresh();
    let other = ed25519_key("countersign.test/log", 0x22);
    let out = verify_with(&d, &other, &[]);
    assert_fails(&out, "manifest", "MANIFEST.json", None);
    assert_fails(&out, "checkpoint", "checkpoint", None);
    // A key that does not parse is unusable input.
    let out = verify_with(&d, "not a key", &[]);
    assert_eq!(out.status.code(), Some(2));
}

/// A verifier key of the log's name with other public key bytes.
fn ed25519_key(name: &str, byte: u8) -> String {
    VerifierKey::ed25519(name, [byte; 32]).unwrap().to_vkey()
}

#[test]
fn extra_file_not_in_the_manifest() {
    let (_t, d, a) = fresh();
    std::fs::write(d.join("notes.txt"), "hello").unwrap();
    assert_fails(&verify(&d, &a), "manifest", "notes.txt", None);
}

#[test]
fn extra_file_in_the_manifest() {
    let (_t, d, a) = fresh();
    std::fs::write(d.join("tile/0/999"), [0u8; 32 * 256]).unwrap();
    let mut m = manifest(&d);
    m.files.insert("tile/0/999".into(), String::new());
    write_manifest(&d, &m);
    rehash(&d);
    assert_fails(&verify(&d, &a), "manifest", "tile/0/999", None);
}

#[test]
fn missing_tile() {
    let (_t, d, a) = fresh();
    std::fs::remove_file(d.join("tile/0/000")).unwrap();
    let out = verify(&d, &a);
    assert_fails(&out, "manifest", "tile/0/000", None);
    assert_fails(&out, "tiles", "tile/0", None);
}

#[test]
fn missing_tile_not_listed() {
    let (_t, d, a) = fresh();
    let p = manifest(&d)
        .files
        .keys()
        .find(|f| f.starts_with("tile/1/"))
        .unwrap()
        .clone();
    std::fs::remove_file(d.join(&p)).unwrap();
    let mut m = manifest(&d);
    m.files.remove(&p);
    write_manifest(&d, &m);
    assert_fails(&verify(&d, &a), "tiles", &p, None);
}

#[test]
fn decision_by_a_revoked_credential() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("a");
    let a = build(
        &d,
        &ArchiveSpec {
            decision_after_revocation: true,
            ..ArchiveSpec::default()
        },
    )
    .unwrap();
    assert_fails(
        &verify(&d, &a),
        "revocation",
        "tile/entries/000",
        Some(a.end - 1),
    );
}

#[test]
fn origin_pin_is_enforced() {
    let (_t, d, a) = fresh();
    let out = bin()
        .args([
            "--json",
            "export",
            d.to_str().unwrap(),
            "--log-key",
            &a.log_key,
        ])
        .args(["--origin", "https://evil.example"])
        .output()
        .unwrap();
    assert_fails(&out, "decisions", "tile/entries/000", Some(a.start));
    let out = verify_with(&d, &a.log_key, &[]);
    assert_ok(&out);
    let out = bin()
        .args([
            "--json",
            "export",
            d.to_str().unwrap(),
            "--log-key",
            &a.log_key,
        ])
        .args(["--rp-id", "evil.example"])
        .output()
        .unwrap();
    assert_fails(&out, "manifest", "MANIFEST.json", None);
}

#[test]
fn unusable_input_exits_2() {
    let (t, d, a) = fresh();
    let out = verify(&t.path().join("no-such-dir"), &a);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(report(&out)["verified"], Value::Null);
    // No relying party pinned.
    let out = bin()
        .args(["export", d.to_str().unwrap(), "--log-key", &a.log_key])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A manifest that is not JSON.
    std::fs::write(d.join("MANIFEST.json"), "{\"format\": ").unwrap();
    assert_eq!(verify(&d, &a).status.code(), Some(2));
    // No manifest.
    std::fs::remove_file(d.join("MANIFEST.json")).unwrap();
    assert_eq!(verify(&d, &a).status.code(), Some(2));
}

fn flawed(flaw: Flaw) -> (tempfile::TempDir, PathBuf, Archive) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("a");
    let a = build(
        &d,
        &ArchiveSpec {
            flaw,
            ..ArchiveSpec::default()
        },
    )
    .unwrap();
    (tmp, d, a)
}

#[test]
fn decision_with_a_bad_passkey_signature() {
    let (_t, d, a) = flawed(Flaw::Signature);
    let out = verify(&d, &a);
    assert_fails(&out, "decisions", "tile/entries/000", Some(a.flawed_index));
    let r = report(&out);
    assert_eq!(r["failures"].as_array().unwrap().len(), 1, "{r:#}");
    assert!(r["failures"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("passkey assertion"));
}

#[test]
fn decision_without_user_verification() {
    let (_t, d, a) = flawed(Flaw::NoUserVerification);
    assert_fails(
        &verify(&d, &a),
        "decisions",
        "tile/entries/000",
        Some(a.flawed_index),
    );
    assert_ok(&verify_with(&d, &a.log_key, &["--allow-no-uv"]));
}

#[test]
fn outside_rows_out_of_time_order() {
    let (_t, d, a) = fresh();
    let first_outside = (a.end - a.start) as usize;
    rewrite_events(&d, |rows| {
        // The two undecided requests' request.created rows come first (5 and 10 s after
        // events_from); swap the first two rows of the run.
        rows.swap(first_outside, first_outside + 1);
    });
    assert_fails(&verify(&d, &a), "events", "events.jsonl", None);
}

#[test]
fn extra_csv_record() {
    let (_t, d, a) = fresh();
    let mut csv = std::fs::read_to_string(d.join("events.csv")).unwrap();
    let last = lines(&d, "events.csv").last().unwrap().clone();
    csv.push_str(&last);
    csv.push_str("\r\n");
    std::fs::write(d.join("events.csv"), csv).unwrap();
    rehash(&d);
    assert_fails(&verify(&d, &a), "events", "events.csv", None);
}

#[test]
fn report_with_a_running_script() {
    let (_t, d, a) = fresh();
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    std::fs::write(
        d.join("report.html"),
        html.replace("</body>", "<script>alert(1)</script></body>"),
    )
    .unwrap();
    rehash(&d);
    assert_fails(&verify(&d, &a), "report", "report.html", None);
}

/// `--policy`: the archive's checkpoint must meet it. Its log key may come from the policy alone;
/// a quorum the checkpoint's (absent) cosignatures cannot meet fails check 2.
#[test]
fn policy_on_the_archive_checkpoint() {
    let (t, d, a) = fresh();
    let write = |name: &str, text: String| {
        let p = t.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let none = write("none.txt", format!("log {}\nquorum none\n", a.log_key));
    let out = bin()
        .args(["--json", "export"])
        .arg(&d)
        .arg("--policy")
        .arg(&none)
        .args(["--rp-id", RP_ID])
        .output()
        .unwrap();
    assert_ok(&out);
    let one = write(
        "one.txt",
        format!(
            "log {}\nwitness w {}\nquorum w\n",
            a.log_key,
            VerifierKey::cosignature("w.test", [7; 32])
                .unwrap()
                .to_vkey()
        ),
    );
    let out = verify_with(&d, &a.log_key, &["--policy", one.to_str().unwrap()]);
    assert_fails(&out, "checkpoint", "checkpoint", None);
}

/// A quorum archive (`ArchiveSpec::quorum`) with `flaw`, with bundles.
fn quorum_archive(
    flaw: countersign_testvectors::archive::QuorumFlaw,
) -> (tempfile::TempDir, PathBuf, Archive) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("q");
    let a = build(
        &d,
        &ArchiveSpec {
            bundles: true,
            quorum: true,
            quorum_flaw: flaw,
            ..ArchiveSpec::default()
        },
    )
    .unwrap();
    (tmp, d, a)
}

/// X10: every version 2 decision is checked against the logged policy, the requests are tallied
/// (met, denied, pending), and the bundles of the quorum-completing approvals and the denial
/// verify, none being written for an approval that completes no quorum.
#[test]
fn quorum_archive_verifies_and_tallies_its_requests() {
    use countersign_testvectors::archive::QuorumFlaw;
    let (_t, d, a) = quorum_archive(QuorumFlaw::None);
    let q = a.quorum.clone().unwrap();
    let r = assert_ok(&verify(&d, &a));
    assert_eq!(r["quorum"]["requests"], 4, "{r:#}");
    assert_eq!(
        (&r["quorum"]["met"], &r["quorum"]["denied"]),
        (&2.into(), &1.into())
    );
    assert_eq!(r["quorum"]["pending"], serde_json::json!([q.pending]));
    // A policy.changed row for the policy entry, and the bundles written.
    let rows = lines(&d, "events.jsonl");
    let at = row_index(&rows, |v| v["log_index"] == q.policy);
    let row: Value = serde_json::from_str(&rows[at]).unwrap();
    assert_eq!(row["event_type"], "policy.changed");
    let files = manifest(&d).files;
    for i in [q.met.1, q.denied.1, q.no_rule] {
        assert!(files.contains_key(&format!("bundles/{i}.json")), "{i}");
    }
    for i in [q.met.0, q.pending, q.denied.0] {
        assert!(!files.contains_key(&format!("bundles/{i}.json")), "{i}");
    }
    let b: Value = serde_json::from_slice(
        &std::fs::read(d.join(format!("bundles/{}.json", q.met.1))).unwrap(),
    )
    .unwrap();
    assert_eq!(b["version"], 2);
    assert_eq!(b["approvals"][0]["decision"]["index"], q.met.0);
    assert_eq!(b["policy"]["index"], q.policy);
    let out = bin()
        .arg("export")
        .arg(&d)
        .args(["--log-key", &a.log_key, "--rp-id", RP_ID])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "\nquorum: 4 requests under an approval policy: 2 met their quorum in the archive, 1 \
             denied, 1 not (yet) met (first approvals at {})",
            q.pending
        )),
        "{text}"
    );
}

#[test]
fn quorum_archive_with_a_misstated_policy_or_a_non_eligible_approver_fails() {
    use countersign_testvectors::archive::QuorumFlaw;
    let (_t, d, a) = quorum_archive(QuorumFlaw::MisstatedQuorum);
    let q = a.quorum.clone().unwrap();
    let out = verify(&d, &a);
    assert_fails(&out, "policy", "statements.jsonl", Some(q.met.0));
    let r = report(&out);
    assert!(
        r.to_string()
            .contains("the logged policy gives quorum 2, the statement says 1"),
        "{r:#}"
    );
    // The bundles made under the misstated quorum fail as well.
    assert_fails(&out, "bundles", "bundles/", None);

    let (_t, d, a) = quorum_archive(QuorumFlaw::NotEligible);
    let q = a.quorum.clone().unwrap();
    let out = verify(&d, &a);
    assert_fails(&out, "decisions", "statements.jsonl", Some(q.met.1));
    assert!(
        report(&out)
            .to_string()
            .contains("approver \\\"apv_dave\\\" is not one of the statement's eligible approvers"),
        "{:#}",
        report(&out)
    );
}

#[test]
fn quorum_archive_mutations_fail() {
    use countersign_testvectors::archive::QuorumFlaw;
    let (_t, d, a) = quorum_archive(QuorumFlaw::None);
    let q = a.quorum.clone().unwrap();
    // The met request's bundle with its first approval removed.
    let from = d.join(format!("bundles/{}.json", q.met.1));
    let text = std::fs::read_to_string(&from).unwrap();
    let mut b: Value = serde_json::from_str(&text).unwrap();
    b["approvals"] = serde_json::json!([]);
    let rel = format!("bundles/{}.json", q.met.1);
    std::fs::write(d.join(&rel), serde_json::to_vec_pretty(&b).unwrap()).unwrap();
    rehash(&d);
    let out = verify(&d, &a);
    assert_fails(&out, "bundles", &rel, Some(q.met.1));
    assert!(
        report(&out)
            .to_string()
            .contains("2 approvals needed, 1 present"),
        "{:#}",
        report(&out)
    );

    // The policy entry's bytes changed: the entry no longer hashes to its level-0 tile hash.
    let (_t, d, a) = quorum_archive(QuorumFlaw::None);
    let q = a.quorum.clone().unwrap();
    let tile = manifest(&d)
        .files
        .keys()
        .find(|f| f.starts_with("tile/entries/"))
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(d.join(&tile)).unwrap();
    let needle = b"payments over 1000";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at] = b'P';
    std::fs::write(d.join(&tile), bytes).unwrap();
    rehash(&d);
    assert_fails(&verify(&d, &a), "entries", &tile, Some(q.policy));

    // A token.issued row for the request whose quorum was not met.
    let (_t, d, a) = quorum_archive(QuorumFlaw::None);
    rewrite_events(&d, |rows| {
        let at = row_index(rows, |v| v["event_type"] == "token.issued");
        let mut v: Value = serde_json::from_str(&rows[at]).unwrap();
        v["request_id"] = "req_q2".into();
        v["binding_message"] = "Pay 1250.00 EUR to ACME (ref q2)".into();
        rows.insert(
            at + 1,
            EventRow::to_json_line(&serde_json::from_value(v).unwrap()),
        );
    });
    let out = verify(&d, &a);
    assert!(
        report(&out)
            .to_string()
            .contains("did not reach its quorum of 2 approvals"),
        "{:#}",
        report(&out)
    );
}

/// Adds `row` to the second run of events.jsonl (the events outside the log), keeping it
/// ordered by time.
fn add_outside_row(dir: &Path, row: &EventRow) {
    rewrite_events(dir, |rows| {
        let first = row_index(rows, |v| v["log_index"].is_null());
        let mut outside: Vec<String> = rows.split_off(first);
        outside.push(row.to_json_line());
        outside.sort_by_key(|l| {
            serde_json::from_str::<Value>(l).unwrap()["time_utc"]
                .as_str()
                .unwrap()
                .to_owned()
        });
        rows.extend(outside);
    });
}

/// X10: a request approved by fewer than its quorum and denied by no one may have expired: one
/// `request.expired` row at its statement's `expires_at` verifies; a second one, one at another
/// time, or one for a request that met its quorum fails.
#[test]
fn quorum_archive_expiry_short_of_the_quorum() {
    use countersign_testvectors::archive::QuorumFlaw;
    use countersign_verifier::export::{EventType, StatementLine};
    let statement_of = |d: &Path, index: u64| {
        lines(d, "statements.jsonl")
            .iter()
            .map(|l| serde_json::from_str::<StatementLine>(l).unwrap())
            .find(|l| l.index == index)
            .unwrap()
            .statement
    };
    let expired = |st: &countersign_verifier::Statement, ms: u64| {
        EventRow::for_request(EventType::RequestExpired, st, ms)
    };

    let (_t, d, a) = quorum_archive(QuorumFlaw::None);
    let q = a.quorum.clone().unwrap();
    let st = statement_of(&d, q.pending);
    add_outside_row(&d, &expired(&st, st.expires_at * 1000));
    let r = assert_ok(&verify(&d, &a));
    assert_eq!(r["quorum"]["pending"], serde_json::json!([q.pending]));
    // Twice.
    add_outside_row(&d, &expired(&st, st.expires_at * 1000));
    assert_event_failure(&verify(&d, &a), "a second request.expired row for req_q2");

    // At another time than its expiry.
    let (_t, d, a) = quorum_archive(QuorumFlaw::None);
    add_outside_row(&d, &expired(&st, st.expires_at * 1000 + 1));
    assert_event_failure(
        &verify(&d, &a),
        "the request.expired row of req_q2 is not the one made from its statement",
    );

    // For the request that met its quorum, and for the one denied.
    for i in [q.met.1, q.denied.0] {
        let (_t, d, a) = quorum_archive(QuorumFlaw::None);
        let st = statement_of(&d, i);
        add_outside_row(&d, &expired(&st, st.expires_at * 1000));
        assert_event_failure(&verify(&d, &a), "a request.expired row for req_q");
    }
}
