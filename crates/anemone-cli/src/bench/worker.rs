//! The benchmark's workers: each sends its requests one at a time on its own
//! connection, warm-up first, then measured until the count or the time is
//! spent, and Ctrl-C ends the run after the requests in flight.

use super::client::{Client, Failure};
use crate::output::printable;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a worker waits after its connection failed, so that a server
/// that is down is not hammered with connection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// What the workers share.
pub(super) struct Shared {
    /// Warm-up requests not yet claimed by a worker.
    pub(super) warmup_left: AtomicU64,
    /// Measured requests not yet claimed by a worker (`u64::MAX` when time decides).
    pub(super) measured_left: AtomicU64,
    /// How long workers send measured requests, counted from the barrier; `None` when a count decides.
    pub(super) stop_after: Option<Duration>,
    /// Set on Ctrl-C: workers stop after the request in flight.
    pub(super) interrupted: AtomicBool,
    /// The first failure's message, warm-up included; set once.
    pub(super) first_error: Mutex<Option<String>>,
    /// Every worker and the timer meet here after warm-up, so that the
    /// measured phase starts with every connection open and warm.
    pub(super) measuring: tokio::sync::Barrier,
    /// When the measured phase began: set by the first to pass the barrier,
    /// so that the wall time and every worker's deadline count from it.
    pub(super) began: std::sync::OnceLock<Instant>,
}

impl Shared {
    /// Records a failure; the first one is also printed at once.
    fn note(&self, failure: &Failure) {
        let mut first = self
            .first_error
            .lock()
            .expect("no holder panics; this is a bug");
        if first.is_none() {
            let text = format!("{}: {}", failure.status, printable(&failure.message));
            eprintln!("warning: a request failed ({text}); counting failures and going on");
            *first = Some(text);
        }
    }
}

/// Takes one unit from `left`; false once it is spent.
fn claim(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// What one worker saw.
#[derive(Default)]
pub(super) struct WorkerResult {
    pub(super) latencies_ns: Vec<u64>,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) warmup_errors: u64,
}

pub(super) async fn worker(mut client: Client, shared: Arc<Shared>) -> WorkerResult {
    let mut result = WorkerResult::default();
    while !shared.interrupted.load(Ordering::Relaxed) && claim(&shared.warmup_left) {
        if let Err(f) = client.infer().await {
            result.warmup_errors += 1;
            shared.note(&f);
            if f.is_connection() {
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
    shared.measuring.wait().await;
    let began = *shared.began.get_or_init(Instant::now);
    let deadline = shared.stop_after.map(|d| began + d);
    result.latencies_ns.reserve(match shared.stop_after {
        Some(_) => 1 << 16,
        None => shared.measured_left.load(Ordering::Relaxed).min(1 << 24) as usize,
    });
    while !shared.interrupted.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| Instant::now() < d)
        && claim(&shared.measured_left)
    {
        let sent = Instant::now();
        match client.infer().await {
            Ok(()) => result.latencies_ns.push(sent.elapsed().as_nanos() as u64),
            Err(f) => {
                shared.note(&f);
                if f.is_connection() {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                *result.errors.entry(f.status).or_default() += 1;
            }
        }
    }
    result
}

/// The first Ctrl-C ends the run after the requests in flight, keeping the
/// report; the second exits at once.
pub(super) async fn stop_on_ctrl_c(shared: Arc<Shared>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("interrupted: finishing the requests in flight (Ctrl-C again to quit at once)");
    shared.interrupted.store(true, Ordering::Relaxed);
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_stop_at_zero() {
        let left = AtomicU64::new(2);
        assert!(claim(&left));
        assert!(claim(&left));
        assert!(!claim(&left));
        assert_eq!(left.load(Ordering::Relaxed), 0);
    }
}
