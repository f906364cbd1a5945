//! Statement JSON (`spec/statement.md`): strict parsing (no duplicate or unknown members) and
//! the rules; a valid statement's RFC 8785 canonical form parses back to the same statement and
//! is a fixed point, and its hash is the SHA-256 of that form. Numbers in
//! `authorization_details` are compared as the IEEE doubles JCS makes of them (`1e0` and `1` are
//! one number, by design: `check_execution` ignores number spelling), which is exact because the
//! rules refuse integers beyond 2^53 - 1.
#![no_main]

use countersign_verifier::{sha256, Statement};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// JSON equality with numbers compared by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Statement::from_json(data) else {
        return;
    };
    let canonical = match s.canonical_json() {
        Ok(c) => c,
        Err(e) => panic!("a valid statement has no canonical form: {e}"),
    };
    let mut again = match Statement::from_json(&canonical) {
        Ok(a) => a,
        Err(e) => panic!("the canonical form of a valid statement is refused: {e}"),
    };
    assert!(
        same(&again.authorization_details, &s.authorization_details),
        "the canonical form has other authorization_details"
    );
    again.authorization_details = s.authorization_details.clone();
    assert_eq!(again, s, "the canonical form parses to another statement");
    assert_eq!(again.canonical_json().ok(), Some(canonical.clone()));
    assert_eq!(s.hash().ok(), Some(sha256(&canonical)));
    assert!(s.decision().is_ok());
});
