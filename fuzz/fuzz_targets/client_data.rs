//! clientDataJSON (WebAuthn L3 section 5.8.1): what parses is what a re-serialisation of the
//! checked members parses to, and the ceremony checks accept it for its own type, challenge and
//! origin exactly when it is unframed.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign_verifier::{AssertionError, ClientData};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(c) = ClientData::parse(data) else {
        return;
    };
    let mut m = Map::new();
    m.insert("type".into(), json!(c.type_));
    m.insert("challenge".into(), json!(c.challenge));
    m.insert("origin".into(), json!(c.origin));
    if let Some(x) = c.cross_origin {
        m.insert("crossOrigin".into(), json!(x));
    }
    if let Some(t) = &c.top_origin {
        m.insert("topOrigin".into(), json!(t));
    }
    let again = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
    if let Ok(c2) = ClientData::parse(&again) {
        assert_eq!(c2, c, "re-serialised clientDataJSON parses differently");
    }
    let Ok(challenge) = URL_SAFE_NO_PAD.decode(&c.challenge) else {
        return;
    };
    let framed = c.cross_origin == Some(true) || c.top_origin.is_some();
    match c.check(&c.type_, &challenge, &[c.origin.as_str()]) {
        Ok(()) => assert!(!framed),
        Err(AssertionError::CrossOrigin) => assert!(framed),
        Err(e) => panic!("own type, challenge and origin refused: {e}"),
    }
});
