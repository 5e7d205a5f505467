//! `--http-allow-origin` over HTTP (see [`crate::origins`]): a request
//! from a web page (one with an `Origin` header) is refused with 403 unless
//! its origin is allowed; an allowed one gets the CORS headers a browser
//! needs to hand the answer to the page, and its preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here. The router's first
//! middleware asks [`Origins::judge`] (in the same middleware as the unread
//! body's drain: a layer of its own cost 2–4 µs a request in the debug
//! build's `server_path` bench, axum boxing and cloning each layer's
//! service per request).

use crate::limits;
use crate::origins::AllowedOrigins;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The response headers a page may read besides the CORS-safelisted ones:
/// the binary tensor extension's JSON length.
const EXPOSED: &str = "Inference-Header-Content-Length";

/// How long a browser may keep a preflight's answer: 10 minutes.
const PREFLIGHT_MAX_AGE: &str = "600";

/// How many origins (or hosts) already warned of are remembered.
const WARNED_MAX: usize = 64;

/// The allowed origins, and those already warned of.
#[derive(Clone)]
pub(super) struct Origins {
    allowed: Arc<AllowedOrigins>,
    warned: FirstSeen,
}

/// Values already named in a warning, so a page that keeps sending does
/// not fill the log (at most [`WARNED_MAX`] are remembered).
#[derive(Clone, Default)]
pub(super) struct FirstSeen(Arc<Mutex<HashSet<Vec<u8>>>>);

impl FirstSeen {
    /// Whether `value` is seen here for the first time (and is remembered).
    pub(super) fn first(&self, value: &[u8]) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.len() < WARNED_MAX && seen.insert(value.to_vec())
    }
}

/// What to do with a request.
pub(super) enum Verdict {
    /// No `Origin`: serve it as it is.
    Pass,
    /// Answered here: a refusal, or an allowed page's preflight.
    Answer(Response),
    /// An allowed page's request: serve it, then [`allow`] its answer.
    Allow(HeaderValue),
}

impl Origins {
    pub(super) fn new(allowed: AllowedOrigins) -> Origins {
        Origins {
            allowed: Arc::new(allowed),
            warned: FirstSeen::default(),
        }
    }

    /// The verdict on `request`: one header lookup for a request without
    /// `Origin` (every client that is not a browser).
    pub(super) fn judge(&self, request: &Request) -> Verdict {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Verdict::Pass;
        };
        if !self.allowed.allows(origin.as_bytes()) {
            return Verdict::Answer(refuse(self, origin, request.uri().path()));
        }
        if is_preflight(request) {
            return Verdict::Answer(allow(preflight(request.headers()), origin.clone()));
        }
        Verdict::Allow(origin.clone())
    }
}

/// `response` with the CORS headers that hand it to the page at `origin`.
pub(super) fn allow(mut response: Response, origin: HeaderValue) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// 204 allowing GET and POST with the headers the page asked for (a
/// restricted API's key, `Content-Type: application/json`, the binary
/// extension's length, ...).
fn preflight(request: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    headers.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    response
}

/// 403 naming the origin and the flag that allows it; the first refusal of
/// each origin is logged as a warning, with the same advice.
fn refuse(origins: &Origins, origin: &HeaderValue, path: &str) -> Response {
    let shown = limits::shown(&String::from_utf8_lossy(origin.as_bytes()));
    let advice = if origins.allowed.is_empty() {
        format!(
            "no web page may use this server's HTTP API unless the server was started with \
             --http-allow-origin naming its origin (here: --http-allow-origin {shown}); \
             clients that are not browsers send no Origin header and are not affected"
        )
    } else {
        format!(
            "the origins allowed are {} (--http-allow-origin); to allow this page too, \
             add --http-allow-origin {shown}",
            origins.allowed
        )
    };
    let message =
        format!("refused: a request from the web page at '{shown}' (its Origin header): {advice}");
    if origins.warned.first(origin.as_bytes()) {
        tracing::warn!(
            "{message} (the first request refused from that origin asked for {}; later ones are not logged)",
            limits::shown(path)
        );
    }
    let mut response = (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
    response
}
