//! Errors of the protocol layer and the one table per protocol that maps
//! them to status codes.

use anemone_core::{Error, ErrorKind};

/// An error answered to a client: a kind (which decides the status code) and
/// a message that says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The class of the error.
    pub kind: ErrorKind,
    /// What is wrong, for the client.
    pub message: String,
    /// The request body exceeded `--max-request-bytes` (HTTP 413).
    pub too_large: bool,
}

impl ApiError {
    /// A request the client got wrong (HTTP 400, gRPC INVALID_ARGUMENT).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorKind::InvalidInput,
            message: message.into(),
            too_large: false,
        }
    }

    /// Something that does not exist (HTTP 404, gRPC NOT_FOUND).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorKind::NotFound,
            message: message.into(),
            too_large: false,
        }
    }

    /// A refused load request's error, starting `failed to load model
    /// '<name>'` as every failed load's does (Triton's example clients
    /// check for it).
    pub fn load_refused(name: &str, e: ApiError) -> ApiError {
        if e.message.starts_with("failed to load") {
            return e;
        }
        ApiError {
            message: format!(
                "failed to load model '{}': {}",
                crate::limits::printable(name),
                e.message
            ),
            ..e
        }
    }

    /// Something not ready (HTTP 503, gRPC UNAVAILABLE).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            kind: ErrorKind::Unavailable,
            message: message.into(),
            too_large: false,
        }
    }

    /// A body over the size limit (HTTP 413, gRPC RESOURCE_EXHAUSTED).
    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            kind: ErrorKind::Overloaded,
            message: format!("request body exceeds the {limit}-byte limit (--max-request-bytes)"),
            too_large: true,
        }
    }

    /// The HTTP status for this error. The one place HTTP codes are chosen.
    pub fn http_status(&self) -> u16 {
        if self.too_large {
            return 413;
        }
        match self.kind {
            ErrorKind::InvalidInput => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Overloaded => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Backend | ErrorKind::Internal => 500,
            ErrorKind::Unsupported => 501,
        }
    }

    /// The gRPC status code for this error. The one place gRPC codes are chosen.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.kind {
            ErrorKind::InvalidInput => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Overloaded => tonic::Code::ResourceExhausted,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
            ErrorKind::Backend | ErrorKind::Internal => tonic::Code::Internal,
            ErrorKind::Unsupported => tonic::Code::Unimplemented,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError {
            kind: e.kind(),
            message: e.chain_string(),
            too_large: false,
        }
    }
}

/// The longest gRPC status message sent, in bytes. A status travels in
/// HTTP/2 headers, and clients refuse header lists over 16 KiB (gRPC's
/// default): a message that echoed a whole shape or a huge name would turn
/// the real error into RESOURCE_EXHAUSTED. 2 KiB stays far below that even
/// when percent-encoded.
pub const MAX_GRPC_MESSAGE_BYTES: usize = 2048;

/// `message` cut to at most [`MAX_GRPC_MESSAGE_BYTES`] (at a character
/// boundary), saying how much was left out.
pub fn truncate_for_grpc(message: &str) -> String {
    if message.len() <= MAX_GRPC_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_GRPC_MESSAGE_BYTES - 64;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} more bytes left out)",
        &message[..end],
        message.len() - end
    )
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        tonic::Status::new(e.grpc_code(), truncate_for_grpc(&e.message))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_http_status_and_one_grpc_code() {
        let table = [
            (ErrorKind::InvalidInput, 400, tonic::Code::InvalidArgument),
            (ErrorKind::NotFound, 404, tonic::Code::NotFound),
            (ErrorKind::Overloaded, 429, tonic::Code::ResourceExhausted),
            (ErrorKind::Unavailable, 503, tonic::Code::Unavailable),
            (ErrorKind::Timeout, 504, tonic::Code::DeadlineExceeded),
            (ErrorKind::Backend, 500, tonic::Code::Internal),
            (ErrorKind::Internal, 500, tonic::Code::Internal),
            (ErrorKind::Unsupported, 501, tonic::Code::Unimplemented),
        ];
        for (kind, http, grpc) in table {
            let e = ApiError {
                kind,
                message: "x".into(),
                too_large: false,
            };
            assert_eq!(e.http_status(), http, "{kind:?}");
            assert_eq!(e.grpc_code(), grpc, "{kind:?}");
        }
        assert_eq!(ApiError::too_large(10).http_status(), 413);
    }

    #[test]
    fn long_grpc_messages_are_cut_with_what_was_left_out() {
        let long = "é".repeat(10_000);
        let status = tonic::Status::from(ApiError::invalid(long.clone()));
        assert!(status.message().len() <= MAX_GRPC_MESSAGE_BYTES);
        assert!(status.message().ends_with("more bytes left out)"));
        assert_eq!(truncate_for_grpc("short"), "short");
    }

    #[test]
    fn manager_errors_keep_their_kind_and_message() {
        let e: ApiError = Error::ModelNotFound {
            name: "m".into(),
            version: None,
            loaded: vec![],
        }
        .into();
        assert_eq!(e.http_status(), 404);
        assert!(e
            .message
            .starts_with("Request for unknown model: 'm' is not found"));
    }
}
