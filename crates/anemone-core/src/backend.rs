//! The backend contract: what every engine (tract, ONNX Runtime, Core ML) provides.
//!
//! A backend is small and synchronous. The runtime decides which backend
//! loads a model and runs [`LoadedModel::infer`] on its own worker threads,
//! never on an async executor.

use crate::error::{Error, Result};
use crate::metadata::{ModelFormat, ModelMetadata};
use crate::tensor::Tensor;
use std::path::{Path, PathBuf};

/// Whether a backend can run on this machine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Probe {
    /// Usable; `detail` says what was found (device, library version).
    Available {
        /// What was found.
        detail: String,
    },
    /// Not usable; `reason` says why and how to fix it.
    Unavailable {
        /// Why not, and what to do.
        reason: String,
    },
}

impl Probe {
    /// Whether the backend is usable.
    pub fn is_available(&self) -> bool {
        matches!(self, Probe::Available { .. })
    }
}

/// The class of hardware a backend runs on. The default preference order
/// follows it: Neural Engine, then GPU, then an optimised CPU engine, then the
/// portable CPU engine. Within one tier, the order backends were registered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Apple's Neural Engine (Core ML with CPUAndNeuralEngine).
    NeuralEngine,
    /// A GPU (CUDA, Metal, Core ML with CPUAndGPU).
    Gpu,
    /// A CPU engine tuned for speed (ONNX Runtime).
    OptimisedCpu,
    /// The portable CPU engine (tract), always present.
    PortableCpu,
}

impl Tier {
    /// A stable name, e.g. `gpu`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::NeuralEngine => "neural-engine",
            Tier::Gpu => "gpu",
            Tier::OptimisedCpu => "optimised-cpu",
            Tier::PortableCpu => "portable-cpu",
        }
    }
}

/// Whether a backend accepts a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// It will try to load it.
    Yes,
    /// It cannot, and why.
    No(String),
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// The model file (or bundle directory, for `.mlpackage`).
    pub path: PathBuf,
    /// Its format.
    pub format: ModelFormat,
}

impl ModelSource {
    /// A source whose format is guessed from the file extension, falling back to ONNX.
    pub fn from_path(path: impl AsRef<Path>) -> ModelSource {
        let path = path.as_ref().to_path_buf();
        let format = ModelFormat::from_path(&path).unwrap_or(ModelFormat::Onnx);
        ModelSource { path, format }
    }
}

/// The setting the runtime adds to [`LoadOptions::settings`] (value `"1"`)
/// when a model's requests reach its engine in batches formed by a queue
/// (`dynamic_batching`, `max_batch_size` above 1). Its calls then come with
/// gaps between them, while the next batch forms on the threads that decode
/// the next requests, so a backend may tune for that: ONNX Runtime's threads
/// stop spinning between calls (`onnxruntime.spinning`). Not a setting for
/// users to write.
pub const BATCHED_SETTING: &str = "anemone.batched";

/// The setting the runtime adds (value `"1"`) when it loads the engine that
/// won a comparison run in another process: that engine has already loaded
/// and run this model there, on its warm-up, so a backend may skip the
/// checks at load that running it would have caught (tract's plan at a
/// sample shape), and the memory they leave behind. Not a setting for
/// users to write.
pub const RAN_ELSEWHERE_SETTING: &str = "anemone.ran_elsewhere";

/// Options for loading a model into a backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Threads the engine may use for one inference. By default (`None`), the
    /// backend picks a sensible number for the machine.
    pub threads: Option<usize>,
    /// Backend-specific settings from the model's configuration, e.g.
    /// `("coreml.compute_units", "ane")`. Backends ignore keys not their own.
    pub settings: Vec<(String, String)>,
    /// Runs requests on the other models of the same server, for a model
    /// whose own code calls them (a Python model's
    /// `InferenceRequest.exec`). The runtime gives one; `None` elsewhere.
    pub caller: Option<Caller>,
    /// Where a model's own metrics go (a Python model's
    /// `pb_utils.MetricFamily`), for the server's `/metrics`. The runtime
    /// gives its registry; `None` elsewhere (such a model's metrics are then
    /// refused with a message).
    pub custom_metrics: Option<crate::custom_metrics::CustomMetrics>,
    /// Which engine instance of the model this is: 0 for the first, then
    /// counting through its instance groups in order (a Python model names
    /// its instance after it, as Triton does).
    pub instance: usize,
}

