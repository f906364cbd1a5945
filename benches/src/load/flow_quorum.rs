//! `flow --quorum`: complete 2-of-3 approval flows against single-approval flows, on one running
//! server and in the same run, with the server's CPU per flow of each kind (issue 18's target: a
//! 2-of-3 flow costs at most twice a single one).
//!
//! Set-up (not timed): the client of [`super::flow`], and per worker one approver for single
//! flows and three for quorum flows, each enrolled with a software ES256 passkey and signed in.
//! The bench then writes an approval policy to the file the server was started with (`serve
//! --policy FILE`) and sends the server SIGHUP: worker `w`'s three approvers form group `bq-w`,
//! and rule `bench quorum w` asks 2 of them for this run's client's payments of exactly
//! `2000 + w` EUR. It waits until `GET /v1/admin/policy` shows that policy in force. Single flows
//! pay 42.00 EUR, which no rule matches: under the same policy, the named approver alone.
//!
//! Timed phases, alternated (`rounds` times: single, then quorum), each over `count` flows with
//! one worker per connection:
//! - single: `/bc-authorize`, the approver reads the inbox and approves (decide start/finish),
//!   `/token`, `/v1/evidence`;
//! - quorum: `/bc-authorize`, the first approver reads the inbox and approves (the answer must
//!   say `pending`, 1 of 2), the second does the same (`approved`), `/token` (the access token's
//!   `approvals` must name both, in order), `/v1/evidence`. Flow `i` of worker `w` is approved
//!   by approvers `i mod 3` and `i + 1 mod 3` of its group, so each takes turns.
//!
//! The server's CPU is read from `/proc/<pid>/stat` before and after each phase.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::Value;

use super::flow::{
    ask, decide, enrol_and_sign_in, fetch_evidence, poll_token, set_up, Approver, Conn, Ctx, Setup,
};
use super::http::Es256Ceiling;
use super::stats::{summarise, CpuTimes, MachineLoad, ProcessCpu, Summary};

/// At most one rule per worker, and a policy holds at most 256 rules (`spec/policy.md` P6).
pub const MAX_WORKERS: usize = 256;

/// Options of `flow --quorum`.
#[derive(Clone, Debug)]
pub struct QuorumOptions {
    /// Server URL.
    pub url: String,
    /// Server data directory (for the admin token).
    pub data_dir: PathBuf,
    /// The policy file the server was started with (`serve --policy FILE`); overwritten.
    pub policy_file: PathBuf,
    /// The server's process id: for its CPU, and to send it SIGHUP.
    pub server_pid: u32,
    /// Flows of each kind in each round.
    pub count: usize,
    /// Flows in flight (workers).
    pub concurrency: usize,
    /// Rounds of (single phase, quorum phase).
    pub rounds: usize,
    /// Where to write `<auth_req_id>.json` for each flow (both kinds fetch their evidence;
    /// this only saves it).
    pub evidence_dir: Option<PathBuf>,
    /// Page origin to sign for (default: the URL's origin).
    pub origin: Option<String>,
    /// RP ID the passkeys are bound to.
    pub rp_id: String,
}

/// The two kinds of flow compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One approval (no rule matches: the `login_hint` approver, quorum 1).
    Single,
    /// Two approvals of three eligible approvers.
    Quorum,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Single => "single",
            Kind::Quorum => "2-of-3",
        })
    }
}

/// One timed phase.
#[derive(Debug)]
pub struct Phase {
    /// Which flows.
    pub kind: Kind,
    /// Round number, from 1.
    pub round: usize,
    /// Flows that ended with tokens and evidence, every check passed.
    pub ok: usize,
    /// Flows that failed somewhere.
    pub errors: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// `/bc-authorize` to the token.
    pub latency: Summary,
    /// The server's CPU seconds over the phase.
    pub server_cpu_secs: f64,
    /// The machine over the phase.
    pub machine: Option<MachineLoad>,
    /// The first few error messages.
    pub first_errors: Vec<String>,
}

