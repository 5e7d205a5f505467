//! Comparing CPU engines somewhere else than the serving process.
//!
//! With the default order, the CPU engines that can load a model are timed
//! on a warm-up and the faster serves ([`crate::selection::Mode::Ordered`]);
//! re-timing on real requests does it again later
//! ([`crate::RetimePolicy`]). Done in the serving process, the engine that
//! loses leaves memory behind once it has run a model (its kernels' code
//! pages, global caches, thread pools): docs/PERFORMANCE.md, "Memory per
//! model". An [`EngineComparer`] installed with
//! [`crate::ManagerBuilder::engine_comparer`] runs the comparison elsewhere
//! (a child process: [`ProcessComparer`]); the manager then loads only the
//! winner. When the comparer fails (the child exits with an error, crashes,
//! hangs past its timeout, or answers nonsense), the manager warns and
//! compares in its own process as before: a comparer never fails a load.
//!
//! The child side is [`serve_child`]: it reads one [`CompareJob`] from its
//! input, loads each candidate, times it exactly as the in-process
//! comparison does (2 untimed runs, then the median of up to 9 timed runs),
//! and writes one [`CompareReport`].

mod child;
mod process;
mod select;
mod wire;

pub use child::serve_child;
pub use process::{ProcessComparer, DEFAULT_COMPARE_TIMEOUT};
pub use select::ComparisonCounts;

use anemone_core::{Tensor, TensorSpec};
use std::path::PathBuf;

/// One comparison: load the model on each candidate and time it.
#[derive(Debug, Clone)]
pub struct CompareJob {
    /// The model's name (for logs).
    pub model: String,
    /// The model file.
    pub path: PathBuf,
    /// The candidates, by backend name as the preference list gives it
    /// (`onnxruntime`, `tract-cpu`), in preference order.
    pub candidates: Vec<String>,
    /// Engine threads per inference (the model's, else the manager's), as
    /// the serving engine would use.
    pub threads: Option<usize>,
    /// Backend-specific settings ([`crate::ModelSpec::settings`]).
    pub settings: Vec<(String, String)>,
    /// The configuration's input shapes ([`crate::ModelSpec::declared_inputs`]),
    /// against which `sets` are checked and ordered.
    pub declared_inputs: Option<Vec<TensorSpec>>,
    /// What to time, each set a full request by input name: the model's
    /// warm-up samples, or real requests when re-timing. Empty: the
    /// synthetic warm-up of [`crate::tuning::warmup_inputs`].
    pub sets: Vec<Vec<(String, Tensor)>>,
}

/// What happened to one candidate in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Timing {
    /// It loaded and ran; the median time of a run over every set.
    Timed(std::time::Duration),
    /// It loaded, but running the sets failed (or panicked): why.
    RunFailed(String),
    /// It did not load: why.
    LoadFailed(String),
}

/// The answer to a [`CompareJob`]: every candidate of the job, in the job's
/// order, with its [`Timing`].
#[derive(Debug, Clone, PartialEq)]
pub struct CompareReport {
    /// `(candidate, timing)`, in the job's order.
    pub engines: Vec<(String, Timing)>,
}

impl CompareReport {
    /// The candidates that loaded: the timed ones fastest first, then those
    /// whose run failed, in the job's order (the in-process comparison's
    /// ranking).
    pub fn ranked(&self) -> Vec<(&str, &Timing)> {
        let mut timed: Vec<_> = self
            .engines
            .iter()
            .filter_map(|(b, t)| match t {
                Timing::Timed(d) => Some((*d, b.as_str(), t)),
                _ => None,
            })
            .collect();
        timed.sort_by_key(|(d, ..)| *d);
        let mut out: Vec<(&str, &Timing)> = timed.into_iter().map(|(_, b, t)| (b, t)).collect();
        out.extend(
            self.engines
                .iter()
                .filter(|(_, t)| matches!(t, Timing::RunFailed(_)))
                .map(|(b, t)| (b.as_str(), t)),
        );
        out
    }
}

/// Compares a model's CPU engines for the manager, elsewhere than in its
/// process. See the module documentation.
pub trait EngineComparer: Send + Sync + 'static {
    /// Runs `job` and returns a report naming exactly the job's candidates.
    /// An error (any reason: the child failed, timed out, answered
    /// something else) makes the manager compare in its own process, with a
    /// warning that includes the error's text.
    fn compare(&self, job: &CompareJob) -> Result<CompareReport, String>;
}
