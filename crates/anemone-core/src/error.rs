//! The one error type of anemone, with a kind for every caller to branch on.

pub use crate::input_error::{InputCount, InputError};
use std::path::PathBuf;
use std::time::Duration;

/// A boxed error kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with anemone's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The class of an [`Error`]: what the caller should do about it.
///
/// The server maps each kind to exactly one HTTP status and one gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ErrorKind {
    /// The request or the model file is wrong; fix it and send again.
    InvalidInput,
    /// The model, version or file does not exist.
    NotFound,
    /// The model or backend cannot serve right now (not loaded, shutting down).
    Unavailable,
    /// A limit was reached; retry later or with less load.
    Overloaded,
    /// The request took longer than its deadline.
    Timeout,
    /// The engine failed while running the model.
    Backend,
    /// A bug in anemone.
    Internal,
    /// What was asked is not something this model or endpoint does (a
    /// decoupled model asked for one answer); ask another way.
    Unsupported,
}

impl ErrorKind {
    /// Every kind, in a stable order (used to index per-kind counters).
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Unavailable,
        ErrorKind::Overloaded,
        ErrorKind::Timeout,
        ErrorKind::Backend,
        ErrorKind::Internal,
        ErrorKind::Unsupported,
    ];

    /// A stable snake_case name, used as a metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Backend => "backend",
            ErrorKind::Internal => "internal",
            ErrorKind::Unsupported => "unsupported",
        }
    }

    /// Position in [`ErrorKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Everything that can go wrong in anemone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request's inputs do not match what the model declares.
    #[error(transparent)]
    Input(#[from] InputError),

    /// No model with this name (and version) is loaded. The message starts
    /// as Triton's does ("Request for unknown model: 'm' is not found"),
    /// which Triton's example clients check.
    #[error("Request for unknown model: '{name}'{} is not found{}", version_suffix(*.version), loaded_hint(.loaded))]
    ModelNotFound {
        /// Name asked for.
        name: String,
        /// Version asked for; `None` means the latest.
        version: Option<u64>,
        /// Names (or versions) that are loaded, as a hint.
        loaded: Vec<String>,
    },

    /// A model file or directory does not exist.
    #[error("model file {path} does not exist")]
    FileNotFound {
        /// The missing path.
        path: PathBuf,
    },

    /// A failure the model itself answered, in its own words and of the
    /// class it gave (a Python model's `TritonError` with a code: NOT_FOUND
    /// is 404, UNAVAILABLE 503, as Triton answers them). Never retried.
    #[error("{message}")]
    Answered {
        /// The class the model gave it.
        kind: ErrorKind,
        /// The model's words.
        message: String,
    },

    /// A model file exists but cannot be used.
    #[error("cannot load {path}: {reason}")]
    InvalidModel {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// No backend on this machine can run the model.
    #[error("no backend can run {path}: {}", .attempts.iter().map(|(b, r)| format!("{b}: {r}")).collect::<Vec<_>>().join("; "))]
    NoBackend {
        /// The model file.
        path: PathBuf,
        /// `(backend, reason)` for every candidate tried.
        attempts: Vec<(String, String)>,
    },

    /// Something cannot serve right now.
    #[error("{what} is unavailable: {reason}")]
    Unavailable {
        /// What is unavailable (a model, a backend, the server).
        what: String,
        /// Why.
        reason: String,
    },

    /// A concurrency limit was reached.
    #[error("overloaded: {limit} reached ({in_use} of {capacity} in use); retry later or raise the limit")]
    Overloaded {
        /// Which limit, e.g. `global concurrency limit` or `concurrency limit of model 'resnet'`.
        limit: String,
        /// Permits in use when the request came.
        in_use: usize,
        /// The limit.
        capacity: usize,
    },

    /// Loading a model would exceed the memory budget.
    #[error(
        "loading '{model}' needs {needed} bytes but only {available} of the {budget}-byte memory budget are free; \
         unload a model or raise the budget"
    )]
    MemoryBudget {
        /// The model being loaded.
        model: String,
        /// Its footprint.
        needed: u64,
        /// Budget left.
        available: u64,
        /// The whole budget.
        budget: u64,
    },

    /// A deadline passed.
    #[error(
        "Request timeout expired: timed out after {0:?}: the request's deadline passed first; give it longer (the `timeout` \
         parameter, the gRPC deadline, or the model's queue_policy default_timeout_microseconds), \
         or add instances if requests wait in the queue"
    )]
    Timeout(Duration),

    /// The engine failed while running or loading a model.
    #[error("backend {backend} failed: {message}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// What happened.
        message: String,
        /// Whether trying again may succeed.
        retryable: bool,
        /// The engine's error.
        #[source]
        source: Option<BoxError>,
    },

    /// The device under a backend failed for good (GPU lost, driver reset).
    /// The runtime hands the model to its next backend candidate.
    #[error("backend {backend} lost its device: {message}")]
    DeviceLost {
        /// The backend's name.
        backend: String,
        /// What happened.
        message: String,
    },

    /// What was asked is not something this model or endpoint does.
    #[error("{what}; {fix}")]
    Unsupported {
        /// What was asked, and why it cannot be done.
        what: String,
        /// What to do instead.
        fix: String,
    },

    /// A configuration is wrong (unknown backend, bad option).
    #[error("configuration error: {0}")]
    Config(String),

    /// A bug in anemone.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),

    /// A step of an ensemble failed; `source` is the step's own error.
    #[error("ensemble '{ensemble}' step {step} (model '{model}') failed: {source}")]
    Step {
        /// The ensemble's name.
        ensemble: String,
        /// The step's index in the ensemble's configuration.
        step: usize,
        /// The composing model the step ran.
        model: String,
        /// The class of the failure as the ensemble's client sees it: the
        /// step's, except that a step input refused when it came from another
        /// step is `Internal` (the ensemble's fault, not the request's).
        kind: ErrorKind,
        /// The step's error.
        #[source]
        source: Box<Error>,
    },
}

fn version_suffix(v: Option<u64>) -> String {
    v.map(|v| format!(" version {v}")).unwrap_or_default()
}

fn loaded_hint(loaded: &[String]) -> String {
    if loaded.is_empty() {
        "; no models are loaded".to_string()
    } else {
        format!("; loaded: {}", loaded.join(", "))
    }
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Input(_)
            | Error::InvalidModel { .. }
            | Error::NoBackend { .. }
            | Error::Config(_) => ErrorKind::InvalidInput,
            Error::ModelNotFound { .. } | Error::FileNotFound { .. } => ErrorKind::NotFound,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Overloaded { .. } | Error::MemoryBudget { .. } => ErrorKind::Overloaded,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Backend { .. } | Error::DeviceLost { .. } => ErrorKind::Backend,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Step { kind, .. } | Error::Answered { kind, .. } => *kind,
        }
    }

    /// Whether the same request may succeed if sent again later.
    ///
    /// Overload, timeouts and unavailability are transient; a backend error is
    /// retryable only when the backend says so; everything else is permanent.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Overloaded { .. } | Error::Timeout(_) | Error::Unavailable { .. } => true,
            Error::Backend { retryable, .. } => *retryable,
            Error::Step { source, .. } => source.retryable(),
            _ => false,
        }
    }

    /// A backend failure with the engine's error as its source.
    pub fn backend(
        backend: impl Into<String>,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Error {
        Error::Backend {
            backend: backend.into(),
            message: message.into(),
            retryable: false,
            source: Some(source.into()),
        }
    }

    /// The message followed by every source in the chain, joined by `: `.
    pub fn chain_string(&self) -> String {
        let mut out = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            let text = s.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            src = s.source();
        }
        out
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
