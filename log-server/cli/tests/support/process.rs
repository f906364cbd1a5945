//! The real `countersign` binary as a child process on a loopback port, for the tests that kill
//! and restart it. A [`Process`] dropped while running (a failing test) is killed, not leaked.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Rounds of a crash test: `quick` in the default test run, `soak` with `COUNTERSIGN_SOAK` set.
pub fn rounds(quick: usize, soak: usize) -> usize {
    if std::env::var_os("COUNTERSIGN_SOAK").is_some() {
        soak
    } else {
        quick
    }
}

/// The seed of a randomised test: `COUNTERSIGN_SEED` if set, else a random one. Printed with the
/// test's name, so that a failing run can be replayed with `COUNTERSIGN_SEED=<seed>`.
pub fn seed(name: &str) -> u64 {
    let seed: u64 = std::env::var("COUNTERSIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{name}: seed {seed}");
    seed
}

/// A port free on 127.0.0.1 when asked.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `countersign serve --data-dir DIR --listen 127.0.0.1:PORT ARGS...`, quiet (RUST_LOG=warn,
/// standard output discarded, standard error in the temporary directory, shown if it does not
/// become healthy).
pub struct Process {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Where standard error goes, if not the temporary directory.
    stderr_to: Option<PathBuf>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Process {
    pub fn spawn(dir: &Path, port: u16, args: &[&str]) -> Process {
        Process::spawn_with_env(dir, port, args, &[])
    }

    /// As [`Process::spawn`], with these environment variables set (also on every restart).
    pub fn spawn_with_env(dir: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut p = Process {
            child: None,
            dir: dir.to_owned(),
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stderr_to: None,
            url: format!("http://127.0.0.1:{port}"),
        };
        p.start();
        p
    }

    /// As [`Process::spawn`], its standard error written to the file `stderr` (also on every
    /// restart).
    pub fn spawn_logging_to(dir: &Path, port: u16, args: &[&str], stderr: &Path) -> Process {
        let mut p = Process {
            child: None,
            dir: dir.to_owned(),
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            stderr_to: Some(stderr.to_owned()),
            url: format!("http://127.0.0.1:{port}"),
        };
        p.start();
        p
    }

    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["serve", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(
                // What a failing test's server said, in the system's temporary directory (not
                // beside the data directory, which may be on a file system that fails writes).
                std::fs::File::create(self.stderr_path())
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Where the server's standard error goes.
    fn stderr_path(&self) -> PathBuf {
        self.stderr_to.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("countersign-test-server-{}.stderr", self.port))
        })
    }

    /// Waits (up to 30 s) until `/healthz` answers 200.
    pub async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not become healthy; its standard error:\n{}",
                std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM (graceful stop); the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("the server is not running");
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        c.wait().unwrap()
    }

    /// Starts the server again on the same directory, port and flags.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.start();
    }

    /// Reads a file of the data directory (admin token, vkey), trimmed.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Kept when the test failed, for whoever reads its output.
        if !std::thread::panicking() && self.stderr_to.is_none() {
            let _ = std::fs::remove_file(self.stderr_path());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
