#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use alloc::borrow::ToOwned;
use alloc::string::ToString;
use alloc::vec;
use ed25519_dalek::{Signer, SigningKey};

use crate::hash::empty_root;
use crate::note::NoteSignature;

/// `text` signed by an Ed25519 key named `name` (seed byte `seed`), and that key.
fn signed(text: &str, name: &str, seed: u8) -> (String, VerifierKey) {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let key = VerifierKey::ed25519(name, sk.verifying_key().to_bytes()).unwrap();
    let mut note = Note::new(text).unwrap();
    note.push_signature(NoteSignature {
        name: name.to_owned(),
        key_id: key.id(),
        signature: sk.sign(text.as_bytes()).to_bytes().to_vec(),
    })
    .unwrap();
    (note.to_text(), key)
}

fn body(origin: &str) -> String {
    Checkpoint {
        origin: origin.to_owned(),
        size: 3,
        root: empty_root(),
        extensions: vec!["ext one".to_owned(), "ext two".to_owned()],
    }
    .to_text()
}

#[test]
fn extension_lines_round_trip_and_may_not_be_empty() {
    let text = body("a.example/log");
    assert!(text.ends_with("\next one\next two\n"), "{text}");
    let cp = Checkpoint::parse(&text).unwrap();
    assert_eq!(cp.extensions, ["ext one", "ext two"]);
    assert_eq!(cp.to_text(), text);
    let e = Checkpoint::parse(&text.replace("ext one\n", "\n")).unwrap_err();
    assert_eq!(e, CheckpointError::Malformed("empty extension line"));
    assert_eq!(e.to_string(), "malformed checkpoint: empty extension line");
}

#[test]
fn a_note_signed_only_by_a_witness_is_not_the_logs() {
    let (note, witness) = signed(&body("a.example/log"), "witness.example", 2);
    let (_, log) = signed(&body("a.example/log"), "a.example/log", 1);
    let e = verify_checkpoint(note.as_bytes(), &log, &[witness]).unwrap_err();
    assert_eq!(e, CheckpointError::NotSignedByLog);
    assert_eq!(
        e.to_string(),
        "checkpoint carries no signature by the log key"
    );
    // Without the witness's key, no known key signed it at all.
    let e = verify_checkpoint(note.as_bytes(), &log, &[]).unwrap_err();
    assert!(matches!(e, CheckpointError::Note(_)), "{e:?}");
    assert!(e.to_string().starts_with("checkpoint signature: "), "{e}");
}

#[test]
fn the_origin_line_must_be_the_log_keys_name() {
    let (note, log) = signed(&body("b.example/log"), "a.example/log", 1);
    let e = verify_checkpoint(note.as_bytes(), &log, &[]).unwrap_err();
    assert_eq!(
        e,
        CheckpointError::WrongOrigin {
            found: "b.example/log".to_owned()
        }
    );
    assert_eq!(
        e.to_string(),
        "checkpoint is for log \"b.example/log\", not the expected one"
    );
    let (note, log) = signed(&body("a.example/log"), "a.example/log", 1);
    let v = verify_checkpoint(note.as_bytes(), &log, &[]).unwrap();
    assert_eq!(v.checkpoint.size, 3);
    assert!(v.cosignatures.is_empty());
}