/// A value of a request's parameter (Triton's `InferParameter`): what a
/// client sends in a request's `parameters` beyond the ones the server acts
/// on itself (`priority`, `timeout`, the sequence flags).
#[derive(Debug, Clone, PartialEq)]
pub enum Parameter {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A whole number above [`i64::MAX`].
    Uint(u64),
    /// A number with a fraction.
    Double(f64),
    /// Text.
    String(String),
}

impl Parameter {
    /// A JSON value as a parameter: a boolean, a whole number (an [`i64`],
    /// or a [`u64`] above it), another number, or a string; `None` for
    /// null, lists and objects, which no parameter holds.
    pub fn from_json(value: &serde_json::Value) -> Option<Parameter> {
        use serde_json::Value;
        match value {
            Value::Bool(b) => Some(Parameter::Bool(*b)),
            Value::String(s) => Some(Parameter::String(s.clone())),
            Value::Number(n) => n
                .as_i64()
                .map(Parameter::Int)
                .or_else(|| n.as_u64().map(Parameter::Uint))
                .or_else(|| n.as_f64().map(Parameter::Double)),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// The parameter as JSON (a double that is not finite as null).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Parameter::Bool(b) => Value::Bool(*b),
            Parameter::Int(i) => (*i).into(),
            Parameter::Uint(u) => (*u).into(),
            Parameter::Double(d) => {
                serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
            }
            Parameter::String(s) => Value::String(s.clone()),
        }
    }
}

/// One request as an engine that answers each request on its own sees it
/// ([`LoadedModel::infer_each`]): its inputs, its id and its parameters.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Inputs in the order of the model's metadata, validated.
    pub inputs: &'a [Tensor],
    /// The id the client gave the request, if any.
    pub id: Option<&'a str>,
    /// The request's parameters, in the order the client sent them.
    pub parameters: &'a [(String, Parameter)],
    /// Where a decoupled model ([`LoadedModel::decoupled`]) sends its
    /// responses to this request; `None` for every other model.
    pub responder: Option<&'a crate::Responder>,
    /// Positions in `inputs` of the optional inputs the request left out,
    /// in order (only for a model that
    /// [takes absent inputs](LoadedModel::takes_absent_inputs)): each
    /// stands there as an empty placeholder, and is not the model's to see.
    pub absent: &'a [usize],
    /// The request's place in a sequence (Triton's correlation ID and
    /// sequence flags), when it gave one; any model may read it.
    pub sequence: Option<&'a CallSequence>,
    /// Positions in the model's outputs of those the request asked for;
    /// `None`: all. An engine that reads it may leave the others out of
    /// its answer as empty placeholders.
    pub outputs: Option<&'a [usize]>,
    /// The request's `timeout`, when it gave one (Triton's, in
    /// microseconds on the wire), for engines that show it to the model (a
    /// Python model's `request.timeout()`).
    pub timeout: Option<std::time::Duration>,
    /// Whether the request's client has stopped waiting (it closed its
    /// connection, cancelled, or its deadline passed), for engines that
    /// tell the model while it runs (a Python model's
    /// `request.is_cancelled()`); `None`: never known.
    pub gone: Option<ClientGone<'a>>,
}

/// Asks whether a request's client has stopped waiting for its answer
/// ([`RequestView::gone`]); cheap, and callable from any thread.
#[derive(Clone, Copy)]
pub struct ClientGone<'a>(pub &'a (dyn Fn() -> bool + Sync));

impl ClientGone<'_> {
    /// Whether the client has gone by now.
    pub fn now(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for ClientGone<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientGone")
    }
}

/// A request a model's code sends to another model ([`ModelCaller`]).
#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    /// The model called.
    pub model: String,
    /// Its version; `None`: the latest loaded.
    pub version: Option<u64>,
    /// Named inputs.
    pub inputs: Vec<(String, Tensor)>,
    /// The outputs wanted; `None`: all.
    pub outputs: Option<Vec<String>>,
    /// Give up after this long.
    pub timeout: Option<std::time::Duration>,
    /// The request's parameters (see [`RequestView::parameters`]).
    pub parameters: Vec<(String, Parameter)>,
    /// Its place in a sequence, for a sequence model (Triton's correlation
    /// ID and sequence flags); `None`: none.
    pub sequence: Option<CallSequence>,
}

