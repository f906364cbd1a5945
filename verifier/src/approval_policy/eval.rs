//! The evaluation of a request against a policy (`spec/policy.md` P10 to P14): the first rule
//! that matches applies, and a request a rule cannot evaluate is an error, never a non-match.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

use serde_json::Value;

use super::{ApprovalRule, Approvers, Condition, Decimal, DecimalError, Op, ValidatedPolicy};

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
    /// Which rule applies to a request of `client_id` with these `authorization_details`
    /// (`spec/policy.md` P10 to P14): rules in order, the first that matches wins. A rule
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
