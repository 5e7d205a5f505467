//! The [`Manager`]: loads models, admits, validates and runs requests, and
//! keeps metrics and health.

use crate::admission::{Limiter, MemoryBudget, Permit};
use crate::fallback::{FallbackPolicy, RetryPolicy, Trigger};
use crate::health::{HealthReport, ModelHealth, ModelState};
use crate::instance::ModelInstance;
use crate::metrics::{ModelMetricsSnapshot, Timings};
use crate::pressure::ThermalState;
use crate::registry::{Registry, VersionRequest};
use crate::request::{InferRequest, InferResponse};
use crate::selection::{self, Attempt, BackendSet, Candidate, Fallback, Mode, Outcome, Selection};
use crate::validation::{check_batch, order_inputs, select_outputs};
use crate::worker::WorkerPool;
use anemone_core::{
    Backend, Error, ErrorKind, LoadOptions, LoadedModel, ModelSource, Probe, Result, Support,
    Tensor,
};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default global concurrency limit: requests in flight across all models.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;

/// Loads models and serves inference requests on them.
///
/// Cheap to clone: clones share the same models, limits and metrics.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    backends: BackendSet,
    /// The preference list of models that name none; `None`: every backend in order.
    preference: Option<Vec<String>>,
    strict: bool,
    retry: RetryPolicy,
    fallback: FallbackPolicy,
    /// Run-time fallbacks by `(model, from, to, reason)`.
    fallbacks: Mutex<BTreeMap<(String, String, String, &'static str), u64>>,
    registry: Registry,
    global: Arc<Limiter>,
    memory: Arc<MemoryBudget>,
    workers: WorkerPool,
    model_max_concurrency: Option<usize>,
    threads: Option<usize>,
    /// Models whose last load failed, with the reason; cleared by a successful load or unload.
    failed: Mutex<BTreeMap<String, String>>,
    /// False once [`Manager::shutdown`] was called.
    live: AtomicBool,
    /// The machine's thermal state, as last reported.
    thermal: Mutex<ThermalState>,
    /// Failures of requests that never reached a model (unknown model, global overload).
    rejected: [AtomicU64; ErrorKind::ALL.len()],
}

/// Builds a [`Manager`].
pub struct ManagerBuilder {
    backends: Vec<Arc<dyn Backend>>,
    preference: Option<Vec<String>>,
    strict: bool,
    retry: RetryPolicy,
    fallback: FallbackPolicy,
    max_concurrency: Option<usize>,
    model_max_concurrency: Option<usize>,
    memory_budget: Option<u64>,
    workers: Option<usize>,
    threads: Option<usize>,
}

impl ManagerBuilder {
    /// Adds a backend. Backends are tried in the order added, unless a model
    /// names its own preference.
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backends.push(Arc::new(backend));
        self
    }

    /// Adds several shared backends, in order.
    pub fn backends(mut self, backends: impl IntoIterator<Item = Arc<dyn Backend>>) -> Self {
        self.backends.extend(backends);
        self
    }

    /// The backend preference of models that name none, by name (aliases such
    /// as `coreml-ane` and `auto` allowed). By default, every backend in the
    /// order added.
    pub fn preference(mut self, names: Option<Vec<String>>) -> Self {
        self.preference = names;
        self
    }

    /// Strict mode for every model that does not set its own: a model runs on
    /// the first backend of its list or not at all, and never falls back.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// How retryable backend errors are retried. By default, [`RetryPolicy::default`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// When a model leaves a failing backend. By default, [`FallbackPolicy::default`].
    pub fn fallback(mut self, policy: FallbackPolicy) -> Self {
        self.fallback = policy;
        self
    }

    /// Requests in flight across all models. By default, [`DEFAULT_MAX_CONCURRENCY`].
    /// `None` removes the limit.
    pub fn max_concurrency(mut self, limit: Option<usize>) -> Self {
        self.max_concurrency = limit;
        self
    }

    /// Requests in flight per model version, unless the model sets its own.
    /// By default there is no per-model limit.
    pub fn model_max_concurrency(mut self, limit: Option<usize>) -> Self {
        self.model_max_concurrency = limit;
        self
    }

    /// Bytes that loaded models may hold together. By default there is no budget
    /// (footprints are still accounted).
    pub fn memory_budget(mut self, bytes: Option<u64>) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Worker threads that run engine calls. By default, one per CPU core.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Threads each engine may use for one inference, unless a model sets its
    /// own. By default each backend picks (tract: one per CPU core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Starts the manager and its worker threads.
    pub fn build(self) -> Result<Manager> {
        if self.backends.is_empty() {
            return Err(Error::Config("a Manager needs at least one backend".into()));
        }
        let backends = BackendSet::new(self.backends);
        if let Some(names) = &self.preference {
            // A typo in the server-wide list should stop start-up, not every model.
            let names: Vec<String> = names
                .iter()
                .filter(|n| *n != selection::AUTO)
                .cloned()
                .collect();
            backends.resolve(Some(&names))?;
        }
        let workers = self.workers.unwrap_or_else(default_parallelism);
        let pool = WorkerPool::new(workers)
            .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
        Ok(Manager {
            inner: Arc::new(Inner {
                backends,
                preference: self.preference,
                strict: self.strict,
                retry: self.retry,
                fallback: self.fallback,
                fallbacks: Mutex::default(),
                registry: Registry::default(),
                global: Limiter::new("global concurrency limit", self.max_concurrency),
                memory: MemoryBudget::new(self.memory_budget),
                workers: pool,
                model_max_concurrency: self.model_max_concurrency,
                threads: self.threads,
                failed: Mutex::default(),
                live: AtomicBool::new(true),
                thermal: Mutex::new(ThermalState::Nominal),
                rejected: Default::default(),
            }),
        })
    }
}