/// A call's place in a sequence: which one, and whether it starts or ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSequence {
    /// The sequence (Triton's correlation ID).
    pub id: SequenceId,
    /// The call starts the sequence.
    pub start: bool,
    /// The call ends the sequence.
    pub end: bool,
}

/// A sequence's identifier: a number or a string, as Triton's correlation IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceId {
    /// A whole number (not 0, which names no sequence).
    Number(u64),
    /// A string (not empty).
    Text(String),
}

/// Runs a request on another model of the same server and waits for its
/// named outputs, with the same admission, validation and statistics as a
/// client's request. Blocking: called on the calling model's engine thread.
pub trait ModelCaller: Send + Sync {
    /// Runs `request`.
    fn call(&self, request: CallRequest) -> Result<CallAnswer>;

    /// Runs `request` on a model that may answer with any number of
    /// responses (a decoupled model), giving each to `each` as it comes,
    /// the last flagged; a failure is a last response with the error.
    /// `each` returns `false` to stop: the request is then cancelled (the
    /// model's `is_cancelled()` turns true) and its further responses are
    /// dropped. A model that answers once gives one response. By default,
    /// [`ModelCaller::call`]'s answer as that one response.
    fn call_stream(&self, request: CallRequest, each: &mut dyn FnMut(CallResponse) -> bool) {
        each(CallResponse {
            response: Some(self.call(request)),
            last: true,
        });
    }

    /// Loads (or reloads) model `name` from the server's repository, with
    /// `config` (JSON) in place of its `config.pbtxt` when given: Triton's
    /// model loading API (`pb_utils.load_model`). By default there is no
    /// repository to load from.
    fn load_model(&self, name: &str, config: Option<&str>) -> Result<()> {
        let _ = config;
        Err(no_repository(name))
    }

    /// Unloads model `name` (with `dependents`, an ensemble's composing
    /// models too): `pb_utils.unload_model`. By default, as
    /// [`ModelCaller::load_model`].
    fn unload_model(&self, name: &str, dependents: bool) -> Result<()> {
        let _ = dependents;
        Err(no_repository(name))
    }

    /// Whether model `name` (`version`; `None`: its latest) is loaded and
    /// ready: `pb_utils.is_model_ready`. By default, false.
    fn is_model_ready(&self, name: &str, version: Option<u64>) -> bool {
        let _ = (name, version);
        false
    }
}

fn no_repository(name: &str) -> crate::Error {
    crate::Error::Unsupported {
        what: format!("loading or unloading model '{name}' from a model's code"),
        fix: "run the model in `anemone serve` with --model-control-mode explicit, where models \
              load from its repository"
            .into(),
    }
}

/// The answer of a [`ModelCaller::call`]: its named outputs, and the
/// parameters the model gave its response (a Python model's
/// `InferenceResponse(parameters=...)`).
#[derive(Debug, Default)]
pub struct CallAnswer {
    /// The outputs, by name.
    pub outputs: Vec<(String, Tensor)>,
    /// The response's parameters.
    pub parameters: Vec<(String, Parameter)>,
}

/// One request's answer from an engine that answers each request on its
/// own ([`LoadedModel::infer_each_answered`]): its outputs, in the order
/// of [`LoadedModel::infer`]'s, and its response's parameters.
#[derive(Debug, Default)]
pub struct Answer {
    /// The outputs.
    pub outputs: Vec<Tensor>,
    /// The response's parameters (a Python model's
    /// `InferenceResponse(parameters=...)`), sent to the client.
    pub parameters: Vec<(String, Parameter)>,
    /// The model rescheduled the request instead of answering it (Triton's
    /// `TRITONSERVER_REQUEST_RELEASE_RESCHEDULE`; only from a model that is
    /// [iterative](LoadedModel::iterative)): it runs again in a later call,
    /// and its outputs here are empty.
    pub rescheduled: bool,
}

