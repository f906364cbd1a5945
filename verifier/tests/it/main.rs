//! The verifier's integration tests: public known-answer vectors, the project's generated
//! vectors, and property tests against an independent Merkle tree implementation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod attestation;
mod known_answer;
mod properties;
mod vectors;

use std::path::PathBuf;

/// `testvectors/` at the workspace root.
// The directory cargo gives at run time, not the one compiled in: a test binary built from
// another checkout sharing the target directory would otherwise read that checkout's files.
pub fn vectors_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../testvectors")
}

pub fn load_json(rel: &str) -> serde_json::Value {
    let p = vectors_dir().join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn hexs(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}
