//! Complete OpenID CIBA approval flows against a running server, through its public endpoints
//! only: `POST /bc-authorize`, the approver's passkey sign-in and decide ceremonies, `POST /token`
//! polling, and `GET /v1/evidence/<auth_req_id>`.
//!
//! Set-up (not timed): one poll-mode client with `client_secret_basic` (authenticated once, so
//! that the server has checked and cached its secret), and one approver per
//! worker, each enrolled with a software ES256 passkey through the real enrolment ceremony
//! (`/v1/enrol/start|finish`) and signed in (`/v1/session/start|finish`). Worker `w` asks only
//! approver `w`, so each inbox holds at most one open request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use countersign_testvectors::{Alg, AssertOptions, SoftPasskey};
use countersign_verifier::{challenge, sha256};
use rand::Rng;
use serde_json::{json, Value};

use super::http::Es256Ceiling;
use super::stats::{summarise, CpuTimes, MachineLoad, ProcessCpu, Summary};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Options of `flow`.
#[derive(Clone, Debug)]
pub struct FlowOptions {
    /// Server URL.
    pub url: String,
    /// Server data directory (for the admin token).
    pub data_dir: PathBuf,
    /// Complete flows to run.
    pub count: usize,
    /// Flows in flight (and approvers).
    pub concurrency: usize,
    /// Where to write `<auth_req_id>.json` for each approved flow.
    pub evidence_dir: Option<PathBuf>,
    /// Deny every K-th flow (0: approve all).
    pub deny_every: usize,
    /// Page origin to sign for (default: the URL's origin).
    pub origin: Option<String>,
    /// RP ID the passkeys are bound to.
    pub rp_id: String,
    /// The server's process id, to measure its CPU over the timed phase.
    pub server_pid: Option<u32>,
}

/// What a flow run measured.
#[derive(Debug)]
pub struct FlowReport {
    /// Flows that ended with tokens.
    pub approved: usize,
    /// Flows that ended with `access_denied`.
    pub denied: usize,
    /// Flows that failed somewhere.
    pub errors: usize,
    /// Evidence bundles written.
    pub evidence_written: usize,
    /// Wall time of the timed phase (all flows, evidence fetches included).
    pub elapsed: Duration,
    /// `/bc-authorize` to the token (or `access_denied`).
    pub flow_latency: Summary,
    /// `POST /bc-authorize` alone.
    pub bc_authorize_latency: Summary,
    /// `GET /v1/evidence/<auth_req_id>` alone.
    pub evidence_latency: Summary,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// Bare ES256 assertion checks per second on all cores (ring), before and after the run.
    pub es256: Es256Ceiling,
    /// The machine during the timed phase.
    pub machine: Option<MachineLoad>,
    /// The server's CPU seconds over the timed phase (with `server_pid`).
    pub server_cpu_secs: Option<f64>,
}

