//! The errors of a Python model's answers: a response's error by Triton's
//! code, the error of a call repeated for each of its requests, and numpy's
//! names for data types in messages.

use super::{wire, NAME};
use anemone_core::{Error, InputError};

/// The error of a response whose `error` the model set, by
/// Triton's code, with the HTTP status tritonserver 2.51 gives it: the
/// request's fault (400: INVALID_ARG, and UNKNOWN, ALREADY_EXISTS and
/// CANCELLED, as Triton answers them), not found (404), unsupported (501),
/// unavailable (503), or the model's (500: INTERNAL and any other code).
pub(crate) fn refusal(message: String, code: i64) -> Error {
    match code {
        wire::INVALID_ARG | wire::UNKNOWN | wire::ALREADY_EXISTS | wire::CANCELLED => {
            Error::Input(InputError::Refused { message })
        }
        // The model's own words, as Triton answers them.
        wire::NOT_FOUND => Error::Answered {
            kind: anemone_core::ErrorKind::NotFound,
            message,
        },
        wire::UNSUPPORTED => Error::Answered {
            kind: anemone_core::ErrorKind::Unsupported,
            message,
        },
        wire::UNAVAILABLE => Error::Answered {
            kind: anemone_core::ErrorKind::Unavailable,
            message,
        },
        _ => Error::Backend {
            backend: NAME.into(),
            message,
            retryable: false,
            source: None,
        },
    }
}

/// numpy's name for a data type, for messages.
pub(super) fn numpy_name(dtype: anemone_core::DataType) -> &'static str {
    use anemone_core::DataType as D;
    match dtype {
        D::Bool => "bool_",
        D::U8 => "uint8",
        D::U16 => "uint16",
        D::U32 => "uint32",
        D::U64 => "uint64",
        D::I8 => "int8",
        D::I16 => "int16",
        D::I32 => "int32",
        D::I64 => "int64",
        D::F16 => "float16",
        D::F32 => "float32",
        D::F64 => "float64",
        D::Bytes => "object_",
    }
}

/// The same error again, for each request of a call that failed as a
/// whole (its source, if any, is kept by the first).
pub(super) fn copy_of(e: &Error) -> Error {
    match e {
        Error::Backend {
            backend,
            message,
            retryable,
            ..
        } => Error::Backend {
            backend: backend.clone(),
            message: message.clone(),
            retryable: *retryable,
            source: None,
        },
        Error::Config(m) => Error::Config(m.clone()),
        Error::Internal(m) => Error::Internal(m.clone()),
        Error::Unavailable { what, reason } => Error::Unavailable {
            what: what.clone(),
            reason: reason.clone(),
        },
        other => Error::Backend {
            backend: NAME.into(),
            message: other.to_string(),
            retryable: false,
            source: None,
        },
    }
}
