//! What the witness client needs of the shared driver (`spec/shared-driver.md`, "Witnesses"):
//! the witnesses' records in the database, shared by every instance (only the integrator talks
//! to the witnesses; every instance serves what they cosigned), a notification when one
//! changes, and the cosigned checkpoint put in the bucket so that readers of the bucket alone
//! get the cosignatures too.

use countersign_verifier::verify_checkpoint;

use super::log::{db_storage, SharedLog};
use super::pg::Listener;
use crate::bucket::MirrorError;
use crate::error::StorageError;

/// Channel notified (payload: the witness's verifier key) when a witness record is saved.
pub const WITNESSED: &str = "countersign_witnessed";

impl SharedLog {
    /// Whether this instance holds the integrator lease now (and so talks to the witnesses).
    pub fn is_integrator(&self) -> bool {
        self.status().borrow().leader
    }

    /// Every witness record: (verifier key, record JSON).
    pub(crate) async fn witness_records(&self) -> Result<Vec<(String, String)>, StorageError> {
        let c = self.db().client().await.map_err(db_storage)?;
        let rows = c
            .query("SELECT vkey, record FROM witness_records", &[])
            .await
            .map_err(db_storage)?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Saves the record of the witness `vkey` and tells every instance.
    pub(crate) async fn save_witness_record(
        &self,
        vkey: &str,
        record: &str,
    ) -> Result<(), StorageError> {
        let c = self.db().client().await.map_err(db_storage)?;
        c.execute(
            "INSERT INTO witness_records (vkey, record) VALUES ($1, $2) \
             ON CONFLICT (vkey) DO UPDATE SET record = excluded.record, updated_at = now()",
            &[&vkey, &record],
        )
        .await
        .map_err(db_storage)?;
        // A lost notification costs a second: every instance also reads the records each
        // interval.
        let _ = super::pg::notify(&c, WITNESSED, vkey).await;
        Ok(())
    }

    /// Adds the record of the witness `vkey` (JSON, as the embedded store keeps it) unless the
    /// database has one: a moved log's records (`countersign migrate`). Whether it was added.
    pub async fn import_witness_record(
        &self,
        vkey: &str,
        record: &str,
    ) -> Result<bool, StorageError> {
        let c = self.db().client().await.map_err(db_storage)?;
        let n = c
            .execute(
                "INSERT INTO witness_records (vkey, record) VALUES ($1, $2) \
                 ON CONFLICT (vkey) DO NOTHING",
                &[&vkey, &record],
            )
            .await
            .map_err(db_storage)?;
        Ok(n == 1)
    }

    /// Listens for saved witness records.
    pub(crate) async fn listen_witnessed(&self) -> Result<Listener, StorageError> {
        self.db().listen(WITNESSED).await.map_err(db_storage)
    }

    /// Puts `note` (this log's checkpoint with the cosignatures gathered for it) in the bucket
    /// in place of the checkpoint there, only if that is the same checkpoint with fewer
    /// signatures, and only by compare-and-swap on the version read: the checkpoint in the
    /// bucket never goes back, whatever the integrator published meanwhile. Whether it was put.
    /// A directory (no compare-and-swap) keeps the log's own checkpoint.
    pub(crate) async fn publish_cosigned(&self, note: &str) -> Result<Cosigned, MirrorError> {
        let bucket = self.bucket();
        if !bucket.compare_and_swap() {
            return Ok(Cosigned::NotNeeded);
        }
        let key = self.signer().verifier_key();
        let ours = verify_checkpoint(note.as_bytes(), key, &[])
            .map_err(|e| MirrorError::Log(format!("cosigned checkpoint: {e}")))?;
        let Some((bytes, version)) = bucket.checkpoint().await? else {
            return Ok(Cosigned::NotNeeded);
        };
        // What is there is checked by the integrator before it writes over it; here it only
        // has to be the same tree, signed by this log, with fewer lines than ours.
        let Ok(there) = verify_checkpoint(&bytes, key, &[]) else {
            return Ok(Cosigned::NotNeeded);
        };
        if there.checkpoint.size != ours.checkpoint.size
            || there.checkpoint.root != ours.checkpoint.root
            || bytes.len() >= note.len()
        {
            return Ok(Cosigned::NotNeeded);
        }
        Ok(match bucket.put_checkpoint(note, Some(version)).await? {
            Some(_) => Cosigned::Put,
            None => Cosigned::Raced,
        })
    }
}

/// What [`SharedLog::publish_cosigned`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cosigned {
    /// The cosigned checkpoint replaced the bucket's.
    Put,
    /// Nothing to do: the bucket holds another checkpoint, or this one with as many lines.
    NotNeeded,
    /// The bucket's checkpoint changed between the read and the write: read it again.
    Raced,
}