impl FlowReport {
    /// Completed flows (approved or denied) per second of wall time.
    pub fn flows_per_sec(&self) -> f64 {
        (self.approved + self.denied) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The server's CPU per completed flow, in seconds, and in ES256 checks: one check costs
    /// `cores / rate` seconds of CPU, with the rate measured on all cores in the same run.
    pub fn server_cpu_per_flow(&self) -> Option<(f64, f64)> {
        let flows = (self.approved + self.denied).max(1) as f64;
        let per_flow = self.server_cpu_secs? / flows;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let per_check = cores / self.es256.per_sec().max(1.0);
        Some((per_flow, per_flow / per_check))
    }
}

fn url_origin(url: &str) -> String {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    url[..end].to_owned()
}

/// Whether flow `i` (0-based) is denied.
pub fn is_denied(i: usize, deny_every: usize) -> bool {
    deny_every > 0 && (i + 1) % deny_every == 0
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    session: Option<(&str, &str)>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http.post(url).json(body);
    if let Some((cookie, csrf)) = session {
        req = req.header("cookie", cookie).header("x-csrf-token", csrf);
    }
    Ok(json_of(req.send().await?).await)
}

fn b64_field(v: &Value, what: &str) -> anyhow::Result<Vec<u8>> {
    let s = v["publicKey"]["challenge"]
        .as_str()
        .with_context(|| format!("{what}: no challenge in {v}"))?;
    B64URL
        .decode(s)
        .with_context(|| format!("{what}: bad challenge"))
}

/// An approver with an enrolled software passkey and a signed-in session.
pub(super) struct Approver {
    pub(super) id: String,
    passkey: SoftPasskey,
    cookie: String,
    csrf: String,
}

pub(super) struct Ctx {
    pub(super) base: String,
    pub(super) origin: String,
    pub(super) http: reqwest::Client,
    /// `Basic base64(client_id:secret)`.
    basic: String,
    pub(super) client_id: String,
}

pub(super) async fn enrol_and_sign_in(
    ctx: &Ctx,
    admin: &str,
    id: String,
    seed: u64,
    rp_id: &str,
) -> anyhow::Result<Approver> {
    let base = &ctx.base;
    let r = ctx
        .http
        .post(format!("{base}/v1/admin/approvers"))
        .bearer_auth(admin)
        .json(&json!({"approver_id": id, "email": format!("{id}@bench.invalid"), "name": id}))
        .send()
        .await?;
    let (st, v) = json_of(r).await;
    if st != 201 {
        bail!("adding approver {id}: {st} {v}");
    }
    let link = v["enrolment_url"]
        .as_str()
        .context("no enrolment_url")?
        .to_owned();
    let token = link.rsplit('/').next().unwrap_or_default().to_owned();
    let mut passkey = SoftPasskey::new(Alg::Es256, seed, rp_id);

    // Enrolment ceremony.
    let (st, start) = post_json(
        &ctx.http,
        &format!("{base}/v1/enrol/start"),
        None,
        &json!({"token": token}),
    )
    .await?;
    if st != 200 {
        bail!("enrol/start: {st} {start}");
    }
    let ch = b64_field(&start, "enrol/start")?;
    let (st, v) = post_json(
        &ctx.http,
        &format!("{base}/v1/enrol/finish"),
        None,
        &json!({
            "ceremony_id": start["ceremony_id"],
            "token": token,
            "credential": passkey.registration_json(&ch, &ctx.origin),
        }),
    )
    .await?;
    if st != 201 {
        bail!("enrol/finish: {st} {v}");
    }

    // Sign-in ceremony.
    let (st, start) = post_json(
        &ctx.http,
        &format!("{base}/v1/session/start"),
        None,
        &json!({}),
    )
    .await?;
    if st != 200 {
        bail!("session/start: {st} {start}");
    }
    let ch = b64_field(&start, "session/start")?;
    let a = passkey.assert_with(&AssertOptions::new(&ch, &ctx.origin));
    let cred = passkey.assertion_json(&a);
    let r = ctx
        .http
        .post(format!("{base}/v1/session/finish"))
        .json(&json!({"ceremony_id": start["ceremony_id"], "credential": cred}))
        .send()
        .await?;
    if r.status().as_u16() != 200 {
        let (st, v) = json_of(r).await;
        bail!("session/finish: {st} {v}");
    }
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.split(';').next())
        .context("no session cookie")?
        .to_owned();
    let v: Value = r.json().await?;
    let csrf = v["csrf_token"]
        .as_str()
        .context("no csrf_token")?
        .to_owned();
    Ok(Approver {
        id,
        passkey,
        cookie,
        csrf,
    })
}

enum Outcome {
    Approved {
        evidence: Option<Duration>,
        written: bool,
    },
    Denied,
}

/// One HTTP/1.1 keep-alive connection (plain hyper, no pool): what a worker's requests go
/// through in the timed phase, so that the generator spends as little of the shared CPU per
/// request as it can (reqwest's pool costs about as much per request as the server's handling).
pub(super) struct Conn {
    authority: String,
    prefix: String,
    sender: super::http::Http1,
}

