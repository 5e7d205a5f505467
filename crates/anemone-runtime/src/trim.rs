//! Giving memory that a load or an unload freed back to the system.
//!
//! Comparing the CPU engines loads a model on both and drops the slower
//! one; glibc's allocator keeps the freed pages in its arenas (one per
//! loader thread), so without a trim the process stays as large as if both
//! engines were still loaded (measured in docs/PERFORMANCE.md, "Memory per
//! model").

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`);
/// nothing elsewhere. Costs a walk of the allocator's free lists, a few
/// milliseconds at most: called once per load and unload, never per request.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointer and only walks and shrinks
        // glibc's own free lists, under its own locks; any thread may call it.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Caps the arenas glibc's allocator creates (`mallopt(M_ARENA_MAX, n)`);
/// returns whether the cap was set (false elsewhere than glibc, and for 0,
/// which leaves glibc's default of 8 per core). Call it first thing in a
/// process, before threads allocate: each thread that loads a model in
/// parallel with others otherwise gets an arena of its own, and the freed
/// temporaries of each load stay spread over them (docs/PERFORMANCE.md,
/// "Memory per model"). Small allocations stay lock-free through glibc's
/// per-thread cache; larger ones share the arenas' locks.
pub fn limit_allocator_arenas(n: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        /// glibc's `M_ARENA_MAX` (malloc.h).
        const M_ARENA_MAX: std::ffi::c_int = -8;
        if n == 0 {
            return false;
        }
        let n = std::ffi::c_int::try_from(n).unwrap_or(std::ffi::c_int::MAX);
        // SAFETY: mallopt takes two integers and only changes glibc's own
        // allocator parameters, under its own lock.
        unsafe { mallopt(M_ARENA_MAX, n) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = n;
        false
    }
}

/// Gives freed memory back once traffic pauses: inference leaves the
/// engines' freed activations in the allocator (tens of MiB on the five
/// real models of docs/PERFORMANCE.md). The health monitor's thread calls
/// [`IdleTrim::look`] at each look (every second by default); it trims
/// once after each burst of requests, when a whole interval passed without
/// a request answered and none is in flight, so a trim never runs while
/// requests allocate.
#[derive(Debug, Default)]
pub(crate) struct IdleTrim {
    /// Requests answered at the previous look.
    at_last_look: u64,
    /// Requests answered when memory was last given back.
    at_last_trim: u64,
}

impl IdleTrim {
    /// `answered`: requests answered so far; `in_flight`: requests now in
    /// flight. Returns whether it trimmed.
    pub(crate) fn look(&mut self, answered: u64, in_flight: usize) -> bool {
        let idle = in_flight == 0 && answered == self.at_last_look;
        self.at_last_look = answered;
        if idle && answered != self.at_last_trim {
            self.at_last_trim = answered;
            release_freed_memory();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::IdleTrim;

    #[test]
    fn trims_once_after_each_burst_when_idle() {
        let mut t = IdleTrim::default();
        assert!(!t.look(0, 0), "no traffic yet");
        assert!(!t.look(5, 1), "requests answered since the last look");
        assert!(!t.look(9, 0), "still answering");
        assert!(!t.look(9, 2), "idle count, but requests in flight");
        assert!(t.look(9, 0), "a whole interval without a request");
        assert!(!t.look(9, 0), "once per burst");
        assert!(!t.look(12, 0));
        assert!(t.look(12, 0), "the next burst");
    }
}
