//! Recovery: a model that fell back to a later backend re-probes the one it
//! left (after [`super::RecoveryPolicy::backoff`], doubling after each
//! failure) and moves back once it loads and answers again.

use crate::instance::ModelInstance;
use crate::loader::Picked;
use crate::manager::Manager;
use crate::scheduler::panic_message;
use crate::selection::{Attempt, Candidate, Fallback, Move, Outcome, Selection};
use crate::spec::ModelSpec;
use anemone_core::{ErrorKind, LoadedModel, ModelSource};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Manager {
    /// Re-probes the backend `current` fell back from; `failed` re-probes
    /// failed before this one. Moves the model back when it works; otherwise
    /// schedules the next re-probe after a doubled wait.
    pub(crate) fn reprobe(&self, current: &Arc<ModelInstance>, failed: u32) {
        let Some(fallback) = current.selection().fallback_from.clone() else {
            return;
        };
        // A fallback under way owns the model; look again at the next tick.
        let result = if current.switching.swap(true, Ordering::AcqRel) {
            Err("a fallback is under way".to_string())
        } else {
            let r = self.move_back(current, &fallback);
            current.switching.store(false, Ordering::Release);
            r
        };
        let monitor = &self.inner.monitor;
        let serving = current.selection().chosen().unwrap_or(current.backend());
        let mut st = monitor.lock();
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        *st.reprobes
            .entry((current.name().into(), fallback.from.clone(), outcome))
            .or_default() += 1;
        match result {
            Ok(()) => {
                *st.moves
                    .entry((
                        current.name().into(),
                        serving.into(),
                        fallback.from.clone(),
                        "recovered",
                    ))
                    .or_default() += 1;
                drop(st);
                tracing::warn!(model = %current.name(), version = current.version(), from = %serving, to = %fallback.from, "backend works again; model moved back");
            }
            Err(why) => {
                let wait = monitor.recovery.wait_before(failed + 1);
                if let Some(w) = st
                    .watches
                    .get_mut(&(current.name().to_string(), current.version()))
                    .filter(|w| w.instance == Arc::as_ptr(current) as usize)
                {
                    w.reprobe = Some((Instant::now() + wait, failed + 1));
                    w.probing = false;
                }
                drop(st);
                tracing::info!(model = %current.name(), backend = %fallback.from, next_in_s = wait.as_secs_f64(), "re-probe failed: {why}");
            }
        }
    }

    /// Loads the model on the backend it left, checks it answers, and swaps
    /// it in for `current`.
    fn move_back(&self, current: &Arc<ModelInstance>, fallback: &Fallback) -> Result<(), String> {
        let started = Instant::now();
        let spec = current.spec.clone();
        let backends = &self.inner.loader.backends;
        let resolve = |label: &str| -> Result<Candidate, String> {
            backends
                .resolve(Some(&[label.to_string()]))
                .map_err(|e| e.to_string())?
                .pop()
                .ok_or_else(|| format!("no backend {label}"))
        };
        let candidate = resolve(&fallback.from)?;
        let source = ModelSource::from_path(&spec.path);
        let model = self
            .try_candidate(&spec, &source, &candidate)
            .map_err(|(reason, _)| reason)?;
        answers(&spec, &*model)?;
        let serving = current
            .selection()
            .chosen()
            .unwrap_or(current.backend())
            .to_string();
        let mut standby = vec![resolve(&serving)?];
        standby.extend(
            current
                .standby
                .iter()
                .filter(|c| c.label != fallback.from)
                .cloned(),
        );
        let mut attempts = vec![Attempt {
            backend: candidate.label.clone(),
            outcome: Outcome::Chosen,
            warmup_us: None,
        }];
        attempts.extend(standby.iter().map(|c| Attempt {
            backend: c.label.clone(),
            outcome: Outcome::Standby,
            warmup_us: None,
        }));
        let selection = Selection {
            mode: current.selection().mode,
            attempts,
            fallback_from: None,
            moved: Some(Move {
                from: serving,
                reason: "recovered".into(),
                detail: format!(
                    "{} works again after the fallback ({}: {})",
                    fallback.from, fallback.reason, fallback.detail
                ),
            }),
        };
        let picked = Picked {
            engines: vec![model],
            chosen: candidate,
            selection,
            standby,
            hot: None,
        };
        self.install(spec, picked, started.elapsed(), Some(current))
            .map(|_| ())
            .map_err(|e| e.chain_string())
    }
}

/// Whether a freshly loaded engine answers: the model's warm-up samples, or
/// one request built from its declared inputs. An error the engine blames on
/// the inputs (a synthetic request may hold values a model refuses) still
/// shows the backend works; a backend error or a panic does not.
fn answers(spec: &ModelSpec, engine: &dyn LoadedModel) -> Result<(), String> {
    if !spec.warmup.is_empty() {
        return crate::warmup::run(spec, engine).map_err(|e| e.chain_string());
    }
    let inputs = crate::tuning::warmup_inputs(engine.metadata());
    match catch_unwind(AssertUnwindSafe(|| engine.infer(&inputs))) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() != ErrorKind::Backend => Ok(()),
        Ok(Err(e)) => Err(e.chain_string()),
        Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
    }
}
