//! The operations, in safe Rust: one JSON request in, one JSON answer out, never a panic.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_verifier::{
    bundle_report, leaf_hash, parse_json_strict, verify_checkpoint, verify_inclusion, BundlePolicy,
    Entry, EvidenceBundle, Expectation, Hash, Note, VerifierKey,
};
use serde_json::{json, Map, Value};

/// The largest request accepted, in bytes: a bundle is at most 512 KiB, so anything near this is
/// not a valid request, and refusing it bounds the memory a page can make the module take.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A request that cannot be answered (malformed, unknown op, a missing or mistyped member): the
/// answer is `{"valid": null, "error": ...}`, as `countersign-verify --json` prints a usage error.
struct RequestError(String);

type Answer = Result<Value, RequestError>;

/// Answers one request, `{"op": ..., ...}` (see the README for each op's members), with one JSON
/// object: `{"valid": true, ...}` when what was given verifies, `{"valid": false, "check": ...,
/// "error": ...}` when it does not, `{"valid": null, "error": ...}` when the request itself is
/// not one this module can answer (larger than [`MAX_REQUEST_BYTES`], not JSON, an unknown op, a
/// member missing or of the wrong type, a malformed key).
pub fn handle(request: &str) -> String {
    handle_bytes(request.as_bytes())
}

/// [`handle`] for a request as bytes, which must be UTF-8 JSON.
pub fn handle_bytes(request: &[u8]) -> String {
    if request.len() > MAX_REQUEST_BYTES {
        return too_large();
    }
    match dispatch(request) {
        Ok(v) => v.to_string(),
        Err(RequestError(e)) => json!({"valid": null, "error": e}).to_string(),
    }
}

/// The answer to a request larger than [`MAX_REQUEST_BYTES`].
pub(crate) fn too_large() -> String {
    json!({"valid": null, "error": format!("request is larger than {MAX_REQUEST_BYTES} bytes (4 MiB)")})
        .to_string()
}

fn dispatch(request: &[u8]) -> Answer {
    // Strict, like the CLI's inputs: a bundle given as an object with a member named twice must
    // be refused, not read with whichever copy a lenient parser keeps.
    let v = parse_json_strict(request)
        .map_err(|e| RequestError(format!("request is not valid JSON: {e}")))?;
    let Value::Object(req) = v else {
        return Err(RequestError("request is not a JSON object".into()));
    };
    match str_member(&req, "op")? {
        "verify_bundle" => verify_bundle(&req),
        "verify_checkpoint" => checkpoint(&req),
        "verify_inclusion" => inclusion(&req),
        "decode_entry" => decode_entry(&req),
        other => Err(RequestError(format!(
            "unknown op {other:?} (one of verify_bundle, verify_checkpoint, verify_inclusion, \
             decode_entry)"
        ))),
    }
}

fn invalid(check: &str, error: impl ToString) -> Value {
    json!({"valid": false, "check": check, "error": error.to_string()})
}

fn member<'a>(req: &'a Map<String, Value>, name: &str) -> Result<&'a Value, RequestError> {
    req.get(name)
        .ok_or_else(|| RequestError(format!("missing member {name:?}")))
}

fn str_member<'a>(req: &'a Map<String, Value>, name: &str) -> Result<&'a str, RequestError> {
    member(req, name)?
        .as_str()
        .ok_or_else(|| RequestError(format!("member {name:?} is not a string")))
}

fn opt_str<'a>(req: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, RequestError> {
    match req.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => str_member(req, name).map(Some),
    }
}

fn u64_member(req: &Map<String, Value>, name: &str) -> Result<u64, RequestError> {
    member(req, name)?
        .as_u64()
        .ok_or_else(|| RequestError(format!("member {name:?} is not a non-negative integer")))
}

fn vkey(name: &str, s: &str) -> Result<VerifierKey, RequestError> {
    VerifierKey::parse(s).map_err(|e| RequestError(format!("{name}: {e}")))
}

