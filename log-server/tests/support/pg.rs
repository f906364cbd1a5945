//! A fresh PostgreSQL database for each test, on the server `COUNTERSIGN_TEST_DATABASE` names
//! (scripts/test.sh starts one with scripts/pg-server.sh and sets it), shared by the test
//! crates.

use tokio_postgres::{Client, NoTls};

/// The test server's URL. Unset, the test is skipped with a note, except under CI, where
/// scripts/test.sh always sets it: there the test fails.
pub fn server_url() -> Option<String> {
    match std::env::var("COUNTERSIGN_TEST_DATABASE") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "COUNTERSIGN_TEST_DATABASE is not set under CI: scripts/test.sh starts a \
                 PostgreSQL server (scripts/pg-server.sh) and sets it"
            );
            eprintln!(
                "COUNTERSIGN_TEST_DATABASE is not set: skipped (scripts/test.sh sets it with a \
                 PostgreSQL server, or: bash scripts/pg-server.sh start DIR && source DIR/env)"
            );
            None
        }
    }
}

/// A connection of its own to `url`, driven by a task.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A database of one test's own, `t_<128 random bits in hex>`, so tests never see each
/// other's data.
pub struct TestDb {
    /// Its URL: the server's, with this database.
    pub url: String,
    /// Its name.
    pub name: String,
    /// The server's URL (another database of the same server), for administration.
    pub server: String,
}

impl TestDb {
    /// Creates it; `None` when the test is skipped (see [`server_url`]).
    pub async fn create() -> Option<TestDb> {
        let server = server_url()?;
        let name = format!("t_{:032x}", rand::random::<u128>());
        connect(&server)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&format!("/{name}"));
        Some(TestDb {
            url: url.to_string(),
            name,
            server,
        })
    }

    /// A connection to the server outside this database (for `pg_terminate_backend` of its
    /// sessions and the like).
    pub async fn admin(&self) -> Client {
        connect(&self.server).await
    }

    /// Ends every session on this database but the caller's own, and waits (10 s at most)
    /// until they are gone. Returns how many were ended.
    pub async fn terminate_sessions(&self) -> i64 {
        let admin = self.admin().await;
        let n: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .unwrap()
            .get(0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&self.name],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                return n;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{left} sessions on {} outlived pg_terminate_backend",
                self.name
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Drops it, ending its sessions. Best effort: a database left behind (a failed test)
    /// goes with the throwaway server.
    pub async fn drop_db(self) {
        if let Ok((client, connection)) = tokio_postgres::connect(&self.server, NoTls).await {
            tokio::spawn(connection);
            let _ = client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}

/// A PostgreSQL server of the test's own (scripts/pg-server.sh), which it may restart without
/// disturbing other tests; stopped when dropped.
pub struct OwnServer {
    dir: tempfile::TempDir,
}

fn pg_server_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-server.sh")
}

impl OwnServer {
    /// Starts one in a new temporary directory.
    pub fn start() -> OwnServer {
        let s = OwnServer {
            dir: tempfile::tempdir().unwrap(),
        };
        s.run("start");
        s
    }

    /// `scripts/pg-server.sh CMD DIR` (start, stop, restart), which must succeed.
    pub fn run(&self, cmd: &str) {
        let out = std::process::Command::new("bash")
            .arg(pg_server_script())
            .arg(cmd)
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg-server.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Its directory (the server's data is under `data/`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `COUNTERSIGN_TEST_DATABASE` of its env file.
    pub fn url(&self) -> String {
        let env = std::fs::read_to_string(self.dir.path().join("env")).unwrap();
        env.lines()
            .find_map(|l| l.strip_prefix("export COUNTERSIGN_TEST_DATABASE="))
            .unwrap()
            .to_owned()
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(pg_server_script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
