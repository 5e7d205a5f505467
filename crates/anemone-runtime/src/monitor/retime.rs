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
        // The kept inputs are the engine's, in its order: a sequence
        // model's controls and state are among them (and a reshaped model's
        // are in its model shapes), so they are named by the engine's
        // inputs, not the request's.
        let names: Vec<String> = current
            .first_engine()
            .metadata()
            .inputs
            .iter()
            .map(|i| i.name.clone())
            .collect();
        type Best = (Duration, Candidate, Option<Box<dyn LoadedModel>>);
        let (serving_time, times, best): (Duration, Vec<(String, Duration)>, Option<Best>) =
            match self.retime_elsewhere(current, &serving, &names, &sets) {
                Some(Some(found)) => found,
                Some(None) => {
                    tracing::info!(model = %current.name(), "re-timing skipped: the serving engine failed on the requests' inputs");
                    return;
                }
                None => {
                    let Some(serving_time) =
                        time_on(current.first_engine(), &current.spec, &names, &sets)
                    else {
                        tracing::info!(model = %current.name(), "re-timing skipped: the serving engine failed on the requests' inputs");
                        return;
                    };
                    let mut times = vec![(serving.clone(), serving_time)];
                    let mut best: Option<Best> = None;
                    let others = compared(sel).into_iter().filter(|b| *b != serving);
                    for backend in others {
                        let Some(candidate) = self.resolve_one(&backend) else {
                            continue;
                        };
                        let source = anemone_core::ModelSource::from_path(&current.spec.path);
                        let Ok(model) = self.try_candidate(&current.spec, &source, &candidate)
                        else {
                            continue;
                        };
                        let Some(t) = time_on(&*model, &current.spec, &names, &sets) else {
                            continue;
                        };
                        times.push((candidate.label.clone(), t));
                        if best.as_ref().is_none_or(|(b, ..)| t < *b) {
                            best = Some((t, candidate, Some(model)));
                        }
                    }
                    (serving_time, times, best)
                }
            };
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
        // Timed in another process: the winner loads here only now.
        let model = match model {
            Some(model) => model,
            None => {
                let source = anemone_core::ModelSource::from_path(&current.spec.path);
                match self.try_candidate(&current.spec, &source, &candidate) {
                    Ok(model) => model,
                    Err((reason, _)) => {
                        tracing::error!(model = %current.name(), to = %candidate.label, "re-timing move not made: the faster engine does not load here: {reason}");
                        return;
                    }
                }
            }
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

    /// One backend of the manager, by name, as a candidate.
    fn resolve_one(&self, backend: &str) -> Option<Candidate> {
        self.inner
            .loader
            .backends
            .resolve(Some(&[backend.to_string()]))
            .ok()
            .and_then(|mut c| c.pop())
    }

    /// Re-times the compared engines on the installed comparer (another
    /// process). `None`: no comparer, or it failed (the caller re-times
    /// here); `Some(None)`: the serving engine failed on the inputs there;
    /// else the serving engine's time, every engine's, and the fastest other.
    #[allow(clippy::type_complexity)]
    fn retime_elsewhere(
        &self,
        current: &Arc<ModelInstance>,
        serving: &str,
        names: &[String],
        sets: &[Vec<Tensor>],
    ) -> Option<
        Option<(
            Duration,
            Vec<(String, Duration)>,
            Option<(Duration, Candidate, Option<Box<dyn LoadedModel>>)>,
        )>,
    > {
        self.inner.loader.comparer.as_ref()?;
        let spec = &current.spec;
        let mut candidates = vec![serving.to_string()];
        candidates.extend(
            compared(current.selection())
                .into_iter()
                .filter(|b| b != serving),
        );
        let job = crate::compare::CompareJob {
            model: spec.name.clone(),
            path: spec.path.clone(),
            candidates,
            threads: spec.threads.or(self.inner.loader.threads),
            settings: spec.settings.clone(),
            declared_inputs: spec.declared_inputs.clone(),
            sets: sets
                .iter()
                .map(|set| names.iter().cloned().zip(set.iter().cloned()).collect())
                .collect(),
        };
        let report = self.compare_elsewhere(&job)?;
        let timed: Vec<(String, Duration)> = report
            .engines
            .iter()
            .filter_map(|(b, t)| match t {
                crate::compare::Timing::Timed(d) => Some((b.clone(), *d)),
                _ => None,
            })
            .collect();
        let Some(serving_time) = timed.iter().find(|(b, _)| b == serving).map(|(_, t)| *t) else {
            return Some(None);
        };
        let best = timed
            .iter()
            .filter(|(b, _)| b != serving)
            .min_by_key(|(_, t)| *t)
            .and_then(|(b, t)| Some((*t, self.resolve_one(b)?, None)));
        Some(Some((serving_time, timed, best)))
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
    // An engine that answered the warm-up unlike ONNX Runtime is not timed
    // again (crate::agreement).
    let in_comparison = |a: &&Attempt| {
        a.warmup_us.is_some()
            || matches!(&a.outcome, Outcome::Skipped { reason }
                if reason.starts_with(WARMUP_FAILED) && !reason.contains(crate::agreement::DIFFERS))
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
