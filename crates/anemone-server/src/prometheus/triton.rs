//! Triton's own metric families (`nv_inference_*`, and `nv_cache_*` with a
//! response cache), with its names, labels, units (microseconds) and help,
//! as tritonserver 2.51 writes them, for dashboards, alerts and autoscalers
//! built on tritonserver (`--triton-metrics true`). The counters are
//! the same table's as anemone's own families (`prometheus/per_model.rs`): only the
//! names and units differ.

use super::{Family, PerModel, Queued, PER_MODEL};
use anemone_core::ErrorKind;
use anemone_runtime::MetricsSnapshot;
use std::fmt::Write;

/// Triton's failure reason for a kind of failure counted on a model, or
/// `None` for the kinds Triton refuses before a request reaches its model
/// (a malformed request, an unsupported one, a full queue), which it does
/// not count. A queue timeout or a concurrency limit is Triton's REJECTED;
/// an unknown or unloaded model counts on no model.
fn reason(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::Backend => Some("BACKEND"),
        ErrorKind::Overloaded | ErrorKind::Timeout => Some("REJECTED"),
        ErrorKind::Internal => Some("OTHER"),
        // A full queue (and a sequence past the open limit): tritonserver
        // 2.51 refuses it before the model and counts it nowhere (read side
        // by side); anemone's own family counts it (`unavailable`).
        ErrorKind::Unavailable
        | ErrorKind::InvalidInput
        | ErrorKind::NotFound
        | ErrorKind::Unsupported => None,
    }
}

/// Triton's per-model families, appended to `out`.
pub fn render(m: &MetricsSnapshot, queued: &[Queued], out: &mut String) {
    let mut f = Family { out };
    let counters = |f: &mut Family, counters: &[PerModel]| {
        for c in counters {
            f.header(c.triton, "counter", c.triton_help);
            for e in &m.models {
                let version = e.version.to_string();
                let value = match c.nanos {
                    true => (c.get)(e) / 1_000,
                    false => (c.get)(e),
                };
                f.sample(
                    c.triton,
                    &[("model", &e.name), ("version", &version)],
                    value,
                );
            }
        }
    };
    // Triton's order: successes, failures, then the other counters.
    counters(&mut f, &PER_MODEL[..1]);
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
    counters(&mut f, &PER_MODEL[1..8]);
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
    if let Some(cache) = &m.cache {
        counters(&mut f, &PER_MODEL[8..]);
        cache_totals(&mut f, cache);
    }
}

/// Triton's server-wide response cache gauges, with its names, help and
/// order (tritonserver 2.51 with `--cache-config local,size=...`);
/// durations in microseconds.
fn cache_totals(f: &mut Family, c: &anemone_runtime::cache::CacheSnapshot) {
    let util = match c.capacity_bytes {
        0 => 0.0,
        cap => c.bytes as f64 / cap as f64,
    };
    f.header("nv_cache_util", "gauge", "Cache utilization [0.0 - 1.0]");
    let _ = writeln!(f.out, "nv_cache_util {util}");
    for (name, help, value) in [
        (
            "nv_cache_num_entries",
            "Number of responses stored in response cache",
            c.entries,
        ),
        (
            "nv_cache_num_hits",
            "Number of cache hits in response cache",
            c.hits,
        ),
        (
            "nv_cache_num_misses",
            "Number of cache misses in response cache",
            c.misses,
        ),
        (
            "nv_cache_num_lookups",
            "Number of cache lookups in response cache",
            c.hits + c.misses,
        ),
        (
            "nv_cache_num_evictions",
            "Number of cache evictions in response cache",
            c.evictions,
        ),
        (
            "nv_cache_lookup_duration",
            "Total cache lookup duration (hit and miss), in microseconds",
            c.lookup_ns / 1_000,
        ),
        (
            "nv_cache_insertion_duration",
            "Total cache insertion duration, in microseconds",
            c.insert_ns / 1_000,
        ),
    ] {
        f.header(name, "gauge", help);
        let _ = writeln!(f.out, "{name} {value}");
    }
}

/// Triton's latency summaries (`--metrics-config summary_latencies=true`),
/// appended to `out` when the models keep them: per model, the count and
/// sum of the cumulative counters and the quantiles of the last minute, in
/// microseconds, with Triton's names and help (tritonserver 2.51's help of
/// the three compute summaries is its counters').
pub fn render_summaries(m: &MetricsSnapshot, out: &mut String) {
    use anemone_runtime::metrics::summary::LatencySummaries;
    use anemone_runtime::metrics::DurationStat;
    type Pick = fn(&anemone_runtime::ModelMetricsSnapshot) -> DurationStat;
    type Quantiles = fn(&LatencySummaries) -> &Vec<(f64, u64)>;
    const FAMILIES: [(&str, &str, Pick, Quantiles); 7] = [
        (
            "nv_inference_request_summary_us",
            "Summary of inference request duration in microseconds (includes cached requests)",
            |m| m.request_success,
            |s| &s.request,
        ),
        (
            "nv_inference_queue_summary_us",
            "Summary of inference queuing duration in microseconds (includes cached requests)",
            |m| m.queue,
            |s| &s.queue,
        ),
        (
            "nv_inference_compute_input_summary_us",
            "Cumulative compute input duration in microseconds (does not include cached requests)",
            |m| m.compute_input,
            |s| &s.compute_input,
        ),
        (
            "nv_inference_compute_infer_summary_us",
            "Cumulative compute inference duration in microseconds (does not include cached requests)",
            |m| m.compute_infer,
            |s| &s.compute_infer,
        ),
        (
            "nv_inference_compute_output_summary_us",
            "Cumulative inference compute output duration in microseconds (does not include cached requests)",
            |m| m.compute_output,
            |s| &s.compute_output,
        ),
        (
            "nv_cache_hit_summary_per_model",
            "Summary of cache hit counts/durations per model, in microseconds.",
            |m| m.cache_hit,
            |s| &s.cache_hit,
        ),
        (
            "nv_cache_miss_summary_per_model",
            "Summary of cache miss counts/durations per model, in microseconds.",
            |m| m.cache_miss,
            |s| &s.cache_miss,
        ),
    ];
    if !m.models.iter().any(|e| e.metrics.summaries.is_some()) {
        return;
    }
    let mut f = Family { out };
    for (i, (name, help, pick, quantiles)) in FAMILIES.into_iter().enumerate() {
        // The cache's two, as Triton's, for the models that use the cache.
        let cache = i >= 5;
        let uses_cache = |e: &&anemone_runtime::ModelMetricsEntry| {
            e.metrics.cache_hit.count + e.metrics.cache_miss.count > 0
        };
        if cache
            && !m
                .models
                .iter()
                .any(|e| e.metrics.summaries.is_some() && uses_cache(&e))
        {
            continue;
        }
        f.header(name, "summary", help);
        for e in (m.models.iter())
            .filter(|e| e.metrics.summaries.is_some())
            .filter(|e| !cache || uses_cache(e))
        {
            let version = e.version.to_string();
            let labels = [("model", e.name.as_str()), ("version", version.as_str())];
            let stat = pick(&e.metrics);
            f.sample(&format!("{name}_count"), &labels, stat.count);
            f.sample(&format!("{name}_sum"), &labels, stat.ns / 1_000);
            if let Some(summaries) = &e.metrics.summaries {
                for (q, ns) in quantiles(summaries) {
                    let q = q.to_string();
                    let labels = [labels[0], labels[1], ("quantile", q.as_str())];
                    f.sample(name, &labels, ns / 1_000);
                }
            }
        }
    }
}
