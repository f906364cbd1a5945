//! The approval statement (`spec/statement.md`): everything the approver was shown, in RFC 8785
//! (JCS) canonical JSON, hashed with SHA-256. The approver's passkey signs
//! `nonce || SHA-256(statement)`.

use core::fmt;
use std::string::{String, ToString};
use std::vec::Vec;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entry::{is_valid_id, Decision};
use crate::hash::sha256;

/// The version of a statement decided by one named approver (no approval policy in force).
pub const STATEMENT_VERSION: u64 = 1;
/// The version of a statement made under a logged approval policy: it names the policy entry,
/// the rule that matched, the quorum and the eligible approvers instead of one approver.
pub const STATEMENT_VERSION_POLICY: u64 = 2;
/// The most eligible approvers a version 2 statement names (`spec/policy.md` P3).
pub const MAX_STATEMENT_APPROVERS: usize = 256;
/// The largest statement accepted as JSON, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 32 * 1024;
/// The longest binding message, in characters.
pub const MAX_BINDING_MESSAGE_CHARS: usize = 256;
/// Integers in `authorization_details` must be exact in an IEEE double, as JCS and every
/// browser read them: at most 2^53 - 1 in magnitude.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a statement was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatementError {
    /// Larger than [`MAX_STATEMENT_BYTES`].
    TooLarge,
    /// Not a JSON object with exactly the statement's members and types; the text says what.
    Malformed(String),
    /// A member holds a value outside its rules; the text names the member.
    InvalidField(&'static str),
}

impl fmt::Display for StatementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatementError::TooLarge => {
                write!(f, "statement is larger than {MAX_STATEMENT_BYTES} bytes")
            }
            StatementError::Malformed(why) => write!(f, "malformed statement: {why}"),
            StatementError::InvalidField(name) => write!(f, "statement field {name} is invalid"),
        }
    }
}

impl std::error::Error for StatementError {}

/// What the approver saw and decided on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// 1 (one named approver) or 2 (under an approval policy, with [`Statement::policy`]).
    pub version: u64,
    /// The origin of the log the decision is recorded in (binds the approval to one log).
    pub log_origin: String,
    /// Public identifier of the approval request (not the CIBA `auth_req_id`, which is a secret).
    pub request_id: String,
    /// Opaque identifier of the client (agent) that asked.
    pub client_id: String,
    /// Opaque identifier of the approver (version 1). Empty, and absent from the JSON, in a
    /// version 2 statement, which names its eligible approvers in [`Statement::policy`]; every
    /// approver's decision is then its own log entry over the same statement.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "present_id"
    )]
    pub approver_id: String,
    /// Version 2 only: the policy the request was evaluated under and what it asked for.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub policy: Option<StatementPolicy>,
    /// The OAuth scope requested.
    pub scope: String,
    /// The CIBA binding message shown on both devices.
    pub binding_message: String,
    /// RFC 9396 authorization details: a JSON array of objects, each with a string `type`.
    #[serde(deserialize_with = "strict_value")]
    pub authorization_details: Value,
    /// When the request was made, seconds since the Unix epoch.
    pub requested_at: u64,
    /// When the request expires, seconds since the Unix epoch.
    pub expires_at: u64,
    /// `approve` or `deny`.
    pub decision: String,
}

/// The `policy` member of a version 2 statement (`spec/statement.md` S13): which logged policy
/// applied, which of its rules matched, and whose approvals it takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementPolicy {
    /// Log index of the policy entry in force when the request was made.
    pub index: u64,
    /// The name of the rule that matched; `null` when none did (quorum 1: the approver the
    /// agent named, or any one member of the group it named).
    #[serde(deserialize_with = "nullable")]
    pub rule: Option<String>,
    /// Distinct approvers whose approval is needed.
    pub quorum: u64,
    /// The eligible approvers, sorted by byte value, without repeats.
    pub approvers: Vec<String>,
}

