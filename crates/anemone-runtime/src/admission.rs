//! Admission control: concurrency limits and the memory budget.
//!
//! Both fail fast instead of queueing, and both hand out guards that give
//! their share back in `Drop`, so a request that errors, panics or is
//! cancelled can never leak a permit.

use anemone_core::Error;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// A counting limit on concurrent requests (a non-blocking semaphore).
#[derive(Debug)]
pub struct Limiter {
    /// Described in errors, e.g. `global concurrency limit`.
    label: String,
    /// The configured limit (`usize::MAX`: none); changed at run time by
    /// [`Limiter::set_capacity`].
    capacity: AtomicUsize,
    /// The share of `capacity` in force, `numerator << 32 | denominator`
    /// (1/1 unless throttled), kept so a new capacity keeps the throttle.
    share: AtomicU64,
    /// The limit in force: `capacity`, or less while throttled (thermal pressure).
    effective: AtomicUsize,
    /// Permits handed out and not yet dropped. Only changed by
    /// [`Limiter::try_acquire`] and [`Permit`]'s `Drop`.
    in_use: AtomicUsize,
}

impl Limiter {
    /// A limiter allowing `capacity` concurrent permits; `None` means no limit.
    pub fn new(label: impl Into<String>, capacity: Option<usize>) -> Arc<Limiter> {
        Arc::new(Limiter {
            label: label.into(),
            capacity: AtomicUsize::new(capacity.unwrap_or(usize::MAX)),
            share: AtomicU64::new(1 << 32 | 1),
            effective: AtomicUsize::new(capacity.unwrap_or(usize::MAX)),
            in_use: AtomicUsize::new(0),
        })
    }

    /// Takes a permit, or fails at once with [`Error::Overloaded`] when all are in use.
    #[inline]
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Error> {
        let mut current = self.in_use.load(Ordering::Relaxed);
        let limit = self.effective.load(Ordering::Relaxed);
        loop {
            if current >= limit {
                return Err(Error::Overloaded {
                    limit: if limit < self.capacity.load(Ordering::Relaxed) {
                        format!("{} (lowered under thermal pressure)", self.label)
                    } else {
                        self.label.clone()
                    },
                    in_use: current,
                    capacity: limit,
                });
            }
            match self.in_use.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Permit {
                        limiter: Arc::clone(self),
                    })
                }
                Err(now) => current = now,
            }
        }
    }

    /// Permits currently held.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The limit; `None` when unlimited.
    pub fn capacity(&self) -> Option<usize> {
        let c = self.capacity.load(Ordering::Relaxed);
        (c != usize::MAX).then_some(c)
    }

    /// Changes the limit (`None`: no limit), keeping any throttle in force.
    /// Requests already admitted keep their permits: with more in flight than
    /// the new limit, new requests are refused until enough have finished.
    pub fn set_capacity(&self, capacity: Option<usize>) {
        self.capacity
            .store(capacity.unwrap_or(usize::MAX), Ordering::Relaxed);
        let share = self.share.load(Ordering::Relaxed);
        self.apply((share >> 32) as usize, (share & 0xffff_ffff) as usize);
    }

    /// Lowers the limit in force to `capacity × numerator / denominator` (at
    /// least 1), or restores it with `1/1`. An unlimited limiter stays unlimited.
    /// Requests already admitted are not affected.
    pub fn throttle(&self, numerator: usize, denominator: usize) {
        let (n, d) = (numerator.min(1 << 16), denominator.clamp(1, 1 << 16));
        self.share
            .store((n as u64) << 32 | d as u64, Ordering::Relaxed);
        self.apply(n, d);
    }

    fn apply(&self, numerator: usize, denominator: usize) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let effective = if capacity == usize::MAX || numerator >= denominator {
            capacity
        } else {
            (capacity / denominator.max(1) * numerator).max(1)
        };
        self.effective.store(effective, Ordering::Relaxed);
    }

    /// The limit in force now.
    pub fn effective_capacity(&self) -> Option<usize> {
        let e = self.effective.load(Ordering::Relaxed);
        (e != usize::MAX).then_some(e)
    }
}

