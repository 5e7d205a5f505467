//! The [`Manager`]: loads models, admits, validates and runs requests, and
//! keeps metrics and health.

use crate::admission::{Limiter, MemoryBudget, Permit};
use crate::health::{HealthReport, ModelHealth, ModelState};
use crate::instance::ModelInstance;
use crate::metrics::{ModelMetricsSnapshot, Timings};
use crate::registry::{Registry, VersionRequest};
use crate::request::{InferRequest, InferResponse};
use crate::validation::{order_inputs, select_outputs};
use crate::worker::WorkerPool;
use anemone_core::{
    Backend, Error, ErrorKind, LoadOptions, ModelSource, Probe, Result, Support, Tensor,
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
    backends: Vec<Arc<dyn Backend>>,
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
    /// Failures of requests that never reached a model (unknown model, global overload).
    rejected: [AtomicU64; ErrorKind::ALL.len()],
}

/// Builds a [`Manager`].
pub struct ManagerBuilder {
    backends: Vec<Arc<dyn Backend>>,
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
        let workers = self.workers.unwrap_or_else(default_parallelism);
        let pool = WorkerPool::new(workers)
            .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
        Ok(Manager {
            inner: Arc::new(Inner {
                backends: self.backends,
                registry: Registry::default(),
                global: Limiter::new("global concurrency limit", self.max_concurrency),
                memory: MemoryBudget::new(self.memory_budget),
                workers: pool,
                model_max_concurrency: self.model_max_concurrency,
                threads: self.threads,
                failed: Mutex::default(),
                live: AtomicBool::new(true),
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
    /// Backends to try, in order, by name. By default, every backend of the manager.
    pub backends: Option<Vec<String>>,
    /// Requests in flight on this model. By default, the manager's per-model limit.
    pub max_concurrency: Option<usize>,
    /// Engine threads per inference. By default, the manager's setting.
    pub threads: Option<usize>,
    /// Backend-specific settings passed to [`LoadOptions::settings`].
    pub settings: Vec<(String, String)>,
}

impl ModelSpec {
    /// Version 1 of the model at `path`, named `name`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            version: 1,
            path: path.into(),
            backends: None,
            max_concurrency: None,
            threads: None,
            settings: Vec::new(),
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
    /// Per model version.
    pub models: Vec<ModelMetricsEntry>,
}

impl MetricsSnapshot {
    /// The entry of a model's latest loaded version.
    pub fn model(&self, name: &str) -> Option<&ModelMetricsEntry> {
        self.models.iter().rfind(|m| m.name == name)
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
    _permits: (Permit, Permit),
}

/// What a worker hands back.
type Done = (Result<InferResponse>, Arc<ModelInstance>);

impl Manager {
    /// Starts building a manager.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            backends: Vec::new(),
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
        let candidates = self.candidates(spec.backends.as_deref())?;
        let source = ModelSource::from_path(&spec.path);
        let options = LoadOptions {
            threads: spec.threads.or(self.inner.threads),
            settings: spec.settings.clone(),
        };
        let started = Instant::now();
        let mut skipped: Vec<(String, String)> = Vec::new();
        let mut errors: Vec<Error> = Vec::new();
        for backend in candidates {
            if let Probe::Unavailable { reason } = backend.probe() {
                skipped.push((backend.name().into(), reason));
                continue;
            }
            if let Support::No(reason) = backend.supports(&source) {
                skipped.push((backend.name().into(), reason));
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| backend.load(&source, &options))) {
                Ok(Ok(model)) => {
                    let reservation = self
                        .inner
                        .memory
                        .try_reserve(&spec.name, model.memory_footprint())?;
                    let limiter = Limiter::new(
                        format!("concurrency limit of model '{}'", spec.name),
                        spec.max_concurrency.or(self.inner.model_max_concurrency),
                    );
                    let instance = Arc::new(ModelInstance::new(
                        spec.name,
                        spec.version,
                        spec.path,
                        model,
                        limiter,
                        reservation,
                        started.elapsed(),
                        skipped,
                    ));
                    self.inner.registry.insert(Arc::clone(&instance));
                    return Ok(instance);
                }
                Ok(Err(e)) => {
                    skipped.push((backend.name().into(), e.chain_string()));
                    errors.push(e);
                }
                Err(panic) => {
                    let message = format!("panicked while loading: {}", panic_message(&*panic));
                    skipped.push((backend.name().into(), message.clone()));
                    errors.push(Error::Backend {
                        backend: backend.name().into(),
                        message,
                        retryable: false,
                        source: None,
                    });
                }
            }
        }
        match (errors.len(), skipped.len()) {
            // One backend tried and no other considered: its own error is the clearest.
            (1, 1) => Err(errors.pop().expect("one error; this is a bug")),
            _ => Err(Error::NoBackend {
                path: source.path,
                attempts: skipped,
            }),
        }
    }

    fn candidates(&self, names: Option<&[String]>) -> Result<Vec<Arc<dyn Backend>>> {
        let Some(names) = names else {
            return Ok(self.inner.backends.clone());
        };
        names
            .iter()
            .map(|n| {
                self.inner
                    .backends
                    .iter()
                    .find(|b| b.name() == n)
                    .cloned()
                    .ok_or_else(|| {
                        let known: Vec<&str> =
                            self.inner.backends.iter().map(|b| b.name()).collect();
                        Error::Config(format!(
                            "unknown backend '{n}'; this build has: {}",
                            known.join(", ")
                        ))
                    })
            })
            .collect()
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
        finish(done, &instance, start)
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
        finish(Ok::<_, ()>(run(admitted)), &instance, start)
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
        let checked = select_outputs(meta, request.outputs.as_deref())
            .and_then(|outputs| order_inputs(meta, request.inputs).map(|inputs| (inputs, outputs)));
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

    /// The backends of this manager and what their probes say.
    pub fn backends(&self) -> Vec<BackendStatus> {
        self.inner
            .backends
            .iter()
            .map(|b| BackendStatus {
                name: b.name(),
                probe: b.probe(),
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
            models: self
                .models()
                .iter()
                .map(|m| ModelMetricsEntry {
                    name: m.name().to_string(),
                    version: m.version(),
                    backend: m.backend(),
                    in_flight: m.in_flight(),
                    memory_bytes: m.memory_footprint(),
                    metrics: m.metrics().snapshot(),
                })
                .collect(),
        }
    }

    /// Liveness and readiness of the manager and each model.
    pub fn health(&self) -> HealthReport {
        let live = self.inner.live.load(Ordering::Relaxed);
        let mut models: Vec<ModelHealth> = self
            .models()
            .iter()
            .map(|m| ModelHealth {
                name: m.name().to_string(),
                version: Some(m.version()),
                state: ModelState::Ready,
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
        }
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
        _permits,
    } = admitted;
    let picked = start.elapsed();
    let engine = instance.engine();
    let result = match catch_unwind(AssertUnwindSafe(|| engine.infer(inputs))) {
        Ok(r) => r,
        Err(panic) => Err(Error::Backend {
            backend: engine.backend().into(),
            message: format!("panicked: {}", panic_message(&*panic)),
            retryable: false,
            source: None,
        }),
    };
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
