//! Test support shared by the Countersign crates: a deterministic software passkey, and the
//! generator of the JSON vectors under `testvectors/` (run `cargo run -p
//! countersign-testvectors` to regenerate them; the output is byte-for-byte reproducible).

pub mod passkey;

pub use passkey::{Alg, AssertOptions, AssertionParts, SoftPasskey};
