//! The ceremony registry: started enrolment ceremonies, held by the server between their start
//! and their finish, each taken once and at most one per enrolment link; and sign-in
//! ceremonies, which the server does not hold ([`SignIns`]).

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
}

/// A started ceremony.
pub struct Ceremony {
    /// What for.
    pub kind: Kind,
    /// The challenge the authenticator must sign.
    pub challenge: [u8; 32],
    started: Instant,
}

impl Ceremony {
    /// A ceremony read back from the shared store (its age checked there).
    pub(crate) fn resumed(kind: Kind, challenge: [u8; 32]) -> Ceremony {
        Ceremony {
            kind,
            challenge,
            started: Instant::now(),
        }
    }
}

/// Prefix of the enrolment ceremonies held in the shared driver's store, where every instance
/// finds them: `g/<hex SHA-256 of the link token>`, one per link as in memory (a link's holder
/// starting again replaces the last one, so a link cannot fill the store).
pub const SHARED_CEREMONY_PREFIX: &str = "g/";

/// An enrolment ceremony as held in the shared store.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredCeremony {
    /// The ceremony id its finish must name.
    pub id: String,
    /// The challenge (hex).
    pub challenge: String,
    /// When it started (milliseconds).
    pub started_ms: u64,
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
        // One ceremony per link: a link's holder starting again replaces the last one, so a
        // link cannot fill the registry.
        let Kind::Enrol { link_hash } = &kind;
        m.retain(|_, c| {
            c.started.elapsed() < CEREMONY_TTL
                && !matches!(&c.kind, Kind::Enrol { link_hash: h } if h == link_hash)
        });
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

/// Sign-in ceremonies, which anyone may start (`POST /v1/session/start` needs no credential):
/// the server holds nothing between start and finish. The ceremony id carries its expiry and a
/// random nonce, sealed with HMAC-SHA256 under a key drawn when the process starts, and the
/// challenge is derived from it under the same key; so a flood of starts costs two HMACs each
/// and no memory, and cannot crowd out anyone's sign-in or enrolment. The one thing remembered
/// is which ids were used by a finish that verified a passkey's signature (each is good once);
/// only an enrolled passkey can add to that set. A restart draws a new key: sign-ins started
/// before it must start again.
pub struct SignIns {
    key: [u8; 32],
    used: Mutex<HashMap<[u8; 16], u64>>,
}

impl Default for SignIns {
    fn default() -> Self {
        SignIns::with_key(crate::util::random_bytes::<32>())
    }
}

impl SignIns {
    /// Sign-ins sealed under `key` (on the shared driver, one key stored for every instance,
    /// so a sign-in started at one finishes at another).
    pub fn with_key(key: [u8; 32]) -> SignIns {
        SignIns {
            key,
            used: Mutex::default(),
        }
    }
}

/// Prefix of the sign-ins used, on the shared driver (`su/<nonce, hex>`, valued the id's expiry
/// in milliseconds, 8 bytes big-endian).
pub const USED_SIGNIN_PREFIX: &str = "su/";

/// Prefix of sealed sign-in ids.
const SIGNIN_PREFIX: &str = "si_";
/// Bytes of a sealed id: expiry (ms, big-endian), nonce, tag.
const SEALED_LEN: usize = 8 + 16 + 32;

/// An opened sign-in id: its nonce (what [`SignIns::spend`] takes) and its challenge.
pub struct OpenedSignIn {
    /// The id's random part.
    pub nonce: [u8; 16],
    /// The challenge the authenticator must sign.
    pub challenge: [u8; 32],
    expires_ms: u64,
}

impl OpenedSignIn {
    /// When the id expires (milliseconds).
    pub fn expires_ms(&self) -> u64 {
        self.expires_ms
    }
}

impl SignIns {
    fn mac(&self, label: &[u8], body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        m.update(label);
        m.update(body);
        m
    }

    fn challenge(&self, body: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        self.mac(b"countersign sign-in challenge v1\0", body)
            .finalize()
            .into_bytes()
            .into()
    }

    /// A new sign-in: its id and challenge, valid for [`CEREMONY_TTL`].
    pub fn start(&self) -> (String, [u8; 32]) {
        use hmac::Mac;
        let expires = countersign_log::now_ms().saturating_add(CEREMONY_TTL.as_millis() as u64);
        let mut sealed = Vec::with_capacity(SEALED_LEN);
        sealed.extend_from_slice(&expires.to_be_bytes());
        sealed.extend_from_slice(&crate::util::random_bytes::<16>());
        let tag = self.mac(b"countersign sign-in id v1\0", &sealed).finalize();
        let challenge = self.challenge(&sealed);
        sealed.extend_from_slice(&tag.into_bytes());
        (
            format!("{SIGNIN_PREFIX}{}", B64URL.encode(&sealed)),
            challenge,
        )
    }

    /// Opens a sign-in id made by [`SignIns::start`] of this process: `None` if it was not,
    /// was changed, has expired or was already used.
    pub fn open(&self, id: &str) -> Option<OpenedSignIn> {
        use hmac::Mac;
        let raw = B64URL.decode(id.strip_prefix(SIGNIN_PREFIX)?).ok()?;
        if raw.len() != SEALED_LEN {
            return None;
        }
        let (body, tag) = raw.split_at(8 + 16);
        // Constant time (hmac's verify_slice).
        self.mac(b"countersign sign-in id v1\0", body)
            .verify_slice(tag)
            .ok()?;
        let expires_ms = u64::from_be_bytes(body[..8].try_into().ok()?);
        if countersign_log::now_ms() >= expires_ms {
            return None;
        }
        let nonce: [u8; 16] = body[8..].try_into().ok()?;
        if self.lock().contains_key(&nonce) {
            return None;
        }
        Some(OpenedSignIn {
            nonce,
            challenge: self.challenge(body),
            expires_ms,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], u64>> {
        match self.used.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// Marks an opened sign-in used, after its assertion verified; false if another finish
    /// used it first.
    pub fn spend(&self, s: &OpenedSignIn) -> bool {
        let now = countersign_log::now_ms();
        let mut used = self.lock();
        if used.len() > 1024 {
            used.retain(|_, exp| *exp > now);
        }
        used.insert(s.nonce, s.expires_ms).is_none()
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