impl StatementPolicy {
    fn validate(&self) -> bool {
        let n = self.approvers.len();
        self.index <= MAX_SAFE_INTEGER
            && (1..=MAX_STATEMENT_APPROVERS).contains(&n)
            && self.approvers.iter().all(|a| is_valid_id(a))
            && self.approvers.windows(2).all(|w| w[0] < w[1])
            && self.quorum >= 1
            && self.quorum <= n as u64
            && match &self.rule {
                Some(name) => crate::approval_policy::is_rule_name(name),
                // No rule: the approver or group the agent named, any one of them.
                None => self.quorum == 1,
            }
    }

    /// Whether `approver_id` is one of the eligible approvers.
    pub fn is_eligible(&self, approver_id: &str) -> bool {
        self.approvers
            .binary_search_by(|a| a.as_str().cmp(approver_id))
            .is_ok()
    }
}

/// A member that, when present, must hold a value (`null` is refused: one meaning per text).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A JSON value read as [`parse_json_strict`] reads it: with the derived refusal of a member
/// named twice among the statement's own, a statement read from text names no member twice
/// anywhere, however it is read.
fn strict_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Strict::deserialize(d).map(|Strict(v)| v)
}

/// A member that must be present and may be `null`.
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// `approver_id`, when present, is a string that is not empty (absent is the empty string).
fn present_id<'de, D>(d: D) -> Result<String, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(serde::de::Error::custom("approver_id is empty"));
    }
    Ok(s)
}

