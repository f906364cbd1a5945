//! Load against a running server over HTTP: signed decisions, then proofs and tiles.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use countersign_testvectors::{Alg, SoftPasskey};
use countersign_verifier::{
    challenge, parse_cose_key, sha256, verify_assertion, Assertion, AssertionPolicy, Checkpoint,
    Note,
};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::stats::{summarise, CpuTimes, MachineLoad, Summary};

/// Options of `append`.
#[derive(Clone, Debug)]
pub struct AppendOptions {
    /// Server URL.
    pub url: String,
    /// Server data directory (for the admin token).
    pub data_dir: PathBuf,
    /// Decisions to submit.
    pub count: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Where to write `<index> <leaf_hash>` per acknowledgement.
    pub ack_file: Option<PathBuf>,
    /// Open-loop target rate (requests/s); `None` is closed-loop, as fast as possible.
    pub rate: Option<f64>,
    /// Page origin to sign for (default: the URL's origin).
    pub origin: Option<String>,
    /// RP ID to sign for.
    pub rp_id: String,
    /// Distinct passkeys.
    pub passkeys: usize,
    /// Decisions per request: 1 posts each to `/v1/log/decisions`, more post groups to
    /// `/v1/log/decisions/batch`.
    pub batch: usize,
}

/// What an append run measured.
#[derive(Debug)]
pub struct AppendReport {
    /// Acknowledged appends.
    pub ok: usize,
    /// Failed requests.
    pub failed: usize,
    /// Wall time of the timed phase.
    pub elapsed: Duration,
    /// Latency of acknowledged appends.
    pub latency: Summary,
    /// ES256 assertion checks per second on all cores, measured before and after the run.
    pub es256: Es256Ceiling,
    /// The machine during the timed phase.
    pub machine: Option<MachineLoad>,
}

/// The ES256 ceiling, measured just before and just after a timed phase with the server idle.
/// The host's other guests come and go (see [`MachineLoad`]), so a rate measured once can be
/// low by chance; ratios are taken against the faster of the two, the harder target.
#[derive(Clone, Copy, Debug)]
pub struct Es256Ceiling {
    /// Checks per second before the timed phase.
    pub before: f64,
    /// Checks per second after it.
    pub after: f64,
    /// The machine while `before` was measured.
    pub machine_before: Option<MachineLoad>,
    /// The machine while `after` was measured.
    pub machine_after: Option<MachineLoad>,
}

impl Es256Ceiling {
    /// Measures the "before" half.
    pub fn measure_before(duration: Duration) -> Self {
        let t = CpuTimes::now();
        let before = es256_rate(duration);
        Self {
            before,
            after: 0.0,
            machine_before: t.and_then(CpuTimes::until_now),
            machine_after: None,
        }
    }

    /// Measures the "after" half.
    pub fn measure_after(&mut self, duration: Duration) {
        let t = CpuTimes::now();
        self.after = es256_rate(duration);
        self.machine_after = t.and_then(CpuTimes::until_now);
    }

    /// The ceiling ratios are taken against: the faster of the two measurements.
    pub fn per_sec(&self) -> f64 {
        self.before.max(self.after)
    }
}

impl std::fmt::Display for Es256Ceiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s before the run ({}), {:.0}/s after it ({})",
            self.before,
            super::stats::machine(self.machine_before),
            self.after,
            super::stats::machine(self.machine_after)
        )
    }
}

fn url_origin(url: &str) -> String {
    // scheme://host[:port] of the URL, which is what a browser would put in clientDataJSON.
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    url[..end].to_owned()
}

