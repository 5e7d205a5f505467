//! Backend selection: turns a model's preference list into candidates, and
//! records what happened to each one (chosen, skipped and why, measured,
//! standing by for a fallback).
//!
//! The registry of backends is data: [`KNOWN_BACKENDS`] names every backend
//! anemone has, built into this binary or not, and [`ALIASES`] maps short
//! names such as `coreml-ane` to a backend plus a setting. Everything the
//! selection decides is kept in a [`Selection`] that the server shows in the
//! model metadata, the repository index, `anemone models` and the metrics.

use anemone_core::{Backend, Error, Probe, Result};
use std::sync::{Arc, OnceLock};

/// The preference-list entry that asks for load-time tuning: load the top
/// candidates, time a warm-up on each and keep the fastest.
pub const AUTO: &str = "auto";

/// Every backend anemone has, and how to get it into a build that lacks it.
pub const KNOWN_BACKENDS: &[(&str, &str)] = &[
    ("coreml", "it needs macOS and the cargo feature `coreml`"),
    (
        "tract-metal",
        "it needs macOS and the cargo feature `metal`",
    ),
    ("tract-cuda", "it needs Linux and the cargo feature `cuda`"),
    (
        "onnxruntime",
        "it needs the cargo feature `onnxruntime` (on by default)",
    ),
    ("tract-cpu", "it is always built in"),
    (
        "python",
        "it is always built in (it runs Triton Python models with ANEMONE_PYTHON or python3)",
    ),
];

/// A short name for a backend with one setting.
#[derive(Debug, Clone, Copy)]
pub struct Alias {
    /// The name used in a preference list.
    pub name: &'static str,
    /// The backend it stands for.
    pub backend: &'static str,
    /// The setting it adds, `(key, value)`.
    pub setting: (&'static str, &'static str),
}

/// Short names accepted in preference lists.
pub const ALIASES: &[Alias] = &[
    Alias {
        name: "coreml-ane",
        backend: "coreml",
        setting: ("coreml.compute_units", "ane"),
    },
    Alias {
        name: "coreml-gpu",
        backend: "coreml",
        setting: ("coreml.compute_units", "gpu"),
    },
    Alias {
        name: "coreml-cpu",
        backend: "coreml",
        setting: ("coreml.compute_units", "cpu"),
    },
    Alias {
        name: "coreml-all",
        backend: "coreml",
        setting: ("coreml.compute_units", "all"),
    },
];

/// The backends of a manager, with each probe run once and kept.
pub(crate) struct BackendSet {
    backends: Vec<Arc<dyn Backend>>,
    probes: Vec<OnceLock<Probe>>,
}

impl BackendSet {
    pub(crate) fn new(backends: Vec<Arc<dyn Backend>>) -> BackendSet {
        let probes = backends.iter().map(|_| OnceLock::new()).collect();
        BackendSet { backends, probes }
    }

    pub(crate) fn all(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    /// The backend's probe, run the first time it is asked for.
    pub(crate) fn probe(&self, index: usize) -> &Probe {
        self.probes[index].get_or_init(|| self.backends[index].probe())
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name() == name)
    }

    /// Turns a preference list into candidates, in order. `None` means every
    /// backend of the set, in its order. Names anemone knows but this build
    /// lacks become candidates that will be skipped with the reason; names
    /// nobody knows are a configuration error.
    pub(crate) fn resolve(&self, names: Option<&[String]>) -> Result<Vec<Candidate>> {
        let Some(names) = names else {
            return Ok((0..self.backends.len())
                .map(|i| self.candidate(i, self.backends[i].name(), None))
                .collect());
        };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let (backend, setting) = match ALIASES.iter().find(|a| a.name == name) {
                Some(alias) => (alias.backend, Some(alias.setting)),
                None => (name.as_str(), None),
            };
            if let Some(i) = self.index_of(backend) {
                out.push(self.candidate(i, name, setting));
            } else if let Some((_, how)) =
                KNOWN_BACKENDS.iter().find(|(known, _)| *known == backend)
            {
                out.push(Candidate {
                    label: name.clone(),
                    index: None,
                    settings: Vec::new(),
                    unbuilt: Some(format!("not built into this binary: {how}")),
                });
            } else {
                return Err(Error::Config(unknown_backend(name, self)));
            }
        }
        Ok(out)
    }

    fn candidate(&self, index: usize, label: &str, setting: Option<(&str, &str)>) -> Candidate {
        Candidate {
            label: label.to_string(),
            index: Some(index),
            settings: setting
                .map(|(k, v)| vec![(k.to_string(), v.to_string())])
                .unwrap_or_default(),
            unbuilt: None,
        }
    }
}

