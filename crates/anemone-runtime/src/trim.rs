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
