//! Clean-up of old requests and old evidence, and the `request.expired` audit events.
//!
//! A request's records (`r/`, `q/`, `p/` and its `x/` index key) are
//! deleted once it expired more than the retention window ago
//! ([`CibaConfig::request_retention_secs`](crate::config::CibaConfig::request_retention_secs), default
//! 24 hours; a request whose decision is still being recorded gets [`DECIDING_GRACE_SECS`]
//! more); until then its token can be fetched (once) and its evidence bundle fetched from
//! `GET /v1/evidence/<auth_req_id>`. A decision is made before
//! expiry, so a decided request's evidence stays available for at least the retention window
//! after the decision. The log itself is never touched: the decision and enrolment entries stay
//! in it for good, and anyone holding an evidence bundle can still verify it.
//!
//! A background task ([`start`]) sweeps every
//! [`CibaConfig::cleanup_interval`](crate::config::CibaConfig::cleanup_interval): it walks the `x/` index
//! (ordered by expiry) up to the cut-off and deletes in small batches, each under the records'
//! locks, so a sweep never competes with the requests still in use. Stores written before the
//! index existed are indexed once, by the first sweep.
//!
//! Each sweep first records a `request.expired` audit event for every request that expired
//! undecided since the last sweep, walking the same `x/` index from a persisted cursor
//! (`v/expired-cursor`) up to now (a request still being decided holds the walk until its
//! decision is recorded or its grace is over). Then, after the request clean-up, it removes the
//! evidence records (and their lookup keys) of decisions made more than
//! [`CibaConfig::evidence_retention_days`](crate::config::CibaConfig::evidence_retention_days)
//! ago, and the audit events older than that (0 keeps both for good). The evidence records are
//! kept apart from the requests so that they outlive them: a bundle, the audit statements and an
//! export stay available long after the token's life.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::state::Approvals;
use crate::store::{
    Batch, CibaStore, Durability, EvidenceRecord, RequestRecord, RequestStatus, AUDIT_PREFIX,
    EVIDENCE_PREFIX, EXPIRED_CURSOR_KEY, EXPIRY_INDEX_MARKER, EXPIRY_PREFIX,
};
use crate::util::now_secs;
use countersign_log::storage::StorageError;
use countersign_verifier::export::{parse_rfc3339_ms, EventRow, EventType};

use crate::config::DECIDING_GRACE_SECS;

/// Requests deleted per write batch.
const BATCH: usize = 128;
/// Pause between two batches of one sweep, so a backlog does not crowd out requests.
const PAUSE: Duration = Duration::from_millis(5);

/// Starts the periodic sweep on the current Tokio runtime; it stops when the front end is
/// dropped.
pub fn start(c: &Arc<Approvals>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no async runtime: old approval requests will not be cleaned up");
        return;
    };
    let weak: Weak<Approvals> = Arc::downgrade(c);
    let every = c.config.cleanup_interval.max(Duration::from_millis(10));
    rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lease: Option<countersign_log::shared::pg::Lease> = None;
        loop {
            tick.tick().await;
            let Some(c) = weak.upgrade() else {
                return;
            };
            if let Some(db) = c.store.db() {
                // Shared driver: one instance at a time keeps house.
                if let Some(l) = &lease {
                    if let Err(e) = l.confirm().await {
                        tracing::warn!(error = %e, "housekeeping lease lost");
                        lease = None;
                    }
                }
                let took_over = lease.is_none();
                if took_over {
                    lease = db.try_lease(HOUSEKEEPING_LEASE).await.ok().flatten();
                    if lease.is_none() {
                        continue;
                    }
                    tracing::info!("this instance keeps house (clean-up, recovery)");
                    tokio::task::block_in_place(|| crate::take_over_housekeeping(&c));
                } else {
                    match tokio::task::block_in_place(|| crate::decision::recover_claims(&c)) {
                        Ok((0, 0)) => {}
                        Ok((finished, released)) => tracing::info!(
                            finished,
                            released,
                            "claims of stopped instances recovered"
                        ),
                        Err(e) => tracing::warn!(error = %e, "recovering claims failed"),
                    }
                }
                // The ping/push deliveries and notifications still owed are taken up when this
                // instance takes over, and when an instance stopped since the last tick (at
                // least once); once for both, so one takeover does not deliver twice.
                let gone = match instances_gone(&c).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "checking the instances failed");
                        0
                    }
                };
                if gone > 0 {
                    tracing::info!(instances = gone, "instances stopped; taking up what they owed");
                }
                if took_over || gone > 0 {
                    crate::delivery::resume_deliveries(&c);
                }
                if let Err(e) = sweep_shared_ceremonies(&c, countersign_log::now_ms()).await {
                    tracing::warn!(error = %e, "cleaning up ceremonies failed");
                }
            }
            match sweep(&c, now_secs()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "old approval requests cleaned up"),
                Err(e) => tracing::warn!(error = %e, "cleaning up old approval requests failed"),
            }
            c.limits.forget_idle();
            if let Err(e) = crate::ciba::clients::sweep_jtis(&c, now_secs()).await {
                tracing::warn!(error = %e.description, "forgetting expired client assertion ids failed");
            }
            if let Err(e) = crate::passkeys::sweep_sessions(&c.store, now_secs()).await {
                tracing::warn!(error = %e, "cleaning up expired sessions failed");
            }
        }
    });
}

