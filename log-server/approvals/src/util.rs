//! Small things every part of the front end uses: secrets, encodings, random ids, the clock.

use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// base64url without padding, the encoding of every random id and WebAuthn field here.
pub const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Standard base64 with padding (HTTP Basic).
pub const B64STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Draws `N` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    countersign_log::now_ms() / 1000
}

/// A secret string (client secret, `auth_req_id`, notification token, session, link token).
/// `Debug` is redacted so a secret never reaches a log line by accident.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// 256 random bits, base64url.
    pub fn generate() -> Self {
        Secret(B64URL.encode(random_bytes::<32>()))
    }

    /// The secret text, for handing it to its owner once or sending it to its endpoint.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the secret: the lookup key and stored form of high-entropy secrets.
    pub fn sha256(&self) -> [u8; 32] {
        countersign_verifier::sha256(self.0.as_bytes())
    }
}

/// Whether two opaque ids are the same, in constant time (an id is not a secret, but whether a
/// request is someone's must not be learnt byte by byte).
pub fn same_id(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A Unix time as RFC 3339 UTC (`2026-12-05T07:14:38Z`).
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Runs `f` to completion from synchronous code: the log's reads on the embedded store
/// complete at the first poll; the shared driver's go to the database, and block this worker
/// of the multi-threaded runtime (others take its tasks) for the round trip.
pub fn wait<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return v;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread => {
            tokio::task::block_in_place(|| h.block_on(f))
        }
        // Not reached: the shared driver runs on the multi-threaded runtime. Polled until
        // done rather than left half-run.
        _ => loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        },
    }
}
