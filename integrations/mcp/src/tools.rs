//! The three tools: their JSON Schemas (input and output) and the checks of their arguments,
//! made before anything is sent to the server.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::ciba::ApprovalRequest;

/// Seconds a call waits for the decision when `wait_seconds` is not given: under the 60-second
/// request timeout of common MCP clients.
pub const DEFAULT_WAIT_SECS: u64 = 30;
/// Longest wait one call may ask for; longer waits are `get_decision` calls in a loop.
pub const MAX_WAIT_SECS: u64 = 300;
/// Longest `requested_expiry` asked of the server (the server applies its own bounds too).
const MAX_EXPIRY_SECS: u64 = 86_400;
/// Longest approver hint and auth_req_id (the server's short-parameter bound).
const MAX_SHORT: usize = 1024;

fn object(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(o) => Arc::new(o),
        _ => Arc::new(Map::new()),
    }
}

fn decision_output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["approved", "denied", "expired", "pending"],
                "description": "Only \"approved\" allows the action; anything else means do not act."},
            "approved": {"type": "boolean", "description": "true exactly when status is approved"},
            "auth_req_id": {"type": "string", "description": "The request's id, for get_decision and verify_evidence"},
            "statement_sha256": {"type": ["string", "null"],
                "description": "SHA-256 (hex) of the statement the approver signed; known once decided, null while pending"},
            "log_index": {"type": ["integer", "null"], "description": "Index of the decision in the transparency log, once decided"},
            "access_token": {"type": ["string", "null"],
                "description": "The access token (JWT, EdDSA) approving exactly the authorization_details; approved only"},
            "evidence_url": {"type": ["string", "null"],
                "description": "Where this client fetches the evidence bundle (with its client credentials), once decided"},
            "message": {"type": "string"}
        },
        "required": ["status", "approved", "auth_req_id", "message"]
    })
}

fn wait_schema() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECS,
        "description": format!("Seconds to wait for the decision before answering pending (default {DEFAULT_WAIT_SECS}, at most {MAX_WAIT_SECS})")})
}

fn details_schema() -> Value {
    json!({"type": "array", "minItems": 1,
        "description": "RFC 9396 authorization details: the exact action, as the approver will see and sign it",
        "items": {"type": "object", "required": ["type"],
            "properties": {"type": {"type": "string", "minLength": 1}}}})
}