/// `witnesses`: an optional array of verifier keys.
fn witnesses(req: &Map<String, Value>) -> Result<Vec<VerifierKey>, RequestError> {
    match req.get("witnesses") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(keys)) => keys
            .iter()
            .map(|k| match k {
                Value::String(s) => vkey("witnesses", s),
                _ => Err(RequestError("witnesses holds a non-string".into())),
            })
            .collect(),
        Some(_) => Err(RequestError("member \"witnesses\" is not an array".into())),
    }
}

fn hash(name: &str, s: &str) -> Result<Hash, RequestError> {
    Hash::from_hex(s).ok_or_else(|| RequestError(format!("{name}: not 64 hex digits")))
}

/// The entry bytes of `entry` (base64) or `entry_hex`.
fn entry_bytes(req: &Map<String, Value>) -> Result<Option<Vec<u8>>, RequestError> {
    match (opt_str(req, "entry")?, opt_str(req, "entry_hex")?) {
        (Some(_), Some(_)) => Err(RequestError("give entry or entry_hex, not both".into())),
        (Some(b), None) => B64
            .decode(b)
            .map(Some)
            .map_err(|e| RequestError(format!("entry: not standard base64 ({e})"))),
        (None, Some(h)) => hex::decode(h)
            .map(Some)
            .map_err(|e| RequestError(format!("entry_hex: not hex ({e})"))),
        (None, None) => Ok(None),
    }
}

/// `spec/evidence-bundle.md` B4 and B13 to B15: the verdict of `countersign-verify --json bundle`.
fn verify_bundle(req: &Map<String, Value>) -> Answer {
    let log_key = vkey("log_key", str_member(req, "log_key")?)?;
    let witnesses = witnesses(req)?;
    let expect = match opt_str(req, "expect")? {
        None => Expectation::default(),
        Some(e) => Expectation::parse(e).map_err(|e| RequestError(format!("expect: {e}")))?,
    };
    // Decisions require UV, so a check does too unless the caller says otherwise.
    let require_user_verification = match req.get("require_uv") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(RequestError(
                "member \"require_uv\" is not a boolean".into(),
            ))
        }
    };
    // The bundle as its JSON text (verified exactly as a file would be), or as a JSON object
    // (already parsed strictly with the request).
    let text = match member(req, "bundle")? {
        Value::String(s) => s.clone(),
        v @ Value::Object(_) => v.to_string(),
        _ => {
            return Err(RequestError(
                "member \"bundle\" is neither a string nor an object".into(),
            ))
        }
    };
    let rp_id = opt_str(req, "rp_id")?;
    let origin = opt_str(req, "origin")?;
    let trust_bundle_rp = match req.get("trust_bundle_rp") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(RequestError(
                "member \"trust_bundle_rp\" is not a boolean".into(),
            ))
        }
    };
    // As `countersign-verify bundle`: a bundle names its own relying party, so the caller pins
    // one, or says in so many words that the bundle's is trusted.
    match (rp_id.is_some() || origin.is_some(), trust_bundle_rp) {
        (false, false) => {
            return Err(RequestError(
                "give rp_id and/or origin (the relying party the approval must be for), or \
                 trust_bundle_rp: true to accept the one the bundle names"
                    .into(),
            ))
        }
        (true, true) => {
            return Err(RequestError(
                "trust_bundle_rp cannot be combined with rp_id or origin".into(),
            ))
        }
        _ => {}
    }
    let policy = BundlePolicy {
        witnesses: &witnesses,
        rp_id,
        origin,
        require_user_verification,
    };
    let bundle = match EvidenceBundle::from_json(text.as_bytes()) {
        Ok(b) => b,
        Err(e) => return Ok(invalid("bundle", e)),
    };
    Ok(match bundle.verify(&log_key, &policy) {
        Ok(v) => {
            let mut r = bundle_report(&bundle, &v, expect);
            r["rp_pinned"] = Value::Bool(!trust_bundle_rp);
            r
        }
        Err(e) => invalid("bundle", e),
    })
}

