//! KServe v2 over HTTP (axum), with Triton's extensions: binary tensor
//! data, model configuration, statistics and the model repository API.
//!
//! Every handler decodes, asks [`AppState`], and encodes; errors answer
//! `{"error": "..."}` with the status [`ApiError::http_status`] chooses.

mod body;
mod cors;
pub mod decoding;
mod error;
mod generate;
mod host_check;
pub mod infer;
mod json;
mod logging;
mod raw;
mod restrict;
pub mod serve;
mod shared_memory;
mod tls;
mod trace;
mod unread_body;
mod views;
mod wake;

use crate::errors::ApiError;
use crate::hosts::AllowedHosts;
use crate::limits::RequestLimits;
use crate::origins::AllowedOrigins;
use crate::restricted::{Api, Restrictions};
use crate::state::AppState;
use crate::v2;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// What every handler gets.
#[derive(Clone)]
struct Http {
    state: Arc<AppState>,
    /// The body size limit, for the 413 message.
    limit: usize,
    /// Inference bodies being read and decoded, server-wide.
    decoding: decoding::DecodeBudget,
}

/// Every route of the HTTP API. Bodies over `max_request_bytes` get 413.
/// The other limits are [`RequestLimits::default`]; nothing is restricted.
pub fn router(state: Arc<AppState>, max_request_bytes: usize) -> Router {
    router_with(
        state,
        max_request_bytes,
        RequestLimits::default(),
        &Restrictions::default(),
        AllowedOrigins::default(),
        None,
    )
}

/// [`router`], with `limits`, the API groups in `restrictions` answering
/// 403 to requests without their header (`/metrics` is never restricted),
/// requests from web pages (with an `Origin` header) answered only where
/// `origins` allows theirs, with CORS headers (403 otherwise), and, when
/// `hosts` is given, requests answered only for the hosts it allows (403
/// otherwise; [`AllowedHosts::checks`] says for which listeners to give
/// it).
pub fn router_with(
    state: Arc<AppState>,
    max_request_bytes: usize,
    limits: RequestLimits,
    restrictions: &Restrictions,
    origins: AllowedOrigins,
    hosts: Option<AllowedHosts>,
) -> Router {
    let mut groups = vec![
        (
            Api::Health,
            Router::new()
                .route("/v2/health/live", get(live))
                .route("/v2/health/ready", get(ready)),
        ),
        (
            Api::Metadata,
            Router::new().route("/v2", get(server_metadata)),
        ),
        (
            Api::Statistics,
            Router::new().route("/v2/models/stats", get(all_stats)),
        ),
        (
            Api::ModelRepository,
            Router::new()
                .route("/v2/repository/index", post(repository_index))
                .route("/v2/repository/models/{m}/load", post(load))
                .route("/v2/repository/models/{m}/unload", post(unload)),
        ),
        (Api::Logging, logging::logging_routes()),
        (Api::Config, logging::config_routes()),
        (Api::Trace, trace::routes()),
        (Api::SharedMemory, shared_memory::routes()),
    ];
    for base in ["/v2/models/{m}", "/v2/models/{m}/versions/{v}"] {
        let route = |api, path: String, handler| (api, Router::new().route(&path, handler));
        groups.extend([
            route(Api::Metadata, base.to_string(), get(model_metadata)),
            route(Api::Health, format!("{base}/ready"), get(model_ready)),
            route(Api::Inference, format!("{base}/infer"), post(infer)),
            route(
                Api::Inference,
                format!("{base}/generate"),
                post(generate::generate),
            ),
            route(
                Api::Inference,
                format!("{base}/generate_stream"),
                post(generate::generate_stream),
            ),
            route(
                Api::ModelConfig,
                format!("{base}/config"),
                get(model_config),
            ),
            route(Api::Statistics, format!("{base}/stats"), get(model_stats)),
        ]);
    }
    let mut r = Router::new().route("/metrics", get(metrics));
    for (api, routes) in groups {
        r = r.merge(restrict::restrict(routes, api, restrictions));
    }
    r.fallback(error::no_route)
        .layer(axum::middleware::from_fn_with_state(
            Front {
                origins: cors::Origins::new(origins),
                hosts: hosts.map(host_check::Hosts::new),
            },
            front,
        ))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(Http {
            state,
            limit: max_request_bytes,
            decoding: decoding::DecodeBudget::new(limits.max_decoding_bytes),
        })
}

