//! `anemone serve`'s operations flags: the config file, the metrics port and
//! the run-time feature gates.

use anemone_server::settings::{Setting, Source};
use clap::builder::BoolishValueParser;
use clap::ArgAction;
use std::path::PathBuf;

/// The flags of `anemone serve` that the `ops` part owns.
#[derive(Debug, Clone, clap::Args)]
pub struct OpsArgs {
    /// A TOML file of settings: keys are the long flag names (`max-concurrency = 64`).
    /// The environment and flags override it. By default, none. See docs/CONFIGURATION.md.
    #[arg(long, value_name = "FILE", env = "ANEMONE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Port of a listener serving only Prometheus `/metrics` (as Triton's); 0 picks a free
    /// port (the bound address is printed). Left unset with `--http-port 0`, it is 0 too.
    /// `/metrics` stays on the HTTP port as well.
    #[arg(
        long,
        value_name = "PORT",
        env = "ANEMONE_METRICS_PORT",
        default_value_t = 8002
    )]
    pub metrics_port: u16,

    /// Whether to open the metrics port (`--allow-metrics false`: no metrics port;
    /// `/metrics` stays on the HTTP port).
    #[arg(long, value_name = "BOOL", env = "ANEMONE_ALLOW_METRICS", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value_t = true)]
    pub allow_metrics: bool,

    /// Whether /metrics also has Triton's own families (nv_inference_request_success,
    /// nv_inference_queue_duration_us, nv_cache_num_hits_per_model, ...: Triton's names, labels
    /// and microseconds), so dashboards, alerts and autoscalers built on tritonserver read
    /// anemone unchanged. anemone's own families are there either way.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_TRITON_METRICS", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub triton_metrics: bool,

    /// Whether /metrics has the machine's CPU utilization and memory
    /// (anemone_cpu_utilization_ratio, anemone_host_memory_{total,used}_bytes; with
    /// --triton-metrics also Triton's nv_cpu_*). Read from /proc: Linux only.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_ALLOW_CPU_METRICS", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value_t = true)]
    pub allow_cpu_metrics: bool,

    /// Whether /metrics has each NVIDIA GPU's utilization, memory, power and energy
    /// (anemone_gpu_*; with --triton-metrics also Triton's nv_gpu_* and nv_energy_consumption),
    /// read through the driver's NVML library. No driver, no GPU families.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_ALLOW_GPU_METRICS", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value_t = true)]
    pub allow_gpu_metrics: bool,

    /// How often the CPU and GPU figures are read, in milliseconds (CPU utilization is the
    /// busy share of this interval). Scrapes answer with the last reading.
    #[arg(long, value_name = "MS", env = "ANEMONE_METRICS_INTERVAL_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub metrics_interval_ms: u64,

    /// Feature gate: dynamic batching forms batches (false: a batched model runs its queued
    /// requests one per engine call, at once). Changes at run time.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_GATE_BATCHING", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value_t = true)]
    pub gate_batching: bool,

    /// Feature gate: the health monitor acts on what it sees. Changes at run time.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_GATE_MONITORING", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value_t = true)]
    pub gate_monitoring: bool,

    /// Feature gate: trace spans are exported. Changes at run time.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_GATE_TRACING", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value_t = true)]
    pub gate_tracing: bool,

    /// Feature gate: a model whose backend fails moves to another backend at run time
    /// (false: it stays, and its requests fail). Changes at run time.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_GATE_FALLBACK", action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), default_value_t = true)]
    pub gate_fallback: bool,
}

impl OpsArgs {
    /// The metrics port to open, if any. A server asked for a free HTTP port
    /// (`--http-port 0`) gets a free metrics port too unless one was set, so
    /// that servers started side by side (tests) do not collide on 8002.
    pub fn metrics_port(&self, http_port: u16, settings: &[Setting]) -> Option<u16> {
        let defaulted = settings
            .iter()
            .find(|s| s.key == "metrics-port")
            .is_none_or(|s| s.source == Source::Default);
        let port = if http_port == 0 && defaulted {
            0
        } else {
            self.metrics_port
        };
        self.allow_metrics.then_some(port)
    }

    /// What the CPU and GPU figures' reader is asked to read; `None` when neither.
    pub fn host_metrics(&self) -> Option<anemone_server::host_metrics::HostMetricsOptions> {
        (self.allow_cpu_metrics || self.allow_gpu_metrics).then(|| {
            anemone_server::host_metrics::HostMetricsOptions {
                cpu: self.allow_cpu_metrics,
                gpu: self.allow_gpu_metrics,
                interval: std::time::Duration::from_millis(self.metrics_interval_ms),
            }
        })
    }

    /// Sets the manager's gates to these flags' values.
    pub fn set_gates(&self, gates: &anemone_runtime::gates::FeatureGates) {
        for (name, on) in [
            ("batching", self.gate_batching),
            ("monitoring", self.gate_monitoring),
            ("tracing", self.gate_tracing),
            ("fallback", self.gate_fallback),
        ] {
            // The names are the gates' own.
            let _ = gates.set(name, on);
        }
    }
}