impl Statement {
    /// Parses a statement from JSON and checks its rules. Duplicate and unknown members are
    /// errors, so one statement has one meaning.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatementError> {
        if bytes.len() > MAX_STATEMENT_BYTES {
            return Err(StatementError::TooLarge);
        }
        let v = parse_json_strict(bytes).map_err(StatementError::Malformed)?;
        let s: Statement =
            serde_json::from_value(v).map_err(|e| StatementError::Malformed(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks every member against `spec/statement.md`.
    pub fn validate(&self) -> Result<(), StatementError> {
        use StatementError::InvalidField as F;
        if self.version != STATEMENT_VERSION && self.version != STATEMENT_VERSION_POLICY {
            return Err(F("version"));
        }
        // JCS writes every number as an IEEE double: beyond 2^53 - 1 two values share a form.
        if self.requested_at > MAX_SAFE_INTEGER {
            return Err(F("requested_at"));
        }
        if self.expires_at > MAX_SAFE_INTEGER {
            return Err(F("expires_at"));
        }
        if self.log_origin.is_empty() || !is_safe_text(&self.log_origin) {
            return Err(F("log_origin"));
        }
        if !is_valid_id(&self.request_id) {
            return Err(F("request_id"));
        }
        if !is_valid_id(&self.client_id) {
            return Err(F("client_id"));
        }
        match (&self.policy, self.version) {
            (None, STATEMENT_VERSION) => {
                if !is_valid_id(&self.approver_id) {
                    return Err(F("approver_id"));
                }
            }
            (Some(p), STATEMENT_VERSION_POLICY) => {
                if !self.approver_id.is_empty() {
                    return Err(F("approver_id"));
                }
                if !p.validate() {
                    return Err(F("policy"));
                }
            }
            (None, _) => return Err(F("policy")),
            (Some(_), _) => return Err(F("policy")),
        }
        if !is_safe_text(&self.scope) || self.scope.len() > 1024 {
            return Err(F("scope"));
        }
        validate_binding_message(&self.binding_message, MAX_BINDING_MESSAGE_CHARS)
            .map_err(|_| F("binding_message"))?;
        validate_authorization_details(&self.authorization_details)
            .map_err(|_| F("authorization_details"))?;
        if self.expires_at <= self.requested_at {
            return Err(F("expires_at"));
        }
        if Decision::parse(&self.decision).is_none() {
            return Err(F("decision"));
        }
        Ok(())
    }

    /// The approvers who may decide: the policy's eligible approvers (version 2), or the one
    /// named approver (version 1).
    pub fn eligible_approvers(&self) -> Vec<&str> {
        match &self.policy {
            Some(p) => p.approvers.iter().map(String::as_str).collect(),
            None => std::vec![self.approver_id.as_str()],
        }
    }

    /// Whether `approver_id` may decide on this statement.
    pub fn is_eligible(&self, approver_id: &str) -> bool {
        match &self.policy {
            Some(p) => p.is_eligible(approver_id),
            None => self.approver_id == approver_id,
        }
    }

    /// Distinct approvals needed: the policy's quorum (version 2), else 1.
    pub fn quorum(&self) -> u64 {
        self.policy.as_ref().map_or(1, |p| p.quorum)
    }

    /// The decision as an enum.
    pub fn decision(&self) -> Result<Decision, StatementError> {
        Decision::parse(&self.decision).ok_or(StatementError::InvalidField("decision"))
    }

    /// The RFC 8785 canonical JSON bytes.
    pub fn canonical_json(&self) -> Result<Vec<u8>, StatementError> {
        self.validate()?;
        // The top-level members are fixed, so they are written in their RFC 8785 order directly
        // (member names are ASCII, so UTF-16 order is byte order; integers are at most 2^53 - 1
        // and print as JCS prints them; serde_json escapes strings exactly as RFC 8785 section
        // 3.2.2.2 does). Only the free-form authorization_details go through the canonicaliser.
        // This halves the cost of hashing a statement; `canonical_form_matches_the_canonicaliser`
        // holds it to the library's output.
        let m = |e: serde_json::Error| StatementError::Malformed(e.to_string());
        let mut out = Vec::with_capacity(512);
        let key = |out: &mut Vec<u8>, k: &str, first: bool| {
            out.extend_from_slice(if first { b"{\"" } else { b",\"" });
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
        };
        let text = |out: &mut Vec<u8>, v: &str| serde_json::to_writer(out, v).map_err(m);
        if self.policy.is_none() {
            key(&mut out, "approver_id", true);
            text(&mut out, &self.approver_id)?;
            key(&mut out, "authorization_details", false);
        } else {
            key(&mut out, "authorization_details", true);
        }
        out.extend_from_slice(&canonical_json(&self.authorization_details)?);
        key(&mut out, "binding_message", false);
        text(&mut out, &self.binding_message)?;
        key(&mut out, "client_id", false);
        text(&mut out, &self.client_id)?;
        key(&mut out, "decision", false);
        text(&mut out, &self.decision)?;
        key(&mut out, "expires_at", false);
        out.extend_from_slice(self.expires_at.to_string().as_bytes());
        key(&mut out, "log_origin", false);
        text(&mut out, &self.log_origin)?;
        if let Some(p) = &self.policy {
            key(&mut out, "policy", false);
            let v = serde_json::to_value(p).map_err(m)?;
            out.extend_from_slice(&canonical_json(&v)?);
        }
        key(&mut out, "request_id", false);
        text(&mut out, &self.request_id)?;
        key(&mut out, "requested_at", false);
        out.extend_from_slice(self.requested_at.to_string().as_bytes());
        key(&mut out, "scope", false);
        text(&mut out, &self.scope)?;
        key(&mut out, "version", false);
        out.extend_from_slice(self.version.to_string().as_bytes());
        out.push(b'}');
        Ok(out)
    }

    /// SHA-256 of the canonical JSON.
    pub fn hash(&self) -> Result<[u8; 32], StatementError> {
        Ok(sha256(&self.canonical_json()?))
    }
}

/// The RFC 8785 canonical JSON of any JSON value (used for the execution check).
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, StatementError> {
    if serde_json_writes_jcs(value) {
        // serde_json's objects are ordered maps: for these values its compact output is the
        // canonical form, an order of magnitude faster than the canonicaliser's
        // (`canonical_json_is_the_canonicalisers` holds the two equal).
        return serde_json::to_vec(value).map_err(|e| StatementError::Malformed(e.to_string()));
    }
    serde_json_canonicalizer::to_vec(value).map_err(|e| StatementError::Malformed(e.to_string()))
}

/// Whether serde_json's compact form of `v` is its RFC 8785 form: every number an integer of at
/// most 2^53 - 1 (printed alike; JCS prints other numbers as ECMAScript does), and every member
/// name below U+D800, where the byte order serde_json's map sorts by is the UTF-16 order JCS
/// sorts by. Strings are escaped alike (section 3.2.2.2).
fn serde_json_writes_jcs(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => {
            n.as_u64().is_some_and(|u| u <= MAX_SAFE_INTEGER)
                || n.as_i64()
                    .is_some_and(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER)
        }
        Value::Array(a) => a.iter().all(serde_json_writes_jcs),
        Value::Object(m) => m.iter().all(|(k, v)| {
            (k.is_ascii() || k.chars().all(|c| u32::from(c) < 0xD800)) && serde_json_writes_jcs(v)
        }),
    }
}

/// Whether no character of `s` is [unsafe to display](unsafe_display_class), printable ASCII
/// (the usual text) decided without decoding.
fn is_safe_text(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b)) || !s.chars().any(is_unsafe_display_char)
}

