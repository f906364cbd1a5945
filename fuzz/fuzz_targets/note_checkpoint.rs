//! C2SP signed notes and checkpoints: a parsed note re-serialises to the same bytes, and so does
//! its checkpoint body; signatures are checked against the test vectors' log and witness keys.
//! Each line is also tried as a verifier key (`name+hash+base64`), which must round-trip.
#![no_main]

use countersign_fuzz::{log_key, witness_key};
use countersign_verifier::{verify_checkpoint, Checkpoint, Note, VerifierKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines().take(4) {
            if let Ok(k) = VerifierKey::parse(line) {
                assert_eq!(k.to_vkey(), line, "verifier key does not round-trip");
            }
        }
    }
    let Ok(note) = Note::parse(data) else {
        return;
    };
    assert_eq!(note.to_text().as_bytes(), data, "note does not round-trip");
    if let Ok(c) = Checkpoint::parse(note.text()) {
        assert_eq!(c.to_text(), note.text(), "checkpoint does not round-trip");
    }
    let (log, witnesses) = (log_key(), [witness_key()]);
    if let Ok(v) = verify_checkpoint(data, &log, &witnesses) {
        assert_eq!(Checkpoint::parse(note.text()).ok(), Some(v.checkpoint));
        assert_eq!(v.note_text, note.text());
    }
});
