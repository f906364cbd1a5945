//! Approver sessions: created at sign-in, stored by the SHA-256 of their cookie, swept when
//! expired.

use std::collections::HashMap;
use std::sync::Mutex;

use countersign_log::StorageError;
use serde::{Deserialize, Serialize};

use crate::store::{ApproverRecord, Batch, CibaStore, Durability, APPROVER_PREFIX};
use crate::util::{now_secs, Secret};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "countersign_session";

/// A signed-in approver.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// Who.
    pub approver_id: String,
    /// The CSRF token the pages send back in `X-CSRF-Token`.
    pub csrf: Secret,
    expires_at: u64,
    /// When it was made (milliseconds): a session made at or before its approver's
    /// [`crate::store::ApproverRecord::sessions_not_before_ms`] is over, whatever any cache holds.
    #[serde(default)]
    pub created_ms: u64,
}

/// Sessions by SHA-256 of the cookie value: stored (`s/<hash hex>`, so a restart signs nobody
/// out) and cached in memory. The cookie itself is never stored; the session's CSRF token is,
/// which weakens nothing: it is useless without the cookie. Expired sessions are deleted by the
/// clean-up sweep.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

/// Prefix of stored sessions.
pub const SESSION_PREFIX: &str = "s/";

fn session_key(hash: &[u8; 32]) -> String {
    format!("{SESSION_PREFIX}{}", hex::encode(hash))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// A new session, stored before its cookie is handed out.
    pub async fn create(
        &self,
        store: &CibaStore,
        approver_id: &str,
        ttl: u64,
    ) -> Result<(Secret, Session), StorageError> {
        let token = Secret::generate();
        let s = Session {
            approver_id: approver_id.to_owned(),
            csrf: Secret::generate(),
            expires_at: now_secs() + ttl,
            created_ms: countersign_log::now_ms(),
        };
        let hash = token.sha256();
        let mut b = Batch::new();
        b.put_json(session_key(&hash), &s)?;
        // Not synced: a session lost with the machine only means signing in again.
        store.commit(b, Durability::Deferred).await?;
        if !store.is_shared() {
            // On the shared driver every check reads the store: a sign-out at one instance
            // ends the session at all.
            let mut m = self.lock();
            let now = now_secs();
            m.retain(|_, s| s.expires_at > now);
            m.insert(hash, s.clone());
        }
        Ok((token, s))
    }

    /// Signs an approver out everywhere.
    pub async fn drop_approver(&self, store: &CibaStore, approver_id: &str) {
        self.lock().retain(|_, s| s.approver_id != approver_id);
        match stored_sessions_where(store, |s| s.approver_id == approver_id).await {
            Ok(b) => store.commit_in_background(b),
            // The approver record is disabled first, and every session check reads it.
            Err(e) => tracing::warn!(error = %e, "could not read the stored sessions"),
        }
    }

    /// The live session of cookie value `token` and the record of its approver (`None` when
    /// there is none), read together: one round trip on the shared driver. `None` when the
    /// session is not live, or a record cannot be read.
    pub async fn get_with_approver(
        &self,
        store: &CibaStore,
        token: &str,
    ) -> Option<(Session, Option<ApproverRecord>)> {
        let h = countersign_verifier::sha256(token.as_bytes());
        let now = now_secs();
        let cached = self.lock().get(&h).filter(|s| s.expires_at > now).cloned();
        if let Some(s) = cached {
            let a = store.approver(&s.approver_id).await.ok()?;
            return Some((s, a));
        }
        let (raw, approver) = store
            .get_via(&session_key(&h), APPROVER_PREFIX, Some("approver_id"))
            .await
            .ok()??;
        let s = serde_json::from_slice::<Session>(&raw)
            .ok()
            .filter(|s| s.expires_at > now)?;
        let a = approver
            .map(|v| serde_json::from_slice::<ApproverRecord>(&v))
            .transpose()
            .ok()?;
        if !store.is_shared() {
            self.lock().insert(h, s.clone());
        }
        Some((s, a))
    }

    /// Ends the session of cookie value `token`: once this returns, no instance accepts it.
    pub async fn remove(&self, store: &CibaStore, token: &str) -> Result<(), StorageError> {
        let h = countersign_verifier::sha256(token.as_bytes());
        self.lock().remove(&h);
        let mut b = Batch::new();
        b.delete(session_key(&h));
        store.commit(b, Durability::Deferred).await
    }
}

/// The deletion of every stored session `pred` holds for (and of unreadable ones).
async fn stored_sessions_where(
    store: &CibaStore,
    pred: impl Fn(&Session) -> bool,
) -> Result<Batch, StorageError> {
    let mut b = Batch::new();
    for (k, v) in store.scan(SESSION_PREFIX, usize::MAX).await? {
        if serde_json::from_slice::<Session>(&v).map_or(true, |s| pred(&s)) {
            b.delete(k);
        }
    }
    Ok(b)
}

/// Deletes the stored sessions that expired before `now`; how many.
pub async fn sweep_sessions(store: &CibaStore, now: u64) -> Result<usize, StorageError> {
    let b = stored_sessions_where(store, |s| s.expires_at <= now).await?;
    let n = b.len();
    store.commit(b, Durability::Deferred).await?;
    Ok(n)
}