/// ES256 assertion checks per second using every core (the `fast` ring backend), the
/// ceiling validated decisions are measured against.
pub fn es256_rate(duration: Duration) -> f64 {
    let mut pk = SoftPasskey::new(Alg::Es256, 7, "localhost");
    let key = match parse_cose_key(&pk.cose_public_key()) {
        Ok(k) => k,
        Err(_) => return 0.0,
    };
    let ch = challenge(&[1; 32], &[2; 32]);
    let a = pk.assert(&ch, "http://localhost");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (key, a) = (key.clone(), a.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while start.elapsed() < duration {
                    let ok = verify_assertion(
                        &key,
                        &Assertion {
                            authenticator_data: &a.authenticator_data,
                            client_data_json: &a.client_data_json,
                            signature: &a.signature,
                        },
                        &ch,
                        &AssertionPolicy {
                            rp_id: "localhost",
                            allowed_origins: &["http://localhost"],
                            require_user_verification: false,
                            stored_sign_count: None,
                        },
                    )
                    .is_ok();
                    assert!(ok, "the reference assertion must verify");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status} {v}");
    }
    Ok(v)
}

/// Enrols passkeys, creates a submitter, pre-signs `count` decisions, then submits them.
pub async fn append(o: AppendOptions) -> anyhow::Result<AppendReport> {
    let base = o.url.trim_end_matches('/').to_owned();
    let admin = std::fs::read_to_string(o.data_dir.join("admin.token"))
        .with_context(|| format!("reading the admin token from {}", o.data_dir.display()))?
        .trim()
        .to_owned();
    let origin = o.origin.clone().unwrap_or_else(|| url_origin(&base));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency.max(1))
        .build()?;
    let run: u64 = rand::thread_rng().gen();
    let submitter = post(
        &client,
        &format!("{base}/v1/admin/submitters"),
        &admin,
        &json!({"name": format!("bench-{run:016x}")}),
    )
    .await?["token"]
        .as_str()
        .context("no submitter token")?
        .to_owned();
    let mut keys = Vec::new();
    for k in 0..o.passkeys.max(1) {
        let pk = SoftPasskey::new(Alg::Es256, run.wrapping_add(k as u64), &o.rp_id);
        let approver = format!("bench-{:016x}", run.wrapping_add(k as u64));
        let v = post(
            &client,
            &format!("{base}/v1/log/enrolments"),
            &admin,
            &json!({
                "approver_id": approver,
                "credential_id": hex::encode(pk.credential_id()),
                "public_key": hex::encode(pk.cose_public_key()),
                "aaguid": "00".repeat(16),
                "attestation_format": "none",
            }),
        )
        .await?;
        let index = v["index"].as_u64().context("no enrolment index")?;
        keys.push((pk, approver, index));
    }

    // Sign everything up front, on all cores, so the timed phase measures the server.
    let count = o.count;
    let per_key = count.div_ceil(keys.len());
    let handles: Vec<_> = keys
        .into_iter()
        .enumerate()
        .map(|(k, (mut pk, approver, enrolment_index))| {
            let origin = origin.clone();
            std::thread::spawn(move || {
                (0..per_key)
                    .map(|i| {
                        let n = (k * per_key + i) as u64;
                        let nonce = sha256(&[&run.to_be_bytes()[..], &n.to_be_bytes()].concat());
                        let statement_hash = sha256(format!("bench statement {n}").as_bytes());
                        let a = pk.assert(&challenge(&nonce, &statement_hash), &origin);
                        json!({
                            "decision": "approve",
                            "statement_hash": hex::encode(statement_hash),
                            "nonce": hex::encode(nonce),
                            "approver_id": approver,
                            "credential_id": hex::encode(pk.credential_id()),
                            "authenticator_data": hex::encode(&a.authenticator_data),
                            "client_data_json": hex::encode(&a.client_data_json),
                            "signature": hex::encode(&a.signature),
                            "enrolment_index": enrolment_index,
                        })
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut decisions = Vec::with_capacity(count);
    for h in handles {
        decisions.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("signing thread failed"))?,
        );
    }
    decisions.truncate(count);
    let batch = o.batch.clamp(1, countersign_log::MAX_BATCH_DECISIONS);
    let path = if batch == 1 {
        "/v1/log/decisions"
    } else {
        "/v1/log/decisions/batch"
    };
    let bodies: Vec<(usize, hyper::body::Bytes)> = decisions
        .chunks(batch)
        .map(|c| {
            let v = if batch == 1 {
                &c[0]
            } else {
                &json!({ "decisions": c })
            };
            (c.len(), serde_json::to_vec(v).unwrap_or_default().into())
        })
        .collect();
    drop(decisions);

    let mut es256 = Es256Ceiling::measure_before(Duration::from_secs(1));

    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let ack = match &o.ack_file {
        Some(p) => Some(Arc::new(Mutex::new(std::fs::File::create(p)?))),
        None => None,
    };
    let authority = base
        .strip_prefix("http://")
        .context("append mode talks plain HTTP to a local server: give an http:// URL")?
        .to_owned();
    let auth = format!("Bearer {submitter}");
    let mut conns = Vec::new();
    for _ in 0..o.concurrency.max(1) {
        conns.push(connect(&authority).await?);
    }
    let cpu = CpuTimes::now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for conn in conns {
        let (bodies, next, ack, authority, auth) = (
            bodies.clone(),
            next.clone(),
            ack.clone(),
            authority.clone(),
            auth.clone(),
        );
        let rate = o.rate;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0usize;
            let mut conn = Some(conn);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((n, body)) = bodies.get(i) else {
                    break;
                };
                if let Some(r) = rate {
                    let at = start + Duration::from_secs_f64((i * batch) as f64 / r);
                    tokio::time::sleep_until(at.into()).await;
                }
                let t = Instant::now();
                if conn.is_none() {
                    conn = connect(&authority).await.ok();
                }
                let resp = match conn.as_mut() {
                    Some(c) => request(c, &authority, path, Some((&auth, body.clone()))).await,
                    None => Err(anyhow::anyhow!("cannot connect")),
                };
                // A 2xx answer to one decision is its acknowledgement, and its body is only
                // read for the ack file, so the generator spends its share of the two cores on
                // sending; a batch answer says how many of its decisions were logged.
                let acked = match resp {
                    Ok(bytes) => acknowledged(&bytes, *n, ack.as_deref()),
                    Err(_) => {
                        // The connection may be gone (server restarted): reconnect next time.
                        conn = None;
                        0
                    }
                };
                let elapsed = t.elapsed();
                lat.extend(std::iter::repeat_n(elapsed, acked));
                failed += n - acked;
            }
            (lat, failed)
        }));
    }
    let mut lat = Vec::with_capacity(count);
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        lat.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed();
    let machine = cpu.and_then(CpuTimes::until_now);
    es256.measure_after(Duration::from_secs(1));
    Ok(AppendReport {
        ok: lat.len(),
        failed,
        elapsed,
        latency: summarise(&mut lat),
        es256,
        machine,
    })
}