impl Phase {
    /// Completed flows per second of wall time.
    pub fn flows_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What `flow --quorum` measured.
#[derive(Debug)]
pub struct QuorumReport {
    /// Every phase, in the order run.
    pub phases: Vec<Phase>,
    /// The log index of the policy entry the run's policy got.
    pub policy_index: u64,
    /// Bare ES256 assertion checks per second on all cores, before and after.
    pub es256: Es256Ceiling,
}

impl QuorumReport {
    /// The server's CPU seconds per completed flow of `kind`, over all its phases.
    pub fn cpu_per_flow(&self, kind: Kind) -> f64 {
        let (cpu, ok) = self
            .phases
            .iter()
            .filter(|p| p.kind == kind)
            .fold((0.0, 0), |(c, n), p| (c + p.server_cpu_secs, n + p.ok));
        cpu / ok.max(1) as f64
    }

    /// A 2-of-3 flow's server CPU over a single flow's.
    pub fn ratio(&self) -> f64 {
        self.cpu_per_flow(Kind::Quorum) / self.cpu_per_flow(Kind::Single).max(1e-12)
    }

    /// Seconds of CPU one ES256 check costs (`cores / rate`, the rate measured in the run).
    pub fn es256_check_secs(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        cores / self.es256.per_sec().max(1.0)
    }

