#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::error::Error as _;

#[test]
fn every_refusal_has_its_own_stable_code() {
    use RefusalReason::*;
    let all = [
        (InvalidRequest, "invalid_request"),
        (InvalidPublicKey, "invalid_public_key"),
        (InvalidEntry, "invalid_entry"),
        (UnknownEnrolment, "unknown_enrolment"),
        (EnrolmentMismatch, "enrolment_mismatch"),
        (NotAnEnrolment, "not_an_enrolment"),
        (WrongEnrolment, "wrong_enrolment"),
        (UnknownCredential, "unknown_credential"),
        (CredentialConflict, "credential_conflict"),
        (InvalidAssertion, "invalid_assertion"),
        (SignCount, "sign_count"),
        (Revoked, "revoked"),
        (AlreadyRevoked, "already_revoked"),
    ];
    for (reason, code) in all {
        assert_eq!(reason.code(), code);
        let e = AppendError::refused(reason, "what was wrong");
        assert_eq!(e.reason(), Some(reason));
        assert_eq!(e.to_string(), format!("{code}: what was wrong"));
    }
    let mut codes: Vec<_> = all.iter().map(|(r, _)| r.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
}

#[test]
fn append_errors_other_than_refusals_have_no_reason() {
    for (e, text) in [
        (AppendError::QueueFull, "the append queue is full"),
        (AppendError::ShuttingDown, "the log is shutting down"),
        (AppendError::Storage, "storage failed; nothing was appended"),
    ] {
        assert_eq!(e.reason(), None);
        assert_eq!(e.to_string(), text);
    }
}

#[test]
fn init_errors_say_what_to_fix_and_keep_their_cause() {
    let io = InitError::io(
        "creating",
        std::path::Path::new("/data/dir"),
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
    );
    assert_eq!(io.to_string(), "creating /data/dir: denied");
    assert_eq!(io.source().unwrap().to_string(), "denied");

    let st: InitError = StorageError::Corrupt("bad tree state".into()).into();
    assert_eq!(st.to_string(), "storage is damaged: bad tree state");
    assert_eq!(
        st.source().unwrap().to_string(),
        "storage is damaged: bad tree state"
    );

    for e in [
        InitError::Unusable("another origin".into()),
        InitError::Config("bad flag".into()),
    ] {
        assert!(e.source().is_none());
        assert!(["another origin", "bad flag"].contains(&e.to_string().as_str()));
    }
}
