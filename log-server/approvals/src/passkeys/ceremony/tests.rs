#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

#[test]
fn a_ceremony_is_taken_once_with_its_challenge() {
    let c = Ceremonies::default();
    let (id, challenge) = c.start(Kind::SignIn).unwrap();
    let (other, other_challenge) = c.start(Kind::Enrol { link_hash: [1; 32] }).unwrap();
    assert_ne!(id, other);
    assert_ne!(challenge, other_challenge);
    let got = c.take(&id).unwrap();
    assert_eq!(got.challenge, challenge);
    assert!(matches!(got.kind, Kind::SignIn));
    assert!(c.take(&id).is_none(), "taken once");
    assert!(c.take("no-such-id").is_none());
    let got = c.take(&other).unwrap();
    assert!(matches!(got.kind, Kind::Enrol { link_hash } if link_hash == [1; 32]));
}

#[test]
fn starts_are_bounded_and_a_poisoned_lock_does_not_wedge_them() {
    let c = Ceremonies::default();
    {
        let mut m = c.0.lock().unwrap();
        for i in 0..MAX_CEREMONIES {
            m.insert(
                i.to_string(),
                Ceremony {
                    kind: Kind::SignIn,
                    challenge: [0; 32],
                    started: Instant::now(),
                },
            );
        }
    }
    let e = c.start(Kind::SignIn).unwrap_err();
    assert_eq!(e, TooManyCeremonies);
    assert_eq!(
        e.to_string(),
        "too many ceremonies in progress; retry shortly"
    );
    // A thread that panicked while holding the registry poisons its lock; the registry
    // goes on working.
    let c = std::sync::Arc::new(Ceremonies::default());
    let c2 = c.clone();
    let r = std::thread::spawn(move || {
        let _g = c2.0.lock().unwrap();
        panic!("poisoning the lock on purpose");
    })
    .join();
    assert!(r.is_err() && c.0.is_poisoned());
    let (id, challenge) = c.start(Kind::SignIn).unwrap();
    assert_eq!(c.take(&id).unwrap().challenge, challenge);
}
