//! The log's HTTP API: C2SP tlog-tiles reads, JSON conveniences, the write API and operations.
//! Statuses are assigned here ([`ApiError`]), never in the log core.

mod error;
mod extract;

pub use error::ApiError;
pub use extract::{bearer, Admin, AdminAuth, Body, PathParam};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRef, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign_verifier::{leaf_hash, parse_decimal, Decision, Entry, Hash};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::StorageError;
use crate::log::{DecisionRequest, EnrolmentRequest, LogHandle};
use crate::proofs::{consistency_proof, inclusion_proof, leaf_and_inclusion_proof};
use crate::sequencer::{now_ms, Appended};
use crate::submitters;
use crate::tiles::{parse_tile_path, read_tile, TileRead};

/// Largest request body any endpoint accepts. An entry is at most 65,535 bytes and its hex
/// form in JSON twice that, so 160 KiB leaves room for the JSON around it and no more.
pub const DEFAULT_MAX_BODY_BYTES: usize = 160 * 1024;

/// Metrics of another crate, served after the log's own on `GET /metrics`.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// The registry to render.
    fn registry(&self) -> &prometheus_client::registry::Registry;
}

/// Everything a handler of the log's router needs.
#[derive(Clone, Debug)]
pub struct LogApi {
    /// The log.
    pub log: LogHandle,
    /// The admin check.
    pub admin: AdminAuth,
    /// The data directory (for backups of the key files).
    pub(crate) data_dir: PathBuf,
    /// Largest accepted request body.
    pub(crate) max_body_bytes: usize,
    /// Idle re-signing interval, for /healthz freshness.
    pub(crate) checkpoint_interval_ms: u64,
    /// Other crates' metrics, rendered after the log's.
    pub(crate) metrics_sources: Vec<Arc<dyn MetricsSource>>,
}

impl LogApi {
    /// Serves `source`'s metrics after the log's own on `GET /metrics`.
    pub fn add_metrics(&mut self, source: Arc<dyn MetricsSource>) {
        self.metrics_sources.push(source);
    }
}

impl FromRef<LogApi> for AdminAuth {
    fn from_ref(api: &LogApi) -> AdminAuth {
        api.admin.clone()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The log's router: every route of the log API and operations, and a JSON 404 for any other
/// path. Other routers are merged into it by the binary.
pub fn router(state: LogApi) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/checkpoint", get(get_checkpoint))
        .route("/tile/{*path}", get(get_tile))
        .route("/v1/log/enrolments", post(post_enrolment))
        .route("/v1/log/decisions", post(post_decision))
        .route(
            "/v1/log/decisions/batch",
            post(post_decision_batch).layer(DefaultBodyLimit::max(
                limit.saturating_mul(BATCH_BODY_FACTOR),
            )),
        )
        .route("/v1/log/proof/inclusion", get(get_inclusion))
        .route("/v1/log/proof/consistency", get(get_consistency))
        .route("/v1/log/entries/{index}", get(get_entry))
        .route("/v1/log/vkey", get(get_vkey))
        .route("/v1/log/checkpoint", get(get_checkpoint))
        .route(
            "/v1/admin/submitters",
            post(post_submitter).get(get_submitters),
        )
        .route(
            "/v1/admin/submitters/{name}",
            axum::routing::delete(delete_submitter),
        )
        .route("/v1/admin/backup", post(post_backup))
        .route("/healthz", get(get_healthz))
        .route("/metrics", get(get_metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn hex_field(name: &'static str, s: &str) -> ApiResult<Vec<u8>> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("{name} must be lowercase hex"),
        ));
    }
    hex::decode(s)
        .map_err(|_| ApiError::bad_request("invalid_request", format!("{name} is not hex")))
}

fn hex_array<const N: usize>(name: &'static str, s: &str) -> ApiResult<[u8; N]> {
    hex_field(name, s)?
        .try_into()
        .map_err(|_| ApiError::bad_request("invalid_request", format!("{name} must be {N} bytes")))
}

/// A hash serialised as lowercase hex without an intermediate `String`.
struct HexHash<'a>(&'a Hash);

