//! The approval policy file (`spec/policy.md`): TOML read into the verifier's [`ApprovalPolicy`]
//! and validated there, so the server and an offline verifier share one model. Every refusal
//! names the line at fault: a syntax error or an unknown key by its own span, a rule's or group's
//! error by the key or rule it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use countersign_verifier::{
    ApprovalPolicy, ApprovalPolicyError, ApprovalPolicyErrorKind as K, ApprovalRule, Approvers,
    Condition, Op, PolicyPlace, ValidatedPolicy,
};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Largest policy file read, in bytes: far above 256 rules of 256 approvers each.
pub const MAX_POLICY_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Why a policy file is refused ([`parse_policy_toml`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFileError {
    /// The 1-based line at fault, when there is one.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: PolicyFileErrorKind,
}

/// What is wrong with a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyFileErrorKind {
    /// Larger than [`MAX_POLICY_FILE_BYTES`].
    TooLarge,
    /// Not TOML, or not of the policy's shape (an unknown key, a wrong type); the TOML parser's
    /// message.
    Syntax(String),
    /// Two comparisons (`gt`, `ge`, `lt`, `le`, `eq`, `in`) in one rule.
    TwoComparisons,
    /// A policy that breaks a rule of `spec/policy.md`; the rule's name when the error is a
    /// rule's.
    Invalid(Option<String>, ApprovalPolicyError),
}

impl fmt::Display for PolicyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        self.kind.fmt(f)
    }
}

