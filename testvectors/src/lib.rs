//! Test support shared by the Countersign crates: a deterministic software passkey, and the
//! generator of the JSON vectors under `testvectors/` (run `cargo run -p
//! countersign-testvectors` to regenerate them; the output is byte-for-byte reproducible).

mod approval_policies;
pub mod archive;
pub mod attestation;
pub mod generate;
pub mod passkey;
pub mod quorum;

pub use passkey::{Alg, AssertOptions, AssertionParts, SoftPasskey};

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_vectors_match_the_generator() {
        let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        );
        let files = crate::generate::generate();
        assert!(files.len() > 150);
        for (rel, text) in files {
            let on_disk = std::fs::read_to_string(dir.join(&rel)).unwrap_or_default();
            assert!(
                on_disk == text,
                "{rel} is stale: run `cargo run -p countersign-testvectors` and commit the result"
            );
        }
    }
}