/// One response of a [`ModelCaller::call_stream`].
#[derive(Debug)]
pub struct CallResponse {
    /// The response's outputs, or its error; `None` for the final flag alone.
    pub response: Option<Result<CallAnswer>>,
    /// Whether it is the last.
    pub last: bool,
}

/// A shared [`ModelCaller`], as [`LoadOptions::caller`] holds it. Two are
/// equal when they are the same caller.
#[derive(Clone)]
pub struct Caller(pub std::sync::Arc<dyn ModelCaller>);

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Caller(..)")
    }
}

impl PartialEq for Caller {
    fn eq(&self, other: &Caller) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Caller {}

impl LoadOptions {
    /// The value of a setting, if given.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the runtime batches this model's requests ([`BATCHED_SETTING`]).
    pub fn batched(&self) -> bool {
        self.setting(BATCHED_SETTING) == Some("1")
    }

    /// Whether this engine already ran the model in a comparison process
    /// ([`RAN_ELSEWHERE_SETTING`]).
    pub fn ran_elsewhere(&self) -> bool {
        self.setting(RAN_ELSEWHERE_SETTING) == Some("1")
    }
}

/// An inference engine.
pub trait Backend: Send + Sync + 'static {
    /// A short stable name, e.g. `tract-cpu`.
    fn name(&self) -> &'static str;

    /// Whether this backend is usable here, and if not, why. May be slow the
    /// first time (it loads libraries); callers should cache it.
    fn probe(&self) -> Probe;

    /// The hardware class, which orders the default preference.
    fn tier(&self) -> Tier {
        Tier::PortableCpu
    }

    /// Whether the model's own code picks the device it runs on, so that
    /// its instances fit an instance group of any kind (`KIND_CPU`,
    /// `KIND_GPU`) whatever [`Backend::tier`] says. A Python model does
    /// (Triton tells it the kind). Default: `false`.
    fn model_picks_device(&self) -> bool {
        false
    }

    /// Whether this backend accepts the model's format. Cheap: it does not
    /// parse the model; operator support is found out by [`Backend::load`].
    fn supports(&self, source: &ModelSource) -> Support;

    /// Loads and prepares a model. Slow; call it off the async executor.
    fn load(&self, source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>>;
}

/// A model ready to run on a backend.
///
/// `infer` may be called from several threads at once.
pub trait LoadedModel: Send + Sync + 'static {
    /// What the model declares.
    fn metadata(&self) -> &ModelMetadata;

    /// The backend that runs it.
    fn backend(&self) -> &'static str;

    /// Bytes of memory the loaded model holds (weights and prepared plan),
    /// charged against the memory budget.
    fn memory_footprint(&self) -> u64;

    /// Runs one inference. `inputs` are in the order of `metadata().inputs`
    /// and have been validated against it; the outputs come back in the
    /// order of `metadata().outputs`. Blocking: call it on a worker thread.
    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>>;

    /// Runs one inference on several requests at once (dynamic batching):
    /// `requests[r][i]` is request `r`'s tensor for input `i`, and input `i`
    /// of the call is those tensors stacked along dimension 0, in request
    /// order. The requests have the same inputs, data types and dimensions
    /// after the first. Outputs as [`LoadedModel::infer`]'s, with the
    /// requests' rows stacked the same way.
    ///
    /// The default concatenates ([`stack_inputs`]) and calls `infer`. A
    /// backend that can place each request's rows where its engine reads
    /// them (tract-cuda: straight into page-locked memory for the upload)
    /// overrides it to save that copy.
    fn infer_stacked(&self, requests: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        self.infer(&stack_inputs(requests)?)
    }

    /// Whether the engine answers each request of a call on its own and
    /// reads requests' ids and parameters: the runtime then runs requests
    /// through [`LoadedModel::infer_each`] (alone and in dynamic batches)
    /// instead of `infer` and `infer_stacked`. A Python model does, as
    /// Triton gives its `execute` a list of requests. Default: `false`.
    fn answers_each(&self) -> bool {
        false
    }

    /// Whether the model reads its inputs by name, so that an input its
    /// configuration marks optional may be left out of a request (a Python
    /// model: `get_input_tensor_by_name` gives `None`); such requests reach
    /// [`LoadedModel::infer_each`] with [`RequestView::absent`] set. Only
    /// for a model that [answers each](LoadedModel::answers_each) request.
    /// Default: `false` (a missing input is refused).
    fn takes_absent_inputs(&self) -> bool {
        false
    }

