//! The in-memory file system: every inode's current state and the state a power cut leaves,
//! plus the faults to inject. No FUSE types other than the errno: [`crate::fs`] translates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use fuser::Errno;

use crate::{Failure, Op, Stats, Times};

/// The root directory's inode number (FUSE's).
pub(crate) const ROOT: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
}

/// One inode. A file's `data` is what reads see; `durable` is what an fsync of this inode last
/// made durable. A directory's `entries` are what lookups see; `durable_entries` what an fsync
/// of the directory last made durable. Size is part of the data (fsync and fdatasync both make
/// it durable); mode and times are not modelled as volatile.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) perm: u16,
    pub(crate) data: Vec<u8>,
    durable: Vec<u8>,
    pub(crate) entries: BTreeMap<OsString, u64>,
    durable_entries: BTreeMap<OsString, u64>,
    /// Directory entries naming this inode now (files only; directories report 2).
    pub(crate) nlink: u32,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
    pub(crate) atime: SystemTime,
}

impl Node {
    fn new(kind: Kind, perm: u16) -> Node {
        let now = SystemTime::now();
        Node {
            kind,
            perm,
            data: Vec::new(),
            durable: Vec::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            nlink: 1,
            mtime: now,
            ctime: now,
            atime: now,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Injected {
    errno: Errno,
    /// `None`: until cleared.
    remaining: Option<u64>,
}

/// The whole file system.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) nodes: HashMap<u64, Node>,
    next_ino: u64,
    faults: HashMap<Op, Injected>,
    pub(crate) stats: Stats,
}

impl Model {
    pub(crate) fn new() -> Model {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(Kind::Dir, 0o755));
        Model {
            nodes,
            next_ino: ROOT + 1,
            faults: HashMap::new(),
            stats: Stats::default(),
        }
    }

    pub(crate) fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: u64) -> Result<&Node, Errno> {
        let n = self.node(ino)?;
        if n.kind == Kind::Dir {
            Ok(n)
        } else {
            Err(Errno::ENOTDIR)
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        let n = self.node_mut(ino)?;
        if n.kind == Kind::Dir {
            Ok(n)
        } else {
            Err(Errno::ENOTDIR)
        }
    }

    pub(crate) fn inject(&mut self, op: Op, failure: Failure, times: Times) {
        let errno = match failure {
            Failure::Eio => Errno::EIO,
            Failure::Enospc => Errno::ENOSPC,
        };
        let remaining = match times {
            Times::UntilCleared => None,
            Times::Next(n) => Some(n),
        };
        self.faults.insert(op, Injected { errno, remaining });
    }

    pub(crate) fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The injected error for `op`, if any (and counts it down).
    fn fault(&mut self, op: Op) -> Result<(), Errno> {
        let Some(f) = self.faults.get_mut(&op) else {
            return Ok(());
        };
        let errno = f.errno;
        match &mut f.remaining {
            Some(0) => {
                self.faults.remove(&op);
                return Ok(());
            }
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.faults.remove(&op);
                }
            }
            None => {}
        }
        self.stats.injected += 1;
        Err(errno)
    }

    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    /// A new file or directory `name` in `parent` (the entry is not durable until `parent` is
    /// fsynced).
    pub(crate) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        perm: u16,
    ) -> Result<u64, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        self.fault(Op::Create)?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, Node::new(kind, perm));
        let p = self.dir_mut(parent)?;
        p.entries.insert(name.to_owned(), ino);
        p.mtime = SystemTime::now();
        Ok(ino)
    }

    pub(crate) fn link(&mut self, ino: u64, parent: u64, name: &OsStr) -> Result<(), Errno> {
        if self.node(ino)?.kind == Kind::Dir {
            return Err(Errno::EPERM);
        }
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        let n = self.node_mut(ino)?;
        n.nlink += 1;
        n.ctime = SystemTime::now();
        Ok(())
    }

    /// Removes `name` from `parent`; `dir` says whether it must be an (empty) directory.
    pub(crate) fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let n = self.node(ino)?;
        match (dir, n.kind) {
            (true, Kind::File) => return Err(Errno::ENOTDIR),
            (false, Kind::Dir) => return Err(Errno::EISDIR),
            (true, Kind::Dir) if !n.entries.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.dir_mut(parent)?.entries.remove(name);
        let n = self.node_mut(ino)?;
        n.nlink = n.nlink.saturating_sub(1);
        Ok(())
    }

    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let kind = self.node(ino)?.kind;
        if let Ok(target) = self.lookup(new_parent, new_name) {
            if target == ino {
                return Ok(());
            }
            if no_replace {
                return Err(Errno::EEXIST);
            }
            let t = self.node(target)?;
            match (kind, t.kind) {
                (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
                (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !t.entries.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
            let t = self.node_mut(target)?;
            t.nlink = t.nlink.saturating_sub(1);
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(new_parent)?
            .entries
            .insert(new_name.to_owned(), ino);
        Ok(())
    }

    pub(crate) fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8], Errno> {
        let n = self.node(ino)?;
        if n.kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(n.data.len());
        let end = start.saturating_add(size as usize).min(n.data.len());
        Ok(&n.data[start..end])
    }

    pub(crate) fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<u32, Errno> {
        self.fault(Op::Write)?;
        let n = self.node_mut(ino)?;
        if n.kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        let start = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
        let end = start.checked_add(bytes.len()).ok_or(Errno::EFBIG)?;
        if n.data.len() < end {
            n.data.resize(end, 0);
        }
        n.data[start..end].copy_from_slice(bytes);
        n.mtime = SystemTime::now();
        self.stats.writes += 1;
        u32::try_from(bytes.len()).map_err(|_| Errno::EINVAL)
    }

    pub(crate) fn truncate(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        let n = self.node_mut(ino)?;
        if n.kind == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        n.data
            .resize(usize::try_from(size).map_err(|_| Errno::EFBIG)?, 0);
        n.mtime = SystemTime::now();
        Ok(())
    }

    /// `fallocate`: mode 0 extends the file with zeros; `FALLOC_FL_KEEP_SIZE` only reserves
    /// space, which a memory file system need not do. Punching holes is not supported.
    pub(crate) fn allocate(
        &mut self,
        ino: u64,
        offset: u64,
        len: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        // Running out of space shows in fallocate first.
        if self
            .faults
            .get(&Op::Write)
            .is_some_and(|f| f.errno == Errno::ENOSPC)
        {
            self.fault(Op::Write)?;
        }
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        let n = self.node_mut(ino)?;
        if mode == 0 && (n.data.len() as u64) < end {
            n.data
                .resize(usize::try_from(end).map_err(|_| Errno::EFBIG)?, 0);
        }
        Ok(())
    }

    /// fsync or fdatasync of a file, or fsync of a directory: its current state becomes durable.
    pub(crate) fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        self.fault(Op::Fsync)?;
        let n = self.node_mut(ino)?;
        match n.kind {
            Kind::File => {
                n.durable.clone_from(&n.data);
                self.stats.file_syncs += 1;
            }
            Kind::Dir => {
                n.durable_entries.clone_from(&n.entries);
                self.stats.dir_syncs += 1;
            }
        }
        Ok(())
    }

    /// Every inode back to its durable state; what no durable entry reaches is gone. Returns
    /// the inode numbers that existed before (for the kernel's caches to be invalidated).
    pub(crate) fn power_cut(&mut self) -> Vec<u64> {
        let before: Vec<u64> = self.nodes.keys().copied().collect();
        for n in self.nodes.values_mut() {
            n.data.clone_from(&n.durable);
            n.entries.clone_from(&n.durable_entries);
            n.nlink = 0;
        }
        let mut reachable = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        let mut links: HashMap<u64, u32> = HashMap::new();
        while let Some(ino) = stack.pop() {
            let Some(n) = self.nodes.get(&ino) else {
                continue;
            };
            for child in n.entries.values() {
                *links.entry(*child).or_default() += 1;
                if reachable.insert(*child) {
                    stack.push(*child);
                }
            }
        }
        self.nodes.retain(|ino, _| reachable.contains(ino));
        for (ino, n) in &mut self.nodes {
            n.nlink = links.get(ino).copied().unwrap_or(1);
        }
        self.stats.power_cuts += 1;
        before
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn unsynced_data_and_entries_are_lost() {
        let mut m = Model::new();
        let f = m.create(ROOT, os("a"), Kind::File, 0o644).unwrap();
        m.write(f, 0, b"hello").unwrap();
        m.sync(f).unwrap();
        // The file's data is durable, its name is not.
        m.power_cut();
        assert_eq!(m.lookup(ROOT, os("a")), Err(Errno::ENOENT));

        let f = m.create(ROOT, os("b"), Kind::File, 0o644).unwrap();
        m.sync(ROOT).unwrap();
        m.write(f, 0, b"lost").unwrap();
        m.power_cut();
        let f = m.lookup(ROOT, os("b")).unwrap();
        assert_eq!(m.read(f, 0, 100).unwrap(), b"");

        m.write(f, 0, b"kept").unwrap();
        m.sync(f).unwrap();
        m.write(f, 4, b" and lost").unwrap();
        m.power_cut();
        assert_eq!(m.read(f, 0, 100).unwrap(), b"kept");
    }

    #[test]
    fn rename_and_unlink_are_undone_without_a_directory_sync() {
        let mut m = Model::new();
        let f = m.create(ROOT, os("tmp"), Kind::File, 0o644).unwrap();
        m.sync(ROOT).unwrap();
        m.rename(ROOT, os("tmp"), ROOT, os("final"), false).unwrap();
        m.power_cut();
        assert_eq!(m.lookup(ROOT, os("tmp")), Ok(f));
        assert_eq!(m.lookup(ROOT, os("final")), Err(Errno::ENOENT));

        m.remove(ROOT, os("tmp"), false).unwrap();
        m.power_cut();
        assert_eq!(m.lookup(ROOT, os("tmp")), Ok(f));
        m.remove(ROOT, os("tmp"), false).unwrap();
        m.sync(ROOT).unwrap();
        m.power_cut();
        assert_eq!(m.lookup(ROOT, os("tmp")), Err(Errno::ENOENT));
        assert!(!m.nodes.contains_key(&f), "an unreachable inode is dropped");
    }

    #[test]
    fn injected_faults_fail_then_clear() {
        let mut m = Model::new();
        let f = m.create(ROOT, os("a"), Kind::File, 0o644).unwrap();
        m.inject(Op::Write, Failure::Enospc, Times::Next(2));
        assert_eq!(m.write(f, 0, b"x"), Err(Errno::ENOSPC));
        assert_eq!(m.write(f, 0, b"x"), Err(Errno::ENOSPC));
        assert_eq!(m.write(f, 0, b"x"), Ok(1));
        m.inject(Op::Fsync, Failure::Eio, Times::UntilCleared);
        for _ in 0..3 {
            assert_eq!(m.sync(f), Err(Errno::EIO));
        }
        m.inject(Op::Create, Failure::Eio, Times::UntilCleared);
        assert_eq!(m.create(ROOT, os("b"), Kind::File, 0o644), Err(Errno::EIO));
        m.clear_faults();
        assert_eq!(m.sync(f), Ok(()));
        assert!(m.create(ROOT, os("b"), Kind::File, 0o644).is_ok());
        assert_eq!(m.stats.injected, 6);
        assert_eq!((m.stats.file_syncs, m.stats.dir_syncs), (1, 0));
    }

    #[test]
    fn a_failed_fsync_makes_nothing_durable() {
        let mut m = Model::new();
        let f = m.create(ROOT, os("a"), Kind::File, 0o644).unwrap();
        m.sync(ROOT).unwrap();
        m.write(f, 0, b"data").unwrap();
        m.inject(Op::Fsync, Failure::Eio, Times::Next(1));
        assert_eq!(m.sync(f), Err(Errno::EIO));
        m.power_cut();
        assert_eq!(m.read(f, 0, 10).unwrap(), b"");
    }

    #[test]
    fn hard_links_survive_as_the_directory_was_synced() {
        let mut m = Model::new();
        let d = m.create(ROOT, os("d"), Kind::Dir, 0o755).unwrap();
        let f = m.create(d, os("a"), Kind::File, 0o644).unwrap();
        m.sync(ROOT).unwrap();
        m.sync(d).unwrap();
        m.link(f, ROOT, os("b")).unwrap();
        assert_eq!(m.node(f).unwrap().nlink, 2);
        m.sync(ROOT).unwrap();
        m.remove(d, os("a"), false).unwrap();
        m.power_cut();
        assert_eq!(m.lookup(d, os("a")), Ok(f));
        assert_eq!(m.lookup(ROOT, os("b")), Ok(f));
        assert_eq!(m.node(f).unwrap().nlink, 2);
        assert_eq!(m.remove(ROOT, os("d"), true), Err(Errno::ENOTEMPTY));
    }
}