impl Conn {
    pub(super) async fn connect(base: &str) -> anyhow::Result<Conn> {
        let rest = base
            .strip_prefix("http://")
            .context("the flow generator speaks plain http:// only")?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let sender = super::http::connect(authority).await?;
        Ok(Conn {
            authority: authority.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            sender,
        })
    }

    /// Sends a request; the status and the whole body.
    async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<(u16, hyper::body::Bytes)> {
        use http_body_util::BodyExt;
        self.sender.ready().await?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, &self.authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some((content_type, b)) => req
                .header(hyper::header::CONTENT_TYPE, content_type)
                .body(http_body_util::Full::new(hyper::body::Bytes::from(b)))?,
            None => req.body(http_body_util::Full::default())?,
        };
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }

    /// A request answered with JSON (`null` when the body is not JSON).
    async fn json(
        &mut self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<(u16, Value)> {
        let (st, b) = self.send(method, path, headers, body).await?;
        Ok((st, serde_json::from_slice(&b).unwrap_or(Value::Null)))
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        for (j, s) in [k, v].into_iter().enumerate() {
            if j > 0 {
                out.push(b'=');
            }
            for b in s.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                        out.push(b)
                    }
                    b' ' => out.push(b'+'),
                    _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
                }
            }
        }
    }
    out
}

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// `POST /bc-authorize` for a payment of `amount` EUR naming `login_hint`; the `auth_req_id`
/// and the polling interval the server asked for.
pub(super) async fn ask(
    ctx: &Ctx,
    conn: &mut Conn,
    login_hint: &str,
    binding: &str,
    amount: &str,
) -> anyhow::Result<(String, u64)> {
    let details = json!([{
        "type": "payment_initiation",
        "instructedAmount": {"currency": "EUR", "amount": amount},
        "creditorName": "ACME"
    }])
    .to_string();
    let body = form(&[
        ("scope", "openid payments"),
        ("login_hint", login_hint),
        ("binding_message", binding),
        ("authorization_details", details.as_str()),
    ]);
    let (st, v) = conn
        .json(
            hyper::Method::POST,
            "/bc-authorize",
            &[("authorization", ctx.basic.as_str())],
            Some((FORM, body)),
        )
        .await?;
    if st != 200 {
        bail!("/bc-authorize: {st} {v}");
    }
    let auth_req_id = v["auth_req_id"]
        .as_str()
        .context("no auth_req_id")?
        .to_owned();
    Ok((auth_req_id, v["interval"].as_u64().unwrap_or(5).max(1)))
}

