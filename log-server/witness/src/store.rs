//! Durable per-log state: one file per origin in the data directory, holding the last
//! checkpoint note the witness cosigned (with the log's signatures and the cosignature), which
//! carries the tree size and root hash.
//!
//! A file is replaced only whole: written to `<name>.tmp`, synced, renamed over `<name>`, and
//! the directory synced, so after a crash at any point the file holds the old note or the new
//! one, never a mix, and a note is on disk before its cosignature is returned.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use countersign_verifier::sha256;

/// The directory holding the per-log state files.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// `.lock`, held exclusively while the store is open: a second witness process on the same
    /// directory would not see this one's state, and could cosign a conflicting root.
    _lock: fs::File,
}

impl Store {
    /// Opens (creating if needed) the state directory.
    /// Fails if another process holds it.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        if !fs4::fs_std::FileExt::try_lock_exclusive(&lock)? {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is in use by another witness process (one process per data directory)",
                    dir.display()
                ),
            ));
        }
        Ok(Store {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// `<hex SHA-256(origin)>.checkpoint`: origins are arbitrary text, file names are not.
    pub fn path(&self, origin: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.checkpoint",
            hex::encode(sha256(origin.as_bytes()))
        ))
    }

    /// The stored note for `origin`, or `None` if the witness never cosigned for it.
    pub fn load(&self, origin: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(origin)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the stored note for `origin` durably (module documentation).
    pub fn save(&self, origin: &str, note: &[u8]) -> io::Result<()> {
        let path = self.path(origin);
        let tmp = path.with_extension("checkpoint.tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(note)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn save_replaces_and_load_reads() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state")).unwrap();
        assert_eq!(s.load("a/b").unwrap(), None);
        s.save("a/b", b"one").unwrap();
        s.save("a/b", b"two").unwrap();
        assert_eq!(s.load("a/b").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(s.load("a/c").unwrap(), None);
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != ".lock")
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".checkpoint"));
    }

    #[test]
    fn a_second_process_on_the_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("another witness process"), "{e}");
        drop(first);
        Store::open(dir.path()).unwrap();
    }
}