/// The number of CPU cores this process may use.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What to load and how.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Name requests use.
    pub name: String,
    /// Version number. By default, 1.
    pub version: u64,
    /// The model file.
    pub path: PathBuf,
    /// Backends to try, in order, by name (aliases such as `coreml-ane`
    /// allowed). `["auto"]` times a warm-up on every candidate and keeps the
    /// fastest. By default, the manager's preference.
    pub backends: Option<Vec<String>>,
    /// Strict mode: only the first candidate, no fallback. By default, the manager's setting.
    pub strict: Option<bool>,
    /// Requests in flight on this model. By default, the manager's per-model limit.
    pub max_concurrency: Option<usize>,
    /// Engine threads per inference. By default, the manager's setting.
    pub threads: Option<usize>,
    /// Backend-specific settings passed to [`LoadOptions::settings`].
    pub settings: Vec<(String, String)>,
    /// Triton's `max_batch_size`: `Some(n)` with n > 0 means the first dimension
    /// of every input (and output) is the batch dimension, and a request's batch
    /// must be at most n. `None`: the model declares no batch dimension.
    pub max_batch_size: Option<usize>,
    /// Input shapes declared by the model's configuration. They may narrow the
    /// engine's own (a fixed size where the engine has a dynamic dimension);
    /// validation then checks against the narrower shape. `None`: the engine's.
    pub declared_inputs: Option<Vec<anemone_core::TensorSpec>>,
}

impl ModelSpec {
    /// Version 1 of the model at `path`, named `name`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            version: 1,
            path: path.into(),
            backends: None,
            strict: None,
            max_concurrency: None,
            threads: None,
            settings: Vec::new(),
            max_batch_size: None,
            declared_inputs: None,
        }
    }

    /// Sets the version.
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Sets the backend preference, by name.
    pub fn backends(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.backends = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Sets this model's concurrency limit.
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = Some(limit);
        self
    }

    /// Sets the engine threads for this model.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }
}

/// A backend and what its probe said.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    /// The backend's name.
    pub name: &'static str,
    /// Its hardware class.
    pub tier: anemone_core::Tier,
    /// Whether it is usable here.
    pub probe: Probe,
}

/// One model version's metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelMetricsEntry {
    /// The model's name.
    pub name: String,
    /// The version.
    pub version: u64,
    /// The backend serving it.
    pub backend: &'static str,
    /// Requests running now.
    pub in_flight: usize,
    /// Bytes charged to the memory budget.
    pub memory_bytes: u64,
    /// How its backend was chosen.
    pub selection: Selection,
    /// Retries of retryable backend errors.
    pub retries: u64,
    /// The counters.
    #[serde(flatten)]
    pub metrics: ModelMetricsSnapshot,
}