/// `ap` finds the request `binding` in their inbox and decides it with their passkey, having
/// checked that the challenge is `nonce || SHA-256(statement)`; the answer of `decide/finish`.
pub(super) async fn decide(
    ctx: &Ctx,
    conn: &mut Conn,
    ap: &mut Approver,
    binding: &str,
    decision: &str,
) -> anyhow::Result<Value> {
    use hyper::Method;
    let session = [
        ("cookie", ap.cookie.as_str()),
        ("x-csrf-token", ap.csrf.as_str()),
    ];
    let (st, inbox) = conn
        .json(Method::GET, "/v1/inbox", &session[..1], None)
        .await?;
    if st != 200 {
        bail!("/v1/inbox of {}: {st} {inbox}", ap.id);
    }
    let request_id = inbox["requests"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|r| r["binding_message"].as_str() == Some(binding))
        })
        .and_then(|r| r["request_id"].as_str())
        .with_context(|| format!("request {binding:?} not in the inbox of {}", ap.id))?
        .to_owned();
    let (st, start) = conn
        .json(
            Method::POST,
            &format!("/v1/requests/{request_id}/decide/start"),
            &session,
            Some((JSON, serde_json::to_vec(&json!({"decision": decision}))?)),
        )
        .await?;
    if st != 200 {
        bail!("decide/start by {}: {st} {start}", ap.id);
    }
    let ch = b64_field(&start, "decide/start")?;
    let canonical = start["statement_canonical"]
        .as_str()
        .context("no statement_canonical")?;
    let nonce: [u8; 32] = hex::decode(start["nonce"].as_str().unwrap_or_default())
        .ok()
        .and_then(|n| n.try_into().ok())
        .context("bad nonce")?;
    let expected = challenge(&nonce, &sha256(canonical.as_bytes()));
    if ch != expected {
        bail!("decide/start: the challenge is not nonce || SHA-256(statement)");
    }
    let a = ap
        .passkey
        .assert_with(&AssertOptions::new(&ch, &ctx.origin));
    let cred = ap.passkey.assertion_json(&a);
    let (st, v) = conn
        .json(
            Method::POST,
            &format!("/v1/requests/{request_id}/decide/finish"),
            &session,
            Some((
                JSON,
                serde_json::to_vec(&json!({"decision": decision, "credential": cred}))?,
            )),
        )
        .await?;
    if st != 201 {
        bail!("decide/finish by {}: {st} {v}", ap.id);
    }
    Ok(v)
}

/// The agent polls `POST /token` (honouring `interval` and `slow_down`) until it gets the
/// tokens (`Some(answer)`) or `access_denied` (`None`).
pub(super) async fn poll_token(
    ctx: &Ctx,
    conn: &mut Conn,
    auth_req_id: &str,
    mut interval: u64,
) -> anyhow::Result<Option<Value>> {
    let token_form = form(&[
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", auth_req_id),
    ]);
    let mut polls = 0;
    loop {
        polls += 1;
        let (st, v) = conn
            .json(
                hyper::Method::POST,
                "/token",
                &[("authorization", ctx.basic.as_str())],
                Some((FORM, token_form.clone())),
            )
            .await?;
        match (st, v["error"].as_str()) {
            (200, _) if v["access_token"].is_string() => return Ok(Some(v)),
            (_, Some("access_denied")) => return Ok(None),
            (_, Some("authorization_pending")) if polls < 20 => {}
            (_, Some("slow_down")) if polls < 20 => interval += 5,
            _ => bail!("/token: {st} {v}"),
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
    }
}

/// `GET /v1/evidence/<auth_req_id>`, written to `dir/<auth_req_id>.json` when `dir` is given;
/// the fetch's latency.
pub(super) async fn fetch_evidence(
    ctx: &Ctx,
    conn: &mut Conn,
    auth_req_id: &str,
    dir: Option<&PathBuf>,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let (st, body) = conn
        .send(
            hyper::Method::GET,
            &format!("/v1/evidence/{auth_req_id}"),
            &[("authorization", ctx.basic.as_str())],
            None,
        )
        .await?;
    let lat = t.elapsed();
    if st != 200 {
        bail!("/v1/evidence: {st} {}", String::from_utf8_lossy(&body));
    }
    if let Some(dir) = dir {
        // auth_req_id is a server-made URL-safe token; refuse anything that is not.
        if auth_req_id.is_empty()
            || !auth_req_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("auth_req_id {auth_req_id:?} is not a safe file name");
        }
        let path = dir.join(format!("{auth_req_id}.json"));
        tokio::task::spawn_blocking(move || std::fs::write(path, &body)).await??;
    }
    Ok(lat)
}

