//! The sequencer: the one thread that owns the Merkle tree, and the writer thread that makes
//! its batches durable.
//!
//! The sequencer drains a bounded queue into batches (bounded by count and age), decides every
//! entry of a batch against the committed state, the batches still being written and the batch
//! itself (exact dedup, assertion replays, credential conflicts, the sign-count rule), grows the
//! tree, signs the new checkpoint, and hands the batch (entries, node hashes, indexes, the tree
//! state and the signed checkpoint in ONE `WriteBatch`) to the writer. The writer writes it with
//! `sync=true`; only after that write returns are callers answered and the new checkpoint
//! published to readers. The two threads form a pipeline: batch k+1 is decided and signed while
//! batch k is being fsynced, and batches are written in the order they were built.
//!
//! Because the tree and the signer live only in the sequencer, two checkpoints are always signed
//! from one growing tree, so they are always consistent; and because the tree state and
//! checkpoint are in the same atomic write as the leaves, a crash at any moment recovers a state
//! that was signed. If a write fails, every later batch (built on top of it) is failed too and
//! the log stops accepting appends until it is restarted: it fails closed rather than guess.

mod batch;
mod builder;
pub(crate) mod decide;
mod handle;
mod recovery;
mod writer;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::metrics::Metrics;
use crate::signer::LogSigner;
use crate::storage::{StorageError, Store};

use batch::ToWriter;
use builder::Sequencer;
pub(crate) use decide::Outcome;
pub(crate) use handle::refuse_unbundlable;
use handle::JoinOnDrop;
pub use handle::{
    now_ms, AppendKind, Appended, Published, SequencerConfig, SequencerHandle, Shared,
};
use recovery::{index_revocations, recover};
use writer::Writer;

