//! `/metrics` in Prometheus text format. The one place metric names live.
//!
//! Names follow Triton's meanings under an `anemone_` prefix (per-model
//! families carry `model` and `version` labels) and Prometheus' naming
//! conventions: `_total` on counters, base units in the name (`_seconds`,
//! `_bytes`), never `_count`/`_sum`/`_bucket` outside a histogram. Triton's
//! `nv_inference_exec_count` is `anemone_inference_executions_total`, its
//! `nv_inference_request_duration_us` is
//! `anemone_inference_success_duration_seconds_total` (CHANGELOG lists every rename).

use crate::repository::IndexRow;
use anemone_runtime::metrics::{BatchStat, BUCKET_BOUNDS_US};
use anemone_runtime::MetricsSnapshot;
use std::fmt::Write;

mod health;
pub mod host;
mod per_model;
pub mod triton;

use per_model::{PerModel, PER_MODEL};

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
    }
}

fn mode_name(mode: anemone_runtime::Mode) -> &'static str {
    match mode {
        anemone_runtime::Mode::Ordered => "ordered",
        anemone_runtime::Mode::Strict => "strict",
        anemone_runtime::Mode::Auto => "auto",
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Upper bounds of the batch-size histogram's buckets: powers of two up to
/// 128 (the usual `max_batch_size` range); a last `+Inf` bucket holds the rest.
pub const BATCH_SIZE_BOUNDS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// Requests waiting in one model version's queue, read from
/// `ModelInstance::queued()` when the metrics are rendered.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The model's name.
    pub model: String,
    /// The version.
    pub version: u64,
    /// Requests admitted and waiting for an engine call.
    pub requests: usize,
}

