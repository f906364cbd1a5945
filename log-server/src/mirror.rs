//! The tile mirror (`serve --tiles URL`): the log's C2SP tlog-tiles (hash tiles, entry
//! bundles) and its checkpoint, copied to object storage (`s3://BUCKET/PREFIX`) or a directory
//! (`file:///DIR`) as they are published, so that a static web server or the bucket itself
//! serves the log to tile clients.
//!
//! What is written and how (`spec/tiles-mirror.md`):
//!
//! - Every tile object is written create-only: full tiles and entry bundles are immutable, and
//!   so is a partial tile (its path names its width). An object already there with the same
//!   bytes is accepted (a restart, or a crash between a tile and its checkpoint); different
//!   bytes stop the mirror with an error naming the object. The log never reads a tile back
//!   from the bucket: the bucket is not trusted, and an altered object can at most stop the
//!   mirror, never change what the log signs.
//! - Tiles are written before the checkpoint that covers them, so a reader of the bucket never
//!   sees a checkpoint whose tiles are missing. Partial tiles are removed once their full tile
//!   exists.
//! - The checkpoint object is replaced only by compare-and-swap on its ETag (S3's `If-Match`;
//!   created with `If-None-Match: *`), and only with a checkpoint of this log (its key) that is
//!   consistent with the one it replaces: the bucket's checkpoint is verified and its root
//!   recomputed from this log's own tree. A bucket holding another log's checkpoint, one ahead
//!   of this log, or one that diverges from it is refused with an error, and nothing of it is
//!   overwritten. A directory has no compare-and-swap: its checkpoint is replaced by an atomic
//!   rename after the same checks (one writer per directory).
//! - Objects carry `Cache-Control` (`public, max-age=31536000, immutable` for full tiles and
//!   bundles, `no-cache` for partial tiles and the checkpoint) and `Content-Type` where the
//!   store keeps them (S3; a directory's web server sets its own).
//!
//! The mirror is a copy: appends never wait for it. It follows the checkpoint readers get
//! ([`LogHandle::served_checkpoint`], cosigned when the log is witnessed), retries a failed
//! write with a growing pause, and stops for good only on a conflict.

use std::sync::Arc;
use std::time::Duration;

use countersign_verifier::{fold_subtrees, verify_checkpoint, Hash, LeafRange};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use object_store::UpdateVersion;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use crate::bucket::{Bucket, MirrorError, IMMUTABLE, NO_CACHE};
use crate::log::LogHandle;
use crate::sequencer::Published;
use crate::storage::{StorageError, Store};
use crate::tiles::{read_tile, TileRead, TileRef, TILE_HEIGHT, TILE_WIDTH};

/// Objects written at once while catching up.
const PARALLEL_PUTS: usize = 8;
/// The shortest time between the starts of two mirror passes.
pub const PASS_INTERVAL: Duration = Duration::from_millis(100);
/// The longest pause between retries after a failed write.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The relative path of a tile (`level` `None`: an entry bundle) of `width` entries or hashes:
/// the verifier's, so the mirror and every reader name tiles alike.
pub use countersign_verifier::export::tile_path;

/// The tiles that a tree of `to` leaves has and a tree of `from` leaves had not, in the order
/// to write them: for each tile level (entry bundles first), the tiles that became full, then
/// the partial tile of `to` if any. Each item: level (`None` for entry bundles), index, width.
pub fn new_tiles(from: u64, to: u64) -> Vec<(Option<u8>, u64, u64)> {
    let mut out = Vec::new();
    let mut levels: Vec<(Option<u8>, u32)> = vec![(None, 0)];
    let mut l = 0u8;
    while u32::from(l) * TILE_HEIGHT < 64 && (to >> (u32::from(l) * TILE_HEIGHT)) > 0 {
        levels.push((Some(l), u32::from(l) * TILE_HEIGHT));
        l += 1;
    }
    for (level, shift) in levels {
        let (old, new) = (from >> shift, to >> shift);
        for i in old / TILE_WIDTH..new / TILE_WIDTH {
            out.push((level, i, TILE_WIDTH));
        }
        if new % TILE_WIDTH > 0 && new != old {
            out.push((level, new / TILE_WIDTH, new % TILE_WIDTH));
        }
    }
    out
}

/// The root of this log's first `size` leaves, from its stored subtrees.
fn root_at(store: &Store, size: u64) -> Result<Hash, StorageError> {
    if size == 0 {
        return Ok(countersign_verifier::root_from_leaf_hashes(&[]));
    }
    let subtrees = LeafRange {
        start: 0,
        end: size,
    }
    .subtrees();
    let addrs: Vec<(u8, u64)> = subtrees.iter().map(|s| (s.level, s.index)).collect();
    let nodes = store.nodes(&addrs)?;
    fold_subtrees(&nodes).ok_or_else(|| StorageError::Missing("no subtrees".into()))
}

