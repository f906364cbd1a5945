//! Approval policies (`spec/policy.md`): which requests need whom. The data model in its
//! canonical JSON form (the form a policy entry will carry), its validation, and the evaluation
//! of a request against it, so that the server and an offline verifier decide alike.
//!
//! Pure: no I/O, no clock. Decimal comparisons are exact (text, never floats).

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entry::is_valid_id;

/// Version of the canonical policy form (`"version"` member; `spec/policy.md` P1).
pub const APPROVAL_POLICY_VERSION: u32 = 1;
/// Most rules in a policy (P3).
pub const MAX_POLICY_RULES: usize = 256;
/// Most groups in a policy (P2).
pub const MAX_POLICY_GROUPS: usize = 256;
/// Most approvers in one group or one rule's list, and most clients or `in` values of a rule.
pub const MAX_POLICY_LIST: usize = 256;
/// Longest group name, in bytes (P2).
pub const MAX_GROUP_NAME_BYTES: usize = 64;
/// Longest rule name, in bytes (P3).
pub const MAX_RULE_NAME_BYTES: usize = 128;
/// Longest `when.type` and `when.field`, in bytes (P4).
pub const MAX_WHEN_TEXT_BYTES: usize = 256;
/// Most segments of a `when.field` path (P4).
pub const MAX_FIELD_SEGMENTS: usize = 16;
/// Most digits (integer and fraction parts together) of a decimal (P5).
pub const MAX_DECIMAL_DIGITS: usize = 40;
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

/// A comparison operator (P5).
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
    /// `when.field` without a comparison, or a comparison without `when.field`.
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

fn is_rule_name(s: &str) -> bool {
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

    /// Checks the rules of `spec/policy.md` (P1 to P7); returns the first error found, groups
    /// before rules, rules in order.
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

/// What a policy says about a request ([`ValidatedPolicy::evaluate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No rule applies: the request's `login_hint` approver decides alone (quorum 1).
    NoRuleMatched,
    /// The first rule that applies.
    Matched(MatchedRule),
}

/// The rule that applies to a request, and what it requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedRule {
    /// The rule's name.
    pub rule: String,
    /// Its index in the policy (0-based).
    pub index: usize,
    /// Distinct approvers needed.
    pub quorum: u32,
    /// Who may approve: sorted, without repeats.
    pub approvers: Vec<String>,
    /// Every approval must be user-verified.
    pub require_uv: bool,
    /// Every approving passkey must have a verified attestation.
    pub require_attestation: bool,
    /// Longest expiry of the request, in seconds.
    pub max_expiry: Option<u64>,
}

/// Why a request cannot be evaluated ([`ValidatedPolicy::evaluate`]): such a request is to be
/// refused, never approved under no rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvalError {
    /// `authorization_details` is not an array of objects each with a string `type`.
    MalformedDetails(&'static str),
    /// An entry of a rule's type has no decimal at the rule's field.
    Unevaluable {
        /// The rule's name.
        rule: String,
        /// The entry's index in `authorization_details`.
        entry: usize,
        /// The rule's field.
        field: String,
        /// Why.
        reason: Unevaluable,
    },
}

