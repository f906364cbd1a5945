//! The witness's `add-checkpoint` body (c2sp.org/tlog-witness; `countersign_witness`'s
//! `request::parse`, exported for this target as `parse_add_checkpoint`).
//!
//! Asserts: a body that parses is at most `MAX_REQUEST_BYTES` with at most 63 proof lines, and
//! writing its parts back (`old <size>`, one base64 line per hash, an empty line, the note) gives
//! the input bytes exactly: one spelling per request (no leading zeros, canonical base64), and the
//! note is the body's tail as sent.
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_witness::{parse_add_checkpoint, MAX_PROOF_LINES, MAX_REQUEST_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = parse_add_checkpoint(data) else {
        return;
    };
    assert!(data.len() <= MAX_REQUEST_BYTES);
    assert!(r.proof.len() <= MAX_PROOF_LINES);
    let mut out = format!("old {}\n", r.old_size).into_bytes();
    for h in &r.proof {
        out.extend_from_slice(B64.encode(h.as_bytes()).as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(r.note);
    assert_eq!(
        out,
        data,
        "the request re-serialises to {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(parse_add_checkpoint(data), Ok(r));
});
