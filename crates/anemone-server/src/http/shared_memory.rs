//! Triton's shared memory extensions over HTTP (the `shared-memory` API
//! group): `/v2/systemsharedmemory/...` registers, lists and unregisters
//! regions of [`crate::shared_memory`]; `/v2/cudasharedmemory/...` answers
//! as a server without CUDA shared memory does (no regions; registering is
//! refused with a message).
//!
//! Register with `POST /v2/systemsharedmemory/region/{name}/register` and
//! the body `{"key": "/input0", "offset": 0, "byte_size": 602112}`; status
//! is a list of `{"name", "key", "offset", "byte_size"}`.

use super::{Http, RequestBody};
use crate::errors::ApiError;
use crate::shared_memory::RegionStatus;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The routes of the `shared-memory` API group.
pub(super) fn routes() -> Router<Http> {
    Router::new()
        .route("/v2/systemsharedmemory/status", get(status_all))
        .route("/v2/systemsharedmemory/region/{name}/status", get(status))
        .route(
            "/v2/systemsharedmemory/region/{name}/register",
            post(register),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/unregister",
            post(unregister),
        )
        .route("/v2/systemsharedmemory/unregister", post(unregister_all))
        .route("/v2/cudasharedmemory/status", get(cuda_status))
        .route(
            "/v2/cudasharedmemory/region/{name}/status",
            get(cuda_status_one),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/register",
            post(cuda_register),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/unregister",
            post(cuda_unregister),
        )
        .route("/v2/cudasharedmemory/unregister", post(cuda_unregister_all))
}

async fn status_all(State(http): State<Http>) -> Result<Json<Vec<RegionStatus>>, ApiError> {
    Ok(Json(http.state.shared_memory.status("")?))
}

async fn status(
    State(http): State<Http>,
    Path(name): Path<String>,
) -> Result<Json<Vec<RegionStatus>>, ApiError> {
    Ok(Json(http.state.shared_memory.status(&name)?))
}

/// A registration's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    key: String,
    #[serde(default)]
    offset: u64,
    byte_size: u64,
}

async fn register(
    State(http): State<Http>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<(), ApiError> {
    let r: Register = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "malformed shared memory registration: {e}; send {{\"key\": \"/name\", \"offset\": 0, \"byte_size\": N}}"
        ))
    })?;
    // Opening and mapping are system calls: off the async threads.
    let state = std::sync::Arc::clone(&http.state);
    tokio::task::spawn_blocking(move || {
        state
            .shared_memory
            .register(&name, &r.key, r.offset, r.byte_size)
    })
    .await
    .unwrap_or_else(|e| Err(super::internal(format!("registering failed: {e}"))))
}

async fn unregister(State(http): State<Http>, Path(name): Path<String>) {
    http.state.shared_memory.unregister(&name);
}

async fn unregister_all(State(http): State<Http>) {
    http.state.shared_memory.unregister("");
}

async fn cuda_status() -> Json<Value> {
    Json(json!([]))
}

async fn cuda_status_one(Path(name): Path<String>) -> ApiError {
    ApiError::not_found(format!(
        "no CUDA shared memory region '{name}' is registered (anemone does not support CUDA shared memory; use system shared memory)"
    ))
}

async fn cuda_register(Path(name): Path<String>) -> ApiError {
    ApiError::invalid(format!(
        "cannot register CUDA shared memory region '{name}': anemone does not support CUDA shared memory; use system shared memory (/v2/systemsharedmemory)"
    ))
}

async fn cuda_unregister(Path(_name): Path<String>) {}

async fn cuda_unregister_all() {}