/// What the first middleware checks: origins, and hosts where they are
/// checked.
#[derive(Clone)]
struct Front {
    origins: cors::Origins,
    hosts: Option<host_check::Hosts>,
}

/// Every request's first middleware: its `Host` judged where hosts are
/// checked (`--http-allow-host`), a web page's request by its `Origin`
/// (`--http-allow-origin`), then a body no route reads drained.
async fn front(
    State(Front { origins, hosts }): State<Front>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(refused) = hosts.and_then(|hosts| hosts.judge(&request)) {
        return refused;
    }
    match origins.judge(&request) {
        cors::Verdict::Pass => unread_body::drain(request, next).await,
        cors::Verdict::Answer(answer) => answer,
        cors::Verdict::Allow(origin) => {
            cors::allow(unread_body::drain(request, next).await, origin)
        }
    }
}

/// `/metrics` alone, for the metrics port (`--metrics-port`); other paths
/// get 404. When `hosts` is given, requests are answered only for the
/// hosts it allows, as in [`router_with`].
pub fn metrics_router(state: Arc<AppState>, hosts: Option<AllowedHosts>) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .fallback(error::no_route);
    if let Some(hosts) = hosts {
        let hosts = host_check::Hosts::new(hosts);
        router = router.layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                let refused = hosts.judge(&request);
                async move {
                    match refused {
                        Some(refused) => refused,
                        None => next.run(request).await,
                    }
                }
            },
        ));
    }
    router.with_state(Http {
        state,
        limit: 0,
        decoding: decoding::DecodeBudget::new(1),
    })
}

/// The model and version a path names; the version is empty when the path has none.
struct ModelPath {
    name: String,
    /// As given, for [`AppState`]'s operations.
    version: String,
    /// Parsed; `None` for the server's choice.
    number: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for ModelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Raw {
            m: String,
            v: Option<String>,
        }
        let Path(raw) = Path::<Raw>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("bad path: {}", e.body_text())))?;
        // `/versions//ready` names no route (as `/v2/models//ready` does
        // not), rather than the server's choice of version.
        if raw.v.as_deref() == Some("") {
            return Err(error::no_route(parts.uri.clone()).await);
        }
        let version = raw.v.unwrap_or_default();
        crate::limits::check_model_name(&raw.m)?;
        let number = v2::version(&version)?;
        Ok(ModelPath {
            name: raw.m,
            version,
            number,
        })
    }
}

/// A request body read within the size limit and decompressed where its
/// `Content-Encoding` is gzip or deflate (within the limit too), as an
/// inference body is.
struct RequestBody(Bytes);

impl FromRequest<Http> for RequestBody {
    type Rejection = Response;

    async fn from_request(req: Request, http: &Http) -> Result<Self, Response> {
        let encoding = body::Encoding::of(req.headers()).map_err(IntoResponse::into_response)?;
        let bytes = Bytes::from_request(req, http)
            .await
            .map_err(|e| error::body_error(e, http.limit))?;
        Ok(RequestBody(
            body::decompress(bytes, encoding, http.limit).await?,
        ))
    }
}

/// Parses an optional JSON body; empty means `T::default()`.
fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json::strict_from_slice(body)
        .map_err(|e| ApiError::invalid(format!("malformed {what} JSON: {e}")))
}

