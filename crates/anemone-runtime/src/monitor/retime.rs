//! Re-timing on real traffic: a model that declares no `model_warmup` had
//! its CPU engines compared on inputs whose dynamic dimensions are 1. Once
//! its first requests were seen ([`super::RetimePolicy::after_requests`]),
//! the engines are timed again on those requests' shapes, on a thread of
//! its own, and the model moves when another engine is clearly faster
//! ([`super::RetimePolicy::margin`]).

use crate::instance::ModelInstance;
use crate::loader::Picked;
use crate::manager::Manager;
use crate::monitor::sampler::Sampler;
use crate::selection::{Attempt, Candidate, Mode, Move, Outcome, Selection, WARMUP_FAILED};
use crate::spec::ModelSpec;
use crate::validation::{declared_metadata, order_inputs};
use anemone_core::{LoadedModel, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Manager {
    /// A sampler for a model about to be installed when it is to be re-timed:
    /// re-timing is on, the model allows it, declares no warm-up, and its
    /// backend was chosen by timing several engines at load.
    pub(crate) fn retime_sampler(
        &self,
        spec: &ModelSpec,
        selection: &Selection,
    ) -> Option<Sampler> {
        let policy = &self.inner.monitor.retime;
        (policy.enabled
            && spec.retime
            && spec.warmup.is_empty()
            && selection.mode != Mode::Strict
            && selection.moved.is_none()
            && selection.fallback_from.is_none()
            && compared(selection).len() >= 2)
            .then(|| Sampler::new(policy.after_requests))
    }

    /// Times the engines compared at load on `sets` (real requests' inputs,
    /// in `current`'s input order) and moves the model to the fastest when it
    /// beats the serving one by the margin.
    pub(crate) fn retime(&self, current: &Arc<ModelInstance>, sets: Vec<Vec<Tensor>>) {
        if sets.is_empty() {
            return;
        }
        let started = Instant::now();
        let sel = current.selection();
        let serving = sel.chosen().unwrap_or(current.backend()).to_string();
        let names: Vec<String> = current
            .metadata()
            .inputs
            .iter()
            .map(|i| i.name.clone())
            .collect();
        let Some(serving_time) = time_on(current.first_engine(), &current.spec, &names, &sets)
        else {
            tracing::info!(model = %current.name(), "re-timing skipped: the serving engine failed on the requests' inputs");
            return;
        };
        let mut times = vec![(serving.clone(), serving_time)];
        let mut best: Option<(Duration, Candidate, Box<dyn LoadedModel>)> = None;
        let others = compared(sel).into_iter().filter(|b| *b != serving);
        for backend in others {
            let Some(candidate) = self
                .inner
                .loader
                .backends
                .resolve(Some(&[backend]))
                .ok()
                .and_then(|mut c| c.pop())
            else {
                continue;
            };
            let source = anemone_core::ModelSource::from_path(&current.spec.path);
            let Ok(model) = self.try_candidate(&current.spec, &source, &candidate) else {
                continue;
            };
            let Some(t) = time_on(&*model, &current.spec, &names, &sets) else {
                continue;
            };
            times.push((candidate.label.clone(), t));
            if best.as_ref().is_none_or(|(b, ..)| t < *b) {
                best = Some((t, candidate, model));
            }
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let figures: Vec<String> = times
            .iter()
            .map(|(b, t)| format!("{b} {:.0} µs", us(*t)))
            .collect();
        {
            let mut st = self.inner.monitor.lock();
            for (backend, t) in &times {
                st.retimed
                    .insert((current.name().into(), backend.clone()), t.as_secs_f64());
            }
        }
        let margin = self.inner.monitor.retime.margin.max(1.0);
        let Some((t, candidate, model)) =
            best.filter(|(t, ..)| t.as_secs_f64() * margin < serving_time.as_secs_f64())
        else {
            tracing::info!(model = %current.name(), backend = %serving, shapes = sets.len(), "re-timed on real requests ({}); it stays", figures.join(", "));
            return;
        };
        if current.switching.swap(true, Ordering::AcqRel) {
            return; // a fallback owns the model now
        }
        let to = candidate.label.clone();
        let detail = format!(
            "re-timed on {} real request shape(s): {}",
            sets.len(),
            figures.join(", ")
        );
        let result = self.move_to(current, candidate, model, t, &times, &detail, started);
        current.switching.store(false, Ordering::Release);
        match result {
            Ok(()) => {
                self.inner
                    .monitor
                    .count_move(current.name(), &serving, &to, "retimed");
                tracing::warn!(model = %current.name(), version = current.version(), from = %serving, %to, "moved to a faster engine: {detail}");
            }
            Err(e) => {
                tracing::error!(model = %current.name(), %to, "re-timing move not installed: {e}")
            }
        }
    }

    /// Installs `model` (on `candidate`) in place of `current`, with the
    /// traffic timings in the selection.
    #[allow(clippy::too_many_arguments)]
    fn move_to(
        &self,
        current: &Arc<ModelInstance>,
        candidate: Candidate,
        model: Box<dyn LoadedModel>,
        time: Duration,
        times: &[(String, Duration)],
        detail: &str,
        started: Instant,
    ) -> Result<(), String> {
        let sel = current.selection();
        let serving = sel.chosen().unwrap_or(current.backend()).to_string();
        let us = |label: &str| {
            times
                .iter()
                .find(|(b, _)| b == label)
                .map(|(_, t)| t.as_secs_f64() * 1e6)
        };
        let mut attempts = vec![Attempt {
            backend: candidate.label.clone(),
            outcome: Outcome::Chosen,
            warmup_us: Some(time.as_secs_f64() * 1e6),
        }];
        for a in &sel.attempts {
            if a.backend == candidate.label {
                continue;
            }
            let mut a = a.clone();
            if a.backend == serving {
                a.outcome = Outcome::Slower;
            }
            if let Some(t) = us(&a.backend) {
                a.warmup_us = Some(t);
            }
            attempts.push(a);
        }
        let mut standby: Vec<Candidate> = self
            .inner
            .loader
            .backends
            .resolve(Some(std::slice::from_ref(&serving)))
            .map_err(|e| e.to_string())?;
        standby.extend(
            current
                .standby
                .iter()
                .filter(|c| c.label != candidate.label)
                .cloned(),
        );
        let selection = Selection {
            mode: sel.mode,
            attempts,
            fallback_from: None,
            moved: Some(Move {
                from: serving,
                reason: "retimed".into(),
                detail: detail.to_string(),
            }),
        };
        let picked = Picked {
            engines: vec![model],
            chosen: candidate,
            selection,
            standby,
            hot: None,
        };
        self.install(
            current.spec.clone(),
            picked,
            started.elapsed(),
            Some(current),
        )
        .map(|_| ())
        .map_err(|e| e.chain_string())
    }
}

/// The engines the load compared: those timed, those whose synthetic warm-up
/// failed (a model whose inputs must hold real values, such as a sample
/// rate), and the one chosen among them; empty when nothing was compared.
fn compared(selection: &Selection) -> Vec<String> {
    let in_comparison = |a: &&Attempt| {
        a.warmup_us.is_some()
            || matches!(&a.outcome, Outcome::Skipped { reason } if reason.starts_with(WARMUP_FAILED))
    };
    if !selection.attempts.iter().any(|a| in_comparison(&a)) {
        return Vec::new();
    }
    selection
        .attempts
        .iter()
        .filter(|a| in_comparison(a) || a.outcome == Outcome::Chosen)
        .map(|a| a.backend.clone())
        .collect()
}

/// The median time of `engine` over the request sets (each named by the
/// serving engine's input order), or `None` when it cannot run them.
fn time_on(
    engine: &dyn LoadedModel,
    spec: &ModelSpec,
    names: &[String],
    sets: &[Vec<Tensor>],
) -> Option<Duration> {
    let meta = declared_metadata(engine.metadata(), spec.declared_inputs.as_deref());
    let ordered: Vec<Vec<Tensor>> = sets
        .iter()
        .map(|set| {
            order_inputs(
                &meta,
                names.iter().cloned().zip(set.iter().cloned()).collect(),
            )
        })
        .collect::<Result<_, _>>()
        .ok()?;
    match catch_unwind(AssertUnwindSafe(|| {
        crate::tuning::time_runs(engine, &ordered)
    })) {
        Ok(Ok(t)) => Some(t),
        _ => None,
    }
}
