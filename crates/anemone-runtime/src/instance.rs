//! A loaded model version and everything the runtime keeps beside it.

use crate::admission::{Limiter, Reservation};
use crate::fallback::ErrorWindow;
use crate::loader::Picked;
use crate::metrics::ModelMetrics;
use crate::selection::{Candidate, Selection};
use crate::spec::ModelSpec;
use anemone_core::{LoadedModel, ModelMetadata};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One loaded version of a model, shared by the requests that use it.
///
/// Dropping the last reference (after unload, once in-flight requests are
/// done) frees the engine's model and gives its memory back to the budget.
pub struct ModelInstance {
    name: String,
    version: u64,
    path: PathBuf,
    model: Box<dyn LoadedModel>,
    /// This model's concurrency limit.
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) metrics: ModelMetrics,
    _reservation: Reservation,
    loaded_at: SystemTime,
    load_time: Duration,
    selection: Selection,
    /// What it was loaded from, kept for a fallback.
    pub(crate) spec: ModelSpec,
    /// Candidates a fallback may move to, in order.
    pub(crate) standby: Vec<Candidate>,
    /// Recent backend errors, for the fallback policy.
    pub(crate) window: ErrorWindow,
    /// Set once a fallback started, so only one runs.
    pub(crate) switching: AtomicBool,
    /// Retries of retryable backend errors.
    pub(crate) retries: AtomicU64,
}

impl ModelInstance {
    pub(crate) fn new(
        spec: ModelSpec,
        picked: Picked,
        limiter: Arc<Limiter>,
        reservation: Reservation,
        load_time: Duration,
    ) -> ModelInstance {
        ModelInstance {
            name: spec.name.clone(),
            version: spec.version,
            path: spec.path.clone(),
            model: picked.model,
            limiter,
            metrics: ModelMetrics::default(),
            _reservation: reservation,
            loaded_at: SystemTime::now(),
            load_time,
            selection: picked.selection,
            spec,
            standby: picked.standby,
            window: ErrorWindow::default(),
            switching: AtomicBool::new(false),
            retries: AtomicU64::new(0),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version number.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// What the model declares.
    pub fn metadata(&self) -> &ModelMetadata {
        self.model.metadata()
    }

    /// The backend running it.
    pub fn backend(&self) -> &'static str {
        self.model.backend()
    }

    /// Bytes charged to the memory budget.
    pub fn memory_footprint(&self) -> u64 {
        self._reservation.bytes()
    }

    /// Requests running on it now.
    pub fn in_flight(&self) -> usize {
        self.limiter.in_use()
    }

    /// Its metrics.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// When it was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// How long loading took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// How its backend was chosen: every candidate and what happened to it.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Backends tried before the one chosen, with the reason each was skipped.
    pub fn skipped_backends(&self) -> Vec<(String, String)> {
        self.selection
            .skipped()
            .map(|(b, r)| (b.to_string(), r.to_string()))
            .collect()
    }

    /// Retries of retryable backend errors on this instance.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn engine(&self) -> &dyn LoadedModel {
        &*self.model
    }
}

impl std::fmt::Debug for ModelInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelInstance")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}