/// Nanoseconds as seconds, Prometheus' base unit.
fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Renders every metric.
pub fn render(m: &MetricsSnapshot, queued: &[Queued], index: &[IndexRow]) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    for c in &PER_MODEL {
        f.header(c.name, "counter", c.help);
        for e in &m.models {
            let version = e.version.to_string();
            let value = match c.nanos {
                true => seconds((c.get)(e)),
                false => (c.get)(e) as f64,
            };
            f.sample(c.name, &[("model", &e.name), ("version", &version)], value);
        }
    }
    let in_flight = "anemone_inference_requests_in_flight";
    f.header(
        in_flight,
        "gauge",
        "Requests in flight: admitted and not finished, waiting or running",
    );
    for e in &m.models {
        let version = e.version.to_string();
        f.sample(
            in_flight,
            &[("model", &e.name), ("version", &version)],
            e.in_flight,
        );
    }
    f.header(
        "anemone_inference_request_failure_total",
        "counter",
        "Failed inference requests, and requests refused before they were queued, by reason",
    );
    for e in &m.models {
        for (kind, n) in &e.metrics.failures {
            f.sample(
                "anemone_inference_request_failure_total",
                &[
                    ("model", &e.name),
                    ("version", &e.version.to_string()),
                    ("reason", kind.as_str()),
                ],
                n,
            );
        }
    }
    f.header(
        "anemone_inference_request_duration_seconds",
        "histogram",
        "Request latency",
    );
    for e in &m.models {
        let v = e.version.to_string();
        let mut cumulative = 0;
        for (i, count) in e.metrics.latency.buckets.iter().enumerate() {
            cumulative += count;
            let le = BUCKET_BOUNDS_US
                .get(i)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            f.sample(
                "anemone_inference_request_duration_seconds_bucket",
                &[("model", &e.name), ("version", &v), ("le", &le)],
                cumulative,
            );
        }
        f.sample(
            "anemone_inference_request_duration_seconds_sum",
            &[("model", &e.name), ("version", &v)],
            e.metrics.latency.sum_ns as f64 / 1e9,
        );
        f.sample(
            "anemone_inference_request_duration_seconds_count",
            &[("model", &e.name), ("version", &v)],
            cumulative,
        );
    }
    batch_sizes(&mut f, m);
    f.header(
        "anemone_pending_requests",
        "gauge",
        "Requests queued for a model and not yet executing (Triton's pending request count)",
    );
    for q in queued {
        f.sample(
            "anemone_pending_requests",
            &[("model", &q.model), ("version", &q.version.to_string())],
            q.requests,
        );
    }
    f.header(
        "anemone_model_memory_bytes",
        "gauge",
        "Bytes each loaded model is charged against the memory budget",
    );
    for e in &m.models {
        f.sample(
            "anemone_model_memory_bytes",
            &[
                ("model", &e.name),
                ("version", &e.version.to_string()),
                ("backend", e.backend),
            ],
            e.memory_bytes,
        );
    }
    f.header(
        "anemone_memory_used_bytes",
        "gauge",
        "Bytes charged by all loaded models",
    );
    let _ = writeln!(f.out, "anemone_memory_used_bytes {}", m.memory_used);
    if let Some(budget) = m.memory_budget {
        f.header("anemone_memory_budget_bytes", "gauge", "The memory budget");
        let _ = writeln!(f.out, "anemone_memory_budget_bytes {budget}");
    }
    if let Some(cache) = &m.cache {
        for (name, kind, help, value) in [
            (
                "anemone_cache_capacity_bytes",
                "gauge",
                "The response cache's bound",
                cache.capacity_bytes,
            ),
            (
                "anemone_cache_bytes",
                "gauge",
                "Bytes held by the response cache",
                cache.bytes,
            ),
            (
                "anemone_cache_entries",
                "gauge",
                "Answers held by the response cache",
                cache.entries,
            ),
            (
                "anemone_cache_evictions_total",
                "counter",
                "Answers evicted from the response cache to make room",
                cache.evictions,
            ),
        ] {
            f.header(name, kind, help);
            let _ = writeln!(f.out, "{name} {value}");
        }
    }
    eviction(&mut f, m);
    comparisons(&mut f, m);
    f.header(
        "anemone_requests_rejected_total",
        "counter",
        "Requests refused before reaching a model, by reason",
    );
    for (kind, n) in &m.rejected {
        f.sample(
            "anemone_requests_rejected_total",
            &[("reason", kind.as_str())],
            n,
        );
    }
    f.header(
        "anemone_backend_available",
        "gauge",
        "1 if the backend's probe passed on this machine, 0 if not",
    );
    for b in &m.backends {
        f.sample(
            "anemone_backend_available",
            &[("backend", b.name), ("tier", b.tier.as_str())],
            u8::from(b.probe.is_available()),
        );
    }
    f.header(
        "anemone_model_backend",
        "gauge",
        "1 for the backend serving each model version, with how it was chosen",
    );
    for e in &m.models {
        f.sample(
            "anemone_model_backend",
            &[
                ("model", &e.name),
                ("version", &e.version.to_string()),
                ("backend", e.selection.chosen().unwrap_or(e.backend)),
                ("mode", mode_name(e.selection.mode)),
            ],
            1,
        );
    }
    f.header(
        "anemone_model_backend_skipped",
        "gauge",
        "1 for each backend a model version's selection skipped, with the reason",
    );
    for e in &m.models {
        for (backend, reason) in e.selection.skipped() {
            let reason: String = reason.chars().take(200).collect();
            f.sample(
                "anemone_model_backend_skipped",
                &[
                    ("model", &e.name),
                    ("version", &e.version.to_string()),
                    ("backend", backend),
                    ("reason", &reason),
                ],
                1,
            );
        }
    }
    f.header(
        "anemone_backend_retries_total",
        "counter",
        "Retries of retryable backend errors",
    );
    for e in &m.models {
        f.sample(
            "anemone_backend_retries_total",
            &[
                ("model", &e.name),
                ("version", &e.version.to_string()),
                ("backend", e.backend),
            ],
            e.retries,
        );
    }
    f.header(
        "anemone_backend_fallbacks_total",
        "counter",
        "Models moved to another backend at run time; to=\"none\" when no other backend could take it",
    );
    for ((model, from, to, reason), n) in &m.fallbacks {
        f.sample(
            "anemone_backend_fallbacks_total",
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
        "anemone_thermal_state",
        "gauge",
        "1 for the machine's thermal state (serious and critical lower the concurrency limit)",
    );
    f.sample("anemone_thermal_state", &[("state", m.thermal.as_str())], 1);
    if let Some(limit) = m.effective_concurrency {
        f.header(
            "anemone_concurrency_limit",
            "gauge",
            "The global concurrency limit in force",
        );
        let _ = writeln!(f.out, "anemone_concurrency_limit {limit}");
    }
    f.header(
        "anemone_model_state",
        "gauge",
        "1 for the state each repository model is in",
    );
    for row in index.iter().filter(|r| !r.state.is_empty()) {
        f.sample(
            "anemone_model_state",
            &[("model", &row.name), ("state", &row.state)],
            1,
        );
    }
    health::render(&mut f, m);
    out
}

/// Where the CPU engines were compared (docs/BACKENDS.md, "Where the CPU
/// engines are compared").
fn comparisons(f: &mut Family<'_>, m: &MetricsSnapshot) {
    const NAME: &str = "anemone_engine_comparisons_total";
    f.header(
        NAME,
        "counter",
        "Comparisons of the CPU engines run in a child process (at load and re-timing); where=fell_back: the child failed and the server compared them itself",
    );
    f.sample(NAME, &[("where", "child")], m.comparisons.elsewhere);
    f.sample(NAME, &[("where", "fell_back")], m.comparisons.fell_back);
}