impl Serialize for HexHash<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0.as_bytes(), &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

/// A list of hashes serialised as a JSON array of lowercase hex strings.
struct HexList<'a>(&'a [Hash]);

impl Serialize for HexList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(HexHash))
    }
}

/// `GET /v1/log/proof/inclusion` and the answer to an append.
#[derive(Serialize)]
struct InclusionBody<'a> {
    index: u64,
    tree_size: u64,
    leaf_hash: HexHash<'a>,
    inclusion_proof: HexList<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing: Option<bool>,
}

async fn get_checkpoint(State(s): State<LogApi>) -> Response {
    let p = s.log.sequencer().shared().published();
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            // tlog-tiles: clients must see new checkpoints promptly.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        p.note.to_string(),
    )
        .into_response()
}

async fn get_tile(State(s): State<LogApi>, PathParam(path): PathParam) -> ApiResult<Response> {
    let t = parse_tile_path(&path).map_err(|e| ApiError::bad_request("invalid_tile_path", e.0))?;
    let size = s.log.sequencer().shared().published().size;
    let store = s.log.store().clone();
    let read = tokio::task::spawn_blocking(move || read_tile(&store, &t, size))
        .await
        .map_err(|_| StorageError::Stopped("tile read task failed".into()))??;
    match read {
        TileRead::Found(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                // A tile URL (full, or partial of a given width) always names the same bytes.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response()),
        TileRead::NotFound => Err(ApiError::not_found("the tree has no such tile")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolmentBody {
    approver_id: String,
    credential_id: String,
    public_key: String,
    aaguid: String,
    attestation_format: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
    statement_hash: String,
    nonce: String,
    approver_id: String,
    credential_id: String,
    authenticator_data: String,
    client_data_json: String,
    signature: String,
    enrolment_index: u64,
}

fn appended_response(s: &LogApi, a: Appended, started: Instant) -> ApiResult<Response> {
    let proof = inclusion_proof(s.log.store(), a.index, a.tree_size)?;
    s.log
        .metrics()
        .append_latency
        .observe(started.elapsed().as_secs_f64());
    let status = if a.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(InclusionBody {
            index: a.index,
            tree_size: a.tree_size,
            leaf_hash: HexHash(&a.leaf_hash),
            inclusion_proof: HexList(&proof),
            checkpoint: Some(&a.checkpoint),
            existing: Some(a.existing),
        }),
    )
        .into_response())
}

async fn post_enrolment(State(s): State<LogApi>, _: Admin, body: Body) -> ApiResult<Response> {
    let started = Instant::now();
    let b: EnrolmentBody = body.json()?;
    let req = EnrolmentRequest {
        approver_id: b.approver_id,
        credential_id: hex_field("credential_id", &b.credential_id)?,
        public_key: hex_field("public_key", &b.public_key)?,
        aaguid: hex_array("aaguid", &b.aaguid)?,
        attestation_format: b.attestation_format,
    };
    let a = s.log.append_enrolment(req).await?;
    appended_response(&s, a, started)
}

/// The submitter token must name a live submitter.
fn require_submitter(s: &LogApi, headers: &HeaderMap) -> ApiResult<()> {
    let t = bearer(headers).ok_or(ApiError::unauthorized("missing bearer token"))?;
    if submitters::submitter_for(s.log.store(), &t)?.is_none() {
        return Err(ApiError::unauthorized(
            "the bearer token is not a submitter token",
        ));
    }
    Ok(())
}

fn decision_request(b: DecisionBody) -> ApiResult<DecisionRequest> {
    let decision = Decision::parse(&b.decision).ok_or_else(|| {
        ApiError::bad_request("invalid_request", "decision must be approve or deny")
    })?;
    Ok(DecisionRequest {
        decision,
        statement_hash: hex_array("statement_hash", &b.statement_hash)?,
        nonce: hex_array("nonce", &b.nonce)?,
        approver_id: b.approver_id,
        credential_id: hex_field("credential_id", &b.credential_id)?,
        authenticator_data: hex_field("authenticator_data", &b.authenticator_data)?,
        client_data_json: hex_field("client_data_json", &b.client_data_json)?,
        signature: hex_field("signature", &b.signature)?,
        enrolment_index: b.enrolment_index,
    })
}

async fn post_decision(
    State(s): State<LogApi>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    require_submitter(&s, &headers)?;
    let req = decision_request(body.json()?)?;
    let a = s.log.append_decision(req).await?;
    appended_response(&s, a, started)
}

/// Most decisions one `POST /v1/log/decisions/batch` may carry.
pub const MAX_BATCH_DECISIONS: usize = 256;

/// How many times the per-request body limit a batch body may be.
pub const BATCH_BODY_FACTOR: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<T> {
    decisions: Vec<T>,
}

/// A batch's decisions, each parsed on its own: one that is not a decision is refused alone.
/// Batches whose decisions all parse (the usual case) are read once, without a JSON tree.
fn batch_decisions(body: Body) -> ApiResult<Vec<ApiResult<DecisionBody>>> {
    if let Ok(b) = serde_json::from_slice::<BatchBody<DecisionBody>>(&body.0) {
        return check_batch_len(b.decisions.into_iter().map(Ok).collect());
    }
    let b: BatchBody<Value> = body.json()?;
    check_batch_len(
        b.decisions
            .into_iter()
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    ApiError::bad_request("invalid_request", format!("invalid decision: {e}"))
                })
            })
            .collect(),
    )
}

