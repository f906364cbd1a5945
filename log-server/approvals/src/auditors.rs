//! Auditor tokens: bearer tokens that may read the audit trail (`GET /v1/audit/events`,
//! `GET /v1/audit/statements`, `GET /v1/admin/evidence/<request_id>`) and nothing else. Like
//! submitter tokens ([`countersign_log::submitters`]): 256 random bits shown once, only their
//! SHA-256 stored (`U/<hex>` in the `ciba` family), looked up by that hash and compared in
//! constant time, named so that an operator can list and revoke them.

use countersign_log::storage::StorageError;
use countersign_log::submitters::{fingerprint, SecretToken};
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

/// Every stored auditor token: its key, its fingerprint and its record.
async fn records(store: &CibaStore) -> Result<Vec<(String, String, AuditorRecord)>, StorageError> {
    store
        .scan(AUDITOR_PREFIX, usize::MAX)
        .await?
        .into_iter()
        .map(|(k, v)| {
            let rec: AuditorRecord = serde_json::from_slice(&v)
                .map_err(|e| StorageError::Corrupt(format!("auditor record {k}: {e}")))?;
            let hex_hash = k.trim_start_matches(AUDITOR_PREFIX);
            let fp = hex_hash.get(..8).unwrap_or(hex_hash).to_owned();
            Ok((k, fp, rec))
        })
        .collect()
}

/// Every auditor token, by name then fingerprint.
pub async fn list(store: &CibaStore) -> Result<Vec<AuditorInfo>, StorageError> {
    let mut out: Vec<AuditorInfo> = records(store)
        .await?
        .into_iter()
        .map(|(_, fingerprint, rec)| AuditorInfo {
            name: rec.name,
            fingerprint,
            created_at: rec.created_at,
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.fingerprint).cmp(&(&b.name, &b.fingerprint)));
    Ok(out)
}

/// Revokes every token of the auditor `name` in one synced write; returns their fingerprints
/// (none: no such auditor, nothing written). Tokens are looked up on every request, so a revoked
/// one is refused from the next request on.
pub async fn revoke(store: &CibaStore, name: &str) -> Result<Vec<String>, StorageError> {
    let mut b = Batch::new();
    let mut revoked = Vec::new();
    for (k, fp, rec) in records(store).await? {
        if rec.name == name {
            revoked.push(fp);
            b.delete(k);
        }
    }
    if !revoked.is_empty() {
        store.commit(b, Durability::Sync).await?;
    }
    Ok(revoked)
}

/// The auditor a token belongs to. Looked up by the token's SHA-256 (the key holds nothing
/// else), so timing reveals nothing usable about the token.
pub async fn auditor_for(
    store: &CibaStore,
    token: &SecretToken,
) -> Result<Option<String>, StorageError> {
    let Some(v) = store.get_raw(&key_of(&token.hash())).await? else {
        return Ok(None);
    };
    let rec: AuditorRecord = serde_json::from_slice(&v)
        .map_err(|e| StorageError::Corrupt(format!("auditor record: {e}")))?;
    Ok(Some(rec.name))
}
