//! Approval policies (`spec/policy.md`): which requests need whom. The data model in its
//! canonical JSON form (the form a policy entry will carry), its validation, and the evaluation
//! of a request against it, so that the server and an offline verifier decide alike.
//!
//! Pure: no I/O, no clock. Decimal comparisons are exact (text, never floats).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use crate::entry::is_valid_id;

mod decimal;
pub use decimal::{Decimal, DecimalError, MAX_DECIMAL_DIGITS};
mod eval;
pub use eval::{EvalError, MatchedRule, Outcome, Unevaluable};

/// Version of the canonical policy form (`"version"` member; `spec/policy.md` P8).
pub const APPROVAL_POLICY_VERSION: u32 = 1;
/// Most rules in a policy (`spec/policy.md` P6).
pub const MAX_POLICY_RULES: usize = 256;
/// Most groups in a policy (`spec/policy.md` P2).
pub const MAX_POLICY_GROUPS: usize = 256;
/// Most approvers in one group or one rule's list, and most clients or `in` values of a rule.
pub const MAX_POLICY_LIST: usize = 256;
/// Longest group name, in bytes (`spec/policy.md` P2).
pub const MAX_GROUP_NAME_BYTES: usize = 64;
/// Longest rule name, in bytes (`spec/policy.md` P3).
pub const MAX_RULE_NAME_BYTES: usize = 128;
/// Longest `when.type` and `when.field`, in bytes (`spec/policy.md` P3).
pub const MAX_WHEN_TEXT_BYTES: usize = 256;
/// Most segments of a `when.field` path (`spec/policy.md` P3).
pub const MAX_FIELD_SEGMENTS: usize = 16;
/// Largest `max_expiry`, in seconds (one year).
pub const MAX_RULE_EXPIRY_SECONDS: u64 = 31_536_000;

/// An approval policy as written (its canonical JSON form, `spec/policy.md`). Build one, or
/// deserialise it, then [`validate`](Self::validate) it: only a [`ValidatedPolicy`] is
/// evaluated or hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Always [`APPROVAL_POLICY_VERSION`].
    pub version: u32,
    /// Group name → approver ids, in the order written.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Rules, tried in order.
    #[serde(default)]
    pub rules: Vec<ApprovalRule>,
}

/// One rule: when it applies, and what it then requires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// Unique name, shown to approvers and logged in statements.
    pub name: String,
    /// When the rule applies.
    pub when: Condition,
    /// Who may approve.
    pub approvers: Approvers,
    /// Distinct approvers needed.
    pub quorum: u32,
    /// Whether every approval must be user-verified (the UV flag).
    #[serde(default)]
    pub require_uv: bool,
    /// Whether every approving passkey must have a verified attestation.
    #[serde(default)]
    pub require_attestation: bool,
    /// Longest expiry of a matching request, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expiry: Option<u64>,
}

/// A rule's condition: an `authorization_details` entry of `type`, optionally with the decimal
/// at `field` compared with `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The `authorization_details` type (RFC 9396 section 2) the rule is about.
    #[serde(rename = "type")]
    pub kind: String,
    /// Dotted path of member names into the entry (`instructedAmount.amount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The comparison; present exactly when `field` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// The decimal compared with (`gt`, `ge`, `lt`, `le`, `eq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The decimals compared with (`in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// The client ids the rule is limited to; absent: every client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<String>>,
}

/// A comparison operator (`spec/policy.md` P3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Equal (as decimals: `1000` equals `1000.00`).
    Eq,
    /// Equal to one of a list.
    In,
}

impl Op {
    /// The operator's name in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Eq => "eq",
            Op::In => "in",
        }
    }
}

/// Who may approve under a rule: a group's name, or a list of approver ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Approvers {
    /// The members of a group.
    Group(String),
    /// These approvers.
    Ids(Vec<String>),
}

/// Where a policy is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyPlace {
    /// The policy as a whole.
    Policy,
    /// A group, by name.
    Group(String),
    /// A rule, by index (0-based, in order).
    Rule(usize),
}

/// Why a policy is refused ([`ApprovalPolicy::validate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalPolicyError {
    /// Where.
    pub place: PolicyPlace,
    /// What.
    pub kind: ApprovalPolicyErrorKind,
}

