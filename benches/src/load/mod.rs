//! Workloads of `countersign-bench`: HTTP appends and reads against a running server, and the
//! in-process comparison of the log core with raw RocksDB and in-memory Merkle trees.

pub mod core;
pub mod flow;
pub mod flow_quorum;
pub mod http;
pub mod shared;
pub mod stats;