/// Whether every member name and string of `v` is [safe text](is_safe_text).
fn all_safe_text(v: &Value) -> bool {
    match v {
        Value::String(s) => is_safe_text(s),
        Value::Array(a) => a.iter().all(all_safe_text),
        Value::Object(m) => m.iter().all(|(k, v)| is_safe_text(k) && all_safe_text(v)),
        _ => true,
    }
}

/// Why a character is refused in text shown to the approver, or `None` when it is not:
/// control characters; the bidirectional formatting characters that make text display in another
/// order than it is stored ("Trojan Source", CVE-2021-42574); characters that display as nothing
/// (zero-width spaces and joiners, word joiner, byte-order mark, soft hyphen, invisible
/// operators, fillers), with which two member names or values look the same and differ; and tag
/// characters (U+E0000 to U+E007F), which carry hidden text.
pub fn unsafe_display_class(c: char) -> Option<&'static str> {
    if c.is_control() {
        return Some("a control character");
    }
    match c {
        '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => Some("a bidirectional formatting character"),
        '\u{00AD}'
        | '\u{034F}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{17B4}'
        | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1D173}'..='\u{1D17A}' => Some("an invisible (zero-width or formatting) character"),
        '\u{E0000}'..='\u{E007F}' => Some("a tag character"),
        _ => None,
    }
}

/// Whether a character is refused in text shown to the approver ([`unsafe_display_class`]).
pub fn is_unsafe_display_char(c: char) -> bool {
    unsafe_display_class(c).is_some()
}

/// A member name or string of `authorization_details` holding a character
/// [unsafe to display](unsafe_display_class).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsafeText {
    /// Where: `authorization_details[0].creditorAccount.iban` (names as written, unsafe
    /// characters shown as `\u{...}`).
    pub path: String,
    /// Whether the character is in the member's name (else in its value).
    pub in_name: bool,
    /// The character.
    pub ch: char,
    /// What kind of character it is.
    pub class: &'static str,
}

impl fmt::Display for UnsafeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} U+{:04X}, {}",
            self.path,
            if self.in_name {
                "has a name holding"
            } else {
                "holds"
            },
            self.ch as u32,
            self.class
        )
    }
}