/// What is wrong with a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalPolicyErrorKind {
    /// `version` is not [`APPROVAL_POLICY_VERSION`].
    UnsupportedVersion(u32),
    /// More groups or rules than the limits allow.
    TooMany(&'static str, usize),
    /// A group name is not 1 to 64 bytes of ASCII letters, digits and `-._`.
    BadGroupName,
    /// A group or approver list is empty.
    NoApprovers,
    /// An approver id is not a valid id (`is_valid_id`).
    BadApproverId(String),
    /// An approver is listed twice in one group or list.
    DuplicateApprover(String),
    /// A rule name is empty, too long, not printable ASCII, or starts or ends with a space.
    BadRuleName,
    /// Two rules have this name.
    DuplicateRuleName(String),
    /// `approvers` names a group that does not exist.
    UnknownGroup(String),
    /// `quorum` is 0 or more than the eligible approvers.
    BadQuorum {
        /// The rule's quorum.
        quorum: u32,
        /// Its distinct eligible approvers.
        eligible: usize,
    },
    /// `when.type` is empty, too long or holds a control character.
    BadType,
    /// `when.field` is not a dotted path of non-empty member names.
    BadField,
    /// `when.field` without a comparison.
    FieldWithoutComparison,
    /// A comparison without `when.field`.
    ComparisonWithoutField,
    /// `in` needs `values` (a non-empty list) and no `value`; the others `value` and no `values`.
    BadOperand(Op),
    /// A literal is not a decimal.
    BadDecimal(String, DecimalError),
    /// `when.clients` is empty or holds an invalid or repeated client id.
    BadClients,
    /// `max_expiry` is 0 or more than a year.
    BadMaxExpiry(u64),
}

impl fmt::Display for ApprovalPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            PolicyPlace::Policy => {}
            PolicyPlace::Group(g) => write!(f, "group {g:?}: ")?,
            PolicyPlace::Rule(i) => write!(f, "rule {}: ", i + 1)?,
        }
        self.kind.fmt(f)
    }
}

