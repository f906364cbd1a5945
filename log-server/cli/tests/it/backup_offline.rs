//! `countersign backup` of a stopped data directory: with nothing answering at --url, and with
//! no admin token to ask a server with, it copies the store itself.

use std::process::Command;

use crate::process::{free_port, Process};

/// `countersign backup --to TO --data-dir DIR --url URL`: success, stdout, stderr.
fn backup(dir: &std::path::Path, to: &std::path::Path, url: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["backup", "--to"])
        .arg(to)
        .arg("--data-dir")
        .arg(dir)
        .args(["--url", url])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_stopped_log_is_backed_up_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut server = Process::spawn(&dir, free_port(), &["--log-only"]);
    server.wait_ready(&reqwest::Client::new()).await;
    assert!(server.terminate().success());

    let nobody = format!("http://127.0.0.1:{}", free_port());
    let to = tmp.path().join("copy");
    let (d, t, u) = (dir.clone(), to.clone(), nobody.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || backup(&d, &t, &u))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        err.contains(&format!(
            "no server at {nobody}; backing up the stopped data directory"
        )),
        "{err}"
    );
    assert!(
        out.contains("offline backup of tree size 0 written"),
        "{out}"
    );
    assert!(to.join("db").is_dir() && to.join("log.key").is_file());
    assert_eq!(
        std::fs::read(to.join("log.key")).unwrap(),
        std::fs::read(dir.join("log.key")).unwrap()
    );

    // Without the admin token there is no server to ask: the store is copied all the same.
    std::fs::remove_file(dir.join("admin.token")).unwrap();
    let to2 = tmp.path().join("copy2");
    let (d, t) = (dir.clone(), to2.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || backup(&d, &t, &nobody))
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("no admin token in the data directory; backing up the stopped data directory"),
        "{err}"
    );
    assert!(to2.join("db").is_dir());

    // An existing destination is refused, offline too, and left as it was.
    let (d, t) = (dir.clone(), to2.clone());
    let url = format!("http://127.0.0.1:{}", free_port());
    let (ok, out, err) = tokio::task::spawn_blocking(move || backup(&d, &t, &url))
        .await
        .unwrap();
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains(&format!("{} already exists", to2.display())),
        "{err}"
    );
    assert!(to2.join("db").is_dir());
}