/// What the mirror has done, for `/metrics`, logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorStatus {
    /// The tree size of the last checkpoint written to the bucket.
    pub size: Option<u64>,
    /// The note of the last checkpoint written.
    pub note: Option<Arc<str>>,
    /// Set when the mirror stopped for good ([`MirrorError::Conflict`]).
    pub stopped: Option<String>,
    /// The last transient error, cleared by the next success.
    pub retrying: Option<String>,
    /// The mirror's task has ended (the log closed, or the mirror stopped) and holds the log
    /// no more.
    pub finished: bool,
}

/// The mirror's metrics, rendered after the log's on `GET /metrics`.
#[derive(Debug)]
struct MirrorMetrics {
    registry: Registry,
    size: Gauge,
    lag: Gauge,
    stopped: Gauge,
    failures: Counter,
    objects: Counter,
}

impl MirrorMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("countersign_tiles_mirror");
        let (size, lag, stopped) = (Gauge::default(), Gauge::default(), Gauge::default());
        let (failures, objects) = (Counter::default(), Counter::default());
        registry.register(
            "size",
            "Tree size of the checkpoint last written to the bucket",
            size.clone(),
        );
        registry.register(
            "lag_entries",
            "Entries between the checkpoint readers get and the bucket's",
            lag.clone(),
        );
        registry.register(
            "stopped",
            "1 when the mirror stopped on a conflict (an altered object, another log's \
             checkpoint): it writes no more until restarted",
            stopped.clone(),
        );
        registry.register(
            "write_failures",
            "Mirror passes that failed on the store or the log and were retried",
            failures.clone(),
        );
        registry.register(
            "objects_written",
            "Tiles and entry bundles written (or found there with the same bytes)",
            objects.clone(),
        );
        MirrorMetrics {
            registry,
            size,
            lag,
            stopped,
            failures,
            objects,
        }
    }
}

/// The running mirror of one log.
#[derive(Debug)]
pub struct TileMirror {
    bucket: Bucket,
    log: LogHandle,
    /// The embedded log's store and sequencer state (the shared driver writes its bucket itself).
    store: Store,
    seq: Arc<crate::sequencer::Shared>,
    status: watch::Sender<MirrorStatus>,
    metrics: MirrorMetrics,
}

impl crate::http::MetricsSource for TileMirror {
    fn registry(&self) -> &Registry {
        &self.metrics.registry
    }
}

impl TileMirror {
    /// Checks that the bucket can hold this log (reachable; any checkpoint there is this log's
    /// and consistent with it), then starts mirroring on the current tokio runtime.
    pub async fn start(log: LogHandle, bucket: Bucket) -> Result<Arc<TileMirror>, MirrorError> {
        let (Some(store), Some(seq)) = (log.store().cloned(), log.sequencer()) else {
            return Err(MirrorError::BadUrl(
                "the shared driver writes its tiles to its own bucket; --tiles names it".into(),
            ));
        };
        let seq = seq.shared().clone();
        let (status, _) = watch::channel(MirrorStatus::default());
        let m = Arc::new(TileMirror {
            bucket,
            log,
            store,
            seq,
            status,
            metrics: MirrorMetrics::new(),
        });
        let published = m.log.published();
        m.check_bucket(&published).await?;
        let task = m.clone();
        tokio::spawn(async move {
            task.clone().run().await;
            // Let go of the log (its store) before saying so: whoever waits for `finished` may
            // open the same data directory next.
            let status = task.status.clone();
            drop(task);
            status.send_modify(|s| s.finished = true);
        });
        Ok(m)
    }

    /// What the mirror has done so far; changes as it goes.
    pub fn status(&self) -> watch::Receiver<MirrorStatus> {
        self.status.subscribe()
    }

    /// Waits until the mirror's task has ended: after the log's shutdown began, it lets go of
    /// the log within a quarter of a second of its current write.
    pub async fn finished(&self) {
        let mut rx = self.status();
        let _ = rx.wait_for(|s| s.finished).await;
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Waits until the bucket's checkpoint is at least `size`, or the mirror stopped (its
    /// error), or `timeout` passed.
    pub async fn wait_for(&self, size: u64, timeout: Duration) -> Result<(), String> {
        let mut rx = self.status();
        let wait = async move {
            rx.wait_for(|s| s.size.is_some_and(|n| n >= size) || s.stopped.is_some())
                .await
                .map(|s| s.stopped.clone())
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(stopped)) => match stopped {
                Some(e) => Err(e),
                None => Ok(()),
            },
            Ok(Err(_)) => Err("the mirror is gone".into()),
            Err(_) => Err(format!(
                "the bucket's checkpoint did not reach {size} in {timeout:?}: {:?}",
                self.status.borrow()
            )),
        }
    }

