//! Shared helpers: an in-process log on an ephemeral port, passkeys, and request builders.

use std::path::PathBuf;
use std::time::Duration;

use countersign_log::{Config, RpPolicy, SequencerConfig};
use countersign_testvectors::{Alg, AssertOptions, AssertionParts, SoftPasskey};
use countersign_verifier::{challenge, sha256, Checkpoint, Hash, VerifierKey};
use serde_json::{json, Value};

pub const ORIGIN: &str = "https://approve.test";
pub const RP_ID: &str = "approve.test";

pub struct TestLog {
    pub url: String,
    pub admin: String,
    pub vkey: VerifierKey,
    pub state: countersign_log::LogApi,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub _dir: tempfile::TempDir,
}

pub fn config(dir: PathBuf) -> Config {
    Config {
        data_dir: dir,
        origin: Some("test.example/log".into()),
        policy: RpPolicy {
            rp_id: RP_ID.into(),
            allowed_origins: vec![ORIGIN.into()],
            require_user_verification: true,
        },
        sequencer: SequencerConfig {
            queue_capacity: 1024,
            batch_max_entries: 256,
            batch_max_age: Duration::ZERO,
            checkpoint_interval: Duration::from_millis(500),
        },
        max_body_bytes: countersign_log::DEFAULT_MAX_BODY_BYTES,
        column_families: Vec::new(),
    }
}

impl TestLog {
    pub async fn start() -> TestLog {
        Self::start_with(|c| c).await
    }

    pub async fn start_with(f: impl FnOnce(Config) -> Config) -> TestLog {
        Self::start_in(tempfile::tempdir().unwrap(), f).await
    }

    /// [`TestLog::start_with`] on the data directory `dir/data` (a restart, when a log ran
    /// there before).
    pub async fn start_in(dir: tempfile::TempDir, f: impl FnOnce(Config) -> Config) -> TestLog {
        let cfg = f(config(dir.path().join("data")));
        let started = tokio::task::spawn_blocking(move || countersign_log::start(cfg))
            .await
            .unwrap()
            .unwrap();
        Self::serving(started, dir).await
    }

    /// [`TestLog::start_shared`] on a database of the test's own (kept while the returned
    /// [`crate::pg_support::TestDb`] lives); `None` when the test is skipped (no PostgreSQL,
    /// outside CI).
    pub async fn on_shared_driver() -> Option<(crate::pg_support::TestDb, TestLog)> {
        let db = crate::pg_support::TestDb::create().await?;
        let log = TestLog::start_shared(&db.url).await;
        Some((db, log))
    }

