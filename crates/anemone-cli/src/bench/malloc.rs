//! Keeps glibc's allocator from handing large buffers back to the kernel
//! between requests.
//!
//! Each gRPC request the client sends is a fresh copy of the message and a
//! fresh encoding buffer (tonic owns both), as large as the inputs: 602 KB
//! for one 3x224x224 float32 image. glibc's defaults serve such a buffer
//! with `mmap` (or trim it off the heap when freed), so every request
//! faulted its pages in again: 114 page faults per request, 70% of the
//! client's CPU time in the kernel, measured on the 2-core VM (2026-12-01,
//! docs/PERFORMANCE.md "The load generator's own cost"). With the mapping and
//! trimming thresholds raised, the freed buffers stay in the heap and the
//! next request reuses them: the same client sent 47% more requests.
//!
//! Setting the thresholds also turns off glibc's own adjustment of them,
//! and the heap keeps up to [`TRIM_THRESHOLD`] of freed memory. Other C
//! libraries are left alone.

/// Allocations at least this large are mapped on their own.
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Free memory at the top of the heap beyond this goes back to the kernel.
const TRIM_THRESHOLD: i32 = 128 << 20;

/// Raises glibc's mapping and trimming thresholds for this process.
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes the allocator's own locks and only changes its
    // parameters; no pointer is involved.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
