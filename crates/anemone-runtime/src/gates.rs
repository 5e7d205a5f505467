//! Run-time feature gates: switches that turn a whole feature on or off while
//! the server runs, without a restart.
//!
//! Each gate is one atomic flag, read on the path it governs with a relaxed
//! load (a switch takes effect for the requests that start after it). Every
//! gate is on by default.
//!
//! | gate | off means |
//! |---|---|
//! | `batching` | a model with dynamic batching runs its queued requests one per engine call, at once, without waiting `max_queue_delay` for more (its queue, priorities and timeouts still apply) |
//! | `fallback` | a model whose backend fails stays on it: no run-time fallback to another backend (retries of retryable errors still happen) |
//! | `monitoring` | the health monitor stops judging models (`Manager::monitoring`) |
//! | `tracing` | no request is traced (the server's `TraceSettings::sample`) |

use std::sync::atomic::{AtomicBool, Ordering};

/// The run-time feature gates of a [`crate::Manager`] ([`crate::Manager::gates`]).
///
/// ```
/// let gates = anemone_runtime::gates::FeatureGates::default();
/// assert!(gates.batching());
/// gates.set("batching", false).unwrap();
/// assert!(!gates.batching());
/// assert!(gates.set("batchng", true).unwrap_err().contains("did you mean 'batching'"));
/// ```
#[derive(Debug)]
pub struct FeatureGates {
    /// Dynamic batching: forming batches of several requests. By default, on.
    batching: AtomicBool,
    /// The health monitor acting on what it sees. By default, on.
    monitoring: AtomicBool,
    /// Exporting trace spans. By default, on.
    tracing: AtomicBool,
    /// Run-time fallback to another backend. By default, on.
    fallback: AtomicBool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            batching: AtomicBool::new(true),
            monitoring: AtomicBool::new(true),
            tracing: AtomicBool::new(true),
            fallback: AtomicBool::new(true),
        }
    }
}

impl FeatureGates {
    /// Every gate's name, in a fixed order.
    pub const NAMES: [&'static str; 4] = ["batching", "monitoring", "tracing", "fallback"];

    fn flag(&self, name: &str) -> Option<&AtomicBool> {
        Some(match name {
            "batching" => &self.batching,
            "monitoring" => &self.monitoring,
            "tracing" => &self.tracing,
            "fallback" => &self.fallback,
            _ => return None,
        })
    }

    /// Whether dynamic batching forms batches.
    #[inline]
    pub fn batching(&self) -> bool {
        self.batching.load(Ordering::Relaxed)
    }

    /// Whether the health monitor acts (the hook for the monitor's switch).
    #[inline]
    pub fn monitoring(&self) -> bool {
        self.monitoring.load(Ordering::Relaxed)
    }

    /// Whether spans are exported (the hook for the tracing switch).
    #[inline]
    pub fn tracing(&self) -> bool {
        self.tracing.load(Ordering::Relaxed)
    }

    /// Whether a failing model may move to another backend at run time.
    #[inline]
    pub fn fallback(&self) -> bool {
        self.fallback.load(Ordering::Relaxed)
    }

    /// The gate named `name`, or `None` for an unknown name.
    pub fn get(&self, name: &str) -> Option<bool> {
        self.flag(name).map(|f| f.load(Ordering::Relaxed))
    }

    /// Switches the gate named `name`; returns its previous value. An unknown
    /// name is refused with a message listing the gates (and the nearest one).
    pub fn set(&self, name: &str, on: bool) -> Result<bool, String> {
        let flag = self.flag(name).ok_or_else(|| unknown(name))?;
        let before = flag.swap(on, Ordering::Relaxed);
        if before != on {
            tracing::info!(gate = name, on, "feature gate switched");
        }
        Ok(before)
    }

    /// Every gate and its value, in [`FeatureGates::NAMES`] order.
    pub fn snapshot(&self) -> [(&'static str, bool); 4] {
        Self::NAMES.map(|n| (n, self.get(n).unwrap_or(true)))
    }
}

fn unknown(name: &str) -> String {
    let hint = FeatureGates::NAMES
        .iter()
        .find(|n| crate::selection::edit_distance(name, n) <= 2)
        .map_or(".".to_string(), |n| format!("; did you mean '{n}'?"));
    format!(
        "unknown feature gate '{name}'{hint} The gates are {}",
        FeatureGates::NAMES.join(", ")
    )
}

impl crate::Manager {
    /// The run-time feature gates; switching one takes effect for the
    /// requests that start after it.
    pub fn gates(&self) -> &std::sync::Arc<FeatureGates> {
        &self.inner.gates
    }

    /// Changes the global concurrency limit while serving (`None`: no
    /// limit). A thermal throttle in force applies to the new limit too;
    /// requests already admitted finish.
    pub fn set_max_concurrency(&self, limit: Option<usize>) {
        self.inner.global.set_capacity(limit);
        let shown = limit.map_or("none".to_string(), |n| n.to_string());
        tracing::info!(limit = %shown, "global concurrency limit changed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_switch_and_report() {
        let g = FeatureGates::default();
        assert!(g.snapshot().iter().all(|(_, on)| *on));
        assert_eq!(g.set("fallback", false), Ok(true));
        assert!(!g.fallback() && g.batching() && g.monitoring() && g.tracing());
        assert_eq!(g.get("fallback"), Some(false));
        assert_eq!(g.get("nope"), None);
        let e = g.set("nope", true).unwrap_err();
        assert!(
            e.contains("unknown feature gate 'nope'. The gates are batching"),
            "{e}"
        );
        let e = g.set("tracng", true).unwrap_err();
        assert!(e.contains("did you mean 'tracing'? The gates"), "{e}");
    }
}