fn status_only(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn server_metadata(State(http): State<Http>) -> Json<Value> {
    Json(views::server_metadata(&http.state.server_metadata()))
}

// The health answers: the status says (as Triton's, whose bodies are
// empty), and the body the Open Inference Protocol's JSON, which KServe's
// clients read (`is_server_live` fails on an empty body).
async fn live(State(http): State<Http>) -> (StatusCode, Json<Value>) {
    let live = http.state.live();
    (status_only(live), Json(serde_json::json!({ "live": live })))
}

async fn ready(State(http): State<Http>) -> (StatusCode, Json<Value>) {
    let ready = http.state.ready();
    (
        status_only(ready),
        Json(serde_json::json!({ "ready": ready })),
    )
}

async fn model_ready(
    State(http): State<Http>,
    p: ModelPath,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let ready = http.state.model_ready(&p.name, &p.version)?;
    let body = serde_json::json!({ "name": p.name, "ready": ready });
    Ok((status_only(ready), Json(body)))
}

/// KServe's metadata, plus `backend_selection`: how the backend in `platform`
/// was chosen (clients ignore fields they do not know).
async fn model_metadata(State(http): State<Http>, p: ModelPath) -> Result<Json<Value>, ApiError> {
    let mut body = views::model_metadata(&http.state.model_metadata(&p.name, &p.version)?);
    if let Some(selection) = http.state.selection(&p.name, &p.version) {
        body["backend_selection"] = serde_json::to_value(selection).unwrap_or(Value::Null);
    }
    Ok(Json(body))
}

async fn model_config(State(http): State<Http>, p: ModelPath) -> Result<Json<Value>, ApiError> {
    Ok(Json(crate::model_config::to_json(
        &http.state.model_config(&p.name, &p.version)?,
    )))
}

async fn model_stats(State(http): State<Http>, p: ModelPath) -> Result<Json<Value>, ApiError> {
    Ok(Json(views::statistics(
        &http.state.statistics(&p.name, &p.version)?,
    )))
}

async fn all_stats(State(http): State<Http>) -> Result<Json<Value>, ApiError> {
    Ok(Json(views::statistics(&http.state.statistics("", "")?)))
}

/// Reads the body (within `--max-request-bytes` and the body timeout),
/// reserves its size from the server-wide decode budget, decodes it (on a
/// blocking thread when large), frees the reservation; copies the inputs in
/// shared memory out the same way (reserved, on a blocking thread when
/// large); then infers.
///
/// The reservation is taken once the body has arrived, so a client that
/// trickles its body in holds only its own connection, never the budget.
async fn infer(
    State(http): State<Http>,
    p: ModelPath,
    request: Request,
) -> Result<Response, Response> {
    let span = crate::telemetry::http_span(&http.state.trace, &p.name, request.headers());
    // Boxed: the inference's state machine (decoding, `Manager::infer`,
    // encoding) is kilobytes, and axum moves the handler's future several
    // times before and while boxing it; a pointer moves instead.
    crate::telemetry::traced(span, Box::pin(infer_untraced(http, p, request))).await
}

async fn infer_untraced(http: Http, p: ModelPath, request: Request) -> Result<Response, Response> {
    // The headers are moved out, not copied (as axum's `HeaderMap` extractor would).
    let (mut parts, body) = request.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    let encoding = body::Encoding::of(&headers).map_err(IntoResponse::into_response)?;
    let answer_in = body::Encoding::accepted(&headers);
    // The binary part's start, if the header says where (a wrong value is
    // refused by `infer::decode`, with the body read).
    let binary_at = infer::header_length(&headers)
        .and_then(Result::ok)
        .unwrap_or(0);
    // Headers the model is to see (`--http-header-forward-pattern`); a
    // header that cannot be forwarded fails the request once its body is
    // read and found good, as in Triton.
    let forwarded = (http.state.forward_headers.http.as_ref()).map(|p| p.http(&headers));
    drop(parts);
    let body = body::read(body, http.limit, binary_at).await?;
    // A compressed body may grow up to the limit: it reserves all of it
    // before it is decompressed (compressed requests are rare).
    let reservation = http
        .decoding
        .reserve(decoding::reservation(encoding, body.len(), http.limit))
        .await;
    let body = body::decompress(body, encoding, http.limit).await?;
    let limit = http.limit;
    let mut request = if raw::is_raw(&headers) {
        raw::decode(&http.state, p.name, p.number, body)
    } else if body.len() <= decoding::BLOCKING_ABOVE {
        infer::decode(
            p.name,
            p.number,
            &headers,
            &body,
            &http.state.shared_memory,
            limit,
        )
    } else {
        let state = Arc::clone(&http.state);
        tokio::task::spawn_blocking(move || {
            infer::decode(
                p.name,
                p.number,
                &headers,
                &body,
                &state.shared_memory,
                limit,
            )
        })
        .await
        .unwrap_or_else(|e| Err(internal(format!("decoding the request failed: {e}"))))
    }
    .map_err(IntoResponse::into_response)?;
    drop(reservation);
    if let Some(forwarded) = forwarded {
        // After the request's own parameters: a header wins over a
        // parameter of its name, as in Triton.
        (request.custom).extend(forwarded.map_err(IntoResponse::into_response)?);
    }
    if !request.shared_inputs.is_empty() {
        // Copied out of shared memory within the decode budget too (the
        // body's reservation is given back first: one at a time, so that
        // two requests never wait on each other's half).
        let _reservation = http.decoding.reserve(request.shared_inputs.bytes()).await;
        crate::shared_memory::read_inputs(&mut request)
            .await
            .map_err(IntoResponse::into_response)?;
    }
    let encoding = infer::OutputEncoding::of(&request).compressed(answer_in);
    let response = http
        .state
        .infer(request)
        .await
        .map_err(IntoResponse::into_response)?;
    // Writing a large response as JSON text takes as long as reading one.
    let size: usize = response.outputs.iter().map(|(_, t)| t.byte_len()).sum();
    if size <= decoding::BLOCKING_ABOVE {
        return infer::encode(response, &encoding).map_err(IntoResponse::into_response);
    }
    tokio::task::spawn_blocking(move || infer::encode(response, &encoding))
        .await
        .unwrap_or_else(|e| Err(internal(format!("encoding the response failed: {e}"))))
        .map_err(IntoResponse::into_response)
}

fn internal(message: String) -> ApiError {
    ApiError {
        kind: anemone_core::ErrorKind::Internal,
        message,
        too_large: false,
    }
}

async fn repository_index(
    State(http): State<Http>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize, Default)]
    struct IndexRequest {
        #[serde(default)]
        ready: bool,
    }
    let request: IndexRequest = optional_json(&body, "repository index request")?;
    Ok(Json(views::repository_index(
        &http.state.repository_index(request.ready),
    )))
}