    /// A log on the shared driver (spec/shared-driver.md), in the PostgreSQL database
    /// `database` and a bucket in a directory (`file://`): its keys made by a first embedded
    /// start, as `countersign serve` makes them, which is then stopped.
    pub async fn start_shared(database: &str) -> TestLog {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path().join("data"));
        let made = tokio::task::spawn_blocking(move || countersign_log::start(cfg))
            .await
            .unwrap()
            .unwrap();
        made.api.log.shutdown().await;
        drop(made);
        let tiles = dir.path().join("bucket");
        std::fs::create_dir_all(&tiles).unwrap();
        let bucket =
            countersign_log::bucket::Bucket::open(&format!("file://{}", tiles.display())).unwrap();
        let shared = countersign_log::shared::SharedConfig {
            publish_timeout: Duration::from_secs(20),
            ..countersign_log::shared::SharedConfig::default()
        };
        let started = countersign_log::start_shared(
            &config(dir.path().join("data")),
            database,
            bucket,
            shared,
        )
        .await
        .unwrap_or_else(|e| panic!("starting the shared driver: {e}"));
        Self::serving(started, dir).await
    }

    /// Serves `started` on an ephemeral port of 127.0.0.1.
    async fn serving(started: countersign_log::Started, dir: tempfile::TempDir) -> TestLog {
        let admin = std::fs::read_to_string(dir.path().join("data/admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let state = started.api.clone();
        let task = tokio::spawn(async move {
            let app = countersign_log::router(started.api.clone());
            countersign_log::serve(listener, app, started.api.log, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestLog {
            url,
            admin,
            vkey: VerifierKey::parse(&started.vkey).unwrap(),
            state,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        let _dir = self.stop_keep().await;
    }

    /// Stops the server and hands back its directory, which outlives the server.
    pub async fn stop_keep(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        self._dir
    }

    pub async fn checkpoint(&self) -> Checkpoint {
        fetch_checkpoint(&self.client, &self.url, &self.vkey).await
    }

    pub async fn submitter(&self) -> String {
        let r = self
            .client
            .post(format!("{}/v1/admin/submitters", self.url))
            .bearer_auth(&self.admin)
            .json(&json!({"name": "tests"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Enrols `pk` for `approver` and returns the enrolment index.
    pub async fn enrol(&self, pk: &SoftPasskey, approver: &str) -> u64 {
        let (status, v) = self
            .post(
                "/v1/log/enrolments",
                &self.admin,
                &enrolment_body(pk, approver),
            )
            .await;
        assert!(status == 201 || status == 200, "{status} {v}");
        v["index"].as_u64().unwrap()
    }
}

pub use crate::web::fetch_checkpoint;

pub fn passkey(seed: u64) -> SoftPasskey {
    SoftPasskey::new(Alg::Es256, seed, RP_ID)
}

pub fn enrolment_body(pk: &SoftPasskey, approver: &str) -> Value {
    json!({
        "approver_id": approver,
        "credential_id": hex::encode(pk.credential_id()),
        "public_key": hex::encode(pk.cose_public_key()),
        "aaguid": "00".repeat(16),
        "attestation_format": "none",
    })
}

pub fn decision_body(
    approver: &str,
    credential_id: &[u8],
    enrolment_index: u64,
    nonce: [u8; 32],
    statement_hash: [u8; 32],
    a: &AssertionParts,
) -> Value {
    json!({
        "decision": "approve",
        "statement_hash": hex::encode(statement_hash),
        "nonce": hex::encode(nonce),
        "approver_id": approver,
        "credential_id": hex::encode(credential_id),
        "authenticator_data": hex::encode(&a.authenticator_data),
        "client_data_json": hex::encode(&a.client_data_json),
        "signature": hex::encode(&a.signature),
        "enrolment_index": enrolment_index,
    })
}

/// A valid signed decision (statement `n`) made with `pk`, modified by `opts`.
pub fn signed_decision(
    pk: &mut SoftPasskey,
    approver: &str,
    enrolment_index: u64,
    n: u64,
    tweak: impl FnOnce(&mut AssertOptions<'_>),
) -> Value {
    let nonce = sha256(&n.to_be_bytes());
    let statement_hash = sha256(format!("statement {n}").as_bytes());
    let ch = challenge(&nonce, &statement_hash);
    let mut opts = AssertOptions::new(&ch, ORIGIN);
    tweak(&mut opts);
    let a = pk.assert_with(&opts);
    let cred = pk.credential_id().to_vec();
    decision_body(approver, &cred, enrolment_index, nonce, statement_hash, &a)
}

/// A decision as [`signed_decision`] makes it, but whose passkey signed the clientDataJSON that
/// `client_data` writes from the challenge (base64url): what a hostile client could send.
pub fn signed_decision_with_client_data(
    pk: &mut SoftPasskey,
    approver: &str,
    enrolment_index: u64,
    n: u64,
    client_data: impl FnOnce(&str) -> String,
) -> Value {
    use base64::Engine;
    let nonce = sha256(&n.to_be_bytes());
    let statement_hash = sha256(format!("statement {n}").as_bytes());
    let ch = challenge(&nonce, &statement_hash);
    let raw = client_data(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ch));
    let opts = AssertOptions {
        raw_client_data: Some(raw.as_bytes()),
        ..AssertOptions::new(&ch, ORIGIN)
    };
    let a = pk.assert_with(&opts);
    let cred = pk.credential_id().to_vec();
    decision_body(approver, &cred, enrolment_index, nonce, statement_hash, &a)
}

pub fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_hex(h.as_str().unwrap()).unwrap())
        .collect()
}
