//! Why a request's inputs were refused ([`InputError`]), each naming the
//! input, what the model expects and what came; a missing input's message
//! carries Triton's sentence too ([`InputCount`]).

use crate::dtype::DataType;

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
    /// The request sends an input the server gives the model itself (a
    /// sequence model's control or state input, a ragged batch's batch
    /// input).
    #[error(
        "input '{name}' is given to the model by the server ({what}); requests do not send it: send only {}",
        .expected.join(", ")
    )]
    ServerGiven {
        /// The name sent.
        name: String,
        /// What gives it: `sequence_batching control input`, ...
        what: &'static str,
        /// The inputs a request sends.
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
            | InputError::ServerGiven { name, .. }
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
