//! Benchmarks and the load generator (`countersign-bench`, whose workloads live in [`load`]).

pub mod load;
