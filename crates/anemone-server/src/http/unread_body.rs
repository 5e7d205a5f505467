//! The body of a request to a route that never reads it (a GET with a body,
//! the shared-memory unregisters), read and dropped before the route
//! answers. hyper closes a keep-alive connection whose request body was
//! left unread: such a route answered before the body arrived and the
//! connection closed under it (a client sending the body late got EPIPE;
//! back to back, one request in a few hundred failed; behind nginx's
//! upstream `keepalive`, a 502). tritonserver reads every body.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The most of an ignored body read: a larger one is refused (413) and
/// closes the connection, as before.
pub const IGNORED_BODY_BYTES: usize = 64 << 10;

/// Whether the route of `method` and `path` never reads a request body.
fn ignores_body(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::DELETE)
        || (*method == Method::POST
            && path.ends_with("/unregister")
            && (path.starts_with("/v2/systemsharedmemory/")
                || path.starts_with("/v2/cudasharedmemory/")))
}

/// Whether `request` says it carries a body.
fn has_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The middleware: reads and drops an ignored body (see the module docs).
pub async fn drain(request: Request, next: Next) -> Response {
    if !(ignores_body(request.method(), request.uri().path()) && has_body(&request)) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, IGNORED_BODY_BYTES).await {
        Ok(_) => next.run(Request::from_parts(parts, Body::empty())).await,
        Err(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({
                "error": format!(
                    "{} {} takes no body; send none (at most {IGNORED_BODY_BYTES} bytes are read and ignored)",
                    parts.method,
                    parts.uri.path()
                )
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_that_ignore_bodies_are_named() {
        for (m, p) in [
            (Method::GET, "/v2/health/live"),
            (Method::POST, "/v2/systemsharedmemory/unregister"),
            (Method::POST, "/v2/systemsharedmemory/region/r/unregister"),
            (Method::POST, "/v2/cudasharedmemory/region/r/unregister"),
        ] {
            assert!(ignores_body(&m, p), "{m} {p}");
        }
        for (m, p) in [
            (Method::POST, "/v2/models/m/infer"),
            (Method::POST, "/v2/systemsharedmemory/region/r/register"),
            (Method::POST, "/v2/repository/models/m/unregister"),
            (Method::POST, "/v2/logging"),
        ] {
            assert!(!ignores_body(&m, p), "{m} {p}");
        }
    }
}
