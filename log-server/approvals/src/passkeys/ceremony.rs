//! The ceremony registry: started WebAuthn ceremonies (enrolment, sign-in) held by the server
//! between their start and their finish, each taken once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::util::B64URL;

/// How long a started ceremony may take.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// Most ceremonies held at once (a bound on memory a flood of starts can take).
pub const MAX_CEREMONIES: usize = 100_000;

/// What a ceremony is for.
pub enum Kind {
    /// Enrolment behind the link whose SHA-256 this is.
    Enrol {
        /// SHA-256 of the link token.
        link_hash: [u8; 32],
    },
    /// Sign-in.
    SignIn,
}

/// A started ceremony.
pub struct Ceremony {
    /// What for.
    pub kind: Kind,
    /// The challenge the authenticator must sign.
    pub challenge: [u8; 32],
    started: Instant,
}

/// Started ceremonies, by id; each is taken once by its finish.
#[derive(Default)]
pub struct Ceremonies(Mutex<HashMap<String, Ceremony>>);

impl Ceremonies {
    /// Starts a ceremony: its id and challenge. Refused when [`MAX_CEREMONIES`] are running.
    pub fn start(&self, kind: Kind) -> Result<(String, [u8; 32]), TooManyCeremonies> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.retain(|_, c| c.started.elapsed() < CEREMONY_TTL);
        if m.len() >= MAX_CEREMONIES {
            return Err(TooManyCeremonies);
        }
        let id = B64URL.encode(crate::util::random_bytes::<16>());
        let challenge = crate::util::random_bytes::<32>();
        m.insert(
            id.clone(),
            Ceremony {
                kind,
                challenge,
                started: Instant::now(),
            },
        );
        Ok((id, challenge))
    }

    /// Takes the ceremony `id` for its finish (once), if it has not timed out.
    pub fn take(&self, id: &str) -> Option<Ceremony> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.remove(id).filter(|c| c.started.elapsed() < CEREMONY_TTL)
    }
}

/// [`Ceremonies::start`] refused: too many ceremonies are running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyCeremonies;

impl std::fmt::Display for TooManyCeremonies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many ceremonies in progress; retry shortly")
    }
}

impl std::error::Error for TooManyCeremonies {}

#[cfg(test)]
mod tests {
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
}
