//! Sequencing in PostgreSQL: a batch of appends from one instance is decided and given
//! contiguous indices in one transaction that holds the `seq_coord` row lock, so batches from
//! every instance are decided one after another against everything sequenced before them, by
//! the same rules as the embedded builder ([`crate::sequencer`]'s `decide`).

use std::collections::{HashMap, HashSet};

use countersign_verifier::Hash;
use deadpool_postgres::{GenericClient, Transaction};

use crate::sequencer::decide::{Committed, Decided, Pending};
use crate::sequencer::{AppendKind, Outcome};
use crate::storage::StorageError;

use super::pg::DbError;

/// Channel notified (payload: the new next index) when a batch is sequenced.
pub(crate) const SEQUENCED: &str = "countersign_sequenced";

/// One append to sequence.
pub(crate) struct Item<'a> {
    pub(crate) entry: &'a [u8],
    pub(crate) leaf: &'a Hash,
    pub(crate) kind: &'a AppendKind,
}

/// What the log's rules and checks read, for a group of requests.
#[derive(Debug, Default)]
pub struct Wants {
    /// Entries by index.
    pub entries: Vec<u64>,
    /// Credentials by id.
    pub credentials: Vec<Vec<u8>>,
    /// Assertion replay keys (the entry of each one found is read too).
    pub assertions: Vec<[u8; 32]>,
    /// Revocations by enrolment index.
    pub revocations: Vec<u64>,
    /// Leaf hashes (exact dedup).
    pub leaves: Vec<[u8; 32]>,
}

/// What the database held for a group of requests, read in a few queries: the answers the
/// sequencing rules and the log's checks need, with nothing left to read.
#[derive(Debug, Default)]
pub struct Prefetched {
    leaves: HashMap<[u8; 32], u64>,
    assertions: HashMap<[u8; 32], u64>,
    credentials: HashMap<Vec<u8>, (u64, u32)>,
    revocations: HashMap<u64, u64>,
    entries: HashMap<u64, Vec<u8>>,
}

impl Prefetched {
    /// A logged entry (read up front, or unknown).
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.entries.get(&index).cloned())
    }
    /// A credential's enrolment index and sign count.
    pub fn credential(&self, id: &[u8]) -> Result<Option<(u64, u32)>, StorageError> {
        Ok(self.credentials.get(id).copied())
    }
    /// The index of the decision that logged an assertion.
    pub fn assertion_index(&self, key: &[u8; 32]) -> Result<Option<u64>, StorageError> {
        Ok(self.assertions.get(key).copied())
    }
    /// The first revocation of an enrolment.
    pub fn revocation(&self, enrolment_index: u64) -> Result<Option<u64>, StorageError> {
        Ok(self.revocations.get(&enrolment_index).copied())
    }
}

impl Committed for Prefetched {
    fn leaf(&self, leaf: &Hash) -> Result<Option<u64>, StorageError> {
        Ok(self.leaves.get(leaf.as_bytes()).copied())
    }
    fn assertion(&self, key: &[u8; 32]) -> Result<Option<u64>, StorageError> {
        self.assertion_index(key)
    }
    fn credential(&self, id: &[u8]) -> Result<Option<(u64, u32)>, StorageError> {
        Prefetched::credential(self, id)
    }
    fn revocation(&self, enrolment_index: u64) -> Result<Option<u64>, StorageError> {
        Prefetched::revocation(self, enrolment_index)
    }
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Prefetched::entry(self, index)
    }
}

fn i64_of(v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::Query(format!("index {v} out of range")))
}

fn u64_of(v: i64) -> Result<u64, DbError> {
    u64::try_from(v).map_err(|_| DbError::Query(format!("negative index {v} in the database")))
}

fn key32(v: &[u8]) -> Result<[u8; 32], DbError> {
    v.try_into()
        .map_err(|_| DbError::Query(format!("a stored hash of {} bytes", v.len())))
}

fn indexes(v: &[u64]) -> Result<Vec<i64>, DbError> {
    v.iter().map(|i| i64_of(*i)).collect()
}

