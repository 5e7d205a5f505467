//! How a thread waits for the GPU: by sleeping until the driver wakes it,
//! or by spinning on a core.
//!
//! A tract-cuda call ends by waiting for its stream (its outputs are read
//! back). With the driver's default scheduling (`CU_CTX_SCHED_AUTO`, which
//! spins whenever the process has fewer CUDA contexts than the machine has
//! cores) every waiting thread keeps a core busy for the whole GPU time of
//! its call. A server runs many calls at once, one per worker thread:
//! sixteen threads waiting on sixteen batch-1 calls took every core of a
//! 16-core machine from the threads that receive and answer requests
//! (docs/PERFORMANCE.md, "Waiting for the GPU"). So anemone asks the driver
//! to block the thread instead ([`Wait::Block`], the default), as a serving
//! process wants; [`WAIT_ENV`] chooses another way.
//!
//! The choice is made once per process, before tract-cuda creates its
//! context (it applies to the device's primary context).
//!
//! Blocking costs each wait the driver's wake-up, which on an H200 machine
//! made single calls 10–20% slower than spinning. So a call replayed from
//! a CUDA graph, whose GPU time the thread has seen before, waits in two
//! steps instead (`cuda_readback`): it sleeps for the time the call is
//! expected to take less [`POLL_MARGIN`] ([`sleep_before_polling`]), then
//! polls the stream until the work is done. The expectation follows what
//! the thread measured, without feeding on its own late wake-ups
//! ([`next_expected`]).
//!
//! This part is portable and tested here; applying it is `cuda.rs`'s and
//! `cuda_readback.rs`'s.

use std::time::Duration;

/// How much earlier than expected a waiting thread wakes to poll: an OS
/// sleep may overrun by tens of microseconds, and a call's GPU time varies
/// from one call to the next.
pub const POLL_MARGIN: Duration = Duration::from_micros(200);

/// How long to sleep after launching work expected to take `expected`
/// before polling for its end: nothing where no expectation exists yet or
/// it is within [`POLL_MARGIN`].
pub fn sleep_before_polling(expected: Option<Duration>) -> Duration {
    expected.map_or(Duration::ZERO, |e| e.saturating_sub(POLL_MARGIN))
}

/// The expected time of the next call, after one that was seen done
/// `took` after its launch.
///
/// The first measurement is taken as it is; after that the expectation
/// moves an eighth of the way to each new one, so that one slow call does
/// not make the next ones sleep past their end. A call that was already
/// done at the first poll (`done_at_first_poll`) may have ended any time
/// before `took`: the thread overslept, and taking `took` as the call's
/// time would make the next sleep longer still (an OS sleep can overrun by
/// more than [`POLL_MARGIN`]). The expectation then moves toward a time
/// half a margin shorter than both, until a poll finds the work running.
pub fn next_expected(
    expected: Option<Duration>,
    took: Duration,
    done_at_first_poll: bool,
) -> Duration {
    match expected {
        None => took,
        Some(e) if done_at_first_poll => (e * 7 + took.min(e).saturating_sub(POLL_MARGIN / 2)) / 8,
        Some(e) => (e * 7 + took) / 8,
    }
}

/// How a thread waits for the GPU (the scheduling flags of the CUDA
/// context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The thread sleeps until the GPU is done (`CU_CTX_SCHED_BLOCKING_SYNC`):
    /// no core is spent waiting; waking takes some microseconds.
    Block,
    /// The thread spins on its core (`CU_CTX_SCHED_SPIN`): the quickest
    /// wake-up, a core busy for as long as the GPU works.
    Spin,
    /// The thread spins but yields its core to other threads
    /// (`CU_CTX_SCHED_YIELD`).
    Yield,
    /// The driver's own choice (`CU_CTX_SCHED_AUTO`: spin while the process
    /// has fewer CUDA contexts than the machine has cores, else yield).
    Auto,
}

/// The environment variable that sets [`Wait`]: `block` (the default),
/// `spin`, `yield` or `auto`.
pub const WAIT_ENV: &str = "ANEMONE_TRACT_CUDA_WAIT";