/// Advisory lock of the instance that keeps house on the shared driver (clean-up, and what
/// stopped instances left).
pub const HOUSEKEEPING_LEASE: i64 = 0x6373_686f_7573_6531;

/// The registered instances of a shared deployment that no longer run
/// ([`crate::state::INSTANCE_PREFIX`]): unregistered here; how many.
pub(crate) async fn instances_gone(c: &Approvals) -> Result<usize, StorageError> {
    let prefix = crate::state::INSTANCE_PREFIX;
    let mut gone = crate::store::Batch::new();
    for (k, _) in c.store.scan(prefix, 10_000).await? {
        let id = k.strip_prefix(prefix).unwrap_or_default();
        if !c.store.claimant_alive(id).await? {
            gone.delete(k);
        }
    }
    let n = gone.len();
    c.store.commit(gone, Durability::Sync).await?;
    Ok(n)
}

/// Deletes the enrolment ceremonies and used sign-ins of the shared driver that expired before
/// `now_ms`.
async fn sweep_shared_ceremonies(c: &Approvals, now_ms: u64) -> Result<usize, StorageError> {
    use crate::passkeys::ceremony::{
        StoredCeremony, CEREMONY_TTL, SHARED_CEREMONY_PREFIX, USED_SIGNIN_PREFIX,
    };
    let ttl = CEREMONY_TTL.as_millis() as u64;
    let mut b = crate::store::Batch::new();
    for (k, v) in c.store.scan(SHARED_CEREMONY_PREFIX, 10_000).await? {
        let started = serde_json::from_slice::<StoredCeremony>(&v).map_or(0, |s| s.started_ms);
        if started.saturating_add(ttl) <= now_ms {
            b.delete(k);
        }
    }
    for (k, v) in c.store.scan(USED_SIGNIN_PREFIX, 10_000).await? {
        let expires = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes);
        if expires <= now_ms {
            b.delete(k);
        }
    }
    let n = b.len();
    c.store.commit(b, Durability::Deferred).await?;
    Ok(n)
}

/// Records the `request.expired` events due at `now`, deletes every request that expired more
/// than the retention window before `now`, then the evidence and audit events older than the
/// evidence retention; returns how many requests were deleted. Safe to run at any time, and
/// concurrently with the endpoints (sweeps themselves take turns).
pub async fn sweep(c: &Approvals, now: u64) -> Result<usize, StorageError> {
    let _turn = c.sweeping.lock().await;
    forget_old_polls(c);
    if c.store.get_raw(EXPIRY_INDEX_MARKER).await?.is_none() {
        index_existing(c).await?;
    }
    let expired = record_expirations(c, now).await?;
    if expired > 0 {
        tracing::debug!(expired, "request.expired events recorded");
    }
    let deleted = sweep_requests(c, now).await?;
    let (evidence, events) = sweep_evidence(c, now).await?;
    if evidence + events > 0 {
        tracing::info!(
            evidence,
            events,
            "evidence and audit events past their retention removed"
        );
    }
    Ok(deleted)
}

