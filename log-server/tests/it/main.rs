//! Integration tests of the log server: one test binary, servers on ephemeral loopback ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod bad_input;
mod batch;
mod common;
mod dedup;
/// The fake tlog-witness, shared with the binary's tests.
#[path = "../support/fake_witness.rs"]
mod fake_witness;
#[path = "../support/files.rs"]
mod files;
mod mirror;
mod ops;
mod pg;
/// A fresh PostgreSQL database per test, shared with other test crates.
#[path = "../support/pg.rs"]
mod pg_support;
mod reads;
mod revocation;
/// The test S3 server's bucket, shared with the other test crate.
#[path = "../support/s3.rs"]
mod s3_support;
mod shared;
mod shared_kv;
mod tiles;
/// Shared with the binary's tests, which use all of it.
#[allow(dead_code)]
#[path = "../support/web.rs"]
mod web;
mod witness;
