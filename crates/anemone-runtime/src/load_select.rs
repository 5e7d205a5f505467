//! How the loader picks among a model's candidates: the first that loads
//! (ordered and strict modes) or the fastest on a warm-up (the CPU engines
//! of the default order, and `auto`). `loader.rs` calls these between
//! building the candidates and installing the winner.

use crate::loader::{no_backend, Picked};
use crate::manager::Manager;
use crate::scheduler::panic_message;
use crate::selection::{self, Attempt, Candidate, Mode, Outcome, Selection};
use crate::spec::ModelSpec;
use anemone_core::{Error, LoadedModel, ModelSource, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

impl Manager {
    /// Whether a candidate is a built-in CPU engine.
    pub(crate) fn is_cpu(&self, candidate: &Candidate) -> bool {
        candidate.index.is_some_and(|i| {
            matches!(
                self.inner.loader.backends.all()[i].tier(),
                anemone_core::Tier::OptimisedCpu | anemone_core::Tier::PortableCpu
            )
        })
    }

    /// Ordered and strict modes: the first candidate that loads serves; later
    /// ones stand by (ordered) or are left out (strict).
    pub(crate) fn select_first(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        candidates: Vec<Candidate>,
        mode: Mode,
        time_cpu: bool,
    ) -> Result<Picked> {
        let mut attempts = Vec::new();
        let mut errors = Vec::new();
        let mut candidates = candidates.into_iter().peekable();
        while let Some(candidate) = candidates.next() {
            if time_cpu
                && self.is_cpu(&candidate)
                && candidates.peek().is_some_and(|c| self.is_cpu(c))
            {
                // The default order reached the CPU engines and there are
                // several: keep the faster one for this model (a warm-up each).
                let mut cpu = vec![candidate];
                while let Some(next) = candidates.next_if(|c| self.is_cpu(c)) {
                    cpu.push(next);
                }
                let rest: Vec<Candidate> = candidates.collect();
                // Compared in another process when a comparer is installed.
                let picked = match self.select_fastest_elsewhere(spec, source, &cpu) {
                    Some(picked) => Ok(picked),
                    None => self.select_fastest(spec, source, cpu),
                };
                return match picked {
                    Ok(mut picked) => {
                        attempts.append(&mut picked.selection.attempts);
                        attempts.extend(rest.iter().map(|c| Attempt {
                            backend: c.label.clone(),
                            outcome: Outcome::Standby,
                            warmup_us: None,
                        }));
                        picked.standby.extend(rest);
                        picked.selection = Selection {
                            mode,
                            attempts,
                            fallback_from: None,
                            moved: None,
                        };
                        Ok(picked)
                    }
                    Err(Error::NoBackend {
                        attempts: tried, ..
                    }) => {
                        let mut all: Vec<(String, String)> = attempts
                            .into_iter()
                            .filter_map(|a| match a.outcome {
                                Outcome::Skipped { reason } => Some((a.backend, reason)),
                                _ => None,
                            })
                            .collect();
                        all.extend(tried);
                        Err(Error::NoBackend {
                            path: source.path.clone(),
                            attempts: all,
                        })
                    }
                    Err(e) if attempts.is_empty() => Err(e),
                    Err(e) => {
                        attempts.push(Attempt {
                            backend: "cpu engines".into(),
                            outcome: Outcome::Skipped {
                                reason: e.chain_string(),
                            },
                            warmup_us: None,
                        });
                        errors.push(e);
                        Err(no_backend(source, attempts, errors))
                    }
                };
            }
            match self.try_candidate(spec, source, &candidate) {
                Ok(model) => {
                    attempts.push(Attempt {
                        backend: candidate.label.clone(),
                        outcome: Outcome::Chosen,
                        warmup_us: None,
                    });
                    let standby: Vec<Candidate> = if mode == Mode::Strict {
                        Vec::new()
                    } else {
                        candidates.collect()
                    };
                    attempts.extend(standby.iter().map(|c| Attempt {
                        backend: c.label.clone(),
                        outcome: Outcome::Standby,
                        warmup_us: None,
                    }));
                    return Ok(Picked {
                        engines: vec![model],
                        chosen: candidate,
                        selection: Selection {
                            mode,
                            attempts,
                            fallback_from: None,
                            moved: None,
                        },
                        standby,
                        hot: None,
                    });
                }
                Err((_, Some(e @ Error::Config(_)))) => return Err(config_error(spec, e)),
                Err((reason, error)) => {
                    if mode == Mode::Strict {
                        return Err(error.unwrap_or_else(|| Error::Unavailable {
                            what: format!("backend {} (strict mode)", candidate.label),
                            reason,
                        }));
                    }
                    attempts.push(Attempt {
                        backend: candidate.label,
                        outcome: Outcome::Skipped { reason },
                        warmup_us: None,
                    });
                    errors.extend(error);
                }
            }
        }
        Err(no_backend(source, attempts, errors))
    }

    /// Auto mode: load every candidate, time a warm-up on each, keep the
    /// fastest; the others stand by, fastest first.
    pub(crate) fn select_fastest(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        candidates: Vec<Candidate>,
    ) -> Result<Picked> {
        let mut skipped = Vec::new();
        let mut errors = Vec::new();
        let mut timed: Vec<(Duration, Candidate, Box<dyn LoadedModel>)> = Vec::new();
        // Each timed engine's answer to the first warm-up set, for the
        // agreement check (crate::agreement).
        let mut answers = crate::agreement::Answers::default();
        let mut untimed: Vec<(String, Candidate, Box<dyn LoadedModel>)> = Vec::new();
        for candidate in candidates {
            match self.try_candidate(spec, source, &candidate) {
                Ok(model) => {
                    let timed_run = || {
                        let sets = match spec.warmup.is_empty() {
                            true => vec![crate::warmup::synthetic_sequence(spec, &*model)?],
                            // The model's own samples: the shapes it will see.
                            false => crate::warmup::ordered(spec, &*model)?,
                        };
                        let median = crate::tuning::time_runs(&*model, &sets)?;
                        let answer = match sets.first() {
                            Some(first) => model.infer(first)?,
                            None => Vec::new(),
                        };
                        Ok::<_, Error>((median, answer))
                    };
                    match catch_unwind(AssertUnwindSafe(timed_run)) {
                        Ok(Ok((median, answer))) => {
                            tracing::info!(model = %spec.name, backend = %candidate.label, median_us = median.as_micros() as u64, "auto: warm-up timed");
                            let names = model.metadata().outputs.iter().map(|o| o.name.clone());
                            answers.push(&candidate.label, answer, names.collect());
                            timed.push((median, candidate, model));
                        }
                        Ok(Err(e)) => untimed.push((e.chain_string(), candidate, model)),
                        Err(panic) => untimed.push((
                            format!("panicked: {}", panic_message(&*panic)),
                            candidate,
                            model,
                        )),
                    }
                }
                Err((_, Some(e @ Error::Config(_)))) => return Err(config_error(spec, e)),
                Err((reason, error)) => {
                    skipped.push(Attempt {
                        backend: candidate.label,
                        outcome: Outcome::Skipped { reason },
                        warmup_us: None,
                    });
                    errors.extend(error);
                }
            }
        }
        // An engine that answers the warm-up unlike ONNX Runtime does not serve.
        if let Some(why) = answers.suspect_differs(&spec.name) {
            if let Some(at) =
                (timed.iter()).position(|(_, c, _)| c.label == crate::agreement::SUSPECT)
            {
                let (_, candidate, model) = timed.remove(at);
                untimed.push((why, candidate, model));
            }
        }
        timed.sort_by_key(|(median, ..)| *median);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let mut attempts = Vec::new();
        let mut standby = Vec::new();
        let mut chosen: Option<(Box<dyn LoadedModel>, Candidate)> = None;
        for (median, candidate, model) in timed {
            let outcome = if chosen.is_none() {
                chosen = Some((model, candidate.clone()));
                Outcome::Chosen
            } else {
                standby.push(candidate.clone());
                Outcome::Slower
            };
            attempts.push(Attempt {
                backend: candidate.label,
                outcome,
                warmup_us: Some(us(median)),
            });
        }
        // A model whose synthetic warm-up fails everywhere (inputs that must hold
        // real values) still serves on the first candidate that loaded.
        for (reason, candidate, model) in untimed {
            if chosen.is_none() {
                attempts.push(Attempt {
                    backend: candidate.label.clone(),
                    outcome: Outcome::Chosen,
                    warmup_us: None,
                });
                chosen = Some((model, candidate));
                continue;
            }
            attempts.push(Attempt {
                backend: candidate.label,
                outcome: Outcome::Skipped {
                    reason: format!("{}: {reason}", selection::WARMUP_FAILED),
                },
                warmup_us: None,
            });
        }
        attempts.extend(skipped);
        match chosen {
            Some((model, candidate)) => Ok(Picked {
                engines: vec![model],
                chosen: candidate,
                selection: Selection {
                    mode: Mode::Auto,
                    attempts,
                    fallback_from: None,
                    moved: None,
                },
                standby,
                hot: None,
            }),
            None => Err(no_backend(source, attempts, errors)),
        }
    }
}

/// A backend's refusal of the model's own settings (a value it cannot
/// read): the user's to fix, so the load fails rather than moving the
/// model to the next backend, which would hide the mistake.
fn config_error(spec: &ModelSpec, e: Error) -> Error {
    match e {
        Error::Config(message) => Error::Config(format!("model '{}': {message}", spec.name)),
        other => other,
    }
}
