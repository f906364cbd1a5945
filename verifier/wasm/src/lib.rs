#![doc = include_str!("../README.md")]
//!
//! Layering: this crate only wraps `countersign-verifier` (pure: no I/O, no clock); it adds the
//! JSON request format and the exported ABI, and checks nothing itself.

mod abi;
mod ops;

pub use abi::{alloc, answer_len, call, dealloc};
pub use ops::{handle, handle_bytes, MAX_REQUEST_BYTES};

#[cfg(test)]
mod tests;
