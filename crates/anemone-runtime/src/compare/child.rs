//! The child side of a comparison: load each candidate, time it as the
//! in-process comparison does, report.

use super::{wire, CompareJob, CompareReport, Timing};
use crate::manager::Manager;
use crate::scheduler::panic_message;
use crate::spec::ModelSpec;
use crate::validation::{declared_metadata, order_inputs};
use anemone_core::{Backend, LoadedModel, ModelSource, Result, Tensor};
use std::io::{BufRead, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

/// Runs one comparison for a parent process: reads a [`CompareJob`] from
/// `input` (as [`super::ProcessComparer`] writes it), loads the model on
/// each candidate among `backends`, times it and writes the
/// [`CompareReport`] to `output` as one line. Each engine is dropped before
/// the next loads. An error means the job could not be read or answered;
/// a candidate that fails is part of the report, not an error.
pub fn serve_child(
    backends: Vec<Arc<dyn Backend>>,
    input: impl BufRead,
    output: impl Write,
) -> std::result::Result<(), String> {
    let job = wire::read_job(input)?;
    let manager = Manager::builder()
        .backends(backends)
        .workers(1)
        .build()
        .map_err(|e| e.to_string())?;
    let report = manager.compare_here(&job);
    wire::write_report(&report, output).map_err(|e| format!("cannot write the report: {e}"))
}

impl Manager {
    /// Runs `job` in this process: each candidate loaded, timed and dropped.
    pub(crate) fn compare_here(&self, job: &CompareJob) -> CompareReport {
        let mut spec = ModelSpec::new(job.model.clone(), job.path.clone());
        spec.threads = job.threads;
        spec.settings = job.settings.clone();
        spec.declared_inputs = job.declared_inputs.clone();
        let source = ModelSource::from_path(&job.path);
        let mut engines = Vec::with_capacity(job.candidates.len());
        // Each timed engine's answers to the first set, for the agreement
        // check (crate::agreement).
        let mut answers = crate::agreement::Answers::default();
        for label in &job.candidates {
            let candidate = match self
                .inner
                .loader
                .backends
                .resolve(Some(std::slice::from_ref(label)))
            {
                Ok(mut c) if c.len() == 1 => c.remove(0),
                Ok(_) => {
                    engines.push((label.clone(), Timing::LoadFailed("not a backend".into())));
                    continue;
                }
                Err(e) => {
                    engines.push((label.clone(), Timing::LoadFailed(e.to_string())));
                    continue;
                }
            };
            let timing = match self.try_candidate(&spec, &source, &candidate) {
                Err((reason, _)) => Timing::LoadFailed(reason),
                Ok(model) => {
                    match catch_unwind(AssertUnwindSafe(|| time_sets(&*model, &spec, &job.sets))) {
                        Ok(Ok((median, answer))) => {
                            tracing::info!(model = %job.model, backend = %label, median_us = median.as_micros() as u64, "warm-up timed (comparison process)");
                            let names = model.metadata().outputs.iter().map(|o| o.name.clone());
                            answers.push(label, answer, names.collect());
                            Timing::Timed(median)
                        }
                        Ok(Err(e)) => Timing::RunFailed(e.chain_string()),
                        Err(panic) => {
                            Timing::RunFailed(format!("panicked: {}", panic_message(&*panic)))
                        }
                    }
                }
            };
            engines.push((label.clone(), timing));
        }
        if let Some(why) = answers.suspect_differs(&job.model) {
            for (label, timing) in &mut engines {
                if label == crate::agreement::SUSPECT {
                    *timing = Timing::RunFailed(why.clone());
                }
            }
        }
        CompareReport { engines }
    }
}

/// Times `model` on `sets` (by input name), or on the synthetic warm-up
/// when there are none: the in-process comparison's timing; with the
/// model's answer to the first set.
fn time_sets(
    model: &dyn LoadedModel,
    spec: &ModelSpec,
    sets: &[Vec<(String, Tensor)>],
) -> Result<(Duration, Vec<Tensor>)> {
    let ordered = match sets.is_empty() {
        true => vec![crate::tuning::warmup_inputs(model.metadata())],
        false => {
            let meta = declared_metadata(model.metadata(), spec.declared_inputs.as_deref());
            sets.iter()
                .map(|set| {
                    order_inputs(&meta, set.clone()).map_err(|e| {
                        anemone_core::Error::Config(format!("the inputs do not fit: {e}"))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    let median = crate::tuning::time_runs(model, &ordered)?;
    Ok((median, model.infer(&ordered[0])?))
}