/// Loads the tree state, checks it against the latest checkpoint, signs the first checkpoint
/// of an empty log, and starts the sequencer thread.
pub fn start(
    store: Store,
    signer: Arc<LogSigner>,
    config: SequencerConfig,
    metrics: Arc<Metrics>,
) -> Result<SequencerHandle, StorageError> {
    let recovery::Recovered {
        stack,
        edge,
        bundle,
        note,
    } = recover(&store, &signer)?;
    let indexed = index_revocations(&store, stack.size())?;
    if indexed > 0 {
        tracing::info!(
            revoked = indexed,
            "revocation index built from the log's entries"
        );
    }
    let published = Published {
        size: stack.size(),
        root: stack.root(),
        note: note.into(),
    };
    metrics.tree_size.set(published.size as i64);
    let shared = Arc::new(Shared {
        published: RwLock::new(published),
        last_signed_ms: AtomicU64::new(now_ms()),
        alive: AtomicBool::new(true),
        closing: AtomicBool::new(false),
        committed_batch: AtomicU64::new(0),
        write_failed: AtomicBool::new(false),
        published_tx: tokio::sync::watch::channel(0).0,
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_capacity.max(1));
    // A rendezvous: the builder works on batch k+1 during batch k's write, then blocks until
    // the writer takes it, letting the queue grow meanwhile into the next batch. (With a slot
    // of buffer the builder ran two batches ahead and cut the queue into twice as many small
    // batches, each with its own signature and fsync.)
    let (to_writer, writer_rx) = std::sync::mpsc::sync_channel::<ToWriter>(0);
    let mut writer = Writer {
        store: store.clone(),
        signer: signer.clone(),
        checkpoint_interval: config.checkpoint_interval,
        metrics: metrics.clone(),
        shared: shared.clone(),
        committed: (stack.size(), stack.root()),
    };
    let writer_thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let done = writer.run(writer_rx);
            // Release the store before reporting the stop, so a caller that waited for
            // shutdown can reopen the database.
            drop(writer);
            if let Some(done) = done {
                let _ = done.send(());
            }
        })
        .map_err(|e| StorageError::Stopped(format!("cannot start the log writer thread: {e}")))?;
    let mut seq = Sequencer {
        store,
        signer,
        config,
        metrics: metrics.clone(),
        shared: shared.clone(),
        stack,
        edge,
        bundle,
        in_flight: VecDeque::new(),
        next_batch: 1,
        to_writer: Some(to_writer),
    };
    let thread = std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || {
            let done = seq.run(rx);
            let shared = seq.shared.clone();
            // The writer finishes every batch already handed to it before it stops.
            seq.to_writer = None;
            drop(seq);
            let _ = writer_thread.join();
            shared.alive.store(false, Ordering::SeqCst);
            if let Some(done) = done {
                let _ = done.send(());
            }
        })
        .map_err(|e| StorageError::Stopped(format!("cannot start the sequencer thread: {e}")))?;
    Ok(SequencerHandle {
        tx,
        shared,
        metrics,
        _thread: Arc::new(JoinOnDrop(std::sync::Mutex::new(Some(thread)))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::decide::same_enrolment;
    use super::*;
    use crate::error::AppendError;
    use countersign_verifier::{leaf_hash, root_from_leaf_hashes, Entry, Hash, Revocation};

    fn entry(n: u64) -> Vec<u8> {
        Entry::Revocation(Revocation {
            approver_id: "a".into(),
            credential_id: vec![1; 16],
            enrolment_index: 0,
            reason: "r".into(),
            time_ms: n,
        })
        .encode()
        .unwrap()
    }

    fn signer() -> Arc<LogSigner> {
        Arc::new(LogSigner::new("unit.test/log", &[3; 32]).unwrap())
    }

    #[tokio::test]
    async fn appends_dedups_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let h = start(
            store.clone(),
            signer(),
            SequencerConfig::default(),
            metrics.clone(),
        )
        .unwrap();
        let mut leaves = Vec::new();
        for n in 0..5 {
            let e = entry(n);
            leaves.push(leaf_hash(&e));
            let a = h
                .append(e, leaf_hash(&entry(n)), AppendKind::Other)
                .await
                .unwrap();
            assert_eq!((a.index, a.existing), (n, false));
        }
        let again = h
            .append(entry(2), leaf_hash(&entry(2)), AppendKind::Other)
            .await
            .unwrap();
        assert_eq!((again.index, again.existing), (2, true));
        // Longer than an entry bundle holds: refused, alone or among others, nothing logged
        // for it; 65,535 bytes fit.
        let (long, fits) = (vec![7u8; 65_536], vec![7u8; 65_535]);
        match h
            .append(long.clone(), leaf_hash(&long), AppendKind::Other)
            .await
        {
            Err(AppendError::Refused { reason, detail }) => {
                assert_eq!(reason, crate::error::RefusalReason::InvalidEntry);
                assert!(detail.contains("65536 bytes long"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let many = h
            .append_many(vec![
                (long.clone(), leaf_hash(&long), AppendKind::Other),
                (fits.clone(), leaf_hash(&fits), AppendKind::Other),
            ])
            .await;
        assert!(matches!(many[0], Err(AppendError::Refused { .. })));
        assert_eq!(many[1].as_ref().unwrap().index, 5);
        leaves.push(leaf_hash(&fits));
        let p = h.shared().published();
        assert_eq!(p.size, 6);
        assert_eq!(p.root, root_from_leaf_hashes(&leaves));
        h.shutdown().await;
        assert_eq!(
            h.append(entry(9), leaf_hash(&entry(9)), AppendKind::Other)
                .await
                .unwrap_err(),
            AppendError::ShuttingDown
        );
        drop(h);
        let h2 = start(store, signer(), SequencerConfig::default(), metrics).unwrap();
        let p2 = h2.shared().published();
        assert_eq!((p2.size, p2.root), (p.size, p.root));
        assert_eq!(p2.note, p.note);
        h2.shutdown().await;
        drop(h2);
        // A different key cannot take over the log: the stored checkpoint does not verify.
        let store = Store::open(dir.path()).unwrap();
        let other = Arc::new(LogSigner::new("unit.test/log", &[4; 32]).unwrap());
        assert!(start(
            store,
            other,
            SequencerConfig::default(),
            Arc::new(Metrics::new())
        )
        .is_err());
    }

    /// Many small batches in flight at once: an entry submitted concurrently by many callers
    /// still gets exactly one leaf, whether its twin is in the same batch, a batch still being
    /// written, or RocksDB; and the published tree is exactly the leaves by index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dedups_across_batches_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = SequencerConfig {
            batch_max_entries: 7,
            ..SequencerConfig::default()
        };
        let h = start(store.clone(), signer(), config, Arc::new(Metrics::new())).unwrap();
        let n = 300u64;
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for k in 0..n {
                    // Each task walks the entries in its own order.
                    let i = (k * (2 * t + 1) + t) % n;
                    let a = h
                        .append(entry(i), leaf_hash(&entry(i)), AppendKind::Other)
                        .await
                        .unwrap();
                    assert_eq!(a.leaf_hash, leaf_hash(&entry(i)));
                    got.push((i, a.index));
                }
                got
            }));
        }
        let mut index_of = std::collections::HashMap::new();
        for t in tasks {
            for (i, index) in t.await.unwrap() {
                assert_eq!(*index_of.entry(i).or_insert(index), index, "entry {i}");
            }
        }
        let p = h.shared().published();
        assert_eq!(p.size, n);
        let mut by_index = vec![Hash([0; 32]); n as usize];
        for (i, index) in &index_of {
            by_index[*index as usize] = leaf_hash(&entry(*i));
        }
        assert_eq!(p.root, root_from_leaf_hashes(&by_index));
        for (i, index) in index_of {
            assert_eq!(store.entry(index).unwrap().unwrap(), entry(i));
        }
        h.shutdown().await;
    }

    #[test]
    fn enrolments_compare_without_time() {
        let e = |t, a: &str| {
            Entry::Enrolment(countersign_verifier::Enrolment {
                approver_id: a.into(),
                credential_id: vec![1; 16],
                public_key: countersign_testvectors::SoftPasskey::new(
                    countersign_testvectors::Alg::EdDsa,
                    1,
                    "x",
                )
                .cose_public_key(),
                aaguid: [0; 16],
                attestation_format: "none".into(),
                attestation: countersign_verifier::AttestationRecord::NotRecorded,
                time_ms: t,
            })
            .encode()
            .unwrap()
        };
        assert!(same_enrolment(&e(1, "a"), &e(2, "a")));
        assert!(!same_enrolment(&e(1, "a"), &e(1, "b")));
        assert!(!same_enrolment(&entry(1), &entry(1)));
    }
}
