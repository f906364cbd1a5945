//! `countersign migrate`: moves an embedded log (a stopped server's data directory, or a backup)
//! into a shared deployment's database and bucket (`spec/shared-driver.md`), with the same
//! tree: every entry at the same index, so the shared log's checkpoint at the embedded log's
//! size is the embedded log's own, byte for byte (same key, same root, deterministic
//! signature). Submitter tokens go with it. Resumable: entries already in the database are
//! found again by exact dedup at the same index; anything else is refused.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use countersign_log::storage::{decode_tree, CF_META, META_TREE};

/// `countersign migrate`.
#[derive(clap::Args, Clone, Debug)]
pub struct MigrateArgs {
    /// Data directory of the embedded log (its server stopped), or a backup of one.
    #[arg(
        long,
        env = "COUNTERSIGN_DATA_DIR",
        default_value = "./countersign-data"
    )]
    pub data_dir: PathBuf,
    /// The shared deployment's PostgreSQL database (postgres://…); empty, or holding a
    /// migration of this log that was interrupted.
    #[arg(
        long,
        env = "COUNTERSIGN_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: String,
    /// The shared deployment's bucket (s3://BUCKET/PREFIX or file:///DIR).
    #[arg(long, env = "COUNTERSIGN_TILES", value_name = "URL")]
    pub tiles: String,
    /// Entries handed to the shared log at once.
    #[arg(long, default_value_t = 4096)]
    pub chunk: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What a migration did.
#[derive(Debug)]
pub struct Migrated {
    /// Entries in the log.
    pub size: u64,
    /// Of them, already in the database (an interrupted migration resumed).
    pub already: u64,
    /// Submitter tokens copied.
    pub submitters: usize,
    /// Records of the approval front end copied (clients, approvers, requests, evidence, audit
    /// events, token keys: every key of its area, as is).
    pub records: usize,
    /// Witness records copied (what each witness last cosigned).
    pub witness_records: usize,
    /// The checkpoint both logs sign at `size`.
    pub checkpoint: String,
    /// Wall time.
    pub seconds: f64,
}

/// Runs a migration.
pub async fn run(a: MigrateArgs) -> anyhow::Result<Migrated> {
    let started = Instant::now();
    let data = countersign_approvals::audit::open_data_dir(&a.data_dir).with_context(|| {
        format!(
            "opening the embedded log in {} (stop its server first)",
            a.data_dir.display()
        )
    })?;
    let store = data.log;
    let (size, peaks) = match store.get(CF_META, META_TREE)? {
        Some(v) => decode_tree(&v)?,
        None => bail!("{} holds no log", a.data_dir.display()),
    };
    let root = countersign_verifier::RootStack::from_parts(size, peaks)
        .map(|s| s.root())
        .context("the stored tree state does not decode")?;
    let embedded_note = store
        .checkpoint(size)?
        .context("the embedded log has no checkpoint at its own size")?;
    let bucket = countersign_log::bucket::Bucket::open(&a.tiles)?;
    let config = countersign_log::Config {
        data_dir: a.data_dir.clone(),
        origin: None,
        policy: countersign_log::RpPolicy {
            rp_id: String::new(),
            allowed_origins: Vec::new(),
            require_user_verification: false,
        },
        sequencer: countersign_log::SequencerConfig::default(),
        max_body_bytes: countersign_log::DEFAULT_MAX_BODY_BYTES,
        column_families: Vec::new(),
    };
    let shared = countersign_log::start_shared(
        &config,
        &a.database,
        bucket,
        countersign_log::shared::SharedConfig {
            publish_timeout: std::time::Duration::from_secs(120),
            ..countersign_log::shared::SharedConfig::default()
        },
    )
    .await
    .context("opening the shared deployment")?;
    let log = shared
        .api
        .log
        .shared_log()
        .context("the shared driver started")?
        .clone();
    if log.published().size > size {
        bail!(
            "the database already holds {} entries, more than this log's {size}: it is not an \
             interrupted migration of this log",
            log.published().size
        );
    }
    let pb = crate::export::progress(a.quiet, size, "entries");
    let mut already = 0u64;
    let chunk = a.chunk.clamp(1, 65_536) as u64;
    let mut at = 0u64;
    while at < size {
        let end = (at + chunk).min(size);
        let s = store.clone();
        let entries = tokio::task::spawn_blocking(move || s.entries(at, end)).await??;
        let mut items = Vec::with_capacity(entries.len());
        for e in entries {
            let kind = countersign_log::log::append_kind_of(&e)
                .map_err(|err| anyhow::anyhow!("entry {}: {err}", at + items.len() as u64))?;
            let leaf = countersign_verifier::leaf_hash(&e);
            items.push((e, leaf, kind));
        }
        for (i, r) in log.append_many(items).await.into_iter().enumerate() {
            let want = at + i as u64;
            let got = r.map_err(|e| anyhow::anyhow!("entry {want}: {e}"))?;
            if got.index != want {
                bail!(
                    "entry {want} landed at index {} of the shared log: the database holds \
                     another log's entries; nothing more is copied",
                    got.index
                );
            }
            if got.existing {
                already += 1;
            }
        }
        pb.set_position(end);
        at = end;
    }
    pb.finish_and_clear();
    let mut submitters = 0;
    for (hash, name) in store.submitters()? {
        log.import_submitter(&hash, &name).await?;
        submitters += 1;
    }
    let records = copy_records(&data.ciba, log.db(), a.quiet).await?;
    // What the witnesses cosigned: served at once by the shared deployment, and each witness
    // followed on from where it is (a record the database already has is kept).
    let mut witness_records = 0;
    for (vkey, json) in countersign_log::witness::stored_records(&store)? {
        if log.import_witness_record(&vkey, &json).await? {
            witness_records += 1;
        }
    }
    let published = log.published();
    if published.size != size || published.root != root {
        bail!(
            "the shared log's checkpoint (size {}, root {}) is not the embedded log's (size \
             {size}, root {}): do not use the shared deployment",
            published.size,
            published.root.to_hex(),
            root.to_hex()
        );
    }
    if *published.note != *embedded_note {
        bail!("the shared log's checkpoint note differs from the embedded log's");
    }
    log.shutdown();
    Ok(Migrated {
        size,
        already,
        submitters,
        records,
        witness_records,
        checkpoint: embedded_note,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Copies every record of the front end's area into the database's, key for key (a record
/// already there is replaced by the embedded one: a resumed migration copies again). Returns
/// how many.
async fn copy_records(
    from: &countersign_approvals::CibaStore,
    db: &countersign_log::shared::pg::Db,
    quiet: bool,
) -> anyhow::Result<usize> {
    const PAGE: usize = 2048;
    let to = countersign_log::shared::kv::SharedKv::open(db.clone(), "p/")
        .await
        .context("opening the database's record area")?;
    let pb = crate::export::progress(quiet, 0, "records");
    let mut copied = 0usize;
    let mut start: Vec<u8> = Vec::new();
    loop {
        let page = from.scan_range(&start, None, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        start = last.as_bytes().to_vec();
        start.push(0);
        let full = page.len() == PAGE;
        let mut b = countersign_log::storage::kv::Batch::new();
        for (k, v) in page {
            b.put(k, v);
            copied += 1;
        }
        to.commit(b, countersign_log::storage::kv::Durability::Sync)
            .await
            .context("copying the approval records")?;
        pb.set_position(copied as u64);
        if !full {
            break;
        }
    }
    pb.finish_and_clear();
    Ok(copied)
}
