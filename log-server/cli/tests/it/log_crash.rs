//! Crash test: the real binary under concurrent appends, SIGKILLed at random moments (also while
//! it starts again) and restarted. Every acknowledged entry must be at its index with its leaf
//! hash and an inclusion proof against the restarted root, every checkpoint seen before a crash
//! must be consistent with every one after, and the tree size never decreases. The kill moments
//! come from a printed seed (`COUNTERSIGN_SEED` replays one). `COUNTERSIGN_SOAK=1` runs many more
//! rounds. The same file holds the graceful-stop test under load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use countersign_verifier::{verify_checkpoint, verify_consistency, Checkpoint, Hash, VerifierKey};
use rand::Rng;
use serde_json::json;

use crate::log_common::hashes;
use crate::process::{free_port, Process};

pub(crate) const ARGS: [&str; 8] = [
    "--origin",
    "crash.test/log",
    "--checkpoint-interval-ms",
    "300",
    // The policy the test passkeys sign for (`common::signed_decision`).
    "--rp-id",
    crate::log_common::RP_ID,
    "--allowed-origin",
    crate::log_common::ORIGIN,
];

/// What the clients saw acknowledged.
#[derive(Default)]
pub(crate) struct Seen {
    /// (index, leaf hash) of each acknowledged entry.
    pub(crate) acks: Vec<(u64, String)>,
    /// How many of the acks are decisions logged in batches.
    pub(crate) decisions: usize,
    pub(crate) checkpoints: Vec<Checkpoint>,
}

async fn checkpoint(client: &reqwest::Client, url: &str, vkey: &VerifierKey) -> Checkpoint {
    crate::log_common::fetch_checkpoint(client, url, vkey).await
}

/// POSTs `body` and returns the answer and its verified checkpoint if the server answered
/// `status`; `None` if the request failed (the server may have just been killed) or was refused
/// with a 4xx. A 5xx is a failure of the test: a kill cuts connections, it makes no answers.
pub(crate) async fn acknowledged(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
    status: u16,
    vkey: &VerifierKey,
) -> Option<(serde_json::Value, Checkpoint)> {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .ok()?;
    if r.status().is_server_error() {
        let code = r.status();
        panic!("{url}: {code} {}", r.text().await.unwrap_or_default());
    }
    if r.status() != status {
        return None;
    }
    let v = r.json::<serde_json::Value>().await.ok()?;
    let note = v["checkpoint"]
        .as_str()
        .expect("an acknowledgement carries its checkpoint");
    let cp = verify_checkpoint(note.as_bytes(), vkey, &[])
        .unwrap()
        .checkpoint;
    Some((v, cp))
}

/// `GET url` as JSON, or what went wrong (the harness reports a loss instead of panicking, so
/// that a test can assert that a loss is detected).
async fn get_json(client: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status} {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: {e}"))
}

/// The crash harness: a started server, its admin and submitter tokens, two enrolled deciders,
/// what was acknowledged so far and the largest tree seen. The random moments come from a
/// seed, printed so that a failing run can be replayed with COUNTERSIGN_SEED=<seed>.
pub(crate) struct Harness {
    pub(crate) server: Process,
    pub(crate) client: reqwest::Client,
    pub(crate) url: String,
    pub(crate) vkey: VerifierKey,
    admin: String,
    submitter: String,
    deciders: Vec<(String, u64)>,
    all: Seen,
    max_size: u64,
    pub(crate) seed: u64,
    pub(crate) rng: rand::rngs::StdRng,
}

