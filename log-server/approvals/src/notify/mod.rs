//! Approver notifications (the webhook, a JSON POST signed with HMAC-SHA256, and e-mail), and
//! the one retry-with-backoff helper every outgoing delivery uses (these and the CIBA ping and
//! push of [`crate::delivery`]). A notification is owed until delivered, across restarts.

pub mod email;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::Message;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::config::MAX_DELIVERY_BACKOFF;
use crate::state::Approvals;
use crate::store::{CibaStore, RequestRecord, RequestStatus, NOTIFY_PREFIX};
use crate::util::{now_secs, Secret};

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

pub(crate) enum Auth {
    /// `Authorization: Bearer` (the client's notification token).
    Bearer(Secret),
    /// The webhook signature headers with this key.
    Hmac(Secret),
}

/// Runs `attempt` up to the configured number of times, waiting the configured backoff (doubled
/// each time, up to [`MAX_DELIVERY_BACKOFF`]) between two; true once one succeeded. Counted in
/// the delivery metrics under `what`.
pub(crate) async fn retry<F, Fut>(c: &Approvals, what: &'static str, mut attempt: F) -> bool
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = bool>,
{
    let attempts = c.config.delivery_attempts.max(1);
    let mut waits = backoff(c.config.delivery_backoff);
    for n in 1..=attempts {
        if attempt(n).await {
            c.metrics.delivered(what, true);
            return true;
        }
        if n < attempts {
            tokio::time::sleep(waits.next().unwrap_or(MAX_DELIVERY_BACKOFF)).await;
        }
    }
    tracing::error!(what, "delivery gave up");
    c.metrics.delivered(what, false);
    false
}

/// The waits between delivery attempts: `first`, then doubled each time, none longer than
/// [`MAX_DELIVERY_BACKOFF`] (the cap holds for the first wait too: a configured backoff above it
/// is cut to it).
fn backoff(first: Duration) -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(first.min(MAX_DELIVERY_BACKOFF)), |d| {
        Some(d.saturating_mul(2).min(MAX_DELIVERY_BACKOFF))
    })
}

/// POSTs `body` to `url`, retrying with backoff; true if a 2xx came back.
pub(crate) async fn post_json(
    c: &Approvals,
    url: &str,
    auth: &Auth,
    body: &Value,
    what: &'static str,
) -> bool {
    let bytes = body.to_string().into_bytes();
    retry(c, what, |attempt| {
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
        async move {
            // At most max_concurrent_deliveries requests in flight, whatever the endpoints'
            // speed; the permit is held for the attempt, not for the wait between attempts.
            let Ok(_permit) = c.limits.deliveries.acquire().await else {
                return false;
            };
            match req.send().await {
                Ok(r) if r.status().is_success() => true,
                Ok(r) => {
                    tracing::warn!(what, attempt, status = %r.status(), "delivery refused");
                    false
                }
                Err(e) => {
                    tracing::warn!(what, attempt, error = %e, "delivery failed");
                    false
                }
            }
        }
    })
    .await
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
        .from(m.from().clone())
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
    retry(c, "email", |attempt| {
        let msg = msg.clone();
        async move {
            match m.send(msg).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "e-mail delivery failed");
                    false
                }
            }
        }
    })
    .await
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
            c.store.forget(CibaStore::notify_key(&key, kind));
        }
    });
}

fn request_link(c: &Approvals, r: &RequestRecord) -> String {
    format!("{}/approve/requests/{}", c.config.public_url, r.request_id)
}

/// The e-mail to every approver who may decide `r`; true once settled for all of them: the
/// SMTP server took it, or it can never be sent (no approver, no usable address).
async fn send_approver_email(c: &Approvals, r: &RequestRecord) -> bool {
    let mut settled = true;
    for approver in r.statement.eligible_approvers() {
        settled &= send_approver_email_to(c, r, approver).await;
    }
    settled
}

