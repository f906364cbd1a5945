//! `countersign serve` starting: a busy port is refused before anything is created, the banner
//! names the URLs to open and the labelled log key without escape codes in redirected output,
//! and discovery lists the configured `authorization_details` types.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_busy_port_is_refused_before_the_data_directory_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", &addr.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{addr} is in use; pick another with --listen")),
        "{err}"
    );
    assert!(
        !data.exists(),
        "no data directory, key or admin token left behind"
    );
    assert!(out.stdout.is_empty());
}

/// A child process killed when dropped (a failing test leaves no server behind).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `from` until a line holds `last`; returns what was read.
fn read_until(from: impl std::io::Read, last: &str) -> String {
    let mut got = String::new();
    for line in BufReader::new(from).lines() {
        let line = line.unwrap();
        got.push_str(&line);
        got.push('\n');
        if line.contains(last) {
            return got;
        }
    }
    panic!("no {last:?} line in:\n{got}");
}

#[tokio::test]
async fn the_banner_names_what_to_open_with_no_escape_codes_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .env_remove("COUNTERSIGN_AUTHORIZATION_DETAILS_TYPES")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    // Killing the server (on a timeout, by the drop) closes the pipe and ends the read.
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || read_until(stderr, "admin token")),
    )
    .await
    .expect("the banner within 30 s")
    .unwrap();
    drop(child);

    assert!(!err.contains("\x1b["), "no ANSI escape codes: {err:?}");
    // The port the listener got, from the banner's first line.
    let first = err
        .lines()
        .find(|l| l.starts_with("countersign is serving on "))
        .unwrap_or_else(|| panic!("{err}"));
    let port = first
        .rsplit("(bound to 127.0.0.1:")
        .next()
        .unwrap()
        .trim_end_matches(')');
    let base = format!("http://localhost:{port}");
    assert_eq!(
        first,
        format!("countersign is serving on {base} (bound to 127.0.0.1:{port})")
    );
    let vkey = std::fs::read_to_string(data.join("log.vkey")).unwrap();
    let token = std::path::absolute(data.join("admin.token")).unwrap();
    for want in [
        format!("  start page        {base}/\n"),
        format!("  approver inbox    {base}/approve\n"),
        format!("  verify a bundle   {base}/verify\n"),
        format!("  log browser       {base}/log\n"),
        format!("  OpenID discovery  {base}/.well-known/openid-configuration\n"),
        format!("  log key (C2SP vkey): {}\n", vkey.trim()),
        format!(
            "  data directory    {}\n",
            std::path::absolute(&data).unwrap().display()
        ),
        format!("  admin token       {} (created now;", token.display()),
    ] {
        assert!(err.contains(&want), "{want:?} in\n{err}");
    }
    // Unrestricted types are warned of, with the way to restrict them.
    assert!(
        err.contains(" WARN ") && err.contains("--authorization-details-type TYPE"),
        "{err}"
    );
}

#[tokio::test]
async fn discovery_lists_the_configured_types_and_only_those_are_accepted() {
    let s = Server::start_with(|mut c| {
        c.authorization_details_types = vec!["payment_initiation".into(), "deploy".into()];
        c
    })
    .await;
    let v = s.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        v["authorization_details_types_supported"],
        json!(["payment_initiation", "deploy"])
    );
    let client = s.add_client("agent", "poll", None).await;
    let _alice = s.add_approver("apv_alice", 1).await;
    client.ask("apv_alice", &[]).await;
    let got = client
        .bc_authorize(
            "apv_alice",
            &[(
                "authorization_details",
                r#"[{"type":"deploy","service":"api"},{"type":"shell_command","command":"ls"}]"#,
            )],
        )
        .await;
    assert_refused(
        "an unlisted type",
        &got,
        400,
        "invalid_authorization_details",
        &["type is not supported"],
    );
}
