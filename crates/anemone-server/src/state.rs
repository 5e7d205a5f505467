//! What the HTTP and gRPC front ends share: one object answering every
//! protocol operation, so both speak exactly the same semantics.

use crate::errors::ApiError;
use crate::model_config;
use crate::proto::{self, model_metadata_response::TensorMetadata, StatisticDuration};
use crate::repository::{ControlMode, Repository, State};
use crate::v2;
use anemone_core::TensorSpec;
use anemone_runtime::metrics::DurationStat;
use anemone_runtime::Manager;
use std::sync::Arc;

mod ensemble;
pub(crate) mod health_sync;
mod infer;

pub use infer::StreamedAnswer;

/// The protocol extensions anemone implements, as `GET /v2` lists them
/// (`schedule_policy`: the `priority` and `timeout` request parameters).
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "cuda_shared_memory",
    "logging",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
    "parameters",
    "schedule_policy",
    "sequence",
    "statistics",
    "system_shared_memory",
    "trace",
];

/// The server's shared state.
pub struct AppState {
    /// Runs the models.
    pub manager: Manager,
    /// The model repository.
    pub repository: Repository,
    /// Set when shutdown begins: readiness turns false at once, while the
    /// requests in flight (uploads included) still finish.
    draining: std::sync::atomic::AtomicBool,
    /// The same, for those that wait for it ([`AppState::drain_begun`]).
    drain_signal: tokio::sync::watch::Sender<bool>,
    /// Log settings and the settings table (`settings.rs`); by default, none.
    pub settings: crate::settings::Settings,
    /// Which requests are traced; by default, none.
    pub trace: crate::telemetry::TraceSettings,
    /// The registered system shared memory regions.
    pub shared_memory: crate::shared_memory::SharedMemory,
    /// Whether readiness waits for every model (Triton's
    /// `--strict-readiness`); by default, true.
    pub strict_readiness: bool,
    /// The name the server metadata answers (Triton's `--id`); by default,
    /// `anemone`.
    pub server_id: String,
    /// `/metrics` also has Triton's families (`--triton-metrics`); by
    /// default, false.
    pub triton_metrics: bool,
    /// The machine's CPU, memory and GPU figures for `/metrics`
    /// (`host_metrics/`); by default, none.
    pub host_metrics: Option<std::sync::Arc<crate::host_metrics::HostMetrics>>,
    /// Which request headers reach the models as request parameters
    /// (`--http-header-forward-pattern`, `--grpc-header-forward-pattern`);
    /// by default, none.
    pub forward_headers: crate::forwarded_headers::HeaderForwarding,
    /// Keeps the gRPC health service in step with readiness.
    pub(crate) health: health_sync::HealthSync,
}

impl AppState {
    /// The state of a server over `manager` and `repository`.
    pub fn new(manager: Manager, repository: Repository) -> AppState {
        AppState {
            manager,
            repository,
            draining: std::sync::atomic::AtomicBool::new(false),
            drain_signal: tokio::sync::watch::Sender::new(false),
            settings: Default::default(),
            trace: Default::default(),
            shared_memory: Default::default(),
            strict_readiness: true,
            server_id: "anemone".into(),
            triton_metrics: false,
            health: Default::default(),
            host_metrics: None,
            forward_headers: Default::default(),
        }
    }

    /// This state, tracing as `settings` say.
    pub fn with_trace(self, settings: crate::telemetry::TraceSettings) -> AppState {
        AppState {
            trace: settings,
            ..self
        }
    }

