//! Operations: submitters and backups (admin), health and metrics.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::error::StorageError;
use crate::sequencer::now_ms;
use crate::submitters;

use super::error::ApiError;
use super::extract::{Admin, Body, PathParam};
use super::json::*;
use super::state::LogApi;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitterBody {
    name: String,
}

pub(super) async fn post_submitter(
    State(s): State<LogApi>,
    _: Admin,
    body: Body,
) -> ApiResult<Response> {
    let b: SubmitterBody = body.json()?;
    if !submitters::valid_name(&b.name) {
        return Err(ApiError::bad_request(
            "invalid_request",
            submitters::NAME_RULE,
        ));
    }
    let token = s.log.create_submitter(&b.name).await?;
    tracing::info!(submitter = %b.name, "submitter created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": b.name, "token": token.expose()})),
    )
        .into_response())
}

pub(super) async fn get_submitters(State(s): State<LogApi>, _: Admin) -> ApiResult<Response> {
    let list = s.log.list_submitters().await?;
    Ok(Json(json!({ "submitters": list })).into_response())
}

pub(super) async fn delete_submitter(
    State(s): State<LogApi>,
    _: Admin,
    PathParam(name): PathParam,
) -> ApiResult<Response> {
    let revoked = s.log.revoke_submitter(&name).await?;
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

pub(super) async fn post_backup(
    State(s): State<LogApi>,
    _: Admin,
    body: Body,
) -> ApiResult<Response> {
    let b: BackupBody = body.json()?;
    let to = PathBuf::from(&b.to);
    let Some(store) = s.log.store().cloned() else {
        return Err(ApiError::bad_request(
            "backup_failed",
            "a shared deployment is backed up by its database's and bucket's own means \
             (pg_dump or snapshots, bucket versioning or replication): see the README",
        ));
    };
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

pub(super) async fn get_healthz(State(s): State<LogApi>) -> Response {
    let age = now_ms().saturating_sub(s.log.last_signed_ms());
    let fresh = age
        <= s.checkpoint_interval_ms
            .saturating_mul(3)
            .saturating_add(2000);
    let alive = s.log.alive();
    let closing = s.log.sequencer().is_some_and(|q| q.shared().closing());
    // A shared deployment re-signs only when it grows: an idle log's checkpoint ages.
    let fresh = fresh || s.log.shared_log().is_some();
    let mut ok = alive && !closing && fresh;
    let mut body = json!({
        "status": "ok",
        "sequencer_alive": alive,
        "checkpoint_age_ms": age,
        "tree_size": s.log.published().size,
    });
    if let Some(shared) = s.log.shared_log() {
        let st = shared.status().borrow().clone();
        body["integrator"] = json!({
            "leader": st.leader,
            "retrying": st.retrying,
            "stopped": st.stopped,
        });
    }
    if let Some(w) = s.log.witnessing() {
        let (reachable, detail) = w.health();
        // A failing witness is an alert, not an outage, unless it blocks publication.
        if w.gates() {
            ok &= reachable;
        }
        body["witnessing"] = detail;
    }
    body["status"] = json!(if ok { "ok" } else { "unhealthy" });
    let body = Json(body);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

pub(super) async fn get_metrics(State(s): State<LogApi>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.log.metrics().render_with(
            s.metrics_sources
                .iter()
                .map(|m| m.registry())
                .chain(s.log.witnessing().map(|w| w.registry())),
        ),
    )
        .into_response()
}
