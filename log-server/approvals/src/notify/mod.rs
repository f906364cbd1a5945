//! Notifications: CIBA ping and push deliveries to clients (CIBA sections 10.2 and 10.3), the
//! approver webhook (JSON POST signed with HMAC-SHA256), approver e-mail over SMTP, and request
//! expiry for ping/push.
//! Deliveries run in background tasks and retry with exponential backoff; a delivery that fails
//! for good changes nothing about the decision (ping clients can still fetch the token).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::store::{
    Batch, DeliveryMode, Durability, OutboxRecord, RequestRecord, RequestStatus, NOTIFY_PREFIX,
    OUTBOX_PREFIX,
};
use crate::{now_secs, Approvals, CibaStore, Secret};
use countersign_log::InitError;

/// Header carrying `sha256=<hex HMAC-SHA256(secret, timestamp "." body)>`.
pub const SIGNATURE_HEADER: &str = "x-countersign-signature";
/// Header carrying the signing time (seconds), covered by the signature against replays.
pub const TIMESTAMP_HEADER: &str = "x-countersign-timestamp";

/// The webhook signature of `body` sent at `timestamp`.
pub fn webhook_signature(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty MAC anyway.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

enum Auth {
    Bearer(Secret),
    Hmac(Secret),
}

/// POSTs `body` to `url`, retrying with backoff; true if a 2xx came back.
async fn deliver(c: &Approvals, url: &str, auth: &Auth, body: &Value, what: &'static str) -> bool {
    let bytes = body.to_string().into_bytes();
    let mut delay = c.config.delivery_backoff;
    for attempt in 1..=c.config.delivery_attempts.max(1) {
        let mut req = c
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(bytes.clone());
        req = match auth {
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
            Auth::Hmac(k) => {
                let ts = now_secs();
                req.header(TIMESTAMP_HEADER, ts.to_string())
                    .header(SIGNATURE_HEADER, webhook_signature(k, ts, &bytes))
            }
        };
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                c.metrics.delivered(what, true);
                return true;
            }
            Ok(r) => tracing::warn!(what, attempt, status = %r.status(), "delivery refused"),
            Err(e) => tracing::warn!(what, attempt, error = %e, "delivery failed"),
        }
        if attempt < c.config.delivery_attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(crate::MAX_DELIVERY_BACKOFF);
        }
    }
    tracing::error!(what, "delivery gave up");
    c.metrics.delivered(what, false);
    false
}

/// Approver e-mail over SMTP (lettre), configured by [`crate::CibaConfig::smtp_url`].
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// The mailer of a configuration, `None` when e-mail is off.
    pub fn new(config: &crate::CibaConfig) -> Result<Option<Mailer>, InitError> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        // The URL may hold the SMTP password: errors name the problem, never the URL.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| InitError::Config(format!("--smtp-url is not usable: {e}")))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = config
            .smtp_from
            .parse()
            .map_err(|e| InitError::Config(format!("--smtp-from is not an address: {e}")))?;
        Ok(Some(Mailer { transport, from }))
    }
}

/// Sends an e-mail, retrying; true once settled: sent, or impossible (no mailer, an unusable
/// address or message), which retrying would not change.
async fn send_email(c: &Approvals, to: &str, subject: &str, body: String) -> bool {
    let Some(m) = &c.mailer else { return true };
    let Ok(to) = to.parse::<Mailbox>() else {
        tracing::warn!("approver e-mail address is not usable");
        c.metrics.delivered("email", false);
        return true;
    };
    let msg = match Message::builder()
        .from(m.from.clone())
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
    {
        Ok(msg) => msg,
        Err(e) => {
            tracing::warn!(error = %e, "could not build the e-mail");
            c.metrics.delivered("email", false);
            return true;
        }
    };
    let mut delay = c.config.delivery_backoff;
    for attempt in 1..=c.config.delivery_attempts.max(1) {
        match m.transport.send(msg.clone()).await {
            Ok(_) => {
                c.metrics.delivered("email", true);
                return true;
            }
            Err(e) => tracing::warn!(attempt, error = %e, "e-mail delivery failed"),
        }
        if attempt < c.config.delivery_attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(crate::MAX_DELIVERY_BACKOFF);
        }
    }
    c.metrics.delivered("email", false);
    false
}

/// The approver notification channels there are.
pub const CHANNELS: [&str; 2] = ["webhook", "email"];

