//! Opening a log in its data directory: keys, origin, admin token, the sequencer and the node
//! cache (backups are [`crate::backup`]).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::datadir::{
    sync_dir, write_private, ADMIN_TOKEN_FILE, DB_DIR, DEFAULT_ORIGIN, KEY_FILE, VKEY_FILE,
};
use crate::error::{InitError, StorageError};
use crate::http::{AdminAuth, LogApi};
use crate::log::{Backend, LogHandle, RpPolicy};
use crate::metrics::Metrics;
use crate::sequencer::{self, SequencerConfig};
use crate::signer::LogSigner;
use crate::storage::{Store, CF_META, META_ADMIN_HASH, META_ORIGIN, META_TREE};
use crate::submitters::SecretToken;

/// Server configuration (what `countersign serve` flags become).
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log origin; `None` keeps the stored one (or [`DEFAULT_ORIGIN`] on first start).
    pub origin: Option<String>,
    /// WebAuthn policy for decisions.
    pub policy: RpPolicy,
    /// Sequencer tunables.
    pub sequencer: SequencerConfig,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Column families other crates keep their records in ([`crate::storage::kv`]), opened
    /// (and created if missing) with the log's own.
    pub column_families: Vec<&'static str>,
}

fn load_or_create_seed(data_dir: &Path) -> Result<[u8; 32], InitError> {
    let path = data_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => {
            let b = hex::decode(s.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    InitError::Unusable(format!(
                        "{} does not hold a 32-byte hex seed",
                        path.display()
                    ))
                })?;
            Ok(b)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
            write_private(&path, format!("{}\n", hex::encode(seed)).as_bytes())?;
            Ok(seed)
        }
        Err(e) => Err(InitError::io("cannot read", &path, e)),
    }
}

/// A started log: its HTTP state plus what `serve` prints.
#[derive(Debug)]
pub struct Started {
    /// The state of [`crate::http::router`]; `api.log` is the log itself.
    pub api: LogApi,
    /// The C2SP verifier key.
    pub vkey: String,
    /// True when this start created the admin token (written to `admin.token`).
    pub created_admin_token: bool,
}

/// Opens (first start: creates) the log in `config.data_dir` and starts its sequencer.
pub fn start(config: Config) -> Result<Started, InitError> {
    let dir = &config.data_dir;
    if crate::storage::unsafe_no_sync() {
        tracing::warn!(
            "{}=1: writes are NOT fsynced; acknowledged entries are lost at a power cut. This \
             switch is for tests only: never run a log anyone relies on with it",
            crate::storage::UNSAFE_NO_SYNC_ENV
        );
    }
    let created = !dir.is_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| InitError::io("cannot create data directory", dir, e))?;
    // A data directory just created, and the database directory RocksDB creates in it, are
    // names that a power cut loses until their parent directories are synced (RocksDB syncs
    // only the database directory's own entries). The data directory is synced at every start
    // (cheap); its parent, which may not be ours to read, only when the directory is new.
    if let Some(parent) = dir
        .parent()
        .filter(|p| created && !p.as_os_str().is_empty())
    {
        sync_dir(parent)?;
    }
    let seed = load_or_create_seed(dir)?;
    let store = Store::open_with(&dir.join(DB_DIR), &config.column_families)?;
    sync_dir(dir)?;

    let origin = match store.get(CF_META, META_ORIGIN)? {
        Some(stored) => {
            let stored = String::from_utf8(stored)
                .map_err(|_| InitError::Unusable("stored origin is not UTF-8".into()))?;
            if let Some(wanted) = &config.origin {
                if *wanted != stored {
                    return Err(InitError::Unusable(format!(
                        "this log's origin is {stored:?}; refusing to start as {wanted:?} (an \
                         origin never changes: start a new log in another data directory)"
                    )));
                }
            }
            stored
        }
        None => {
            if store.get(CF_META, META_TREE)?.is_some() {
                return Err(InitError::Unusable(
                    "the store has a tree but no origin".into(),
                ));
            }
            let origin = config
                .origin
                .clone()
                .unwrap_or_else(|| DEFAULT_ORIGIN.to_owned());
            // Validate before persisting: the origin is also the key name.
            LogSigner::new(&origin, &seed).map_err(|e| InitError::Config(e.to_string()))?;
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(store.cf(CF_META)?, META_ORIGIN, origin.as_bytes());
            store.write_sync(wb)?;
            origin
        }
    };
    let signer =
        Arc::new(LogSigner::new(&origin, &seed).map_err(|e| InitError::Config(e.to_string()))?);

    let mut created_admin_token = false;
    let admin_hash = match admin_hash(&store)? {
        Some(h) => h,
        None => {
            let token = SecretToken::generate();
            let path = dir.join(ADMIN_TOKEN_FILE);
            // A crash between writing the file and storing the hash leaves a stale file.
            if path.exists() {
                fs::remove_file(&path).map_err(|e| InitError::io("cannot replace", &path, e))?;
            }
            write_private(&path, format!("{}\n", token.expose()).as_bytes())?;
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(store.cf(CF_META)?, META_ADMIN_HASH, token.hash());
            store.write_sync(wb)?;
            created_admin_token = true;
            token.hash()
        }
    };

    let vkey = signer.verifier_key().to_vkey();
    let vkey_path = dir.join(VKEY_FILE);
    fs::write(&vkey_path, format!("{vkey}\n"))
        .map_err(|e| InitError::io("cannot write", &vkey_path, e))?;

    let metrics = Arc::new(Metrics::new());
    let checkpoint_interval_ms = config.sequencer.checkpoint_interval.as_millis() as u64;
    let seq = sequencer::start(
        store.clone(),
        signer.clone(),
        config.sequencer.clone(),
        metrics.clone(),
    )?;
    let warm_from = Instant::now();
    let size = seq.shared().published().size;
    let warmed = store.warm_node_cache(size)?;
    tracing::info!(
        nodes = warmed,
        ms = warm_from.elapsed().as_millis() as u64,
        "node cache loaded"
    );
    let log = LogHandle {
        backend: Backend::Embedded { store, seq },
        signer,
        policy: Arc::new(config.policy.clone()),
        metrics,
        witnessing: Arc::default(),
    };
    Ok(Started {
        api: LogApi {
            log,
            admin: AdminAuth::new(admin_hash),
            data_dir: config.data_dir.clone(),
            max_body_bytes: config.max_body_bytes,
            checkpoint_interval_ms,
            metrics_sources: Vec::new(),
        },
        vkey,
        created_admin_token,
    })
}