impl fmt::Display for PolicyFileErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyFileErrorKind::TooLarge => {
                write!(f, "policy file larger than {MAX_POLICY_FILE_BYTES} bytes")
            }
            PolicyFileErrorKind::Syntax(m) => f.write_str(m.trim_end()),
            PolicyFileErrorKind::TwoComparisons => {
                f.write_str("a rule has at most one of when.gt, ge, lt, le, eq, in")
            }
            PolicyFileErrorKind::Invalid(Some(name), e) => {
                write!(f, "rule {name:?}: {}", e.kind)
            }
            PolicyFileErrorKind::Invalid(None, e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PolicyFileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    groups: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    rules: Vec<Spanned<RuleToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    name: Spanned<String>,
    when: Spanned<WhenToml>,
    approvers: Spanned<ApproversToml>,
    quorum: Spanned<u32>,
    #[serde(default)]
    require_uv: bool,
    #[serde(default)]
    require_attestation: bool,
    #[serde(default)]
    max_expiry: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenToml {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    gt: Option<Literal>,
    #[serde(default)]
    ge: Option<Literal>,
    #[serde(default)]
    lt: Option<Literal>,
    #[serde(default)]
    le: Option<Literal>,
    #[serde(default)]
    eq: Option<Literal>,
    #[serde(default, rename = "in")]
    within: Option<Vec<Literal>>,
    #[serde(default)]
    clients: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a group name or a list of approver ids")]
enum ApproversToml {
    Group(String),
    Ids(Vec<String>),
}

/// A decimal literal: a string, or a TOML integer (exact); a TOML float is refused, since
/// `0.1` in binary floating point is not 0.1.
struct Literal(String);

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Literal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal as a string (\"1000.50\") or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Literal, E> {
                Ok(Literal(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Literal, E> {
                Ok(Literal(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Literal, E> {
                Ok(Literal(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Literal, E> {
                Err(E::custom(
                    "a TOML float is not an exact decimal: write the number as a string, e.g. \"0.1\"",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads and validates a policy file's text (`spec/policy.md`, "The file"). The result is the
/// policy whose canonical JSON and hash ([`ValidatedPolicy::canonical_json`],
/// [`ValidatedPolicy::hash`]) identify it.
pub fn parse_policy_toml(text: &str) -> Result<ValidatedPolicy, PolicyFileError> {
    if text.len() > MAX_POLICY_FILE_BYTES {
        return Err(PolicyFileError {
            line: None,
            kind: PolicyFileErrorKind::TooLarge,
        });
    }
    let file: FileToml = toml::from_str(text).map_err(|e| PolicyFileError {
        line: e.span().map(|s| line_of(text, s.start)),
        kind: PolicyFileErrorKind::Syntax(e.message().to_string()),
    })?;
    let at = |span: Range<usize>| Some(line_of(text, span.start));

    let mut rules = Vec::with_capacity(file.rules.len());
    for r in &file.rules {
        let w = r.get_ref().when.get_ref();
        let comparisons = [
            (Op::Gt, &w.gt),
            (Op::Ge, &w.ge),
            (Op::Lt, &w.lt),
            (Op::Le, &w.le),
            (Op::Eq, &w.eq),
        ];
        let mut op = None;
        let mut value = None;
        for (o, v) in comparisons {
            if let Some(Literal(v)) = v {
                if op.is_some() {
                    return Err(PolicyFileError {
                        line: at(r.get_ref().when.span()),
                        kind: PolicyFileErrorKind::TwoComparisons,
                    });
                }
                op = Some(o);
                value = Some(v.clone());
            }
        }
        let values = w
            .within
            .as_ref()
            .map(|vs| vs.iter().map(|Literal(v)| v.clone()).collect::<Vec<_>>());
        if values.is_some() {
            if op.is_some() {
                return Err(PolicyFileError {
                    line: at(r.get_ref().when.span()),
                    kind: PolicyFileErrorKind::TwoComparisons,
                });
            }
            op = Some(Op::In);
        }
        let rule = r.get_ref();
        rules.push(ApprovalRule {
            name: rule.name.get_ref().clone(),
            when: Condition {
                kind: w.kind.clone(),
                field: w.field.clone(),
                op,
                value,
                values,
                clients: w.clients.clone(),
            },
            approvers: match rule.approvers.get_ref() {
                ApproversToml::Group(g) => Approvers::Group(g.clone()),
                ApproversToml::Ids(ids) => Approvers::Ids(ids.clone()),
            },
            quorum: *rule.quorum.get_ref(),
            require_uv: rule.require_uv,
            require_attestation: rule.require_attestation,
            max_expiry: rule.max_expiry.as_ref().map(|m| *m.get_ref()),
        });
    }
    let groups = file
        .groups
        .iter()
        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
        .collect();
    ApprovalPolicy::new(groups, rules)
        .validate()
        .map_err(|e| match &e.place {
            PolicyPlace::Rule(i) => {
                let Some(r) = file.rules.get(*i) else {
                    return PolicyFileError {
                        line: None,
                        kind: PolicyFileErrorKind::Invalid(None, e),
                    };
                };
                let r_ref = r.get_ref();
                // The key the error is about, else the rule's table.
                let span = match &e.kind {
                    K::BadRuleName | K::DuplicateRuleName(_) => r_ref.name.span(),
                    K::BadQuorum { .. } => r_ref.quorum.span(),
                    K::UnknownGroup(_)
                    | K::NoApprovers
                    | K::BadApproverId(_)
                    | K::DuplicateApprover(_) => r_ref.approvers.span(),
                    K::BadMaxExpiry(_) => r_ref
                        .max_expiry
                        .as_ref()
                        .map_or_else(|| r.span(), Spanned::span),
                    _ => r_ref.when.span(),
                };
                PolicyFileError {
                    line: at(span),
                    kind: PolicyFileErrorKind::Invalid(Some(r_ref.name.get_ref().clone()), e),
                }
            }
            PolicyPlace::Group(g) => PolicyFileError {
                line: file.groups.get(g).and_then(|v| at(v.span())),
                kind: PolicyFileErrorKind::Invalid(None, e),
            },
            _ => PolicyFileError {
                line: None,
                kind: PolicyFileErrorKind::Invalid(None, e),
            },
        })
}

/// The approval policy in force: the policy and the log entry that made it take effect.
/// Requests are evaluated under the one in force when they are made ([`crate::state::Approvals::active_policy`]).
#[derive(Clone, Debug)]
pub struct ActivePolicy {
    /// The policy.
    pub policy: ValidatedPolicy,
    /// Log index of its policy entry.
    pub index: u64,
    /// SHA-256 of its canonical form (the policy hash).
    pub sha256: [u8; 32],
}

pub mod serve;

#[cfg(test)]
mod tests;