fn unknown_backend(name: &str, set: &BackendSet) -> String {
    let mut names: Vec<&str> = KNOWN_BACKENDS.iter().map(|(n, _)| *n).collect();
    names.extend(ALIASES.iter().map(|a| a.name));
    names.push(AUTO);
    let built: Vec<&str> = set.backends.iter().map(|b| b.name()).collect();
    let close = names
        .iter()
        .find(|n| edit_distance(n, name) <= 2)
        .map(|n| format!("did you mean '{n}'? "))
        .unwrap_or_default();
    format!(
        "unknown backend '{name}'; {close}anemone knows: {}; this build has: {}",
        names.join(", "),
        built.join(", ")
    )
}

/// Levenshtein distance, for "did you mean" hints (backend and gate names).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// One entry of a preference list, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// The name as the preference list gave it (`coreml-ane`, `tract-cpu`).
    pub(crate) label: String,
    /// Index into the [`BackendSet`], if built in.
    pub(crate) index: Option<usize>,
    /// Settings the alias adds.
    pub(crate) settings: Vec<(String, String)>,
    /// Why it cannot be used, when it is not built in.
    pub(crate) unbuilt: Option<String>,
}

/// How a model's backend was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The first candidate that loads, in preference order; later ones stand
    /// by. With the default order (no list given), when it reaches the CPU
    /// engines and several can load the model, each is timed on a warm-up and
    /// the fastest serves.
    Ordered,
    /// Only the first candidate; no fallback at load or at run time.
    Strict,
    /// Every candidate that loads is timed on a warm-up; the fastest serves.
    Auto,
}

/// What happened to one candidate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It serves the model.
    Chosen,
    /// It was not used, and why.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It loaded but was slower than the chosen one (auto mode); it stands by.
    Slower,
    /// It was not tried because an earlier one loaded; it stands by for a fallback.
    Standby,
}

/// One candidate and its outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    /// The backend, as named in the preference list.
    pub backend: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Median warm-up inference time in microseconds (auto mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_us: Option<f64>,
}

/// Everything the selection decided for one model version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Selection {
    /// How the backend was chosen.
    pub mode: Mode,
    /// Every candidate, in preference order (in auto mode: fastest first).
    pub attempts: Vec<Attempt>,
    /// When the model came here through a fallback at run time: the backend it
    /// left and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<Fallback>,
    /// When the health monitor moved the model here (back to the backend it
    /// had left, or to an engine faster on real traffic): from where and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<Move>,
}

/// A move the health monitor made (docs/OBSERVABILITY.md, "Health monitor").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    /// The backend the model left.
    pub from: String,
    /// `recovered`: back to the backend it had fallen back from, which works
    /// again; `retimed`: to an engine clearly faster on its real requests.
    pub reason: String,
    /// The figures.
    pub detail: String,
}

/// A move from one backend to another at run time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fallback {
    /// The backend the model left.
    pub from: String,
    /// `device_lost` or `error_rate`.
    pub reason: String,
    /// The error that tipped it.
    pub detail: String,
}

impl Selection {
    /// The label of the chosen candidate.
    pub fn chosen(&self) -> Option<&str> {
        self.attempts
            .iter()
            .find(|a| a.outcome == Outcome::Chosen)
            .map(|a| a.backend.as_str())
    }

