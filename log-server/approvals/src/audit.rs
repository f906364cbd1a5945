//! The audit trail's reading side, as plain Rust over a [`CibaStore`]: the decisions that have an
//! evidence record ([`statements`]) and the audit events in the order the server recorded them
//! ([`events_after`]). The HTTP feed (`GET /v1/audit/statements`, `GET /v1/audit/events`) and
//! the offline exporter (`countersign export`, on a stopped server's data directory or a backup
//! opened with [`open_data_dir`]) both read through these functions, so they see the same rows.
//!
//! What is recorded where is [`crate::store`]'s key table: evidence records under `E/`, events
//! under `A/<seq>`, each written in the batch of the state change it reports; the
//! clean-up ([`crate::cleanup`]) removes both after the evidence retention.

use std::path::Path;

use base64::Engine;
use countersign_log::storage::{StorageError, Store};
use countersign_log::LogHandle;
use countersign_verifier::export::{event_row_of, log_event_row, rfc3339_ms, EventRow, RowError};
use countersign_verifier::{Entry, Statement};
use serde::Serialize;

use crate::store::{CibaStore, EvidenceRecord, AUDIT_PREFIX, CF_CIBA};

/// One decision with an evidence record: a line of the export's `statements.jsonl` (X5), with
/// when its tokens were handed out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatementItem {
    /// The decision entry's leaf index.
    pub index: u64,
    /// The decided statement (`spec/statement.md`).
    pub statement: Statement,
    /// When the tokens of an approval were handed out (RFC 3339 UTC with milliseconds), or
    /// `None` if they were not (or it was a denial).
    pub token_issued_at: Option<String>,
}

/// The decisions with an evidence record whose index is in `[from_index, to_index)`,
/// ascending, at most `limit`. A decision without one (removed after the evidence retention,
/// or submitted to the log directly) is simply not there.
pub fn statements(
    store: &CibaStore,
    from_index: u64,
    to_index: u64,
    limit: usize,
) -> Result<Vec<StatementItem>, StorageError> {
    Ok(evidence_records(store, from_index, to_index, limit)?
        .into_iter()
        .map(|e| StatementItem {
            index: e.decision_index,
            token_issued_at: e.token_issued_at_ms.map(rfc3339_ms),
            statement: e.statement,
        })
        .collect())
}

/// The evidence records whose decision index is in `[from_index, to_index)`, ascending, at most
/// `limit` (the exporter's `--bundles` and request-level detail).
pub fn evidence_records(
    store: &CibaStore,
    from_index: u64,
    to_index: u64,
    limit: usize,
) -> Result<Vec<EvidenceRecord>, StorageError> {
    if from_index >= to_index {
        return Ok(Vec::new());
    }
    let start = CibaStore::evidence_key(from_index);
    let end = CibaStore::evidence_key(to_index);
    store
        .scan_range_blocking(start.as_bytes(), Some(end.as_bytes()), limit)?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| StorageError::Corrupt(format!("evidence record {k}: {e}")))
        })
        .collect()
}

/// The evidence record of the decision at `index`.
pub fn evidence(store: &CibaStore, index: u64) -> Result<Option<EvidenceRecord>, StorageError> {
    store.get_blocking(&CibaStore::evidence_key(index))
}

/// The evidence record of the request with public id `request_id`, if it was decided.
pub async fn evidence_by_request_id(
    store: &CibaStore,
    request_id: &str,
) -> Result<Option<EvidenceRecord>, StorageError> {
    store
        .evidence_via(&CibaStore::evidence_by_request_key(request_id))
        .await
}

/// The audit events recorded after seq `after` (from the first with `None`), in the order
/// recorded, at most `limit`, and the seq to continue after: the last one returned, or `after`
/// (0 for `None`) when there is nothing new. Seqs start at 1 and only grow, also across
/// restarts; events removed by the retention leave the seqs of the others as they were.
/// Events are written so that a reader never sees one before every lower seq that will ever
/// appear ([`CibaStore::commit_with_events`]): paging on never loses or repeats one.
pub fn events_after(
    store: &CibaStore,
    after: Option<u64>,
    limit: usize,
) -> Result<(Vec<EventRow>, u64), StorageError> {
    let after = after.unwrap_or(0);
    let Some(first) = after.checked_add(1) else {
        return Ok((Vec::new(), after));
    };
    let start = CibaStore::audit_key(first);
    let end = countersign_log::storage::kv::prefix_end(AUDIT_PREFIX.as_bytes());
    let mut next = after;
    let mut rows = Vec::new();
    for (k, v) in store.scan_range_blocking(start.as_bytes(), end.as_deref(), limit)? {
        next = seq_of(&k).ok_or_else(|| StorageError::Corrupt(format!("audit key {k}")))?;
        rows.push(
            serde_json::from_slice(&v)
                .map_err(|e| StorageError::Corrupt(format!("audit event {k}: {e}")))?,
        );
    }
    Ok((rows, next))
}

/// The seq of an `A/` key.
pub(crate) fn seq_of(key: &str) -> Option<u64> {
    u64::from_str_radix(key.strip_prefix(AUDIT_PREFIX)?, 16).ok()
}

/// The opaque feed cursor of seq `seq` (base64url of its 8 big-endian bytes, no padding).
pub fn encode_cursor(seq: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seq.to_be_bytes())
}

