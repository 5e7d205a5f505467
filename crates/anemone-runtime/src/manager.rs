//! The [`Manager`]: the facade of the runtime. It holds the parts (loader,
//! failover, scheduler, registry, limits) and delegates to them: loading is in
//! `loader.rs`, the request path in `pipeline.rs`, run-time fallback in
//! `failover.rs`, snapshots in `observe.rs`.

use crate::admission::{Limiter, MemoryBudget};
use crate::cache::ResponseCache;
use crate::eviction::{Eviction, EvictionPolicy};
use crate::failover::Failover;
use crate::fallback::{FallbackPolicy, RetryPolicy};
use crate::instance::ModelInstance;
use crate::loader::Loader;
use crate::monitor::{HealthPolicy, Monitor, RecoveryPolicy, RetimePolicy};
use crate::pressure::ThermalState;
use crate::registry::Registry;
use crate::scheduler::{Direct, Scheduler};
use crate::selection::{self, BackendSet};
use anemone_core::{Backend, Error, ErrorKind, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::observe::{BackendStatus, MetricsSnapshot, ModelMetricsEntry};
pub use crate::spec::ModelSpec;

/// Default global concurrency limit: requests in flight across all models.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;

/// The default of [`ManagerBuilder::stream_buffer_bytes`]: 16 MiB.
pub const DEFAULT_STREAM_BUFFER_BYTES: u64 = 16 << 20;

/// Loads models and serves inference requests on them.
///
/// Cheap to clone: clones share the same models, limits and metrics.
#[derive(Clone)]
pub struct Manager {
    pub(crate) inner: Arc<Inner>,
}

/// The parts of a manager; each file of the crate owns one.
pub(crate) struct Inner {
    /// Backends, model defaults and failed loads (`loader.rs`).
    pub(crate) loader: Loader,
    /// Run-time fallback (`failover.rs`).
    pub(crate) failover: Failover,
    /// How retryable backend errors are retried.
    pub(crate) retry: RetryPolicy,
    /// The loaded models; read lock-free by every request.
    pub(crate) registry: Registry,
    /// The global concurrency limit.
    pub(crate) global: Arc<Limiter>,
    /// What loaded models may hold together.
    pub(crate) memory: Arc<MemoryBudget>,
    /// LRU eviction and the evicted models that load again on demand (`eviction.rs`, `on_demand.rs`).
    pub(crate) eviction: Eviction,
    /// Hands admitted requests to engines (`scheduler/`).
    pub(crate) scheduler: Direct,
    /// False once [`Manager::shutdown`] was called.
    pub(crate) live: AtomicBool,
    /// The machine's thermal state, as last reported.
    pub(crate) thermal: Mutex<ThermalState>,
    /// Failures of requests that never reached a model (unknown model, global overload).
    pub(crate) rejected: [AtomicU64; ErrorKind::ALL.len()],
    /// Answers of models that enable the response cache (`cache.rs`).
    pub(crate) cache: Option<ResponseCache>,
    /// The loaded ensembles (`ensemble/`).
    pub(crate) ensembles: crate::ensemble::Ensembles,
    /// Run-time feature gates (`gates.rs`).
    pub(crate) gates: Arc<crate::gates::FeatureGates>,
    /// The health monitor: states, re-probes, re-timing (`monitor/`).
    pub(crate) monitor: Monitor,
    /// The metrics the models' own code reports (`observe.rs`).
    pub(crate) custom_metrics: anemone_core::custom_metrics::CustomMetrics,
    /// Bytes of a decoupled request's responses that may wait for their
    /// reader (`decoupled.rs`).
    pub(crate) stream_buffer_bytes: u64,
    /// Triton's rate limiter, when the manager has one.
    pub(crate) rate_limiter: Option<Arc<crate::rate_limit::RateLimiter>>,
    /// Loads and unloads for models' code ([`Manager::set_repository_control`]).
    pub(crate) repository_control:
        std::sync::RwLock<Option<Arc<dyn crate::caller::RepositoryControl>>>,
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
    stream_buffer_bytes: u64,
    memory_budget: Option<u64>,
    eviction: EvictionPolicy,
    workers: Option<usize>,
    threads: Option<usize>,
    cache_bytes: Option<u64>,
    health: HealthPolicy,
    recovery: RecoveryPolicy,
    retime: RetimePolicy,
    comparer: Option<Arc<dyn crate::compare::EngineComparer>>,
    summaries: Option<Arc<[f64]>>,
    rate_limiter: Option<Arc<crate::rate_limit::RateLimiter>>,
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

    /// Bytes of responses one request to a decoupled model may have waiting
    /// for its caller to read them; past it, the request ends with an
    /// overload error and its model is told its client has gone. By
    /// default, [`DEFAULT_STREAM_BUFFER_BYTES`].
    pub fn stream_buffer_bytes(mut self, bytes: u64) -> Self {
        self.stream_buffer_bytes = bytes.max(1);
        self
    }

    /// Triton's rate limiter (`--rate-limit execution_count`): instances
    /// whose group has a [`crate::RateLimit`] run only while they hold its
    /// resources, with `available` the counts there are (empty: as many as
    /// the largest user of each needs). `None` (the default): no limiter,
    /// and groups' rate limits are ignored. See [`crate::rate_limit`].
    pub fn rate_limit(mut self, available: Option<Vec<crate::rate_limit::Available>>) -> Self {
        self.rate_limiter = available.map(crate::rate_limit::RateLimiter::new);
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

    /// What happens when a load would exceed the memory budget. By default,
    /// [`EvictionPolicy::Off`]: the load is refused. With [`EvictionPolicy::Lru`],
    /// idle models that are not pinned ([`ModelSpec::pinned`]) are unloaded,
    /// least recently used first, to make room, and a request for an evicted
    /// model loads it again (every request for it waits for one load).
    ///
    /// ```
    /// use anemone_runtime::{EvictionPolicy, InferRequest, Manager, ModelSpec};
    /// use anemone_core::Tensor;
    /// # let convnet = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
    /// #     .join("../../fixtures/generated/small_convnet/model.onnx");
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // What one copy of the model is charged.
    /// let probe = Manager::builder().backend(anemone_backends::TractCpu::default()).build()?;
    /// let one = probe.load_model(ModelSpec::new("probe", &convnet)).await?.memory_footprint();
    ///
    /// let manager = Manager::builder()
    ///     .backend(anemone_backends::TractCpu::default())
    ///     .memory_budget(Some(one * 3 / 2)) // room for one copy, not two
    ///     .eviction(EvictionPolicy::Lru)
    ///     .build()?;
    /// manager.load_model(ModelSpec::new("first", &convnet)).await?;
    /// manager.load_model(ModelSpec::new("second", &convnet)).await?;
    /// assert_eq!(manager.evicted()[0].name, "first");
    ///
    /// // A request for the evicted model loads it again (evicting "second") and is answered.
    /// let image = Tensor::from_vec(vec![1, 3, 32, 32], vec![0.5f32; 3 * 32 * 32]).unwrap();
    /// let response = manager.infer(InferRequest::new("first").input("image", image)).await?;
    /// assert_eq!(response.output("probs").unwrap().shape(), &[1, 10]);
    /// assert_eq!(manager.evicted()[0].name, "second");
    /// # Ok::<(), anemone_core::Error>(()) }).unwrap();
    /// ```
    pub fn eviction(mut self, policy: EvictionPolicy) -> Self {
        self.eviction = policy;
        self
    }

    /// Worker threads that run engine calls. By default, one per CPU core.
    /// A model with a queue (batching or queue settings) runs its calls on
    /// one thread per engine instance of its own instead.
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

    /// A response cache of at most `bytes` for the models whose spec enables
    /// it ([`crate::ModelSpec::response_cache`]); Triton's
    /// `--cache-config local,size=BYTES`. By default, none: no model caches.
    pub fn response_cache(mut self, bytes: Option<u64>) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Keeps Triton's latency summaries: each model's request, queue and
    /// compute durations of the last minute, reported as these quantiles
    /// (`metrics::summary::TRITON_QUANTILES` are Triton's), in
    /// [`crate::ModelMetricsSnapshot::summaries`]. By default, none kept.
    pub fn latency_summaries(mut self, quantiles: Option<Vec<f64>>) -> Self {
        self.summaries = quantiles.map(Arc::from);
        self
    }

    /// When the health monitor reports a model degraded, and whether it
    /// judges at all. By default, [`HealthPolicy::default`] (on).
    pub fn health(mut self, policy: HealthPolicy) -> Self {
        self.health = policy;
        self
    }

    /// How a model that fell back returns to the backend it left. By default,
    /// [`RecoveryPolicy::default`] (on, first re-probe after 30 s).
    pub fn recovery(mut self, policy: RecoveryPolicy) -> Self {
        self.recovery = policy;
        self
    }

    /// Re-timing the CPU engines on a model's first real requests. By
    /// default, [`RetimePolicy::default`] (on, after 16 requests, 1.3x margin).
    pub fn retime(mut self, policy: RetimePolicy) -> Self {
        self.retime = policy;
        self
    }

    /// Where the CPU engines of the default order are compared (at load and
    /// when re-timing): `Some` runs each comparison through the comparer (for
    /// example [`crate::compare::ProcessComparer`], a child process) and loads
    /// only the winner in this process, so the engine that loses leaves no
    /// memory here; a comparer that fails makes the manager compare here, with
    /// a warning. By default, `None`: both engines load and are timed in this
    /// process and the slower is dropped.
    pub fn engine_comparer(
        mut self,
        comparer: Option<Arc<dyn crate::compare::EngineComparer>>,
    ) -> Self {
        self.comparer = comparer;
        self
    }

    /// Starts the manager, its worker threads and the health monitor's thread.
    pub fn build(self) -> Result<Manager> {
        if self.backends.is_empty() {
            return Err(Error::Config("a Manager needs at least one backend".into()));
        }
        let backends = BackendSet::new(self.backends);
        if let Some(names) = &self.preference {
            // A typo in the server-wide list should stop start-up, not every model;
            // so should a list every model would refuse, or one naming a backend twice.
            if self.strict && names.iter().any(|n| n == selection::AUTO) {
                return Err(Error::Config(
                    "--backends auto and --strict together: strict runs exactly the first backend \
                     of the list, auto picks the fastest; choose one"
                        .into(),
                ));
            }
            if let Some(twice) =
                (names.iter().enumerate()).find_map(|(i, n)| names[..i].contains(n).then_some(n))
            {
                return Err(Error::Config(format!(
                    "backend '{twice}' is named twice in the backend list; name each once, in order of preference"
                )));
            }
            let names: Vec<String> = names
                .iter()
                .filter(|n| *n != selection::AUTO)
                .cloned()
                .collect();
            backends.resolve(Some(&names))?;
        }
        let workers = self.workers.unwrap_or_else(default_parallelism);
        let scheduler = Direct::new(workers)
            .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
        let manager = Manager {
            inner: Arc::new(Inner {
                loader: Loader {
                    backends,
                    preference: self.preference,
                    strict: self.strict,
                    threads: self.threads,
                    model_max_concurrency: self.model_max_concurrency,
                    failed: Mutex::default(),
                    comparer: self.comparer,
                    comparisons: Default::default(),
                    unloads: Default::default(),
                    summaries: self.summaries,
                },
                failover: Failover::new(self.fallback),
                retry: self.retry,
                registry: Registry::default(),
                global: Limiter::new("global concurrency limit", self.max_concurrency),
                memory: MemoryBudget::new(self.memory_budget),
                eviction: Eviction::new(self.eviction),
                scheduler,
                live: AtomicBool::new(true),
                thermal: Mutex::new(ThermalState::Nominal),
                rejected: Default::default(),
                cache: self.cache_bytes.map(ResponseCache::new),
                ensembles: Default::default(),
                gates: Arc::default(),
                monitor: Monitor::new(self.health, self.recovery, self.retime),
                custom_metrics: Default::default(),
                stream_buffer_bytes: self.stream_buffer_bytes,
                rate_limiter: self.rate_limiter,
                repository_control: Default::default(),
            }),
        };
        Monitor::start(&manager.inner);
        Ok(manager)
    }
}

/// The number of CPU cores this process may use.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

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
            stream_buffer_bytes: DEFAULT_STREAM_BUFFER_BYTES,
            memory_budget: None,
            eviction: EvictionPolicy::Off,
            workers: None,
            threads: None,
            cache_bytes: None,
            health: HealthPolicy::default(),
            recovery: RecoveryPolicy::default(),
            retime: RetimePolicy::default(),
            comparer: None,
            summaries: None,
            rate_limiter: None,
        }
    }

    /// Counts a request refused before it reached a model.
    pub(crate) fn reject(&self, e: Error) -> Error {
        self.inner.rejected[e.kind().index()].fetch_add(1, Ordering::Relaxed);
        e
    }

    pub(crate) fn not_found(&self, name: &str, version: Option<u64>) -> Error {
        let versions = self.inner.registry.versions(name);
        let loaded = if versions.is_empty() {
            // Every name a request can use: models and ensembles.
            let mut names = self.inner.registry.names();
            names.extend(self.ensembles().iter().map(|e| e.spec().name.clone()));
            names.sort();
            names.dedup();
            names
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

    /// A loaded model version (`None`: the latest), as an owned handle that
    /// keeps it alive while held. Sees every load and unload that returned
    /// before it started; on a thread that has called
    /// [`crate::registry::on_thread_park`], the lookup goes through that
    /// thread's registry cache, which keeps an unloaded model alive until
    /// the thread's next lookup or park (see [`Manager::with_model`]).
    pub fn model(&self, name: &str, version: Option<u64>) -> Result<Arc<ModelInstance>> {
        self.resident(name, version)
            .ok_or_else(|| self.not_found(name, version))
    }

    /// Every loaded model version, sorted by name then version.
    pub fn models(&self) -> Vec<Arc<ModelInstance>> {
        self.inner.registry.all()
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
        self.inner.scheduler.workers()
    }
}