/// The tools, as `tools/list` shows them.
pub fn list() -> Vec<Tool> {
    let request_approval = Tool::new(
        "request_approval",
        "Ask a person to approve one exact action before you perform it. The approver sees the \
         binding message and the authorization_details and approves or denies with a passkey; \
         the decision is recorded in a transparency log. Waits up to wait_seconds, then answers \
         pending with an auth_req_id to pass to get_decision. Perform the action only when \
         status is \"approved\", and only the action in authorization_details.",
        object(json!({
            "type": "object",
            "properties": {
                "approver": {"type": "string", "minLength": 1, "maxLength": MAX_SHORT,
                    "description": "Who approves: an approver id (apv_...) or e-mail address known to the Countersign server"},
                "binding_message": {"type": "string", "minLength": 1,
                    "maxLength": countersign_verifier::MAX_BINDING_MESSAGE_CHARS,
                    "description": "A short human-readable summary shown to the approver (plain text)"},
                "authorization_details": details_schema(),
                "requested_expiry": {"type": "integer", "minimum": 1, "maximum": MAX_EXPIRY_SECS,
                    "description": "Seconds the approver has to decide (the server's bounds apply)"},
                "wait_seconds": wait_schema()
            },
            "required": ["approver", "binding_message", "authorization_details"],
            "additionalProperties": false
        })),
    )
    .with_title("Request approval")
    .with_raw_output_schema(object(decision_output_schema()))
    .with_annotations(ToolAnnotations::default().read_only(false).destructive(false).idempotent(false).open_world(true));
    let get_decision = Tool::new(
        "get_decision",
        "The decision on an earlier request_approval: waits up to wait_seconds, then answers \
         the current status. Perform the action only when status is \"approved\".",
        object(json!({
            "type": "object",
            "properties": {
                "auth_req_id": {"type": "string", "minLength": 1, "maxLength": MAX_SHORT,
                    "description": "The auth_req_id request_approval answered"},
                "wait_seconds": wait_schema(),
                "authorization_details": {
                    "type": "array", "minItems": 1,
                    "description": "The authorization_details of the request: needed only for a request this server process did not make (the token is checked against them)",
                    "items": {"type": "object"}}
            },
            "required": ["auth_req_id"],
            "additionalProperties": false
        })),
    )
    .with_title("Get decision")
    .with_raw_output_schema(object(decision_output_schema()))
    .with_annotations(ToolAnnotations::default().read_only(true).open_world(true));
    let verify_evidence = Tool::new(
        "verify_evidence",
        "Verify a Countersign evidence bundle offline with the verifier: the checkpoint \
         signature, the inclusion proofs, the statement hash and the approver's passkey \
         signature. Give the bundle (JSON) or the auth_req_id of a decided request of this \
         client (the bundle is then fetched). Answers valid or invalid with the reason.",
        object(json!({
            "type": "object",
            "properties": {
                "bundle": {"type": ["object", "string"],
                    "description": "An evidence bundle (spec/evidence-bundle.md), as JSON or as a JSON string"},
                "auth_req_id": {"type": "string", "minLength": 1, "maxLength": MAX_SHORT,
                    "description": "Fetch this request's bundle from the server, then verify it"}
            },
            "additionalProperties": false
        })),
    )
    .with_title("Verify evidence")
    .with_raw_output_schema(object(json!({
        "type": "object",
        "properties": {
            "valid": {"type": "boolean"},
            "reason": {"type": "string", "description": "Why the bundle is invalid"},
            "decision": {"type": "string", "enum": ["approve", "deny"]},
            "approved": {"type": "boolean"},
            "statement_sha256": {"type": "string"},
            "log_index": {"type": "integer"},
            "checked": {"type": "array", "items": {"type": "string"}},
            "log_key": {"type": "string"},
            "log_key_source": {"type": "string"},
            "rp_pinned": {"type": "boolean"}
        },
        "required": ["valid", "checked", "log_key", "rp_pinned"]
    })))
    .with_annotations(ToolAnnotations::default().read_only(true).open_world(true));
    vec![request_approval, get_decision, verify_evidence]
}

/// Arguments that cannot be sent, in words the agent can correct.
#[derive(Debug, PartialEq, Eq)]
pub struct BadArguments(pub String);

fn parse<T: for<'de> Deserialize<'de>>(args: Option<JsonObject>) -> Result<T, BadArguments> {
    serde_json::from_value(Value::Object(args.unwrap_or_default()))
        .map_err(|e| BadArguments(format!("invalid arguments: {e}")))
}

fn wait(w: Option<u64>) -> Result<u64, BadArguments> {
    match w {
        None => Ok(DEFAULT_WAIT_SECS),
        Some(w) if w <= MAX_WAIT_SECS => Ok(w),
        Some(_) => Err(BadArguments(format!(
            "wait_seconds must be at most {MAX_WAIT_SECS}; call get_decision again to wait longer"
        ))),
    }
}

fn short(name: &str, s: &str) -> Result<String, BadArguments> {
    let s = s.trim();
    if s.is_empty() || s.len() > MAX_SHORT || s.chars().any(char::is_control) {
        return Err(BadArguments(format!(
            "{name} must be 1 to {MAX_SHORT} bytes without control characters"
        )));
    }
    Ok(s.to_owned())
}

