//! Auditor tokens: bearer tokens that may read the audit trail (`GET /v1/audit/events`,
//! `GET /v1/audit/statements`, `GET /v1/admin/evidence/<request_id>`) and nothing else. Like
//! submitter tokens ([`countersign_log::submitters`]): 256 random bits shown once, only their
//! SHA-256 stored (`U/<hex>` in the `ciba` family), looked up by that hash and compared in
//! constant time, named so that an operator can list and revoke them.

use countersign_log::storage::StorageError;
use countersign_log::submitters::{matches, SecretToken};
use serde::Serialize;

use crate::store::{AuditorRecord, Batch, CibaStore, Durability, AUDITOR_PREFIX};

/// An auditor token as an operator may see it, never the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditorInfo {
    /// The auditor's name.
    pub name: String,
    /// First 8 hex digits of SHA-256(token).
    pub fingerprint: String,
    /// When the token was made (seconds).
    pub created_at: u64,
}

/// The fingerprint of a token hash: its first 8 hex digits.
pub fn fingerprint(token_hash: &[u8; 32]) -> String {
    hex::encode(&token_hash[..4])
}

fn key_of(token_hash: &[u8; 32]) -> String {
    format!("{AUDITOR_PREFIX}{}", hex::encode(token_hash))
}

/// Makes a token for the auditor `name` (synced); returns it (to be shown once) and its
/// fingerprint.
pub async fn create(
    store: &CibaStore,
    name: &str,
    now: u64,
) -> Result<(SecretToken, String), StorageError> {
    let token = SecretToken::generate();
    let h = token.hash();
    let mut b = Batch::new();
    b.put_json(
        key_of(&h),
        &AuditorRecord {
            name: name.to_owned(),
            created_at: now,
        },
    )?;
    store.commit(b, Durability::Sync).await?;
    Ok((token, fingerprint(&h)))
}

/// Every auditor token, by name then fingerprint.
pub fn list(store: &CibaStore) -> Result<Vec<AuditorInfo>, StorageError> {
    let mut out = Vec::new();
    for (k, v) in store.scan(AUDITOR_PREFIX, usize::MAX)? {
        let rec: AuditorRecord = serde_json::from_slice(&v)
            .map_err(|e| StorageError::Corrupt(format!("auditor record {k}: {e}")))?;
        let hex_hash = k.trim_start_matches(AUDITOR_PREFIX);
        out.push(AuditorInfo {
            name: rec.name,
            fingerprint: hex_hash.get(..8).unwrap_or(hex_hash).to_owned(),
            created_at: rec.created_at,
        });
    }
    out.sort_by(|a, b| (&a.name, &a.fingerprint).cmp(&(&b.name, &b.fingerprint)));
    Ok(out)
}

/// Revokes every token of the auditor `name` in one synced write; returns their fingerprints
/// (none: no such auditor, nothing written). Tokens are looked up on every request, so a revoked
/// one is refused from the next request on.
pub async fn revoke(store: &CibaStore, name: &str) -> Result<Vec<String>, StorageError> {
    let mut b = Batch::new();
    let mut revoked = Vec::new();
    for (k, v) in store.scan(AUDITOR_PREFIX, usize::MAX)? {
        let rec: AuditorRecord = serde_json::from_slice(&v)
            .map_err(|e| StorageError::Corrupt(format!("auditor record {k}: {e}")))?;
        if rec.name == name {
            let hex_hash = k.trim_start_matches(AUDITOR_PREFIX);
            revoked.push(hex_hash.get(..8).unwrap_or(hex_hash).to_owned());
            b.delete(k);
        }
    }
    store.commit(b, Durability::Sync).await?;
    Ok(revoked)
}

/// The auditor a token belongs to. Looked up by the token's SHA-256, so timing reveals nothing
/// usable about the token; the stored key is compared in constant time as well.
pub fn auditor_for(store: &CibaStore, token: &SecretToken) -> Result<Option<String>, StorageError> {
    let h = token.hash();
    let Some(v) = store.get_raw(&key_of(&h))? else {
        return Ok(None);
    };
    let stored: Option<[u8; 32]> = hex::decode(key_of(&h).trim_start_matches(AUDITOR_PREFIX))
        .ok()
        .and_then(|b| b.try_into().ok());
    if !stored.is_some_and(|s| matches(token, &s)) {
        return Ok(None);
    }
    let rec: AuditorRecord = serde_json::from_slice(&v)
        .map_err(|e| StorageError::Corrupt(format!("auditor record: {e}")))?;
    Ok(Some(rec.name))
}