    /// Whether the model is decoupled: it answers each request with any
    /// number of responses through the request's
    /// [`RequestView::responder`], when it likes (even after its call has
    /// returned), rather than with one answer. Such a model also
    /// [answers each](LoadedModel::answers_each) request; its `infer_each`
    /// gives an empty output list per request whose call went well, or the
    /// error that failed the request before it sent its last response.
    /// Default: `false`.
    fn decoupled(&self) -> bool {
        false
    }

    /// Whether the model may reschedule its requests (Triton's
    /// `sequence_batching { iterative_sequence: true }`): its
    /// [`LoadedModel::infer_each_answered`] may answer a request with
    /// [`Answer::rescheduled`], and the runtime puts that request back in
    /// the model's queue, ahead of new ones, to run again in a later call
    /// on the same engine instance, batched with whatever else is queued
    /// (Triton's continuous batching). Each such request runs in a sequence:
    /// one that names none is given its own (a correlation ID counted per
    /// model version from 1), started on its first call; its later calls
    /// neither start nor end it. Such a model also
    /// [answers each](LoadedModel::answers_each) request. Default: `false`.
    fn iterative(&self) -> bool {
        false
    }

    /// Runs requests in one call and answers each on its own, in order: one
    /// request's error (its bad input) fails that request only, and the
    /// others keep their answers. Outputs of each answer as
    /// [`LoadedModel::infer`]'s. Called instead of `infer` when
    /// [`LoadedModel::answers_each`] is `true`; the default runs `infer` on
    /// each request.
    fn infer_each(&self, requests: &[RequestView<'_>]) -> Vec<Result<Vec<Tensor>>> {
        requests.iter().map(|r| self.infer(r.inputs)).collect()
    }

    /// [`LoadedModel::infer_each`] with each answer's response parameters,
    /// for an engine whose model gives them (a Python model); the runtime
    /// calls this one. The default gives [`LoadedModel::infer_each`]'s
    /// answers with none.
    fn infer_each_answered(&self, requests: &[RequestView<'_>]) -> Vec<Result<Answer>> {
        self.infer_each(requests)
            .into_iter()
            .map(|answer| {
                answer.map(|outputs| Answer {
                    outputs,
                    ..Answer::default()
                })
            })
            .collect()
    }

    /// Request input `ix` (validated, in the order of `metadata().inputs`)
    /// copied to where this engine reads it faster, or `None` to run on it
    /// as it is (the default, and the answer for any input the engine has no
    /// better place for). The copy must hold the same values.
    ///
    /// anemone's scheduler calls it on the request's own task before the
    /// request waits in its queue, so a copy made here overlaps the wait
    /// instead of lengthening the run of the batch. tract-cuda copies large
    /// inputs into page-locked host memory, from which the GPU reads each
    /// request's rows itself.
    fn adopt_input(&self, ix: usize, input: &Tensor) -> Option<Tensor> {
        let _ = (ix, input);
        None
    }
}

/// The inputs of one call made of several requests' inputs: input `i` is
/// `requests[r][i]` for every `r`, concatenated along dimension 0
/// ([`Tensor::concat_batch`]). Requests that cannot be stacked (a different
/// number of inputs, data types or trailing dimensions) are an
/// [`Error::Internal`]: the scheduler only stacks requests that fit.
pub fn stack_inputs(requests: &[&[Tensor]]) -> Result<Vec<Tensor>> {
    let Some(first) = requests.first() else {
        return Err(Error::Internal("no requests to stack".into()));
    };
    if let Some(r) = requests.iter().position(|r| r.len() != first.len()) {
        return Err(Error::Internal(format!(
            "request {r} has {} inputs where request 0 has {}",
            requests[r].len(),
            first.len()
        )));
    }
    (0..first.len())
        .map(|i| {
            let parts: Vec<&Tensor> = requests.iter().map(|r| &r[i]).collect();
            Tensor::concat_batch(&parts).map_err(|e| Error::Internal(e.to_string()))
        })
        .collect()
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