fn details(v: Value) -> Result<Value, BadArguments> {
    // An agent may pass the array as a JSON string.
    let v = match v {
        Value::String(s) => serde_json::from_str(&s).map_err(|_| {
            BadArguments("authorization_details must be a JSON array of objects".into())
        })?,
        v => v,
    };
    countersign_verifier::validate_authorization_details(&v)
        .map_err(|e| BadArguments(e.to_owned()))?;
    if let Some(u) = countersign_verifier::find_unsafe_text(&v, "authorization_details") {
        return Err(BadArguments(format!(
            "{u}: what the approver reads must be what is signed"
        )));
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    approver: String,
    binding_message: String,
    authorization_details: Value,
    requested_expiry: Option<u64>,
    wait_seconds: Option<u64>,
}

/// `request_approval`'s arguments: the request and the wait, in seconds.
pub fn request_approval(args: Option<JsonObject>) -> Result<(ApprovalRequest, u64), BadArguments> {
    let r: RawRequest = parse(args)?;
    let approver = short("approver", &r.approver)?;
    countersign_verifier::validate_binding_message(
        &r.binding_message,
        countersign_verifier::MAX_BINDING_MESSAGE_CHARS,
    )
    .map_err(|e| BadArguments(e.to_owned()))?;
    if let Some(e) = r.requested_expiry {
        if e == 0 || e > MAX_EXPIRY_SECS {
            return Err(BadArguments(format!(
                "requested_expiry must be 1 to {MAX_EXPIRY_SECS} seconds"
            )));
        }
    }
    Ok((
        ApprovalRequest {
            approver,
            binding_message: r.binding_message,
            authorization_details: details(r.authorization_details)?,
            requested_expiry: r.requested_expiry,
        },
        wait(r.wait_seconds)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGet {
    auth_req_id: String,
    wait_seconds: Option<u64>,
    authorization_details: Option<Value>,
}

/// `get_decision`'s arguments: the id, the wait, and the details to check the token against.
pub fn get_decision(
    args: Option<JsonObject>,
) -> Result<(String, u64, Option<Value>), BadArguments> {
    let r: RawGet = parse(args)?;
    Ok((
        short("auth_req_id", &r.auth_req_id)?,
        wait(r.wait_seconds)?,
        r.authorization_details.map(details).transpose()?,
    ))
}

/// Where `verify_evidence` gets its bundle.
#[derive(Debug, PartialEq)]
pub enum BundleSource {
    /// Given, as JSON bytes.
    Given(Vec<u8>),
    /// Fetched for this auth_req_id.
    Fetch(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    bundle: Option<Value>,
    auth_req_id: Option<String>,
}

/// `verify_evidence`'s arguments: exactly one of `bundle` and `auth_req_id`.
pub fn verify_evidence(args: Option<JsonObject>) -> Result<BundleSource, BadArguments> {
    let r: RawVerify = parse(args)?;
    match (r.bundle, r.auth_req_id) {
        (Some(Value::String(s)), None) => Ok(BundleSource::Given(s.into_bytes())),
        (Some(v @ Value::Object(_)), None) => Ok(BundleSource::Given(v.to_string().into_bytes())),
        (Some(_), None) => Err(BadArguments(
            "bundle must be the evidence bundle as a JSON object or a JSON string".into(),
        )),
        (None, Some(id)) => Ok(BundleSource::Fetch(short("auth_req_id", &id)?)),
        _ => Err(BadArguments(
            "give exactly one of bundle and auth_req_id".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Option<JsonObject> {
        match v {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    fn good() -> Value {
        json!({"approver": "apv_1", "binding_message": "Pay ACME 12.50 EUR",
            "authorization_details": [{"type": "payment", "amount": "12.50"}]})
    }

    #[test]
    fn a_valid_request_with_defaults() {
        let (r, w) = request_approval(obj(good())).unwrap();
        assert_eq!(w, DEFAULT_WAIT_SECS);
        assert_eq!(r.approver, "apv_1");
        assert_eq!(r.requested_expiry, None);
        let mut g = good();
        g["authorization_details"] = json!("[{\"type\":\"payment\"}]");
        g["wait_seconds"] = json!(0);
        g["requested_expiry"] = json!(30);
        let (r, w) = request_approval(obj(g)).unwrap();
        assert_eq!((w, r.requested_expiry), (0, Some(30)));
        assert_eq!(r.authorization_details, json!([{"type": "payment"}]));
    }

    #[test]
    fn bad_requests_are_refused_before_sending() {
        let cases: Vec<(&str, Value)> = vec![
            ("approver", json!("")),
            ("approver", json!("a\nb")),
            ("approver", json!(7)),
            ("binding_message", json!("")),
            ("binding_message", json!("pay\u{202e}ACME")),
            ("binding_message", json!("x".repeat(300))),
            ("authorization_details", json!([])),
            ("authorization_details", json!({"type": "payment"})),
            ("authorization_details", json!([{"amount": 1}])),
            (
                "authorization_details",
                json!([{"type": "pay", "to": "AC\u{200b}ME"}]),
            ),
            ("authorization_details", json!("not json")),
            ("requested_expiry", json!(0)),
            ("requested_expiry", json!(-5)),
            ("requested_expiry", json!(100_000)),
            ("wait_seconds", json!(MAX_WAIT_SECS + 1)),
            ("wait_seconds", json!(1.5)),
            ("surprise", json!(true)),
        ];
        for (field, value) in cases {
            let mut g = good();
            g[field] = value.clone();
            assert!(
                request_approval(obj(g)).is_err(),
                "{field} = {value} was accepted"
            );
        }
        for missing in ["approver", "binding_message", "authorization_details"] {
            let mut g = good();
            g.as_object_mut().unwrap().remove(missing);
            assert!(request_approval(obj(g)).is_err(), "without {missing}");
        }
        assert!(request_approval(None).is_err());
    }

    #[test]
    fn get_decision_arguments() {
        let (id, w, d) = get_decision(obj(json!({"auth_req_id": "abc"}))).unwrap();
        assert_eq!((id.as_str(), w, d), ("abc", DEFAULT_WAIT_SECS, None));
        let (_, w, d) = get_decision(obj(json!({"auth_req_id": "abc", "wait_seconds": 3,
            "authorization_details": [{"type": "t"}]})))
        .unwrap();
        assert_eq!((w, d), (3, Some(json!([{"type": "t"}]))));
        assert!(get_decision(obj(json!({}))).is_err());
        assert!(get_decision(obj(json!({"auth_req_id": ""}))).is_err());
        assert!(get_decision(obj(json!({"auth_req_id": "a", "wait_seconds": 301}))).is_err());
        assert!(get_decision(obj(
            json!({"auth_req_id": "a", "authorization_details": []})
        ))
        .is_err());
    }

    #[test]
    fn verify_evidence_takes_exactly_one_source() {
        assert_eq!(
            verify_evidence(obj(json!({"auth_req_id": "x"}))).unwrap(),
            BundleSource::Fetch("x".into())
        );
        assert_eq!(
            verify_evidence(obj(json!({"bundle": "{\"version\":1}"}))).unwrap(),
            BundleSource::Given(b"{\"version\":1}".to_vec())
        );
        assert!(matches!(
            verify_evidence(obj(json!({"bundle": {"version": 1}}))).unwrap(),
            BundleSource::Given(_)
        ));
        for bad in [
            json!({}),
            json!({"bundle": {}, "auth_req_id": "x"}),
            json!({"bundle": [1]}),
            json!({"auth_req_id": ""}),
        ] {
            assert!(verify_evidence(obj(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_tool_has_an_object_schema_for_input_and_output() {
        let tools = list();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(
            names,
            ["request_approval", "get_decision", "verify_evidence"]
        );
        for t in &tools {
            assert_eq!(t.input_schema["type"], "object", "{}", t.name);
            let out = t.output_schema.as_ref().unwrap();
            assert_eq!(out["type"], "object", "{}", t.name);
        }
    }
}
