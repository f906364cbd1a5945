//! Alerts: what the monitor found, one kind each, as one line on standard error, a line of
//! `alerts.jsonl` in the state directory, and an optional signed webhook POST
//! (spec/monitor.md, "Alerts"). Notices (a policy change) take the same path, with their line on
//! standard output instead.

use std::time::Duration;

use countersign_approvals::notify::{webhook_signature, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use countersign_approvals::Secret;
use serde::{Deserialize, Serialize};

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A witness holds a checkpoint of the log that conflicts with the log's own.
    SplitView,
    /// The log's checkpoint is smaller than, forks from, or does not extend the last one seen,
    /// or its tiles and entry bundles do not lead to its root.
    InconsistentCheckpoint,
    /// The log's checkpoint does not satisfy the policy (signature, cosignatures, quorum).
    PolicyFailure,
    /// An entry that does not decode, or a revocation of no matching enrolment.
    BadEntry,
    /// A decision whose enrolment index names no matching enrolment before it.
    DecisionWithoutEnrolment,
    /// A decision by a credential revoked before it.
    DecisionByRevokedCredential,
    /// A passkey enrolled for a watched approver.
    WatchedEnrolment,
    /// A passkey of a watched approver revoked.
    WatchedRevocation,
    /// The log could not be read.
    LogUnreachable,
    /// A notice, not an alert: a valid policy entry, a new approval policy in force from its
    /// log index on.
    PolicyChanged,
}

impl Kind {
    /// The kind's name (`split-view`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SplitView => "split-view",
            Kind::InconsistentCheckpoint => "inconsistent-checkpoint",
            Kind::PolicyFailure => "policy-failure",
            Kind::BadEntry => "bad-entry",
            Kind::DecisionWithoutEnrolment => "decision-without-enrolment",
            Kind::DecisionByRevokedCredential => "decision-by-revoked-credential",
            Kind::WatchedEnrolment => "watched-enrolment",
            Kind::WatchedRevocation => "watched-revocation",
            Kind::LogUnreachable => "log-unreachable",
            Kind::PolicyChanged => "policy-changed",
        }
    }

    /// Whether it reports something wrong (an alert), rather than informs (a notice, which
    /// never makes `--once` fail).
    pub fn is_alert(self) -> bool {
        !matches!(self, Kind::PolicyChanged)
    }
}

/// One alert, as the webhook receives it (spec/monitor.md M9).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What it is about.
    pub kind: Kind,
    /// Stable across deliveries of the same finding, so a receiver can drop a repeat.
    pub id: String,
    /// The log's URL.
    pub log: String,
    /// When the monitor found it (RFC 3339 UTC).
    pub time: String,
    /// What was found, in words.
    pub message: String,
    /// The entry's log index, for entry alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// The approver, for entry alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_id: Option<String>,
    /// The credential id (base64url), for entry alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// The policy hash (hex SHA-256 of the canonical policy), for a policy change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The witness, for a split view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<String>,
    /// The signed note the finding is about (the log's newest), as served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The other signed note of a conflict (the last one seen, or the witness's): with
    /// `checkpoint`, the proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicting_checkpoint: Option<String>,
}

impl Alert {
    /// An alert of `kind` about the log at `log`; its id is derived from the kind, the log and
    /// `what` (the facts that make it the same finding).
    pub fn new(kind: Kind, log: &str, what: &str, message: String) -> Alert {
        let id = hex::encode(
            &countersign_verifier::sha256(format!("{}\n{log}\n{what}", kind.as_str()).as_bytes())
                [..16],
        );
        Alert {
            kind,
            id,
            log: log.to_owned(),
            time: crate::times::rfc3339(now_secs()),
            message,
            index: None,
            approver_id: None,
            credential_id: None,
            sha256: None,
            witness: None,
            checkpoint: None,
            conflicting_checkpoint: None,
        }
    }

    /// The standard error line of an alert, `countersign monitor: ALERT <kind> <message>`; of a
    /// notice, its message alone (for standard output). One line whatever the message holds.
    pub fn line(&self) -> String {
        let msg: String = self
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if self.kind.is_alert() {
            format!("countersign monitor: ALERT {} {msg}", self.kind.as_str())
        } else {
            msg
        }
    }
}

/// Where alerts go besides standard error and `alerts.jsonl`.
pub struct Webhook {
    /// The URL POSTed to.
    pub url: String,
    /// The HMAC key.
    pub secret: Secret,
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Webhook {
    /// POSTs `alert` as JSON, signed as the server signs its notifications; a few tries with
    /// backoff. True once a 2xx came back.
    pub async fn post(&self, alert: &Alert) -> bool {
        let body = serde_json::to_vec(alert).unwrap_or_default();
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=3 {
            let ts = now_secs();
            let sent = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, webhook_signature(&self.secret, ts, &body))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => tracing::debug!(attempt, status = %r.status(), "webhook refused"),
                Err(e) => tracing::debug!(attempt, error = %e, "webhook failed"),
            }
            if attempt < 3 {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        false
    }
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
