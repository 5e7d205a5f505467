//! Snapshots for the outside: [`Manager::metrics`], [`Manager::health`] and
//! the backends' probes, with the types they are reported in.

use crate::health::{HealthReport, ModelHealth, ModelState};
use crate::manager::Manager;
use crate::metrics::ModelMetricsSnapshot;
use crate::pressure::ThermalState;
use crate::selection::Selection;
use anemone_core::{ErrorKind, Probe};
use std::sync::atomic::Ordering;

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
    /// The response cache, when the manager has one.
    pub cache: Option<crate::CacheSnapshot>,
    /// Evictions, on-demand loads, load times, and the models evicted now.
    pub eviction: crate::eviction::EvictionSnapshot,
    /// The health monitor: states, memory, re-probes, moves, re-timing.
    pub monitor: crate::monitor::MonitorSnapshot,
    /// CPU-engine comparisons made by the installed comparer (a child
    /// process), and those that fell back to this process.
    pub comparisons: crate::compare::ComparisonCounts,
}

impl MetricsSnapshot {
    /// The entry of a model's latest loaded version.
    pub fn model(&self, name: &str) -> Option<&ModelMetricsEntry> {
        self.models.iter().rfind(|m| m.name == name)
    }
}

impl Manager {
    /// The backends of this manager and what their probes say (each probe
    /// runs once, the first time it is needed).
    pub fn backends(&self) -> Vec<BackendStatus> {
        let set = &self.inner.loader.backends;
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

    /// The metrics the models' own code reports (a Python model's
    /// `pb_utils.MetricFamily`); [`CustomMetrics::render`] writes them for
    /// Prometheus.
    ///
    /// [`CustomMetrics::render`]: anemone_core::custom_metrics::CustomMetrics::render
    pub fn custom_metrics(&self) -> &anemone_core::custom_metrics::CustomMetrics {
        &self.inner.custom_metrics
    }

    /// What is charged against the memory budget, and the budget (`None`
    /// without one): two loads, where [`Manager::metrics`] snapshots every
    /// model and runs every backend's probe not run yet (the Python
    /// backend's starts an interpreter).
    pub fn memory(&self) -> (u64, Option<u64>) {
        (self.inner.memory.used(), self.inner.memory.budget())
    }

    /// The server-wide concurrency limit now (`None`: unlimited), as
    /// [`MetricsSnapshot::max_concurrency`] reports it, without the snapshot.
    pub fn concurrency_limit(&self) -> Option<usize> {
        self.inner.global.capacity()
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
            models: self.every_model_metrics(),
            cache: self.inner.cache.as_ref().map(|c| c.snapshot()),
            eviction: self.inner.eviction.snapshot(self.evicted()),
            monitor: self.monitor_snapshot(),
            comparisons: self.engine_comparisons(),
        }
    }

    /// The metrics of every loaded model version and ensemble: what a
    /// statistics request for all models reads ([`MetricsSnapshot::models`],
    /// without the rest of [`Manager::metrics`]).
    pub fn every_model_metrics(&self) -> Vec<ModelMetricsEntry> {
        (self.models().iter())
            .map(|m| metrics_entry(m))
            .chain(self.ensemble_metrics())
            .collect()
    }

    /// The metrics of the loaded versions of `name`, a model or an
    /// ensemble: what a statistics request for one model reads, without a
    /// snapshot of every other model ([`Manager::metrics`]).
    pub fn model_metrics(&self, name: &str) -> Vec<ModelMetricsEntry> {
        let registry = &self.inner.registry;
        let mut out: Vec<ModelMetricsEntry> = (registry.versions(name).into_iter())
            .filter_map(|v| registry.get(name, crate::registry::VersionRequest::Specific(v)))
            .map(|m| metrics_entry(&m))
            .collect();
        if out.is_empty() {
            out.extend(
                self.ensemble_metrics()
                    .into_iter()
                    .filter(|e| e.name == name),
            );
        }
        out
    }

    /// Whether the manager is live (a lookup; [`Manager::health`] reports
    /// every model).
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// The versions of `name` loaded, ascending (a lookup, not a walk of
    /// every model).
    pub fn versions(&self, name: &str) -> Vec<u64> {
        self.inner.registry.versions(name)
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
                } else if let Some(reason) = self.degraded(m.name(), m.version()) {
                    ModelState::Degraded { reason }
                } else {
                    ModelState::Ready
                },
                backend: Some(m.backend().to_string()),
                in_flight: m.in_flight(),
            })
            .collect();
        let failed = self
            .inner
            .loader
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        models.extend(failed.iter().map(|(name, reason)| ModelHealth {
            name: name.clone(),
            version: None,
            state: ModelState::Unavailable {
                reason: reason.clone(),
            },
            backend: None,
            in_flight: 0,
        }));
        models.extend(self.ensemble_health());
        models.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        let ready = live && models.iter().all(ModelHealth::ready);
        HealthReport {
            live,
            ready,
            models,
            thermal,
        }
    }
}

/// One loaded model version's entry in a metrics snapshot.
fn metrics_entry(m: &crate::instance::ModelInstance) -> ModelMetricsEntry {
    ModelMetricsEntry {
        name: m.name().to_string(),
        version: m.version(),
        backend: m.backend(),
        in_flight: m.in_flight(),
        memory_bytes: m.memory_footprint(),
        selection: m.selection().clone(),
        retries: m.retries(),
        metrics: m.metrics().snapshot(),
    }
}