impl Wait {
    /// The way [`WAIT_ENV`] asks for, or [`Wait::Block`] where it is unset
    /// (an unknown value is ignored with a warning); read once per process,
    /// as the context's flags are set once.
    pub fn configured() -> Wait {
        static CHOSEN: std::sync::OnceLock<Wait> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| Self::parse(std::env::var(WAIT_ENV).ok().as_deref()))
    }

    /// [`Wait::configured`] with the environment's value given.
    pub fn parse(set: Option<&str>) -> Wait {
        match set.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("block") | Some("") | None => Wait::Block,
            Some("spin") => Wait::Spin,
            Some("yield") => Wait::Yield,
            Some("auto") => Wait::Auto,
            Some(other) => {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    tracing::warn!(
                        value = other,
                        "{WAIT_ENV} is not one of block, spin, yield or auto; threads block"
                    )
                });
                Wait::Block
            }
        }
    }

    /// The way's name, as [`WAIT_ENV`] takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Wait::Block => "block",
            Wait::Spin => "spin",
            Wait::Yield => "yield",
            Wait::Auto => "auto",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_block_unless_the_setting_says_otherwise() {
        assert_eq!(Wait::parse(None), Wait::Block);
        assert_eq!(Wait::parse(Some("")), Wait::Block);
        assert_eq!(Wait::parse(Some(" Spin ")), Wait::Spin);
        assert_eq!(Wait::parse(Some("YIELD")), Wait::Yield);
        assert_eq!(Wait::parse(Some("auto")), Wait::Auto);
        // An unknown value keeps the default rather than failing the load.
        assert_eq!(Wait::parse(Some("busy")), Wait::Block);
        for wait in [Wait::Block, Wait::Spin, Wait::Yield, Wait::Auto] {
            assert_eq!(Wait::parse(Some(wait.as_str())), wait);
        }
    }

    #[test]
    fn a_replay_sleeps_until_shortly_before_its_expected_end() {
        let us = Duration::from_micros;
        // Nothing measured yet: poll at once.
        assert_eq!(sleep_before_polling(None), Duration::ZERO);
        // Work shorter than the margin: poll at once.
        assert_eq!(sleep_before_polling(Some(us(150))), Duration::ZERO);
        assert_eq!(sleep_before_polling(Some(POLL_MARGIN)), Duration::ZERO);
        // Longer work: wake the margin before the expected end.
        assert_eq!(
            sleep_before_polling(Some(us(1_400))),
            us(1_400) - POLL_MARGIN
        );
    }

    #[test]
    fn the_expectation_follows_measurements_without_jumping_to_an_outlier() {
        let us = Duration::from_micros;
        assert_eq!(next_expected(None, us(1_000), false), us(1_000));
        assert_eq!(next_expected(Some(us(1_000)), us(1_000), false), us(1_000));
        // One call eight times slower moves the expectation by less than 2x.
        let after_outlier = next_expected(Some(us(1_000)), us(8_000), false);
        assert_eq!(after_outlier, us(1_875));
        // A lasting change is followed: twenty calls at 2 ms from 1 ms.
        let mut e = us(1_000);
        for _ in 0..20 {
            e = next_expected(Some(e), us(2_000), false);
        }
        assert!(e > us(1_900) && e <= us(2_000), "{e:?}");
    }

    /// A thread that sleeps 300 µs longer than asked, on work of 400 µs: it
    /// wakes late, finds the work done and must not take its late wake-up
    /// for the work's time, or every sleep gets longer than the last.
    #[test]
    fn oversleeping_does_not_feed_on_itself() {
        let us = Duration::from_micros;
        let (work, overrun) = (us(400), us(300));
        let mut expected = None;
        for _ in 0..200 {
            let wake = sleep_before_polling(expected) + overrun;
            let (took, done_at_first_poll) = if wake >= work {
                (wake, true)
            } else {
                (work, false)
            };
            expected = Some(next_expected(expected, took, done_at_first_poll));
        }
        let e = expected.unwrap();
        // It settles where the late wake-up lands about at the work's end,
        // never above the work's own time.
        assert!(e <= work, "expected {e:?} for work of {work:?}");
        let wake = sleep_before_polling(Some(e)) + overrun;
        assert!(
            wake <= work + POLL_MARGIN / 2,
            "wakes at {wake:?}, work ends at {work:?}"
        );
    }
}