impl Harness {
    /// Waits for `server`, creates a submitter and enrols the deciders (`name` labels the seed).
    pub(crate) async fn start(server: Process, name: &str) -> Harness {
        let client = reqwest::Client::new();
        server.wait_ready(&client).await;
        let url = server.url.clone();
        let admin = server.read("admin.token");
        let vkey = VerifierKey::parse(&server.read("log.vkey")).unwrap();
        let post = |path: &str, body: serde_json::Value| {
            let req = client
                .post(format!("{url}{path}"))
                .bearer_auth(&admin)
                .json(&body);
            async move {
                let r = req.send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                r.json::<serde_json::Value>().await.unwrap()
            }
        };
        let submitter = post("/v1/admin/submitters", json!({"name": "crash"})).await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut deciders = Vec::new();
        for t in 0..2u64 {
            let approver = format!("decider-{t}");
            let body =
                crate::log_common::enrolment_body(&crate::log_common::passkey(100 + t), &approver);
            let v = post("/v1/log/enrolments", body).await;
            deciders.push((approver, v["index"].as_u64().unwrap()));
        }
        let seed = crate::process::seed(name);
        Harness {
            server,
            client,
            url,
            vkey,
            admin,
            submitter,
            deciders,
            all: Seen::default(),
            max_size: 0,
            seed,
            rng: <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed),
        }
    }

    /// Eight clients append (six enrolments one at a time, two batches of eight signed
    /// decisions) for a random while, then the server is SIGKILLed: what they saw acknowledged.
    pub(crate) async fn load_then_kill(&mut self, round: usize) -> Seen {
        let public_key = hex::encode(crate::log_common::passkey(1).cose_public_key());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let (client, url, admin, vkey, pk) = (
                self.client.clone(),
                self.url.clone(),
                self.admin.clone(),
                self.vkey.clone(),
                public_key.clone(),
            );
            let (seen, stop) = (seen.clone(), stop.clone());
            if let Some((approver, enrol)) = self.deciders.get(t as usize) {
                let (mut pk, approver, enrol) = (
                    crate::log_common::passkey(100 + u64::from(t)),
                    approver.clone(),
                    *enrol,
                );
                let token = self.submitter.clone();
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let decisions: Vec<_> = (0..8)
                            .map(|_| {
                                n += 1;
                                let id = ((round as u64) << 40) | (u64::from(t) << 32) | n;
                                crate::log_common::signed_decision(
                                    &mut pk,
                                    &approver,
                                    enrol,
                                    id,
                                    |_| {},
                                )
                            })
                            .collect();
                        let body = json!({ "decisions": decisions });
                        let path = format!("{url}/v1/log/decisions/batch");
                        let Some((v, cp)) =
                            acknowledged(&client, &path, &token, &body, 200, &vkey).await
                        else {
                            continue;
                        };
                        let mut s = seen.lock().unwrap();
                        for r in v["results"].as_array().unwrap() {
                            if let Some(index) = r["index"].as_u64() {
                                s.decisions += 1;
                                s.acks
                                    .push((index, r["leaf_hash"].as_str().unwrap().to_owned()));
                            }
                        }
                        s.checkpoints.push(cp);
                    }
                }));
                continue;
            }
            tasks.push(tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let cred = format!("{round:08x}{t:08x}{n:08x}");
                    let body = json!({
                        "approver_id": format!("approver-{t}"),
                        "credential_id": cred,
                        "public_key": pk,
                        "aaguid": "00".repeat(16),
                        "attestation_format": "none",
                    });
                    let path = format!("{url}/v1/log/enrolments");
                    let Some((v, cp)) =
                        acknowledged(&client, &path, &admin, &body, 201, &vkey).await
                    else {
                        continue;
                    };
                    let mut s = seen.lock().unwrap();
                    s.acks.push((
                        v["index"].as_u64().unwrap(),
                        v["leaf_hash"].as_str().unwrap().to_owned(),
                    ));
                    s.checkpoints.push(cp);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(self.rng.gen_range(200..1200))).await;
        self.server.kill(); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let s = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
        assert!(
            !s.acks.is_empty(),
            "round {round}: no appends were acknowledged"
        );
        assert!(
            s.decisions > 0,
            "round {round}: no batched decision was acknowledged"
        );
        s
    }

    /// After a restart: every entry acknowledged so far is at its index with its leaf hash and
    /// an inclusion proof against the served root, every checkpoint seen is consistent with it,
    /// and the tree did not shrink. `Err` says what was lost; the restarted tree's size if not.
    pub(crate) async fn verify(&mut self, round: usize, mut s: Seen) -> Result<u64, String> {
        let (client, url, seed) = (&self.client, &self.url, self.seed);
        let text = client
            .get(format!("{url}/checkpoint"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let now = verify_checkpoint(text.as_bytes(), &self.vkey, &[])
            .map_err(|e| format!("served checkpoint: {e}"))?
            .checkpoint;
        let seen_max = s.checkpoints.iter().map(|c| c.size).max().unwrap_or(0);
        if now.size < seen_max || now.size < self.max_size {
            return Err(format!(
                "tree size went back to {} from {} (seed {seed})",
                now.size,
                seen_max.max(self.max_size)
            ));
        }
        self.max_size = now.size;
        self.all.decisions += s.decisions;
        self.all.acks.append(&mut s.acks);
        self.all.checkpoints.append(&mut s.checkpoints);
        self.all.checkpoints.sort_by_key(|c| c.size);
        let mut forked = None;
        self.all.checkpoints.dedup_by(|a, b| {
            if a.size == b.size && a.root != b.root {
                forked = Some(a.size);
            }
            a.size == b.size
        });
        if let Some(size) = forked {
            return Err(format!(
                "two checkpoints of size {size} with different roots (seed {seed})"
            ));
        }
        for (index, leaf) in &self.all.acks {
            // At its index, with its leaf hash, and proved against the restarted tree's root.
            let v = get_json(
                client,
                &format!(
                    "{url}/v1/log/proof/inclusion?index={index}&tree_size={}",
                    now.size
                ),
            )
            .await
            .map_err(|e| format!("entry {index} lost: {e} (seed {seed})"))?;
            if v["leaf_hash"].as_str() != Some(leaf.as_str()) {
                return Err(format!("entry {index} changed: {v} (seed {seed})"));
            }
            let proof = hashes(&v["inclusion_proof"]);
            let leaf = Hash::from_hex(leaf).unwrap();
            countersign_verifier::verify_inclusion(&leaf, *index, now.size, &proof, &now.root)
                .map_err(|e| format!("entry {index}: {e} (seed {seed})"))?;
        }
        for old in &self.all.checkpoints {
            let v = get_json(
                client,
                &format!(
                    "{url}/v1/log/proof/consistency?first={}&second={}",
                    old.size, now.size
                ),
            )
            .await?;
            let proof: Vec<Hash> = hashes(&v["consistency_proof"]);
            verify_consistency(old.size, now.size, &old.root, &now.root, &proof)
                .map_err(|e| format!("{} -> {}: {e} (seed {seed})", old.size, now.size))?;
        }
        eprintln!(
            "round {round}: tree size {}, {} acks ({} batched decisions), {} checkpoints checked",
            now.size,
            self.all.acks.len(),
            self.all.decisions,
            self.all.checkpoints.len()
        );
        Ok(now.size)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged() {
    let rounds = crate::process::rounds(4, 30);
    let tmp = tempfile::tempdir().unwrap();
    let server = Process::spawn(&tmp.path().join("data"), free_port(), &ARGS);
    let mut h = Harness::start(server, "sigkill_loses_nothing_acknowledged").await;
    let mut max_size = 0;
    for round in 0..rounds {
        let seen = h.load_then_kill(round).await;
        h.server.restart();
        if h.rng.gen_bool(0.5) {
            // Killed again while it starts: in its recovery or its cache warm-up.
            tokio::time::sleep(Duration::from_millis(h.rng.gen_range(0..150))).await;
            h.server.kill();
            h.server.restart();
        }
        h.server.wait_ready(&h.client).await;
        max_size = h
            .verify(round, seen)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Graceful stop: SIGTERM lets queued appends finish and the process exit cleanly.
    let exit = h.server.terminate();
    assert!(exit.success(), "server exited with {exit}");
    h.server.restart();
    h.server.wait_ready(&h.client).await;
    assert_eq!(checkpoint(&h.client, &h.url, &h.vkey).await.size, max_size);
    h.server.kill();
}

/// SIGTERM in the middle of a burst of appends: every answer the server gives is either an
/// acknowledgement (and the entry is at its index after the restart, with an inclusion proof
/// against the new checkpoint) or `503 shutting_down`; a request that gets no answer at all
/// (its connection refused once the listener closed) is not an acknowledgement. The process
/// exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_only_success_or_shutting_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let client = reqwest::Client::new();
    let mut server = Process::spawn(&dir, free_port(), &ARGS);
    let url = server.url.clone();
    server.wait_ready(&client).await;
    let admin = server.read("admin.token");
    let vkey = VerifierKey::parse(&server.read("log.vkey")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // (index, leaf hash) of each acknowledgement; counts of refusals and unanswered requests.
    let acks = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let (refused, unanswered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (client, url, admin) = (client.clone(), url.clone(), admin.clone());
        let (stop, acks, refused, unanswered) = (
            stop.clone(),
            acks.clone(),
            refused.clone(),
            unanswered.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let pk = crate::log_common::passkey(1_000_000 * (t + 1) + n);
                let body = crate::log_common::enrolment_body(&pk, &format!("term-{t}"));
                let r = client
                    .post(format!("{url}/v1/log/enrolments"))
                    .bearer_auth(&admin)
                    .json(&body)
                    .send()
                    .await;
                let Ok(r) = r else {
                    unanswered.fetch_add(1, Ordering::Relaxed);
                    // Refused connections come back at once: do not spin on them.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let status = r.status().as_u16();
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    unanswered.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                match status {
                    201 => acks.lock().unwrap().push((
                        v["index"].as_u64().unwrap(),
                        v["leaf_hash"].as_str().unwrap().to_owned(),
                    )),
                    503 => {
                        assert_eq!(v["error"], "shutting_down", "{v}");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => panic!("during shutdown: {status} {v}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_term = acks.lock().unwrap().len();
    assert!(before_term > 0, "no append was acknowledged before SIGTERM");
    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.terminate();
        (server, exit)
    });
    let (mut server, exit) = exit.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(exit.success(), "server exited with {exit}");
    let acks = Arc::try_unwrap(acks).unwrap().into_inner().unwrap();
    eprintln!(
        "sigterm under load: {} acknowledged ({before_term} before the signal), {} refused \
         with shutting_down, {} unanswered",
        acks.len(),
        refused.load(Ordering::Relaxed),
        unanswered.load(Ordering::Relaxed)
    );

    server.restart();
    server.wait_ready(&client).await;
    let now = checkpoint(&client, &url, &vkey).await;
    for (index, leaf) in &acks {
        let v = crate::web::get_json(
            &client,
            &format!("{url}/v1/log/proof/inclusion?index={index}"),
        )
        .await;
        assert_eq!(
            v["leaf_hash"].as_str(),
            Some(leaf.as_str()),
            "acknowledged entry {index} lost or changed"
        );
        let leaf = Hash::from_hex(leaf).unwrap();
        let proof = hashes(&v["inclusion_proof"]);
        countersign_verifier::verify_inclusion(&leaf, *index, now.size, &proof, &now.root)
            .unwrap_or_else(|e| panic!("entry {index} against the restarted root: {e}"));
    }
    server.kill();
}
