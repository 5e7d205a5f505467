//! Run-time resilience: retrying retryable backend errors, and deciding when a
//! model should leave its backend for the next candidate.

use anemone_core::{Error, ErrorKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How retryable backend errors are retried, on the worker thread, before the
/// error reaches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt. 0 turns retrying off.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles for each later one.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    /// Two retries, after 2 ms and 4 ms.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            backoff: Duration::from_millis(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `n` (1-based), or `None` when no more retries are allowed.
    pub fn wait_before(&self, n: u32) -> Option<Duration> {
        (n >= 1 && n <= self.max_retries).then(|| self.backoff.saturating_mul(1 << (n - 1).min(16)))
    }
}

/// When a model hands over to its next backend candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FallbackPolicy {
    /// Fall back when backend errors make up at least this share of recent requests.
    pub error_rate: f64,
    /// ... and at least this many backend errors were seen in the window.
    pub min_errors: u64,
    /// Requests per window: the count starts over after this many successes.
    pub window: u64,
}

impl Default for FallbackPolicy {
    /// Half of the recent requests failing, with at least 5 errors, in windows of 100 successes.
    fn default() -> Self {
        FallbackPolicy {
            error_rate: 0.5,
            min_errors: 5,
            window: 100,
        }
    }
}

/// Why a model leaves its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The backend reported a permanent device failure.
    DeviceLost,
    /// Too many recent requests failed in the backend.
    ErrorRate,
}

impl Trigger {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::DeviceLost => "device_lost",
            Trigger::ErrorRate => "error_rate",
        }
    }
}

/// Counts backend errors against successes since the window began. Only the
/// failure path touches it, so successful requests pay nothing.
#[derive(Debug, Default)]
pub(crate) struct ErrorWindow {
    /// The model's success count when the window began.
    start: AtomicU64,
    errors: AtomicU64,
}

impl ErrorWindow {
    /// A window that begins now, when the model has `successes` successes.
    pub(crate) fn starting_at(successes: u64) -> ErrorWindow {
        ErrorWindow {
            start: AtomicU64::new(successes),
            errors: AtomicU64::new(0),
        }
    }

    /// Records a failed request and says whether the model should fall back.
    /// `successes` is the model's success count now.
    pub(crate) fn record(
        &self,
        e: &Error,
        successes: u64,
        policy: &FallbackPolicy,
    ) -> Option<Trigger> {
        if e.kind() != ErrorKind::Backend {
            return None; // bad input, overload, timeouts say nothing about the backend
        }
        if matches!(e, Error::DeviceLost { .. }) {
            return Some(Trigger::DeviceLost);
        }
        let start = self.start.load(Ordering::Relaxed);
        let mut ok = successes.saturating_sub(start);
        if ok > policy.window {
            // A new window: forget errors from long ago.
            self.start.store(successes, Ordering::Relaxed);
            self.errors.store(0, Ordering::Relaxed);
            ok = 0;
        }
        let errors = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        let rate = errors as f64 / (errors + ok) as f64;
        (errors >= policy.min_errors && rate >= policy.error_rate).then_some(Trigger::ErrorRate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend_error() -> Error {
        Error::Backend {
            backend: "x".into(),
            message: "boom".into(),
            retryable: false,
            source: None,
        }
    }

    #[test]
    fn retry_waits_double_and_stop() {
        let p = RetryPolicy {
            max_retries: 3,
            backoff: Duration::from_millis(5),
        };
        assert_eq!(p.wait_before(1), Some(Duration::from_millis(5)));
        assert_eq!(p.wait_before(2), Some(Duration::from_millis(10)));
        assert_eq!(p.wait_before(3), Some(Duration::from_millis(20)));
        assert_eq!(p.wait_before(4), None);
        assert_eq!(
            RetryPolicy {
                max_retries: 0,
                ..p
            }
            .wait_before(1),
            None
        );
    }

    #[test]
    fn error_rate_trips_after_enough_errors_and_resets_with_successes() {
        let policy = FallbackPolicy {
            error_rate: 0.5,
            min_errors: 3,
            window: 10,
        };
        let w = ErrorWindow::default();
        // 4 successes then errors: 1/5, 2/6, 3/7 < 0.5, 4/8 trips.
        assert_eq!(w.record(&backend_error(), 4, &policy), None);
        assert_eq!(w.record(&backend_error(), 4, &policy), None);
        assert_eq!(w.record(&backend_error(), 4, &policy), None);
        assert_eq!(
            w.record(&backend_error(), 4, &policy),
            Some(Trigger::ErrorRate)
        );
        // Many successes later, the window starts over.
        let w = ErrorWindow::default();
        for _ in 0..3 {
            w.record(&backend_error(), 0, &policy);
        }
        assert_eq!(
            w.record(&backend_error(), 50, &policy),
            None,
            "old errors are forgotten"
        );
    }

    #[test]
    fn only_backend_errors_count_and_device_loss_trips_at_once() {
        let policy = FallbackPolicy {
            min_errors: 1,
            ..FallbackPolicy::default()
        };
        let w = ErrorWindow::default();
        assert_eq!(
            w.record(&Error::Timeout(Duration::from_millis(1)), 0, &policy),
            None
        );
        assert_eq!(w.record(&Error::Config("x".into()), 0, &policy), None);
        let lost = Error::DeviceLost {
            backend: "tract-cuda".into(),
            message: "Xid 79".into(),
        };
        assert_eq!(
            ErrorWindow::default().record(&lost, 1000, &policy),
            Some(Trigger::DeviceLost)
        );
    }
}