/// Metrics of the whole manager at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Requests in flight across all models.
    pub in_flight: usize,
    /// The global concurrency limit, if any.
    pub max_concurrency: Option<usize>,
    /// Bytes charged by loaded models.
    pub memory_used: u64,
    /// The memory budget, if any.
    pub memory_budget: Option<u64>,
    /// Requests refused before reaching a model, by kind.
    pub rejected: Vec<(ErrorKind, u64)>,
    /// Every backend and its probe.
    pub backends: Vec<BackendStatus>,
    /// Run-time fallbacks: `((model, from, to, reason), count)`.
    pub fallbacks: Vec<((String, String, String, &'static str), u64)>,
    /// The machine's thermal state.
    pub thermal: ThermalState,
    /// The global concurrency limit in force (lower than `max_concurrency` under thermal pressure).
    pub effective_concurrency: Option<usize>,
    /// Per model version.
    pub models: Vec<ModelMetricsEntry>,
}

impl MetricsSnapshot {
    /// The entry of a model's latest loaded version.
    pub fn model(&self, name: &str) -> Option<&ModelMetricsEntry> {
        self.models.iter().rfind(|m| m.name == name)
    }
}

/// What a selection hands to [`Manager::install`].
pub(crate) struct Picked {
    pub(crate) model: Box<dyn LoadedModel>,
    pub(crate) selection: Selection,
    /// Candidates for a run-time fallback, in order.
    pub(crate) standby: Vec<Candidate>,
}

/// The error when no candidate loaded: the one backend's own error when only
/// one was tried, else every candidate with its reason.
fn no_backend(source: &ModelSource, attempts: Vec<Attempt>, mut errors: Vec<Error>) -> Error {
    if attempts.len() == 1 && errors.len() == 1 {
        return errors.pop().expect("one error; this is a bug");
    }
    let attempts = attempts
        .into_iter()
        .map(|a| {
            let reason = match a.outcome {
                Outcome::Skipped { reason } => reason,
                other => format!("{other:?}"),
            };
            (a.backend, reason)
        })
        .collect();
    Error::NoBackend {
        path: source.path.clone(),
        attempts,
    }
}

/// A request that passed admission and validation, ready for a worker.
struct Admitted {
    instance: Arc<ModelInstance>,
    inputs: Vec<Tensor>,
    outputs: Option<Vec<usize>>,
    id: Option<String>,
    start: Instant,
    validated: Duration,
    retry_policy: RetryPolicy,
    _permits: (Permit, Permit),
}

/// What a worker hands back.
type Done = (Result<InferResponse>, Arc<ModelInstance>);

impl Manager {
    /// Starts building a manager.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            backends: Vec::new(),
            preference: None,
            strict: false,
            retry: RetryPolicy::default(),
            fallback: FallbackPolicy::default(),
            max_concurrency: Some(DEFAULT_MAX_CONCURRENCY),
            model_max_concurrency: None,
            memory_budget: None,
            workers: None,
            threads: None,
        }
    }

    /// Loads a model on a background thread, so the caller's executor is not blocked.
    ///
    /// Loading a version that is already loaded replaces it; requests in
    /// flight on the old one finish on it.
    pub async fn load_model(&self, spec: ModelSpec) -> Result<Arc<ModelInstance>> {
        let this = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("anemone-load-{}", spec.name))
            .spawn(move || {
                let _ = tx.send(this.load_model_blocking(spec));
            })
            .map_err(|e| Error::Internal(format!("cannot start a loader thread: {e}")))?;
        rx.await
            .map_err(|_| Error::Internal("the loader thread ended without an answer".into()))?
    }

    /// Loads a model on the calling thread. See [`Manager::load_model`].
    pub fn load_model_blocking(&self, spec: ModelSpec) -> Result<Arc<ModelInstance>> {
        let name = spec.name.clone();
        let result = self.load_inner(spec);
        let mut failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(instance) => {
                failed.remove(&name);
                tracing::info!(model = %name, version = instance.version(), backend = instance.backend(), "model loaded");
            }
            Err(e) => {
                failed.insert(name.clone(), e.chain_string());
                tracing::debug!(model = %name, error = %e.chain_string(), "model failed to load");
            }
        }
        result
    }

    fn load_inner(&self, spec: ModelSpec) -> Result<Arc<ModelInstance>> {
        if spec.name.is_empty() {
            return Err(Error::Config("a model needs a non-empty name".into()));
        }
        if !spec.path.exists() {
            return Err(Error::FileNotFound { path: spec.path });
        }
        let file_size = std::fs::metadata(&spec.path).map(|m| m.len()).unwrap_or(0);
        if file_size > self.inner.memory.available() {
            // Weights alone would not fit: refuse before spending time loading.
            return Err(Error::MemoryBudget {
                model: spec.name,
                needed: file_size,
                available: self.inner.memory.available(),
                budget: self.inner.memory.budget().unwrap_or(u64::MAX),
            });
        }
        let started = Instant::now();
        let preference = spec
            .backends
            .as_deref()
            .or(self.inner.preference.as_deref());
        let auto = preference.is_some_and(|p| p.iter().any(|n| n == selection::AUTO));
        let strict = spec.strict.unwrap_or(self.inner.strict);
        if auto && strict {
            return Err(Error::Config(format!(
                "model '{}' asks for both backends = auto and strict mode; strict runs exactly the first backend \
                 of its list, auto picks the fastest: choose one",
                spec.name
            )));
        }
        let names: Option<Vec<String>> = preference.map(|p| {
            p.iter()
                .filter(|n| *n != selection::AUTO)
                .cloned()
                .collect()
        });
        let names = names.filter(|n| !n.is_empty());
        let mut candidates = self.inner.backends.resolve(names.as_deref())?;
        let source = ModelSource::from_path(&spec.path);
        if names.is_none() {
            // The default order holds every backend; those that do not take this
            // format are not candidates for it (a Core ML backend for an ONNX file).
            let takes = |c: &Candidate| {
                c.index
                    .is_none_or(|i| self.inner.backends.all()[i].supports(&source) == Support::Yes)
            };
            if candidates.iter().any(takes) {
                candidates.retain(takes);
            }
        }
        let mode = if auto {
            Mode::Auto
        } else if strict {
            Mode::Strict
        } else {
            Mode::Ordered
        };
        let picked = match mode {
            Mode::Auto => self.select_fastest(&spec, &source, candidates),
            Mode::Ordered | Mode::Strict => {
                // With no list given, CPU engines are compared rather than ranked.
                let time_cpu = mode == Mode::Ordered && names.is_none();
                self.select_first(&spec, &source, candidates, mode, time_cpu)
            }
        }?;
        self.install(spec, picked, started.elapsed(), None)
    }

    /// Loads one candidate: skip checks, then the backend's `load` with panics caught.
    fn try_candidate(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        candidate: &Candidate,
    ) -> std::result::Result<Box<dyn LoadedModel>, (String, Option<Error>)> {
        if let Some(reason) = &candidate.unbuilt {
            return Err((reason.clone(), None));
        }
        let index = candidate
            .index
            .expect("a built candidate has an index; this is a bug");
        if let Some(reason) = selection::unavailable(self.inner.backends.probe(index)) {
            return Err((reason.to_string(), None));
        }
        let backend = &self.inner.backends.all()[index];
        if let Support::No(reason) = backend.supports(source) {
            return Err((reason, None));
        }
        let mut settings = spec.settings.clone();
        settings.extend(candidate.settings.iter().cloned());
        let options = LoadOptions {
            threads: spec.threads.or(self.inner.threads),
            settings,
        };
        match catch_unwind(AssertUnwindSafe(|| backend.load(source, &options))) {
            Ok(Ok(model)) => Ok(model),
            Ok(Err(e)) => Err((e.chain_string(), Some(e))),
            Err(panic) => {
                let message = format!("panicked while loading: {}", panic_message(&*panic));
                let e = Error::Backend {
                    backend: backend.name().into(),
                    message: message.clone(),
                    retryable: false,
                    source: None,
                };
                Err((message, Some(e)))
            }
        }
    }

    /// Whether a candidate is a built-in CPU engine.
    fn is_cpu(&self, candidate: &Candidate) -> bool {
        candidate.index.is_some_and(|i| {
            matches!(
                self.inner.backends.all()[i].tier(),
                anemone_core::Tier::OptimisedCpu | anemone_core::Tier::PortableCpu
            )
        })
    }

    /// Ordered and strict modes: the first candidate that loads serves; later
    /// ones stand by (ordered) or are left out (strict).
    fn select_first(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        candidates: Vec<Candidate>,
        mode: Mode,
        time_cpu: bool,
    ) -> Result<Picked> {
        let mut attempts = Vec::new();
        let mut errors = Vec::new();
        let mut candidates = candidates.into_iter().peekable();
        while let Some(candidate) = candidates.next() {
            if time_cpu
                && self.is_cpu(&candidate)
                && candidates.peek().is_some_and(|c| self.is_cpu(c))
            {
                // The default order reached the CPU engines and there are
                // several: keep the faster one for this model (a warm-up each).
                let mut cpu = vec![candidate];
                while let Some(next) = candidates.next_if(|c| self.is_cpu(c)) {
                    cpu.push(next);
                }
                let rest: Vec<Candidate> = candidates.collect();
                return match self.select_fastest(spec, source, cpu) {
                    Ok(mut picked) => {
                        attempts.append(&mut picked.selection.attempts);
                        attempts.extend(rest.iter().map(|c| Attempt {
                            backend: c.label.clone(),
                            outcome: Outcome::Standby,
                            warmup_us: None,
                        }));
                        picked.standby.extend(rest);
                        picked.selection = Selection {
                            mode,
                            attempts,
                            fallback_from: None,
                        };
                        Ok(picked)
                    }
                    Err(Error::NoBackend {
                        attempts: tried, ..
                    }) => {
                        let mut all: Vec<(String, String)> = attempts
                            .into_iter()
                            .filter_map(|a| match a.outcome {
                                Outcome::Skipped { reason } => Some((a.backend, reason)),
                                _ => None,
                            })
                            .collect();
                        all.extend(tried);
                        Err(Error::NoBackend {
                            path: source.path.clone(),
                            attempts: all,
                        })
                    }
                    Err(e) if attempts.is_empty() => Err(e),
                    Err(e) => {
                        attempts.push(Attempt {
                            backend: "cpu engines".into(),
                            outcome: Outcome::Skipped {
                                reason: e.chain_string(),
                            },
                            warmup_us: None,
                        });
                        errors.push(e);
                        Err(no_backend(source, attempts, errors))
                    }
                };
            }
            match self.try_candidate(spec, source, &candidate) {
                Ok(model) => {
                    attempts.push(Attempt {
                        backend: candidate.label,
                        outcome: Outcome::Chosen,
                        warmup_us: None,
                    });
                    let standby: Vec<Candidate> = if mode == Mode::Strict {
                        Vec::new()
                    } else {
                        candidates.collect()
                    };
                    attempts.extend(standby.iter().map(|c| Attempt {
                        backend: c.label.clone(),
                        outcome: Outcome::Standby,
                        warmup_us: None,
                    }));
                    return Ok(Picked {
                        model,
                        selection: Selection {
                            mode,
                            attempts,
                            fallback_from: None,
                        },
                        standby,
                    });
                }
                Err((reason, error)) => {
                    if mode == Mode::Strict {
                        return Err(error.unwrap_or_else(|| Error::Unavailable {
                            what: format!("backend {} (strict mode)", candidate.label),
                            reason,
                        }));
                    }
                    attempts.push(Attempt {
                        backend: candidate.label,
                        outcome: Outcome::Skipped { reason },
                        warmup_us: None,
                    });
                    errors.extend(error);
                }
            }
        }
        Err(no_backend(source, attempts, errors))
    }

    /// Auto mode: load every candidate, time a warm-up on each, keep the
    /// fastest; the others stand by, fastest first.
    fn select_fastest(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        candidates: Vec<Candidate>,
    ) -> Result<Picked> {
        let mut skipped = Vec::new();
        let mut errors = Vec::new();
        let mut timed: Vec<(Duration, Candidate, Box<dyn LoadedModel>)> = Vec::new();
        let mut untimed: Vec<(String, Candidate, Box<dyn LoadedModel>)> = Vec::new();
        for candidate in candidates {
            match self.try_candidate(spec, source, &candidate) {
                Ok(model) => {
                    match catch_unwind(AssertUnwindSafe(|| crate::tuning::time_warmup(&*model))) {
                        Ok(Ok(median)) => {
                            tracing::info!(model = %spec.name, backend = %candidate.label, median_us = median.as_micros() as u64, "auto: warm-up timed");
                            timed.push((median, candidate, model));
                        }
                        Ok(Err(e)) => untimed.push((e.chain_string(), candidate, model)),
                        Err(panic) => untimed.push((
                            format!("panicked: {}", panic_message(&*panic)),
                            candidate,
                            model,
                        )),
                    }
                }
                Err((reason, error)) => {
                    skipped.push(Attempt {
                        backend: candidate.label,
                        outcome: Outcome::Skipped { reason },
                        warmup_us: None,
                    });
                    errors.extend(error);
                }
            }
        }
        timed.sort_by_key(|(median, ..)| *median);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let mut attempts = Vec::new();
        let mut standby = Vec::new();
        let mut chosen: Option<Box<dyn LoadedModel>> = None;
        for (median, candidate, model) in timed {
            let outcome = if chosen.is_none() {
                chosen = Some(model);
                Outcome::Chosen
            } else {
                standby.push(candidate.clone());
                Outcome::Slower
            };
            attempts.push(Attempt {
                backend: candidate.label,
                outcome,
                warmup_us: Some(us(median)),
            });
        }
        // A model whose synthetic warm-up fails everywhere (inputs that must hold
        // real values) still serves on the first candidate that loaded.
        for (reason, candidate, model) in untimed {
            if chosen.is_none() {
                chosen = Some(model);
                attempts.push(Attempt {
                    backend: candidate.label,
                    outcome: Outcome::Chosen,
                    warmup_us: None,
                });
                continue;
            }
            attempts.push(Attempt {
                backend: candidate.label,
                outcome: Outcome::Skipped {
                    reason: format!("loaded, but the warm-up failed: {reason}"),
                },
                warmup_us: None,
            });
        }
        attempts.extend(skipped);
        match chosen {
            Some(model) => Ok(Picked {
                model,
                selection: Selection {
                    mode: Mode::Auto,
                    attempts,
                    fallback_from: None,
                },
                standby,
            }),
            None => Err(no_backend(source, attempts, errors)),
        }
    }

    /// Charges memory, builds the instance and publishes it.
    fn install(
        &self,
        spec: ModelSpec,
        picked: Picked,
        load_time: Duration,
        replacing: Option<&Arc<ModelInstance>>,
    ) -> Result<Arc<ModelInstance>> {
        let reservation = self
            .inner
            .memory
            .try_reserve(&spec.name, picked.model.memory_footprint())?;
        let limiter = match replacing {
            // A fallback keeps the model's limiter, so its limit holds across the move.
            Some(old) => Arc::clone(&old.limiter),
            None => Limiter::new(
                format!("concurrency limit of model '{}'", spec.name),
                spec.max_concurrency.or(self.inner.model_max_concurrency),
            ),
        };
        let instance = Arc::new(ModelInstance::new(
            spec,
            picked,
            limiter,
            reservation,
            load_time,
        ));
        match replacing {
            None => {
                self.inner.registry.insert(Arc::clone(&instance));
            }
            Some(old) => {
                if !self.inner.registry.replace(old, Arc::clone(&instance)) {
                    return Err(Error::Unavailable {
                        what: format!("model '{}'", instance.name()),
                        reason: "it was unloaded or reloaded while falling back".into(),
                    });
                }
            }
        }
        Ok(instance)
    }

    /// Called on every failed request that reached a model: counts backend
    /// errors and starts a fallback when the policy says so.
    fn observe_failure(&self, instance: &Arc<ModelInstance>, e: &Error) {
        let successes = instance.metrics.success_count();
        let Some(trigger) = instance.window.record(e, successes, &self.inner.fallback) else {
            return;
        };
        if instance.selection().mode == Mode::Strict || instance.standby.is_empty() {
            return;
        }
        if instance.switching.swap(true, Ordering::AcqRel) {
            return; // a fallback is already under way
        }
        let (this, old, detail) = (self.clone(), Arc::clone(instance), e.to_string());
        let spawned = std::thread::Builder::new()
            .name(format!("anemone-fallback-{}", instance.name()))
            .spawn(move || this.fall_back(&old, trigger, detail));
        if let Err(err) = spawned {
            tracing::error!(model = %instance.name(), error = %err, "cannot start a fallback thread");
            instance.switching.store(false, Ordering::Release);
        }
    }

    /// Loads the model on its next standby candidate while the old instance
    /// keeps serving, then swaps it in.
    fn fall_back(&self, old: &Arc<ModelInstance>, trigger: Trigger, detail: String) {
        let from = old
            .selection()
            .chosen()
            .unwrap_or(old.backend())
            .to_string();
        tracing::warn!(model = %old.name(), version = old.version(), %from, reason = trigger.as_str(), %detail, "backend failing; falling back");
        let started = Instant::now();
        let spec = old.spec.clone();
        let source = ModelSource::from_path(&spec.path);
        let mut attempts = vec![Attempt {
            backend: from.clone(),
            outcome: Outcome::Skipped {
                reason: format!("left at run time ({}): {detail}", trigger.as_str()),
            },
            warmup_us: None,
        }];
        let mut candidates = old.standby.clone().into_iter();
        while let Some(candidate) = candidates.next() {
            match self.try_candidate(&spec, &source, &candidate) {
                Ok(model) => {
                    let to = candidate.label.clone();
                    attempts.push(Attempt {
                        backend: candidate.label,
                        outcome: Outcome::Chosen,
                        warmup_us: None,
                    });
                    let standby: Vec<Candidate> = candidates.collect();
                    attempts.extend(standby.iter().map(|c| Attempt {
                        backend: c.label.clone(),
                        outcome: Outcome::Standby,
                        warmup_us: None,
                    }));
                    let fallback = Fallback {
                        from: from.clone(),
                        reason: trigger.as_str().into(),
                        detail: detail.clone(),
                    };
                    let selection = Selection {
                        mode: old.selection().mode,
                        attempts,
                        fallback_from: Some(fallback),
                    };
                    let picked = Picked {
                        model,
                        selection,
                        standby,
                    };
                    match self.install(spec, picked, started.elapsed(), Some(old)) {
                        Ok(_) => {
                            self.count_fallback(old.name(), &from, &to, trigger);
                            tracing::warn!(model = %old.name(), version = old.version(), %from, %to, reason = trigger.as_str(), "fell back");
                        }
                        Err(e) => {
                            tracing::error!(model = %old.name(), %to, error = %e.chain_string(), "fallback not installed")
                        }
                    }
                    return;
                }
                Err((reason, _)) => attempts.push(Attempt {
                    backend: candidate.label,
                    outcome: Outcome::Skipped { reason },
                    warmup_us: None,
                }),
            }
        }
        self.count_fallback(old.name(), &from, "none", trigger);
        tracing::error!(model = %old.name(), %from, "no other backend could load the model; it stays where it is");
    }

    fn count_fallback(&self, model: &str, from: &str, to: &str, trigger: Trigger) {
        let mut map = self
            .inner
            .fallbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry((
            model.to_string(),
            from.to_string(),
            to.to_string(),
            trigger.as_str(),
        ))
        .or_default() += 1;
    }

    /// Run-time fallbacks so far: `((model, from, to, reason), count)`; `to` is
    /// `none` when no other backend could take the model.
    pub fn fallbacks(&self) -> Vec<((String, String, String, &'static str), u64)> {
        let map = self
            .inner
            .fallbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Unloads one version of a model, or all of its versions when `version` is
    /// `None`. Requests in flight finish first; the memory is given back when
    /// the last one ends. Returns the versions unloaded.
    pub fn unload_model(&self, name: &str, version: Option<u64>) -> Result<Vec<u64>> {
        let removed = self.inner.registry.remove(name, version);
        let had_failure = self
            .inner
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some();
        if removed.is_empty() && !had_failure {
            return Err(self.not_found(name, version));
        }
        tracing::info!(model = %name, ?version, "model unloaded");
        Ok(removed.iter().map(|m| m.version()).collect())
    }

    /// Runs one inference. The engine runs on a worker thread; this future
    /// only waits. Works on any executor; a request `timeout` needs a Tokio runtime.
    ///
    /// Dropping the future before a worker picks the request up cancels it;
    /// once running, it completes and its permits are released then.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse> {
        let timeout = request.timeout;
        let start = Instant::now();
        let admitted = self.admit(request, start)?;
        let instance = Arc::clone(&admitted.instance);
        let (tx, rx) = tokio::sync::oneshot::channel::<Done>();
        self.inner.workers.execute(move || {
            if tx.is_closed() {
                return; // the caller is gone: don't run it.
            }
            let _ = tx.send(run(admitted));
        });
        let done = match timeout {
            None => rx.await,
            Some(limit) => {
                match tokio::time::timeout(limit.saturating_sub(start.elapsed()), rx).await {
                    Ok(done) => done,
                    Err(_) => return Err(record_failure(&instance, Error::Timeout(limit), start)),
                }
            }
        };
        let result = finish(done, &instance, start);
        if let Err(e) = &result {
            self.observe_failure(&instance, e);
        }
        result
    }

    /// Runs one inference on the calling thread, which must not be an async
    /// executor thread (use [`Manager::infer`] there). Skipping the hop to a
    /// worker saves two thread wake-ups, tens of microseconds on a VM.
    ///
    /// Admission, validation, panic isolation and metrics are the same as for
    /// `infer`. The engine run cannot be interrupted, so a request `timeout`
    /// only refuses a request whose deadline passed before its run began.
    pub fn infer_blocking(&self, request: InferRequest) -> Result<InferResponse> {
        let timeout = request.timeout;
        let start = Instant::now();
        let admitted = self.admit(request, start)?;
        let instance = Arc::clone(&admitted.instance);
        if let Some(limit) = timeout.filter(|limit| start.elapsed() > *limit) {
            return Err(record_failure(&instance, Error::Timeout(limit), start));
        }
        let result = finish(Ok::<_, ()>(run(admitted)), &instance, start);
        if let Err(e) = &result {
            self.observe_failure(&instance, e);
        }
        result
    }

    /// Admission, lookup and validation: everything before the engine.
    fn admit(&self, request: InferRequest, start: Instant) -> Result<Admitted> {
        if !self.inner.live.load(Ordering::Relaxed) {
            return Err(self.reject(Error::Unavailable {
                what: "the manager".into(),
                reason: "it is shutting down".into(),
            }));
        }
        let global = self
            .inner
            .global
            .try_acquire()
            .map_err(|e| self.reject(e))?;
        let Some(instance) = self
            .inner
            .registry
            .get(&request.model, VersionRequest::from(request.version))
        else {
            return Err(self.reject(self.not_found(&request.model, request.version)));
        };
        let local = match instance.limiter.try_acquire() {
            Ok(p) => p,
            Err(e) => return Err(record_failure(&instance, e, start)),
        };
        let meta = instance.metadata();
        let checked = select_outputs(meta, request.outputs.as_deref()).and_then(|outputs| {
            order_inputs(meta, request.inputs)
                .and_then(|inputs| check_batch(instance.spec.max_batch_size, meta, inputs))
                .map(|inputs| (inputs, outputs))
        });
        let (inputs, outputs) = match checked {
            Ok(v) => v,
            Err(e) => return Err(record_failure(&instance, e.into(), start)),
        };
        Ok(Admitted {
            instance,
            inputs,
            outputs,
            id: request.id,
            start,
            validated: start.elapsed(),
            retry_policy: self.inner.retry,
            _permits: (global, local),
        })
    }

    fn reject(&self, e: Error) -> Error {
        self.inner.rejected[e.kind().index()].fetch_add(1, Ordering::Relaxed);
        e
    }

    fn not_found(&self, name: &str, version: Option<u64>) -> Error {
        let versions = self.inner.registry.versions(name);
        let loaded = if versions.is_empty() {
            self.inner.registry.names()
        } else {
            versions
                .iter()
                .map(|v| format!("{name} version {v}"))
                .collect()
        };
        Error::ModelNotFound {
            name: name.to_string(),
            version,
            loaded,
        }
    }

    /// A loaded model version.
    pub fn model(&self, name: &str, version: Option<u64>) -> Result<Arc<ModelInstance>> {
        self.inner
            .registry
            .get(name, version.into())
            .ok_or_else(|| self.not_found(name, version))
    }

    /// Every loaded model version, sorted by name then version.
    pub fn models(&self) -> Vec<Arc<ModelInstance>> {
        self.inner.registry.all()
    }

    /// The backends of this manager and what their probes say (each probe
    /// runs once, the first time it is needed).
    pub fn backends(&self) -> Vec<BackendStatus> {
        let set = &self.inner.backends;
        set.all()
            .iter()
            .enumerate()
            .map(|(i, b)| BackendStatus {
                name: b.name(),
                tier: b.tier(),
                probe: set.probe(i).clone(),
            })
            .collect()
    }

    /// A snapshot of every counter.
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            in_flight: self.inner.global.in_use(),
            max_concurrency: self.inner.global.capacity(),
            memory_used: self.inner.memory.used(),
            memory_budget: self.inner.memory.budget(),
            rejected: ErrorKind::ALL
                .iter()
                .map(|k| (*k, self.inner.rejected[k.index()].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            backends: self.backends(),
            fallbacks: self.fallbacks(),
            thermal: self.thermal_state(),
            effective_concurrency: self.inner.global.effective_capacity(),
            models: self
                .models()
                .iter()
                .map(|m| ModelMetricsEntry {
                    name: m.name().to_string(),
                    version: m.version(),
                    backend: m.backend(),
                    in_flight: m.in_flight(),
                    memory_bytes: m.memory_footprint(),
                    selection: m.selection().clone(),
                    retries: m.retries(),
                    metrics: m.metrics().snapshot(),
                })
                .collect(),
        }
    }

    /// Liveness and readiness of the manager and each model.
    pub fn health(&self) -> HealthReport {
        let live = self.inner.live.load(Ordering::Relaxed);
        let thermal = self.thermal_state();
        let mut models: Vec<ModelHealth> = self
            .models()
            .iter()
            .map(|m| ModelHealth {
                name: m.name().to_string(),
                version: Some(m.version()),
                state: if thermal.is_degraded() {
                    let (n, d) = thermal.concurrency_share();
                    ModelState::Degraded {
                        reason: format!(
                            "thermal state {}: concurrency lowered to {n}/{d} of the limit",
                            thermal.as_str()
                        ),
                    }
                } else {
                    ModelState::Ready
                },
                backend: Some(m.backend().to_string()),
                in_flight: m.in_flight(),
            })
            .collect();
        let failed = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner());
        models.extend(failed.iter().map(|(name, reason)| ModelHealth {
            name: name.clone(),
            version: None,
            state: ModelState::Unavailable {
                reason: reason.clone(),
            },
            backend: None,
            in_flight: 0,
        }));
        models.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        let ready = live && models.iter().all(ModelHealth::ready);
        HealthReport {
            live,
            ready,
            models,
            thermal,
        }
    }

    /// Reports the machine's thermal state: `Serious` halves the global
    /// concurrency limit and `Critical` quarters it, and health shows every
    /// model as degraded; `Nominal` or `Fair` restore the limit.
    pub fn set_thermal_state(&self, state: ThermalState) {
        let mut current = self.inner.thermal.lock().unwrap_or_else(|e| e.into_inner());
        if *current != state {
            tracing::warn!(
                from = current.as_str(),
                to = state.as_str(),
                "thermal state changed"
            );
            *current = state;
            let (n, d) = state.concurrency_share();
            self.inner.global.throttle(n, d);
        }
    }

    /// The thermal state last reported.
    pub fn thermal_state(&self) -> ThermalState {
        *self.inner.thermal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops admitting requests: later calls fail with `Unavailable` and
    /// health reports not live. Requests in flight finish.
    pub fn shutdown(&self) {
        self.inner.live.store(false, Ordering::Relaxed);
    }

    /// Worker threads running engine calls.
    pub fn worker_count(&self) -> usize {
        self.inner.workers.size()
    }
}