/// One complete flow; returns the outcome, the flow latency and the `/bc-authorize` latency.
async fn one_flow(
    ctx: &Ctx,
    conn: &mut Conn,
    ap: &mut Approver,
    i: usize,
    deny: bool,
    evidence_dir: Option<&PathBuf>,
) -> anyhow::Result<(Outcome, Duration, Duration)> {
    let binding = format!("Bench flow {i}");
    let t0 = Instant::now();
    let (auth_req_id, interval) = ask(ctx, conn, &ap.id, &binding, "42.00").await?;
    let bc_lat = t0.elapsed();
    let decision = if deny { "deny" } else { "approve" };
    decide(ctx, conn, ap, &binding, decision).await?;
    let approved = poll_token(ctx, conn, &auth_req_id, interval)
        .await?
        .is_some();
    let flow_lat = t0.elapsed();
    if approved == deny {
        bail!("asked to {decision}, the token endpoint answered approved={approved}");
    }
    if !approved {
        return Ok((Outcome::Denied, flow_lat, bc_lat));
    }
    let evidence = match evidence_dir {
        None => None,
        Some(dir) => Some(fetch_evidence(ctx, conn, &auth_req_id, Some(dir)).await?),
    };
    Ok((
        Outcome::Approved {
            evidence,
            written: evidence_dir.is_some(),
        },
        flow_lat,
        bc_lat,
    ))
}

/// What every flow workload starts from: the admin token, a fresh client and a random run id.
pub(super) struct Setup {
    pub(super) ctx: Arc<Ctx>,
    pub(super) admin: String,
    /// Makes this run's client and approver ids unique on a reused server.
    pub(super) run: u64,
}

/// Reads the admin token from `data_dir`, registers a poll-mode client with
/// `client_secret_basic` and authenticates it once.
pub(super) async fn set_up(
    url: &str,
    data_dir: &std::path::Path,
    origin: Option<&str>,
    workers: usize,
) -> anyhow::Result<Setup> {
    let base = url.trim_end_matches('/').to_owned();
    let admin = std::fs::read_to_string(data_dir.join("admin.token"))
        .with_context(|| format!("reading the admin token from {}", data_dir.display()))?
        .trim()
        .to_owned();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(workers * 2)
        .build()?;
    let run: u64 = rand::thread_rng().gen();
    let client_id = format!("bench-flow-{run:016x}");
    let secret = format!("{:032x}", rand::thread_rng().gen::<u128>());
    let r = http
        .post(format!("{base}/v1/admin/clients"))
        .bearer_auth(&admin)
        .json(&json!({"client_id": client_id, "secret": secret,
                      "auth_method": "client_secret_basic", "mode": "poll"}))
        .send()
        .await?;
    let (st, v) = json_of(r).await;
    if st != 201 {
        bail!("adding client {client_id}: {st} {v}");
    }
    // The client's first authentication checks its (argon2id-hashed) secret, tens of
    // milliseconds that the server then caches; make it here, untimed, so that the timed phase
    // measures the steady state rather than 32 first requests waiting for one argon2 check.
    let r = http
        .post(format!("{base}/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", "bench-warm-up"),
        ])
        .send()
        .await?;
    let (st, v) = json_of(r).await;
    if (st, v["error"].as_str()) != (400, Some("invalid_grant")) {
        bail!("warming up client {client_id}: {st} {v}");
    }
    let ctx = Arc::new(Ctx {
        origin: origin.map_or_else(|| url_origin(&base), str::to_owned),
        base,
        http,
        basic: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
        ),
        client_id,
    });
    Ok(Setup { ctx, admin, run })
}

