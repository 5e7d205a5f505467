//! A loaded model version and everything the runtime keeps beside it: its
//! engine instances, limits, counters, queue and fallback state.

use crate::admission::{Limiter, Reservation};
use crate::fallback::ErrorWindow;
use crate::loader::Picked;
use crate::metrics::{Ewma, ModelMetrics};
use crate::scheduler::{ModelQueue, INLINE_AFTER_RUNS, INLINE_BELOW};
use crate::selection::{Candidate, Selection};
use crate::spec::ModelSpec;
use anemone_core::{LoadedModel, ModelMetadata};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One loaded version of a model, shared by the requests that use it.
///
/// Dropping the last reference (after unload, once in-flight requests are
/// done) frees the engines and gives their memory back to the budget.
pub struct ModelInstance {
    name: String,
    version: u64,
    /// This load's number, unique in the process: an instance that replaces
    /// it (a reload, a fallback, a load on demand) has another, so answers
    /// cached from this one are never taken for the next's.
    load_id: u64,
    path: PathBuf,
    /// Whether its engines are decoupled (read once: every request asks).
    decoupled: bool,
    /// Its engine instances (Triton's instance group); never empty.
    engines: Vec<Engine>,
    /// The first engine's metadata narrowed by the spec's declared inputs.
    metadata: ModelMetadata,
    /// This model's concurrency limit.
    pub(crate) limiter: Arc<Limiter>,
    /// Its counters, shared with the instance that replaces it on a fallback.
    pub(crate) metrics: Arc<ModelMetrics>,
    _reservation: Reservation,
    loaded_at: SystemTime,
    load_time: Duration,
    selection: Selection,
    /// What it was loaded from, kept for a fallback.
    pub(crate) spec: ModelSpec,
    /// Candidates a fallback may move to, in order.
    pub(crate) standby: Vec<Candidate>,
    /// The standby engine loaded up front, taken by the first fallback.
    pub(crate) hot: std::sync::Mutex<Option<crate::loader::HotStandby>>,
    /// Recent backend errors, for the fallback policy.
    pub(crate) window: ErrorWindow,
    /// Set once a fallback started, so only one runs.
    pub(crate) switching: AtomicBool,
    /// Retries of retryable backend errors.
    pub(crate) retries: AtomicU64,
    /// Its request queue, when it has one (queue settings or dynamic batching).
    pub(crate) queue: Option<ModelQueue>,
    /// When a request last came for it (or when it was loaded), in the
    /// eviction clock's nanoseconds; the least recently used is evicted first.
    last_used: AtomicU64,
    /// Keeps its first requests' inputs when it is to be re-timed on them
    /// (`monitor/retime.rs`); `None` otherwise.
    pub(crate) sampler: Option<crate::monitor::sampler::Sampler>,
    /// Its open sequences, for a sequence model; shared with the instance
    /// that replaces it on a fallback.
    pub(crate) sequences: Option<Arc<crate::sequence::Sequences>>,
    /// The correlation IDs it gives requests that name no sequence, when
    /// its engines are iterative (they reschedule requests:
    /// [`anemone_core::LoadedModel::iterative`]).
    pub(crate) own_sequences: Option<crate::scheduler::OwnSequences>,
}

/// One engine instance: a loaded model and its own load counters.
pub(crate) struct Engine {
    pub(crate) model: Box<dyn LoadedModel>,
    /// Engine calls running on it now.
    busy: AtomicUsize,
    /// Engine calls so far.
    executions: AtomicU64,
    /// EWMA of its engine time per call.
    latency: Ewma,
    /// What decides whether its calls run inline.
    inline: InlineEstimate,
}

/// The engine time per call that decides whether calls run inline: an EWMA
/// with each sample capped at [`INLINE_SAMPLE_CAP`]. A call stalled once
/// (its thread preempted, a page fault) moves it by at most a tenth of the
/// cap, rather than sending the model to the worker threads for the dozens
/// of calls the plain average would take to come back under [`INLINE_BELOW`].
#[derive(Default)]
struct InlineEstimate(Ewma);

impl InlineEstimate {
    fn record(&self, engine_time: Duration) {
        self.0.update(engine_time.min(INLINE_SAMPLE_CAP));
    }

    /// Whether the calls so far were short enough to run inline.
    fn short(&self) -> bool {
        self.0.get().is_some_and(|d| d <= INLINE_BELOW)
    }
}

/// The most one engine call counts for in the inline decision
/// ([`ModelInstance::runs_inline`]): twice [`INLINE_BELOW`]. A model whose
/// calls keep taking longer still averages above [`INLINE_BELOW`] and goes
/// back to the workers; a single outlier cannot push one that averages a few
/// microseconds over the line.
pub(crate) const INLINE_SAMPLE_CAP: Duration = INLINE_BELOW.saturating_mul(2);

