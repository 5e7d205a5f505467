//! Triton's Python backend: a `model.py` whose `TritonPythonModel` class
//! answers requests, run by a Python interpreter in a process of its own
//! per instance (as Triton runs its "stub" processes).
//!
//! The model's configuration declares its inputs and outputs
//! ([`config::MODEL_CONFIG_KEY`]); the process imports `model.py`, calls
//! `initialize(args)` with Triton's `args`, then `execute(requests)` for
//! each call (one request, or the requests of a dynamic batch, each its own
//! `InferenceRequest` as in Triton), and `finalize()` when the instance is
//! unloaded. `import triton_python_backend_utils as pb_utils` works: anemone
//! ships its own (`stub/`, given to the interpreter in its environment; its
//! compiled code is kept in the user's cache folder: `code_cache`). The
//! interpreter is [`PYTHON_ENV`] or `python3`; it needs numpy.

mod advice;
mod autocomplete;
mod bls;
mod code_cache;
pub mod config;
mod env;
mod errors;
mod init_watchdog;
#[cfg(unix)]
mod metrics;
mod probe;
mod process;
mod pump;
mod reap;
mod reschedule;
mod stderr_log;
mod watch;

#[cfg(test)]
mod tests;
mod wire;

use anemone_core::{
    Backend, Error, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource, Probe,
    RequestView, Result, Support, Tensor, Tier,
};
pub(crate) use errors::refusal;
use errors::{copy_of, numpy_name};
use process::{Launch, Process};
use reschedule::Ran;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use wire::Answer;

pub use code_cache::cache_folders;

/// The backend's name.
pub const NAME: &str = "python";

/// The environment variable that names the Python interpreter (default `python3`).
pub const PYTHON_ENV: &str = "ANEMONE_PYTHON";

/// The stub that runs in the process, and anemone's `triton_python_backend_utils`.
pub(crate) const STUB: &str = include_str!("stub/anemone_python_stub.py");
pub(crate) const UTILS: &str = include_str!("stub/triton_python_backend_utils.py");
/// The utilities' model config helpers and `Logger`, run in their namespace.
pub(crate) const UTILS_CONFIG: &str = include_str!("stub/triton_python_backend_config.py");
/// The utilities' custom metrics (`MetricFamily`), run in their namespace.
pub(crate) const UTILS_METRICS: &str = include_str!("stub/triton_python_backend_metrics.py");
/// The utilities' model loading API (`load_model`), run in their namespace.
pub(crate) const UTILS_MODELS: &str = include_str!("stub/triton_python_backend_models.py");
/// The utilities' response senders and iterator, run in their namespace.
pub(crate) const UTILS_RESPONSES: &str = include_str!("stub/triton_python_backend_responses.py");
/// The stub's frames (reading, writing, `Frames`, `Direct`), run in its namespace.
pub(crate) const FRAMES: &str = include_str!("stub/anemone_stub_frames.py");
/// The stub's requests to anemone (BLS, model loading), run in its namespace.
pub(crate) const CALLS: &str = include_str!("stub/anemone_stub_calls.py");

/// Triton's Python backend ([module docs](self)).
#[derive(Debug, Default)]
pub struct Python {
    /// The interpreter; `None`: [`interpreter`].
    python: Option<PathBuf>,
    probe: OnceLock<Probe>,
}

impl Python {
    /// The backend, running models with this interpreter rather than
    /// [`PYTHON_ENV`]'s or `python3`.
    pub fn with_interpreter(python: impl Into<PathBuf>) -> Python {
        Python {
            python: Some(python.into()),
            probe: OnceLock::new(),
        }
    }

    fn python(&self) -> PathBuf {
        self.python.clone().unwrap_or_else(interpreter)
    }
}

pub use autocomplete::{auto_complete, defines_auto_complete};

/// The interpreter of a model's own environment (Triton's
/// `EXECUTION_ENV_PATH`: a conda-pack archive, unpacked once into a private
/// cache, or an environment's directory) and that environment's `lib`.
pub fn environment_interpreter(env: &Path) -> Result<(PathBuf, PathBuf)> {
    env::interpreter(env)
}

