//! Per-model counters, EWMA latency and latency histograms, all lock-free.
//!
//! Recording is a handful of relaxed atomic operations, cheap enough for
//! the hot path. Snapshots are taken for `/metrics`, stats and the CLI.

use anemone_core::ErrorKind;
pub use batch::{BatchStat, BatchStats, LOCK_FREE_SIZES};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod batch;
pub mod summary;

/// Upper bounds of the latency histogram buckets, in microseconds: powers of
/// two from 16 µs to about 8.4 s. A last, implicit bucket holds the rest.
pub const BUCKET_BOUNDS_US: [u64; 20] = {
    let mut b = [0u64; 20];
    let mut i = 0;
    while i < 20 {
        b[i] = 16 << i;
        i += 1;
    }
    b
};

/// Weight of a new sample in the exponentially weighted moving average.
pub const EWMA_ALPHA: f64 = 1.0 / EWMA_DIVISOR as f64;

/// A latency histogram with fixed power-of-two buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 21],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Adds one observation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[bucket_index(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// Index of the bucket for `ns`: the first bound not below it.
#[inline]
fn bucket_index(ns: u64) -> usize {
    let us = ns / 1000;
    if us <= 16 {
        return 0;
    }
    // Bucket i covers (16 << (i-1), 16 << i]; ceil(log2(us / 16)).
    let i = (64 - ((us - 1) >> 4).leading_zeros()) as usize;
    i.min(20)
}

/// Counts of a [`Histogram`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistogramSnapshot {
    /// Count per bucket (not cumulative); the last is the overflow bucket.
    pub buckets: Vec<u64>,
    /// Sum of all observations in nanoseconds.
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    /// Total observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Upper bound (µs) of the bucket holding quantile `q` (0..=1), `None` if empty.
    pub fn quantile_upper_bound_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(BUCKET_BOUNDS_US.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}

/// An exponentially weighted moving average of durations, with weight
/// [`EWMA_ALPHA`] = 1/[`EWMA_DIVISOR`] for each new sample.
#[derive(Debug, Default)]
pub struct Ewma {
    /// The average in nanoseconds; 0 until the first sample.
    nanos: AtomicU64,
}

/// `1 / EWMA_ALPHA`: integer arithmetic keeps the update at a few nanoseconds.
pub const EWMA_DIVISOR: i64 = 10;

impl Ewma {
    /// Folds in one sample.
    ///
    /// A plain load and store, not a compare-and-swap loop: when two threads
    /// update at the same instant one sample may be lost, which an average
    /// tolerates, and the hot path stays at a few nanoseconds.
    #[inline]
    pub fn update(&self, d: Duration) {
        let sample = d
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(d.subsec_nanos() as u64)
            .max(1) as i64;
        let old = self.nanos.load(Ordering::Relaxed) as i64;
        let next = if old == 0 {
            sample
        } else {
            old + (sample - old) / EWMA_DIVISOR
        };
        self.nanos.store(next.max(1) as u64, Ordering::Relaxed);
    }

    /// The current average, `None` before the first sample.
    pub fn get(&self) -> Option<Duration> {
        let nanos = self.nanos.load(Ordering::Relaxed);
        (nanos != 0).then(|| Duration::from_nanos(nanos))
    }
}

/// A count and a total duration, as in Triton's statistics (`{count, ns}`).
#[derive(Debug, Default)]
pub struct DurationCounter {
    count: AtomicU64,
    ns: AtomicU64,
}