    /// The bucket's checkpoint, verified as this log's and consistent with `ours` (at most its
    /// size, the same root at its size): its size and version, or `None` if there is none.
    async fn check_bucket(
        &self,
        ours: &Published,
    ) -> Result<Option<(u64, Vec<u8>, UpdateVersion)>, MirrorError> {
        let Some((bytes, version)) = self.bucket.checkpoint().await? else {
            return Ok(None);
        };
        // Still the checkpoint this mirror last wrote: checked when it was written.
        let written = self.status.borrow().clone();
        if let (Some(note), Some(size)) = (&written.note, written.size) {
            if note.as_bytes() == bytes.as_slice() && size <= ours.size {
                return Ok(Some((size, bytes, version)));
            }
        }
        let url = self.bucket.url();
        let key = self.log.signer().verifier_key();
        let cp = verify_checkpoint(&bytes, key, &[]).map_err(|e| {
            MirrorError::Conflict(format!(
                "the checkpoint in {url} is not this log's ({e}): another log's bucket, or \
                 altered; nothing is written over it"
            ))
        })?;
        let size = cp.checkpoint.size;
        if size > ours.size {
            return Err(MirrorError::Conflict(format!(
                "the checkpoint in {url} has {size} entries, more than this log's {}: another \
                 deployment writes there, or this log was restored from an older backup",
                ours.size
            )));
        }
        let store = self.store.clone();
        let root = tokio::task::spawn_blocking(move || root_at(&store, size))
            .await
            .map_err(|e| MirrorError::Log(e.to_string()))??;
        if root != cp.checkpoint.root {
            return Err(MirrorError::Conflict(format!(
                "the checkpoint in {url} at size {size} has another root than this log at that \
                 size: a fork; nothing is written over it"
            )));
        }
        Ok(Some((size, bytes, version)))
    }

    /// Mirrors `p`: the tiles new since the bucket's checkpoint, then the checkpoint.
    /// `Ok(false)` if another writer replaced the checkpoint meanwhile (try again).
    async fn mirror(&self, p: &Published) -> Result<bool, MirrorError> {
        let current = self.check_bucket(p).await?;
        let from = match &current {
            Some((size, bytes, _)) if *size == p.size && bytes.as_slice() == p.note.as_bytes() => {
                return Ok(true);
            }
            Some((size, _, _)) => *size,
            None => 0,
        };
        let size = p.size;
        let tiles = new_tiles(from, size);
        let tiles_count = tiles.len();
        let store = self.store.clone();
        let bucket = &self.bucket;
        stream::iter(tiles)
            .map(|(level, index, width)| {
                let store = store.clone();
                async move {
                    let t = TileRef {
                        level,
                        index,
                        partial: (width < TILE_WIDTH)
                            .then(|| u16::try_from(width).unwrap_or_default()),
                    };
                    let read = tokio::task::spawn_blocking(move || read_tile(&store, &t, size))
                        .await
                        .map_err(|e| MirrorError::Log(e.to_string()))??;
                    let TileRead::Found(bytes) = read else {
                        return Err(MirrorError::Log(format!(
                            "tile {} of a tree of {size} is not in the log",
                            tile_path(level, index, width)
                        )));
                    };
                    let rel = tile_path(level, index, width);
                    if width == TILE_WIDTH {
                        bucket.create(&rel, bytes, IMMUTABLE).await?;
                        bucket.remove_partials(&rel).await
                    } else {
                        bucket.create(&rel, bytes, NO_CACHE).await
                    }
                }
            })
            .buffer_unordered(PARALLEL_PUTS)
            .try_collect::<Vec<()>>()
            .await?;
        self.metrics.objects.inc_by(tiles_count as u64);
        bucket
            .put_checkpoint(&p.note, current.map(|(_, _, v)| v))
            .await
            .map(|v| v.is_some())
    }

