//! Integration tests of the log server: one test binary, servers on ephemeral loopback ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod bad_input;
mod batch;
mod common;
mod crash;
mod dedup;
mod ops;
#[path = "../support/process.rs"]
mod process;
mod tiles;
#[path = "../support/web.rs"]
mod web;