    /// Candidates skipped, with their reasons.
    pub fn skipped(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attempts.iter().filter_map(|a| match &a.outcome {
            Outcome::Skipped { reason } => Some((a.backend.as_str(), reason.as_str())),
            _ => None,
        })
    }

    /// Whether a candidate was skipped for failing its synthetic warm-up.
    fn warmup_failed(&self) -> bool {
        self.skipped()
            .any(|(_, reason)| reason.starts_with(WARMUP_FAILED))
    }

    /// One line for humans: `on onnxruntime (auto: 812 µs; tract-cpu 2150 µs); skipped tract-cuda: ...`.
    pub fn summary(&self) -> String {
        let mut out = format!("on {}", self.chosen().unwrap_or("?"));
        let timed: Vec<String> = self
            .attempts
            .iter()
            .filter_map(|a| a.warmup_us.map(|us| format!("{} {us:.0} µs", a.backend)))
            .collect();
        let retimed = self.moved.as_ref().is_some_and(|m| m.reason == "retimed");
        if retimed {
            out.push_str(&format!(
                " (fastest on real requests, median: {})",
                timed.join(", ")
            ));
        } else if self.mode == Mode::Auto && timed.is_empty() {
            out.push_str(
                " (auto: the warm-up failed on every engine, so the first that loaded serves; \
                 give the model a model_warmup sample it can run to time them)",
            );
        } else if self.mode == Mode::Ordered && timed.is_empty() && self.warmup_failed() {
            // The default order compared the CPU engines, and none could run
            // the synthetic warm-up (an input that must hold real sizes).
            out.push_str(
                " (the warm-up failed on every CPU engine, so the first that loaded serves; \
                 give the model a model_warmup sample it can run to time them)",
            );
        } else if self.mode == Mode::Auto {
            out.push_str(&format!(" (auto, warm-up median: {})", timed.join(", ")));
        } else if !timed.is_empty() {
            out.push_str(&format!(
                " (fastest CPU engine, warm-up median: {})",
                timed.join(", ")
            ));
        }
        if self.mode == Mode::Strict {
            out.push_str(" (strict)");
        }
        if let Some(f) = &self.fallback_from {
            out.push_str(&format!(
                "; fell back from {} ({}: {})",
                f.from, f.reason, f.detail
            ));
        }
        if let Some(m) = &self.moved {
            out.push_str(&format!(
                "; moved from {} ({}: {})",
                m.from, m.reason, m.detail
            ));
        }
        for (backend, reason) in self.skipped() {
            out.push_str(&format!("; skipped {backend}: {reason}"));
        }
        let standby: Vec<&str> = self
            .attempts
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Standby | Outcome::Slower))
            .map(|a| a.backend.as_str())
            .collect();
        if !standby.is_empty() {
            out.push_str(&format!("; standing by: {}", standby.join(", ")));
        }
        out
    }
}

/// How the reason of a candidate that loaded but failed its synthetic
/// warm-up begins (auto mode, and the CPU engines of the default order).
pub(crate) const WARMUP_FAILED: &str = "loaded, but the warm-up failed";

/// The probe's reason when unavailable.
pub(crate) fn unavailable(probe: &Probe) -> Option<&str> {
    match probe {
        Probe::Unavailable { reason } => Some(reason),
        Probe::Available { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("tract-cpu", "tract-cpu"), 0);
        assert_eq!(edit_distance("tract-cpu", "tract-gpu"), 1);
        assert_eq!(edit_distance("onnxruntime", "onxruntime"), 1);
        assert_eq!(edit_distance("abc", ""), 3);
    }

    #[test]
    fn aliases_name_known_backends() {
        for alias in ALIASES {
            assert!(
                KNOWN_BACKENDS.iter().any(|(n, _)| *n == alias.backend),
                "{}",
                alias.name
            );
        }
    }
}
