//! A failed load, and the answer it gets: worth retrying or not.

use crate::errors::ApiError;

/// Why a load failed, and whether it may succeed if tried again later.
#[derive(Debug)]
pub(super) struct LoadFailure {
    pub(super) reason: String,
    pub(super) retry_later: bool,
    /// The version that failed, when it got that far.
    pub(super) version: Option<u64>,
}

impl From<String> for LoadFailure {
    fn from(reason: String) -> LoadFailure {
        LoadFailure {
            reason,
            retry_later: false,
            version: None,
        }
    }
}

/// A failed load's answer: 503 / UNAVAILABLE when trying again later may
/// succeed (no room now), as Triton's; 400 / INVALID_ARGUMENT otherwise.
pub(super) fn load_refusal(retry_later: bool, message: String) -> ApiError {
    match retry_later {
        true => ApiError::unavailable(message),
        false => ApiError::invalid(message),
    }
}
