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

/// Creates a submitter and returns its token (shown once).
pub fn create_submitter(store: &Store, name: &str) -> Result<SecretToken, StorageError> {
    let token = SecretToken::generate();
    let mut wb = rocksdb::WriteBatch::default();
    wb.put_cf(store.cf(CF_SUBMITTERS)?, token.hash(), name.as_bytes());
    store.write_sync(wb)?;
    Ok(token)
}

/// A submitter token as an operator may see it: the name and a fingerprint (the first 8 hex
/// digits of the token's SHA-256, which is what the store keeps), never the token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SubmitterInfo {
    /// The submitter's name.
    pub name: String,
    /// First 8 hex digits of SHA-256(token).
    pub fingerprint: String,
}

/// A token's fingerprint, the first 8 hex digits of its SHA-256 `token_hash`: what operators
/// list and revoke by.
pub fn fingerprint(token_hash: &[u8; 32]) -> String {
    hex::encode(&token_hash[..4])
}

/// The rule a token holder's name (a submitter's, an auditor's) follows, as refusals state it.
pub const NAME_RULE: &str = "name must be 1 to 128 characters without control characters";

/// Whether `name` can name a token holder ([`NAME_RULE`]; at most 128 bytes).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.chars().any(char::is_control)
}

/// Every submitter token, by name then fingerprint.
pub fn list_submitters(store: &Store) -> Result<Vec<SubmitterInfo>, StorageError> {
    let mut out: Vec<SubmitterInfo> = store
        .submitters()?
        .into_iter()
        .map(|(h, name)| SubmitterInfo {
            name,
            fingerprint: fingerprint(&h),
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.fingerprint).cmp(&(&b.name, &b.fingerprint)));
    Ok(out)
}

/// Revokes every token of the submitter `name` with one synced write; returns the
/// fingerprints revoked (none: no such submitter, nothing written). A revoked token is refused
/// from the next request on: tokens are looked up in the store on every request.
pub fn revoke_submitter(store: &Store, name: &str) -> Result<Vec<String>, StorageError> {
    let cf = store.cf(CF_SUBMITTERS)?;
    let mut wb = rocksdb::WriteBatch::default();
    let mut revoked = Vec::new();
    for (h, n) in store.submitters()? {
        if n == name {
            wb.delete_cf(cf, h);
            revoked.push(fingerprint(&h));
        }
    }
    if !revoked.is_empty() {
        store.write_sync(wb)?;
    }
    Ok(revoked)
}

/// The submitter a token belongs to. The lookup is keyed by the token's SHA-256: whatever the
/// key-value store's lookup leaks through its timing is about that hash, from which nothing
/// about the token (256 random bits) can be learned, so no second comparison is needed (an
/// earlier version compared the hash with itself "in constant time", which checked nothing).
pub fn submitter_for(store: &Store, token: &SecretToken) -> Result<Option<String>, StorageError> {
    store.submitter(&token.hash())
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