/// Marks an engine busy for one call; records the call when dropped.
pub(crate) struct Busy<'a>(&'a Engine);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Release);
    }
}

impl Engine {
    fn new(model: Box<dyn LoadedModel>) -> Engine {
        Engine {
            model,
            busy: AtomicUsize::new(0),
            executions: AtomicU64::new(0),
            latency: Ewma::default(),
            inline: InlineEstimate::default(),
        }
    }

    /// Marks it busy until the guard drops.
    pub(crate) fn claim(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::Acquire);
        Busy(self)
    }

    /// Records one call that spent `engine_time` in the engine.
    pub(crate) fn record(&self, engine_time: Duration) {
        self.executions.fetch_add(1, Ordering::Relaxed);
        self.latency.update(engine_time);
        self.inline.record(engine_time);
    }

    /// Its EWMA engine time per call in nanoseconds; 1 before its first call.
    fn latency_ns(&self) -> u128 {
        self.latency.get().map_or(1, |d| d.as_nanos().max(1))
    }

    /// Its load for choosing: expected time until a new call would finish
    /// (calls running plus this one, times its latency), then calls running,
    /// then calls so far (so ties take turns).
    fn load(&self) -> (u128, usize, u64) {
        let busy = self.busy.load(Ordering::Relaxed);
        (
            (busy as u128 + 1) * self.latency_ns(),
            busy,
            self.executions.load(Ordering::Relaxed),
        )
    }
}

/// The counters of one engine instance of a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EngineStats {
    /// The backend it runs on.
    pub backend: &'static str,
    /// Engine calls running on it now.
    pub in_flight: usize,
    /// Engine calls so far (a batch is one call).
    pub executions: u64,
    /// EWMA of its engine time per call; `None` before the first.
    pub ewma_latency: Option<Duration>,
}