/// The channels this server is configured to notify approvers on.
pub fn channels(c: &Approvals) -> impl Iterator<Item = &'static str> {
    let on = [
        c.config.webhook_url.is_some() && c.config.webhook_secret.is_some(),
        c.mailer.is_some(),
    ];
    CHANNELS
        .into_iter()
        .zip(on)
        .filter_map(|(k, on)| on.then_some(k))
}

/// Tells the approver's channels of a new request (the live inbox is told by the caller), in
/// the background. Each notification is owed (a `w/` key, written with the request) until it is
/// delivered; one still owed at a restart is sent again while the request is open.
pub fn new_request(c: &Arc<Approvals>, key: &str, r: &RequestRecord) {
    for kind in channels(c) {
        notify_approver(c, key, kind, r);
    }
}

/// Sends one owed notification in the background; once settled, it is no longer owed.
fn notify_approver(c: &Arc<Approvals>, key: &str, kind: &'static str, r: &RequestRecord) {
    let (c, key, r) = (c.clone(), key.to_owned(), r.clone());
    tokio::spawn(async move {
        let settled = match kind {
            "webhook" => send_webhook(&c, &r).await,
            _ => send_approver_email(&c, &r).await,
        };
        if settled {
            forget(&c, CibaStore::notify_key(&key, kind));
        }
    });
}

fn request_link(c: &Approvals, r: &RequestRecord) -> String {
    format!("{}/approve/requests/{}", c.config.public_url, r.request_id)
}

/// The e-mail to the approver of `r`; true once settled: the SMTP server took it, or it can
/// never be sent (no approver, no usable address).
async fn send_approver_email(c: &Approvals, r: &RequestRecord) -> bool {
    let email = match c.store.approver(&r.statement.approver_id) {
        Ok(Some(a)) => a.email,
        // Gone: nothing to send, nothing owed.
        Ok(None) => return true,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the approver to e-mail");
            return false;
        }
    };
    let subject = format!("Approval requested: {}", r.statement.binding_message);
    let body = format!(
        "{client} asks for your approval:\n\n  {msg}\n\nReview the exact action and \
         approve or deny it with your passkey:\n{link}\n\nThe request expires at {exp} \
         (Unix time). If you did not expect this, deny it.\n",
        client = r.statement.client_id,
        msg = r.statement.binding_message,
        link = request_link(c, r),
        exp = r.statement.expires_at,
    );
    send_email(c, &email, &subject, body).await
}

/// The signed webhook POST for `r`; true once acknowledged.
async fn send_webhook(c: &Approvals, r: &RequestRecord) -> bool {
    let (Some(url), Some(key)) = (&c.config.webhook_url, &c.config.webhook_secret) else {
        return true;
    };
    let body = json!({
        "type": "approval_requested",
        "request_id": r.request_id,
        "approver_id": r.statement.approver_id,
        "client_id": r.statement.client_id,
        "binding_message": r.statement.binding_message,
        "expires_at": r.statement.expires_at,
        "url": request_link(c, r),
    });
    deliver(c, url, &Auth::Hmac(key.clone()), &body, "webhook").await
}

