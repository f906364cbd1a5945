//! Countersign's transparency log: a durable RFC 6962 log on RocksDB with C2SP signed
//! checkpoints and tiles.
//!
//! Layer: the log. It builds on `countersign-verifier` for every hash, proof, note, checkpoint,
//! entry encoding and WebAuthn check, and may use storage (RocksDB), tokio and, in [`http`]
//! only, axum. It knows nothing of CIBA, OAuth, passkey ceremonies or pages: the approval front
//! end (`countersign-approvals`) is built on its public API, never the reverse.
//!
//! Where things live: [`storage`] (the RocksDB store, the node cache and the key-value areas
//! other crates open by column-family name), [`sequencer`] (the single writer), [`log`] (the
//! [`LogHandle`], the only front door for appends and reads against one published tree size),
//! [`signer`], [`proofs`], [`tiles`], [`submitters`], [`witness`] (the witness client),
//! [`metrics`], [`error`] (typed errors),
//! [`init`] (start), [`backup`], [`datadir`] (its files), and [`http`] (the log's router, the one
//! `ApiError` and the shared extractors).

pub mod backup;
pub mod bucket;
pub mod datadir;
pub mod error;
pub mod http;
pub mod init;
pub mod log;
pub mod metrics;
pub mod mirror;
pub mod proofs;
pub mod sequencer;
pub mod shared;
pub mod signer;
pub mod storage;
pub mod submitters;
pub mod tiles;
pub mod witness;

pub use backup::{backup_offline, backup_store};
pub use datadir::{ADMIN_TOKEN_FILE, DB_DIR, DEFAULT_ORIGIN, KEY_FILE, VKEY_FILE};
pub use error::{AppendError, InitError, RefusalReason, StorageError};
pub use http::{
    router, serve, serve_tls, serve_with, ApiError, LogApi, MetricsSource, ServeLimits,
    DEFAULT_MAX_BODY_BYTES, MAX_BATCH_DECISIONS,
};
pub use init::{start, start_shared, Config, Started};
pub use log::{DecisionRequest, EnrolmentRequest, LogHandle, RevocationRequest, RpPolicy};
pub use sequencer::{now_ms, Appended, Published, SequencerConfig};
pub use witness::{WitnessConfig, WitnessConfigError, WitnessMode, Witnessing};
