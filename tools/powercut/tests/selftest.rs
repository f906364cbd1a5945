//! The tool can fail: plain `std::fs` code on the mount loses what it did not fsync at a power
//! cut, keeps what it did, and sees the faults injected. Mounting needs /dev/fuse and root (or
//! fusermount3); a machine without them fails these tests rather than skipping them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use countersign_powercut::{Failure, Op, PowerCutMount, Times};

fn mount() -> (tempfile::TempDir, PowerCutMount) {
    let tmp = tempfile::tempdir().unwrap();
    let m = PowerCutMount::mount(&tmp.path().join("mnt")).unwrap_or_else(|e| panic!("{e}"));
    (tmp, m)
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    File::open(path)?.read_to_end(&mut v)?;
    Ok(v)
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let (_tmp, m) = mount();
    let dir = m.path();
    fs::write(dir.join("unsynced"), b"gone").unwrap();
    let mut f = File::create(dir.join("synced")).unwrap();
    f.write_all(b"kept").unwrap();
    f.sync_all().unwrap();
    drop(f);
    sync_dir(dir);
    // Written after the last fsync of the file: lost.
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.join("synced"))
        .unwrap();
    f.write_all(b" and more").unwrap();
    drop(f);
    assert_eq!(read(&dir.join("synced")).unwrap(), b"kept and more");
    assert_eq!(read(&dir.join("unsynced")).unwrap(), b"gone");

    fs::write(dir.join("new"), b"gone too").unwrap();
    m.power_cut();
    // Its name was synced with the directory, its data never.
    assert_eq!(read(&dir.join("unsynced")).unwrap(), b"");
    assert_eq!(
        read(&dir.join("new")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(read(&dir.join("synced")).unwrap(), b"kept");
    assert_eq!(fs::metadata(dir.join("synced")).unwrap().len(), 4);
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["synced", "unsynced"]);
    assert_eq!(m.stats().power_cuts, 1);
    assert!(m.stats().file_syncs >= 1 && m.stats().dir_syncs >= 1);
}

#[test]
fn a_synced_file_without_a_synced_directory_is_lost() {
    let (_tmp, m) = mount();
    let dir = m.path();
    fs::create_dir(dir.join("sub")).unwrap();
    let mut f = File::create(dir.join("sub/file")).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_all().unwrap();
    drop(f);
    // The subdirectory's entry in the root was never synced.
    sync_dir(&dir.join("sub"));
    m.power_cut();
    assert!(!dir.join("sub").exists());
}

#[test]
fn a_rename_without_a_directory_sync_is_undone() {
    let (_tmp, m) = mount();
    let dir = m.path();
    let mut f = File::create(dir.join("CURRENT.tmp")).unwrap();
    f.write_all(b"MANIFEST-2\n").unwrap();
    f.sync_all().unwrap();
    drop(f);
    sync_dir(dir);
    fs::rename(dir.join("CURRENT.tmp"), dir.join("CURRENT")).unwrap();
    m.power_cut();
    assert!(!dir.join("CURRENT").exists());
    assert_eq!(read(&dir.join("CURRENT.tmp")).unwrap(), b"MANIFEST-2\n");

    fs::rename(dir.join("CURRENT.tmp"), dir.join("CURRENT")).unwrap();
    sync_dir(dir);
    m.power_cut();
    assert!(!dir.join("CURRENT.tmp").exists());
    assert_eq!(read(&dir.join("CURRENT")).unwrap(), b"MANIFEST-2\n");
}

#[test]
fn truncate_unlink_and_link_follow_the_syncs() {
    let (_tmp, m) = mount();
    let dir = m.path();
    let mut f = File::create(dir.join("a")).unwrap();
    f.write_all(b"0123456789").unwrap();
    f.sync_all().unwrap();
    f.set_len(3).unwrap();
    drop(f);
    fs::hard_link(dir.join("a"), dir.join("b")).unwrap();
    sync_dir(dir);
    fs::remove_file(dir.join("a")).unwrap();
    assert_eq!(read(&dir.join("b")).unwrap(), b"012");
    m.power_cut();
    // The truncation was not synced; the link was, the unlink not.
    assert_eq!(read(&dir.join("a")).unwrap(), b"0123456789");
    assert_eq!(read(&dir.join("b")).unwrap(), b"0123456789");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(dir.join("a")).unwrap().nlink(), 2);
}

#[test]
fn injected_faults_reach_the_caller_until_cleared() {
    let (_tmp, m) = mount();
    let dir = m.path();
    let mut f = File::create(dir.join("a")).unwrap();
    m.fail(Op::Write, Failure::Enospc, Times::Next(1));
    let e = f.write_all(b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    f.write_all(b"x").unwrap();

    m.fail(Op::Fsync, Failure::Eio, Times::UntilCleared);
    for _ in 0..2 {
        let e = f.sync_all().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    }
    m.fail(Op::Create, Failure::Eio, Times::UntilCleared);
    let e = File::create(dir.join("b")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let e = fs::create_dir(dir.join("d")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    m.fail(Op::Write, Failure::Eio, Times::UntilCleared);
    let e = f.write_all(b"y").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");

    m.clear_faults();
    f.write_all(b"y").unwrap();
    f.sync_all().unwrap();
    File::create(dir.join("b")).unwrap();
    assert_eq!(m.stats().injected, 6);
    assert_eq!(read(&dir.join("a")).unwrap(), b"xy");
}