/// Reads what `w` asks for, with the entry that logged each assertion found and the revocation
/// of each credential found's enrolment: one statement, one round trip.
pub(crate) async fn prefetch(c: &impl GenericClient, w: Wants) -> Result<Prefetched, DbError> {
    let mut r = Prefetched::default();
    if w.leaves.is_empty()
        && w.assertions.is_empty()
        && w.credentials.is_empty()
        && w.revocations.is_empty()
        && w.entries.is_empty()
    {
        return Ok(r);
    }
    let leaves: Vec<&[u8]> = w.leaves.iter().map(|k| k.as_slice()).collect();
    let assertions: Vec<&[u8]> = w.assertions.iter().map(|k| k.as_slice()).collect();
    // Each row: its kind, then a key, two numbers and data, as that kind has them.
    let stmt = c
        .prepare_cached(
            "WITH a AS (SELECT key, idx FROM assertions WHERE key = ANY($2)), \
                  c AS (SELECT id, enrolment, sign_count FROM credentials WHERE id = ANY($3)) \
             SELECT 0::int2, leaf_hash, idx, NULL::bigint, NULL::bytea FROM entries \
                 WHERE leaf_hash = ANY($1) \
             UNION ALL SELECT 1::int2, key, idx, NULL, NULL FROM a \
             UNION ALL SELECT 2::int2, id, enrolment, sign_count, NULL FROM c \
             UNION ALL SELECT 3::int2, NULL, enrolment, idx, NULL FROM revocations \
                 WHERE enrolment = ANY($4::bigint[] || ARRAY(SELECT enrolment FROM c)) \
             UNION ALL SELECT 4::int2, NULL, idx, NULL, data FROM entries \
                 WHERE idx = ANY($5::bigint[] || ARRAY(SELECT idx FROM a))",
        )
        .await?;
    let rows = c
        .query(
            &stmt,
            &[
                &leaves,
                &assertions,
                &w.credentials,
                &indexes(&w.revocations)?,
                &indexes(&w.entries)?,
            ],
        )
        .await?;
    for row in rows {
        match row.get::<_, i16>(0) {
            0 => {
                r.leaves
                    .insert(key32(row.get::<_, &[u8]>(1))?, u64_of(row.get(2))?);
            }
            1 => {
                r.assertions
                    .insert(key32(row.get::<_, &[u8]>(1))?, u64_of(row.get(2))?);
            }
            2 => {
                let count = u32::try_from(row.get::<_, i64>(3))
                    .map_err(|_| DbError::Query("a stored sign count out of range".into()))?;
                r.credentials
                    .insert(row.get::<_, Vec<u8>>(1), (u64_of(row.get(2))?, count));
            }
            3 => {
                r.revocations
                    .insert(u64_of(row.get(2))?, u64_of(row.get(3))?);
            }
            4 => {
                r.entries.insert(u64_of(row.get(2))?, row.get(4));
            }
            k => return Err(DbError::Query(format!("a prefetched row of kind {k}"))),
        }
    }
    Ok(r)
}

/// Reads what deciding `items` needs.
async fn read(tx: &Transaction<'_>, items: &[Item<'_>]) -> Result<Prefetched, DbError> {
    let mut w = Wants {
        leaves: items.iter().map(|i| *i.leaf.as_bytes()).collect(),
        ..Wants::default()
    };
    for i in items {
        match i.kind {
            AppendKind::Decision {
                assertion_key,
                credential_id,
                enrolment_index,
                ..
            } => {
                w.assertions.push(*assertion_key);
                w.credentials.push(credential_id.clone());
                w.revocations.push(*enrolment_index);
            }
            AppendKind::Enrolment { credential_id } => w.credentials.push(credential_id.clone()),
            AppendKind::Revocation {
                enrolment_index, ..
            } => w.revocations.push(*enrolment_index),
            AppendKind::Other => {}
        }
    }
    let mut r = prefetch(tx, w).await?;
    // The enrolment entries of credentials being enrolled again (the same enrolment, or a
    // conflict): the only other entries the rules read.
    let enrolled: Vec<u64> = items
        .iter()
        .filter_map(|i| match i.kind {
            AppendKind::Enrolment { credential_id } => r.credentials.get(credential_id),
            _ => None,
        })
        .map(|(e, _)| *e)
        .filter(|e| !r.entries.contains_key(e))
        .collect();
    if !enrolled.is_empty() {
        for row in tx
            .query(
                &tx.prepare_cached("SELECT idx, data FROM entries WHERE idx = ANY($1)")
                    .await?,
                &[&indexes(&enrolled)?],
            )
            .await?
        {
            r.entries.insert(u64_of(row.get(0))?, row.get(1));
        }
    }
    Ok(r)
}