/// How many of the `n` decisions an answer acknowledges, writing their ack lines if asked.
fn acknowledged(body: &[u8], n: usize, ack: Option<&Mutex<std::fs::File>>) -> usize {
    #[derive(serde::Deserialize)]
    struct Logged {
        index: u64,
        leaf_hash: String,
    }
    #[derive(serde::Deserialize)]
    struct Batch {
        logged: usize,
        results: Vec<Value>,
    }
    let lines: Vec<Logged> = match (n, ack) {
        (1, None) => return 1,
        (1, Some(_)) => match serde_json::from_slice::<Logged>(body) {
            Ok(l) => vec![l],
            Err(_) => return 0,
        },
        (_, None) => {
            return serde_json::from_slice::<Batch>(body)
                .map(|b| b.logged)
                .unwrap_or(0)
        }
        (_, Some(_)) => match serde_json::from_slice::<Batch>(body) {
            Ok(b) => b
                .results
                .into_iter()
                .filter_map(|r| serde_json::from_value(r).ok())
                .collect(),
            Err(_) => return 0,
        },
    };
    if let Some(f) = ack {
        let text: String = lines
            .iter()
            .map(|l| format!("{} {}\n", l.index, l.leaf_hash))
            .collect();
        if let Ok(mut f) = f.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    }
    lines.len()
}

/// What to read in `read` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadKind {
    /// `GET /v1/log/proof/inclusion?index=I&tree_size=S` at random I.
    Inclusion,
    /// Random full level-0 hash tiles and entry bundles.
    Tiles,
}