/// Evictions, on-demand loads and load times (`--eviction lru`); the bytes
/// charged against the budget are `anemone_memory_used_bytes`.
fn eviction(f: &mut Family<'_>, m: &MetricsSnapshot) {
    let e = &m.eviction;
    f.header(
        "anemone_model_evictions_total",
        "counter",
        "Models unloaded to make room for another under the memory budget (--eviction lru)",
    );
    for (model, n) in &e.evictions {
        f.sample("anemone_model_evictions_total", &[("model", model)], n);
    }
    f.header(
        "anemone_model_on_demand_loads_total",
        "counter",
        "Loads of an evicted model started by a request for it (one per load, however many requests waited)",
    );
    for (model, n) in &e.on_demand_loads {
        f.sample(
            "anemone_model_on_demand_loads_total",
            &[("model", model)],
            n,
        );
    }
    f.header(
        "anemone_model_evicted",
        "gauge",
        "1 for each model version evicted now (not resident; the next request loads it again)",
    );
    for g in &e.evicted {
        f.sample(
            "anemone_model_evicted",
            &[("model", &g.name), ("version", &g.version.to_string())],
            1,
        );
    }
    const LOAD: &str = "anemone_model_load_duration_seconds";
    f.header(
        LOAD,
        "histogram",
        "Time each successful model load took (start-up, explicit and on-demand)",
    );
    let mut cumulative = 0;
    for (i, count) in e.load_time.buckets.iter().enumerate() {
        cumulative += count;
        let le = BUCKET_BOUNDS_US
            .get(i)
            .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(f.out, "{LOAD}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(f.out, "{LOAD}_sum {}", e.load_time.sum_ns as f64 / 1e9);
    let _ = writeln!(f.out, "{LOAD}_count {cumulative}");
}

/// `anemone_inference_batch_size`: rows per engine execution, from the
/// per-batch-size counts (its `_count` equals the execution count).
fn batch_sizes(f: &mut Family<'_>, m: &MetricsSnapshot) {
    f.header(
        BATCH_SIZE,
        "histogram",
        "Rows per engine execution (the batch size)",
    );
    for e in &m.models {
        batch_size_histogram(f, &e.name, e.version, &e.metrics.batch_stats);
    }
}

const BATCH_SIZE: &str = "anemone_inference_batch_size";

fn batch_size_histogram(f: &mut Family<'_>, model: &str, version: u64, stats: &[BatchStat]) {
    let v = version.to_string();
    // Every duration of a batch size counts its executions.
    let executions = |b: &BatchStat| b.compute_infer.count;
    let bucket = format!("{BATCH_SIZE}_bucket");
    for bound in BATCH_SIZE_BOUNDS {
        let le = bound.to_string();
        let below: u64 = stats
            .iter()
            .filter(|b| b.batch_size <= bound)
            .map(executions)
            .sum();
        f.sample(
            &bucket,
            &[("model", model), ("version", &v), ("le", &le)],
            below,
        );
    }
    let count: u64 = stats.iter().map(executions).sum();
    let sum: u64 = stats.iter().map(|b| b.batch_size * executions(b)).sum();
    let labels = [("model", model), ("version", v.as_str())];
    f.sample(&bucket, &[labels[0], labels[1], ("le", "+Inf")], count);
    f.sample(&format!("{BATCH_SIZE}_sum"), &labels, sum);
    f.sample(&format!("{BATCH_SIZE}_count"), &labels, count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_runtime::metrics::ModelMetrics;
    use std::time::Duration;

    #[test]
    fn batch_size_histogram_is_cumulative() {
        let m = ModelMetrics::default();
        let ms = Duration::from_millis;
        for size in [1, 3, 1, 200] {
            m.record_execution(size, ms(0), ms(1), ms(0));
        }
        let mut out = String::new();
        let mut f = Family { out: &mut out };
        batch_size_histogram(&mut f, "mlp", 2, &m.snapshot().batch_stats);
        let value = |le: &str| {
            let prefix = format!(
                "anemone_inference_batch_size_bucket{{model=\"mlp\",version=\"2\",le=\"{le}\"}} "
            );
            let line = out.lines().find(|l| l.starts_with(&prefix));
            line.unwrap_or_else(|| panic!("no {prefix} in\n{out}"))[prefix.len()..].to_string()
        };
        assert_eq!(value("1"), "2");
        assert_eq!(value("2"), "2");
        assert_eq!(value("4"), "3");
        assert_eq!(value("128"), "3");
        assert_eq!(value("+Inf"), "4");
        assert!(out
            .lines()
            .any(|l| l == "anemone_inference_batch_size_sum{model=\"mlp\",version=\"2\"} 205"));
        assert!(out
            .lines()
            .any(|l| l == "anemone_inference_batch_size_count{model=\"mlp\",version=\"2\"} 4"));
    }
}