/// The seq of a feed cursor made by [`encode_cursor`]; `None` for anything else.
pub fn decode_cursor(cursor: &str) -> Option<u64> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// The log event row of the entry at `index` of the log in `log` (with its statement for a
/// decision, checked against the entry), or `None` (logged) if it cannot be made: the state
/// change it reports is recorded all the same, and the row can be made again from the log.
pub fn log_entry_event(
    log: &LogHandle,
    index: u64,
    statement: Option<&Statement>,
) -> Option<EventRow> {
    let entry = stored_entry(log, index)?;
    log_event_row(index, &entry, statement)
        .map_err(|e| tracing::error!(index, error = %e, "the entry's audit event"))
        .ok()
}

/// [`log_entry_event`] of an entry this server just appended (`a`): its leaf hash is the
/// append's and, for a decision, `statement` is the one whose hash the server put in the entry,
/// so neither is computed again. The entry is read back for what the log set in it (its time).
pub async fn appended_event(
    log: &LogHandle,
    a: &countersign_log::Appended,
    statement: Option<&Statement>,
) -> Option<EventRow> {
    let entry = stored_entry_of(a.index, log.entry(a.index).await)?;
    let row = Entry::decode(&entry)
        .map_err(RowError::Entry)
        .and_then(|e| event_row_of(a.index, &a.leaf_hash, &e, statement));
    row.map_err(|e| tracing::error!(index = a.index, error = %e, "the entry's audit event"))
        .ok()
}

fn stored_entry(log: &LogHandle, index: u64) -> Option<Vec<u8>> {
    stored_entry_of(index, crate::util::wait(log.entry(index)))
}

/// The entry at `index` from its read, `None` (logged) when it could not be read.
fn stored_entry_of(index: u64, read: Result<Option<Vec<u8>>, StorageError>) -> Option<Vec<u8>> {
    match read {
        Ok(Some(e)) => Some(e),
        Ok(None) => {
            tracing::error!(index, "the entry is not in the log store");
            None
        }
        Err(e) => {
            tracing::error!(index, error = %e, "reading an entry for its audit event");
            None
        }
    }
}

/// A stopped server's data directory (or a backup) opened for reading: the log's store and the
/// front end's records on it.
#[derive(Debug)]
pub struct OfflineData {
    /// The log's store (entries, tiles, checkpoint).
    pub log: Store,
    /// The front end's records: pass to [`statements`], [`events_after`], [`evidence`].
    pub ciba: CibaStore,
}

/// Opens the database of the data directory `data_dir` (a server's, stopped, or a backup made
/// by `countersign backup`) to read its audit trail. Fails if there is no database there (it
/// does not create one) or a running server holds it. Nothing is written by reading; the open
/// itself may add the `ciba` column family to a database of a log that never ran the front end.
pub fn open_data_dir(data_dir: &Path) -> Result<OfflineData, StorageError> {
    let db = data_dir.join(countersign_log::DB_DIR);
    if !db.join("CURRENT").is_file() {
        return Err(StorageError::Missing(format!(
            "no database in {} (is it a data directory or a backup?)",
            data_dir.display()
        )));
    }
    let log = Store::open_with(&db, &[CF_CIBA])?;
    let ciba = CibaStore::new(log.clone())?;
    Ok(OfflineData { log, ciba })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use countersign_verifier::export::EventType;

    use crate::store::{Batch, Durability};

    fn row(n: u64) -> EventRow {
        EventRow {
            log_index: Some(n),
            leaf_hash: None,
            event_type: EventType::RequestCreated,
            time_utc: rfc3339_ms(n),
            request_id: None,
            client_id: None,
            approver_id: None,
            credential_id: None,
            aaguid: None,
            authorization_details_types: Vec::new(),
            binding_message: None,
            statement_sha256: None,
        }
    }

    /// Writers commit events side by side (synced and not) while a reader pages with the
    /// cursor: it sees every event once, in seq order, and the seqs go on after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_reader_paging_beside_writers_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let store = Store::open_with(dir.path(), &[CF_CIBA]).unwrap();
            std::sync::Arc::new(CibaStore::new(store).unwrap())
        };
        let cs = open();
        const WRITERS: u64 = 8;
        const EACH: u64 = 50;
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let cs = cs.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let durability = if i % 2 == 0 {
                        Durability::Sync
                    } else {
                        Durability::Deferred
                    };
                    let events = [row(w * 1000 + i)];
                    cs.commit_with_events(Batch::new(), &events, durability)
                        .await
                        .unwrap();
                }
            }));
        }
        let mut seen = Vec::new();
        let mut after = None;
        while (seen.len() as u64) < WRITERS * EACH {
            let (rows, next) = events_after(&cs, after, 7).unwrap();
            seen.extend(rows.into_iter().map(|r| r.log_index.unwrap()));
            after = Some(next);
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(events_after(&cs, after, 10).unwrap().0, Vec::new());
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "an event was repeated");
        assert_eq!(sorted.len() as u64, WRITERS * EACH, "an event was lost");
        // Each writer's events in the order it wrote them.
        for w in 0..WRITERS {
            let mine: Vec<u64> = seen.iter().copied().filter(|n| n / 1000 == w).collect();
            assert!(mine.windows(2).all(|p| p[0] < p[1]), "{mine:?}");
        }
        let last = after.unwrap();
        assert_eq!(last, WRITERS * EACH, "seqs start at 1 with no gap");
        drop(cs);
        let cs = open();
        cs.commit_with_events(Batch::new(), &[row(1)], Durability::Sync)
            .await
            .unwrap();
        let (rows, next) = events_after(&cs, Some(last), 10).unwrap();
        assert_eq!((rows.len(), next), (1, last + 1));
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        for seq in [0, 1, 255, u64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(seq)), Some(seq));
        }
        assert_eq!(decode_cursor(""), None);
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor("AAAA"), None);
        assert_eq!(seq_of(&CibaStore::audit_key(42)), Some(42));
    }
}
