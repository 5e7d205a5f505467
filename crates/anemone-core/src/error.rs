//! The one error type of anemone, with a kind for every caller to branch on.

use crate::dtype::DataType;
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

fn also_missing(others: &[String]) -> String {
    match others.is_empty() {
        true => String::new(),
        false => {
            let names: Vec<String> = others.iter().map(|n| format!("'{n}'")).collect();
            format!(", and {} too", names.join(", "))
        }
    }
}

/// The inputs a request gave, against the number a model takes: the
/// words of Triton's refusal of a request without all its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputCount {
    /// The names of the inputs given, in the request's order.
    pub given: Vec<String>,
    /// How many inputs the model needs (those not optional).
    pub required: usize,
    /// How many inputs the model has.
    pub total: usize,
}

/// Triton's sentence for a request that lacks `first` and `others`.
fn input_count(count: &InputCount, model: &str, first: &str, others: &[String]) -> String {
    let quoted = |names: &mut dyn Iterator<Item = &String>| {
        let names: Vec<String> = names.map(|n| format!("'{n}'")).collect();
        format!("[{}]", names.join(","))
    };
    let expected = match count.required == count.total {
        true => format!("expected {} inputs", count.total),
        false => format!(
            "expected number of inputs between {} and {}",
            count.required, count.total
        ),
    };
    let first = first.to_string();
    format!(
        "{expected} but got {} inputs{}. Got input(s) {}, but missing required input(s) {}. \
         Please provide all required input(s).",
        count.given.len(),
        match model.is_empty() {
            true => String::new(),
            false => format!(" for model '{model}'"),
        },
        quoted(&mut count.given.iter()),
        quoted(&mut std::iter::once(&first).chain(others)),
    )
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

/// Why a request's inputs were refused. Each names the input, what the model
/// expects and what came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The request names an input the model does not have.
    #[error("unknown input '{name}': the model's inputs are {}", .expected.join(", "))]
    Unknown {
        /// The name sent.
        name: String,
        /// The model's input names.
        expected: Vec<String>,
    },
    /// The request lacks an input the model needs (and maybe others). The
    /// message carries Triton's sentence too ("expected 2 inputs but got 1
    /// inputs for model 'm'. Got input(s) ['x'], but missing required
    /// input(s) ['y']. Please provide all required input(s).").
    #[error(
        "missing input '{name}' ({} {shape}){}: {}",
        .dtype.kserve_name(),
        also_missing(.others),
        input_count(.count, .model, .name, .others)
    )]
    Missing {
        /// The input's name.
        name: String,
        /// Its declared type.
        dtype: DataType,
        /// Its declared shape.
        shape: String,
        /// The other required inputs the request lacks, by name.
        others: Vec<String>,
        /// What the request gave, against what the model takes.
        count: InputCount,
        /// The model's name, where known ([`InputError::for_model`]).
        model: String,
    },
    /// The request lacks an input that the model's configuration marks
    /// optional (Triton's `optional: true`), but the engine has no default for
    /// it and needs it on every request.
    #[error(
        "missing input '{name}' ({} {shape}): the model's configuration marks it optional, \
         but the model has no default for it and needs it on every request; send it, \
         or remove `optional: true` from the configuration",
        .dtype.kserve_name()
    )]
    MissingOptional {
        /// The input's name.
        name: String,
        /// Its declared type.
        dtype: DataType,
        /// Its declared shape.
        shape: String,
    },
    /// The same input was given twice.
    #[error("input '{name}' is given more than once")]
    Duplicate {
        /// The input's name.
        name: String,
    },
    /// The element type differs from the declared one.
    #[error("input '{name}' has type {}, but the model expects {}", .got.kserve_name(), .expected.kserve_name())]
    Dtype {
        /// The input's name.
        name: String,
        /// Declared type.
        expected: DataType,
        /// Type sent.
        got: DataType,
    },
    /// The rank differs from the declared one.
    #[error("input '{name}' has rank {got} (shape {got_shape:?}), but the model expects rank {expected} ({expected_shape})")]
    Rank {
        /// The input's name.
        name: String,
        /// Declared rank.
        expected: usize,
        /// Declared shape, as text.
        expected_shape: String,
        /// Rank sent.
        got: usize,
        /// Shape sent.
        got_shape: Vec<usize>,
    },
    /// A fixed dimension has the wrong size.
    #[error("input '{name}' dimension {axis} is {got}, but the model fixes it at {expected} (shape {expected_shape})")]
    Dim {
        /// The input's name.
        name: String,
        /// Axis index.
        axis: usize,
        /// Declared size.
        expected: u64,
        /// Declared shape, as text.
        expected_shape: String,
        /// Size sent.
        got: usize,
    },
    /// A named dynamic dimension was given two different sizes.
    #[error(
        "input '{name}' dimension {axis} ('{symbol}') is {got}, but '{symbol}' is {bound} from input '{bound_by}' dimension {bound_axis}"
    )]
    Symbol {
        /// The input's name.
        name: String,
        /// Axis index.
        axis: usize,
        /// The dimension's name.
        symbol: String,
        /// Size sent here.
        got: usize,
        /// Size it was first bound to.
        bound: usize,
        /// The input that bound it.
        bound_by: String,
        /// The axis that bound it.
        bound_axis: usize,
    },
    /// The batch (first) dimension is larger than the model's `max_batch_size`.
    #[error(
        "input '{name}' has batch size {got} (dimension 0), but the model's max_batch_size is {max}; \
         send at most {max} rows per request"
    )]
    Batch {
        /// The input's name.
        name: String,
        /// The batch size sent.
        got: usize,
        /// The model's `max_batch_size`.
        max: usize,
    },
    /// A model that batches (`max_batch_size` > 0) was sent zero rows.
    #[error(
        "input '{name}' has batch size 0 (dimension 0), but the model batches requests \
         (max_batch_size {max}); send between 1 and {max} rows per request"
    )]
    EmptyBatch {
        /// The input's name.
        name: String,
        /// The model's `max_batch_size`.
        max: usize,
    },
    /// The data length disagrees with shape × element size.
    #[error("input '{name}' has {got} bytes of data, but {} {shape:?} needs {expected}", .dtype.kserve_name())]
    ByteLength {
        /// The input's name.
        name: String,
        /// Element type.
        dtype: DataType,
        /// Shape sent.
        shape: Vec<usize>,
        /// Bytes needed.
        expected: usize,
        /// Bytes sent.
        got: usize,
    },
    /// The tensor itself is malformed (overflowing shape, wrong storage).
    #[error("input '{name}' is malformed: {reason}")]
    Malformed {
        /// The input's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The inputs passed validation, but the engine cannot run the model on
    /// them: a size the network's layers cannot take (an image height that
    /// is not a multiple of the network's stride, or smaller than a kernel),
    /// or values out of range. The request is wrong, not the backend.
    #[error(
        "the model cannot run on input '{name}' as sent; {backend} says: {message}. \
         Check the sizes and values the model accepts (e.g. a detector may need sides that are multiples of 32)"
    )]
    Rejected {
        /// The input (or inputs, comma-separated) of the request.
        name: String,
        /// The backend that refused them.
        backend: String,
        /// The engine's error, on one line.
        message: String,
    },
    /// A requested output does not exist.
    #[error("unknown output '{name}': the model's outputs are {}", .expected.join(", "))]
    UnknownOutput {
        /// The name asked for.
        name: String,
        /// The model's output names.
        expected: Vec<String>,
    },
    /// A requested output exists in the model, but its configuration leaves
    /// it out of the outputs it serves (a Triton `output` list may be a subset).
    #[error(
        "output '{name}' is not served: the model's configuration lists only {}; \
         add '{name}' to the configuration's outputs to serve it",
        .served.join(", ")
    )]
    UnservedOutput {
        /// The name asked for.
        name: String,
        /// The outputs the configuration serves.
        served: Vec<String>,
    },
    /// A request to a sequence model (Triton's `sequence_batching`) that
    /// breaks the sequence rules: no correlation ID, a sequence not started,
    /// a batch of more than one row.
    #[error("{message}")]
    Sequence {
        /// What is wrong, and what to send.
        message: String,
    },
    /// The model's own code refused the request, in its own words (a
    /// Python model's `TritonError` with code `INVALID_ARG`).
    #[error("{message}")]
    Refused {
        /// The model's message.
        message: String,
    },
}

