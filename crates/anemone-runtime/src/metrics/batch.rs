//! Per-batch-size execution statistics, as Triton's `batch_stats` reports them.

use super::DurationStat;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Batch sizes 1 to `LOCK_FREE_SIZES` are recorded with atomics alone;
/// larger (rarer) ones go through a mutex. 128 covers the `max_batch_size`
/// of nearly every Triton configuration for 4 KiB per model.
pub const LOCK_FREE_SIZES: usize = 128;

#[derive(Debug, Default)]
struct Slot {
    count: AtomicU64,
    input_ns: AtomicU64,
    infer_ns: AtomicU64,
    output_ns: AtomicU64,
}

/// Totals for batch sizes past [`LOCK_FREE_SIZES`].
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    count: u64,
    input_ns: u64,
    infer_ns: u64,
    output_ns: u64,
}

/// Engine executions counted per batch size, each with the time spent
/// preparing inputs, running the engine and preparing outputs.
#[derive(Debug)]
pub struct BatchStats {
    /// Slot `i` holds batch size `i + 1`.
    slots: Box<[Slot]>,
    large: Mutex<BTreeMap<usize, Totals>>,
}

impl Default for BatchStats {
    fn default() -> Self {
        BatchStats {
            slots: (0..LOCK_FREE_SIZES).map(|_| Slot::default()).collect(),
            large: Mutex::default(),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl BatchStats {
    /// Adds one execution of `batch_size` rows.
    #[inline]
    pub fn record(&self, batch_size: usize, input: Duration, infer: Duration, output: Duration) {
        let (input, infer, output) = (nanos(input), nanos(infer), nanos(output));
        match batch_size.checked_sub(1).and_then(|i| self.slots.get(i)) {
            Some(slot) => {
                slot.count.fetch_add(1, Ordering::Relaxed);
                slot.input_ns.fetch_add(input, Ordering::Relaxed);
                slot.infer_ns.fetch_add(infer, Ordering::Relaxed);
                slot.output_ns.fetch_add(output, Ordering::Relaxed);
            }
            None => {
                let mut large = self.large.lock().unwrap_or_else(|e| e.into_inner());
                let t = large.entry(batch_size).or_default();
                t.count += 1;
                t.input_ns = t.input_ns.saturating_add(input);
                t.infer_ns = t.infer_ns.saturating_add(infer);
                t.output_ns = t.output_ns.saturating_add(output);
            }
        }
    }

    /// One entry per batch size executed at least once, by increasing size.
    pub fn snapshot(&self) -> Vec<BatchStat> {
        let small = self.slots.iter().enumerate().filter_map(|(i, s)| {
            let count = s.count.load(Ordering::Relaxed);
            (count > 0)
                .then(|| Totals {
                    count,
                    input_ns: s.input_ns.load(Ordering::Relaxed),
                    infer_ns: s.infer_ns.load(Ordering::Relaxed),
                    output_ns: s.output_ns.load(Ordering::Relaxed),
                })
                .map(|t| (i + 1, t))
        });
        let large: Vec<(usize, Totals)> = self
            .large
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        let mut all: Vec<BatchStat> = small
            .chain(large)
            .map(|(size, t)| {
                let stat = |ns| DurationStat { count: t.count, ns };
                BatchStat {
                    batch_size: size as u64,
                    compute_input: stat(t.input_ns),
                    compute_infer: stat(t.infer_ns),
                    compute_output: stat(t.output_ns),
                }
            })
            .collect();
        // Size 0 (never expected) sits in the map and must still sort first.
        all.sort_by_key(|b| b.batch_size);
        all
    }
}

/// Executions of one batch size (Triton's `InferBatchStatistics`): each
/// duration's `count` is the number of executions, `ns` their total time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BatchStat {
    /// Rows in the batch dimension of these executions.
    pub batch_size: u64,
    /// Preparing inputs for the engine.
    pub compute_input: DurationStat,
    /// The engine's run.
    pub compute_infer: DurationStat,
    /// Preparing outputs.
    pub compute_output: DurationStat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_kept_apart_and_sorted() {
        let b = BatchStats::default();
        let ms = Duration::from_millis;
        b.record(4, ms(1), ms(10), ms(2));
        b.record(1, ms(1), ms(3), ms(1));
        b.record(4, ms(1), ms(12), ms(2));
        b.record(LOCK_FREE_SIZES + 72, ms(5), ms(50), ms(5));
        b.record(LOCK_FREE_SIZES, ms(0), ms(40), ms(0));
        let s = b.snapshot();
        let sizes: Vec<u64> = s.iter().map(|x| x.batch_size).collect();
        let big = LOCK_FREE_SIZES as u64;
        assert_eq!(sizes, vec![1, 4, big, big + 72]);
        assert_eq!(
            s[1].compute_infer,
            DurationStat {
                count: 2,
                ns: 22_000_000
            }
        );
        assert_eq!(
            s[1].compute_output,
            DurationStat {
                count: 2,
                ns: 4_000_000
            }
        );
        assert_eq!(s[3].compute_input.count, 1);
        assert_eq!(s[3].compute_infer.ns, 50_000_000);
        assert_eq!(s[2].compute_infer.ns, 40_000_000);
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let b = std::sync::Arc::new(BatchStats::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let size = if i % 2 == 0 { 8 } else { 1000 + t };
                        b.record(
                            size,
                            Duration::ZERO,
                            Duration::from_nanos(1),
                            Duration::ZERO,
                        );
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let s = b.snapshot();
        assert_eq!(s[0].batch_size, 8);
        assert_eq!(s[0].compute_infer.count, 2000);
        assert_eq!(s.iter().map(|x| x.compute_infer.count).sum::<u64>(), 4000);
    }
}
