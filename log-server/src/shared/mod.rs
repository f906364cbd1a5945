//! The shared driver (issue 21): the log on PostgreSQL and object storage, run by any number
//! of instances. PostgreSQL sequences entries and elects one integrator; the integrator turns
//! sequenced entries into tiles and entry bundles, writes them to the bucket create-only, and
//! publishes the signed checkpoint by compare-and-swap.

pub mod integrate;
pub mod pg;
pub mod reads;
