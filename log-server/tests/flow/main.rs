//! Integration tests of the approval front end: whole CIBA flows (poll, ping, push) over HTTP on
//! loopback with software passkeys, and every refusal path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod errors;
mod flows;
mod fuzz;
#[path = "../support/process.rs"]
mod process;
mod restart;
mod store;
#[path = "../support/web.rs"]
mod web;