/// Runs an admitted request on the engine; called on a worker thread.
fn run(admitted: Admitted) -> Done {
    let Admitted {
        instance,
        inputs,
        outputs,
        id,
        start,
        validated,
        retry_policy,
        _permits,
    } = admitted;
    let picked = start.elapsed();
    let engine = instance.engine();
    let attempt = || match catch_unwind(AssertUnwindSafe(|| engine.infer(&inputs))) {
        Ok(r) => r,
        Err(panic) => Err(Error::Backend {
            backend: engine.backend().into(),
            message: format!("panicked: {}", panic_message(&*panic)),
            retryable: false,
            source: None,
        }),
    };
    let mut result = attempt();
    let mut retry = 1;
    while let Err(e) = &result {
        let Some(wait) = retry_policy
            .wait_before(retry)
            .filter(|_| e.kind() == ErrorKind::Backend && e.retryable())
        else {
            break;
        };
        tracing::debug!(model = %instance.name(), retry, error = %e, "retrying a retryable backend error");
        instance.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(wait);
        result = attempt();
        retry += 1;
    }
    let ran = start.elapsed();
    let response = result.and_then(|mut all| {
        let names = &instance.metadata().outputs;
        if all.len() != names.len() {
            return Err(Error::Internal(format!(
                "backend {} returned {} outputs for a model declaring {}",
                engine.backend(),
                all.len(),
                names.len()
            )));
        }
        let outputs = match outputs {
            None => names.iter().map(|s| s.name.clone()).zip(all).collect(),
            Some(indices) => indices
                .iter()
                .map(|&i| {
                    (
                        names[i].name.clone(),
                        std::mem::replace(&mut all[i], Tensor::scalar(0u8)),
                    )
                })
                .collect(),
        };
        let total = start.elapsed();
        Ok(InferResponse {
            model: instance.name().to_string(),
            version: instance.version(),
            backend: engine.backend(),
            id,
            outputs,
            timings: Timings {
                queue: picked - validated,
                compute_input: validated,
                compute_infer: ran - picked,
                compute_output: total - ran,
                total,
            },
        })
    });
    drop(_permits);
    (response, instance)
}

/// Records the outcome of a request that reached a worker.
fn finish<E>(
    done: std::result::Result<Done, E>,
    instance: &ModelInstance,
    start: Instant,
) -> Result<InferResponse> {
    match done {
        Ok((Ok(response), _)) => {
            let mut timings = response.timings;
            let end = Instant::now();
            timings.total = end - start;
            instance.metrics.record_unbatched_execution(&timings);
            instance.metrics.record_success_at(&timings, end);
            Ok(InferResponse {
                timings,
                ..response
            })
        }
        Ok((Err(e), _)) => Err(record_failure(instance, e, start)),
        Err(_) => Err(record_failure(
            instance,
            Error::Internal("a worker dropped a request".into()),
            start,
        )),
    }
}

fn record_failure(instance: &ModelInstance, e: Error, start: Instant) -> Error {
    instance.metrics.record_failure(e.kind(), start.elapsed());
    e
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}
