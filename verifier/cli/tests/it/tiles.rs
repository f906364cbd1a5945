//! `countersign-verify tiles`: a log read from its C2SP tiles in a directory (here an export
//! archive's checkpoint and tiles, the same layout as a tile mirror): the checkpoint verified,
//! entries proven included from the entry bundles and hash tiles, a trusted checkpoint proven a
//! prefix; each altered or missing object, a wrong key and a trusted checkpoint of another tree
//! exit 1 naming the check; unusable input exits 2. (Over HTTP, from a server and from an S3
//! bucket, scripts/go-check.sh runs it.)

use std::path::Path;
use std::process::Output;

use countersign_testvectors::archive::{build, checkpoint_of, Archive, ArchiveSpec};
use serde_json::Value;

use crate::run;

/// An archive of 300 decisions: a tree of about 310 entries, so one full tile, one partial
/// tile, and a level-1 tile.
fn archive() -> (tempfile::TempDir, std::path::PathBuf, Archive) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("a");
    let a = build(
        &d,
        &ArchiveSpec {
            decisions: 300,
            ..ArchiveSpec::default()
        },
    )
    .unwrap();
    complete(&d, &a);
    (tmp, d, a)
}

/// The archive holds entry bundles of its range only; a tile endpoint has them for the whole
/// tree: the last, partial one is added.
fn complete(d: &Path, a: &Archive) {
    let n = a.tree_size;
    let first = n / 256 * 256;
    let mut b = Vec::new();
    for e in &a.entries[first as usize..] {
        b.extend_from_slice(&u16::try_from(e.len()).unwrap().to_be_bytes());
        b.extend_from_slice(e);
    }
    let p = d.join(countersign_verifier::export::tile_path(
        None,
        n / 256,
        n - first,
    ));
    std::fs::write(p, b).unwrap();
}

fn tiles(dir: &str, key: &str, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["--json".into(), "tiles".into(), dir.into()];
    args.extend(["--log-key".into(), key.to_owned()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    run(&args, None)
}

fn verdict(out: &Output) -> (Option<i32>, Value) {
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn a_directory_of_tiles_proves_entries_and_a_trusted_checkpoint() {
    let (tmp, d, a) = archive();
    assert!(a.tree_size > 300, "{}", a.tree_size);
    let dir = d.display().to_string();
    let last = (a.tree_size - 1).to_string();
    let trusted = write(tmp.path(), "old", &a.checkpoint(100));
    let (code, v) = verdict(&tiles(
        &dir,
        &a.log_key,
        &[
            "--index",
            "0",
            "--index",
            "257",
            "--index",
            &last,
            "--trusted-checkpoint",
            &trusted,
        ],
    ));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["tree_size"], a.tree_size);
    let inc = v["inclusion"].as_array().unwrap();
    assert_eq!(inc.len(), 3);
    for (got, i) in inc.iter().zip([0, 257, a.tree_size - 1]) {
        assert_eq!(got["index"], i);
        assert_eq!(got["entry"], hex::encode(&a.entries[i as usize]));
    }
    assert_eq!(inc[0]["kind"], "enrolment");
    assert_eq!(v["consistency"]["trusted_size"], 100);
    // The same through a file:// URL, in text.
    let out = run(
        &[
            "tiles".into(),
            format!("file://{dir}"),
            "--log-key".into(),
            a.log_key.clone(),
            "--index".into(),
            "5".into(),
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("OK: checkpoint of log "), "{text}");
    assert!(text.contains("\ninclusion: entry 5 ("), "{text}");
}

#[test]
fn each_bad_object_or_checkpoint_fails_naming_the_check() {
    let (tmp, d, a) = archive();
    let dir = d.display().to_string();
    let flip = |rel: &str, at: usize| {
        let p = d.join(rel);
        let mut b = std::fs::read(&p).unwrap();
        b[at] ^= 1;
        std::fs::write(&p, b).unwrap();
    };
    let check_of = |out: &Output| {
        let (code, v) = verdict(out);
        assert_eq!(code, Some(1), "{v}");
        v["check"].as_str().unwrap().to_owned()
    };

    // An entry's byte: it no longer hashes to the level-0 tile's hash.
    flip("tile/entries/000", 10);
    assert_eq!(
        check_of(&tiles(&dir, &a.log_key, &["--index", "0"])),
        "entries"
    );
    flip("tile/entries/000", 10);
    // A hash of the level-0 tile: the entry and the tile disagree.
    flip("tile/0/000", 3);
    assert_eq!(
        check_of(&tiles(&dir, &a.log_key, &["--index", "0"])),
        "entries"
    );
    // ... and another entry's proof, which uses that hash, fails.
    assert_eq!(
        check_of(&tiles(&dir, &a.log_key, &["--index", "1"])),
        "inclusion"
    );
    flip("tile/0/000", 3);
    // A missing tile.
    let level1 = std::fs::read_dir(d.join("tile/1"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let moved = tmp.path().join("moved");
    std::fs::rename(&level1, &moved).unwrap();
    // (a consistency proof from 300 needs the hash of leaves 0..255, in the level-1 tile)
    let t300 = write(tmp.path(), "t300", &a.checkpoint(300));
    let out = tiles(&dir, &a.log_key, &["--trusted-checkpoint", &t300]);
    assert_eq!(check_of(&out), "tiles");
    assert!(
        verdict(&out).1["error"]
            .as_str()
            .unwrap()
            .contains("tile/1/000.p/1"),
        "{:?}",
        verdict(&out)
    );
    std::fs::rename(&moved, &level1).unwrap();
    // A checkpoint under another key.
    let name = countersign_verifier::VerifierKey::parse(&a.log_key)
        .unwrap()
        .name()
        .to_owned();
    let other = countersign_verifier::VerifierKey::ed25519(&name, [9; 32])
        .unwrap()
        .to_vkey();
    assert_eq!(check_of(&tiles(&dir, &other, &[])), "checkpoint");
    // A trusted checkpoint of another tree of the same log key, and one larger than the tree.
    let mut forked = a.entries[..50].to_vec();
    forked[7][0] ^= 1;
    let t = write(tmp.path(), "forked", &checkpoint_of(&forked));
    assert_eq!(
        check_of(&tiles(&dir, &a.log_key, &["--trusted-checkpoint", &t])),
        "consistency"
    );
    let mut longer = a.entries.clone();
    longer.push(a.entries[0].clone());
    let t = write(tmp.path(), "longer", &checkpoint_of(&longer));
    assert_eq!(
        check_of(&tiles(&dir, &a.log_key, &["--trusted-checkpoint", &t])),
        "consistency"
    );
    // An index past the tree.
    let past = a.tree_size.to_string();
    assert_eq!(
        check_of(&tiles(&dir, &a.log_key, &["--index", &past])),
        "inclusion"
    );
    // Everything restored: valid again.
    assert_eq!(
        verdict(&tiles(&dir, &a.log_key, &["--index", "1"])).0,
        Some(0)
    );

    // Unusable input: exit 2.
    for (url, key) in [
        ("/no/such/dir", a.log_key.as_str()),
        ("ftp://x/y", a.log_key.as_str()),
        (dir.as_str(), "not a key"),
    ] {
        assert_eq!(tiles(url, key, &[]).status.code(), Some(2), "{url} {key}");
    }
}
