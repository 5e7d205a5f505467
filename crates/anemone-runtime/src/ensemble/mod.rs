//! Ensembles (Triton's `platform: "ensemble"`): a DAG of steps, each an
//! ordinary request to a loaded model, run as one model.
//!
//! - `spec.rs`: [`EnsembleSpec`] and [`EnsembleStep`], what an ensemble is.
//! - `graph.rs`: validation against the composing models and the run order.
//! - `run.rs`: execution: steps whose inputs are ready run concurrently,
//!   each through its model's own [`Manager::infer`] path (queue, dynamic
//!   batching, instance groups, statistics).
//!
//! An ensemble is loaded with [`Manager::load_ensemble`] after its composing
//! models, is ready only while every composing model is loaded
//! ([`Manager::ensemble_state`]), and keeps statistics of its own
//! ([`Manager::metrics`] lists it with backend `ensemble`).
//!
//! ```
//! use anemone_runtime::ensemble::{EnsembleSpec, EnsembleStep};
//! use anemone_runtime::{InferRequest, Manager, ModelSpec};
//! use anemone_core::{DataType, Tensor};
//! # let add = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/add/1/model.onnx");
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let manager = Manager::builder().backend(anemone_backends::TractCpu::default()).build()?;
//! manager.load_model(ModelSpec::new("add", &add)).await?; // sum = x + y, diff = x - y
//!
//! // total = (x + y) + (x - y) = 2x: two independent steps, then a third.
//! let spec = EnsembleSpec::new("double")
//!     .input("x", DataType::F32, &[-1, 4])
//!     .input("y", DataType::F32, &[-1, 4])
//!     .output("total", DataType::F32, &[-1, 4])
//!     .step(EnsembleStep::new("add").map_input("x", "x").map_input("y", "y")
//!         .map_output("sum", "s").map_output("diff", "d"))
//!     .step(EnsembleStep::new("add").map_input("x", "s").map_input("y", "d").map_output("sum", "total"));
//! manager.load_ensemble(spec)?;
//!
//! let x = Tensor::from_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
//! let y = Tensor::from_vec(vec![1, 4], vec![5.0f32, 6.0, 7.0, 8.0]).unwrap();
//! let response = manager.infer(InferRequest::new("double").input("x", x).input("y", y)).await?;
//! assert_eq!(response.output("total").unwrap().to_vec::<f32>().unwrap(), vec![2.0, 4.0, 6.0, 8.0]);
//! // The composing model counts the ensemble's calls.
//! assert_eq!(manager.metrics().model("add").unwrap().metrics.success, 2);
//! # Ok::<(), anemone_core::Error>(()) }).unwrap();
//! ```

mod adapt;
mod graph;
mod run;
mod spec;
mod stream;

pub use spec::{dims, EnsembleSpec, EnsembleStep};

use crate::health::ModelState;
use crate::manager::Manager;
use crate::metrics::ModelMetrics;
use anemone_core::{Error, ModelFormat, ModelMetadata, Result};
use graph::{ModelView, Plan};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// A loaded ensemble.
#[derive(Debug)]
pub struct Ensemble {
    spec: EnsembleSpec,
    plan: Plan,
    /// Its inputs and outputs as requests see them.
    metadata: ModelMetadata,
    /// Its own statistics (the composing models count their steps in theirs).
    metrics: ModelMetrics,
    /// How it runs when a step is decoupled (`stream.rs`).
    stream: Option<stream::StreamPlan>,
}

impl Ensemble {
    /// What it was loaded from.
    pub fn spec(&self) -> &EnsembleSpec {
        &self.spec
    }

    /// Its inputs and outputs, as model metadata.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// Its own statistics.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Whether a step is decoupled: the ensemble then answers a request
    /// with a stream of responses ([`Manager::infer_decoupled`]), one per
    /// response of that step.
    pub fn streams(&self) -> bool {
        self.stream.is_some()
    }

    /// Ensemble output `name` as the client gets it: without the batch
    /// dimension of a step that batches, in an ensemble that does not
    /// ([`adapt`]).
    fn output_adapted(&self, name: &str, tensor: anemone_core::Tensor) -> anemone_core::Tensor {
        match self.plan.outputs.get(name) {
            Some(adapt) => adapt.apply(tensor),
            None => tensor,
        }
    }
}