/// One admitted request's share of a [`Limiter`], given back on drop.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.limiter.in_use.fetch_sub(1, Ordering::Release);
    }
}

/// A budget of bytes that loaded models are charged against.
#[derive(Debug)]
pub struct MemoryBudget {
    budget: u64,
    /// Bytes held by live [`Reservation`]s.
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `bytes`; `None` means unlimited (still accounted).
    pub fn new(bytes: Option<u64>) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            budget: bytes.unwrap_or(u64::MAX),
            used: AtomicU64::new(0),
        })
    }

    /// Charges `bytes` for `model`, or fails with [`Error::MemoryBudget`].
    pub fn try_reserve(self: &Arc<Self>, model: &str, bytes: u64) -> Result<Reservation, Error> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let available = self.budget.saturating_sub(used);
            if bytes > available {
                return Err(Error::MemoryBudget {
                    model: model.to_string(),
                    needed: bytes,
                    available,
                    budget: self.budget,
                });
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        budget: Arc::clone(self),
                        bytes,
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Bytes free now.
    pub fn available(&self) -> u64 {
        self.budget.saturating_sub(self.used())
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget; `None` when unlimited.
    pub fn budget(&self) -> Option<u64> {
        (self.budget != u64::MAX).then_some(self.budget)
    }
}

/// Bytes charged to a [`MemoryBudget`], given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::ErrorKind;

    #[test]
    fn permits_are_limited_and_given_back() {
        let l = Limiter::new("test limit", Some(2));
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire().unwrap();
        let err = l.try_acquire().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Overloaded);
        assert!(
            err.to_string()
                .contains("test limit reached (2 of 2 in use)"),
            "{err}"
        );
        drop(a);
        assert_eq!(l.in_use(), 1);
        let _c = l.try_acquire().unwrap();
        drop(b);
        assert_eq!(l.in_use(), 1);
    }

    #[test]
    fn the_limit_changes_at_run_time_and_keeps_the_throttle() {
        let l = Limiter::new("test limit", Some(4));
        let held: Vec<Permit> = (0..2).map(|_| l.try_acquire().unwrap()).collect();
        l.set_capacity(Some(2));
        assert!(l.try_acquire().is_err(), "2 in use under a limit of 2");
        l.throttle(1, 2);
        l.set_capacity(Some(8));
        assert_eq!(l.effective_capacity(), Some(4));
        assert_eq!(l.capacity(), Some(8));
        l.set_capacity(None);
        assert_eq!(l.effective_capacity(), None);
        drop(held);
    }

    #[test]
    fn permits_survive_threads_and_panics() {
        let l = Limiter::new("x", Some(64));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let _p = l.try_acquire().unwrap();
                    }
                    let _p = l.try_acquire().unwrap();
                    if i % 2 == 0 {
                        panic!("a panic while holding a permit");
                    }
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            // Even threads panic on purpose, while holding a permit; any other
            // outcome (a refused permit, a panic elsewhere) fails the test.
            match h.join() {
                Ok(()) => assert!(i % 2 == 1, "thread {i} should have panicked"),
                Err(p) => {
                    let message = p.downcast_ref::<&str>().copied().unwrap_or("");
                    assert!(
                        i % 2 == 0 && message == "a panic while holding a permit",
                        "thread {i} panicked unexpectedly: {message:?}"
                    );
                }
            }
        }
        assert_eq!(l.in_use(), 0);
    }

    #[test]
    fn memory_budget_refuses_and_releases() {
        let m = MemoryBudget::new(Some(100));
        let r = m.try_reserve("a", 60).unwrap();
        let err = m.try_reserve("b", 50).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Overloaded);
        assert!(
            err.to_string()
                .contains("only 40 of the 100-byte memory budget"),
            "{err}"
        );
        drop(r);
        assert_eq!(m.used(), 0);
        assert!(m.try_reserve("b", 100).is_ok());
    }
}
