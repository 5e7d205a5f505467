//! The parent side: the default order's CPU engines compared by the
//! installed [`super::EngineComparer`], and only the winner loaded here.

use super::{CompareJob, CompareReport, Timing};
use crate::loader::Picked;
use crate::manager::Manager;
use crate::scheduler::panic_message;
use crate::selection::{Attempt, Candidate, Mode, Outcome, Selection, WARMUP_FAILED};
use crate::spec::ModelSpec;
use anemone_core::{LoadedModel, ModelSource};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Comparisons made by the installed comparer, and those where it failed
/// and the manager compared in its own process instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ComparisonCounts {
    /// Comparisons the comparer answered (at load and when re-timing).
    pub elsewhere: u64,
    /// Comparisons where it failed (error, crash, timeout), so the manager
    /// compared in its own process.
    pub fell_back: u64,
}

impl Manager {
    /// How the comparisons of CPU engines went (see [`ComparisonCounts`]).
    pub fn engine_comparisons(&self) -> ComparisonCounts {
        let c = &self.inner.loader.comparisons;
        ComparisonCounts {
            elsewhere: c[0].load(Ordering::Relaxed),
            fell_back: c[1].load(Ordering::Relaxed),
        }
    }

    /// Runs `job` on the installed comparer. `None`: none is installed, or
    /// it failed (warned and counted), so the caller compares here.
    pub(crate) fn compare_elsewhere(&self, job: &CompareJob) -> Option<CompareReport> {
        let comparer = self.inner.loader.comparer.as_ref()?;
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| comparer.compare(job)))
            .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic))));
        let counts = &self.inner.loader.comparisons;
        match result {
            Ok(report) => {
                counts[0].fetch_add(1, Ordering::Relaxed);
                tracing::info!(model = %job.model, ms = started.elapsed().as_millis() as u64, "CPU engines compared in another process");
                Some(report)
            }
            Err(e) => {
                counts[1].fetch_add(1, Ordering::Relaxed);
                tracing::warn!(model = %job.model, "comparing the CPU engines in another process failed, so they are compared in this one (the engine that loses leaves memory behind): {e}");
                None
            }
        }
    }

    /// The default order's CPU engines compared elsewhere: loads only the
    /// winner here. `None`: no comparer, it failed, or no engine loaded
    /// there (the caller then compares here, which reports the errors).
    pub(crate) fn select_fastest_elsewhere(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        cpu: &[Candidate],
    ) -> Option<Picked> {
        self.inner.loader.comparer.as_ref()?;
        if cpu
            .iter()
            .any(|c| c.index.is_none() || !c.settings.is_empty())
        {
            return None;
        }
        // The comparison process gets the samples as a request sends them;
        // a sequence model's controls and state, and a reshape's shapes,
        // are given to them here (`warmup::ordered`, `synthetic_sequence`).
        if spec.sequence.is_some() || (!spec.reshapes.is_empty() && !spec.warmup.is_empty()) {
            return None;
        }
        let job = CompareJob {
            model: spec.name.clone(),
            path: spec.path.clone(),
            candidates: cpu.iter().map(|c| c.label.clone()).collect(),
            threads: spec.threads.or(self.inner.loader.threads),
            settings: spec.settings.clone(),
            declared_inputs: spec.declared_inputs.clone(),
            sets: spec.warmup.iter().map(|s| s.inputs.clone()).collect(),
        };
        let report = self.compare_elsewhere(&job)?;
        let ranked = report.ranked();
        if ranked.is_empty() {
            return None;
        }
        let find = |label: &str| cpu.iter().find(|c| c.label == label).cloned();
        let us = |t: &Timing| match t {
            Timing::Timed(d) => Some(d.as_secs_f64() * 1e6),
            _ => None,
        };
        let mut attempts = Vec::new();
        let mut standby = Vec::new();
        let mut chosen: Option<(Box<dyn LoadedModel>, Candidate)> = None;
        for (label, timing) in &ranked {
            let candidate = find(label)?;
            if chosen.is_none() {
                let mut ran = candidate.clone();
                if matches!(timing, Timing::Timed(_)) {
                    ran.settings
                        .push((anemone_core::RAN_ELSEWHERE_SETTING.into(), "1".into()));
                }
                match self.try_candidate(spec, source, &ran) {
                    Ok(model) => {
                        attempts.push(Attempt {
                            backend: candidate.label.clone(),
                            outcome: Outcome::Chosen,
                            warmup_us: us(timing),
                        });
                        chosen = Some((model, candidate));
                    }
                    Err((reason, _)) => attempts.push(Attempt {
                        backend: candidate.label,
                        outcome: Outcome::Skipped {
                            reason: format!(
                                "loaded in the comparison process, not in this one: {reason}"
                            ),
                        },
                        warmup_us: us(timing),
                    }),
                }
                continue;
            }
            match timing {
                Timing::Timed(_) => {
                    standby.push(candidate.clone());
                    attempts.push(Attempt {
                        backend: candidate.label,
                        outcome: Outcome::Slower,
                        warmup_us: us(timing),
                    });
                }
                Timing::RunFailed(reason) => attempts.push(Attempt {
                    backend: candidate.label,
                    outcome: Outcome::Skipped {
                        reason: format!("{WARMUP_FAILED}: {reason}"),
                    },
                    warmup_us: None,
                }),
                Timing::LoadFailed(_) => {}
            }
        }
        let (model, candidate) = chosen?;
        attempts.extend(report.engines.iter().filter_map(|(label, t)| match t {
            Timing::LoadFailed(reason) => Some(Attempt {
                backend: label.clone(),
                outcome: Outcome::Skipped {
                    reason: reason.clone(),
                },
                warmup_us: None,
            }),
            _ => None,
        }));
        Some(Picked {
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
        })
    }
}