fn client_endpoint(c: &Approvals, client_id: &str) -> Option<String> {
    c.store
        .client(client_id)
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
    let outbox = match c.store.get::<OutboxRecord>(&okey) {
        Ok(Some(o)) => o,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "could not read a pending delivery");
            return;
        }
    };
    let r = match c.store.get::<RequestRecord>(key) {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Cleaned up meanwhile: nothing is owed any more.
            forget(c, okey);
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read the request of a pending delivery");
            return;
        }
    };
    let grace_over = now_secs() >= r.statement.expires_at + crate::cleanup::DECIDING_GRACE_SECS;
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
            forget(c, okey);
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
    let Some(url) = client_endpoint(c, &r.statement.client_id) else {
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
    if deliver(c, &url, &Auth::Bearer(token), &body, what).await {
        forget(c, okey);
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
        None => match c.store.client(&r.statement.client_id) {
            Ok(Some(client)) => {
                crate::ciba::endpoints::issue_tokens(c, key, &outbox.auth_req_id, &client, true)
                    .await
            }
            _ => Err(crate::ApiError::internal(
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

/// Deletes what a delivery or notification still owed (its outbox record or `w/` key). Not
/// synced: if a crash loses the deletion, it is delivered again (at least once).
fn forget(c: &Approvals, owed_key: String) {
    let mut b = Batch::new();
    b.delete(owed_key);
    c.store.commit_in_background(b);
}

/// For a ping/push request: at `at` (its expiry, or the end of a crashed claim's grace), mark it
/// expired if still undecided and deliver that outcome (push: `expired_token`).
pub fn schedule_expiry(c: Arc<Approvals>, key: String, at: u64) {
    tokio::spawn(async move {
        let wait = at.saturating_sub(now_secs());
        tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
        let r = {
            let _g = c.store.lock(&key).await;
            let Ok(Some(mut r)) = c.store.get::<RequestRecord>(&key) else {
                return;
            };
            match r.status {
                RequestStatus::Pending => {}
                // Left by a crash mid-decision: delivered as expired, the record left as it
                // is (see `deliver_outcome`).
                RequestStatus::Deciding => {
                    drop(_g);
                    deliver_outcome(&c, &key).await;
                    return;
                }
                // Decided: that delivery is under way or done.
                _ => return,
            }
            r.status = RequestStatus::Expired;
            let mut b = Batch::new();
            b.delete(CibaStore::pending_key(
                &r.statement.approver_id,
                &r.request_id,
            ));
            let written = match b.put_json(key.clone(), &r) {
                Ok(b) => c.store.commit(std::mem::take(b), Durability::Sync).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::error!(error = %e, "could not mark a request expired");
                return;
            }
            r
        };
        c.inbox_changed(&r.statement.approver_id, &r.request_id);
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
            let found = match c.store.scan_range(&from, end.as_deref(), CHUNK) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the pending deliveries");
                    return;
                }
            };
            for (okey, _) in &found {
                let key = CibaStore::record_key_of(okey.trim_start_matches(OUTBOX_PREFIX));
                match c.store.get::<RequestRecord>(&key) {
                    Ok(Some(r)) if r.status == RequestStatus::Pending => {
                        schedule_expiry(c.clone(), key, r.statement.expires_at);
                        scheduled += 1;
                    }
                    Ok(Some(r)) if r.status == RequestStatus::Deciding => {
                        let at = r.statement.expires_at + crate::cleanup::DECIDING_GRACE_SECS;
                        schedule_expiry(c.clone(), key, at);
                        scheduled += 1;
                    }
                    Ok(Some(_)) => {
                        let c = c.clone();
                        tokio::spawn(async move { deliver_outcome(&c, &key).await });
                        resumed += 1;
                    }
                    Ok(None) => forget(&c, okey.clone()),
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
        resume_notifications(&c);
    });
}

/// At start: sends again the approver notifications still owed for requests still open, and
/// forgets those of requests decided, expired or gone.
fn resume_notifications(c: &Arc<Approvals>) {
    let found = match c.store.scan(NOTIFY_PREFIX, usize::MAX) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "could not read the owed notifications");
            return;
        }
    };
    let mut resent = 0usize;
    let now = now_secs();
    for (nkey, _) in found {
        let rest = nkey.trim_start_matches(NOTIFY_PREFIX);
        let Some((hash, kind)) = rest.split_once('/') else {
            continue;
        };
        let key = CibaStore::record_key_of(hash);
        let open = match c.store.get::<RequestRecord>(&key) {
            Ok(Some(r)) if r.status == RequestStatus::Pending && now < r.statement.expires_at => {
                Some(r)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "unreadable request of an owed notification");
                continue;
            }
        };
        match (open, CHANNELS.into_iter().find(|k| *k == kind)) {
            (Some(r), Some(kind)) if channels(c).any(|k| k == kind) => {
                notify_approver(c, &key, kind, &r);
                resent += 1;
            }
            // Decided, expired, gone, or a channel no longer configured: nothing is owed.
            _ => forget(c, nkey),
        }
    }
    if resent > 0 {
        tracing::info!(resent, "approver notifications taken up from the last run");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// HMAC-SHA256 from its definition (RFC 2104), independent of the `hmac` crate.
    fn hmac_ref(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let inner = Sha256::new()
            .chain_update(k.map(|b| b ^ 0x36))
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(k.map(|b| b ^ 0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }

    #[test]
    fn webhook_signature_is_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2 checks the reference itself.
        assert_eq!(
            hex::encode(hmac_ref(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = br#"{"type":"approval_requested"}"#;
        let sig = webhook_signature(&Secret::new("Jefe"), 1700000000, body);
        let mut msg = b"1700000000.".to_vec();
        msg.extend_from_slice(body);
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(hmac_ref(b"Jefe", &msg)))
        );
        assert_ne!(
            sig,
            webhook_signature(&Secret::new("Jefe"), 1700000001, body)
        );
    }
}
