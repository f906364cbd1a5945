//! CIBA ping and push deliveries to clients (CIBA sections 10.2, 10.3 and 12) from each
//! request's outbox record, and request expiry for ping/push. Deliveries run in background
//! tasks and retry with backoff (the one retry helper of [`crate::notify`]); a delivery that fails for good
//! changes nothing about the decision (ping clients can still fetch the token). A delivery
//! still owed at a restart is taken up again ([`resume_deliveries`]): at least once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::ciba::issue::issue_tokens;
use crate::config::DECIDING_GRACE_SECS;
use crate::notify::{post_json, Auth};
use crate::request::{self, TransitionError};
use crate::state::Approvals;
use crate::store::{
    CibaStore, DeliveryMode, Durability, OutboxRecord, RequestRecord, RequestStatus, OUTBOX_PREFIX,
};
use crate::util::now_secs;
use countersign_log::ApiError;

async fn client_endpoint(c: &Approvals, client_id: &str) -> Option<String> {
    c.store
        .client(client_id)
        .await
        .ok()
        .flatten()
        .and_then(|cl| cl.notification_endpoint)
}

/// After a decision was logged: ping the client, or push the outcome, in the background.
pub fn decided(c: Arc<Approvals>, key: String, r: RequestRecord) {
    if r.mode == DeliveryMode::Poll {
        return;
    }
    tokio::spawn(async move {
        deliver_outcome(&c, &key).await;
    });
}

/// Delivers what a decided or expired ping/push request owes its client (CIBA sections 10.2,
/// 10.3 and 12), from its outbox record, and deletes that record once the client acknowledged
/// it. Returns at once if there is nothing to deliver: already delivered, or still undecided.
async fn deliver_outcome(c: &Arc<Approvals>, key: &str) {
    let okey = CibaStore::outbox_key(key);
    let outbox = match c.store.get::<OutboxRecord>(&okey).await {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "could not read a pending delivery");
            return;
        }
    };
    let r = match c.store.get::<RequestRecord>(key).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Cleaned up meanwhile: nothing is owed any more.
            c.store.forget(okey);
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read the request of a pending delivery");
            return;
        }
    };
    // Quorum mode: no ping (which invites the client to fetch the tokens) and no pushed tokens
    // before a checkpoint the witnesses' quorum cosigned covers the decision. After the quorum
    // timeout (alerted by the log) the delivery stays owed, and is taken up again at the next
    // start; a ping client polling meanwhile is told the same at the token endpoint.
    if let (RequestStatus::Approved, Some(d)) = (&r.status, &r.decision) {
        if let Err(e) = c.log.await_quorum(d.index).await {
            tracing::error!(request_id = %r.request_id, error = %e, "delivery held back: the decision's checkpoint has not reached the witness quorum");
            return;
        }
    }
    let grace_over = now_secs() >= r.statement.expires_at + DECIDING_GRACE_SECS;
    let expired = match r.status {
        RequestStatus::Approved | RequestStatus::Denied => false,
        RequestStatus::Expired => true,
        // A claim left by a crash mid-decision (and not recovered at start) reads as expired
        // once its grace is over, as at the token endpoint.
        RequestStatus::Deciding if grace_over => true,
        // Undecided: nothing to deliver yet.
        RequestStatus::Pending | RequestStatus::Deciding => return,
    };
    let auth_req_id = outbox.auth_req_id.expose();
    let body = match r.mode {
        DeliveryMode::Poll => return,
        // Ping tells of a decision; an expired ping request is learnt at the token endpoint.
        DeliveryMode::Ping if expired => {
            c.store.forget(okey);
            return;
        }
        DeliveryMode::Ping => json!({"auth_req_id": auth_req_id}),
        DeliveryMode::Push if expired => json!({
            "auth_req_id": auth_req_id,
            "error": "expired_token",
            "error_description": "the request expired before the approver decided",
        }),
        DeliveryMode::Push if r.status == RequestStatus::Denied => json!({
            "auth_req_id": auth_req_id,
            "error": "access_denied",
            "error_description": "the approver denied the request",
        }),
        DeliveryMode::Push => push_tokens(c, key, &outbox, &r).await,
    };
    let Some(url) = client_endpoint(c, &r.statement.client_id).await else {
        tracing::error!(client_id = %r.statement.client_id, "client has no notification endpoint");
        return;
    };
    let Some(token) = r.client_notification_token.clone() else {
        tracing::error!(request_id = %r.request_id, "ping/push request without a client_notification_token");
        return;
    };
    let what = if r.mode == DeliveryMode::Ping {
        "ping"
    } else {
        "push"
    };
    if post_json(c, &url, &Auth::Bearer(token), &body, what).await {
        c.store.forget(okey);
    } else {
        tracing::error!(
            request_id = %r.request_id,
            what,
            "delivery not acknowledged; it is tried again at the next start"
        );
    }
}