fn check_batch_len<T>(decisions: Vec<T>) -> ApiResult<Vec<T>> {
    if decisions.is_empty() || decisions.len() > MAX_BATCH_DECISIONS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("decisions must hold 1 to {MAX_BATCH_DECISIONS} decisions"),
        ));
    }
    Ok(decisions)
}

/// One decision's outcome in a batch answer.
#[derive(Serialize)]
#[serde(untagged)]
enum BatchResult<'a> {
    Logged {
        index: u64,
        leaf_hash: HexHash<'a>,
        inclusion_proof: HexList<'a>,
        existing: bool,
    },
    Refused {
        status: u16,
        error: &'static str,
        error_description: String,
    },
}

#[derive(Serialize)]
struct BatchAnswer<'a> {
    tree_size: u64,
    checkpoint: &'a str,
    logged: usize,
    refused: usize,
    results: Vec<BatchResult<'a>>,
}

/// `POST /v1/log/decisions/batch`: up to [`MAX_BATCH_DECISIONS`] decisions, each checked and
/// logged on its own exactly as by `POST /v1/log/decisions`. The answer comes once every logged
/// one is covered by a signed checkpoint, and carries that checkpoint and one result per
/// decision, in order: its index, leaf hash and inclusion proof against the checkpoint, or its
/// error (nothing was written for it).
async fn post_decision_batch(
    State(s): State<LogApi>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    require_submitter(&s, &headers)?;
    // A decision that does not parse is refused on its own, like one that fails a check.
    let reqs = batch_decisions(body)?
        .into_iter()
        .map(|b| b.and_then(decision_request).map_err(ApiError::into_refusal))
        .collect();
    let outcomes: Vec<Result<Appended, ApiError>> = s
        .log
        .append_decisions(reqs)
        .await
        .into_iter()
        .map(|r| r.map_err(ApiError::from))
        .collect();
    // Every logged decision's checkpoint is at most the published one, so one checkpoint
    // covers them all and every proof is against it.
    let published = s.log.sequencer().shared().published();
    let mut proofs = Vec::with_capacity(outcomes.len());
    for o in &outcomes {
        proofs.push(match o {
            Ok(a) => inclusion_proof(s.log.store(), a.index, published.size)?,
            Err(_) => Vec::new(),
        });
    }
    let mut retry_after = None;
    let results: Vec<BatchResult> = outcomes
        .iter()
        .zip(&proofs)
        .map(|(o, proof)| match o {
            Ok(a) => BatchResult::Logged {
                index: a.index,
                leaf_hash: HexHash(&a.leaf_hash),
                inclusion_proof: HexList(proof),
                existing: a.existing,
            },
            Err(e) => {
                retry_after = retry_after.max(e.retry_after);
                BatchResult::Refused {
                    status: e.status.as_u16(),
                    error: e.code,
                    error_description: e.description.clone(),
                }
            }
        })
        .collect();
    let logged = outcomes.iter().filter(|o| o.is_ok()).count();
    let elapsed = started.elapsed().as_secs_f64();
    for _ in 0..logged {
        s.log.metrics().append_latency.observe(elapsed);
    }
    let mut resp = Json(BatchAnswer {
        tree_size: published.size,
        checkpoint: &published.note,
        logged,
        refused: results.len() - logged,
        results,
    })
    .into_response();
    if let Some(r) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(r));
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitterBody {
    name: String,
}

