//! The read API: C2SP tlog-tiles (`/checkpoint`, `/tile/...`) and the JSON conveniences (proofs,
//! entries, the verifier key).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use countersign_verifier::{leaf_hash, parse_decimal, Entry, Hash};
use serde_json::{json, Value};

use crate::error::StorageError;
use crate::tiles::{parse_tile_path, TileRead};

use super::error::ApiError;
use super::extract::PathParam;
use super::json::*;
use super::state::LogApi;

pub(super) async fn get_checkpoint(State(s): State<LogApi>) -> Response {
    let Some(p) = s.log.served_checkpoint() else {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_witnessed",
            "no checkpoint of this log has reached its witness quorum yet",
        )
        .retry_after(1)
        .into_response();
    };
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

pub(super) async fn get_tile(
    State(s): State<LogApi>,
    PathParam(path): PathParam,
) -> ApiResult<Response> {
    let t = parse_tile_path(&path).map_err(|e| ApiError::bad_request("invalid_tile_path", e.0))?;
    let size = s.log.published().size;
    let read = s.log.tile(&t, size).await?;
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

pub(super) async fn get_inclusion(
    State(s): State<LogApi>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    // The checkpoint readers are served: with its cosignatures when witnessed.
    let published = s.log.readers_checkpoint();
    let tree_size = query_u64(&q, "tree_size")?.unwrap_or(published.size);
    if tree_size > published.size {
        return Err(ApiError::bad_request(
            "out_of_range",
            "tree_size is beyond the latest checkpoint",
        ));
    }
    let index = match (query_u64(&q, "index")?, q.get("leaf_hash")) {
        (Some(i), None) => i,
        (None, Some(h)) => {
            let h = Hash::from_hex(h).ok_or_else(|| {
                ApiError::bad_request("invalid_request", "leaf_hash is not 32 bytes of hex")
            })?;
            s.log
                .leaf_index(&h)
                .await?
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
    let (leaf, proof) = s.log.leaf_and_inclusion_proof(index, tree_size).await?;
    let older;
    let checkpoint = if tree_size == published.size {
        Some(&*published.note)
    } else {
        older = s.log.checkpoint_at(tree_size).await?;
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

pub(super) async fn get_consistency(
    State(s): State<LogApi>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let published = s.log.published();
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
    let proof = s.log.consistency_proof(first, second).await?;
    Ok(Json(json!({
        "first": first,
        "second": second,
        "consistency_proof": HexList(&proof),
    }))
    .into_response())
}

pub(super) async fn get_entry(
    State(s): State<LogApi>,
    PathParam(index): PathParam,
) -> ApiResult<Response> {
    let index = parse_decimal(&index)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "index is not a decimal number"))?;
    let published = s.log.published();
    if index >= published.size {
        return Err(ApiError::not_found("index is beyond the latest checkpoint"));
    }
    let entry = s
        .log
        .entry(index)
        .await?
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

pub(super) async fn get_vkey(State(s): State<LogApi>) -> Response {
    let k = s.log.signer().verifier_key();
    Json(json!({"vkey": k.to_vkey(), "origin": k.name()})).into_response()
}