/// The push body of an approved request: the tokens issued for it (once; stored with the
/// delivery, so a repeated delivery carries the same ones) and its `auth_req_id`.
async fn push_tokens(c: &Approvals, key: &str, outbox: &OutboxRecord, r: &RequestRecord) -> Value {
    let auth_req_id = outbox.auth_req_id.expose();
    let stored = outbox
        .push_response
        .as_ref()
        .and_then(|s| serde_json::from_str::<Value>(s.expose()).ok());
    let issued = match stored {
        Some(v) => Ok(v),
        None => match c.store.client(&r.statement.client_id).await {
            Ok(Some(client)) => issue_tokens(c, key, &outbox.auth_req_id, &client, true).await,
            _ => Err(ApiError::internal(
                "push",
                "the client of this request is gone",
            )),
        },
    };
    match issued {
        Ok(mut v) => {
            v["auth_req_id"] = json!(auth_req_id);
            v
        }
        Err(_) => json!({
            "auth_req_id": auth_req_id,
            "error": "transaction_failed",
            "error_description": "the server could not issue the tokens",
        }),
    }
}

/// For a ping/push request: at `at` (its expiry, or the end of a crashed claim's grace), mark it
/// expired if still undecided and deliver that outcome (push: `expired_token`).
pub fn schedule_expiry(c: Arc<Approvals>, key: String, at: u64) {
    tokio::spawn(async move {
        let wait = at.saturating_sub(now_secs());
        tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
        let r = {
            let _g = match c.store.lock(&key).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "could not lock a request at its expiry");
                    return;
                }
            };
            let Ok(Some(mut r)) = c.store.get::<RequestRecord>(&key).await else {
                return;
            };
            // The timer fires at the expiry: the request is expired from then on, even if this
            // clock read is a little early.
            let now = now_secs().max(r.statement.expires_at);
            let b = match request::expire(&mut r, &key, now) {
                Ok(b) => b,
                // Left by a crash mid-decision: delivered as expired, the record left as it is
                // (see `deliver_outcome`).
                Err(TransitionError::InProgress) => {
                    drop(_g);
                    deliver_outcome(&c, &key).await;
                    return;
                }
                // Decided: that delivery is under way or done. (A record that does not encode was
                // logged by the transition; the request stays as it is.)
                Err(_) => return,
            };
            if let Err(e) = c.store.commit(b, Durability::Sync).await {
                tracing::error!(error = %e, "could not mark a request expired");
                return;
            }
            r
        };
        for approver in r.statement.eligible_approvers() {
            c.inbox_changed(approver, &r.request_id);
        }
        deliver_outcome(&c, &key).await;
    });
}

/// At start: takes up every delivery a previous run left unfinished. Decided and expired
/// requests are delivered now; undecided ones get their expiry scheduled again.
pub fn resume_deliveries(c: &Arc<Approvals>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no async runtime: unfinished ping/push deliveries are not resumed");
        return;
    };
    let c = c.clone();
    rt.spawn(async move {
        const CHUNK: usize = 1024;
        let end = countersign_log::storage::kv::prefix_end(OUTBOX_PREFIX.as_bytes());
        let mut from = OUTBOX_PREFIX.as_bytes().to_vec();
        let (mut resumed, mut scheduled) = (0usize, 0usize);
        loop {
            let found = match c.store.scan_range(&from, end.as_deref(), CHUNK).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the pending deliveries");
                    return;
                }
            };
            for (okey, _) in &found {
                let key = CibaStore::record_key_of(okey.trim_start_matches(OUTBOX_PREFIX));
                match c.store.get::<RequestRecord>(&key).await {
                    Ok(Some(r)) if r.status == RequestStatus::Pending => {
                        schedule_expiry(c.clone(), key, r.statement.expires_at);
                        scheduled += 1;
                    }
                    Ok(Some(r)) if r.status == RequestStatus::Deciding => {
                        let at = r.statement.expires_at + DECIDING_GRACE_SECS;
                        schedule_expiry(c.clone(), key, at);
                        scheduled += 1;
                    }
                    Ok(Some(_)) => {
                        let c = c.clone();
                        tokio::spawn(async move { deliver_outcome(&c, &key).await });
                        resumed += 1;
                    }
                    Ok(None) => c.store.forget(okey.clone()),
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable request of a pending delivery")
                    }
                }
            }
            match found.last() {
                Some((k, _)) if found.len() == CHUNK => {
                    from = k.as_bytes().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        if resumed + scheduled > 0 {
            tracing::info!(
                resumed,
                scheduled,
                "ping/push deliveries taken up from the last run"
            );
        }
        crate::notify::resume_notifications(&c).await;
    });
}