/// What a read run measured.
#[derive(Debug)]
pub struct ReadReport {
    /// Successful requests per second.
    pub per_sec: f64,
    /// Latency of successful requests.
    pub latency: Summary,
    /// Failed requests.
    pub failed: usize,
    /// Tree size read at.
    pub tree_size: u64,
    /// The machine during the timed phase.
    pub machine: Option<MachineLoad>,
}

/// Issues `count` reads with `concurrency` in flight.
pub async fn read(
    url: &str,
    kind: ReadKind,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<ReadReport> {
    let base = url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1))
        .build()?;
    let text = client
        .get(format!("{base}/checkpoint"))
        .send()
        .await?
        .text()
        .await?;
    let note = Note::parse(text.as_bytes()).map_err(|e| anyhow::anyhow!("checkpoint: {e}"))?;
    let size = Checkpoint::parse(note.text())
        .map_err(|e| anyhow::anyhow!("checkpoint: {e}"))?
        .size;
    if size == 0 || (kind == ReadKind::Tiles && size < 256) {
        bail!("the log is too small to read from (size {size})");
    }
    let authority = base
        .strip_prefix("http://")
        .context("read mode talks plain HTTP to a local server: give an http:// URL")?
        .to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    // Connect every task first, so connection set-up is not timed.
    let mut conns = Vec::new();
    for _ in 0..concurrency.max(1) {
        conns.push(connect(&authority).await?);
    }
    let cpu = CpuTimes::now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (authority, next) = (authority.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0usize;
            let mut rng = rand::rngs::StdRng::from_entropy();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let path = match kind {
                    ReadKind::Inclusion => {
                        let i = rng.gen_range(0..size);
                        format!("/v1/log/proof/inclusion?index={i}&tree_size={size}")
                    }
                    ReadKind::Tiles => {
                        let n = rng.gen_range(0..size / 256);
                        let which = if rng.gen_bool(0.5) { "0" } else { "entries" };
                        format!("/tile/{which}/{}", countersign_log::tiles::format_index(n))
                    }
                };
                let t = Instant::now();
                match request(&mut conn, &authority, &path, None).await {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => {
                        failed += 1;
                        // The server may have closed the connection: open a new one.
                        match connect(&authority).await {
                            Ok(c) => conn = c,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            Ok((lat, failed))
        }));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await??;
        lat.extend(l);
        failed += f;
    }
    let per_sec = lat.len() as f64 / start.elapsed().as_secs_f64();
    Ok(ReadReport {
        per_sec,
        latency: summarise(&mut lat),
        failed,
        tree_size: size,
        machine: cpu.and_then(CpuTimes::until_now),
    })
}

/// A plain HTTP/1.1 keep-alive connection (hyper, no pool): the load generator's timed phases
/// send each worker's requests over one, because reqwest's pool cost about as much CPU per
/// request as the server's handling, on the cores both share.
pub(super) type Http1 =
    hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>;

/// One HTTP/1.1 keep-alive connection to `authority` (`host:port`), driven by its own task.
pub(super) async fn connect(authority: &str) -> anyhow::Result<Http1> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `GET path` on `conn`, or a JSON `POST` with a bearer token when `post` is given; the body of
/// a 2xx answer, else an error.
async fn request(
    conn: &mut Http1,
    authority: &str,
    path: &str,
    post: Option<(&str, hyper::body::Bytes)>,
) -> anyhow::Result<hyper::body::Bytes> {
    use http_body_util::BodyExt;
    conn.ready().await?;
    let req = hyper::Request::builder()
        .uri(path)
        .header(hyper::header::HOST, authority);
    let req = match post {
        Some((auth, body)) => req
            .method(hyper::Method::POST)
            .header(hyper::header::AUTHORIZATION, auth)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(body))?,
        None => req.body(http_body_util::Full::default())?,
    };
    let resp = conn.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{path}: HTTP {status}");
    }
    Ok(body)
}
