#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::entry::Revocation;
use crate::hash::root_from_leaf_hashes;

fn revocation(enrolment_index: u64, time_ms: u64) -> Vec<u8> {
    Entry::Revocation(Revocation {
        approver_id: "apv_alice".into(),
        credential_id: vec![7; 16],
        enrolment_index,
        reason: "lost".into(),
        time_ms,
    })
    .encode()
    .unwrap()
}

/// Stand-ins for enrolments and decisions: the check never decodes entries of other kinds.
fn other(n: u8) -> Vec<u8> {
    vec![1, 2, n, n, n]
}

fn subject(entries: &[Vec<u8>], enrolment_index: u64, decision_index: u64) -> RevocationSubject {
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    RevocationSubject {
        decision_index,
        enrolment_index,
        tree_size: entries.len() as u64,
        root: root_from_leaf_hashes(&leaves),
    }
}

#[test]
fn a_decision_before_any_revocation_passes() {
    let log = vec![other(0), other(1), revocation(0, 5), other(3), other(4)];
    // Decision 3 relies on enrolment 1, which was never revoked (entry 2 revokes enrolment 0).
    let s = subject(&log, 1, 3);
    assert_eq!(
        check_not_revoked(&s, &log),
        Ok(RevocationCheck {
            entries: 5,
            revoked_after: None
        })
    );
    // A revocation after the decision is reported; the decision stands.
    let mut later = log.clone();
    later.push(revocation(1, 9));
    let s = subject(&later, 1, 3);
    assert_eq!(
        check_not_revoked(&s, later.iter().map(Vec::as_slice)),
        Ok(RevocationCheck {
            entries: 6,
            revoked_after: Some(5)
        })
    );
}

#[test]
fn a_decision_after_its_enrolment_was_revoked_fails() {
    let log = vec![
        other(0),
        other(1),
        revocation(1, 5),
        revocation(1, 6),
        other(4),
    ];
    let s = subject(&log, 1, 4);
    assert_eq!(
        check_not_revoked(&s, &log),
        Err(RevocationError::RevokedBefore {
            revocation_index: 2
        })
    );
    // The revocation at the decision's own index cannot be before it; one just before is.
    let log = vec![other(0), other(1), revocation(1, 5), other(3)];
    assert_eq!(
        check_not_revoked(&subject(&log, 1, 3), &log),
        Err(RevocationError::RevokedBefore {
            revocation_index: 2
        })
    );
}

#[test]
fn entries_that_are_not_the_logs_prove_nothing() {
    let log = vec![other(0), other(1), revocation(1, 5), other(3), other(4)];
    let s = subject(&log, 1, 4);
    // The revocation left out: one entry short.
    let mut short = log.clone();
    short.remove(2);
    assert_eq!(
        check_not_revoked(&s, &short),
        Err(RevocationError::EntryCount {
            expected: 5,
            got: 4
        })
    );
    // The revocation swapped for a harmless entry: the root differs.
    let mut swapped = log.clone();
    swapped[2] = other(2);
    assert_eq!(
        check_not_revoked(&s, &swapped),
        Err(RevocationError::EntriesDoNotMatchCheckpoint)
    );
    // One bit flipped anywhere.
    let mut flipped = log.clone();
    flipped[0][3] ^= 1;
    assert_eq!(
        check_not_revoked(&s, &flipped),
        Err(RevocationError::EntriesDoNotMatchCheckpoint)
    );
    // Entries past the checkpoint are not read, and refused.
    let mut long = log.clone();
    long.push(other(5));
    long.push(other(6));
    assert_eq!(
        check_not_revoked(&s, &long),
        Err(RevocationError::EntryCount {
            expected: 5,
            got: 6
        })
    );
    // Another root (the checkpoint of another log).
    let other_root = RevocationSubject {
        root: leaf_hash(b"x"),
        ..s
    };
    assert_eq!(
        check_not_revoked(&other_root, &log),
        Err(RevocationError::EntriesDoNotMatchCheckpoint)
    );
}

#[test]
fn a_broken_revocation_or_subject_is_refused() {
    let mut bad = revocation(1, 5);
    bad.truncate(bad.len() - 3);
    let log = vec![other(0), other(1), bad, other(3)];
    let s = subject(&log, 1, 3);
    assert!(matches!(
        check_not_revoked(&s, &log),
        Err(RevocationError::Entry { index: 2, .. })
    ));
    for (enrolment, decision, size) in [(3, 3, 5), (4, 3, 5), (1, 5, 5), (1, 9, 5)] {
        let s = RevocationSubject {
            decision_index: decision,
            enrolment_index: enrolment,
            tree_size: size,
            root: leaf_hash(b""),
        };
        assert_eq!(
            check_not_revoked(&s, core::iter::empty::<&[u8]>()),
            Err(RevocationError::InvalidSubject)
        );
    }
}

#[test]
fn errors_say_what_was_wrong() {
    use alloc::string::ToString;
    assert_eq!(
        RevocationError::RevokedBefore {
            revocation_index: 7
        }
        .to_string(),
        "the credential was revoked at log index 7, before the decision"
    );
    assert!(RevocationError::EntriesDoNotMatchCheckpoint
        .to_string()
        .contains("not this log's"));
    assert_eq!(
        RevocationError::EntryCount {
            expected: 5,
            got: 6
        }
        .to_string(),
        "the checkpoint covers 5 entries but 6 or more were given"
    );
}
