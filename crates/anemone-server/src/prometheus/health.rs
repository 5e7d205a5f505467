//! The health monitor's metrics (docs/OBSERVABILITY.md, "Health monitor"):
//! each model's state and figures, state changes, memory, re-probes, moves
//! and re-timing.

use super::Family;
use anemone_runtime::MetricsSnapshot;
use std::fmt::Write;

/// The states a model's `anemone_model_health_state` gauge has a series for.
const STATES: [&str; 2] = ["ready", "degraded"];

/// Renders the monitor's families.
pub(super) fn render(f: &mut Family<'_>, m: &MetricsSnapshot) {
    let s = &m.monitor;
    f.header(
        "anemone_health_monitor_enabled",
        "gauge",
        "1 while the health monitor judges models (the monitoring switch)",
    );
    let _ = writeln!(
        f.out,
        "anemone_health_monitor_enabled {}",
        u8::from(s.enabled)
    );
    f.header(
        "anemone_model_health_state",
        "gauge",
        "1 for the state the health monitor gives each model version (ready, degraded), 0 for the others",
    );
    for w in &s.models {
        let version = w.version.to_string();
        let current = if w.degraded.is_some() || s.memory_pressure.is_some() {
            "degraded"
        } else {
            "ready"
        };
        for state in STATES {
            f.sample(
                "anemone_model_health_state",
                &[("model", &w.name), ("version", &version), ("state", state)],
                u8::from(state == current),
            );
        }
    }
    f.header(
        "anemone_model_health_transitions_total",
        "counter",
        "Health state changes of each model (from, to: ready, degraded)",
    );
    for ((model, from, to), n) in &s.transitions {
        f.sample(
            "anemone_model_health_transitions_total",
            &[("model", model), ("from", from), ("to", to)],
            n,
        );
    }
    type Figure = fn(&anemone_runtime::monitor::ModelWatch) -> Option<f64>;
    let figures: [(&str, &str, Figure); 3] = [
        (
            "anemone_model_latency_baseline_seconds",
            "Mean engine time of a model's first requests on its backend (the health monitor's baseline)",
            |w| w.baseline_seconds,
        ),
        (
            "anemone_model_latency_trend_seconds",
            "EWMA of the mean engine time over the health monitor's windows",
            |w| w.trend_seconds,
        ),
        (
            "anemone_model_engine_error_ratio",
            "Share of the last judged window's requests that failed in the engine",
            |w| Some(w.error_rate),
        ),
    ];
    for (name, help, get) in figures {
        f.header(name, "gauge", help);
        for w in &s.models {
            if let Some(v) = get(w) {
                f.sample(
                    name,
                    &[("model", &w.name), ("version", &w.version.to_string())],
                    v,
                );
            }
        }
    }
    f.header(
        "anemone_process_resident_memory_bytes",
        "gauge",
        "The process's resident memory at the health monitor's last look",
    );
    let _ = writeln!(
        f.out,
        "anemone_process_resident_memory_bytes {}",
        s.memory.rss
    );
    f.header(
        "anemone_memory_pressure",
        "gauge",
        "1 while resident memory is near --memory-budget or the machine is short of memory (every model is degraded)",
    );
    let _ = writeln!(
        f.out,
        "anemone_memory_pressure {}",
        u8::from(s.memory_pressure.is_some())
    );
    f.header(
        "anemone_backend_reprobes_total",
        "counter",
        "Re-probes of the backend a model fell back from (result: ok, failed)",
    );
    for ((model, backend, result), n) in &s.reprobes {
        f.sample(
            "anemone_backend_reprobes_total",
            &[("model", model), ("backend", backend), ("result", result)],
            n,
        );
    }
    f.header(
        "anemone_model_moves_total",
        "counter",
        "Models the health monitor moved to another backend (reason: recovered, retimed)",
    );
    for ((model, from, to, reason), n) in &s.moves {
        f.sample(
            "anemone_model_moves_total",
            &[
                ("model", model),
                ("from", from),
                ("to", to),
                ("reason", reason),
            ],
            n,
        );
    }
    f.header(
        "anemone_model_retime_seconds",
        "gauge",
        "Median time of each compared engine over a model's first real requests (re-timing)",
    );
    for ((model, backend), secs) in &s.retimed {
        f.sample(
            "anemone_model_retime_seconds",
            &[("model", model), ("backend", backend)],
            secs,
        );
    }
}