/// Waits, at most `limit`, for every model process of this server to end
/// (each runs its `finalize` when its model is dropped); whether they all
/// did. A server exiting calls it once its models are unloaded, so that
/// what `finalize` does (and logs) is not cut short.
///
/// Meanwhile a process still importing its model.py or in `initialize`
/// (a model loading as the server stops) is killed at once, its load
/// failing with "the server is stopping": no `finalize` is owed to it,
/// and a long `initialize` (weights downloading) would otherwise hold the
/// exit for `limit`.
pub fn wait_for_finalize(limit: std::time::Duration) -> bool {
    use std::sync::atomic::Ordering;
    init_watchdog::STOPPING.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + limit;
    let mut ended = true;
    while process::running() > 0 {
        if std::time::Instant::now() >= deadline {
            ended = false;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    init_watchdog::STOPPING.store(false, Ordering::SeqCst);
    ended
}

/// The interpreter: [`PYTHON_ENV`] when set, else `python3`.
pub fn interpreter() -> PathBuf {
    match std::env::var_os(PYTHON_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("python3"),
    }
}

impl Backend for Python {
    fn name(&self) -> &'static str {
        NAME
    }

    fn probe(&self) -> Probe {
        self.probe
            .get_or_init(|| probe::probe(&self.python()))
            .clone()
    }

    fn tier(&self) -> Tier {
        Tier::PortableCpu
    }

    /// A model.py picks its own device (from `args["model_instance_kind"]`).
    fn model_picks_device(&self) -> bool {
        true
    }

    fn supports(&self, source: &ModelSource) -> Support {
        match source.format {
            ModelFormat::Python => Support::Yes,
            other => Support::No(format!("python runs model.py files, not {other} models")),
        }
    }

    fn load(&self, source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
        let (python, lib) = match options.setting(config::ENV_KEY) {
            Some(env) => env::interpreter(Path::new(env)).map(|(p, lib)| (p, Some(lib)))?,
            None => (self.python(), None),
        };
        PythonModel::load(python, lib, &source.path, options)
            .map(|m| Box::new(m) as Box<dyn LoadedModel>)
    }
}

/// A loaded Python model: one process, one call at a time (as a Triton
/// instance runs one `execute` at a time).
pub struct PythonModel {
    meta: ModelMetadata,
    launch: Launch,
    inputs: Vec<String>,
    outputs: Vec<String>,
    footprint: u64,
    process: Mutex<Option<Process>>,
    caller: Option<anemone_core::Caller>,
    dtype_warned: AtomicBool,
    /// Whether a requested output the model left out has been logged.
    missing_warned: AtomicBool,
    /// `sequence_batching { iterative_sequence: true }`: requests may be
    /// rescheduled (`reschedule.rs`).
    iterative: bool,
    /// The next correlation ID an iterative model gives a request that
    /// names no sequence.
    next_sequence: AtomicU64,
}

impl PythonModel {
    fn load(
        python: PathBuf,
        lib: Option<PathBuf>,
        model_py: &Path,
        options: &LoadOptions,
    ) -> Result<PythonModel> {
        let text = options.setting(config::MODEL_CONFIG_KEY).ok_or_else(|| {
            Error::Config(format!(
                "a Python model needs its configuration (inputs and outputs) in setting '{}'; \
                 serve it from a model repository with a config.pbtxt",
                config::MODEL_CONFIG_KEY
            ))
        })?;
        let model_config: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Error::Config(format!(
                "setting '{}' is not JSON: {e}",
                config::MODEL_CONFIG_KEY
            ))
        })?;
        let meta = config::metadata(&model_config)?;
        let version_dir = model_py.parent().unwrap_or(Path::new("."));
        let model_dir = match options.setting(config::MODEL_DIR_KEY) {
            Some(dir) => PathBuf::from(dir),
            None => version_dir.parent().unwrap_or(version_dir).to_path_buf(),
        };
        let version = version_dir
            .file_name()
            .and_then(|v| v.to_str())
            .unwrap_or("1");
        let name = model_config["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                model_dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("model")
                    .to_string()
            });
        let instance = config::instance(&model_config, &name, options.instance);
        let args = serde_json::json!({
            "model_config": text,
            "model_instance_kind": instance.kind,
            "model_instance_name": instance.name,
            "model_instance_device_id": instance.device_id,
            "model_repository": model_dir.display().to_string(),
            "model_version": version,
            "model_name": name,
        });
        let launch = Launch {
            python,
            lib,
            model_py: model_py.to_path_buf(),
            model_dir,
            model: name,
            args,
            decoupled: config::decoupled(&model_config),
            metrics: options.custom_metrics.clone(),
        };
        let caller = options.caller.clone();
        let process = Process::start(&launch, caller.as_ref())?;
        Ok(PythonModel {
            inputs: meta.inputs.iter().map(|s| s.name.clone()).collect(),
            outputs: meta.outputs.iter().map(|s| s.name.clone()).collect(),
            footprint: process.resident_bytes(),
            meta,
            launch,
            process: Mutex::new(Some(process)),
            caller,
            dtype_warned: AtomicBool::new(false),
            missing_warned: AtomicBool::new(false),
            iterative: config::iterative(&model_config),
            next_sequence: AtomicU64::new(1),
        })
    }

    /// Runs `execute` on `requests` until none is rescheduled (a model
    /// with `sequence_batching { iterative_sequence: true }`:
    /// `reschedule.rs`); one answer per request. For callers outside the
    /// runtime's queue (a warmup, a direct call), which runs rescheduled
    /// requests again itself ([`LoadedModel::iterative`]).
    fn run(&self, requests: &[RequestView<'_>]) -> Result<Vec<Answer>> {
        match self.iterative {
            true => reschedule::run(self, requests),
            false => self.run_once(requests).map(|ran| ran.answers),
        }
    }

    /// Runs `execute` once on `requests`, starting the process again first if
    /// the last one ended; one answer per request. A decoupled model's
    /// requests are opened in the process's pump first (their responses
    /// come back by key, during `execute` or after; a rescheduled request
    /// keeps its key), and its answers are empty: `execute` returned well.
    fn run_once(&self, requests: &[RequestView<'_>]) -> Result<Ran> {
        let mut slot = self.process.lock().unwrap_or_else(|p| p.into_inner());
        // A process that ended between calls (a decoupled model's thread
        // ended it after its call returned; the system killed it) is not
        // sent this call: it is started again first.
        if slot.as_mut().is_some_and(|p| !p.is_running()) {
            *slot = None;
        }
        if slot.is_none() {
            tracing::warn!(model = %self.launch.model, "starting the model's Python process again");
            *slot = Some(Process::start(&self.launch, self.caller.as_ref())?);
        }
        let process = slot.as_mut().expect("started above");
        // A decoupled model's requests are open in its pump under their keys;
        // another model's get fresh keys, to be told when their clients go.
        let (keys, mut watched) = match process.pending() {
            Some(pending) => (Some(self.open(pending, requests)?), None),
            None => {
                let first = process.next_keys(requests.len());
                (None, Some((first, watch::Watched::new(first, requests))))
            }
        };
        let watch_keys: Option<Vec<u64>> = watched
            .as_ref()
            .map(|(first, _)| (*first..).take(requests.len()).collect());
        let frame = wire::execute_frame(
            &self.launch.model,
            &self.inputs,
            &self.outputs,
            requests,
            keys.as_deref().or(watch_keys.as_deref()),
        );
        // Outer error: no frame (the process untouched); inner: the process ended.
        let watching = watched.as_mut().map(|(_, w)| w);
        let exchanged = frame
            .map(|frame| process.exchange(&frame, &self.launch, self.caller.as_ref(), watching));
        let failed = !matches!(&exchanged, Ok(Ok((reply, _))) if reply.ok);
        if let (Some(keys), Some(pending), true) = (&keys, process.pending(), failed) {
            // The runtime ends these requests with the call's error.
            keys.iter().for_each(|&k| drop(pending.close(k)));
        }
        let (reply, blobs) = match exchanged? {
            Ok(r) => r,
            Err(e) => {
                *slot = None;
                return Err(e);
            }
        };
        if keys.is_some() && reply.ok {
            let rescheduled = reply.rescheduled;
            let answers = (requests.iter())
                .map(|_| Answer::Outputs(Vec::new(), Vec::new()))
                .collect();
            let ran = Ran {
                answers,
                keys,
                rescheduled,
            };
            return Ok(reschedule::checked(self, process, ran));
        }
        drop(slot);
        if !reply.ok {
            let hint = advice::traceback_hint(&self.launch.model, reply.traceback.as_deref());
            // Triton's words ("Failed to process the request(s) for model
            // ..."), which its clients and tests look for; a backend failure.
            let error = reply.error.unwrap_or_default();
            let error = error.strip_prefix("execute: ").unwrap_or(&error);
            return Err(Error::Answered {
                kind: anemone_core::ErrorKind::Backend,
                message: format!(
                    "Failed to process the request(s) for model '{}', message: {error} \
                     (raised in model.py's execute){hint}",
                    self.launch.model,
                ),
            });
        }
        let answers = wire::answers(reply, blobs)?;
        if answers.len() != requests.len() {
            return Err(Error::Internal(format!(
                "the Python process answered {} of {} requests",
                answers.len(),
                requests.len()
            )));
        }
        let rescheduled = (answers.iter().enumerate())
            .filter(|(_, a)| matches!(a, Answer::Rescheduled))
            .map(|(i, _)| i)
            .collect();
        let ran = Ran {
            answers,
            keys: None,
            rescheduled,
        };
        Ok(reschedule::checked_answers(self, ran))
    }

    /// Opens each request of a decoupled model in its process's pump; its
    /// key, in order. A rescheduled request, still open, keeps its key, so
    /// that a response sender the model kept from an earlier `execute`
    /// still reaches it.
    fn open(&self, pending: &pump::Pending, requests: &[RequestView<'_>]) -> Result<Vec<u64>> {
        let responders: Option<Vec<&anemone_core::Responder>> =
            requests.iter().map(|r| r.responder).collect();
        let responders = responders.ok_or_else(|| self.one_answer_refused())?;
        let reopened = |r: &anemone_core::Responder| match self.iterative {
            true => pending.key_of(r),
            false => None,
        };
        Ok(responders
            .into_iter()
            .map(|r| reopened(r).unwrap_or_else(|| pending.open(r.clone())))
            .collect())
    }

    fn one_answer_refused(&self) -> Error {
        anemone_core::respond::one_answer_refused(&self.launch.model)
    }

    /// A request's outputs in the config's order, as the model gave them,
    /// or the model's error. The model may leave any out, as Triton allows:
    /// one it left out stands as [`Tensor::absent`], which the answer
    /// drops. Leaving out one the request asked for (`wanted`; `None`: all)
    /// is logged, once. With the response's parameters.
    fn outputs_of(&self, answer: Answer, wanted: Option<&[usize]>) -> Result<anemone_core::Answer> {
        let (mut given, parameters) = match answer {
            Answer::Outputs(given, parameters) => (given, parameters),
            Answer::Failed { message, code } => return Err(refusal(message, code)),
            // The runtime's queue runs it again.
            Answer::Rescheduled => return Ok(rescheduled()),
        };
        let mut out = Vec::with_capacity(self.meta.outputs.len());
        for (i, spec) in self.meta.outputs.iter().enumerate() {
            let Some(at) = given.iter().position(|(n, _)| *n == spec.name) else {
                let asked = wanted.is_none_or(|w| w.contains(&i));
                if asked && !self.missing_warned.swap(true, Ordering::Relaxed) {
                    let names: Vec<&str> = given.iter().map(|(n, _)| n.as_str()).collect();
                    tracing::warn!(
                        model = %self.launch.model,
                        "model.py gave no output '{}' (it gave {}) to a request that asks for it; the \
                         answer leaves it out, as Triton's does (return it from execute to answer it)",
                        spec.name,
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    );
                }
                out.push(Tensor::absent(spec.dtype));
                continue;
            };
            let (_, tensor) = given.swap_remove(at);
            // Answered as the model gave it, as Triton does; said once.
            if tensor.dtype() != spec.dtype && !self.dtype_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    model = %self.launch.model,
                    "model.py gives output '{}' as {} where the config.pbtxt says {}; it is answered \
                     as {}, as Triton does (convert it in model.py, e.g. array.astype(np.{}), to \
                     answer what the config says)",
                    spec.name,
                    tensor.dtype().kserve_name(),
                    spec.dtype.kserve_name(),
                    tensor.dtype().kserve_name(),
                    numpy_name(spec.dtype)
                );
            }
            out.push(tensor);
        }
        Ok(anemone_core::Answer {
            outputs: out,
            parameters,
            rescheduled: false,
        })
    }

    /// Each request's answer, or the call's error for every request.
    fn answered(
        &self,
        ran: Result<Vec<Answer>>,
        requests: &[RequestView<'_>],
    ) -> Vec<Result<anemone_core::Answer>> {
        match ran {
            // A decoupled model's outputs went through each request's responder.
            Ok(answers) if self.launch.decoupled => answers
                .into_iter()
                .map(|answer| match answer {
                    Answer::Rescheduled => Ok(rescheduled()),
                    _ => Ok(anemone_core::Answer::default()),
                })
                .collect(),
            Ok(answers) => answers
                .into_iter()
                .zip(requests)
                .map(|(a, r)| self.outputs_of(a, r.outputs))
                .collect(),
            Err(e) => {
                let mut answers: Vec<Result<anemone_core::Answer>> =
                    requests.iter().skip(1).map(|_| Err(copy_of(&e))).collect();
                answers.insert(0, Err(e));
                answers
            }
        }
    }
}

impl LoadedModel for PythonModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn backend(&self) -> &'static str {
        NAME
    }

    fn memory_footprint(&self) -> u64 {
        self.footprint
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if self.launch.decoupled {
            return Err(self.one_answer_refused());
        }
        let request = RequestView {
            inputs,
            id: None,
            parameters: &[],
            responder: None,
            absent: &[],
            sequence: None,
            outputs: None,
            timeout: None,
            gone: None,
        };
        let answer = self.run(&[request])?.into_iter().next();
        self.outputs_of(
            answer.expect("one answer per request, checked in run"),
            None,
        )
        .map(|answer| answer.outputs)
    }

    fn answers_each(&self) -> bool {
        true
    }

    fn decoupled(&self) -> bool {
        self.launch.decoupled
    }

    /// As in Triton: an input the config marks `optional: true` may be
    /// left out, and `get_input_tensor_by_name` gives `None` for it.
    fn takes_absent_inputs(&self) -> bool {
        true
    }

    /// The requests (one alone, or a dynamic batch) go to `execute` as a
    /// list, one `InferenceRequest` each with its id and parameters, as
    /// Triton gives them; each gets its own answer, outputs or error.
    /// A rescheduled request runs again at once, until answered.
    fn infer_each(&self, requests: &[RequestView<'_>]) -> Vec<Result<Vec<Tensor>>> {
        self.answered(self.run(requests), requests)
            .into_iter()
            .map(|answer| answer.map(|a| a.outputs))
            .collect()
    }

    /// [`LoadedModel::infer_each`], each answer with the parameters its
    /// `InferenceResponse` carries; a rescheduled request is answered
    /// [`anemone_core::Answer::rescheduled`], for the runtime's queue to
    /// run it again ([`LoadedModel::iterative`]).
    fn infer_each_answered(
        &self,
        requests: &[RequestView<'_>],
    ) -> Vec<Result<anemone_core::Answer>> {
        let ran = self.run_once(requests).map(Ran::marked);
        self.answered(ran, requests)
    }

    fn iterative(&self) -> bool {
        self.iterative
    }
}

/// The answer of a request the model rescheduled: it runs again.
fn rescheduled() -> anemone_core::Answer {
    anemone_core::Answer {
        rescheduled: true,
        ..anemone_core::Answer::default()
    }
}

impl Drop for PythonModel {
    fn drop(&mut self) {
        let slot = self.process.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(process) = slot.take() {
            process.finalize(&self.launch.model);
        }
    }
}
