//! The verifier's integration tests: public known-answer vectors, the project's generated
//! vectors, and property tests against an independent Merkle tree implementation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod known_answer;
mod properties;
mod vectors;

use std::path::PathBuf;

/// `testvectors/` at the workspace root.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testvectors")
}

pub fn load_json(rel: &str) -> serde_json::Value {
    let p = vectors_dir().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn hexs(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}
