//! Requests to and responses from [`Manager::infer`](crate::Manager::infer).

use crate::metrics::Timings;
use anemone_core::{DataType, Error, InputError, Tensor, TensorError};
use std::time::Duration;

/// One inference request.
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    /// The model's name.
    pub model: String,
    /// The version; `None` means the latest loaded.
    pub version: Option<u64>,
    /// Named inputs, in any order.
    pub inputs: Vec<(String, Tensor)>,
    /// Outputs wanted, in this order; `None` means all, in model order.
    pub outputs: Option<Vec<String>>,
    /// Give up after this long. By default there is no deadline. On a model
    /// whose queue policy allows timeout overrides, it is also the request's
    /// queue timeout.
    pub timeout: Option<Duration>,
    /// Triton's priority level: 1 is the highest. `None` or 0 (the default),
    /// or a level the model does not have: the model's default level. Only
    /// models with a queue order requests by priority.
    pub priority: Option<u32>,
    /// An identifier echoed in the response.
    pub id: Option<String>,
    /// The request's own parameters, beyond the ones the runtime acts on
    /// (`priority`, `timeout`, the sequence): handed to engines that read
    /// them (a Python model's `request.parameters()`), ignored by others.
    pub parameters: Vec<(String, anemone_core::Parameter)>,
    /// Its sequence, for a sequence model (Triton's `sequence_id`,
    /// `sequence_start`, `sequence_end`); ignored by other models. Boxed:
    /// most requests name none, and every request's future carries the field.
    pub sequence: Option<Box<crate::sequence::SequenceFlags>>,
}

impl InferRequest {
    /// A request for the latest version of `model`.
    pub fn new(model: impl Into<String>) -> InferRequest {
        InferRequest {
            model: model.into(),
            ..Default::default()
        }
    }

    /// Asks for a specific version.
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Adds an input.
    pub fn input(mut self, name: impl Into<String>, tensor: Tensor) -> Self {
        self.inputs.push((name.into(), tensor));
        self
    }

    /// Adds an input from raw little-endian bytes, refusing a length that disagrees with the shape.
    pub fn input_bytes(
        self,
        name: impl Into<String>,
        dtype: DataType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    ) -> Result<Self, Error> {
        let name = name.into();
        let tensor = Tensor::from_bytes(dtype, shape, bytes).map_err(|e| input_error(&name, e))?;
        Ok(self.input(name, tensor))
    }

    /// Asks for one output (call again for more). Without any, all outputs are returned.
    pub fn output(mut self, name: impl Into<String>) -> Self {
        self.outputs.get_or_insert_with(Vec::new).push(name.into());
        self
    }

    /// Sets a deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Places the request in a sequence (see [`InferRequest::sequence`]).
    pub fn sequence(mut self, id: crate::sequence::CorrelationId, start: bool, end: bool) -> Self {
        self.sequence = Some(Box::new(crate::sequence::SequenceFlags { id, start, end }));
        self
    }

    /// Sets the priority level (1 is the highest).
    pub fn priority(mut self, level: u32) -> Self {
        self.priority = Some(level);
        self
    }

    /// Adds a parameter for engines that read them (see
    /// [`InferRequest::parameters`]).
    pub fn parameter(mut self, name: impl Into<String>, value: anemone_core::Parameter) -> Self {
        self.parameters.push((name.into(), value));
        self
    }

    /// Sets an identifier to echo.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// Turns a tensor construction failure for input `name` into an [`Error`].
pub fn input_error(name: &str, e: TensorError) -> Error {
    let name = name.to_string();
    match e {
        TensorError::ByteLength {
            dtype,
            shape,
            expected,
            got,
        } => InputError::ByteLength {
            name,
            dtype,
            shape,
            expected,
            got,
        },
        other => InputError::Malformed {
            name,
            reason: other.to_string(),
        },
    }
    .into()
}

/// The answer to an [`InferRequest`].
#[derive(Debug, Clone)]
pub struct InferResponse {
    /// The model's name.
    pub model: String,
    /// The version that ran.
    pub version: u64,
    /// The backend that ran it.
    pub backend: &'static str,
    /// The identifier from the request.
    pub id: Option<String>,
    /// Named outputs, in the order asked for (or model order).
    pub outputs: Vec<(String, Tensor)>,
    /// The response's parameters, as the model gave them (a Python
    /// model's `InferenceResponse(parameters=...)`); most have none.
    pub parameters: Vec<(String, anemone_core::Parameter)>,
    /// Where the time went.
    pub timings: Timings,
}

impl InferResponse {
    /// The output with this name.
    pub fn output(&self, name: &str) -> Option<&Tensor> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}
