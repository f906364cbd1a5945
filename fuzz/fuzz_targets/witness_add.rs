//! The witness itself (`Witness::add_checkpoint`): a fresh witness for the test vectors' log, on
//! a temporary directory, takes a sequence of fuzzed `add-checkpoint` bodies (separated by 0xFF
//! bytes, at most 8). The seeds hold checkpoints the test vectors' log really signed (several
//! roots at size 5), so signatures verify and forks can be tried.
//!
//! Asserts: the witness never cosigns two roots at one size nor a smaller size after a larger
//! one; each accepted body's old size is the size cosigned before it (0 at first); after each
//! cosignature `latest` is the submitted checkpoint, signed by the log and carrying a
//! cosignature by the witness's key that verifies; a witness reopened on the same directory
//! reports the same latest checkpoint (the state is on disk before the cosignature is returned).
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use countersign_fuzz::log_key;
use countersign_verifier::{verify_checkpoint, Checkpoint, Hash, Note, Policy};
use countersign_witness::{parse_add_checkpoint, Witness, WitnessKey};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "countersign.test/log";

fn witness(dir: &PathBuf) -> Witness {
    let key = WitnessKey::from_seed("witness.fuzz.test", &[7; 32]).expect("witness key");
    let policy = format!("log {}\nquorum none\n", countersign_fuzz::LOG_VKEY);
    let policy = Policy::parse(policy.as_bytes()).expect("policy");
    Witness::open(key, &policy, dir).expect("open the witness")
}

fn temp_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!(
        "countersign-fuzz-witness-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fuzz_target!(|data: &[u8]| {
    let dir = temp_dir();
    let w = witness(&dir);
    let wkey = w.verifier().clone();
    let log = log_key();
    // (size, root) of every cosignature, in order.
    let mut cosigned: Vec<(u64, Hash)> = Vec::new();
    for body in data.split(|&b| b == 0xff).take(8) {
        let Ok(line) = w.add_checkpoint(body) else {
            continue;
        };
        let req = parse_add_checkpoint(body).expect("a cosigned body parses");
        let note = Note::parse(req.note).expect("a cosigned note parses");
        let c = Checkpoint::parse(note.text()).expect("a cosigned checkpoint parses");
        assert_eq!(c.origin, ORIGIN);
        let last = cosigned.last().map_or(0, |&(s, _)| s);
        assert_eq!(
            req.old_size, last,
            "cosigned from an old size other than the last"
        );
        assert!(c.size >= last, "cosigned size {} after {last}", c.size);
        for (s, r) in &cosigned {
            assert!(
                *s != c.size || *r == c.root,
                "two roots cosigned at size {s}"
            );
        }
        cosigned.push((c.size, c.root));
        assert!(line.starts_with("\u{2014} witness.fuzz.test "), "{line:?}");

        let latest = w.latest(ORIGIN).expect("no latest after a cosignature");
        assert!(
            latest.contains(line.trim_end()),
            "latest lacks the cosignature returned"
        );
        let v = verify_checkpoint(latest.as_bytes(), &log, std::slice::from_ref(&wkey))
            .expect("the latest checkpoint does not verify");
        assert_eq!(v.checkpoint, c, "latest is another checkpoint");
        assert!(
            v.cosignatures.iter().any(|s| s.key == wkey),
            "no valid cosignature"
        );
    }
    let before = w.latest(ORIGIN);
    assert_eq!(before.is_some(), !cosigned.is_empty());
    drop(w);
    let again = witness(&dir);
    assert_eq!(again.latest(ORIGIN), before, "the state on disk differs");
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
});
