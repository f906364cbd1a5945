#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

#[test]
fn a_ceremony_is_taken_once_with_its_challenge_and_a_link_holds_one() {
    let c = Ceremonies::default();
    let (first, _) = c.start(Kind::Enrol { link_hash: [2; 32] }).unwrap();
    let (id, challenge) = c.start(Kind::Enrol { link_hash: [2; 32] }).unwrap();
    let (other, other_challenge) = c.start(Kind::Enrol { link_hash: [1; 32] }).unwrap();
    assert!(
        c.take(&first).is_none(),
        "replaced by the link's next start"
    );
    assert_ne!(id, other);
    assert_ne!(challenge, other_challenge);
    let got = c.take(&id).unwrap();
    assert_eq!(got.challenge, challenge);
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
            let mut link_hash = [0; 32];
            link_hash[..8].copy_from_slice(&(i as u64).to_be_bytes());
            m.insert(
                i.to_string(),
                Ceremony {
                    kind: Kind::Enrol { link_hash },
                    challenge: [0; 32],
                    started: Instant::now(),
                },
            );
        }
    }
    let e = c.start(Kind::Enrol { link_hash: [9; 32] }).unwrap_err();
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
    let (id, challenge) = c.start(Kind::Enrol { link_hash: [9; 32] }).unwrap();
    assert_eq!(c.take(&id).unwrap().challenge, challenge);
}

#[test]
fn a_sign_in_is_sealed_stateless_and_good_once() {
    let s = SignIns::default();
    let (id, challenge) = s.start();
    let (id2, challenge2) = s.start();
    assert_ne!(challenge, challenge2);
    // Nothing is held for a start.
    assert!(s.lock().is_empty());
    let opened = s.open(&id).unwrap();
    assert_eq!(opened.challenge, challenge);
    // Opening does not use it (a finish whose signature fails may be retried)...
    assert!(s.open(&id).is_some());
    // ...spending does, once.
    assert!(s.spend(&opened));
    assert!(!s.spend(&opened));
    assert!(s.open(&id).is_none());
    assert_eq!(s.open(&id2).unwrap().challenge, challenge2);

    // A changed id, another process's id, garbage, truncated: refused.
    let mut raw = B64URL.decode(id2.strip_prefix("si_").unwrap()).unwrap();
    raw[3] ^= 1; // the expiry, moved
    assert!(s.open(&format!("si_{}", B64URL.encode(&raw))).is_none());
    assert!(SignIns::default().open(&id2).is_none());
    for bad in ["", "si_", "si_AAAA", "x", &id2[..id2.len() - 2]] {
        assert!(s.open(bad).is_none(), "{bad}");
    }
}

#[test]
fn an_expired_sign_in_is_refused() {
    let s = SignIns::default();
    // An id sealed with the same key, expiring at `expires_ms`.
    let sealed = |expires_ms: u64| {
        use hmac::Mac;
        let mut body = Vec::new();
        body.extend_from_slice(&expires_ms.to_be_bytes());
        body.extend_from_slice(&[7; 16]);
        let tag = s
            .mac(b"countersign sign-in id v1\0", &body)
            .finalize()
            .into_bytes();
        body.extend_from_slice(&tag);
        format!("si_{}", B64URL.encode(&body))
    };
    assert!(s.open(&sealed(countersign_log::now_ms() - 1)).is_none());
    // The same with a future expiry opens: the refusal above was the expiry.
    assert!(s
        .open(&sealed(countersign_log::now_ms() + 60_000))
        .is_some());
}