/// Records a `request.expired` event (time: its `expires_at`) for each request that expired
/// undecided at or before `now`, in expiry order from the persisted cursor, each once. Returns
/// how many.
async fn record_expirations(c: &Approvals, now: u64) -> Result<usize, StorageError> {
    let mut from = match c.store.get_raw(EXPIRED_CURSOR_KEY).await? {
        Some(mut k) => {
            k.push(0);
            k
        }
        None => EXPIRY_PREFIX.as_bytes().to_vec(),
    };
    // Every index key of a request expired at `now` (now >= expires_at) sorts below this.
    let end = CibaStore::expiry_key(now.saturating_add(1), "");
    let mut recorded = 0;
    loop {
        let found = c
            .store
            .scan_range(&from, Some(end.as_bytes()), BATCH)
            .await?;
        let n = found.len();
        let mut events = Vec::new();
        let mut cursor = None;
        let mut held = false;
        for (xkey, hash) in found {
            let rkey = CibaStore::record_key_of(&String::from_utf8_lossy(&hash));
            if let Some(r) = c.store.get::<RequestRecord>(&rkey).await? {
                let expired = EventRow::for_request(
                    EventType::RequestExpired,
                    &r.statement,
                    r.statement.expires_at.saturating_mul(1000),
                );
                match r.status {
                    RequestStatus::Pending | RequestStatus::Expired => events.push(expired),
                    // Its decision (logged before expiry) may still be being recorded: wait
                    // for it, or for the grace after which the claim counts as abandoned.
                    RequestStatus::Deciding
                        if now < r.statement.expires_at.saturating_add(DECIDING_GRACE_SECS) =>
                    {
                        held = true;
                        break;
                    }
                    RequestStatus::Deciding => events.push(expired),
                    RequestStatus::Approved | RequestStatus::Denied => {}
                }
            }
            cursor = Some(xkey);
        }
        let Some(cursor) = cursor else {
            return Ok(recorded);
        };
        recorded += events.len();
        let mut b = Batch::new();
        b.put(EXPIRED_CURSOR_KEY, cursor.as_bytes().to_vec());
        from = cursor.into_bytes();
        from.push(0);
        // Synced: the cursor and the events move together, so no expiry is recorded twice.
        c.store
            .commit_with_events(b, &events, Durability::Sync)
            .await?;
        if held || n < BATCH {
            return Ok(recorded);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Removes the evidence records of decisions made, and the audit events that happened, more
/// than the evidence retention before `now`; returns how many of each.
async fn sweep_evidence(c: &Approvals, now: u64) -> Result<(usize, usize), StorageError> {
    let days = c.config.evidence_retention_days;
    if days == 0 {
        return Ok((0, 0));
    }
    let Some(cutoff_ms) = now
        .checked_sub(days.saturating_mul(86_400))
        .map(|s| s.saturating_mul(1000))
    else {
        return Ok((0, 0));
    };
    // Both are walked oldest first (decisions by log index, events in recorded order: each in
    // the order of its time, nearly) up to the first that is young enough to keep.
    let mut evidence = 0;
    loop {
        let found = c.store.scan(EVIDENCE_PREFIX, BATCH).await?;
        let n = found.len();
        let mut old = Vec::new();
        for (k, v) in found {
            match serde_json::from_slice::<EvidenceRecord>(&v) {
                Ok(e) if e.decided_at_ms >= cutoff_ms => break,
                Ok(e) => old.push((k, Some(e))),
                Err(err) => {
                    tracing::warn!(key = %k, error = %err, "unreadable evidence record removed");
                    old.push((k, None));
                }
            }
        }
        if old.is_empty() {
            break;
        }
        let whole = old.len() == n;
        let rkeys: Vec<String> = old
            .iter()
            .filter_map(|(_, e)| e.as_ref())
            .map(|e| CibaStore::record_key_of(&e.auth_req_hash))
            .collect();
        {
            // Under the requests' locks: a token issued right now does not write one back.
            let _g = c
                .store
                .lock_all(&rkeys.iter().map(String::as_str).collect::<Vec<_>>())
                .await;
            let mut b = Batch::new();
            for (k, e) in &old {
                b.delete(k.clone());
                // A partial record (an approval short of its quorum) has no lookup keys: they
                // are the request's final record's.
                if let Some(e) = e.as_ref().filter(|e| !e.partial) {
                    b.delete(CibaStore::evidence_by_hash_key(&e.auth_req_hash));
                    b.delete(CibaStore::evidence_by_request_key(&e.request_id));
                }
            }
            c.store.commit(b, Durability::Deferred).await?;
        }
        evidence += old.len();
        if !whole || n < BATCH {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let mut events = 0;
    loop {
        let found = c.store.scan(AUDIT_PREFIX, BATCH).await?;
        let n = found.len();
        let mut b = Batch::new();
        for (k, v) in found {
            let time = serde_json::from_slice::<EventRow>(&v)
                .ok()
                .and_then(|e| parse_rfc3339_ms(&e.time_utc));
            if time.is_some_and(|t| t >= cutoff_ms) {
                break;
            }
            b.delete(k);
        }
        let removed = b.len();
        c.store.commit(b, Durability::Deferred).await?;
        events += removed;
        if removed < n || n < BATCH {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    Ok((evidence, events))
}

/// Deletes every request that expired more than the retention window before `now`; returns
/// how many.
async fn sweep_requests(c: &Approvals, now: u64) -> Result<usize, StorageError> {
    let retention = c.config.request_retention_secs;
    let Some(cutoff) = now.checked_sub(retention) else {
        return Ok(0);
    };
    // Every index key of a request that expired before `cutoff` sorts below this.
    let end = CibaStore::expiry_key(cutoff, "");
    let mut from = EXPIRY_PREFIX.as_bytes().to_vec();
    let mut deleted = 0;
    loop {
        let found = c
            .store
            .scan_range(&from, Some(end.as_bytes()), BATCH)
            .await?;
        let n = found.len();
        if let Some((last, _)) = found.last() {
            from = last.as_bytes().to_vec();
            from.push(0);
        }
        let targets: Vec<(String, String, String)> = found
            .into_iter()
            .filter_map(|(xkey, hash)| {
                let request_id = xkey.rsplit('/').next()?.to_owned();
                let rkey = CibaStore::record_key_of(&String::from_utf8_lossy(&hash));
                Some((xkey, rkey, request_id))
            })
            .collect();
        let rkeys: Vec<&str> = targets.iter().map(|(_, r, _)| r.as_str()).collect();
        {
            // Under the records' locks: a token being issued for one of them right now either
            // finishes first or finds the request gone, and never writes it back.
            let _g = c.store.lock_all(&rkeys).await?;
            let mut b = Batch::new();
            for (xkey, rkey, request_id) in &targets {
                if let Some(r) = c.store.get::<RequestRecord>(rkey).await? {
                    // A claim is either being completed (give it time) or was left by a crash
                    // (the token endpoint reads it as expired once the grace is over).
                    if r.status == RequestStatus::Deciding
                        && now
                            < r.statement
                                .expires_at
                                .saturating_add(DECIDING_GRACE_SECS)
                                .saturating_add(retention)
                    {
                        continue;
                    }
                    for approver in r.statement.eligible_approvers() {
                        b.delete(CibaStore::pending_key(approver, &r.request_id));
                    }
                    for h in CibaStore::history_keys_of(&r) {
                        b.delete(h);
                    }
                    b.delete(rkey.clone());
                }
                b.delete(CibaStore::public_id_key(request_id));
                b.delete(CibaStore::outbox_key(rkey));
                b.delete(CibaStore::claim_key(rkey));
                for kind in crate::notify::CHANNELS {
                    b.delete(CibaStore::notify_key(rkey, kind));
                }
                b.delete(xkey.clone());
                deleted += 1;
            }
            // Not synced: a deletion lost in a crash is made again by the next sweep.
            c.store.commit(b, Durability::Deferred).await?;
        }
        if n < BATCH {
            return Ok(deleted);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Writes the `x/` index key of every request stored before the index existed, then the
/// marker saying the index is complete.
async fn index_existing(c: &Approvals) -> Result<(), StorageError> {
    const CHUNK: usize = 512;
    let end = b"r0"; // just above every "r/..." key
    let mut from = crate::store::REQUEST_PREFIX.as_bytes().to_vec();
    let mut indexed = 0usize;
    loop {
        let found = c.store.scan_range(&from, Some(end), CHUNK).await?;
        let mut b = Batch::new();
        for (key, value) in &found {
            let Ok(r) = serde_json::from_slice::<RequestRecord>(value) else {
                tracing::warn!(key = %key, "unreadable request record left out of the clean-up index");
                continue;
            };
            let hash = key
                .trim_start_matches(crate::store::REQUEST_PREFIX)
                .as_bytes()
                .to_vec();
            b.put(
                CibaStore::expiry_key(r.statement.expires_at, &r.request_id),
                hash,
            );
        }
        indexed += b.len();
        c.store.commit(b, Durability::Deferred).await?;
        match found.last() {
            Some((k, _)) if found.len() == CHUNK => {
                from = k.as_bytes().to_vec();
                from.push(0);
            }
            _ => break,
        }
        tokio::time::sleep(PAUSE).await;
    }
    let mut b = Batch::new();
    b.put(EXPIRY_INDEX_MARKER, b"1".to_vec());
    c.store.commit(b, Durability::Sync).await?;
    if indexed > 0 {
        tracing::info!(indexed, "indexed stored approval requests for clean-up");
    }
    Ok(())
}

/// Drops the poll bookkeeping (`slow_down`) of requests that have expired by now.
fn forget_old_polls(c: &Approvals) {
    let horizon = Duration::from_secs(c.config.max_expiry_secs + DECIDING_GRACE_SECS);
    let mut polls = match c.polls.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    polls.retain(|_, p| p.last.elapsed() < horizon);
}
