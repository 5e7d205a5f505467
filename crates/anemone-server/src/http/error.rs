//! How an [`ApiError`] goes over HTTP: the status from
//! [`ApiError::http_status`] and the body `{"error": "..."}`.

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

/// Turns a failure to read the request body into an [`ApiError`]: over
/// `limit` is 413, anything else (the client went away mid-body) is 400.
pub(crate) fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::too_large(limit)
        }
        other => ApiError::invalid(format!(
            "cannot read the request body: {}",
            other.body_text()
        )),
    }
}

/// The answer for a path no route serves.
pub(crate) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for '{}'; see the KServe v2 REST API",
        uri.path()
    ))
}
