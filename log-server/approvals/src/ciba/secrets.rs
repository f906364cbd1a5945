//! Stored client secrets: how they are hashed (SHA-256 or argon2id), checked in constant time,
//! and the cache that keeps argon2 off the polling path.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use subtle::ConstantTimeEq;

use crate::store::ClientRecord;
use crate::util::Secret;

/// Stored form of a secret. A secret the server generated has 256 random bits: SHA-256 is
/// enough, since nobody can guess it to run a dictionary against the hash. A secret an operator
/// chose may be guessable, so it is stored as argon2id (the maintained RustCrypto crate, with
/// the OWASP-recommended default parameters), which makes an offline guess costly.
pub fn hash_secret(
    secret: &Secret,
    generated: bool,
) -> Result<String, argon2::password_hash::Error> {
    if generated {
        return Ok(format!("sha256:{}", hex::encode(secret.sha256())));
    }
    let salt = SaltString::encode_b64(&crate::util::random_bytes::<16>())?;
    Argon2::default()
        .hash_password(secret.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// Remembers, per client, the SHA-256 of the last secret that passed argon2: a client polling
/// every few seconds must not cost 20 MiB and tens of milliseconds of argon2 each time. The
/// cache holds only a hash, compared in constant time, and is dropped when a client changes.
pub struct SecretCache(
    pub(crate) Mutex<HashMap<String, ([u8; 32], String)>>,
    /// The client assertions seen and not yet expired, by client: SHA-256 of the `jti` and the
    /// assertion's expiry (replay protection). Also stored (`j/` keys), so a restart does not
    /// forget them ([`crate::ciba::clients::remember_jti`]).
    pub(crate) Mutex<HashMap<String, HashMap<[u8; 32], u64>>>,
    /// Argon2 verifications allowed at once (each takes about 20 MiB and tens of milliseconds
    /// of a core); more wait, and then usually find the secret cached by the one before them.
    pub(crate) tokio::sync::Semaphore,
);

/// Argon2 verifications run at once (one per core of the machine this was tuned on).
pub const ARGON2_AT_ONCE: usize = 2;

impl Default for SecretCache {
    fn default() -> Self {
        SecretCache(
            Mutex::default(),
            Mutex::default(),
            tokio::sync::Semaphore::new(ARGON2_AT_ONCE),
        )
    }
}

impl SecretCache {
    pub(crate) fn check(&self, client_id: &str, stored: &str, presented: &[u8; 32]) -> bool {
        let map = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.get(client_id)
            .is_some_and(|(h, s)| s == stored && bool::from(h.ct_eq(presented)))
    }

    fn remember(&self, client_id: &str, stored: &str, presented: [u8; 32]) {
        let mut map = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert(client_id.to_owned(), (presented, stored.to_owned()));
    }

    /// Forgets a client (removed or re-registered).
    pub fn forget(&self, client_id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(client_id);
        }
    }
}

/// Whether `presented` is the client's secret; constant time in the secret.
pub fn verify_secret(cache: &SecretCache, client: &ClientRecord, presented: &Secret) -> bool {
    let stored = &client.secret_hash;
    let digest = presented.sha256();
    if let Some(h) = stored.strip_prefix("sha256:") {
        return hex::decode(h).is_ok_and(|h| bool::from(h.as_slice().ct_eq(&digest)));
    }
    if cache.check(&client.client_id, stored, &digest) {
        return true;
    }
    let ok = PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(presented.expose().as_bytes(), &parsed)
            .is_ok()
    });
    if ok {
        cache.remember(&client.client_id, stored, digest);
    }
    ok
}