/// Starts an instance of the shared driver (`spec/shared-driver.md`): the log in the PostgreSQL
/// database at `database` and in `bucket`, with the keys of the data directory
/// `config.data_dir` (a copy of one made by a first `countersign serve`: its key seed, verifier
/// key and admin token files). Nothing is written to the data directory.
pub async fn start_shared(
    config: &Config,
    database: &str,
    bucket: crate::bucket::Bucket,
    shared: crate::shared::SharedConfig,
) -> Result<Started, InitError> {
    let dir = &config.data_dir;
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(|e| {
            InitError::io(
                "the shared driver reads the keys of a data directory made by a first \
                 `countersign serve` (copy it to every instance); cannot read",
                &path,
                e,
            )
        })
    };
    let seed_text = read(KEY_FILE)?;
    let vkey = read(VKEY_FILE)?.trim().to_owned();
    let admin = SecretToken::new(read(ADMIN_TOKEN_FILE)?.trim());
    let seed = hex::decode(seed_text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            InitError::Unusable(format!("{} does not hold a 32-byte hex seed", KEY_FILE))
        })?;
    // The origin is the verifier key's name (`<origin>+<id>+<key>`).
    let origin = vkey
        .split('+')
        .next()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| InitError::Unusable(format!("{VKEY_FILE} is not a verifier key")))?
        .to_owned();
    if let Some(wanted) = config.origin.as_ref().filter(|w| **w != origin) {
        return Err(InitError::Unusable(format!(
            "this log's origin is {origin:?}; refusing to start as {wanted:?}"
        )));
    }
    let signer =
        Arc::new(LogSigner::new(&origin, &seed).map_err(|e| InitError::Config(e.to_string()))?);
    if signer.verifier_key().to_vkey() != vkey {
        return Err(InitError::Unusable(format!(
            "{VKEY_FILE} does not match the key in {KEY_FILE}: the data directory is damaged"
        )));
    }
    let log = crate::shared::SharedLog::start(database, bucket.clone(), signer, shared)
        .await
        .map_err(|e| InitError::Config(e.to_string()))?;
    let tiles = Arc::new(crate::shared::reads::TileReader::new(
        bucket,
        crate::shared::TILE_CACHE_BYTES,
    ));
    let metrics = Arc::new(Metrics::new());
    let log = LogHandle::shared(log, tiles, config.policy.clone(), metrics);
    Ok(Started {
        api: LogApi {
            log,
            admin: AdminAuth::new(admin.hash()),
            data_dir: config.data_dir.clone(),
            max_body_bytes: config.max_body_bytes,
            checkpoint_interval_ms: config.sequencer.checkpoint_interval.as_millis() as u64,
            metrics_sources: Vec::new(),
        },
        vkey,
        created_admin_token: false,
    })
}

/// Reads the admin token hash from the store.
fn admin_hash(store: &Store) -> Result<Option<[u8; 32]>, StorageError> {
    store
        .get(CF_META, META_ADMIN_HASH)?
        .map(|v| {
            v.try_into()
                .map_err(|_| StorageError::Corrupt("admin token hash is not 32 bytes".into()))
        })
        .transpose()
}

#[cfg(test)]
mod tests;