    /// Errors over all phases.
    pub fn errors(&self) -> usize {
        self.phases.iter().map(|p| p.errors).sum()
    }
}

/// Group `w`'s name.
fn group(w: usize) -> String {
    format!("bq-{w}")
}

/// The amount only worker `w`'s quorum flows pay: what selects rule `w`.
pub fn quorum_amount(w: usize) -> String {
    format!("{}.00", 2000 + w)
}

/// The id of member `m` (0, 1, 2) of worker `w`'s group in run `run`.
fn member(run: u64, w: usize, m: usize) -> String {
    format!("bench-q-{run:016x}-{w}-{}", ["a", "b", "c"][m])
}

/// The policy file of a run: one group of three and one 2-of-3 rule per worker, for `client`'s
/// payments of exactly [`quorum_amount`]`(w)`.
pub fn policy_toml(run: u64, workers: usize, client: &str) -> String {
    let mut out = String::from("# Written by countersign-bench flow --quorum.\n[groups]\n");
    for w in 0..workers {
        let ids: Vec<String> = (0..3)
            .map(|m| format!("\"{}\"", member(run, w, m)))
            .collect();
        out.push_str(&format!("\"{}\" = [{}]\n", group(w), ids.join(", ")));
    }
    for w in 0..workers {
        out.push_str(&format!(
            "\n[[rules]]\nname = \"bench quorum {w}\"\nwhen.type = \"payment_initiation\"\n\
             when.field = \"instructedAmount.amount\"\nwhen.eq = \"{}\"\n\
             when.clients = [\"{client}\"]\napprovers = \"{}\"\nquorum = 2\nrequire_uv = true\n",
            quorum_amount(w),
            group(w)
        ));
    }
    out
}

/// Whether the answer of `GET /v1/admin/policy` is this run's policy: every worker's group with
/// its three members and a 2-of-3 rule for this client. `Some(index)` of its entry if so.
pub fn is_run_policy(answer: &Value, run: u64, workers: usize, client: &str) -> Option<u64> {
    let p = &answer["policy"];
    let rules = p["rules"].as_array()?;
    if rules.len() != workers {
        return None;
    }
    for (w, rule) in rules.iter().enumerate() {
        let members: Vec<String> = (0..3).map(|m| member(run, w, m)).collect();
        let ok = p["groups"][group(w)] == serde_json::json!(members)
            && rule["approvers"] == serde_json::json!(group(w))
            && rule["quorum"] == 2
            && rule["when"]["value"] == serde_json::json!(quorum_amount(w))
            && rule["when"]["clients"] == serde_json::json!([client]);
        if !ok {
            return None;
        }
    }
    answer["index"].as_u64()
}

/// The approver ids of an access token's `approvals` claim, in order (the payload is read, not
/// verified: the bench only checks what the server says it issued).
pub fn token_approvers(access_token: &str) -> anyhow::Result<Vec<String>> {
    let payload = access_token
        .split('.')
        .nth(1)
        .context("the access token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .context("the access token's payload is not base64url")?;
    let claims: Value = serde_json::from_slice(&bytes).context("the payload is not JSON")?;
    claims["approvals"]
        .as_array()
        .context("the access token has no approvals claim")?
        .iter()
        .map(|a| {
            a["approver_id"]
                .as_str()
                .map(str::to_owned)
                .context("an approval without approver_id")
        })
        .collect()
}

/// Puts the run's policy in force: writes the file, sends SIGHUP, waits until the server shows
/// it. Returns the policy entry's index.
async fn put_policy_in_force(
    ctx: &Ctx,
    admin: &str,
    o: &QuorumOptions,
    run: u64,
    workers: usize,
) -> anyhow::Result<u64> {
    // A server started without --policy (or TLS) has no SIGHUP handler, and the signal's
    // default action would end it: ask first.
    let r = ctx
        .http
        .get(format!("{}/v1/admin/policy", ctx.base))
        .bearer_auth(admin)
        .send()
        .await?;
    if r.status().as_u16() != 200 {
        let st = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        bail!(
            "the server has no policy in force (GET /v1/admin/policy: {st} {body}); start it \
             with `serve --policy {}` (an empty file will do)",
            o.policy_file.display()
        );
    }
    std::fs::write(&o.policy_file, policy_toml(run, workers, &ctx.client_id))
        .with_context(|| format!("writing the policy to {}", o.policy_file.display()))?;
    let st = std::process::Command::new("kill")
        .args(["-HUP", &o.server_pid.to_string()])
        .status()
        .context("running kill -HUP")?;
    if !st.success() {
        bail!("kill -HUP {} failed ({st})", o.server_pid);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let r = ctx
            .http
            .get(format!("{}/v1/admin/policy", ctx.base))
            .bearer_auth(admin)
            .send()
            .await?;
        last = r.json().await.unwrap_or(Value::Null);
        if let Some(index) = is_run_policy(&last, run, workers, &ctx.client_id) {
            return Ok(index);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "after SIGHUP the server does not show this run's policy (was it started with \
         `serve --policy {}`? see its log for a refused reload); GET /v1/admin/policy: {last}",
        o.policy_file.display()
    )
}

/// A worker: its connection, its single approver and its group of three.
struct Worker {
    w: usize,
    conn: Conn,
    single: Approver,
    group: [Approver; 3],
}

/// One single-approval flow; its latency.
async fn single_flow(
    ctx: &Ctx,
    wk: &mut Worker,
    tag: &str,
    dir: Option<&PathBuf>,
) -> anyhow::Result<Duration> {
    let binding = format!("Bench single {tag}");
    let t0 = Instant::now();
    let (auth, interval) = ask(ctx, &mut wk.conn, &wk.single.id, &binding, "42.00").await?;
    let done = decide(ctx, &mut wk.conn, &mut wk.single, &binding, "approve").await?;
    if done["status"] != "approved" {
        bail!("a single approval answered {done}");
    }
    poll_token(ctx, &mut wk.conn, &auth, interval)
        .await?
        .context("a single approval ended in access_denied")?;
    let lat = t0.elapsed();
    fetch_evidence(ctx, &mut wk.conn, &auth, dir).await?;
    Ok(lat)
}

/// One 2-of-3 flow (flow number `i`); its latency.
async fn quorum_flow(
    ctx: &Ctx,
    wk: &mut Worker,
    i: usize,
    tag: &str,
    dir: Option<&PathBuf>,
) -> anyhow::Result<Duration> {
    let binding = format!("Bench quorum {tag}");
    let (first, second) = (i % 3, (i + 1) % 3);
    let t0 = Instant::now();
    // login_hint names a member; the rule puts the request in all three inboxes.
    let hint = wk.group[first].id.clone();
    let (auth, interval) = ask(ctx, &mut wk.conn, &hint, &binding, &quorum_amount(wk.w)).await?;
    let one = decide(ctx, &mut wk.conn, &mut wk.group[first], &binding, "approve").await?;
    if (
        one["status"].as_str(),
        one["approvals"].as_u64(),
        one["quorum"].as_u64(),
    ) != (Some("pending"), Some(1), Some(2))
    {
        bail!("the first of two approvals answered {one}");
    }
    let two = decide(
        ctx,
        &mut wk.conn,
        &mut wk.group[second],
        &binding,
        "approve",
    )
    .await?;
    if two["status"] != "approved" {
        bail!("the second of two approvals answered {two}");
    }
    let tok = poll_token(ctx, &mut wk.conn, &auth, interval)
        .await?
        .context("a 2-of-3 approval ended in access_denied")?;
    let lat = t0.elapsed();
    let who = token_approvers(tok["access_token"].as_str().unwrap_or_default())?;
    if who != [wk.group[first].id.as_str(), wk.group[second].id.as_str()] {
        bail!("the access token's approvals name {who:?}");
    }
    fetch_evidence(ctx, &mut wk.conn, &auth, dir).await?;
    Ok(lat)
}

/// Runs one phase of `count` flows of `kind` over the workers; gives them back.
async fn phase(
    ctx: &Arc<Ctx>,
    workers: Vec<Worker>,
    kind: Kind,
    round: usize,
    count: usize,
    server_pid: u32,
    dir: Option<&PathBuf>,
) -> anyhow::Result<(Phase, Vec<Worker>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = CpuTimes::now();
    let server = ProcessCpu::now(server_pid)
        .with_context(|| format!("cannot read /proc/{server_pid}/stat"))?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut wk in workers {
        let (ctx, next, dir) = (ctx.clone(), next.clone(), dir.cloned());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let tag = format!("r{round} {i}");
                let got = match kind {
                    Kind::Single => single_flow(&ctx, &mut wk, &tag, dir.as_ref()).await,
                    Kind::Quorum => quorum_flow(&ctx, &mut wk, i, &tag, dir.as_ref()).await,
                };
                match got {
                    Ok(d) => lat.push(d),
                    Err(e) => errors.push(format!("{kind} flow {i} of round {round}: {e:#}")),
                }
            }
            (wk, lat, errors)
        }));
    }
    let (mut back, mut lat, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for t in tasks {
        let (wk, l, e) = t.await?;
        back.push(wk);
        lat.extend(l);
        errors.extend(e);
    }
    let elapsed = start.elapsed();
    let server_cpu_secs = server
        .seconds_until_now()
        .with_context(|| format!("cannot read /proc/{server_pid}/stat after the phase"))?;
    let errs = errors.len();
    errors.truncate(3);
    Ok((
        Phase {
            kind,
            round,
            ok: lat.len(),
            errors: errs,
            elapsed,
            latency: summarise(&mut lat),
            server_cpu_secs,
            machine: cpu.and_then(CpuTimes::until_now),
            first_errors: errors,
        },
        back,
    ))
}

