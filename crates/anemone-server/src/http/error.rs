//! How an [`ApiError`] goes over HTTP: the status from
//! [`ApiError::http_status`] and the body `{"error": "..."}`.

use super::serve::BodyTimeout;
use crate::errors::ApiError;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// Answers a failure to read the request body: over `limit` is 413, a body
/// that stalled past its idle timeout 408 (and the connection closes),
/// anything else (the client went away mid-body) 400.
pub(crate) fn body_error(rejection: BytesRejection, limit: usize) -> Response {
    if let Some(timeout) = body_timeout(&rejection) {
        return timed_out(timeout);
    }
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::too_large(limit)
        }
        other => ApiError::invalid(format!(
            "cannot read the request body: {}",
            other.body_text()
        )),
    }
    .into_response()
}

/// [`body_error`] for an error met while reading the body's frames
/// through `http_body_util::Limited` (see `super::body`).
pub(crate) fn read_error(error: &(dyn std::error::Error + 'static), limit: usize) -> Response {
    if let Some(timeout) = body_timeout(error) {
        return timed_out(timeout);
    }
    if error.is::<http_body_util::LengthLimitError>() {
        return ApiError::too_large(limit).into_response();
    }
    ApiError::invalid(format!("cannot read the request body: {error}")).into_response()
}

/// 408, closing the connection.
fn timed_out(timeout: &BodyTimeout) -> Response {
    let body = Json(serde_json::json!({ "error": timeout.to_string() }));
    (
        StatusCode::REQUEST_TIMEOUT,
        [(axum::http::header::CONNECTION, "close")],
        body,
    )
        .into_response()
}

/// The [`BodyTimeout`] somewhere in the error's chain of causes.
fn body_timeout<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(t) = e.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        cause = e.source();
    }
    None
}

/// The answer for a path no route serves.
pub(crate) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for '{}'; see the KServe v2 REST API",
        uri.path()
    ))
}