/// What the approvers of a request under a policy rule are told of the quorum.
fn quorum_line(r: &RequestRecord) -> String {
    match &r.statement.policy {
        Some(p) if p.quorum > 1 => format!(
            "\nThis request needs {} of its {} approvers (policy rule {:?}); you are one of them.\n",
            p.quorum,
            p.approvers.len(),
            p.rule.as_deref().unwrap_or_default()
        ),
        Some(p) if p.approvers.len() > 1 => format!(
            "\nAny one of its {} approvers may decide this request.\n",
            p.approvers.len()
        ),
        _ => String::new(),
    }
}

async fn send_approver_email_to(c: &Approvals, r: &RequestRecord, approver: &str) -> bool {
    let email = match c.store.approver(approver).await {
        Ok(Some(a)) => a.email,
        // Gone: nothing to send, nothing owed.
        Ok(None) => return true,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the approver to e-mail");
            return false;
        }
    };
    // The action leads, as on the pages; the agent's own words follow, labelled as such.
    let details = &r.statement.authorization_details;
    let action = crate::action::summary(details);
    let subject = format!("Approval requested: {action}");
    let mismatches = crate::action::note_mismatches(&r.statement.binding_message, details);
    let warning = if mismatches.is_empty() {
        String::new()
    } else {
        format!(
            "\nCheck this: the agent's note mentions {}, which the action does not contain. \
             You sign the action, not the note.\n",
            mismatches.join(", ")
        )
    };
    let body = format!(
        "{client} asks you to approve:\n\n  {action}\n\nThe agent's note (written by the agent, \
         not verified): \"{msg}\"\n{warning}{quorum}\nReview the exact action and approve or deny it with \
         your passkey:\n{link}\n\nThe request expires at {exp}. If you did not expect this, \
         deny it.\n",
        client = r.statement.client_id,
        msg = r.statement.binding_message,
        link = request_link(c, r),
        exp = crate::util::rfc3339(r.statement.expires_at),
        quorum = quorum_line(r),
    );
    send_email(c, &email, &subject, body).await
}

/// A change to an approver's passkeys, told to the approver by e-mail ([`passkey_changed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasskeyChange {
    /// A passkey was enrolled.
    Enrolled {
        /// The credential id (base64url).
        credential_id: String,
        /// The authenticator's AAGUID (all zero when the authenticator does not say).
        aaguid: [u8; 16],
        /// The enrolment's leaf index.
        log_index: u64,
    },
    /// A passkey was revoked.
    Revoked {
        /// The credential id (base64url).
        credential_id: String,
        /// The revocation's leaf index.
        log_index: u64,
        /// The reason logged.
        reason: String,
    },
}

/// How much of a credential id a message shows: enough to tell one's passkeys apart.
const CREDENTIAL_PREFIX_CHARS: usize = 12;

/// The subject and body of the e-mail telling the approver of `change`, made at `now` (seconds).
pub fn passkey_message(change: &PasskeyChange, now: u64) -> (String, String) {
    let prefix = |id: &str| id.chars().take(CREDENTIAL_PREFIX_CHARS).collect::<String>();
    let when = crate::util::rfc3339(now);
    match change {
        PasskeyChange::Enrolled {
            credential_id,
            aaguid,
            log_index,
        } => {
            let authenticator = if *aaguid == [0; 16] {
                "not stated by the authenticator".to_owned()
            } else {
                format!("AAGUID {}", hex::encode(aaguid))
            };
            // Lines stay under 76 characters, so the message goes as plain 7-bit text.
            (
                "A passkey was added to your Countersign account".to_owned(),
                format!(
                    "A passkey was enrolled under your approver id.\n\
                     It can now approve actions in your name.\n\n  \
                     Passkey: {id}...\n  Authenticator: {authenticator}\n  \
                     Time: {when}\n  Log entry: {log_index}\n\n\
                     If you did not add this passkey, contact your Countersign\n\
                     operator at once and ask them to revoke it\n\
                     (countersign approver revoke-passkey).\n",
                    id = prefix(credential_id),
                ),
            )
        }
        PasskeyChange::Revoked {
            credential_id,
            log_index,
            reason,
        } => (
            "A passkey was revoked from your Countersign account".to_owned(),
            format!(
                "A passkey enrolled under your approver id was revoked ({reason}).\n\
                 It can no longer sign in or approve anything.\n\n  \
                 Passkey: {id}...\n  Time: {when}\n  Log entry: {log_index}\n\n\
                 If you did not expect this, contact your Countersign operator.\n",
                id = prefix(credential_id),
            ),
        ),
    }
}

