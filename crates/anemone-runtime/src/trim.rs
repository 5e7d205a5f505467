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