/// A path element as shown in [`UnsafeText::path`]: unsafe characters escaped.
fn shown_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if is_unsafe_display_char(c) {
            out.push_str(&std::format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The first member name or string value in `v` (depth first, in member order) holding a
/// character [unsafe to display](unsafe_display_class); `root` names `v` in the path.
pub fn find_unsafe_text(v: &Value, root: &str) -> Option<UnsafeText> {
    // The usual answer, found without building a path for every member.
    if all_safe_text(v) {
        return None;
    }
    fn walk(v: &Value, path: &mut String) -> Option<UnsafeText> {
        match v {
            Value::String(s) => s.chars().find_map(|c| {
                unsafe_display_class(c).map(|class| UnsafeText {
                    path: path.clone(),
                    in_name: false,
                    ch: c,
                    class,
                })
            }),
            Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
                let len = path.len();
                path.push_str(&std::format!("[{i}]"));
                let found = walk(v, path);
                path.truncate(len);
                found
            }),
            Value::Object(m) => m.iter().find_map(|(k, v)| {
                let len = path.len();
                path.push('.');
                path.push_str(&shown_name(k));
                let found = k
                    .chars()
                    .find_map(|c| {
                        unsafe_display_class(c).map(|class| UnsafeText {
                            path: path.clone(),
                            in_name: true,
                            ch: c,
                            class,
                        })
                    })
                    .or_else(|| walk(v, path));
                path.truncate(len);
                found
            }),
            _ => None,
        }
    }
    walk(v, &mut String::from(root))
}

/// A binding message is short plain text: 1 to `max_chars` characters, none of them
/// [unsafe to display](is_unsafe_display_char) (CIBA section 7.1: it is shown on both devices,
/// so it must read the same on both).
/// Returns the reason when it is not.
pub fn validate_binding_message(s: &str, max_chars: usize) -> Result<(), &'static str> {
    let n = s.chars().count();
    if n == 0 {
        return Err("binding_message is empty");
    }
    if n > max_chars {
        return Err("binding_message is too long");
    }
    if !is_safe_text(s) {
        return Err("binding_message contains a control or bidirectional formatting character");
    }
    Ok(())
}

