#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_private_file_is_written_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    write_private(&path, b"seed").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"seed");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Never over an existing file: the error names the file, and its contents stay.
    let err = write_private(&path, b"other").unwrap_err().to_string();
    assert!(err.starts_with("cannot create "), "{err}");
    assert!(err.contains("secret"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"seed");
}

#[test]
fn a_file_in_a_missing_directory_is_refused_by_name() {
    let err = write_private(Path::new("missing-dir/secret"), b"x")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot create missing-dir/secret"), "{err}");
    // The working directory (what a bare file name's empty parent means) can be synced.
    sync_dir(Path::new(".")).unwrap();
}

#[test]
fn syncing_a_missing_directory_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone");
    let err = sync_dir(&missing).unwrap_err().to_string();
    assert!(err.starts_with("cannot sync directory "), "{err}");
    assert!(err.contains("gone"), "{err}");
}
