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
mod tests;