impl ModelInstance {
    // One argument per part the instance owns; `install` is the one caller.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        spec: ModelSpec,
        picked: Picked,
        limiter: Arc<Limiter>,
        metrics: Arc<ModelMetrics>,
        reservation: Reservation,
        load_time: Duration,
        queue: Option<ModelQueue>,
        sampler: Option<crate::monitor::sampler::Sampler>,
        sequences: Option<Arc<crate::sequence::Sequences>>,
    ) -> ModelInstance {
        let successes = metrics.success_count();
        static LOADS: AtomicU64 = AtomicU64::new(1);
        ModelInstance {
            name: spec.name.clone(),
            version: spec.version,
            load_id: LOADS.fetch_add(1, Ordering::Relaxed),
            path: spec.path.clone(),
            decoupled: picked.engines[0].decoupled(),
            own_sequences: (picked.engines[0].iterative())
                .then(crate::scheduler::OwnSequences::default),
            metadata: crate::reshape::served_metadata(&spec, picked.engines[0].metadata()),
            engines: picked.engines.into_iter().map(Engine::new).collect(),
            limiter,
            metrics,
            _reservation: reservation,
            loaded_at: SystemTime::now(),
            load_time,
            selection: picked.selection,
            spec,
            standby: picked.standby,
            hot: std::sync::Mutex::new(picked.hot),
            window: ErrorWindow::starting_at(successes),
            switching: AtomicBool::new(false),
            retries: AtomicU64::new(0),
            queue,
            last_used: AtomicU64::new(0),
            sampler,
            sequences,
        }
    }

    /// Its first engine instance's model.
    pub(crate) fn first_engine(&self) -> &dyn LoadedModel {
        &*self.engines[0].model
    }

    /// This load's number, unique in the process (see the field).
    pub(crate) fn load_id(&self) -> u64 {
        self.load_id
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

    /// What the model declares: its first engine's metadata, with inputs
    /// narrowed by the spec's `declared_inputs` (see [`crate::validation::declared_metadata`]).
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// Sequences open now, for a sequence model (see [`ModelSpec::sequence`]).
    pub fn open_sequences(&self) -> Option<usize> {
        self.sequences.as_ref().map(|s| s.open_count())
    }

    /// The specification it was loaded from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The backend running it (its first engine instance's).
    pub fn backend(&self) -> &'static str {
        self.engines[0].model.backend()
    }

    /// Whether the model reads its inputs by name, so that a request may
    /// leave out its optional inputs ([`LoadedModel::takes_absent_inputs`]).
    pub fn takes_absent_inputs(&self) -> bool {
        self.engines[0].model.takes_absent_inputs()
    }

    /// Whether the model is decoupled: it answers a request with any number
    /// of responses ([`crate::Manager::infer_decoupled`]).
    pub fn decoupled(&self) -> bool {
        self.decoupled
    }

    /// Bytes charged to the memory budget.
    pub fn memory_footprint(&self) -> u64 {
        self._reservation.bytes()
    }

    /// Requests admitted on it now: queued or running.
    pub fn in_flight(&self) -> usize {
        self.limiter.in_use()
    }

    /// Requests waiting now: in its queue, and (a sequence model's) for
    /// their sequence's earlier requests to finish, as Triton counts
    /// pending requests.
    pub fn queued(&self) -> usize {
        let queue = self.queue.as_ref().map_or(0, ModelQueue::len);
        queue + self.sequences.as_ref().map_or(0, |s| s.waiting())
    }

    /// Its metrics (shared with the instances it replaced on a fallback).
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Each engine instance's counters, in order.
    pub fn instances(&self) -> Vec<EngineStats> {
        self.engines
            .iter()
            .map(|e| EngineStats {
                backend: e.model.backend(),
                in_flight: e.busy.load(Ordering::Relaxed),
                executions: e.executions.load(Ordering::Relaxed),
                ewma_latency: e.latency.get(),
            })
            .collect()
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

    /// When a request last came for it (see `Eviction::stamp`).
    pub(crate) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Marks it used at `stamp`.
    #[inline]
    pub(crate) fn touch(&self, stamp: u64) {
        self.last_used.fetch_max(stamp, Ordering::Relaxed);
    }

    /// Retries of retryable backend errors on this instance.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The engine instance a new call should go to: the least loaded, with
    /// load weighted by each instance's latency (instances on different
    /// backends differ in speed).
    pub(crate) fn pick_engine(&self) -> &Engine {
        match self.engines.as_slice() {
            [one] => one,
            all => all
                .iter()
                .min_by_key(|e| e.load())
                .expect("a model has at least one engine; this is a bug"),
        }
    }

    /// The engine instance a model queue's lane `lane` runs on: lane `i`
    /// always on engine `i`, so that the engine's per-thread state (a GPU
    /// engine's stream, its CUDA graphs per batch size) lives on one thread.
    pub(crate) fn lane_engine(&self, lane: usize) -> &Engine {
        &self.engines[lane % self.engines.len()]
    }

    /// What a new call on lane `lane` is expected to cost, to choose between
    /// lanes: its engine's EWMA latency, doubled while the lane is running a
    /// call (the new one would wait for it). See [`Engine::load`].
    pub(crate) fn lane_cost(&self, lane: usize, running: bool) -> u128 {
        self.lane_engine(lane).latency_ns() * (1 + u128::from(running))
    }

    /// Whether requests may run on the calling task, skipping the worker hop:
    /// no queue, one engine instance, and its engine time has averaged at most
    /// [`INLINE_BELOW`] over at least [`INLINE_AFTER_RUNS`] calls, each call
    /// counted for at most [`INLINE_SAMPLE_CAP`].
    #[inline]
    pub(crate) fn runs_inline(&self) -> bool {
        let [engine] = self.engines.as_slice() else {
            return false;
        };
        self.queue.is_none()
            && engine.executions.load(Ordering::Relaxed) >= INLINE_AFTER_RUNS
            && engine.inline.short()
    }
}

impl std::fmt::Debug for ModelInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelInstance")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("backend", &self.backend())
            .field("instances", &self.engines.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(samples_us: &[u64]) -> InlineEstimate {
        let e = InlineEstimate::default();
        for &us in samples_us {
            e.record(Duration::from_micros(us));
        }
        e
    }

    #[test]
    fn one_stalled_call_keeps_a_tiny_model_inline() {
        // 12 µs calls (ONNX Runtime's `add`), then one preempted for 2 ms.
        let mut samples = vec![12; 32];
        samples.push(2_000);
        assert!(estimate(&samples).short());
        samples.extend([12; 4]);
        assert!(estimate(&samples).short());
    }

    #[test]
    fn a_model_that_stays_slow_leaves_the_inline_path() {
        // ONNX Runtime's `add` (8-12 µs a call) runs inline.
        assert!(estimate(&[12; 64]).short());
        assert!(!estimate(&[30; 64]).short());
        // Slow by far: capped, yet above the line.
        assert!(!estimate(&[5_000; 64]).short());
        // Fast, then slow for good.
        let mut samples = vec![3; 32];
        samples.extend([500; 16]);
        assert!(!estimate(&samples).short());
        assert!(estimate(&[3; 64]).short());
    }
}