/// `spec/checkpoint.md` C11: the checkpoint, and every signature line with whether it verified.
fn checkpoint(req: &Map<String, Value>) -> Answer {
    let log_key = vkey("log_key", str_member(req, "log_key")?)?;
    let witnesses = witnesses(req)?;
    let text = str_member(req, "note")?;
    let note = match Note::parse(text.as_bytes()) {
        Ok(n) => n,
        Err(e) => return Ok(invalid("checkpoint", e)),
    };
    let cp = match verify_checkpoint(text.as_bytes(), &log_key, &witnesses) {
        Ok(c) => c,
        Err(e) => return Ok(invalid("checkpoint", e)),
    };
    // Lines of keys not given are ignored by the verification (C2SP signed-note): reported as
    // unverified, never as cosignatures.
    let signatures: Vec<Value> = note
        .signatures()
        .iter()
        .map(|s| {
            let same = |k: &VerifierKey| k.name() == s.name && k.id() == s.key_id;
            let cosigned = cp.cosignatures.iter().find(|c| same(&c.key));
            json!({
                "name": s.name,
                "key_id": format!("{:08x}", s.key_id),
                "verified": same(&log_key) || cosigned.is_some(),
                "role": if same(&log_key) { "log" } else if cosigned.is_some() { "witness" } else { "unknown key" },
                "timestamp": cosigned.and_then(|c| c.timestamp),
            })
        })
        .collect();
    let c = &cp.checkpoint;
    Ok(json!({
        "valid": true,
        "origin": c.origin,
        "size": c.size,
        "root": c.root.to_hex(),
        "extensions": c.extensions,
        "signatures": signatures,
    }))
}

/// RFC 9162 section 2.1.3.2: does the leaf lead through the proof to the root?
fn inclusion(req: &Map<String, Value>) -> Answer {
    let leaf = match (entry_bytes(req)?, opt_str(req, "leaf_hash")?) {
        (Some(_), Some(_)) => {
            return Err(RequestError(
                "give the entry or its leaf_hash, not both".into(),
            ))
        }
        (Some(e), None) => leaf_hash(&e),
        (None, Some(h)) => hash("leaf_hash", h)?,
        (None, None) => {
            return Err(RequestError(
                "missing member \"entry\" (or \"entry_hex\", \"leaf_hash\")".into(),
            ))
        }
    };
    let index = u64_member(req, "index")?;
    let size = u64_member(req, "size")?;
    let root = hash("root", str_member(req, "root")?)?;
    let proof = match member(req, "proof")? {
        Value::Array(p) => p
            .iter()
            .map(|h| match h {
                Value::String(s) => hash("proof", s),
                _ => Err(RequestError("proof holds a non-string".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(RequestError("member \"proof\" is not an array".into())),
    };
    Ok(match verify_inclusion(&leaf, index, size, &proof, &root) {
        Ok(()) => {
            json!({"valid": true, "leaf_hash": leaf.to_hex(), "index": index, "size": size, "root": root.to_hex()})
        }
        Err(e) => {
            let mut v = invalid("inclusion", e);
            v["leaf_hash"] = json!(leaf.to_hex());
            v
        }
    })
}

/// `spec/entry.md`: the entry decoded, with its RFC 6962 leaf hash.
fn decode_entry(req: &Map<String, Value>) -> Answer {
    let bytes = entry_bytes(req)?
        .ok_or_else(|| RequestError("missing member \"entry\" (or \"entry_hex\")".into()))?;
    let leaf = leaf_hash(&bytes).to_hex();
    Ok(match Entry::decode(&bytes) {
        Ok(e) => {
            json!({"valid": true, "kind": e.kind_name(), "leaf_hash": leaf, "fields": e.to_json()})
        }
        Err(e) => {
            let mut v = invalid("entry", e);
            v["leaf_hash"] = json!(leaf);
            v
        }
    })
}
