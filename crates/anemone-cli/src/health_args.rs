//! `anemone serve`'s health monitor flags (docs/OBSERVABILITY.md, "Health
//! monitor"): thresholds, re-probing after a fallback, re-timing on real traffic.

use anemone_runtime::{HealthPolicy, ManagerBuilder, RecoveryPolicy, RetimePolicy};
use std::time::Duration;

/// The health monitor's flags; every default is the runtime's.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Whether the health monitor judges models (latency trend, engine error rate,
    /// memory pressure) and reports them DEGRADED past its thresholds.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_HEALTH_MONITOR", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub health_monitor: bool,

    /// Milliseconds between two looks of the health monitor.
    #[arg(long, value_name = "MS", env = "ANEMONE_HEALTH_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub health_interval_ms: u64,

    /// Requests whose mean engine time is a model's latency baseline.
    #[arg(long, value_name = "N", env = "ANEMONE_HEALTH_BASELINE_REQUESTS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub health_baseline_requests: u64,

    /// Requests a window needs before the monitor judges it.
    #[arg(long, value_name = "N", env = "ANEMONE_HEALTH_MIN_REQUESTS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub health_min_requests: u64,

    /// DEGRADED when the latency trend exceeds the baseline by this factor (above 1).
    #[arg(
        long,
        value_name = "RATIO",
        env = "ANEMONE_HEALTH_LATENCY_RATIO",
        default_value_t = 3.0
    )]
    pub health_latency_ratio: f64,

    /// DEGRADED when at least this share (0 to 1) of a window's requests failed in the engine.
    #[arg(
        long,
        value_name = "SHARE",
        env = "ANEMONE_HEALTH_ERROR_RATE",
        default_value_t = 0.2
    )]
    pub health_error_rate: f64,

    /// Memory pressure when resident memory has grown since start by this share (0 to 1) of --memory-budget,
    /// or the machine has less than 1 minus it available; every model is then DEGRADED.
    #[arg(
        long,
        value_name = "SHARE",
        env = "ANEMONE_HEALTH_MEMORY_RATIO",
        default_value_t = 0.95
    )]
    pub health_memory_ratio: f64,

    /// Whether a model that fell back to a later backend re-probes the one it left and
    /// moves back when it works again.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_RECOVERY", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub recovery: bool,

    /// Seconds from a fallback to the first re-probe; the wait doubles after each failed one.
    #[arg(long, value_name = "SECS", env = "ANEMONE_RECOVERY_BACKOFF_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub recovery_backoff_secs: u64,

    /// The longest wait between two re-probes, in seconds.
    #[arg(long, value_name = "SECS", env = "ANEMONE_RECOVERY_MAX_BACKOFF_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub recovery_max_backoff_secs: u64,

    /// Whether models without model_warmup have their CPU engines re-timed on their first
    /// real requests, moving to one clearly faster (a model may opt out: parameter retime=false).
    #[arg(long, value_name = "BOOL", env = "ANEMONE_RETIME", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub retime: bool,

    /// Requests whose inputs the re-timing uses.
    #[arg(long, value_name = "N", env = "ANEMONE_RETIME_AFTER_REQUESTS", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub retime_after_requests: u64,

    /// How many times faster another engine must be for the model to move (at least 1).
    #[arg(
        long,
        value_name = "RATIO",
        env = "ANEMONE_RETIME_MARGIN",
        default_value_t = 1.3
    )]
    pub retime_margin: f64,
}

impl HealthArgs {
    /// Refuses ratios that cannot work: a flag mistake (exit 2).
    fn check(&self) -> Result<(), String> {
        let share = |flag: &str, v: f64| match v > 0.0 && v <= 1.0 {
            true => Ok(()),
            false => Err(format!(
                "--{flag} is {v}; give a share above 0 and at most 1 (e.g. 0.2)"
            )),
        };
        share("health-error-rate", self.health_error_rate)?;
        share("health-memory-ratio", self.health_memory_ratio)?;
        if !(self.health_latency_ratio > 1.0 && self.health_latency_ratio.is_finite()) {
            return Err(format!(
                "--health-latency-ratio is {}; give a factor above 1 (e.g. 3)",
                self.health_latency_ratio
            ));
        }
        if !(self.retime_margin >= 1.0 && self.retime_margin.is_finite()) {
            return Err(format!(
                "--retime-margin is {}; give a factor of at least 1 (e.g. 1.3)",
                self.retime_margin
            ));
        }
        Ok(())
    }

    /// Checks the ratios and sets the policies on `builder`.
    pub fn apply(&self, builder: ManagerBuilder) -> anyhow::Result<ManagerBuilder> {
        self.check().map_err(crate::output::mistake)?;
        Ok(builder
            .health(HealthPolicy {
                enabled: self.health_monitor,
                interval: Duration::from_millis(self.health_interval_ms),
                baseline_requests: self.health_baseline_requests,
                min_requests: self.health_min_requests,
                latency_ratio: self.health_latency_ratio,
                error_rate: self.health_error_rate,
                memory_ratio: self.health_memory_ratio,
            })
            .recovery(RecoveryPolicy {
                enabled: self.recovery,
                backoff: Duration::from_secs(self.recovery_backoff_secs),
                max_backoff: Duration::from_secs(self.recovery_max_backoff_secs),
            })
            .retime(RetimePolicy {
                enabled: self.retime,
                after_requests: self.retime_after_requests,
                margin: self.retime_margin,
            }))
    }
}
