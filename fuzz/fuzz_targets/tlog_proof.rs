//! C2SP tlog-proof text: a parsed proof re-serialises to the same text; it is then verified
//! (checkpoint signature, then inclusion of a fixed leaf) against the test vectors' log key, so
//! the embedded checkpoint and the proof arithmetic are exercised too.
#![no_main]

use countersign_fuzz::{log_key, witness_key};
use countersign_verifier::{leaf_hash, TlogProof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = TlogProof::parse(text) else {
        return;
    };
    assert_eq!(p.to_text(), text, "tlog-proof does not round-trip");
    let _ = p.verify(&leaf_hash(b""), &log_key(), &[witness_key()]);
});