/// Why a rule's field cannot be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unevaluable {
    /// A member on the path is absent.
    Missing,
    /// A value on the path (before its end) is not an object.
    NotAnObject,
    /// The value is not a string or a number (it is the named JSON kind).
    NotStringOrNumber(&'static str),
    /// The value is not a decimal.
    NotDecimal(DecimalError),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::MalformedDetails(why) => write!(f, "authorization_details {why}"),
            EvalError::Unevaluable {
                rule,
                entry,
                field,
                reason,
            } => {
                write!(
                    f,
                    "policy rule {rule:?} cannot evaluate authorization_details[{entry}].{field}: "
                )?;
                match reason {
                    Unevaluable::Missing => f.write_str("it is missing"),
                    Unevaluable::NotAnObject => f.write_str("the path goes through a non-object"),
                    Unevaluable::NotStringOrNumber(k) => {
                        write!(f, "it is {k}, not a decimal string or number")
                    }
                    Unevaluable::NotDecimal(e) => write!(f, "it is not a decimal: {e}"),
                }
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EvalError {}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The decimal text at `path` in `entry`.
fn field_text(entry: &Value, path: &str) -> Result<String, Unevaluable> {
    let mut v = entry;
    for seg in path.split('.') {
        let Value::Object(m) = v else {
            return Err(Unevaluable::NotAnObject);
        };
        v = m.get(seg).ok_or(Unevaluable::Missing)?;
    }
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(u.to_string())
            } else if let Some(i) = n.as_i64() {
                Ok(i.to_string())
            } else {
                // The shortest text that reads back as this binary number, without an exponent:
                // the value the statement's canonical form (RFC 8785 3.2.2.3) shows the approver.
                Ok(format!("{}", n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        other => Err(Unevaluable::NotStringOrNumber(kind_of(other))),
    }
}

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

    /// The RFC 8785 canonical JSON of the policy (`spec/policy.md`, "Canonical form"): what a
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

    /// Which rule applies to a request of `client_id` with these `authorization_details`
    /// (`spec/policy.md` P8 to P10): rules in order, the first that matches wins. A rule
    /// limited to other clients is skipped. A rule matches when an entry of its type exists and,
    /// if it has a field, the comparison holds for at least one such entry; every entry of its
    /// type must be comparable, or the request is an [`EvalError`] (never a silent non-match).
    pub fn evaluate(&self, client_id: &str, details: &Value) -> Result<Outcome, EvalError> {
        let Value::Array(entries) = details else {
            return Err(EvalError::MalformedDetails("is not an array"));
        };
        let mut types: Vec<&str> = Vec::with_capacity(entries.len());
        for e in entries {
            let Value::Object(m) = e else {
                return Err(EvalError::MalformedDetails("holds a non-object"));
            };
            let Some(Value::String(t)) = m.get("type") else {
                return Err(EvalError::MalformedDetails(
                    "holds an entry without a string type",
                ));
            };
            types.push(t);
        }
        for (index, rule) in self.0.rules.iter().enumerate() {
            if let Some(clients) = &rule.when.clients {
                if !clients.iter().any(|c| c == client_id) {
                    continue;
                }
            }
            let mut matched = false;
            for (i, e) in entries.iter().enumerate() {
                if types[i] != rule.when.kind {
                    continue;
                }
                let (Some(field), Some(op)) = (&rule.when.field, rule.when.op) else {
                    matched = true;
                    continue;
                };
                let unevaluable = |reason| EvalError::Unevaluable {
                    rule: rule.name.clone(),
                    entry: i,
                    field: field.clone(),
                    reason,
                };
                let text = field_text(e, field).map_err(unevaluable)?;
                let got =
                    Decimal::parse(&text).map_err(|d| unevaluable(Unevaluable::NotDecimal(d)))?;
                if compare(op, &got, &rule.when) {
                    matched = true;
                }
            }
            if matched {
                return Ok(Outcome::Matched(self.matched(index, rule)));
            }
        }
        Ok(Outcome::NoRuleMatched)
    }

    fn matched(&self, index: usize, rule: &ApprovalRule) -> MatchedRule {
        let mut approvers: Vec<String> = match &rule.approvers {
            Approvers::Group(g) => self.0.groups.get(g).cloned().unwrap_or_default(),
            Approvers::Ids(ids) => ids.clone(),
        };
        approvers.sort();
        approvers.dedup();
        MatchedRule {
            rule: rule.name.clone(),
            index,
            quorum: rule.quorum,
            approvers,
            require_uv: rule.require_uv,
            require_attestation: rule.require_attestation,
            max_expiry: rule.max_expiry,
        }
    }

    /// The distinct approvers a rule names (sorted), or `None` for an index past the rules.
    pub fn eligible(&self, index: usize) -> Option<Vec<String>> {
        self.0
            .rules
            .get(index)
            .map(|r| self.matched(index, r).approvers)
    }
}

/// `value op literal(s)`; the literals were checked by `validate`, and one that does not parse
/// (impossible) compares as not matching.
fn compare(op: Op, got: &Decimal<'_>, when: &Condition) -> bool {
    let cmp = |lit: &String| Decimal::parse(lit).ok().map(|l| got.cmp(&l));
    match op {
        Op::In => when
            .values
            .iter()
            .flatten()
            .any(|l| cmp(l) == Some(Ordering::Equal)),
        _ => match when.value.as_ref().and_then(cmp) {
            Some(o) => match op {
                Op::Gt => o == Ordering::Greater,
                Op::Ge => o != Ordering::Less,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Eq | Op::In => o == Ordering::Equal,
            },
            None => false,
        },
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

/// Why a text is not a decimal (`spec/policy.md` P5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecimalError {
    /// Empty text, or an empty integer or fraction part (`""`, `"-"`, `".5"`, `"5."`).
    EmptyPart,
    /// A character other than an optional leading `-`, ASCII digits and one `.` (a `+`, an
    /// exponent, spaces, a thousands separator...).
    BadCharacter,
    /// More than [`MAX_DECIMAL_DIGITS`] digits.
    TooManyDigits,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::EmptyPart => "an empty integer or fraction part",
            DecimalError::BadCharacter => {
                "only an optional '-', digits and one '.' are allowed (no '+', exponent or spaces)"
            }
            DecimalError::TooManyDigits => "more than 40 digits",
        })
    }
}

/// An exact decimal, read from text: `-?[0-9]+(\.[0-9]+)?`, at most [`MAX_DECIMAL_DIGITS`]
/// digits. Ordered by value: `1000` equals `1000.00` and `-0` equals `0`.
#[derive(Clone, Copy, Debug)]
pub struct Decimal<'a> {
    negative: bool,
    /// Integer digits without leading zeros (empty for zero).
    int: &'a str,
    /// Fraction digits without trailing zeros (empty for none).
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    /// Parses `text` (P5); returns why it is not a decimal.
    pub fn parse(text: &'a str) -> Result<Self, DecimalError> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (int, frac) = match rest.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (rest, None),
        };
        let digits = |s: &str| -> Result<(), DecimalError> {
            if s.is_empty() {
                Err(DecimalError::EmptyPart)
            } else if !s.bytes().all(|b| b.is_ascii_digit()) {
                Err(DecimalError::BadCharacter)
            } else {
                Ok(())
            }
        };
        digits(int)?;
        if let Some(f) = frac {
            digits(f)?;
        }
        if int.len() + frac.map_or(0, str::len) > MAX_DECIMAL_DIGITS {
            return Err(DecimalError::TooManyDigits);
        }
        let int = int.trim_start_matches('0');
        let frac = frac.unwrap_or("").trim_end_matches('0');
        Ok(Decimal {
            negative: negative && !(int.is_empty() && frac.is_empty()),
            int,
            frac,
        })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            // Without trailing zeros, byte order of the fraction digits is numeric order.
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl PartialEq for Decimal<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Decimal<'_> {}
impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

#[cfg(test)]
#[path = "approval_policy/tests.rs"]
mod tests;
