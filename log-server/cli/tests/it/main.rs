//! Integration tests of the `countersign` binary and its composed app: whole CIBA flows (poll,
//! ping, push) over HTTP on loopback with software passkeys, every refusal path, and the crash
//! and restart tests that SIGKILL the real binary (the log's and the front end's).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod admin_api;
mod admin_cli;
mod attestation;
mod audit;
mod auth0_compat;
mod backup_offline;
mod cleanup_edges;
mod common;
mod delivery_owed;
mod enrolment_refusals;
mod errors;
mod evidence_access;
mod export;
/// The log crate's fake tlog-witness.
#[allow(dead_code)]
#[path = "../../../tests/support/fake_witness.rs"]
mod fake_witness;
#[path = "../../../tests/support/files.rs"]
mod files;
mod flood;
mod flow_load;
mod flows;
mod fuzz;
mod layering;
mod layout;
/// The log crate's test helpers (passkeys, signed decisions), for the log's crash test.
#[allow(dead_code)]
#[path = "../../../tests/it/common.rs"]
mod log_common;
mod log_crash;
mod monitor;
mod pages;
/// A fresh PostgreSQL database per test (the log crate's helper).
#[allow(dead_code)]
#[path = "../../../tests/support/pg.rs"]
mod pg_support;
mod policy;
mod policy_cmd;
mod powercut;
mod powercut_flows;
#[path = "../support/process.rs"]
mod process;
mod quorum;
mod requests_cli;
mod restart;
mod restore;
mod revocation;
/// The test S3 server's bucket, shared with the other test crate.
#[path = "../../../tests/support/s3.rs"]
mod s3_support;
mod shared_driver;
mod shared_witness;
mod shutdown;
mod startup;
mod storage_faults;
mod store;
mod tiles_mirror;
mod tls;
#[path = "../../../tests/support/web.rs"]
mod web;
mod witness;
/// The witness crate's test log (checkpoints and consistency proofs of a C2SP log).
#[allow(dead_code)]
#[path = "../../../witness/tests/support/testlog.rs"]
mod witness_log;
mod witnessing;
