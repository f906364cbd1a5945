//! TEMPORARY shim for the exporter branch; replaced by the audit-server branch's module.
#![allow(missing_docs, clippy::missing_errors_doc)]
use countersign_log::storage::{StorageError, Store};
use countersign_verifier::export::EventRow;
use countersign_verifier::Statement;

use crate::store::CibaStore;

pub struct StatementItem {
    pub index: u64,
    pub statement: Statement,
    pub token_issued_at_ms: Option<u64>,
}

pub fn statements(
    _s: &CibaStore,
    _from: u64,
    _to: u64,
    _limit: usize,
) -> Result<Vec<StatementItem>, StorageError> {
    Err(StorageError::Missing("shim".into()))
}

pub fn events_after(
    _s: &CibaStore,
    _after: Option<u64>,
    _limit: usize,
) -> Result<(Vec<EventRow>, u64), StorageError> {
    Err(StorageError::Missing("shim".into()))
}

pub fn open_offline(_dir: &std::path::Path) -> Result<(Store, CibaStore), StorageError> {
    Err(StorageError::Missing("shim".into()))
}
