//! Bearer tokens: the admin token and submitter tokens. Only SHA-256 hashes are stored;
//! comparisons are constant-time; the token type never prints itself.

use countersign_verifier::sha256;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::storage::{StorageError, Store, CF_SUBMITTERS};

/// A bearer token (256 random bits, lowercase hex). `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

impl SecretToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        SecretToken(hex::encode(b))
    }

    /// Wraps a token read from a file or header.
    pub fn new(s: impl Into<String>) -> Self {
        SecretToken(s.into())
    }

    /// The token text, for writing it once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the token, the only form that is stored.
    pub fn hash(&self) -> [u8; 32] {
        sha256(self.0.as_bytes())
    }
}

/// Whether `presented` is the token whose hash is `stored`, in constant time.
pub fn matches(presented: &SecretToken, stored: &[u8; 32]) -> bool {
    bool::from(presented.hash().ct_eq(stored))
}

/// The bearer token of a request (`Authorization: Bearer <token>`), if it carries one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<SecretToken> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let t = v.strip_prefix("Bearer ")?.trim();
    (!t.is_empty()).then(|| SecretToken::new(t))
}

/// Whether the request carries the admin token (compared in constant time).
pub fn is_admin(headers: &axum::http::HeaderMap, stored: &[u8; 32]) -> bool {
    bearer(headers).is_some_and(|t| matches(&t, stored))
}

/// Creates a submitter and returns its token (shown once).
pub fn create_submitter(store: &Store, name: &str) -> Result<SecretToken, StorageError> {
    let token = SecretToken::generate();
    let mut wb = rocksdb::WriteBatch::default();
    wb.put_cf(store.cf(CF_SUBMITTERS)?, token.hash(), name.as_bytes());
    store.write_sync(wb)?;
    Ok(token)
}

/// The submitter a token belongs to. The lookup is keyed by the token's SHA-256, so timing
/// reveals nothing usable about the token itself; the stored key is then compared in constant
/// time as well.
pub fn submitter_for(store: &Store, token: &SecretToken) -> Result<Option<String>, StorageError> {
    let h = token.hash();
    let name = store.submitter(&h)?;
    Ok(name.filter(|_| matches(token, &h)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_redacted_and_compare() {
        let t = SecretToken::generate();
        assert_eq!(t.expose().len(), 64);
        assert!(!format!("{t:?}").contains(t.expose()));
        assert!(matches(&t, &t.hash()));
        assert!(!matches(&SecretToken::generate(), &t.hash()));
    }
}
