//! A FUSE file system for tests that loses, at a simulated power cut, everything a machine
//! losing power could lose: file data not fsynced, and directory entries (new, removed or
//! renamed) of directories not fsynced since. It can also fail writes, fsyncs and creates on
//! demand. See `README.md` beside this crate for what it models and what it does not.
//!
//! Test tooling only (publish = false): nothing in the server depends on it. It sits on the
//! `fuser` crate (pure Rust: mounting needs root, or the `fusermount3` helper otherwise).

mod fs;
mod model;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use fuser::{BackgroundSession, Config, INodeNo, MountOption, SessionACL};

use model::Model;

/// An operation faults can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `write` (and, for [`Failure::Enospc`], `fallocate`).
    Write,
    /// `fsync` and `fdatasync` of files, and `fsync` of directories.
    Fsync,
    /// Creating a file or directory.
    Create,
}

/// The error an injected fault answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: the file system is full.
    Enospc,
}

/// How long a fault lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// Every call fails until [`PowerCutMount::clear_faults`].
    UntilCleared,
    /// The next `n` calls fail.
    Next(u64),
}

/// What the file system has seen since it was mounted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Successful writes.
    pub writes: u64,
    /// Successful fsyncs and fdatasyncs of files.
    pub file_syncs: u64,
    /// Successful fsyncs of directories.
    pub dir_syncs: u64,
    /// Calls answered with an injected error.
    pub injected: u64,
    /// Power cuts so far.
    pub power_cuts: u64,
}

/// The file system could not be mounted.
#[derive(Debug)]
#[non_exhaustive]
pub enum MountError {
    /// The mount point could not be created.
    MountPoint(PathBuf, std::io::Error),
    /// The kernel refused the mount (no `/dev/fuse`, not root and no `fusermount3`, or no
    /// permission to mount in this container).
    Mount(PathBuf, std::io::Error),
}

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountError::MountPoint(p, e) => {
                write!(f, "cannot create the mount point {}: {e}", p.display())
            }
            MountError::Mount(p, e) => write!(
                f,
                "cannot mount the power-cut file system at {} (it needs /dev/fuse, and root or \
                 the fusermount3 helper from Debian's fuse3): {e}",
                p.display()
            ),
        }
    }
}

impl std::error::Error for MountError {}

/// A mounted power-cut file system. Dropping it unmounts it (also while a test unwinds from a
/// panic); stop every process using it first, or the unmount fails with `EBUSY` and the mount
/// stays until the test process exits.
pub struct PowerCutMount {
    model: Arc<Mutex<Model>>,
    held: Arc<(Mutex<bool>, Condvar)>,
    session: Option<BackgroundSession>,
    path: PathBuf,
}

impl std::fmt::Debug for PowerCutMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerCutMount")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PowerCutMount {
    /// Mounts an empty file system at `path` (created if missing), served by a background
    /// thread of this process.
    pub fn mount(path: &Path) -> Result<PowerCutMount, MountError> {
        std::fs::create_dir_all(path).map_err(|e| MountError::MountPoint(path.to_owned(), e))?;
        let model = Arc::new(Mutex::new(Model::new()));
        let held = Arc::new((Mutex::new(false), Condvar::new()));
        let (uid, gid) = owner();
        let fs = fs::PowerCutFs {
            model: model.clone(),
            held: held.clone(),
            uid,
            gid,
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("countersign-powercut".into()),
            MountOption::Subtype("powercut".into()),
            MountOption::NoAtime,
        ];
        config.acl = SessionACL::Owner;
        let session = fuser::spawn_mount(fs, path, &config)
            .map_err(|e| MountError::Mount(path.to_owned(), e))?;
        Ok(PowerCutMount {
            model,
            held,
            session: Some(session),
            path: path.to_owned(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loses everything not durable: file data written since the file's last fsync, and
    /// entries created, removed or renamed since their directory's last fsync. Call it while
    /// no process has a file of the mount open (after SIGKILL of the server), as a machine
    /// that lost power starts again with no process running. Faults stay as they were.
    pub fn power_cut(&self) {
        let inodes = self.model().power_cut();
        // Zero TTLs and direct I/O keep the kernel from caching anything; dropping what it
        // may still hold about an inode is belt and braces.
        if let Some(s) = &self.session {
            let notifier = s.notifier();
            for ino in inodes {
                // ENOENT: the kernel had forgotten this inode already.
                let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
            }
        }
    }

    /// Makes `op` fail with `failure`, `times` times or until cleared (replacing a fault
    /// injected into `op` before).
    pub fn fail(&self, op: Op, failure: Failure, times: Times) {
        self.model().inject(op, failure, times);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.model().clear_faults();
    }

    /// Holds every fsync back until [`PowerCutMount::release_syncs`], as a hung disk would:
    /// the calling process blocks in `fsync`. (The file system may serve its requests on one
    /// thread, so other operations can wait behind a held fsync too.)
    pub fn hold_syncs(&self) {
        self.set_held(true);
    }

    /// Lets held fsyncs go on (they then succeed or fail as the injected faults say).
    pub fn release_syncs(&self) {
        self.set_held(false);
    }

    fn set_held(&self, held: bool) {
        let (lock, cv) = &*self.held;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = held;
        cv.notify_all();
    }

    /// What the file system has seen so far.
    pub fn stats(&self) -> Stats {
        self.model().stats
    }
}

impl Drop for PowerCutMount {
    fn drop(&mut self) {
        // A held fsync would keep the unmount waiting for ever.
        self.release_syncs();
        if let Some(s) = self.session.take() {
            // Fails (and leaves the mount to the end of the process) only if a process still
            // uses it; there is no one to report that to in a drop.
            let _ = s.umount_and_join();
        }
    }
}

/// This process's effective user and group, the owner of every file.
fn owner() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    // The process's own /proc entry is owned by its effective ids; no unsafe libc call needed.
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}
