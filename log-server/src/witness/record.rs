//! What the log remembers of each witness, durably: the latest checkpoint the witness cosigned
//! for it (its size is the `old` size of the next request) and that cosignature, so a restart
//! resumes where it stopped and still serves the cosignatures it had gathered.

use serde::{Deserialize, Serialize};

use crate::storage::{StorageError, Store, CF_META};

/// Prefix of the metadata keys of witness records; the rest of the key is the witness's
/// verifier key, so renaming a witness in the policy keeps its record and a new key starts
/// afresh.
const KEY_PREFIX: &str = "witness/";

/// One witness's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    /// Size of the latest checkpoint it cosigned (0: none yet).
    pub size: u64,
    /// The text (body) of that checkpoint; empty when none.
    pub text: String,
    /// Its cosignature lines over `text`, each ending in a newline.
    pub lines: String,
    /// When it was received (ms since the epoch).
    pub at_ms: u64,
}

fn key(vkey: &str) -> Vec<u8> {
    format!("{KEY_PREFIX}{vkey}").into_bytes()
}

/// Reads the record of the witness with verifier key `vkey` (the default when there is none).
pub(crate) fn load(store: &Store, vkey: &str) -> Result<Record, StorageError> {
    match store.get(CF_META, &key(vkey))? {
        None => Ok(Record::default()),
        Some(v) => parse(vkey, &v),
    }
}

/// A record from its stored JSON.
pub(crate) fn parse(vkey: &str, v: &[u8]) -> Result<Record, StorageError> {
    serde_json::from_slice(v)
        .map_err(|e| StorageError::Corrupt(format!("witness record of {vkey}: {e}")))
}

/// A record's stored JSON.
pub(crate) fn to_json(vkey: &str, r: &Record) -> Result<String, StorageError> {
    serde_json::to_string(r)
        .map_err(|e| StorageError::Corrupt(format!("witness record of {vkey}: {e}")))
}

/// Writes the record durably (synced), outside the sequencer's batches: the keys are the
/// witness client's alone.
pub(crate) fn save(store: &Store, vkey: &str, r: &Record) -> Result<(), StorageError> {
    let v = to_json(vkey, r)?;
    let mut wb = rocksdb::WriteBatch::default();
    wb.put_cf(store.cf(CF_META)?, key(vkey), v);
    store.write_sync(wb)
}

/// Every witness record in the store: (verifier key, record JSON), as stored.
pub(crate) fn all(store: &Store) -> Result<Vec<(String, String)>, StorageError> {
    let cf = store.cf(CF_META)?;
    let mut out = Vec::new();
    let iter = store.db().iterator_cf(
        cf,
        rocksdb::IteratorMode::From(KEY_PREFIX.as_bytes(), rocksdb::Direction::Forward),
    );
    for item in iter {
        let (k, v) = item.map_err(|e| StorageError::Corrupt(format!("witness records: {e}")))?;
        let Some(vkey) = k.strip_prefix(KEY_PREFIX.as_bytes()) else {
            break;
        };
        let vkey = String::from_utf8(vkey.to_vec())
            .map_err(|_| StorageError::Corrupt("a witness record's key is not UTF-8".into()))?;
        parse(&vkey, &v)?;
        let json = String::from_utf8(v.to_vec())
            .map_err(|_| StorageError::Corrupt(format!("witness record of {vkey}: not UTF-8")))?;
        out.push((vkey, json));
    }
    Ok(out)
}