/// Parses JSON like `serde_json`, but refuses an object that names a member twice anywhere in
/// the document: RFC 8785 section 3.1 requires I-JSON (RFC 7493), and a signer and a verifier
/// that keep different copies of a duplicate would see different actions under one hash.
pub fn parse_json_strict(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(v) = Strict::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.into()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::Error;
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(A::Error::custom(std::format!("duplicate member {k:?}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// RFC 9396 section 2: a non-empty JSON array of objects, each with a string `type`; numbers
/// must be exact in an IEEE double (integers within +-(2^53 - 1)).
pub fn validate_authorization_details(v: &Value) -> Result<(), &'static str> {
    let Value::Array(items) = v else {
        return Err("authorization_details is not an array");
    };
    if items.is_empty() {
        return Err("authorization_details is empty");
    }
    for item in items {
        let Value::Object(obj) = item else {
            return Err("an authorization_details element is not an object");
        };
        match obj.get("type") {
            Some(Value::String(t)) if !t.is_empty() => {}
            _ => return Err("an authorization_details element has no string type"),
        }
    }
    // What the approver reads must be what is signed: no member name or string may hold a
    // character that displays as something else or as nothing (find_unsafe_text says where).
    if find_unsafe_text(v, "authorization_details").is_some() {
        return Err(
            "authorization_details holds a control, bidirectional formatting, invisible or tag \
             character",
        );
    }
    check_numbers(v)
}

fn check_numbers(v: &Value) -> Result<(), &'static str> {
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err("integer beyond 2^53 - 1");
                }
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err("integer beyond 2^53 - 1");
                }
            } else if !n.as_f64().is_some_and(f64::is_finite) {
                return Err("number is not finite");
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(check_numbers),
        Value::Object(o) => o.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Statement {
        Statement {
            version: 1,
            log_origin: "countersign.example/log".into(),
            request_id: "req_0123456789abcdef".into(),
            client_id: "agent-payments".into(),
            approver_id: "apv_alice".into(),
            policy: None,
            scope: "openid payments".into(),
            binding_message: "Pay 42.00 EUR to ACME".into(),
            authorization_details: serde_json::json!([{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"42.00"},"creditorName":"ACME"}]),
            requested_at: 1_700_000_000,
            expires_at: 1_700_000_300,
            decision: "approve".into(),
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_is_stable() {
        let s = sample();
        let c = String::from_utf8(s.canonical_json().unwrap()).unwrap();
        assert!(c.starts_with(r#"{"approver_id":"apv_alice","authorization_details":[{"creditorName":"ACME","instructedAmount":{"amount":"42.00","currency":"EUR"},"type":"payment_initiation"}],"binding_message""#), "{c}");
        let back = Statement::from_json(c.as_bytes()).unwrap();
        assert_eq!(back.hash().unwrap(), s.hash().unwrap());
    }

    #[test]
    fn canonical_form_matches_the_canonicaliser() {
        let mut odd = sample();
        odd.binding_message = "Pay \"ACME\" \\ 12 \u{20ac} \u{1f600} </script>".into();
        odd.scope = "openid payments".into();
        odd.log_origin = "example.com/log\u{e9}".into();
        odd.authorization_details = serde_json::json!([
            {"type": "x", "\u{fb33}": 1, "\u{1f600}": [1.5, -0.0, 1e21, "\"\\/<>\u{7e}\u{e9}"], "a": {"z": null, "b": true}}
        ]);
        odd.requested_at = MAX_SAFE_INTEGER - 1;
        odd.expires_at = MAX_SAFE_INTEGER;
        for s in [sample(), odd] {
            let library = serde_json_canonicalizer::to_vec(&s).unwrap();
            assert_eq!(
                String::from_utf8(s.canonical_json().unwrap()).unwrap(),
                String::from_utf8(library).unwrap()
            );
        }
    }

    #[test]
    fn authorization_details_refuse_what_displays_otherwise_or_not_at_all() {
        let cases: [(&str, Value, &str, bool); 6] = [
            (
                "bidi override in a value",
                serde_json::json!([{"type": "p", "iban": "DE89\u{202E}3704"}]),
                "authorization_details[0].iban",
                false,
            ),
            (
                "zero-width space in a name",
                serde_json::json!([{"type": "p", "amount\u{200B}": "1"}]),
                "authorization_details[0].amount\\u{200B}",
                true,
            ),
            (
                "word joiner",
                serde_json::json!([{"type": "p", "to": {"name": "AC\u{2060}ME"}}]),
                "authorization_details[0].to.name",
                false,
            ),
            (
                "byte-order mark",
                serde_json::json!([{"type": "\u{FEFF}p"}]),
                "authorization_details[0].type",
                false,
            ),
            (
                "tag character",
                serde_json::json!([{"type": "p", "x": ["ok", "a\u{E0041}"]}]),
                "authorization_details[0].x[1]",
                false,
            ),
            (
                "control character",
                serde_json::json!([{"type": "p", "memo": "a\u{1b}[2Jb"}]),
                "authorization_details[0].memo",
                false,
            ),
        ];
        for (what, details, path, in_name) in cases {
            let u = find_unsafe_text(&details, "authorization_details").expect(what);
            assert_eq!((u.path.as_str(), u.in_name), (path, in_name), "{what}");
            let mut s = sample();
            s.authorization_details = details;
            assert_eq!(
                s.validate(),
                Err(StatementError::InvalidField("authorization_details")),
                "{what}"
            );
        }
        let u = find_unsafe_text(&serde_json::json!({"iban": "DE\u{202E}89"}), "d").unwrap();
        assert_eq!(
            u.to_string(),
            "d.iban holds U+202E, a bidirectional formatting character"
        );
        // Letters of any script, emoji without joiners and ordinary punctuation stay allowed.
        let fine = serde_json::json!([{"type": "p", "name": "Ærø Ünïcødé 東京 \u{1f600}", "note": "a-b/c"}]);
        assert_eq!(find_unsafe_text(&fine, "authorization_details"), None);
        assert!(validate_binding_message("Pay\u{200B} 1 EUR", 64).is_err());
    }

    #[test]
    fn jcs_sorts_by_utf16_code_units() {
        // RFC 8785 section 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33.
        let v = serde_json::json!({"\u{fb33}": 1, "\u{1f600}": 2});
        let c = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert_eq!(c, "{\"\u{1f600}\":2,\"\u{fb33}\":1}");
        let n = serde_json::json!([1e21, 0.1, -0.0, 1e-7]);
        assert_eq!(
            String::from_utf8(canonical_json(&n).unwrap()).unwrap(),
            "[1e+21,0.1,0,1e-7]"
        );
    }

    #[test]
    fn rejects_duplicates_bidi_and_unsafe_integers() {
        let json = serde_json::to_string(&sample()).unwrap();
        let dup = json.replacen(
            r#""creditorName":"ACME""#,
            r#""creditorName":"ACME","creditorName":"EVIL""#,
            1,
        );
        assert_ne!(dup, json);
        assert!(
            matches!(Statement::from_json(dup.as_bytes()), Err(StatementError::Malformed(m)) if m.contains("duplicate"))
        );
        let mut s = sample();
        s.binding_message = "Pay \u{202E}00.24 EUR".into();
        assert_eq!(
            s.validate(),
            Err(StatementError::InvalidField("binding_message"))
        );
        let mut s = sample();
        s.expires_at = MAX_SAFE_INTEGER + 2;
        assert_eq!(
            s.validate(),
            Err(StatementError::InvalidField("expires_at"))
        );
        assert!(parse_json_strict(b"{} x").is_err());
        assert_eq!(
            parse_json_strict(b" [1, {\"a\": null}] ").unwrap(),
            serde_json::json!([1, {"a": null}])
        );
    }

    #[test]
    fn rejects_bad_statements() {
        let mut s = sample();
        s.decision = "maybe".into();
        assert_eq!(s.validate(), Err(StatementError::InvalidField("decision")));
        let mut s = sample();
        s.binding_message = "line1\nline2".into();
        assert!(s.validate().is_err());
        let mut s = sample();
        s.authorization_details = serde_json::json!([{"amount": 9007199254740993u64, "type":"x"}]);
        assert!(s.validate().is_err());
        let mut s = sample();
        s.authorization_details = serde_json::json!({"type":"x"});
        assert!(s.validate().is_err());
        let json = serde_json::to_string(&sample()).unwrap();
        let extra = json.replacen('{', "{\"extra\":1,", 1);
        assert!(Statement::from_json(extra.as_bytes()).is_err());
        let dup = json.replacen('{', "{\"decision\":\"deny\",", 1);
        assert!(Statement::from_json(dup.as_bytes()).is_err());
    }

    /// Any JSON value: names and strings from ASCII, the BMP above the surrogates and the
    /// supplementary planes (where byte and UTF-16 orders part), integers up to and past 2^53,
    /// and fractions.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text =
            "[a-z\\\"\u{1}\u{7f}\u{e9}\u{d7ff}\u{e000}\u{fb33}\u{ffff}\u{10000}\u{1f600}]{0,4}";
        // Few characters, so that names often differ where the two orders part.
        let name = "[a\\u{e9}\u{e000}\u{ffff}\u{10000}\u{1f600}]{1,2}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 54)..(1i64 << 54)).prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            text.prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(name, inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The serde_json shortcut of `canonical_json` gives the canonicaliser's bytes, and is
        /// taken only where it does.
        #[test]
        fn canonical_json_is_the_canonicalisers(v in any_json()) {
            let library = serde_json_canonicalizer::to_vec(&v).unwrap();
            proptest::prop_assert_eq!(canonical_json(&v).unwrap(), library);
        }

        /// The quick answer of `find_unsafe_text` is the walk's.
        #[test]
        fn unsafe_text_quick_answer_is_the_walks(v in any_json()) {
            let found = find_unsafe_text(&v, "authorization_details");
            let walk_finds = {
                fn any_unsafe(v: &Value) -> bool {
                    let bad = |s: &str| s.chars().any(is_unsafe_display_char);
                    match v {
                        Value::String(s) => bad(s),
                        Value::Array(a) => a.iter().any(any_unsafe),
                        Value::Object(m) => m.iter().any(|(k, v)| bad(k) || any_unsafe(v)),
                        _ => false,
                    }
                }
                any_unsafe(&v)
            };
            proptest::prop_assert_eq!(found.is_some(), walk_finds);
        }
    }
}

#[cfg(test)]
mod field_tests;
