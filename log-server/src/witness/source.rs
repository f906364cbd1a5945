//! Where the witness client reads the log and keeps its records, on either driver: the
//! embedded store (one process sends to the witnesses and serves what they cosigned), or the
//! shared driver, where every instance runs the client but only the integrator sends to the
//! witnesses; its records are saved in the database, and every instance follows them (a
//! notification, and a read each interval) to serve the same cosigned checkpoint and, in quorum
//! mode, to release the appends and tokens waiting for it.

use countersign_verifier::Hash;
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::record::{self, Record};
use crate::error::StorageError;
use crate::proofs::ProofRequestError;
use crate::sequencer::Published;
use crate::shared::pg::Listener;
use crate::shared::SharedLog;
use crate::storage::Store;

/// The log as the witness client reads it (implemented by the log's handle, given without a
/// witness client of its own so that the client does not hold itself).
pub(crate) trait LogView: Send + Sync + 'static {
    /// The latest published checkpoint (as signed by the log, without cosignatures).
    fn published(&self) -> Published;
    /// Follows [`LogView::published`].
    fn changes(&self) -> Changes;
    /// The consistency proof between two published sizes.
    fn consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> BoxFuture<'_, Result<Vec<Hash>, ProofRequestError>>;
    /// The checkpoint the log signed at `size`, if any.
    fn checkpoint_at(&self, size: u64) -> BoxFuture<'_, Result<Option<String>, StorageError>>;
    /// The embedded store, on the embedded driver.
    fn store(&self) -> Option<&Store>;
    /// The shared driver's instance, on the shared driver.
    fn shared_log(&self) -> Option<&SharedLog>;
}

/// New checkpoints, from either driver.
pub(crate) enum Changes {
    Embedded(watch::Receiver<u64>),
    Shared(watch::Receiver<Published>),
}

impl Changes {
    /// Waits for a checkpoint newer than the one last marked seen; an error once the log is
    /// gone.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        match self {
            Changes::Embedded(rx) => rx.changed().await,
            Changes::Shared(rx) => rx.changed().await,
        }
    }

    /// Marks the latest checkpoint seen.
    pub fn mark_seen(&mut self) {
        match self {
            Changes::Embedded(rx) => {
                rx.borrow_and_update();
            }
            Changes::Shared(rx) => {
                rx.borrow_and_update();
            }
        }
    }
}

/// What the witness client does with the log beyond reading it: on either driver, where its
/// records are kept and whether this instance sends.
impl dyn LogView {
    /// Whether this instance sends checkpoints to the witnesses: always on the embedded store;
    /// on the shared driver, while it is the integrator.
    pub fn sends(&self) -> bool {
        self.shared_log().is_none_or(SharedLog::is_integrator)
    }

    /// The records of the witnesses with verifier keys `vkeys`, in that order (the default
    /// record for one that has none).
    pub async fn records(&self, vkeys: &[String]) -> Result<Vec<Record>, StorageError> {
        if let Some(store) = self.store() {
            return vkeys.iter().map(|k| record::load(store, k)).collect();
        }
        let Some(log) = self.shared_log() else {
            return Ok(vec![Record::default(); vkeys.len()]);
        };
        let all = log.witness_records().await?;
        vkeys
            .iter()
            .map(|k| match all.iter().find(|(v, _)| v == k) {
                None => Ok(Record::default()),
                Some((_, json)) => record::parse(k, json.as_bytes()),
            })
            .collect()
    }

    /// Saves the record of the witness `vkey` durably.
    pub async fn save(&self, vkey: &str, r: &Record) -> Result<(), StorageError> {
        if let Some(store) = self.store() {
            let (store, vkey, r) = (store.clone(), vkey.to_owned(), r.clone());
            return tokio::task::spawn_blocking(move || record::save(&store, &vkey, &r))
                .await
                .map_err(|e| StorageError::Corrupt(format!("record task: {e}")))?;
        }
        match self.shared_log() {
            Some(log) => {
                log.save_witness_record(vkey, &record::to_json(vkey, r)?)
                    .await
            }
            None => Err(StorageError::Corrupt("the log has no store".into())),
        }
    }

    /// On the shared driver, a listener for records saved by any instance.
    pub async fn listen(&self) -> Option<Result<Listener, StorageError>> {
        Some(self.shared_log()?.listen_witnessed().await)
    }
}