async fn post_submitter(State(s): State<LogApi>, _: Admin, body: Body) -> ApiResult<Response> {
    let b: SubmitterBody = body.json()?;
    if b.name.is_empty() || b.name.len() > 128 || b.name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "name must be 1 to 128 characters without control characters",
        ));
    }
    let token = submitters::create_submitter(s.log.store(), &b.name)?;
    tracing::info!(submitter = %b.name, "submitter created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": b.name, "token": token.expose()})),
    )
        .into_response())
}

async fn get_submitters(State(s): State<LogApi>, _: Admin) -> ApiResult<Response> {
    let list = submitters::list_submitters(s.log.store())?;
    Ok(Json(json!({ "submitters": list })).into_response())
}

async fn delete_submitter(
    State(s): State<LogApi>,
    _: Admin,
    PathParam(name): PathParam,
) -> ApiResult<Response> {
    let revoked = submitters::revoke_submitter(s.log.store(), &name)?;
    if revoked.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_submitter",
            "no submitter has this name",
        ));
    }
    tracing::info!(submitter = %name, tokens = revoked.len(), "submitter revoked");
    Ok(Json(json!({"name": name, "revoked": revoked})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    to: String,
}

async fn post_backup(State(s): State<LogApi>, _: Admin, body: Body) -> ApiResult<Response> {
    let b: BackupBody = body.json()?;
    let to = PathBuf::from(&b.to);
    let store = s.log.store().clone();
    let data_dir = s.data_dir.clone();
    let result =
        tokio::task::spawn_blocking(move || crate::backup::backup_store(&store, &data_dir, &to))
            .await;
    match result {
        Ok(Ok(size)) => Ok(Json(json!({"to": b.to, "tree_size": size})).into_response()),
        Ok(Err(e)) => Err(ApiError::bad_request("backup_failed", e.to_string())),
        Err(_) => Err(StorageError::Stopped("backup task failed".into()).into()),
    }
}

fn query_u64(q: &HashMap<String, String>, name: &'static str) -> ApiResult<Option<u64>> {
    q.get(name)
        .map(|v| {
            parse_decimal(v).ok_or_else(|| {
                ApiError::bad_request("invalid_request", format!("{name} is not a decimal number"))
            })
        })
        .transpose()
}

async fn get_inclusion(
    State(s): State<LogApi>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let published = s.log.sequencer().shared().published();
    let tree_size = query_u64(&q, "tree_size")?.unwrap_or(published.size);
    if tree_size > published.size {
        return Err(ApiError::bad_request(
            "out_of_range",
            "tree_size is beyond the latest checkpoint",
        ));
    }
    let store = s.log.store().clone();
    let index = match (query_u64(&q, "index")?, q.get("leaf_hash")) {
        (Some(i), None) => i,
        (None, Some(h)) => {
            let h = Hash::from_hex(h).ok_or_else(|| {
                ApiError::bad_request("invalid_request", "leaf_hash is not 32 bytes of hex")
            })?;
            store
                .leaf_index(&h)?
                .filter(|i| *i < published.size)
                .ok_or_else(|| ApiError::not_found("no leaf with this hash"))?
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of index and leaf_hash",
            ))
        }
    };
    if index >= tree_size {
        return Err(ApiError::bad_request(
            "out_of_range",
            "index must be below tree_size",
        ));
    }
    // The stored level-0 node is the leaf hash: no need to read and hash the entry.
    let (leaf, proof) = leaf_and_inclusion_proof(&store, index, tree_size)?;
    let older;
    let checkpoint = if tree_size == published.size {
        Some(&*published.note)
    } else {
        older = store.checkpoint(tree_size)?;
        older.as_deref()
    };
    Ok(Json(InclusionBody {
        index,
        tree_size,
        leaf_hash: HexHash(&leaf),
        inclusion_proof: HexList(&proof),
        checkpoint,
        existing: None,
    })
    .into_response())
}

