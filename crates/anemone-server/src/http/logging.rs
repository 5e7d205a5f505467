//! Triton's logging extension (`GET/POST /v2/logging`) and anemone's
//! settings endpoint (`GET/POST /v2/anemone/config`), over HTTP. What they
//! mean is in [`crate::settings`].

use super::{optional_json, Http, RequestBody};
use crate::errors::ApiError;
use crate::settings::LogUpdate;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// `/v2/logging`: the `logging` API group.
pub(super) fn logging_routes() -> Router<Http> {
    Router::new().route("/v2/logging", get(get_logging).post(post_logging))
}

/// `/v2/anemone/config`: the `config` API group.
pub(super) fn config_routes() -> Router<Http> {
    Router::new().route("/v2/anemone/config", get(get_config).post(post_config))
}

async fn get_logging(State(http): State<Http>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(http.state.settings.log_settings()?)))
}

/// Applies the fields given; answers the settings in force, as Triton.
async fn post_logging(
    State(http): State<Http>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    let update = log_update(&body)?;
    Ok(Json(json!(http.state.settings.update_log(&update)?)))
}

/// The body's log settings; a field of the wrong type or unknown is
/// refused naming it (each field is read on its own first).
fn log_update(body: &[u8]) -> Result<LogUpdate, ApiError> {
    let fields: serde_json::Map<String, Value> = optional_json(body, "log settings")?;
    for (key, value) in &fields {
        let one = Value::Object([(key.clone(), value.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<LogUpdate>(one) {
            return Err(ApiError::invalid(format!("log setting '{key}': {e}")));
        }
    }
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::invalid(format!("malformed log settings: {e}")))
}

async fn get_config(State(http): State<Http>) -> Json<Value> {
    Json(json!({ "settings": http.state.settings.table(&http.state.manager) }))
}

/// `{"max-concurrency": 8, "gate-batching": false, "log-level": "info"}`:
/// applied together or not at all; answers every setting, as `GET` does.
async fn post_config(
    State(http): State<Http>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    let changes: serde_json::Map<String, Value> = optional_json(&body, "settings")?;
    let table = http.state.settings.change(&http.state.manager, &changes)?;
    Ok(Json(json!({ "settings": table })))
}