/// Decides and sequences `items` in `tx` (which the caller commits): one outcome per item, in
/// order. Takes the `seq_coord` row lock first.
pub(crate) async fn sequence(
    tx: &Transaction<'_>,
    items: &[Item<'_>],
) -> Result<Vec<Outcome>, DbError> {
    let next: i64 = tx
        .query_one(
            &tx.prepare_cached("SELECT next_index FROM seq_coord WHERE id = 1 FOR UPDATE")
                .await?,
            &[],
        )
        .await?
        .get(0);
    let first = u64_of(next)?;
    let read = read(tx, items).await?;
    let mut pending = Pending::default();
    let mut outcomes = Vec::with_capacity(items.len());
    // The batch's new rows, borrowed from the requests (no copy of the entries).
    let (mut idx, mut leaves, mut data) = (Vec::new(), Vec::<&[u8]>::new(), Vec::<&[u8]>::new());
    let (mut a_keys, mut a_idx) = (Vec::<[u8; 32]>::new(), Vec::new());
    let (mut r_enrol, mut r_idx) = (Vec::new(), Vec::new());
    let mut creds: HashMap<Vec<u8>, (i64, i64)> = HashMap::new();
    let mut index = first;
    for i in items {
        let decided = pending
            .decide(&read, i.entry, i.leaf, i.kind, index)
            .map_err(|e| DbError::Query(e.to_string()))?;
        let fx = match decided {
            Decided::Done(o) => {
                outcomes.push(o);
                continue;
            }
            Decided::New(fx) => fx,
        };
        let at = i64_of(index)?;
        if let Some(e) = fx.revokes {
            r_enrol.push(i64_of(e)?);
            r_idx.push(at);
        }
        if let Some((id, enrol, count)) = fx.credential {
            // The last state of each credential in the batch is the one stored.
            creds.insert(id, (i64_of(enrol)?, i64::from(count)));
        }
        if let Some(k) = fx.assertion {
            a_keys.push(k);
            a_idx.push(at);
        }
        idx.push(at);
        leaves.push(i.leaf.as_bytes());
        data.push(i.entry);
        outcomes.push(Outcome::New(index));
        index += 1;
    }
    if idx.is_empty() {
        return Ok(outcomes);
    }
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO entries (idx, leaf_hash, data) \
         SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])",
        )
        .await?,
        &[&idx, &leaves, &data],
    )
    .await?;
    if !a_keys.is_empty() {
        let keys: Vec<&[u8]> = a_keys.iter().map(|k| k.as_slice()).collect();
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO assertions (key, idx) SELECT * FROM unnest($1::bytea[], $2::bigint[])",
            )
            .await?,
            &[&keys, &a_idx],
        )
        .await?;
    }
    if !r_enrol.is_empty() {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO revocations (enrolment, idx) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            )
            .await?,
            &[&r_enrol, &r_idx],
        )
        .await?;
    }
    if !creds.is_empty() {
        let mut ids = Vec::with_capacity(creds.len());
        let (mut enrol, mut count) = (Vec::new(), Vec::new());
        for (id, (e, c)) in creds {
            ids.push(id);
            enrol.push(e);
            count.push(c);
        }
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO credentials (id, enrolment, sign_count) \
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[]) \
             ON CONFLICT (id) DO UPDATE SET sign_count = excluded.sign_count",
            )
            .await?,
            &[&ids, &enrol, &count],
        )
        .await?;
    }
    tx.execute(
        &tx.prepare_cached("UPDATE seq_coord SET next_index = $1 WHERE id = 1")
            .await?,
        &[&i64_of(index)?],
    )
    .await?;
    // Wakes the integrator, wherever it runs, when the transaction commits.
    tx.execute(
        &tx.prepare_cached("SELECT pg_notify($1, $2)").await?,
        &[&SEQUENCED, &index.to_string()],
    )
    .await?;
    Ok(outcomes)
}

/// The leaf hashes of logged entries `indexes` (for answers that return an existing leaf).
pub(crate) async fn leaf_hashes(
    client: &tokio_postgres::Client,
    indexes: &HashSet<u64>,
) -> Result<HashMap<u64, Hash>, DbError> {
    let idx: Vec<i64> = indexes
        .iter()
        .map(|i| i64_of(*i))
        .collect::<Result<_, _>>()?;
    let mut out = HashMap::new();
    for row in client
        .query(
            "SELECT idx, leaf_hash FROM entries WHERE idx = ANY($1)",
            &[&idx],
        )
        .await?
    {
        out.insert(u64_of(row.get(0))?, Hash(key32(row.get::<_, &[u8]>(1))?));
    }
    Ok(out)
}