impl fmt::Display for ApprovalPolicyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ApprovalPolicyErrorKind as K;
        match self {
            K::UnsupportedVersion(v) => write!(f, "unsupported policy version {v} (expected 1)"),
            K::TooMany(what, max) => write!(f, "more than {max} {what}"),
            K::BadGroupName => f.write_str(
                "a group name must be 1 to 64 bytes of ASCII letters, digits and -._",
            ),
            K::NoApprovers => f.write_str("no approvers"),
            K::BadApproverId(id) => write!(f, "{id:?} is not a valid approver id"),
            K::DuplicateApprover(id) => write!(f, "approver {id:?} is listed twice"),
            K::BadRuleName => f.write_str(
                "a rule name must be 1 to 128 printable ASCII characters, without leading or trailing spaces",
            ),
            K::DuplicateRuleName(n) => write!(f, "another rule is named {n:?}"),
            K::UnknownGroup(g) => write!(f, "approvers names group {g:?}, which is not defined"),
            K::BadQuorum { quorum, eligible } => write!(
                f,
                "quorum {quorum} must be between 1 and the {eligible} eligible approvers"
            ),
            K::BadType => f.write_str(
                "when.type must be 1 to 256 bytes without control characters",
            ),
            K::BadField => f.write_str(
                "when.field must be a dotted path of 1 to 16 non-empty member names (at most 256 bytes)",
            ),
            K::FieldWithoutComparison => {
                f.write_str("when.field needs a comparison (gt, ge, lt, le, eq or in)")
            }
            K::ComparisonWithoutField => f.write_str("a comparison needs when.field"),
            K::BadOperand(Op::In) => f.write_str("in needs a non-empty list of decimals"),
            K::BadOperand(op) => write!(f, "{} needs one decimal", op.as_str()),
            K::BadDecimal(v, e) => write!(f, "{v:?} is not a decimal: {e}"),
            K::BadClients => f.write_str(
                "when.clients must be a non-empty list of distinct valid client ids",
            ),
            K::BadMaxExpiry(s) => {
                write!(f, "max_expiry {s} must be between 1 and 31536000 seconds")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ApprovalPolicyError {}

fn err(place: PolicyPlace, kind: ApprovalPolicyErrorKind) -> ApprovalPolicyError {
    ApprovalPolicyError { place, kind }
}

fn is_group_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_GROUP_NAME_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

pub(crate) fn is_rule_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RULE_NAME_BYTES
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

fn is_field_path(s: &str) -> bool {
    s.len() <= MAX_WHEN_TEXT_BYTES
        && s.split('.').count() <= MAX_FIELD_SEGMENTS
        && s.split('.').all(|seg| !seg.is_empty())
        && !s.chars().any(char::is_control)
}

/// The approver ids of a list, checked: non-empty, valid ids, no repeats, within the limit.
fn check_ids(place: &PolicyPlace, ids: &[String]) -> Result<(), ApprovalPolicyError> {
    use ApprovalPolicyErrorKind as K;
    if ids.is_empty() {
        return Err(err(place.clone(), K::NoApprovers));
    }
    if ids.len() > MAX_POLICY_LIST {
        return Err(err(place.clone(), K::TooMany("approvers", MAX_POLICY_LIST)));
    }
    let mut seen: Vec<&str> = Vec::with_capacity(ids.len());
    for id in ids {
        if !is_valid_id(id) {
            return Err(err(place.clone(), K::BadApproverId(id.clone())));
        }
        if seen.contains(&id.as_str()) {
            return Err(err(place.clone(), K::DuplicateApprover(id.clone())));
        }
        seen.push(id);
    }
    Ok(())
}

impl ApprovalPolicy {
    /// A version 1 policy of these groups and rules.
    pub fn new(groups: BTreeMap<String, Vec<String>>, rules: Vec<ApprovalRule>) -> Self {
        ApprovalPolicy {
            version: APPROVAL_POLICY_VERSION,
            groups,
            rules,
        }
    }

    /// Checks the rules of `spec/policy.md` (P2, P3, P5, P6); returns the first error found,
    /// groups before rules, rules in order.
    pub fn validate(self) -> Result<ValidatedPolicy, ApprovalPolicyError> {
        use ApprovalPolicyErrorKind as K;
        if self.version != APPROVAL_POLICY_VERSION {
            return Err(err(
                PolicyPlace::Policy,
                K::UnsupportedVersion(self.version),
            ));
        }
        if self.groups.len() > MAX_POLICY_GROUPS {
            return Err(err(
                PolicyPlace::Policy,
                K::TooMany("groups", MAX_POLICY_GROUPS),
            ));
        }
        if self.rules.len() > MAX_POLICY_RULES {
            return Err(err(
                PolicyPlace::Policy,
                K::TooMany("rules", MAX_POLICY_RULES),
            ));
        }
        for (name, members) in &self.groups {
            let place = PolicyPlace::Group(name.clone());
            if !is_group_name(name) {
                return Err(err(place, K::BadGroupName));
            }
            check_ids(&place, members)?;
        }
        let mut names: Vec<&str> = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            self.check_rule(rule, PolicyPlace::Rule(i))?;
            if names.contains(&rule.name.as_str()) {
                return Err(err(
                    PolicyPlace::Rule(i),
                    K::DuplicateRuleName(rule.name.clone()),
                ));
            }
            names.push(&rule.name);
        }
        Ok(ValidatedPolicy(self))
    }

    fn check_rule(
        &self,
        rule: &ApprovalRule,
        place: PolicyPlace,
    ) -> Result<(), ApprovalPolicyError> {
        use ApprovalPolicyErrorKind as K;
        if !is_rule_name(&rule.name) {
            return Err(err(place, K::BadRuleName));
        }
        let w = &rule.when;
        if w.kind.is_empty()
            || w.kind.len() > MAX_WHEN_TEXT_BYTES
            || w.kind.chars().any(char::is_control)
        {
            return Err(err(place, K::BadType));
        }
        match (&w.field, w.op) {
            (Some(f), Some(op)) => {
                if !is_field_path(f) {
                    return Err(err(place, K::BadField));
                }
                let literals: &[String] = match (op, &w.value, &w.values) {
                    (Op::In, None, Some(vs)) if !vs.is_empty() => {
                        if vs.len() > MAX_POLICY_LIST {
                            return Err(err(place, K::TooMany("values", MAX_POLICY_LIST)));
                        }
                        vs
                    }
                    (Op::In, _, _) => return Err(err(place, K::BadOperand(op))),
                    (_, Some(v), None) => core::slice::from_ref(v),
                    _ => return Err(err(place, K::BadOperand(op))),
                };
                for v in literals {
                    if let Err(e) = Decimal::parse(v) {
                        return Err(err(place, K::BadDecimal(v.clone(), e)));
                    }
                }
            }
            (Some(_), None) => return Err(err(place, K::FieldWithoutComparison)),
            (None, Some(_)) => return Err(err(place, K::ComparisonWithoutField)),
            (None, None) => {
                if w.value.is_some() || w.values.is_some() {
                    return Err(err(place, K::ComparisonWithoutField));
                }
            }
        }
        if let Some(clients) = &w.clients {
            let mut seen: Vec<&str> = Vec::new();
            if clients.is_empty() || clients.len() > MAX_POLICY_LIST {
                return Err(err(place, K::BadClients));
            }
            for c in clients {
                if !is_valid_id(c) || seen.contains(&c.as_str()) {
                    return Err(err(place, K::BadClients));
                }
                seen.push(c);
            }
        }
        let eligible = match &rule.approvers {
            Approvers::Group(g) => match self.groups.get(g) {
                Some(members) => members.len(),
                None => return Err(err(place, K::UnknownGroup(g.clone()))),
            },
            Approvers::Ids(ids) => {
                check_ids(&place, ids)?;
                ids.len()
            }
        };
        if rule.quorum == 0 || rule.quorum as usize > eligible {
            return Err(err(
                place,
                K::BadQuorum {
                    quorum: rule.quorum,
                    eligible,
                },
            ));
        }
        if let Some(s) = rule.max_expiry {
            if s == 0 || s > MAX_RULE_EXPIRY_SECONDS {
                return Err(err(place, K::BadMaxExpiry(s)));
            }
        }
        Ok(())
    }
}

/// A policy that passed [`ApprovalPolicy::validate`]: the only kind that is evaluated, logged
/// or hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedPolicy(ApprovalPolicy);

impl ValidatedPolicy {
    /// The policy.
    pub fn policy(&self) -> &ApprovalPolicy {
        &self.0
    }

    /// Reads a policy's JSON form (strictly: unknown members are refused) and validates it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, PolicyJsonError> {
        let p: ApprovalPolicy =
            serde_json::from_slice(bytes).map_err(|e| PolicyJsonError::Json(e.to_string()))?;
        p.validate().map_err(PolicyJsonError::Invalid)
    }

    /// The RFC 8785 canonical JSON of the policy (`spec/policy.md` P8, P9): what a
    /// policy entry carries. The same policy always gives the same bytes.
    #[cfg(feature = "std")]
    pub fn canonical_json(&self) -> Vec<u8> {
        // Serialising these types cannot fail (string keys, no floats), nor canonicalising
        // the resulting value; an empty output would fail every later hash comparison.
        serde_json::to_value(&self.0)
            .ok()
            .and_then(|v| crate::statement::canonical_json(&v).ok())
            .unwrap_or_default()
    }

    /// SHA-256 of [`canonical_json`](Self::canonical_json).
    #[cfg(feature = "std")]
    pub fn hash(&self) -> [u8; 32] {
        crate::hash::sha256(&self.canonical_json())
    }
}

/// Why a policy's JSON form is refused ([`ValidatedPolicy::from_json`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyJsonError {
    /// Not JSON of the policy's shape.
    Json(String),
    /// A policy that breaks a rule.
    Invalid(ApprovalPolicyError),
}

impl fmt::Display for PolicyJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyJsonError::Json(e) => write!(f, "malformed policy JSON: {e}"),
            PolicyJsonError::Invalid(e) => e.fmt(f),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PolicyJsonError {}

#[cfg(test)]
mod tests;
