//! What a run measured, as text for people and as one JSON object.

use super::{Plan, Stop};
use crate::output::{printable, table};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Each input as sent: name, KServe datatype, shape.
    pub workload: Vec<(String, &'static str, Vec<usize>)>,
    /// The latency of every successful measured request, in no order.
    pub latencies_ns: Vec<u64>,
    /// Failed measured requests by kind of failure.
    pub errors: BTreeMap<String, u64>,
    /// Failed warm-up requests.
    pub warmup_errors: u64,
    /// The first failure, warm-up included: `kind: message`.
    pub first_error: Option<String>,
    /// From the start of the measured phase until its last answer.
    pub wall: Duration,
    /// Whether Ctrl-C ended the run early.
    pub interrupted: bool,
    /// For a sequence model: the kind of correlation ID sent (workers send
    /// sequences of `plan.sequence_length`, worker k under ID
    /// `plan.first_sequence_id + k`).
    pub sequence_ids: Option<super::sequence::IdKind>,
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// The nearest-rank percentile of sorted values: the smallest value with at
/// least `p` percent of the values at or below it. `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

impl Latency {
    /// Summarises latencies in nanoseconds; `None` when there are none.
    pub fn of(latencies_ns: &[u64]) -> Option<Latency> {
        let mut sorted = latencies_ns.to_vec();
        sorted.sort_unstable();
        let us = |p: f64| percentile(&sorted, p).map(|ns| ns as f64 / 1e3);
        let sum: u128 = sorted.iter().map(|&ns| ns as u128).sum();
        Some(Latency {
            p50: us(50.0)?,
            p90: us(90.0)?,
            p99: us(99.0)?,
            max: us(100.0)?,
            mean: sum as f64 / sorted.len() as f64 / 1e3,
        })
    }
}

impl Outcome {
    fn ok(&self) -> u64 {
        self.latencies_ns.len() as u64
    }

    fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful requests per second of wall time.
    fn throughput(&self) -> f64 {
        let secs = self.wall.as_secs_f64();
        if secs > 0.0 {
            self.ok() as f64 / secs
        } else {
            0.0
        }
    }
}

/// A duration in microseconds with a unit that suits its size: `87.3 µs`, `1.25 ms`, `2.04 s`.
pub fn readable_us(us: f64) -> String {
    if us < 1e3 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// The report for people.
pub fn text(plan: &Plan, o: &Outcome) -> String {
    let shape = |s: &[usize]| {
        format!(
            "[{}]",
            s.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let inputs = o
        .workload
        .iter()
        .map(|(n, d, s)| format!("{} {d} {}", printable(n), shape(s)))
        .collect::<Vec<_>>()
        .join(", ");
    let model = match &plan.version {
        Some(v) => format!("{} (version {})", printable(&plan.model), printable(v)),
        None => printable(&plan.model),
    };
    let mut rows = vec![
        vec!["protocol".to_string(), plan.protocol.name().to_string()],
        vec!["url".to_string(), printable(&plan.url)],
        vec!["model".to_string(), model],
        vec!["inputs".to_string(), inputs],
        vec!["concurrency".to_string(), plan.concurrency.to_string()],
    ];
    if let Some(kind) = o.sequence_ids {
        let ids = match kind {
            super::sequence::IdKind::Number => "numbers",
            super::sequence::IdKind::Text => "strings",
        };
        rows.push(vec![
            "sequences".to_string(),
            format!(
                "{} requests each, one worker per sequence ID, IDs {} to {} ({ids})",
                plan.sequence_length,
                plan.first_sequence_id,
                plan.first_sequence_id + plan.concurrency as u64 - 1
            ),
        ]);
    }
    rows.push(vec![
        "requests".to_string(),
        format!("{} ok, {} failed", o.ok(), o.failed()),
    ]);
    for (status, n) in &o.errors {
        rows.push(vec![String::new(), format!("{n} × {}", printable(status))]);
    }
    if o.warmup_errors > 0 {
        rows.push(vec![
            "warm-up".to_string(),
            format!("{} of {} failed", o.warmup_errors, plan.warmup),
        ]);
    }
    if let Some(first) = &o.first_error {
        rows.push(vec!["first error".to_string(), printable(first)]);
    }
    let mut wall = format!("{:.3} s", o.wall.as_secs_f64());
    if o.interrupted {
        wall.push_str(" (interrupted)");
    }
    rows.push(vec!["wall time".to_string(), wall]);
    rows.push(vec![
        "throughput".to_string(),
        format!("{:.1} req/s", o.throughput()),
    ]);
    match Latency::of(&o.latencies_ns) {
        Some(l) => {
            for (name, us) in [
                ("p50", l.p50),
                ("p90", l.p90),
                ("p99", l.p99),
                ("max", l.max),
                ("mean", l.mean),
            ] {
                rows.push(vec![format!("latency {name}"), readable_us(us)]);
            }
        }
        None => rows.push(vec![
            "latency".to_string(),
            "none (no request succeeded)".to_string(),
        ]),
    }
    table(&rows, "")
}

/// The report as one JSON object: the arguments and the figures.
pub fn json(plan: &Plan, o: &Outcome) -> Value {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let latency = Latency::of(&o.latencies_ns)
        .map(|l| json!({"p50": round(l.p50), "p90": round(l.p90), "p99": round(l.p99), "max": round(l.max), "mean": round(l.mean)}));
    let (requests_limit, duration_limit) = match plan.stop {
        Stop::Requests(n) => (Some(n), None),
        Stop::After(d) => (None, Some(d.as_secs_f64())),
    };
    json!({
        "protocol": plan.protocol.name(),
        "url": plan.url,
        "model": plan.model,
        "model_version": plan.version,
        "concurrency": plan.concurrency,
        "requests": o.ok(),
        "errors": o.failed(),
        "errors_by_status": o.errors,
        "first_error": o.first_error,
        "duration_s": (o.wall.as_secs_f64() * 1e6).round() / 1e6,
        "throughput_rps": round(o.throughput()),
        "latency_us": latency,
        "warmup": plan.warmup,
        "warmup_errors": o.warmup_errors,
        "interrupted": o.interrupted,
        "sequence_length": o.sequence_ids.map(|_| plan.sequence_length),
        "first_sequence_id": o.sequence_ids.map(|_| plan.first_sequence_id),
        "args": {
            "requests": requests_limit,
            "duration_s": duration_limit,
            "dim_default": plan.dim_default,
            "outputs": plan.outputs,
            "request_timeout_s": plan.request_timeout.as_secs_f64(),
        },
        "inputs": o.workload.iter().map(|(n, d, s)| json!({"name": n, "datatype": d, "shape": s})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 51.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn latency_summaries_are_in_microseconds() {
        // Unsorted on purpose: 1 µs to 10 µs.
        let ns: Vec<u64> = (1..=10).rev().map(|i| i * 1000).collect();
        let l = Latency::of(&ns).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (5.0, 9.0, 10.0, 10.0));
        assert_eq!(l.mean, 5.5);
        assert_eq!(Latency::of(&[]), None);
    }

    #[test]
    fn durations_get_a_readable_unit() {
        assert_eq!(readable_us(87.34), "87.3 µs");
        assert_eq!(readable_us(1250.0), "1.25 ms");
        assert_eq!(readable_us(2_040_000.0), "2.04 s");
    }
}
