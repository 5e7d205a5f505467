//! Triton's own metric families (`nv_inference_*`, and `nv_cache_*` with a
//! response cache), with its names, labels, units (microseconds) and help,
//! as tritonserver 2.51 writes them, for dashboards, alerts and autoscalers
//! built on tritonserver (`--triton-metrics true`). The values are those of
//! anemone's own families: only the names and units differ.

use super::{Family, Queued};
use anemone_core::ErrorKind;
use anemone_runtime::{MetricsSnapshot, ModelMetricsEntry};

type Getter = fn(&ModelMetricsEntry) -> u64;

fn us(ns: u64) -> u64 {
    ns / 1_000
}

/// Triton's failure reason for a kind of failure, or `None` for the kinds
/// Triton refuses before a request reaches its model (a malformed request,
/// an unknown or unavailable model), which it does not count.
fn reason(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::Backend => Some("BACKEND"),
        ErrorKind::Overloaded | ErrorKind::Timeout => Some("REJECTED"),
        ErrorKind::Internal => Some("OTHER"),
        ErrorKind::InvalidInput | ErrorKind::NotFound | ErrorKind::Unavailable => None,
    }
}

/// Triton's per-model families, appended to `out`.
pub fn render(m: &MetricsSnapshot, queued: &[Queued], out: &mut String) {
    let mut f = Family { out };
    let labels = |e: &ModelMetricsEntry| {
        [
            ("model", e.name.clone()),
            ("version", e.version.to_string()),
        ]
    };
    let counter = |f: &mut Family, name: &str, help: &str, get: Getter| {
        f.header(name, "counter", help);
        for e in &m.models {
            let [(k1, v1), (k2, v2)] = labels(e);
            f.sample(name, &[(k1, &v1), (k2, &v2)], get(e));
        }
    };
    counter(
        &mut f,
        "nv_inference_request_success",
        "Number of successful inference requests, all batch sizes",
        |e| e.metrics.success,
    );
    f.header(
        "nv_inference_request_failure",
        "counter",
        "Number of failed inference requests, all batch sizes",
    );
    for e in &m.models {
        let version = e.version.to_string();
        for triton in ["REJECTED", "CANCELED", "BACKEND", "OTHER"] {
            let n: u64 = (e.metrics.failures.iter())
                .filter(|(kind, _)| reason(*kind) == Some(triton))
                .map(|(_, n)| n)
                .sum();
            f.sample(
                "nv_inference_request_failure",
                &[
                    ("model", &e.name),
                    ("reason", triton),
                    ("version", &version),
                ],
                n,
            );
        }
    }
    let counters: [(&str, &str, Getter); 7] = [
        (
            "nv_inference_count",
            "Number of inferences performed (does not include cached requests)",
            |e| e.metrics.inference_count,
        ),
        (
            "nv_inference_exec_count",
            "Number of model executions performed (does not include cached requests)",
            |e| e.metrics.execution_count,
        ),
        (
            "nv_inference_request_duration_us",
            "Cumulative inference request duration in microseconds (includes cached requests)",
            |e| us(e.metrics.request_success.ns),
        ),
        (
            "nv_inference_queue_duration_us",
            "Cumulative inference queuing duration in microseconds (includes cached requests)",
            |e| us(e.metrics.queue.ns),
        ),
        (
            "nv_inference_compute_input_duration_us",
            "Cumulative compute input duration in microseconds (does not include cached requests)",
            |e| us(e.metrics.compute_input.ns),
        ),
        (
            "nv_inference_compute_infer_duration_us",
            "Cumulative compute inference duration in microseconds (does not include cached requests)",
            |e| us(e.metrics.compute_infer.ns),
        ),
        (
            "nv_inference_compute_output_duration_us",
            "Cumulative inference compute output duration in microseconds (does not include cached requests)",
            |e| us(e.metrics.compute_output.ns),
        ),
    ];
    for (name, help, get) in counters {
        counter(&mut f, name, help, get);
    }
    f.header(
        "nv_inference_pending_request_count",
        "gauge",
        "Instantaneous number of pending requests awaiting execution per-model.",
    );
    for e in &m.models {
        let pending = (queued.iter())
            .find(|q| q.model == e.name && q.version == e.version)
            .map_or(0, |q| q.requests);
        let version = e.version.to_string();
        f.sample(
            "nv_inference_pending_request_count",
            &[("model", &e.name), ("version", &version)],
            pending,
        );
    }
    if m.cache.is_none() {
        return;
    }
    let cache: [(&str, &str, Getter); 4] = [
        (
            "nv_cache_num_hits_per_model",
            "Number of cache hits per model",
            |e| e.metrics.cache_hit.count,
        ),
        (
            "nv_cache_num_misses_per_model",
            "Number of cache misses per model",
            |e| e.metrics.cache_miss.count,
        ),
        (
            "nv_cache_hit_duration_per_model",
            "Total cache hit duration per model, in microseconds",
            |e| us(e.metrics.cache_hit.ns),
        ),
        (
            "nv_cache_miss_duration_per_model",
            "Total cache miss (insert+lookup) duration per model, in microseconds",
            |e| us(e.metrics.cache_miss.ns),
        ),
    ];
    for (name, help, get) in cache {
        counter(&mut f, name, help, get);
    }
}
