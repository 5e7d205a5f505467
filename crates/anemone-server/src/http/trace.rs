//! Triton's trace extension over HTTP: `GET`/`POST /v2/trace/setting` and
//! `/v2/models/{m}/trace/setting`.
//!
//! A `POST` body is `{"<setting>": <value>, ...}`: `trace_level` a list of
//! strings, the others a string (a JSON number is accepted too), `null` to
//! clear. The answer is the settings after the change, in Triton's shape:
//! `{"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "-1",
//! "trace_mode": "opentelemetry", "url": "..."}`.

use super::{Http, RequestBody};
use crate::errors::ApiError;
use crate::state::AppState;
use crate::telemetry::settings::Update;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

/// The routes of the `trace` API group.
pub(super) fn routes() -> Router<Http> {
    Router::new()
        .route("/v2/trace/setting", get(get_global).post(post_global))
        .route(
            "/v2/models/{m}/trace/setting",
            get(get_model).post(post_model),
        )
}

async fn get_global(State(http): State<Http>) -> Json<Value> {
    Json(view(&http.state, None))
}

async fn post_global(
    State(http): State<Http>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    http.state.trace.update(None, &updates(&body)?)?;
    Ok(Json(view(&http.state, None)))
}

async fn get_model(
    State(http): State<Http>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    crate::telemetry::known_model(&http.state, &model)?;
    Ok(Json(view(&http.state, Some(&model))))
}

async fn post_model(
    State(http): State<Http>,
    Path(model): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    crate::telemetry::known_model(&http.state, &model)?;
    http.state.trace.update(Some(&model), &updates(&body)?)?;
    Ok(Json(view(&http.state, Some(&model))))
}

fn view(state: &AppState, model: Option<&str>) -> Value {
    let mut out = Map::new();
    for (name, mut values) in state.trace.view(model) {
        let value = if name == "trace_level" {
            Value::from(values)
        } else {
            Value::from(values.pop().unwrap_or_default())
        };
        out.insert(name.into(), value);
    }
    Value::Object(out)
}

/// The changes a `POST` body asks for.
fn updates(body: &[u8]) -> Result<Vec<Update>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let request: Map<String, Value> = super::json::strict_from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "malformed trace setting JSON: {e}; send an object such as {{\"trace_rate\": \"10\"}}"
        ))
    })?;
    request
        .into_iter()
        .map(|(name, value)| {
            let strings = match value {
                Value::Null => None,
                Value::String(s) => Some(vec![s]),
                Value::Number(n) => Some(vec![n.to_string()]),
                Value::Array(items) => Some(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Value::String(s) => Ok(s),
                            other => Err(bad_value(&name, &other)),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(bad_value(&name, &other)),
            };
            Ok((name, strings))
        })
        .collect()
}

fn bad_value(name: &str, value: &Value) -> ApiError {
    ApiError::invalid(format!(
        "trace setting '{}' must be a string, a list of strings or null, got {value}",
        crate::limits::shown(name)
    ))
}
