//! Who decides a new request: the approver the agent named, or, under the approval policy in
//! force (`serve --policy`), the eligible approvers and quorum of the first rule that matches
//! (`spec/policy.md`). A request the policy cannot evaluate is refused, never decided by fewer
//! people than a rule asks for.

use countersign_verifier::{Outcome, StatementPolicy};
use serde_json::Value;

use crate::state::Approvals;
use crate::store::ClientRecord;
use countersign_log::ApiError;

/// The prefix of a `login_hint` naming a group of the policy in force.
pub const GROUP_HINT_PREFIX: &str = "group:";

/// Who may decide a request, as its statement will say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deciders {
    /// No policy in force: the one approver the hint names (a version 1 statement).
    One(String),
    /// Under the policy in force (a version 2 statement).
    Policy {
        /// The statement's `policy` member.
        policy: StatementPolicy,
        /// The matched rule requires the user-verified flag.
        require_uv: bool,
        /// The matched rule requires attested passkeys.
        require_attestation: bool,
        /// The matched rule's longest expiry, in seconds.
        max_expiry: Option<u64>,
    },
}

/// Whether an approver can approve at all: known, not disabled, with a passkey.
async fn can_approve(c: &Approvals, id: &str) -> Result<bool, ApiError> {
    Ok(c.store
        .approver(id)
        .await?
        .is_some_and(|a| !a.disabled && !a.credentials.is_empty()))
}

/// The approvers a `group:<name>` hint names under the policy in force: the group's members
/// who can approve and whom the client may ask. `None` when no one can be asked (the caller
/// answers as for any hint that reaches no one).
pub async fn group_members(
    c: &Approvals,
    client: &ClientRecord,
    name: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(active) = c.active_policy() else {
        return Err(ApiError::invalid_request(
            "login_hint names a group, and this server has no approval policy to define groups",
        ));
    };
    let Some(members) = active.policy.policy().groups.get(name) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for m in members {
        let allowed = client
            .approvers
            .as_ref()
            .is_none_or(|list| list.contains(m));
        if allowed && can_approve(c, m).await? {
            out.push(m.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok((!out.is_empty()).then_some(out))
}

/// Who decides a request of `client` with `details`, whose hint resolved to `named` (one
/// approver, or a group's members who can approve, sorted).
pub async fn deciders(
    c: &Approvals,
    client: &ClientRecord,
    named: Vec<String>,
    details: &Value,
) -> Result<Deciders, ApiError> {
    let Some(active) = c.active_policy() else {
        // Without a policy only one approver can be named (a group hint was refused).
        return Ok(Deciders::One(named.into_iter().next().unwrap_or_default()));
    };
    let outcome = active
        .policy
        .evaluate(&client.client_id, details)
        .map_err(|e| {
            c.metrics.refused("policy_unevaluable");
            ApiError::bad_request(
                "invalid_authorization_details",
                format!(
                    "{e}; the approval policy in force decides who must approve this request, so \
                     a request it cannot evaluate is refused"
                ),
            )
        })?;
    Ok(match outcome {
        Outcome::NoRuleMatched => Deciders::Policy {
            policy: StatementPolicy {
                index: active.index,
                rule: None,
                quorum: 1,
                approvers: named,
            },
            require_uv: false,
            require_attestation: false,
            max_expiry: None,
        },
        Outcome::Matched(m) => {
            let mut able = 0u64;
            for a in &m.approvers {
                if can_approve(c, a).await? {
                    able += 1;
                }
            }
            if able < u64::from(m.quorum) {
                c.metrics.refused("policy_quorum_unreachable");
                return Err(ApiError::bad_request(
                    "unknown_user_id",
                    format!(
                        "the approval policy rule {:?} needs {} distinct approvers, and only {able} \
                         of its approvers can approve (enrolled and not disabled)",
                        m.rule, m.quorum
                    ),
                ));
            }
            Deciders::Policy {
                policy: StatementPolicy {
                    index: active.index,
                    rule: Some(m.rule),
                    quorum: u64::from(m.quorum),
                    approvers: m.approvers,
                },
                require_uv: m.require_uv,
                require_attestation: m.require_attestation,
                max_expiry: m.max_expiry,
            }
        }
    })
}