/// `{"parameters": {...}}`, the body of load and unload.
#[derive(Deserialize, Default)]
struct RepositoryRequest {
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

async fn load(
    State(http): State<Http>,
    p: ModelPath,
    RequestBody(body): RequestBody,
) -> Result<StatusCode, ApiError> {
    let config = load_config(&body).map_err(|e| ApiError::load_refused(&p.name, e))?;
    http.state.load_model(&p.name, config.as_deref()).await?;
    Ok(StatusCode::OK)
}

/// A load request body's configuration override, if any.
fn load_config(body: &[u8]) -> Result<Option<String>, ApiError> {
    let request: RepositoryRequest = optional_json(body, "load request")?;
    let mut config = None;
    for (key, value) in request.parameters.unwrap_or_default() {
        match (key.as_str(), value) {
            ("config", Value::String(json)) => config = Some(json),
            ("config", other) => {
                return Err(ApiError::invalid(format!(
                    "load parameter 'config' must be a string holding the JSON config, got {other}"
                )))
            }
            (key, _) if key.starts_with("file:") => {
                return Err(crate::limits::refuse_file_override(key))
            }
            (key, _) => {
                return Err(ApiError::invalid(format!(
                    "unknown load parameter '{}'; only 'config' is supported",
                    crate::limits::shown(key)
                )))
            }
        }
    }
    Ok(config)
}

async fn unload(
    State(http): State<Http>,
    p: ModelPath,
    RequestBody(body): RequestBody,
) -> Result<StatusCode, ApiError> {
    let request: RepositoryRequest = optional_json(&body, "unload request")?;
    let dependents = unload_dependents(request.parameters.unwrap_or_default())?;
    http.state
        .unload_model_after_load(&p.name, dependents)
        .await?;
    Ok(StatusCode::OK)
}

async fn metrics(State(http): State<Http>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        http.state.prometheus(),
    )
}

/// Triton's unload parameter `unload_dependents` (a boolean; false when
/// absent); any other parameter is refused.
fn unload_dependents(parameters: serde_json::Map<String, Value>) -> Result<bool, ApiError> {
    let mut dependents = false;
    for (key, value) in parameters {
        match (key.as_str(), value) {
            ("unload_dependents", Value::Bool(b)) => dependents = b,
            ("unload_dependents", other) => {
                return Err(ApiError::invalid(format!(
                    "unload parameter 'unload_dependents' must be true or false, got {other}"
                )))
            }
            (key, _) => {
                return Err(ApiError::invalid(format!(
                    "unknown unload parameter '{}'; anemone knows only 'unload_dependents'",
                    crate::limits::shown(key)
                )))
            }
        }
    }
    Ok(dependents)
}
