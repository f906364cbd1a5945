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

use crate::ciba::records::{Batch, DeliveryMode, Durability, RequestRecord, RequestStatus};
use crate::ciba::{now_secs, Ciba, CibaStore, Secret};
use crate::InitError;

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
async fn deliver(c: &Ciba, url: &str, auth: &Auth, body: &Value, what: &'static str) -> bool {
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
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => tracing::warn!(what, attempt, status = %r.status(), "delivery refused"),
            Err(e) => tracing::warn!(what, attempt, error = %e, "delivery failed"),
        }
        if attempt < c.config.delivery_attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
    tracing::error!(what, "delivery gave up");
    false
}

/// Approver e-mail over SMTP (lettre), configured by [`crate::ciba::CibaConfig::smtp_url`].
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// The mailer of a configuration, `None` when e-mail is off.
    pub fn new(config: &crate::ciba::CibaConfig) -> Result<Option<Mailer>, InitError> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        // The URL may hold the SMTP password: errors name the problem, never the URL.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| InitError(format!("--smtp-url is not usable: {e}")))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = config
            .smtp_from
            .parse()
            .map_err(|e| InitError(format!("--smtp-from is not an address: {e}")))?;
        Ok(Some(Mailer { transport, from }))
    }
}

async fn send_email(c: &Ciba, to: &str, subject: &str, body: String) -> bool {
    let Some(m) = &c.mailer else { return false };
    let Ok(to) = to.parse::<Mailbox>() else {
        tracing::warn!("approver e-mail address is not usable");
        return false;
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
            return false;
        }
    };
    let mut delay = c.config.delivery_backoff;
    for attempt in 1..=c.config.delivery_attempts.max(1) {
        match m.transport.send(msg.clone()).await {
            Ok(_) => return true,
            Err(e) => tracing::warn!(attempt, error = %e, "e-mail delivery failed"),
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
    false
}

/// Tells the approver's channels of a new request (the live inbox is told by the caller).
pub fn new_request(c: &Arc<Ciba>, r: &RequestRecord) {
    let link = format!("{}/approve/requests/{}", c.config.public_url, r.request_id);
    if c.mailer.is_some() {
        let email = c
            .store
            .approver(&r.statement.approver_id)
            .ok()
            .flatten()
            .map(|a| a.email);
        if let Some(email) = email {
            let subject = format!("Approval requested: {}", r.statement.binding_message);
            let body = format!(
                "{client} asks for your approval:\n\n  {msg}\n\nReview the exact action and \
                 approve or deny it with your passkey:\n{link}\n\nThe request expires at {exp} \
                 (Unix time). If you did not expect this, deny it.\n",
                client = r.statement.client_id,
                msg = r.statement.binding_message,
                exp = r.statement.expires_at,
            );
            let c = c.clone();
            tokio::spawn(async move {
                send_email(&c, &email, &subject, body).await;
            });
        }
    }
    let (Some(url), Some(key)) = (
        c.config.webhook_url.clone(),
        c.config.webhook_secret.clone(),
    ) else {
        return;
    };
    let body = json!({
        "type": "approval_requested",
        "request_id": r.request_id,
        "approver_id": r.statement.approver_id,
        "client_id": r.statement.client_id,
        "binding_message": r.statement.binding_message,
        "expires_at": r.statement.expires_at,
        "url": link,
    });
    let c = c.clone();
    tokio::spawn(async move {
        deliver(&c, &url, &Auth::Hmac(key), &body, "webhook").await;
    });
}

fn client_endpoint(c: &Ciba, client_id: &str) -> Option<String> {
    c.store
        .client(client_id)
        .ok()
        .flatten()
        .and_then(|cl| cl.notification_endpoint)
}

fn ids_lock(c: &Ciba) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Secret>> {
    match c.pending_ids.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Keeps a ping/push request's `auth_req_id` for its delivery (keyed by record key): only its
/// hash is stored, so a restart loses it and the client falls back to the token endpoint (ping)
/// or to expiry (push).
pub fn remember_auth_req_id(c: &Ciba, key: &str, auth_req_id: &Secret) {
    ids_lock(c).insert(key.to_owned(), auth_req_id.clone());
}

/// After a decision was logged: ping the client, or push the outcome.
pub fn decided(c: Arc<Ciba>, key: String, r: RequestRecord) {
    if r.mode == DeliveryMode::Poll {
        return;
    }
    let Some(auth_req_id) = ids_lock(&c).remove(&key) else {
        tracing::error!(request_id = %r.request_id, "no auth_req_id to deliver (server restarted?)");
        return;
    };
    tokio::spawn(async move {
        let Some(url) = client_endpoint(&c, &r.statement.client_id) else {
            tracing::error!(client_id = %r.statement.client_id, "client has no notification endpoint");
            return;
        };
        let Some(token) = r.client_notification_token.clone() else {
            return;
        };
        let body = match (r.mode, r.status) {
            (DeliveryMode::Ping, _) => json!({"auth_req_id": auth_req_id.expose()}),
            (DeliveryMode::Push, RequestStatus::Approved) => {
                let client = match c.store.client(&r.statement.client_id) {
                    Ok(Some(cl)) => cl,
                    _ => return,
                };
                match crate::ciba::endpoints::issue_tokens(&c, &key, &auth_req_id, &client, true)
                    .await
                {
                    Ok(mut v) => {
                        v["auth_req_id"] = json!(auth_req_id.expose());
                        v
                    }
                    Err(_) => json!({
                        "auth_req_id": auth_req_id.expose(),
                        "error": "transaction_failed",
                        "error_description": "the server could not issue the tokens",
                    }),
                }
            }
            (DeliveryMode::Push, _) => json!({
                "auth_req_id": auth_req_id.expose(),
                "error": "access_denied",
                "error_description": "the approver denied the request",
            }),
            (DeliveryMode::Poll, _) => return,
        };
        let what = if r.mode == DeliveryMode::Ping {
            "ping"
        } else {
            "push"
        };
        deliver(&c, &url, &Auth::Bearer(token), &body, what).await;
    });
}

/// For ping/push requests: at expiry, mark an undecided request expired and, for push, deliver
/// `expired_token`.
pub fn schedule_expiry(c: Arc<Ciba>, auth_req_hash: [u8; 32], expires_at: u64) {
    tokio::spawn(async move {
        let wait = expires_at.saturating_sub(now_secs());
        tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
        let key = CibaStore::request_key(&auth_req_hash);
        let r = {
            let _g = c.store.lock(&key).await;
            let Ok(Some(mut r)) = c.store.get::<RequestRecord>(&key) else {
                return;
            };
            if r.status != RequestStatus::Pending {
                return;
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
        let Some(auth_req_id) = ids_lock(&c).remove(&key) else {
            return;
        };
        if r.mode != DeliveryMode::Push {
            return;
        }
        let (Some(url), Some(token)) = (
            client_endpoint(&c, &r.statement.client_id),
            r.client_notification_token.clone(),
        ) else {
            return;
        };
        let body = json!({
            "auth_req_id": auth_req_id.expose(),
            "error": "expired_token",
            "error_description": "the request expired before the approver decided",
        });
        deliver(&c, &url, &Auth::Bearer(token), &body, "push").await;
    });
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