impl DurationCounter {
    /// Adds one duration.
    #[inline]
    pub fn add(&self, d: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// `(count, total ns)`.
    pub fn get(&self) -> DurationStat {
        DurationStat {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of a [`DurationCounter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DurationStat {
    /// Number of durations added.
    pub count: u64,
    /// Their sum in nanoseconds.
    pub ns: u64,
}

/// Where the time of one request went.
///
/// With dynamic batching, the compute durations are those of the batch the
/// request ran in, as Triton reports them in `inference_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Timings {
    /// Waiting for a worker thread.
    pub queue: Duration,
    /// Converting inputs for the engine.
    pub compute_input: Duration,
    /// The engine's run.
    pub compute_infer: Duration,
    /// Converting and selecting outputs.
    pub compute_output: Duration,
    /// The whole request, admission to response.
    pub total: Duration,
}

/// The metrics of one loaded model version.
#[derive(Debug, Default)]
pub struct ModelMetrics {
    success: AtomicU64,
    failures: [AtomicU64; ErrorKind::ALL.len()],
    /// Rows in the batch dimension of successful executions (Triton's
    /// `inference_count`: a batch of n counts n).
    inference_count: AtomicU64,
    /// Successful engine executions (Triton's `execution_count`).
    execution_count: AtomicU64,
    /// Executions per batch size.
    batches: BatchStats,
    ewma: Ewma,
    latency: Histogram,
    queue: DurationCounter,
    compute_input: DurationCounter,
    compute_infer: DurationCounter,
    compute_output: DurationCounter,
    request_success: DurationCounter,
    request_failure: DurationCounter,
    /// Requests answered from the response cache, and the time their lookups took.
    cache_hit: DurationCounter,
    /// Cache lookups that found nothing, and the time spent looking and storing.
    cache_miss: DurationCounter,
    /// When the last successful request ended, in nanoseconds after [`anchor`].
    last_success: AtomicU64,
    /// Recent durations for Triton's latency summaries; `None` (the
    /// default) when they are off.
    recent: Option<summary::Recent>,
}

/// A process-wide reference point pairing a monotonic and a wall-clock time,
/// so the hot path records `Instant`s and snapshots report wall-clock times.
fn anchor() -> &'static (std::time::Instant, std::time::SystemTime) {
    static ANCHOR: std::sync::OnceLock<(std::time::Instant, std::time::SystemTime)> =
        std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| (std::time::Instant::now(), std::time::SystemTime::now()))
}

impl ModelMetrics {
    /// Metrics that also keep Triton's latency summaries of these
    /// `quantiles` ([`summary`]); `None`: without them, as [`Default`].
    pub fn with_summaries(quantiles: Option<std::sync::Arc<[f64]>>) -> ModelMetrics {
        ModelMetrics {
            recent: quantiles.map(summary::Recent::new),
            ..ModelMetrics::default()
        }
    }

    /// Records a successful request that ended at `end`.
    #[inline]
    pub fn record_success_at(&self, t: &Timings, end: std::time::Instant) {
        let since = end.saturating_duration_since(anchor().0).as_nanos() as u64;
        self.last_success.store(since.max(1), Ordering::Relaxed);
        self.record_success(t);
    }

    /// Records a successful request: its latency and where its time went
    /// (Triton's `inference_stats`). The engine call that served it is
    /// recorded apart, by [`ModelMetrics::record_execution`].
    #[inline]
    pub fn record_success(&self, t: &Timings) {
        self.success.fetch_add(1, Ordering::Relaxed);
        self.ewma.update(t.total);
        self.latency.observe(t.total);
        self.queue.add(t.queue);
        self.compute_input.add(t.compute_input);
        self.compute_infer.add(t.compute_infer);
        self.compute_output.add(t.compute_output);
        self.request_success.add(t.total);
        if let Some(recent) = &self.recent {
            recent.observe(t);
        }
    }

    /// One engine call that served `batch_size` requests (Triton's execution_count
    /// and batch_stats). Called once per engine call, after it returns.
    ///
    /// `batch_size` is the number of rows in the batch dimension, which is
    /// the number of requests when each has one row; Triton's
    /// `inference_count` grows by it and `execution_count` by one. Record
    /// only executions that succeeded, as Triton does. The direct path
    /// (no batching) records `batch_size` 1 once per request.
    #[inline]
    pub fn record_execution(
        &self,
        batch_size: usize,
        compute_input: Duration,
        compute_infer: Duration,
        compute_output: Duration,
    ) {
        self.record_execution_of(
            batch_size,
            batch_size,
            compute_input,
            compute_infer,
            compute_output,
        );
    }

    /// [`ModelMetrics::record_execution`] of an engine call of `batch_size`
    /// rows of which `answered` were answered (an engine that answers each
    /// request, a Python model, may answer some with an error): Triton's
    /// `inference_count` counts only those.
    #[inline]
    pub fn record_execution_of(
        &self,
        batch_size: usize,
        answered: usize,
        compute_input: Duration,
        compute_infer: Duration,
        compute_output: Duration,
    ) {
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.inference_count
            .fetch_add(answered as u64, Ordering::Relaxed);
        self.batches
            .record(batch_size, compute_input, compute_infer, compute_output);
    }

    /// [`ModelMetrics::record_execution`] of batch size 1 with a request's
    /// own compute durations: the direct path, where each request is one
    /// engine call.
    #[inline]
    pub fn record_unbatched_execution(&self, t: &Timings) {
        self.record_execution(1, t.compute_input, t.compute_infer, t.compute_output);
    }

    /// A request answered from the response cache in `total`: a success (as
    /// Triton counts it), with no engine execution and no compute time.
    #[inline]
    pub fn record_cache_hit(&self, total: Duration, queued: Duration) {
        self.success.fetch_add(1, Ordering::Relaxed);
        self.ewma.update(total);
        self.latency.observe(total);
        self.request_success.add(total);
        self.cache_hit.add(total);
        // Triton's "queue" count and duration include cache hits.
        self.queue.add(queued);
        if let Some(recent) = &self.recent {
            recent.observe_cache_hit(total, queued);
        }
    }

    /// A cache lookup that found nothing, with the time spent looking up and
    /// (after the engine answered) storing the answer.
    #[inline]
    pub fn record_cache_miss(&self, spent: Duration) {
        self.cache_miss.add(spent);
        if let Some(recent) = &self.recent {
            recent.observe_cache_miss(spent);
        }
    }

    /// Successful requests so far.
    #[inline]
    pub fn success_count(&self) -> u64 {
        self.success.load(Ordering::Relaxed)
    }

    /// Records a failed request: one that was queued or run, or timed out.
    #[inline]
    pub fn record_failure(&self, kind: ErrorKind, total: Duration) {
        self.failures[kind.index()].fetch_add(1, Ordering::Relaxed);
        self.request_failure.add(total);
    }

    /// Records a request refused before it was queued or run (its inputs
    /// do not fit the model, a concurrency limit, a full queue): counted by
    /// its reason, but not as a failed inference in `request_failure`,
    /// which, like Triton's `inference_stats.fail`, counts only requests
    /// that reached the model's scheduler (checked against tritonserver
    /// 2.51, `scripts/triton_peer/batch_stats.py`).
    #[inline]
    pub fn record_refusal(&self, kind: ErrorKind) {
        self.failures[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> ModelMetricsSnapshot {
        ModelMetricsSnapshot {
            success: self.success.load(Ordering::Relaxed),
            failures: ErrorKind::ALL
                .iter()
                .map(|k| (*k, self.failures[k.index()].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            batch_stats: self.batches.snapshot(),
            ewma_latency: self.ewma.get(),
            latency: self.latency.snapshot(),
            queue: self.queue.get(),
            compute_input: self.compute_input.get(),
            compute_infer: self.compute_infer.get(),
            compute_output: self.compute_output.get(),
            request_success: self.request_success.get(),
            request_failure: self.request_failure.get(),
            cache_hit: self.cache_hit.get(),
            cache_miss: self.cache_miss.get(),
            summaries: self.recent.as_ref().map(summary::Recent::snapshot),
            last_success_ms: match self.last_success.load(Ordering::Relaxed) {
                0 => 0,
                ns => (anchor().1 + Duration::from_nanos(ns))
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            },
        }
    }
}

/// The counters of one model version at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelMetricsSnapshot {
    /// Successful requests.
    pub success: u64,
    /// Failed and refused requests by kind (kinds with none are left out).
    pub failures: Vec<(ErrorKind, u64)>,
    /// Rows run in successful executions (a batch of n counts n).
    pub inference_count: u64,
    /// Successful engine executions.
    pub execution_count: u64,
    /// Executions per batch size, by increasing size; sizes never run are left out.
    pub batch_stats: Vec<BatchStat>,
    /// EWMA of request latency.
    pub ewma_latency: Option<Duration>,
    /// Histogram of request latency.
    pub latency: HistogramSnapshot,
    /// Time requests waited between admission and their engine call (a
    /// worker, or a batch): Triton's `inference_stats.queue`.
    pub queue: DurationStat,
    /// Time converting inputs.
    pub compute_input: DurationStat,
    /// Time in the engine.
    pub compute_infer: DurationStat,
    /// Time converting outputs.
    pub compute_output: DurationStat,
    /// Whole successful requests.
    pub request_success: DurationStat,
    /// Whole failed requests: those that were queued or run, or timed
    /// out; not those refused before (Triton's `inference_stats.fail`).
    pub request_failure: DurationStat,
    /// Requests answered from the response cache (Triton's `cache_hit`).
    pub cache_hit: DurationStat,
    /// Cache lookups that missed (Triton's `cache_miss`).
    pub cache_miss: DurationStat,
    /// Quantiles of the last minute's durations, when the manager keeps
    /// Triton's latency summaries ([`summary`]).
    pub summaries: Option<summary::LatencySummaries>,
    /// When the last successful request ended, in milliseconds since the Unix epoch; 0 if none.
    pub last_success_ms: u64,
}

impl ModelMetricsSnapshot {
    /// Total failures and refusals of every kind.
    pub fn failure_count(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    /// Failures of one kind.
    pub fn failures_of(&self, kind: ErrorKind) -> u64 {
        self.failures
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_are_respected() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(16_000), 0);
        assert_eq!(bucket_index(16_001), 0); // 16 µs after truncation
        assert_eq!(bucket_index(17_000), 1);
        assert_eq!(bucket_index(32_000), 1);
        assert_eq!(bucket_index(33_000), 2);
        assert_eq!(bucket_index(1_000_000), 6); // 1 ms ≤ 1024 µs
        assert_eq!(bucket_index(u64::MAX), 20);
        for (i, bound) in BUCKET_BOUNDS_US.iter().enumerate() {
            assert_eq!(bucket_index(bound * 1000), i, "bound {bound}");
            assert_eq!(bucket_index((bound + 1) * 1000), i + 1, "bound {bound}+1");
        }
    }

    #[test]
    fn ewma_moves_toward_samples() {
        let e = Ewma::default();
        assert_eq!(e.get(), None);
        e.update(Duration::from_micros(100));
        assert_eq!(e.get(), Some(Duration::from_micros(100)));
        e.update(Duration::from_micros(200));
        assert_eq!(e.get(), Some(Duration::from_micros(110)));
    }

    #[test]
    fn snapshot_counts_successes_and_failures() {
        let m = ModelMetrics::default();
        let t = Timings {
            total: Duration::from_millis(2),
            compute_infer: Duration::from_millis(1),
            ..Default::default()
        };
        m.record_success(&t);
        m.record_success(&t);
        m.record_failure(ErrorKind::InvalidInput, Duration::from_micros(5));
        let s = m.snapshot();
        assert_eq!(s.success, 2);
        assert_eq!(s.failures_of(ErrorKind::InvalidInput), 1);
        assert_eq!(s.failure_count(), 1);
        assert_eq!(s.latency.count(), 2);
        assert_eq!(
            s.compute_infer,
            DurationStat {
                count: 2,
                ns: 2_000_000
            }
        );
        assert_eq!(s.latency.quantile_upper_bound_us(0.5), Some(2048));
    }

    #[test]
    fn executions_count_rows_and_calls_apart_from_requests() {
        // Triton's example: a batch-1 and a batch-8 request run together.
        let m = ModelMetrics::default();
        let t = Timings::default();
        m.record_success(&t);
        m.record_success(&t);
        let ms = Duration::from_millis;
        m.record_execution(9, ms(1), ms(4), ms(1));
        // And one batch-1 request alone.
        m.record_success(&t);
        m.record_execution(1, ms(1), ms(2), ms(1));
        let s = m.snapshot();
        assert_eq!(s.success, 3, "requests");
        assert_eq!(s.inference_count, 10, "rows");
        assert_eq!(s.execution_count, 2, "engine calls");
        let sizes: Vec<(u64, u64)> = s
            .batch_stats
            .iter()
            .map(|b| (b.batch_size, b.compute_infer.count))
            .collect();
        assert_eq!(sizes, vec![(1, 1), (9, 1)]);
        assert_eq!(s.batch_stats[1].compute_infer.ns, 4_000_000);
    }
}
