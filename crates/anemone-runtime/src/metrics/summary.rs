//! Triton's latency summaries (`--metrics-config summary_latencies=true`):
//! quantiles of each model's request, queue and compute durations over the
//! last minute, beside the cumulative counters (Triton's
//! `nv_inference_*_summary_us`). Off by default; when off, recording costs
//! nothing (the metrics hold no window).
//!
//! Each of the five durations keeps its observations of the last
//! [`WINDOW`] (at most [`MAX_KEPT`] of them, the oldest dropped first), and
//! a snapshot takes the exact nearest-rank quantile of what is kept: the
//! `q` quantile of `n` sorted values is the `ceil(q * n)`-th.

use super::Timings;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far back the quantiles look (prometheus-cpp's summary default,
/// which Triton's summaries use).
pub const WINDOW: Duration = Duration::from_secs(60);

/// The most observations kept per duration and model.
pub const MAX_KEPT: usize = 4096;

/// Triton's default quantiles (`summary_quantiles`).
pub const TRITON_QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

/// One duration's recent observations, in nanoseconds.
#[derive(Debug, Default)]
struct Window {
    kept: VecDeque<(Instant, u64)>,
}

impl Window {
    fn observe(&mut self, at: Instant, value: Duration) {
        if self.kept.len() == MAX_KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back((at, value.as_nanos() as u64));
    }

    /// The `quantiles` of what was observed within [`WINDOW`] of `now`.
    fn quantiles(&mut self, now: Instant, quantiles: &[f64]) -> Vec<(f64, u64)> {
        while self
            .kept
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW)
        {
            self.kept.pop_front();
        }
        let mut values: Vec<u64> = self.kept.iter().map(|(_, v)| *v).collect();
        values.sort_unstable();
        quantiles
            .iter()
            .filter_map(|&q| nearest_rank(&values, q).map(|v| (q, v)))
            .collect()
    }
}

/// The `q` quantile of sorted `values` by nearest rank; `None` when empty.
pub fn nearest_rank(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// The five windows of one model version.
#[derive(Debug, Default)]
struct Windows {
    request: Window,
    queue: Window,
    compute_input: Window,
    compute_infer: Window,
    compute_output: Window,
    cache_hit: Window,
    cache_miss: Window,
}

/// A model's recent durations, and the quantiles to report.
#[derive(Debug)]
pub struct Recent {
    quantiles: Arc<[f64]>,
    windows: Mutex<Windows>,
}

/// Quantiles of each duration, `(quantile, nanoseconds)` in the order
/// asked for; empty where nothing was observed in the window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LatencySummaries {
    /// Whole successful requests, answers from the response cache included.
    pub request: Vec<(f64, u64)>,
    /// Waiting for the engine call, cache hits excluded.
    pub queue: Vec<(f64, u64)>,
    /// Converting inputs.
    pub compute_input: Vec<(f64, u64)>,
    /// The engine call.
    pub compute_infer: Vec<(f64, u64)>,
    /// Converting outputs.
    pub compute_output: Vec<(f64, u64)>,
    /// Requests answered from the response cache (Triton's
    /// `nv_cache_hit_summary_per_model`).
    pub cache_hit: Vec<(f64, u64)>,
    /// Response cache lookups that found nothing, with the storing after
    /// (Triton's `nv_cache_miss_summary_per_model`).
    pub cache_miss: Vec<(f64, u64)>,
}