async fn get_consistency(
    State(s): State<LogApi>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let published = s.log.sequencer().shared().published();
    let first = query_u64(&q, "first")?
        .ok_or_else(|| ApiError::bad_request("invalid_request", "first is required"))?;
    let second = query_u64(&q, "second")?.unwrap_or(published.size);
    if second > published.size {
        return Err(ApiError::bad_request(
            "out_of_range",
            "second is beyond the latest checkpoint",
        ));
    }
    if first > second {
        return Err(ApiError::bad_request(
            "out_of_range",
            "first must not exceed second",
        ));
    }
    let proof = consistency_proof(s.log.store(), first, second)?;
    Ok(Json(json!({
        "first": first,
        "second": second,
        "consistency_proof": HexList(&proof),
    }))
    .into_response())
}

async fn get_entry(State(s): State<LogApi>, PathParam(index): PathParam) -> ApiResult<Response> {
    let index = parse_decimal(&index)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "index is not a decimal number"))?;
    let published = s.log.sequencer().shared().published();
    if index >= published.size {
        return Err(ApiError::not_found("index is beyond the latest checkpoint"));
    }
    let entry = s
        .log
        .store()
        .entry(index)?
        .ok_or_else(|| StorageError::Missing("entry missing below tree size".into()))?;
    let decoded = match Entry::decode(&entry) {
        Ok(e) => Entry::to_json(&e),
        Err(_) => Value::Null,
    };
    Ok(Json(json!({
        "index": index,
        "leaf_hash": leaf_hash(&entry).to_hex(),
        "entry": hex::encode(&entry),
        "decoded": decoded,
    }))
    .into_response())
}

async fn get_vkey(State(s): State<LogApi>) -> Response {
    let k = s.log.signer().verifier_key();
    Json(json!({"vkey": k.to_vkey(), "origin": k.name()})).into_response()
}

async fn get_healthz(State(s): State<LogApi>) -> Response {
    let shared = s.log.sequencer().shared();
    let age = now_ms().saturating_sub(shared.last_signed_ms());
    let fresh = age
        <= s.checkpoint_interval_ms
            .saturating_mul(3)
            .saturating_add(2000);
    let ok = shared.alive() && !shared.closing() && fresh;
    let body = Json(json!({
        "status": if ok { "ok" } else { "unhealthy" },
        "sequencer_alive": shared.alive(),
        "checkpoint_age_ms": age,
        "tree_size": shared.published().size,
    }));
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

async fn get_metrics(State(s): State<LogApi>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.log
            .metrics()
            .render_with(s.metrics_sources.iter().map(|m| m.registry())),
    )
        .into_response()
}

/// Serves `app` (the log's router, with whatever the binary merged into it) on `listener`
/// until `shutdown` resolves, then lets in-flight requests finish
/// and the sequencer commit everything queued before it stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    log: LogHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Answers are small and each is written whole: send them at once rather than let Nagle's
    // algorithm hold one back behind an unacknowledged segment.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    log.sequencer().shutdown().await;
    // Nothing more will be appended: write the memtables out so the next start is quick.
    let store = log.store().clone();
    let t = std::time::Instant::now();
    match tokio::task::spawn_blocking(move || store.flush_memtables()).await {
        Ok(Ok(())) => tracing::info!(
            seconds = t.elapsed().as_secs_f64(),
            "memtables flushed; the next start need not replay the write-ahead log"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not flush memtables at shutdown; the \
                                     next start replays the write-ahead log (nothing is lost)"),
        Err(e) => tracing::warn!(error = %e, "memtable flush task failed"),
    }
    result
}