    async fn run(self: Arc<Self>) {
        let shared = self.seq.clone();
        let mut published = shared.subscribe();
        let mut backoff = Duration::from_millis(100);
        let mut last: Option<Arc<str>> = None;
        loop {
            if shared.closing() {
                return;
            }
            if let Some(p) = self.log.served_checkpoint() {
                let behind = p
                    .size
                    .saturating_sub(self.status.borrow().size.unwrap_or(0));
                self.metrics
                    .lag
                    .set(i64::try_from(behind).unwrap_or(i64::MAX));
                if last.as_deref() != Some(&*p.note) {
                    let started = tokio::time::Instant::now();
                    match self.mirror(&p).await {
                        Ok(true) => {
                            last = Some(p.note.clone());
                            backoff = Duration::from_millis(100);
                            self.metrics
                                .size
                                .set(i64::try_from(p.size).unwrap_or(i64::MAX));
                            self.status.send_modify(|s| {
                                s.size = Some(p.size);
                                s.note = Some(p.note.clone());
                                s.retrying = None;
                            });
                            tracing::debug!(size = p.size, url = %self.bucket.url(), "tiles mirrored");
                            // Passes at most every PASS_INTERVAL: under load, checkpoints are
                            // published every few milliseconds, and each pass rewrites the
                            // partial tiles; coalescing them costs readers of the bucket at
                            // most that much delay.
                            tokio::time::sleep_until(started + PASS_INTERVAL).await;
                        }
                        // Another writer replaced the checkpoint: look again at once.
                        Ok(false) => continue,
                        Err(e @ MirrorError::Conflict(_)) => {
                            tracing::error!(url = %self.bucket.url(), "tile mirror {e}");
                            self.metrics.stopped.set(1);
                            self.status.send_modify(|s| s.stopped = Some(e.to_string()));
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(
                                url = %self.bucket.url(),
                                retry_in_ms = backoff.as_millis() as u64,
                                "tile mirror: {e}"
                            );
                            self.metrics.failures.inc();
                            self.status
                                .send_modify(|s| s.retrying = Some(e.to_string()));
                            pause(&shared, backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    }
                }
            }
            // The next publication, or a quarter of a second (cosignatures arrive after
            // publication; shutdown is seen by then).
            tokio::select! {
                r = published.changed() => if r.is_err() { return },
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
}

/// Sleeps for `d`, or less once the log is closing (the mirror holds the log open).
async fn pause(shared: &crate::sequencer::Shared, d: Duration) {
    let step = Duration::from_millis(250);
    let mut left = d;
    while !left.is_zero() && !shared.closing() {
        let now = left.min(step);
        tokio::time::sleep(now).await;
        left -= now;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn new_tiles_names_what_changed() {
        assert_eq!(new_tiles(0, 0), vec![]);
        assert_eq!(
            new_tiles(0, 3),
            vec![(None, 0, 3), (Some(0), 0, 3)],
            "a partial bundle and level-0 tile"
        );
        // Growing within one partial tile: the new width only.
        assert_eq!(new_tiles(3, 5), vec![(None, 0, 5), (Some(0), 0, 5)]);
        // Nothing new for the same size.
        assert_eq!(new_tiles(5, 5), vec![]);
        // Crossing 256: the full tile, then the new partial one; level 1 appears.
        assert_eq!(
            new_tiles(250, 300),
            vec![
                (None, 0, 256),
                (None, 1, 44),
                (Some(0), 0, 256),
                (Some(0), 1, 44),
                (Some(1), 0, 1),
            ]
        );
        // Exactly full: no partial.
        assert_eq!(
            new_tiles(255, 256),
            vec![(None, 0, 256), (Some(0), 0, 256), (Some(1), 0, 1)]
        );
        // The C2SP tlog-tiles example sizes: 70,000 leaves has these partial tiles.
        let t = new_tiles(0, 70_000);
        for (level, index, width) in [
            (None, 273, 112),
            (Some(0), 273, 112),
            (Some(1), 1, 17),
            (Some(2), 0, 1),
        ] {
            assert!(
                t.contains(&(level, index, width)),
                "{level:?} {index} {width}"
            );
        }
        assert_eq!(t.iter().filter(|x| x.2 < 256).count(), 4);
        assert_eq!(tile_path(Some(1), 1, 17), "tile/1/001.p/17");
        assert_eq!(
            tile_path(None, 1_234_067, 256),
            "tile/entries/x001/x234/067"
        );
    }

    #[test]
    fn urls_are_checked() {
        for (url, words) in [
            ("ftp://x/y", "unsupported scheme"),
            ("s3:///prefix", "no bucket name"),
            ("gs:///prefix", "no bucket name (gs://BUCKET/PREFIX)"),
            ("az:///prefix", "no bucket name (az://BUCKET/PREFIX)"),
            ("gs://bucket/p?x=1", "a query or fragment"),
            ("file://host/dir", "file:///DIR"),
            ("not a url", "relative URL"),
        ] {
            let e = Bucket::open(url).unwrap_err().to_string();
            assert!(e.contains(words), "{url}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/mirror", dir.path().display());
        let b = Bucket::open(&url).unwrap();
        assert!(dir.path().join("mirror").is_dir());
        assert_eq!(b.url(), url);
    }
}