impl InputError {
    /// The error with the model's name where it names one (a missing
    /// input's message says which model lacks it, as Triton's does).
    pub fn for_model(self, model: &str) -> InputError {
        match self {
            InputError::Missing {
                name,
                dtype,
                shape,
                others,
                count,
                ..
            } => InputError::Missing {
                name,
                dtype,
                shape,
                others,
                count,
                model: model.to_string(),
            },
            e => e,
        }
    }

    /// The input (or output) the error is about.
    pub fn name(&self) -> &str {
        match self {
            InputError::Unknown { name, .. }
            | InputError::Missing { name, .. }
            | InputError::MissingOptional { name, .. }
            | InputError::Duplicate { name }
            | InputError::Dtype { name, .. }
            | InputError::Rank { name, .. }
            | InputError::Dim { name, .. }
            | InputError::Symbol { name, .. }
            | InputError::Batch { name, .. }
            | InputError::EmptyBatch { name, .. }
            | InputError::ByteLength { name, .. }
            | InputError::Malformed { name, .. }
            | InputError::Rejected { name, .. }
            | InputError::UnknownOutput { name, .. }
            | InputError::UnservedOutput { name, .. } => name,
            InputError::Sequence { .. } => "sequence_id",
            InputError::Refused { .. } => "request",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_retryability() {
        let overloaded = Error::Overloaded {
            limit: "global concurrency limit".into(),
            in_use: 4,
            capacity: 4,
        };
        assert_eq!(overloaded.kind(), ErrorKind::Overloaded);
        assert!(overloaded.retryable());
        let input = Error::from(InputError::Duplicate { name: "x".into() });
        assert_eq!(input.kind(), ErrorKind::InvalidInput);
        assert!(!input.retryable());
        assert_eq!(
            Error::Timeout(Duration::from_millis(5)).kind(),
            ErrorKind::Timeout
        );
        assert!(!Error::Internal("x".into()).retryable());
    }

    #[test]
    fn kind_indices_match_all() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn source_chain_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad magic");
        let err = Error::InvalidModel {
            path: "m.onnx".into(),
            reason: "not a protobuf".into(),
            source: Some(io.into()),
        };
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(
            err.chain_string(),
            "cannot load m.onnx: not a protobuf: bad magic"
        );
    }

    #[test]
    fn not_found_lists_loaded_models() {
        let err = Error::ModelNotFound {
            name: "a".into(),
            version: Some(2),
            loaded: vec!["b".into()],
        };
        assert_eq!(
            err.to_string(),
            "Request for unknown model: 'a' version 2 is not found; loaded: b"
        );
    }
}