impl Recent {
    /// Windows reporting `quantiles`.
    pub fn new(quantiles: Arc<[f64]>) -> Recent {
        Recent {
            quantiles,
            windows: Mutex::new(Windows::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A successful request's durations.
    pub fn observe(&self, t: &Timings) {
        self.observe_at(Instant::now(), t);
    }

    fn observe_at(&self, at: Instant, t: &Timings) {
        let mut w = self.lock();
        w.request.observe(at, t.total);
        w.queue.observe(at, t.queue);
        w.compute_input.observe(at, t.compute_input);
        w.compute_infer.observe(at, t.compute_infer);
        w.compute_output.observe(at, t.compute_output);
    }

    /// A request answered from the response cache: its whole duration, and
    /// its wait before the cache was looked up (Triton's request and queue
    /// summaries include cache hits; the compute ones do not).
    pub fn observe_cache_hit(&self, total: Duration, queued: Duration) {
        let at = Instant::now();
        let mut w = self.lock();
        w.request.observe(at, total);
        w.queue.observe(at, queued);
        w.cache_hit.observe(at, total);
    }

    /// A response cache lookup that found nothing, with the storing after.
    pub fn observe_cache_miss(&self, spent: Duration) {
        self.lock().cache_miss.observe(Instant::now(), spent);
    }

    /// The quantiles of the last [`WINDOW`].
    pub fn snapshot(&self) -> LatencySummaries {
        let now = Instant::now();
        let q = &self.quantiles;
        let mut w = self.lock();
        LatencySummaries {
            request: w.request.quantiles(now, q),
            queue: w.queue.quantiles(now, q),
            compute_input: w.compute_input.quantiles(now, q),
            compute_infer: w.compute_infer.quantiles(now, q),
            compute_output: w.compute_output.quantiles(now, q),
            cache_hit: w.cache_hit.quantiles(now, q),
            cache_miss: w.cache_miss.quantiles(now, q),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_are_the_nearest_rank_of_the_kept_values() {
        let recent = Recent::new(TRITON_QUANTILES.into());
        // 1..=20 ms, shuffled: p50 is the 10th, p90 the 18th, p95 the
        // 19th, p99 and p99.9 the 20th (numpy's method="inverted_cdf").
        for n in [
            7, 3, 20, 1, 15, 9, 12, 18, 2, 5, 11, 19, 4, 16, 8, 13, 6, 17, 10, 14,
        ] {
            recent.observe(&Timings {
                total: ms(n),
                queue: ms(n * 2),
                ..Default::default()
            });
        }
        let s = recent.snapshot();
        let got: Vec<(f64, u64)> = s.request.clone();
        let want: Vec<(f64, u64)> = [(0.5, 10), (0.9, 18), (0.95, 19), (0.99, 20), (0.999, 20)]
            .iter()
            .map(|&(q, v)| (q, v * 1_000_000))
            .collect();
        assert_eq!(got, want);
        assert_eq!(s.queue[0], (0.5, 20_000_000));
        assert_eq!(s.compute_infer[4], (0.999, 0));
        assert_eq!(nearest_rank(&[], 0.5), None);
        assert_eq!(nearest_rank(&[5], 0.0), Some(5));
    }

    #[test]
    fn only_the_last_minute_and_the_last_observations_count() {
        let recent = Recent::new(Arc::from([0.5, 1.0]));
        let Some(long_ago) = Instant::now().checked_sub(WINDOW + Duration::from_secs(1)) else {
            return; // the machine booted less than a minute ago
        };
        recent.observe_at(
            long_ago,
            &Timings {
                total: ms(1000),
                ..Default::default()
            },
        );
        recent.observe(&Timings {
            total: ms(3),
            ..Default::default()
        });
        assert_eq!(
            recent.snapshot().request,
            [(0.5, 3_000_000), (1.0, 3_000_000)]
        );
        // Past MAX_KEPT, the oldest go first.
        for _ in 0..MAX_KEPT {
            recent.observe_cache_hit(ms(1), ms(2));
        }
        assert_eq!(
            recent.snapshot().request,
            [(0.5, 1_000_000), (1.0, 1_000_000)]
        );
        // A cache hit is a request and a queue observation (as Triton's),
        // not a compute one.
        assert_eq!(
            recent.snapshot().queue,
            [(0.5, 2_000_000), (1.0, 2_000_000)]
        );
        assert_eq!(recent.snapshot().compute_infer, [(0.5, 0), (1.0, 0)]);
    }
}