/// The loaded ensembles, by name. Read on every request that misses the
/// model registry; written only by loads and unloads.
#[derive(Default)]
pub(crate) struct Ensembles {
    loaded: RwLock<BTreeMap<String, Arc<Ensemble>>>,
}

impl Ensembles {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Ensemble>>> {
        self.loaded.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Ensemble>>> {
        self.loaded.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Manager {
    /// Loads an ensemble after checking it against its composing models,
    /// which must be loaded already. Every problem is reported in one
    /// `Config` error, each naming its step, model and tensor: a tensor with
    /// no producer or two, a cycle, a data type or shape that disagrees with
    /// the model's, a required model input left unmapped, an ensemble output
    /// nothing produces, a composing model that is not loaded.
    ///
    /// Loading an ensemble of the same name replaces it; requests in flight
    /// finish on the old one.
    pub fn load_ensemble(&self, spec: EnsembleSpec) -> Result<Arc<Ensemble>> {
        if spec.name.is_empty() {
            return Err(Error::Config("an ensemble needs a non-empty name".into()));
        }
        if !self.inner.registry.versions(&spec.name).is_empty() {
            return Err(Error::Config(format!(
                "ensemble '{}': a model of that name is loaded; unload it or rename the ensemble",
                spec.name
            )));
        }
        let plan = graph::plan(&spec, |name, version| {
            if let Some(m) = self.resident(name, version) {
                return Some(ModelView::of(&m));
            }
            self.ensemble(name)
                .filter(|_| version.is_none())
                .map(|e| ModelView {
                    inputs: e.metadata.inputs.clone(),
                    outputs: e.metadata.outputs.clone(),
                    optional: Vec::new(),
                    max_batch_size: e.spec.max_batch_size,
                })
        })
        .map_err(|errs| {
            Error::Config(format!(
                "ensemble '{}' is invalid: {}",
                spec.name,
                numbered(&errs)
            ))
        })?;
        // Decoupled steps: a model that is, or an ensemble that streams.
        let decoupled: Vec<bool> = (spec.steps.iter())
            .map(|step| match self.resident(&step.model, step.version) {
                Some(m) => m.decoupled(),
                None => self
                    .ensemble(&step.model)
                    .is_some_and(|e| e.stream.is_some()),
            })
            .collect();
        let nested = (spec.steps.iter().enumerate())
            .find(|(i, step)| decoupled[*i] && self.resident(&step.model, step.version).is_none());
        if let Some((i, step)) = nested {
            return Err(Error::Config(format!(
                "ensemble '{}' {}: ensemble '{}' has a decoupled step, which a step of another \
                 ensemble cannot have yet; make its steps this ensemble's",
                spec.name,
                graph::step_label(i, step),
                step.model
            )));
        }
        let stream = stream::stream_plan(&spec, &plan, &decoupled).map_err(|errs| {
            Error::Config(format!(
                "ensemble '{}' is invalid: {}",
                spec.name,
                numbered(&errs)
            ))
        })?;
        let mut metadata =
            ModelMetadata::new(ModelFormat::Onnx, spec.inputs.clone(), spec.outputs.clone());
        metadata.producer = Some("anemone ensemble".into());
        let ensemble = Arc::new(Ensemble {
            spec,
            plan,
            metadata,
            metrics: ModelMetrics::with_summaries(self.inner.loader.summaries.clone()),
            stream,
        });
        self.inner
            .ensembles
            .write()
            .insert(ensemble.spec.name.clone(), Arc::clone(&ensemble));
        tracing::info!(ensemble = %ensemble.spec.name, steps = ensemble.spec.steps.len(), "ensemble loaded");
        Ok(ensemble)
    }

    /// Unloads an ensemble (not its composing models); says whether it was loaded.
    pub fn unload_ensemble(&self, name: &str) -> bool {
        let removed = self.inner.ensembles.write().remove(name).is_some();
        if removed {
            tracing::info!(ensemble = %name, "ensemble unloaded");
        }
        removed
    }

    /// A loaded ensemble, whether or not its composing models are ready.
    pub fn ensemble(&self, name: &str) -> Option<Arc<Ensemble>> {
        self.inner.ensembles.read().get(name).cloned()
    }

    /// Every loaded ensemble, by name.
    pub fn ensembles(&self) -> Vec<Arc<Ensemble>> {
        self.inner.ensembles.read().values().cloned().collect()
    }

    /// Whether a loaded ensemble can serve: `Ready` while every composing
    /// model is loaded (or evicted, to be loaded again by the next request),
    /// else `Unavailable` naming the step and the model that is missing.
    /// `None` when no ensemble of that name is loaded.
    pub fn ensemble_state(&self, name: &str) -> Option<ModelState> {
        let ensemble = self.ensemble(name)?;
        Some(match self.missing_step(&ensemble, 0) {
            None => ModelState::Ready,
            Some(reason) => ModelState::Unavailable { reason },
        })
    }

    /// The loads (see `ModelInstance::load_id`) of the models that would
    /// answer a request to `ensemble` now, its nested ensembles' steps
    /// included, for the response cache's key: a cached answer is never one
    /// that a model since loaded again gave. `None` when a step's model is
    /// not loaded now (evicted: the request then runs, uncached).
    fn step_loads(&self, ensemble: &Ensemble, depth: usize, loads: &mut Vec<u64>) -> Option<()> {
        for step in &ensemble.spec.steps {
            if let Some(m) = self.resident(&step.model, step.version) {
                loads.push(m.load_id());
                continue;
            }
            let inner = self
                .ensemble(&step.model)
                .filter(|_| step.version.is_none() && depth < 8)?;
            self.step_loads(&inner, depth + 1, loads)?;
        }
        Some(())
    }

    /// Why an ensemble cannot serve now, if it cannot: the first step whose
    /// model is neither loaded nor evicted. `depth` bounds nested ensembles.
    fn missing_step(&self, ensemble: &Ensemble, depth: usize) -> Option<String> {
        for (i, step) in ensemble.spec.steps.iter().enumerate() {
            let present = self.resident(&step.model, step.version).is_some()
                || self
                    .evicted()
                    .iter()
                    .any(|g| g.name == step.model && step.version.is_none_or(|v| v == g.version));
            if present {
                continue;
            }
            let nested = self
                .ensemble(&step.model)
                .filter(|_| step.version.is_none());
            match nested {
                Some(inner) if depth < 8 => match self.missing_step(&inner, depth + 1) {
                    None => continue,
                    Some(why) => {
                        return Some(format!("{}: {why}", graph::step_label(i, step)));
                    }
                },
                _ => {
                    let version = step
                        .version
                        .map(|v| format!(" version {v}"))
                        .unwrap_or_default();
                    return Some(format!(
                        "composing model '{}'{version} of {} is not loaded; load it again to serve the ensemble",
                        step.model,
                        graph::step_label(i, step)
                    ));
                }
            }
        }
        None
    }
}

impl Manager {
    /// Every loaded ensemble's metrics, as [`Manager::metrics`] lists them
    /// (backend `ensemble`, no memory of its own).
    pub(crate) fn ensemble_metrics(&self) -> Vec<crate::ModelMetricsEntry> {
        self.ensembles()
            .iter()
            .map(|e| crate::ModelMetricsEntry {
                name: e.spec.name.clone(),
                version: e.spec.version,
                backend: "ensemble",
                in_flight: 0,
                memory_bytes: 0,
                selection: crate::Selection {
                    mode: crate::Mode::Ordered,
                    attempts: Vec::new(),
                    fallback_from: None,
                    moved: None,
                },
                retries: 0,
                metrics: e.metrics.snapshot(),
            })
            .collect()
    }

    /// Every loaded ensemble's health, as [`Manager::health`] lists it.
    pub(crate) fn ensemble_health(&self) -> Vec<crate::ModelHealth> {
        self.ensembles()
            .iter()
            .map(|e| crate::ModelHealth {
                name: e.spec.name.clone(),
                version: Some(e.spec.version),
                state: self
                    .ensemble_state(&e.spec.name)
                    .unwrap_or(ModelState::Unavailable {
                        reason: "unloaded".into(),
                    }),
                backend: Some("ensemble".into()),
                in_flight: 0,
            })
            .collect()
    }
}

/// `(1) a; (2) b` for several problems, the problem itself for one.
fn numbered(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        _ => errs
            .iter()
            .enumerate()
            .map(|(i, e)| format!("({}) {e}", i + 1))
            .collect::<Vec<_>>()
            .join("; "),
    }
}
