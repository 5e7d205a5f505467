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
//! context (it applies to the device's primary context). This part is
//! portable and tested here; applying it is `cuda.rs`'s.

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
    /// (an unknown value is ignored with a warning).
    pub fn configured() -> Wait {
        Self::parse(std::env::var(WAIT_ENV).ok().as_deref())
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
}