/// Registers a client and approvers, then runs `count` complete flows with `concurrency` in
/// flight.
pub async fn run(o: FlowOptions) -> anyhow::Result<FlowReport> {
    if let Some(d) = &o.evidence_dir {
        std::fs::create_dir_all(d)?;
    }
    let workers = o.concurrency.max(1);
    let Setup { ctx, admin, run } =
        set_up(&o.url, &o.data_dir, o.origin.as_deref(), workers).await?;

    // One approver per worker, enrolled and signed in concurrently.
    let mut setups = Vec::new();
    for w in 0..workers {
        let (ctx, admin, rp_id) = (ctx.clone(), admin.clone(), o.rp_id.clone());
        setups.push(tokio::spawn(async move {
            let id = format!("bench-flow-{run:016x}-{w}");
            enrol_and_sign_in(&ctx, &admin, id, run.wrapping_add(w as u64), &rp_id).await
        }));
    }
    let mut approvers = Vec::new();
    for s in setups {
        approvers.push(s.await??);
    }
    eprintln!(
        "flow: client {} and {} enrolled, signed-in approvers ready",
        ctx.client_id,
        approvers.len()
    );
    // One connection per worker, made before the timed phase.
    let mut conns = Vec::with_capacity(approvers.len());
    for _ in 0..approvers.len() {
        conns.push(Conn::connect(&ctx.base).await?);
    }

    // The ceiling, on an otherwise idle machine, just before the timed phase.
    let mut es256 =
        tokio::task::spawn_blocking(|| Es256Ceiling::measure_before(Duration::from_secs(2)))
            .await?;

    let next = Arc::new(AtomicUsize::new(0));
    let (count, deny_every) = (o.count, o.deny_every);
    let cpu = CpuTimes::now();
    let server_cpu = o.server_pid.and_then(ProcessCpu::now);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (mut ap, mut conn) in approvers.into_iter().zip(conns) {
        let (ctx, next, dir) = (ctx.clone(), next.clone(), o.evidence_dir.clone());
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let deny = is_denied(i, deny_every);
                match one_flow(&ctx, &mut conn, &mut ap, i, deny, dir.as_ref()).await {
                    Ok((outcome, flow, bc)) => {
                        t.flow.push(flow);
                        t.bc.push(bc);
                        match outcome {
                            Outcome::Approved { evidence, written } => {
                                t.approved += 1;
                                t.written += usize::from(written);
                                t.evidence.extend(evidence);
                            }
                            Outcome::Denied => t.denied += 1,
                        }
                    }
                    Err(e) => {
                        t.errors += 1;
                        if t.first_errors.len() < 3 {
                            t.first_errors.push(format!("flow {i}: {e:#}"));
                        }
                    }
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await?;
        all.approved += t.approved;
        all.denied += t.denied;
        all.errors += t.errors;
        all.written += t.written;
        all.flow.extend(t.flow);
        all.bc.extend(t.bc);
        all.evidence.extend(t.evidence);
        all.first_errors.extend(t.first_errors);
    }
    let elapsed = start.elapsed();
    let machine = cpu.and_then(CpuTimes::until_now);
    let server_cpu_secs = server_cpu.and_then(ProcessCpu::seconds_until_now);
    let es256 = tokio::task::spawn_blocking(move || {
        es256.measure_after(Duration::from_secs(2));
        es256
    })
    .await?;
    all.first_errors.truncate(5);
    Ok(FlowReport {
        approved: all.approved,
        denied: all.denied,
        errors: all.errors,
        evidence_written: all.written,
        elapsed,
        flow_latency: summarise(&mut all.flow),
        bc_authorize_latency: summarise(&mut all.bc),
        evidence_latency: summarise(&mut all.evidence),
        first_errors: all.first_errors,
        es256,
        machine,
        server_cpu_secs,
    })
}

#[derive(Default)]
struct Tally {
    approved: usize,
    denied: usize,
    errors: usize,
    written: usize,
    flow: Vec<Duration>,
    bc: Vec<Duration>,
    evidence: Vec<Duration>,
    first_errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kth_is_denied() {
        let denied: Vec<usize> = (0..30).filter(|&i| is_denied(i, 10)).collect();
        assert_eq!(denied, vec![9, 19, 29]);
        assert!(!(0..30).any(|i| is_denied(i, 0)));
        assert_eq!(
            url_origin("http://127.0.0.1:18095/x"),
            "http://127.0.0.1:18095"
        );
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form(&[("a b", "[{\"x\":1}]"), ("k", "v-._*~")]),
            b"a+b=%5B%7B%22x%22%3A1%7D%5D&k=v-._*%7E".to_vec()
        );
    }
}
