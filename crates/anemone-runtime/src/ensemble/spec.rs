//! What an ensemble is: [`EnsembleSpec`], its tensors and its [`EnsembleStep`]s,
//! the same whether it comes from Rust or from a Triton `config.pbtxt`
//! (`platform: "ensemble"`, `ensemble_scheduling`).

use anemone_core::{DataType, Dim, TensorSpec};

/// A pipeline of models run as one (Triton's ensemble): named tensors flow
/// from the ensemble's inputs through steps, each an ordinary request to a
/// loaded model, to the ensemble's outputs.
///
/// Tensor shapes are full shapes: when [`EnsembleSpec::max_batch_size`] is
/// set, the first dimension of every ensemble input and output is the batch
/// dimension (write it as [`Dim::Any`]), as in the composing models' own
/// metadata.
///
/// ```
/// use anemone_runtime::ensemble::{EnsembleSpec, EnsembleStep};
/// use anemone_core::DataType;
///
/// // sum = x + y (model "add"), then total = sum + y (model "add" again).
/// let spec = EnsembleSpec::new("add_twice")
///     .input("x", DataType::F32, &[-1, 4])
///     .input("y", DataType::F32, &[-1, 4])
///     .output("total", DataType::F32, &[-1, 4])
///     .step(EnsembleStep::new("add").map_input("x", "x").map_input("y", "y").map_output("sum", "partial"))
///     .step(EnsembleStep::new("add").map_input("x", "partial").map_input("y", "y").map_output("sum", "total"));
/// assert_eq!(spec.steps.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EnsembleSpec {
    /// The name requests use.
    pub name: String,
    /// The version it is served as. By default, 1.
    pub version: u64,
    /// Triton's `max_batch_size` of the ensemble: `Some(n)` means the first
    /// dimension of every ensemble input and output is the batch dimension
    /// and a request's batch is at most n. By default, `None` (no batch dimension).
    pub max_batch_size: Option<usize>,
    /// The tensors a request gives, with their full shapes (-1: any size).
    pub inputs: Vec<TensorSpec>,
    /// The tensors a response carries, in this order.
    pub outputs: Vec<TensorSpec>,
    /// The inputs a request may leave out (Triton's `optional: true`): a
    /// step fed one that is absent gets its request without that input,
    /// and an output no step then produces is left out of the answer.
    pub optional_inputs: Vec<String>,
    /// The steps; their order does not matter (they run as their inputs
    /// become ready).
    pub steps: Vec<EnsembleStep>,
    /// Answers come from the manager's response cache for a repeated request
    /// (Triton's `response_cache { enable: true }` on the ensemble): the
    /// steps do not run at all on a hit. By default, off.
    pub response_cache: bool,
}

/// One step of an ensemble: a request to a composing model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleStep {
    /// The composing model's name.
    pub model: String,
    /// Its version; `None` (Triton's `model_version: -1`, the default): the latest loaded.
    pub version: Option<u64>,
    /// `(the model's input, the ensemble tensor that feeds it)`, Triton's `input_map`.
    pub input_map: Vec<(String, String)>,
    /// `(the model's output, the ensemble tensor it produces)`, Triton's
    /// `output_map`. Outputs of the model that are not mapped are not computed.
    pub output_map: Vec<(String, String)>,
}

impl EnsembleSpec {
    /// An empty ensemble named `name`, version 1, with no batch dimension.
    pub fn new(name: impl Into<String>) -> EnsembleSpec {
        EnsembleSpec {
            name: name.into(),
            version: 1,
            max_batch_size: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            optional_inputs: Vec::new(),
            steps: Vec::new(),
            response_cache: false,
        }
    }

    /// Sets the version.
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Sets `max_batch_size` (0 means none).
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.max_batch_size = (n > 0).then_some(n);
        self
    }

    /// Adds an input with its full shape; -1 is a dimension of any size.
    pub fn input(mut self, name: impl Into<String>, dtype: DataType, shape: &[i64]) -> Self {
        self.inputs.push(TensorSpec::new(name, dtype, dims(shape)));
        self
    }

    /// Adds an input a request may leave out (see [`EnsembleSpec::optional_inputs`]).
    pub fn optional_input(
        mut self,
        name: impl Into<String>,
        dtype: DataType,
        shape: &[i64],
    ) -> Self {
        let name = name.into();
        self.optional_inputs.push(name.clone());
        self.input(name, dtype, shape)
    }

    /// Adds an output with its full shape; -1 is a dimension of any size.
    pub fn output(mut self, name: impl Into<String>, dtype: DataType, shape: &[i64]) -> Self {
        self.outputs.push(TensorSpec::new(name, dtype, dims(shape)));
        self
    }

    /// Adds a step.
    pub fn step(mut self, step: EnsembleStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Enables the response cache for the ensemble's answers.
    pub fn response_cache(mut self, enable: bool) -> Self {
        self.response_cache = enable;
        self
    }

    /// The composing models' names, each once, in step order.
    pub fn composing_models(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for step in &self.steps {
            if !names.contains(&step.model) {
                names.push(step.model.clone());
            }
        }
        names
    }
}

impl EnsembleStep {
    /// A step on the latest version of `model`, with nothing mapped yet.
    pub fn new(model: impl Into<String>) -> EnsembleStep {
        EnsembleStep {
            model: model.into(),
            version: None,
            input_map: Vec::new(),
            output_map: Vec::new(),
        }
    }

    /// Pins the composing model's version.
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Feeds the model's input `model_input` with ensemble tensor `tensor`.
    pub fn map_input(mut self, model_input: impl Into<String>, tensor: impl Into<String>) -> Self {
        self.input_map.push((model_input.into(), tensor.into()));
        self
    }

    /// Publishes the model's output `model_output` as ensemble tensor `tensor`.
    pub fn map_output(
        mut self,
        model_output: impl Into<String>,
        tensor: impl Into<String>,
    ) -> Self {
        self.output_map.push((model_output.into(), tensor.into()));
        self
    }
}

/// Triton-style dimensions: -1 (or any negative) is a dimension of any size.
pub fn dims(shape: &[i64]) -> Vec<Dim> {
    shape
        .iter()
        .map(|&d| u64::try_from(d).map_or(Dim::Any, Dim::Fixed))
        .collect()
}
