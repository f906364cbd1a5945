//! The checks of each new entry (spec/monitor.md M7, M8): it decodes; a decision relies on an
//! enrolment logged before it (link 3 of `spec/evidence-bundle.md`, the verifier's
//! [`check_decision_enrolment`]) and not revoked before it (rule R3); a revocation names an
//! enrolment of the same approver and credential; enrolments and revocations of a watched
//! approver are reported; a policy entry holds a valid policy, and is reported as a notice.

use std::collections::HashMap;

use base64::Engine;
use countersign_verifier::{check_decision_enrolment, AttestationRecord, Enrolment, Entry};

use super::alert::{Alert, Kind};
use super::state::{apply, Enrolled, JournalLine};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Checks the entry `bytes` at `index` against `table` (updating it), returning the alerts it
/// raises and the journal lines that record what it changed.
pub fn check(
    log: &str,
    index: u64,
    bytes: &[u8],
    table: &mut HashMap<u64, Enrolled>,
    watched: &[String],
    alerts: &mut Vec<Alert>,
    journal: &mut Vec<JournalLine>,
) {
    let entry = match Entry::decode(bytes) {
        Ok(e) => e,
        Err(e) => {
            let mut a = Alert::new(
                Kind::BadEntry,
                log,
                &index.to_string(),
                format!("entry {index} does not decode: {e}"),
            );
            a.index = Some(index);
            alerts.push(a);
            return;
        }
    };
    let is_watched = watched.iter().any(|w| w == entry.approver_id());
    let mut alert = |kind: Kind, message: String, credential: &[u8]| {
        let mut a = Alert::new(kind, log, &index.to_string(), message);
        a.index = Some(index);
        a.approver_id = Some(entry.approver_id().to_owned());
        a.credential_id = Some(B64URL.encode(credential));
        alerts.push(a);
    };
    match &entry {
        Entry::Enrolment(e) => {
            let line = JournalLine::Enrolled {
                index,
                enrolment: Enrolled {
                    approver_id: e.approver_id.clone(),
                    credential_id: B64URL.encode(&e.credential_id),
                    public_key: B64URL.encode(&e.public_key),
                    revoked_at: None,
                },
            };
            apply(table, &line);
            journal.push(line);
            if is_watched {
                alert(
                    Kind::WatchedEnrolment,
                    format!(
                        "a passkey was enrolled for watched approver {} at log index {index} \
                         (credential {}); if it was not them, revoke it",
                        e.approver_id,
                        B64URL.encode(&e.credential_id)
                    ),
                    &e.credential_id,
                );
            }
        }
        Entry::Revocation(r) => {
            let matches = table.get(&r.enrolment_index).is_some_and(|e| {
                e.approver_id == r.approver_id && e.credential_id == B64URL.encode(&r.credential_id)
            });
            if matches {
                let line = JournalLine::Revoked {
                    enrolment_index: r.enrolment_index,
                    index,
                };
                apply(table, &line);
                journal.push(line);
            } else {
                alert(
                    Kind::BadEntry,
                    format!(
                        "revocation at log index {index} names enrolment {}, which is not an \
                         enrolment of approver {} with that credential",
                        r.enrolment_index, r.approver_id
                    ),
                    &r.credential_id,
                );
            }
            if is_watched {
                alert(
                    Kind::WatchedRevocation,
                    format!(
                        "a passkey of watched approver {} was revoked at log index {index} \
                         (enrolment {}, reason {:?})",
                        r.approver_id, r.enrolment_index, r.reason
                    ),
                    &r.credential_id,
                );
            }
        }
        Entry::Policy(p) => match p.validated() {
            Err(why) => {
                let mut a = Alert::new(
                    Kind::BadEntry,
                    log,
                    &index.to_string(),
                    format!(
                        "policy entry at log index {index} does not hold a valid policy: {why}"
                    ),
                );
                a.index = Some(index);
                alerts.push(a);
            }
            Ok(policy) => {
                let sha256 = hex::encode(p.policy_hash());
                let rules = policy.policy().rules.len();
                let mut a = Alert::new(
                    Kind::PolicyChanged,
                    log,
                    &format!("{index}\n{sha256}"),
                    format!(
                        "policy changed at log index {index}: sha256 {sha256}, {rules} {}",
                        if rules == 1 { "rule" } else { "rules" }
                    ),
                );
                a.index = Some(index);
                a.sha256 = Some(sha256);
                alerts.push(a);
            }
        },
        Entry::Decision(d) => {
            let Some(e) = table.get(&d.enrolment_index) else {
                alert(
                    Kind::DecisionWithoutEnrolment,
                    format!(
                        "decision at log index {index} names enrolment {}, which is not an \
                         enrolment logged before it",
                        d.enrolment_index
                    ),
                    &d.credential_id,
                );
                return;
            };
            // Only the fields link 3 reads: the approver, the credential id and the key.
            let enrolment = Enrolment {
                approver_id: e.approver_id.clone(),
                credential_id: B64URL.decode(&e.credential_id).unwrap_or_default(),
                public_key: B64URL.decode(&e.public_key).unwrap_or_default(),
                aaguid: [0; 16],
                attestation_format: String::new(),
                attestation: AttestationRecord::NotRecorded,
                time_ms: 0,
            };
            if let Err(why) = check_decision_enrolment(d, index, &enrolment, d.enrolment_index) {
                alert(
                    Kind::DecisionWithoutEnrolment,
                    format!(
                        "decision at log index {index} does not match enrolment {}: {why}",
                        d.enrolment_index
                    ),
                    &d.credential_id,
                );
            } else if let Some(at) = e.revoked_at.filter(|at| *at < index) {
                alert(
                    Kind::DecisionByRevokedCredential,
                    format!(
                        "decision at log index {index} was signed by the credential of \
                         enrolment {}, revoked at log index {at}",
                        d.enrolment_index
                    ),
                    &d.credential_id,
                );
            }
        }
    }
}
