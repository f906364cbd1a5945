//! The data directory's layout: the files a log keeps beside its database, and how private
//! files are written.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::InitError;

/// The origin a log gets when none is configured on first start.
pub const DEFAULT_ORIGIN: &str = "localhost/countersign";
/// File holding the log's Ed25519 seed (hex), mode 0600.
pub const KEY_FILE: &str = "log.key";
/// File the admin token is written to once, mode 0600.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// File holding the C2SP verifier key.
pub const VKEY_FILE: &str = "log.vkey";
/// Directory of the RocksDB database inside the data directory.
pub const DB_DIR: &str = "db";

/// Makes the entries of directory `dir` durable (fsync of the directory). A new file's name
/// survives a power cut only once its directory is synced, whatever was done to the file.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), InitError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| InitError::io("cannot sync directory", dir, e))
}

/// Writes a new file readable only by its owner, durably (the file and its directory are
/// synced); fails if it exists.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), InitError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| InitError::io("cannot create", path, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| InitError::io("cannot write", path, e))?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests;
