//! The health monitor's settings: thresholds, the re-probe backoff and
//! re-timing on real traffic. Every default is documented where it is set.

use std::time::Duration;

/// When the health monitor reports a model DEGRADED.
///
/// The monitor reads counters the request path keeps anyway (engine time,
/// successes, backend errors), once per [`HealthPolicy::interval`], so
/// serving pays nothing for it. See docs/OBSERVABILITY.md, "Health monitor".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthPolicy {
    /// Whether the monitor runs at all (its thread still ticks, and does
    /// nothing while off). By default, on. [`crate::Manager::set_monitoring`]
    /// switches it at run time.
    pub enabled: bool,
    /// How often the monitor looks at every model. By default, 1 second.
    pub interval: Duration,
    /// Requests whose mean engine time becomes a model's baseline (counted
    /// from its load, or from its move to another backend). By default, 20.
    pub baseline_requests: u64,
    /// Requests a window needs before it is judged; with fewer, the window
    /// stays open and the model keeps its state. By default, 10.
    pub min_requests: u64,
    /// DEGRADED when the latency trend (an EWMA over windows of the mean
    /// engine time) exceeds the baseline by this factor. By default, 3.0.
    pub latency_ratio: f64,
    /// DEGRADED when at least this share of a window's requests failed in the
    /// engine (client errors, overload and timeouts do not count). By default, 0.2.
    pub error_rate: f64,
    /// Memory pressure when the process's resident memory has grown since the
    /// manager started by this share of `--memory-budget` (with a budget), or
    /// the machine's available memory falls below `1 - memory_ratio` of its total. Every model is then
    /// reported DEGRADED with the figures. By default, 0.95.
    pub memory_ratio: f64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            enabled: true,
            interval: Duration::from_secs(1),
            baseline_requests: 20,
            min_requests: 10,
            latency_ratio: 3.0,
            error_rate: 0.2,
            memory_ratio: 0.95,
        }
    }
}

/// How a model that fell back to a later backend returns to the one it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Whether the backend a model left is re-probed at all. By default, on.
    pub enabled: bool,
    /// The wait between the fallback and the first re-probe; it doubles after
    /// each re-probe that fails. By default, 30 seconds.
    pub backoff: Duration,
    /// The longest wait between two re-probes. By default, 10 minutes.
    pub max_backoff: Duration,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        RecoveryPolicy {
            enabled: true,
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
        }
    }
}

impl RecoveryPolicy {
    /// The wait before re-probe number `n` (0-based): `backoff` doubled `n`
    /// times, at most `max_backoff`.
    pub fn wait_before(&self, n: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32 << n.min(20))
            .min(self.max_backoff.max(self.backoff))
    }
}

/// Re-timing the CPU engines on the shapes of a model's first real requests,
/// for models that declare no `model_warmup` (their engines were compared on
/// inputs whose dynamic dimensions are 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetimePolicy {
    /// Whether models are re-timed at all (a model may also opt out: its
    /// [`crate::ModelSpec::retime`]). By default, on.
    pub enabled: bool,
    /// Requests whose inputs are kept (up to [`MAX_SHAPES`] distinct shapes)
    /// before the engines are timed on them. By default, 16.
    pub after_requests: u64,
    /// Another engine must be this many times faster than the serving one for
    /// the model to move (a wide margin, so timing noise never flaps a
    /// model between engines). By default, 1.3.
    pub margin: f64,
}

/// Distinct input shapes kept for re-timing.
pub const MAX_SHAPES: usize = 4;

impl Default for RetimePolicy {
    fn default() -> Self {
        RetimePolicy {
            enabled: true,
            after_requests: 16,
            margin: 1.3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_backoff_doubles_up_to_its_cap() {
        let p = RecoveryPolicy {
            enabled: true,
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(100),
        };
        assert_eq!(p.wait_before(0), Duration::from_secs(30));
        assert_eq!(p.wait_before(1), Duration::from_secs(60));
        assert_eq!(p.wait_before(2), Duration::from_secs(100));
        assert_eq!(p.wait_before(40), Duration::from_secs(100));
    }
}