    /// Shutdown began: not ready from now on (so load balancers stop sending),
    /// while the requests in flight finish.
    pub fn begin_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
        self.drain_signal.send_replace(true);
    }

    /// Resolves once shutdown has begun ([`AppState::begin_draining`]): a
    /// gRPC stream then takes no more requests and ends once it has
    /// answered those it took, so that an open, idle stream does not hold
    /// the shutdown until `--exit-timeout-secs`.
    pub fn drain_begun(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut signal = self.drain_signal.subscribe();
        async move {
            let _ = signal.wait_for(|begun| *begun).await;
        }
    }

    /// `GET /v2`, `ServerMetadata`.
    pub fn server_metadata(&self) -> proto::ServerMetadataResponse {
        proto::ServerMetadataResponse {
            name: self.server_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Live: the process serves requests (false once shutdown began).
    pub fn live(&self) -> bool {
        self.manager.is_live()
    }

    /// Ready: live, not shutting down, start-up loading over, and (with
    /// strict readiness, the default) every model that should be loaded is
    /// ready.
    pub fn ready(&self) -> bool {
        !self.draining.load(std::sync::atomic::Ordering::Acquire)
            && self.live()
            && match self.strict_readiness {
                true => self.repository.all_ready(),
                false => self.repository.startup_finished(),
            }
    }

    /// Whether a model (version) is ready. Unknown models are `NotFound`.
    pub fn model_ready(&self, name: &str, version: &str) -> Result<bool, ApiError> {
        if let Some(ensemble) = self.ready_ensemble(name, version) {
            return Ok(ensemble.is_ok());
        }
        let version = v2::version(version)?;
        // Borrowed: a readiness probe takes no handle on the model.
        if self.manager.with_model(name, version, |_| ()).is_some() {
            return Ok(true);
        }
        let entry = self.repository.entry(name);
        // A version that a serving model does not serve is unknown (404),
        // not unready.
        let unknown_version = version.is_some_and(|v| {
            entry
                .as_ref()
                .is_some_and(|e| e.state == State::Ready && !e.versions.contains(&v))
        });
        match self.manager.model(name, version) {
            Ok(_) => Ok(true),
            Err(_) if !unknown_version && (entry.is_some() || self.repository.has_folder(name)) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Model metadata; `platform` is the backend serving it.
    pub fn model_metadata(
        &self,
        name: &str,
        version: &str,
    ) -> Result<proto::ModelMetadataResponse, ApiError> {
        if let Some(ensemble) = self.loaded_ensemble(name, version) {
            return Ok(Self::ensemble_metadata(&*ensemble?));
        }
        // An evicted model answers from what it declared when resident, so
        // clients that ask for metadata before inferring work unchanged.
        let (platform, meta, served) = match self.ready_model(name, version) {
            Ok(instance) => (
                instance.backend().to_string(),
                instance.metadata().clone(),
                instance.spec().declared_outputs.clone(),
            ),
            Err(e) => {
                let wanted = v2::version(version)?;
                let Some((v, meta)) = self.manager.evicted_metadata(name, wanted) else {
                    return Err(e);
                };
                let gone = self.manager.evicted();
                let backend = gone.iter().find(|g| g.name == name && g.version == v);
                let served = self
                    .repository
                    .entry(name)
                    .and_then(|e| e.config)
                    .map(|c| c.output.into_iter().map(|o| o.name).collect());
                (backend.map_or("", |g| g.backend).to_string(), meta, served)
            }
        };
        let mut versions: Vec<u64> = self
            .manager
            .versions(name)
            .into_iter()
            .chain(
                self.manager
                    .evicted()
                    .iter()
                    .filter(|g| g.name == name)
                    .map(|g| g.version),
            )
            .collect();
        versions.sort_unstable();
        versions.dedup();
        // A version's own metadata lists that version alone, as Triton's.
        if let Some(asked) = v2::version(version)? {
            versions.retain(|v| *v == asked);
        }
        let versions = versions.iter().map(u64::to_string).collect();
        let tensors = |specs: &[TensorSpec]| -> Vec<TensorMetadata> {
            specs
                .iter()
                .map(|s| TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.dtype.kserve_name().into(),
                    shape: model_config::dims_of(s),
                })
                .collect()
        };
        // Only the outputs it serves, in the configuration's order, as Triton.
        let outputs: Vec<TensorSpec> = match &served {
            Some(served) => served
                .iter()
                .filter_map(|name| meta.outputs.iter().find(|o| &o.name == name).cloned())
                .collect(),
            None => meta.outputs.clone(),
        };
        Ok(proto::ModelMetadataResponse {
            name: name.into(),
            versions,
            platform,
            inputs: tensors(&meta.inputs),
            outputs: tensors(&outputs),
        })
    }

    /// How a ready model's backend was chosen.
    pub fn selection(&self, name: &str, version: &str) -> Option<anemone_runtime::Selection> {
        let version = v2::version(version).ok()?;
        self.manager
            .with_model(name, version, |m| m.selection().clone())
    }

    /// The model's effective configuration.
    ///
    /// A loaded model's `instance_group` is shown as it runs (kinds
    /// resolved, a group added where the config has none), as Triton shows
    /// it; an evicted model's is the repository's.
    pub fn model_config(&self, name: &str, version: &str) -> Result<proto::ModelConfig, ApiError> {
        let mut running = None;
        if let Some(ensemble) = self.loaded_ensemble(name, version) {
            ensemble?;
        } else {
            match self.ready_model(name, version) {
                Ok(instance) => running = Some(instance),
                // An evicted model's configuration is still the repository's.
                Err(e) => {
                    if self
                        .manager
                        .evicted_metadata(name, v2::version(version)?)
                        .is_none()
                    {
                        return Err(e);
                    }
                }
            }
        }
        let mut config = self
            .repository
            .entry(name)
            .and_then(|e| e.config)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "model '{name}' has no configuration; is it loaded from the repository?"
                ))
            })?;
        if let Some(instance) = running {
            let backends = self.manager.backends();
            let tiers: Vec<anemone_core::Tier> = (instance.instances().iter())
                .map(|e| {
                    backends
                        .iter()
                        .find(|b| b.name == e.backend)
                        .map_or(anemone_core::Tier::PortableCpu, |b| b.tier)
                })
                .collect();
            model_config::resolve_instance_groups(&mut config, &tiers);
        }
        model_config::show_tritons_batcher(&mut config);
        Ok(config)
    }

    /// A ready model, or why not: `Unavailable` with the load failure when
    /// the repository knows it, `NotFound` otherwise.
    fn ready_model(
        &self,
        name: &str,
        version: &str,
    ) -> Result<std::sync::Arc<anemone_runtime::ModelInstance>, ApiError> {
        let version = v2::version(version)?;
        self.manager
            .model(name, version)
            .map_err(|e| match self.repository.entry(name) {
                Some(entry) if entry.state == State::Unavailable => {
                    ApiError::unavailable(format!(
                        "model '{name}' is not ready: {}",
                        self.repository.relative_paths(&entry.reason)
                    ))
                }
                Some(entry) if entry.state == State::Loading => {
                    ApiError::unavailable(format!("model '{name}' is loading"))
                }
                Some(_) => match self.manager.evicted().into_iter().rfind(|g| g.name == name) {
                    Some(gone) => ApiError::unavailable(format!(
                        "model '{name}' is not resident: {}; an inference request loads it again",
                        gone.reason
                    )),
                    None => e.into(),
                },
                _ if self.repository.waits_for_startup(name) => ApiError::unavailable(format!(
                    "model '{name}' is not loaded yet: the server is loading its models at start-up; retry shortly"
                )),
                _ => e.into(),
            })
    }

    /// Statistics of one model (version), or of every loaded model when `name` is empty.
    pub fn statistics(
        &self,
        name: &str,
        version: &str,
    ) -> Result<proto::ModelStatisticsResponse, ApiError> {
        let version = v2::version(version)?;
        if !name.is_empty() {
            let version = version.map(|v| v.to_string()).unwrap_or_default();
            match self.loaded_ensemble(name, &version) {
                Some(ensemble) => drop(ensemble?),
                None => drop(self.ready_model(name, &version)?),
            }
        }
        // One model's: its own entries, not a snapshot of every model.
        let models = match name.is_empty() {
            true => self.manager.every_model_metrics(),
            false => self.manager.model_metrics(name),
        };
        let stats = models
            .iter()
            .filter(|m| {
                name.is_empty() || (m.name == name && version.is_none_or(|v| v == m.version))
            })
            .map(|m| {
                let s = &m.metrics;
                let d = |x: DurationStat| {
                    Some(StatisticDuration {
                        count: x.count,
                        ns: x.ns,
                    })
                };
                proto::ModelStatistics {
                    name: m.name.clone(),
                    version: m.version.to_string(),
                    last_inference: s.last_success_ms,
                    inference_count: s.inference_count,
                    execution_count: s.execution_count,
                    inference_stats: Some(proto::InferStatistics {
                        success: d(s.request_success),
                        fail: d(s.request_failure),
                        queue: d(s.queue),
                        compute_input: d(s.compute_input),
                        compute_infer: d(s.compute_infer),
                        compute_output: d(s.compute_output),
                        cache_hit: d(s.cache_hit),
                        cache_miss: d(s.cache_miss),
                    }),
                    batch_stats: s
                        .batch_stats
                        .iter()
                        .map(|b| proto::InferBatchStatistics {
                            batch_size: b.batch_size,
                            compute_input: d(b.compute_input),
                            compute_infer: d(b.compute_infer),
                            compute_output: d(b.compute_output),
                        })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect();
        Ok(proto::ModelStatisticsResponse { model_stats: stats })
    }

    /// The repository index; `ready_only` keeps only ready models.
    pub fn repository_index(&self, ready_only: bool) -> proto::RepositoryIndexResponse {
        let models = self
            .repository
            .index()
            .into_iter()
            .filter(|r| !ready_only || r.state == "READY")
            .map(|r| proto::repository_index_response::ModelIndex {
                name: r.name,
                version: r.version,
                state: r.state,
                reason: r.reason,
            })
            .collect();
        proto::RepositoryIndexResponse { models }
    }

    /// Loads a model (explicit mode only), optionally with a JSON config override.
    pub async fn load_model(
        self: &Arc<Self>,
        name: &str,
        config_json: Option<&str>,
    ) -> Result<(), ApiError> {
        self.load_model_as(name, config_json, false).await
    }

    /// [`AppState::load_model`] for a model's own code (a Python model's
    /// `pb_utils.load_model`): see [`Repository::load_for_model`].
    pub async fn load_model_for_model(
        self: &Arc<Self>,
        name: &str,
        config_json: Option<&str>,
    ) -> Result<(), ApiError> {
        self.load_model_as(name, config_json, true).await
    }

    async fn load_model_as(
        self: &Arc<Self>,
        name: &str,
        config_json: Option<&str>,
        for_model: bool,
    ) -> Result<(), ApiError> {
        self.check_explicit("load")?;
        let config = config_json
            .map(model_config::parse_json)
            .transpose()
            .map_err(|e| {
                ApiError::invalid(format!(
                    "failed to load model '{name}': config override: {e}"
                ))
            })?;
        // The load runs to its end on a task of its own, also when the
        // client goes: cut off halfway, it left the model LOADING for ever
        // and every later load of it waiting (as in Triton, a load goes on
        // without its client).
        let (state, owned) = (Arc::clone(self), name.to_string());
        let result = tokio::spawn(async move {
            state.repository.sync_before_load(&owned).await?;
            match for_model {
                false => state.repository.load(&owned, config).await,
                true => state.repository.load_for_model(&owned, config).await,
            }
        })
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::unavailable(format!(
                "failed to load model '{name}': the load stopped ({e}); retry it"
            )))
        });
        // The gRPC health service reads the readiness this load made
        // before its client hears of it.
        self.health.publish().await;
        result
    }

    /// Unloads a model (explicit mode only); with `unload_dependents`
    /// (Triton's unload parameter), an ensemble's composing models too,
    /// unless another loaded ensemble uses them.
    pub fn unload_model(&self, name: &str, unload_dependents: bool) -> Result<(), ApiError> {
        self.check_explicit("unload")?;
        self.repository.unload_with(name, unload_dependents)
    }

    /// [`AppState::unload_model`] for the repository API: an unload of a
    /// model that is loading waits for that load to end, then unloads it,
    /// as tritonserver 2.51 does (it was refused, 503).
    pub async fn unload_model_after_load(
        &self,
        name: &str,
        unload_dependents: bool,
    ) -> Result<(), ApiError> {
        self.check_explicit("unload")?;
        self.repository.load_done(name).await;
        let result = self.repository.unload_with(name, unload_dependents);
        self.health.publish().await;
        result
    }

    fn check_explicit(&self, what: &str) -> Result<(), ApiError> {
        match self.repository.mode() {
            ControlMode::Explicit => Ok(()),
            mode => Err(ApiError::unavailable(format!(
                "cannot {what} models in model control mode '{}'; start the server with --model-control-mode explicit",
                match mode {
                    ControlMode::None => "none",
                    _ => "poll",
                }
            ))),
        }
    }

    /// `/metrics` in Prometheus text format.
    pub fn prometheus(&self) -> String {
        let queued: Vec<crate::prometheus::Queued> = (self.manager.models().iter())
            .map(|m| crate::prometheus::Queued {
                model: m.name().to_string(),
                version: m.version(),
                requests: m.queued(),
            })
            .collect();
        let metrics = self.manager.metrics();
        let mut out = crate::prometheus::render(&metrics, &queued, &self.repository.index());
        crate::settings::render_gates(self.manager.gates(), &mut out);
        let host = self.host_metrics.as_ref().map(|h| h.figures());
        if let Some(host) = &host {
            crate::prometheus::host::render(host, &mut out);
        }
        // Triton's summaries whenever asked for (they have only Triton's names).
        crate::prometheus::triton::render_summaries(&metrics, &mut out);
        if self.triton_metrics {
            crate::prometheus::triton::render(&metrics, &queued, &mut out);
            if let Some(host) = &host {
                crate::prometheus::host::render_triton(host, &mut out);
            }
        }
        // The models' own metrics, under their own names (none starts
        // with `anemone_` or `nv_`, which are refused).
        self.manager.custom_metrics().render(&mut out);
        out
    }
}
