//! Backups: a consistent copy of a log's database and key files, taken while serving or from a
//! stopped data directory.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::datadir::{write_private, DB_DIR, KEY_FILE, VKEY_FILE};
use crate::error::{InitError, StorageError};
use crate::storage::{self, Store, CF_META, META_TREE};

/// Makes a consistent copy of a log into `to` (which must not exist): a RocksDB checkpoint of
/// the database (hard links where possible, taken while serving) and the key files. Returns the
/// tree size of the copy. The admin token's plain text is not copied.
pub fn backup_store(store: &Store, data_dir: &Path, to: &Path) -> Result<u64, InitError> {
    if to.exists() {
        return Err(InitError::Config(format!(
            "{} already exists",
            to.display()
        )));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)
        .map_err(|e| InitError::io("cannot create", to, e))?;
    let cp = rocksdb::checkpoint::Checkpoint::new(store.db())
        .map_err(|e| InitError::Storage(StorageError::Db(format!("checkpoint: {e}"))))?;
    cp.create_checkpoint(to.join(DB_DIR))
        .map_err(|e| InitError::Storage(StorageError::Db(format!("checkpoint: {e}"))))?;
    for name in [KEY_FILE, VKEY_FILE] {
        let src = data_dir.join(name);
        let bytes = fs::read(&src).map_err(|e| InitError::io("cannot read", &src, e))?;
        let dst = to.join(name);
        if name == KEY_FILE {
            write_private(&dst, &bytes)?;
        } else {
            fs::write(&dst, bytes).map_err(|e| InitError::io("cannot write", &dst, e))?;
        }
    }
    let backup = Store::open(&to.join(DB_DIR))?;
    let size = backup
        .get(CF_META, META_TREE)?
        .map(|v| storage::decode_tree(&v).map(|(s, _)| s))
        .transpose()?
        .unwrap_or(0);
    Ok(size)
}

/// Backs up a stopped log's data directory (fails if a server holds the database lock).
pub fn backup_offline(data_dir: &Path, to: &Path) -> Result<u64, InitError> {
    let store = Store::open(&data_dir.join(DB_DIR))?;
    backup_store(&store, data_dir, to)
}