/// E-mails the approver of `rec` about `change`, in the background, when e-mail is configured.
/// Not owed across restarts: the log holds the change itself for anyone to see.
pub fn passkey_changed(
    c: &Arc<Approvals>,
    rec: &crate::store::ApproverRecord,
    change: PasskeyChange,
) {
    if c.mailer.is_none() {
        return;
    }
    let (c, to) = (c.clone(), rec.email.clone());
    tokio::spawn(async move {
        let (subject, body) = passkey_message(&change, now_secs());
        send_email(&c, &to, &subject, body).await;
    });
}

/// The signed webhook POST for `r`; true once acknowledged.
async fn send_webhook(c: &Approvals, r: &RequestRecord) -> bool {
    let (Some(url), Some(key)) = (&c.config.webhook_url, &c.config.webhook_secret) else {
        return true;
    };
    let mut body = json!({
        "type": "approval_requested",
        "request_id": r.request_id,
        "approvers": r.statement.eligible_approvers(),
        "quorum": r.statement.quorum(),
        "client_id": r.statement.client_id,
        "binding_message": r.statement.binding_message,
        "summary": crate::action::summary(&r.statement.authorization_details),
        "expires_at": r.statement.expires_at,
        "url": request_link(c, r),
    });
    if r.statement.policy.is_none() {
        body["approver_id"] = json!(r.statement.approver_id);
    }
    if let Some(rule) = r.statement.policy.as_ref().and_then(|p| p.rule.as_ref()) {
        body["rule"] = json!(rule);
    }
    post_json(c, url, &Auth::Hmac(key.clone()), &body, "webhook").await
}

/// At start: sends again the approver notifications still owed for requests still open, and
/// forgets those of requests decided, expired or gone.
pub(crate) async fn resume_notifications(c: &Arc<Approvals>) {
    let found = match c.store.scan(NOTIFY_PREFIX, usize::MAX).await {
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
        let open = match c.store.get::<RequestRecord>(&key).await {
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
            _ => c.store.forget(nkey),
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
    fn passkey_messages_name_the_passkey_the_time_and_the_entry() {
        let (subject, body) = passkey_message(
            &PasskeyChange::Enrolled {
                credential_id: "AbCdEfGhIjKlMnOpQrStUv".into(),
                aaguid: [0xab; 16],
                log_index: 7,
            },
            1_700_000_000,
        );
        assert!(subject.contains("added"), "{subject}");
        for want in [
            "AbCdEfGhIjKl...",
            "AAGUID abababab",
            "2023-11-14T22:13:20Z",
            "Log entry: 7",
            "revoke-passkey",
        ] {
            assert!(body.contains(want), "{want:?} not in {body}");
        }
        assert!(
            !body.contains("MnOpQr"),
            "the whole id is not shown: {body}"
        );
        let (subject, body) = passkey_message(
            &PasskeyChange::Revoked {
                credential_id: "AbCdEfGhIjKlMnOp".into(),
                log_index: 9,
                reason: "lost".into(),
            },
            1_700_000_000,
        );
        assert!(subject.contains("revoked"), "{subject}");
        for want in ["AbCdEfGhIjKl...", "(lost)", "Log entry: 9", "operator"] {
            assert!(body.contains(want), "{want:?} not in {body}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let secs = |first: u64, n: usize| -> Vec<u64> {
            backoff(Duration::from_secs(first))
                .take(n)
                .map(|d| d.as_secs())
                .collect()
        };
        assert_eq!(MAX_DELIVERY_BACKOFF, Duration::from_secs(300));
        assert_eq!(secs(2, 5), [2, 4, 8, 16, 32]);
        assert_eq!(secs(100, 4), [100, 200, 300, 300]);
        // A configured first wait above the cap waits no longer than the cap.
        assert_eq!(secs(1000, 2), [300, 300]);
        assert_eq!(
            backoff(Duration::from_millis(150)).nth(1),
            Some(Duration::from_millis(300))
        );
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
