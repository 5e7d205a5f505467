//! Triton's shared memory extensions over HTTP (the `shared-memory` API
//! group): `/v2/systemsharedmemory/...` registers, lists and unregisters
//! regions of [`crate::shared_memory`] in POSIX shared memory objects,
//! `/v2/cudasharedmemory/...` regions of GPU memory.
//!
//! Register with `POST /v2/systemsharedmemory/region/{name}/register` and
//! the body `{"key": "/input0", "offset": 0, "byte_size": 602112}`; status
//! is a list of `{"name", "key", "offset", "byte_size"}`. A CUDA region's
//! body is `{"raw_handle": {"b64": "..."}, "device_id": 0, "byte_size": N}`
//! (the CUDA IPC handle's 64 bytes in base64), its status
//! `{"name", "device_id", "byte_size"}`.

use super::{Http, RequestBody};
use crate::errors::ApiError;
use crate::shared_memory::{CudaRegionStatus, RegionStatus, CUDA_HANDLE_BYTES};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

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
        .route("/v2/cudasharedmemory/status", get(cuda_status_all))
        .route(
            "/v2/cudasharedmemory/region/{name}/status",
            get(cuda_status),
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
    let state = std::sync::Arc::clone(&http.state);
    crate::shared_memory::register_blocking(move || {
        state
            .shared_memory
            .register(&name, &r.key, r.offset, r.byte_size)
    })
    .await
}

async fn unregister(State(http): State<Http>, Path(name): Path<String>) {
    http.state.shared_memory.unregister(&name);
}

async fn unregister_all(State(http): State<Http>) {
    http.state.shared_memory.unregister("");
}

async fn cuda_status_all(
    State(http): State<Http>,
) -> Result<Json<Vec<CudaRegionStatus>>, ApiError> {
    Ok(Json(http.state.shared_memory.cuda_status("")?))
}

async fn cuda_status(
    State(http): State<Http>,
    Path(name): Path<String>,
) -> Result<Json<Vec<CudaRegionStatus>>, ApiError> {
    Ok(Json(http.state.shared_memory.cuda_status(&name)?))
}

/// A CUDA registration's body, as tritonclient sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CudaRegister {
    raw_handle: Base64,
    device_id: i64,
    byte_size: u64,
}

/// Bytes in JSON, as Triton's HTTP API writes them: `{"b64": "..."}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Base64 {
    b64: String,
}

async fn cuda_register(
    State(http): State<Http>,
    Path(name): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<(), ApiError> {
    use base64::Engine;
    let r: CudaRegister = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "malformed CUDA shared memory registration: {e}; send {{\"raw_handle\": {{\"b64\": \"<the {CUDA_HANDLE_BYTES}-byte cudaIpcMemHandle_t in base64>\"}}, \"device_id\": 0, \"byte_size\": N}}"
        ))
    })?;
    let handle = base64::engine::general_purpose::STANDARD
        .decode(r.raw_handle.b64.trim())
        .map_err(|e| {
            ApiError::invalid(format!(
                "CUDA shared memory region '{name}': raw_handle.b64 is not base64 ({e})"
            ))
        })?;
    let state = std::sync::Arc::clone(&http.state);
    crate::shared_memory::register_blocking(move || {
        state
            .shared_memory
            .register_cuda(&name, &handle, r.device_id, r.byte_size)
    })
    .await
}

async fn cuda_unregister(State(http): State<Http>, Path(name): Path<String>) {
    http.state.shared_memory.unregister_cuda(&name);
}

async fn cuda_unregister_all(State(http): State<Http>) {
    http.state.shared_memory.unregister_cuda("");
}
