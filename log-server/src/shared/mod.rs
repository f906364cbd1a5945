//! The shared driver (issue 21): the log on PostgreSQL and object storage, run by any number
//! of instances. PostgreSQL sequences entries and elects one integrator; the integrator turns
//! sequenced entries into tiles and entry bundles, writes them to the bucket create-only, and
//! publishes the signed checkpoint by compare-and-swap.

pub mod integrate;
pub mod kv;
pub mod log;
pub mod pg;
pub mod reads;
pub mod schema;
mod sequence;
pub mod witnessed;

pub use sequence::{Prefetched, Wants};

/// Bytes of tiles an instance keeps in memory (64 MiB: every tile of a tree of about 500,000
/// leaves, and the hot right edge of any tree).
pub const TILE_CACHE_BYTES: usize = 64 << 20;

pub use log::{IntegratorStatus, SharedConfig, SharedError, SharedLog};