/// Sets up, puts the run's policy in force, and runs the alternated phases.
pub async fn run(o: QuorumOptions) -> anyhow::Result<QuorumReport> {
    let workers = o.concurrency.max(1);
    if workers > MAX_WORKERS {
        bail!("--quorum takes at most {MAX_WORKERS} workers (one policy rule each)");
    }
    if let Some(d) = &o.evidence_dir {
        std::fs::create_dir_all(d)?;
    }
    let Setup { ctx, admin, run } =
        set_up(&o.url, &o.data_dir, o.origin.as_deref(), workers).await?;

    // Four approvers per worker, enrolled and signed in concurrently.
    let mut setups = Vec::new();
    for w in 0..workers {
        for m in 0..4 {
            let (ctx, admin, rp_id) = (ctx.clone(), admin.clone(), o.rp_id.clone());
            let id = if m == 3 {
                format!("bench-q-{run:016x}-{w}-single")
            } else {
                member(run, w, m)
            };
            let seed = run.wrapping_add((w * 4 + m) as u64);
            setups.push(tokio::spawn(async move {
                enrol_and_sign_in(&ctx, &admin, id, seed, &rp_id).await
            }));
        }
    }
    let mut enrolled = Vec::new();
    for s in setups {
        enrolled.push(s.await??);
    }
    let mut it = enrolled.into_iter();
    let mut pool = Vec::with_capacity(workers);
    for w in 0..workers {
        let (Some(a), Some(b), Some(c), Some(single)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            bail!("fewer approvers enrolled than asked for");
        };
        pool.push(Worker {
            w,
            conn: Conn::connect(&ctx.base).await?,
            single,
            group: [a, b, c],
        });
    }
    let policy_index = put_policy_in_force(&ctx, &admin, &o, run, workers).await?;
    eprintln!(
        "flow --quorum: client {}, {} approvers, the run's policy in force at log index \
         {policy_index}",
        ctx.client_id,
        workers * 4
    );

    let mut es256 =
        tokio::task::spawn_blocking(|| Es256Ceiling::measure_before(Duration::from_secs(2)))
            .await?;
    let mut phases = Vec::new();
    for round in 1..=o.rounds.max(1) {
        for kind in [Kind::Single, Kind::Quorum] {
            let (p, back) = phase(
                &ctx,
                pool,
                kind,
                round,
                o.count,
                o.server_pid,
                o.evidence_dir.as_ref(),
            )
            .await?;
            pool = back;
            phases.push(p);
        }
    }
    let es256 = tokio::task::spawn_blocking(move || {
        es256.measure_after(Duration::from_secs(2));
        es256
    })
    .await?;
    Ok(QuorumReport {
        phases,
        policy_index,
        es256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_policy_gives_each_worker_its_own_group_and_rule() {
        let text = policy_toml(0xab, 2, "bench-flow-1");
        assert!(text.contains(
            "\"bq-0\" = [\"bench-q-00000000000000ab-0-a\", \"bench-q-00000000000000ab-0-b\", \
             \"bench-q-00000000000000ab-0-c\"]"
        ));
        assert!(text.contains("\"bq-1\" = [\"bench-q-00000000000000ab-1-a\""));
        assert_eq!(text.matches("[[rules]]").count(), 2);
        assert_eq!(text.matches("quorum = 2").count(), 2);
        assert!(text.contains("when.eq = \"2000.00\"") && text.contains("when.eq = \"2001.00\""));
        assert!(text.contains("when.clients = [\"bench-flow-1\"]"));
        // The single flows' amount matches no rule.
        assert!(!text.contains("\"42.00\""));
    }

    fn answer(run: u64, client: &str) -> Value {
        let members = |w: usize| (0..3).map(|m| member(run, w, m)).collect::<Vec<_>>();
        json!({
            "index": 7,
            "policy": {
                "version": 1,
                "groups": {"bq-0": members(0), "bq-1": members(1)},
                "rules": (0..2).map(|w| json!({
                    "name": format!("bench quorum {w}"),
                    "approvers": group(w),
                    "quorum": 2,
                    "require_uv": true,
                    "require_attestation": false,
                    "when": {"type": "payment_initiation", "field": "instructedAmount.amount",
                             "op": "eq", "value": quorum_amount(w), "clients": [client]}
                })).collect::<Vec<_>>()
            }
        })
    }

    #[test]
    fn the_run_policy_is_recognised_and_another_is_not() {
        let good = answer(5, "c");
        assert_eq!(is_run_policy(&good, 5, 2, "c"), Some(7));
        // Another run's members, another client, another worker count, a lowered quorum.
        assert_eq!(is_run_policy(&good, 6, 2, "c"), None);
        assert_eq!(is_run_policy(&good, 5, 2, "d"), None);
        assert_eq!(is_run_policy(&good, 5, 3, "c"), None);
        let mut lowered = good.clone();
        lowered["policy"]["rules"][1]["quorum"] = json!(1);
        assert_eq!(is_run_policy(&lowered, 5, 2, "c"), None);
        // The server's answer when no policy is in force.
        let none = json!({"error": "no_policy"});
        assert_eq!(is_run_policy(&none, 5, 2, "c"), None);
    }

    #[test]
    fn approvers_are_read_from_the_access_token() {
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let payload = json!({"approvals": [{"approver_id": "x", "log_index": 3},
                                           {"approver_id": "y", "log_index": 5}]});
        let jwt = format!("e30.{}.sig", b64(&payload));
        assert_eq!(token_approvers(&jwt).unwrap(), ["x", "y"]);
        let err = token_approvers(&format!("e30.{}.sig", b64(&json!({"sub": "x"}))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no approvals claim"), "{err}");
        assert!(token_approvers("not-a-jwt").is_err());
        assert!(token_approvers("a.!!!.c").is_err());
    }
}
