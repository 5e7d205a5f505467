//! Run-time fallback: moving a model off a failing backend onto its next
//! standby candidate while the old instance keeps serving, and the hot
//! standby a model may keep loaded for it. The policies (when to retry, when
//! to leave) are in [`crate::fallback`].

use crate::fallback::{FallbackPolicy, Trigger};
use crate::instance::ModelInstance;
use crate::loader::{HotStandby, Picked};
use crate::manager::Manager;
use crate::selection::{Attempt, Candidate, Fallback, Mode, Outcome, Selection};
use crate::spec::ModelSpec;
use anemone_core::{Error, ModelSource};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Run-time fallbacks by `(model, from, to, reason)`.
type Counts = BTreeMap<(String, String, String, &'static str), u64>;

/// The state of run-time fallback: its policy and what it has done.
pub(crate) struct Failover {
    /// When a model leaves a failing backend.
    pub(crate) policy: FallbackPolicy,
    /// Fallbacks so far; written by fallback threads, read by snapshots.
    pub(crate) counts: Mutex<Counts>,
}

impl Failover {
    /// No fallbacks yet.
    pub(crate) fn new(policy: FallbackPolicy) -> Failover {
        Failover {
            policy,
            counts: Mutex::default(),
        }
    }
}

impl Manager {
    /// Called on every failed request that reached a model: counts backend
    /// errors and starts a fallback when the policy says so.
    pub(crate) fn observe_failure(&self, instance: &Arc<ModelInstance>, e: &Error) {
        let successes = instance.metrics.success_count();
        let Some(trigger) = instance
            .window
            .record(e, successes, &self.inner.failover.policy)
        else {
            return;
        };
        if instance.selection().mode == Mode::Strict
            || instance.standby.is_empty()
            || !self.inner.gates.fallback()
        {
            return;
        }
        if instance.switching.swap(true, Ordering::AcqRel) {
            return; // a fallback is already under way
        }
        let (this, old, detail) = (self.clone(), Arc::clone(instance), e.to_string());
        let spawned = std::thread::Builder::new()
            .name(format!("anemone-fallback-{}", instance.name()))
            .spawn(move || this.fall_back(&old, trigger, detail));
        if let Err(err) = spawned {
            tracing::error!(model = %instance.name(), error = %err, "cannot start a fallback thread");
            instance.switching.store(false, Ordering::Release);
        }
    }

    /// The first standby candidate that loads and passes the warm-up, loaded
    /// now; `None` when none does (the model serves without a hot standby,
    /// and a fallback loads one then, as by default).
    pub(crate) fn load_hot_standby(
        &self,
        spec: &ModelSpec,
        standby: &[Candidate],
    ) -> Option<HotStandby> {
        let source = ModelSource::from_path(&spec.path);
        for candidate in standby {
            match self.try_candidate(spec, &source, candidate) {
                Ok(model) => match crate::warmup::run(spec, &*model) {
                    Ok(()) => {
                        tracing::info!(model = %spec.name, backend = %candidate.label, "hot standby loaded");
                        return Some(HotStandby {
                            label: candidate.label.clone(),
                            model,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(model = %spec.name, backend = %candidate.label, error = %e.chain_string(), "hot standby skipped: its warm-up failed")
                    }
                },
                Err((reason, _)) => {
                    tracing::debug!(model = %spec.name, backend = %candidate.label, %reason, "hot standby candidate skipped")
                }
            }
        }
        None
    }

    /// Loads the model on its next standby candidate while the old instance
    /// keeps serving, then swaps it in.
    fn fall_back(&self, old: &Arc<ModelInstance>, trigger: Trigger, detail: String) {
        let from = old
            .selection()
            .chosen()
            .unwrap_or(old.backend())
            .to_string();
        tracing::warn!(model = %old.name(), version = old.version(), %from, reason = trigger.as_str(), %detail, "backend failing; falling back");
        let started = Instant::now();
        let spec = old.spec.clone();
        let source = ModelSource::from_path(&spec.path);
        let mut attempts = vec![Attempt {
            backend: from.clone(),
            outcome: Outcome::Skipped {
                reason: format!("left at run time ({}): {detail}", trigger.as_str()),
            },
            warmup_us: None,
        }];
        let mut hot = old.hot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut candidates = old.standby.clone().into_iter();
        while let Some(candidate) = candidates.next() {
            // A hot standby is already loaded and warmed up: no load now.
            let loaded = match hot.take_if(|h| h.label == candidate.label) {
                Some(h) => Ok(h.model),
                None => self.try_candidate(&spec, &source, &candidate),
            };
            match loaded {
                Ok(model) => {
                    let to = candidate.label.clone();
                    attempts.push(Attempt {
                        backend: candidate.label.clone(),
                        outcome: Outcome::Chosen,
                        warmup_us: None,
                    });
                    let standby: Vec<Candidate> = candidates.collect();
                    attempts.extend(standby.iter().map(|c| Attempt {
                        backend: c.label.clone(),
                        outcome: Outcome::Standby,
                        warmup_us: None,
                    }));
                    let fallback = Fallback {
                        from: from.clone(),
                        reason: trigger.as_str().into(),
                        detail: detail.clone(),
                    };
                    let selection = Selection {
                        mode: old.selection().mode,
                        attempts,
                        fallback_from: Some(fallback),
                        moved: None,
                    };
                    let picked = Picked {
                        engines: vec![model],
                        chosen: candidate,
                        selection,
                        standby,
                        hot: None,
                    };
                    match self.install(spec, picked, started.elapsed(), Some(old)) {
                        Ok(_) => {
                            self.count_fallback(old.name(), &from, &to, trigger);
                            tracing::warn!(model = %old.name(), version = old.version(), %from, %to, reason = trigger.as_str(), "fell back");
                        }
                        Err(e) => {
                            tracing::error!(model = %old.name(), %to, error = %e.chain_string(), "fallback not installed")
                        }
                    }
                    return;
                }
                Err((reason, _)) => attempts.push(Attempt {
                    backend: candidate.label,
                    outcome: Outcome::Skipped { reason },
                    warmup_us: None,
                }),
            }
        }
        self.count_fallback(old.name(), &from, "none", trigger);
        tracing::error!(model = %old.name(), %from, "no other backend could load the model; it stays where it is");
    }

    fn count_fallback(&self, model: &str, from: &str, to: &str, trigger: Trigger) {
        let mut map = self
            .inner
            .failover
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry((
            model.to_string(),
            from.to_string(),
            to.to_string(),
            trigger.as_str(),
        ))
        .or_default() += 1;
    }

    /// Run-time fallbacks so far: `((model, from, to, reason), count)`; `to` is
    /// `none` when no other backend could take the model.
    pub fn fallbacks(&self) -> Vec<((String, String, String, &'static str), u64)> {
        let map = self
            .inner
            .failover
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}
