//! Copying several byte slices, one after another, into one buffer, on a few
//! threads when it is large.
//!
//! A dynamic batch of 32 ResNet inputs is 19 MB from 32 request buffers.
//! One thread copies that at 5 to 10 GB/s (2 to 4 ms, measured on the lent
//! H200 machine's CPU), a memory bandwidth a single core cannot exceed;
//! several cores together can, so the copy is split by bytes across up to
//! [`MAX_THREADS`] scoped threads once it is [`PARALLEL_FROM`] or more.
//! Used for a batch's concatenation ([`crate::Tensor::concat_batch`]) and
//! for tract-cuda's page-locked staging buffers.

use std::mem::MaybeUninit;

/// Copies below this size run on the calling thread: starting a thread
/// costs tens of microseconds.
pub const PARALLEL_FROM: usize = 4 << 20;

/// The most threads one copy uses (the caller's included).
pub const MAX_THREADS: usize = 4;

/// Writes `parts` one after another at the start of `dst`, which must hold
/// their total length; returns that length. Large copies are split across
/// threads (see the module documentation).
///
/// # Panics
///
/// If `dst` is shorter than the parts together.
pub fn gather_into(dst: &mut [u8], parts: &[&[u8]]) -> usize {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    assert!(
        dst.len() >= len,
        "gather_into: {len} bytes into a buffer of {}",
        dst.len()
    );
    // SAFETY: `MaybeUninit<u8>` has `u8`'s layout, and only initialised
    // bytes are written through the view, so `dst` stays initialised.
    let dst = unsafe { &mut *(dst as *mut [u8] as *mut [MaybeUninit<u8>]) };
    gather_on(dst, parts, len, threads_for(len));
    len
}

/// `parts` one after another in a new vector, copied as [`gather_into`]
/// copies (the vector is not zeroed first).
pub fn gather_to_vec(parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len);
    gather_on(
        &mut out.spare_capacity_mut()[..len],
        parts,
        len,
        threads_for(len),
    );
    // SAFETY: `gather_on` wrote all `len` bytes (the parts cover them).
    unsafe { out.set_len(len) };
    out
}

/// The size to give a buffer that must now hold `len` bytes and is to be
/// reused for more copies like this one: `len` rounded up to a power of
/// two, at most `max` (and never below `len`). A dynamic batch's size
/// changes from one call to the next; grown to the exact length, a
/// page-locked staging buffer was reallocated whenever a batch came a row
/// larger than any before on its thread (0.48 ms a batch on average, with
/// ResNet-18 served on an H200: docs/PERFORMANCE.md).
pub fn buffer_capacity(len: usize, max: usize) -> usize {
    len.checked_next_power_of_two()
        .unwrap_or(len)
        .min(max)
        .max(len)
}

/// Fills `dst[..len]` with the parts (which add up to `len`) on `threads`
/// threads (the caller's included).
fn gather_on(dst: &mut [MaybeUninit<u8>], parts: &[&[u8]], len: usize, threads: usize) {
    if threads <= 1 {
        copy_range(&mut dst[..len], 0, parts);
        return;
    }
    let chunk = len.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut rest = &mut dst[..len];
        let mut start = 0;
        let mut own = None;
        while !rest.is_empty() {
            let (this, tail) = rest.split_at_mut(chunk.min(rest.len()));
            rest = tail;
            if own.is_none() {
                // The calling thread takes the first range itself.
                own = Some((this, start));
            } else {
                let at = start;
                scope.spawn(move || copy_range(this, at, parts));
            }
            start += chunk;
        }
        if let Some((this, at)) = own {
            copy_range(this, at, parts);
        }
    });
}

/// How many threads a copy of `len` bytes uses.
fn threads_for(len: usize) -> usize {
    if len < PARALLEL_FROM {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (len / (PARALLEL_FROM / 2))
        .min(MAX_THREADS)
        .min(cores.div_ceil(2))
        .max(1)
}

/// Fills `dst`, which stands for bytes `at..at + dst.len()` of the parts
/// laid end to end.
fn copy_range(dst: &mut [MaybeUninit<u8>], at: usize, parts: &[&[u8]]) {
    let end = at + dst.len();
    let mut offset = 0; // where the current part starts in the whole
    for part in parts {
        let (from, to) = (offset, offset + part.len());
        offset = to;
        if to <= at {
            continue;
        }
        if from >= end {
            break;
        }
        let (lo, hi) = (from.max(at), to.min(end));
        let src = &part[lo - from..hi - from];
        let out = &mut dst[lo - at..hi - at];
        // SAFETY: `out` and `src` have the same length (`hi - lo`), and a
        // borrowed source cannot overlap the exclusively borrowed `out`.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr().cast::<u8>(), src.len())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts of uneven sizes (so that thread ranges start and end inside
    /// parts), each byte telling its part and position.
    fn parts(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| (0..n).map(|i| (k * 31 + i * 7) as u8).collect())
            .collect()
    }

    fn uninit(bytes: &mut [u8]) -> &mut [MaybeUninit<u8>] {
        // SAFETY: as in `gather_into`.
        unsafe { &mut *(bytes as *mut [u8] as *mut [MaybeUninit<u8>]) }
    }

    /// Through `gather_into` and `gather_to_vec` (as many threads as this
    /// machine gives), then on 1 to 5 threads whatever the machine.
    fn check(sizes: &[usize], spare: usize) {
        let parts = parts(sizes);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let want: Vec<u8> = parts.concat();
        let mut dst = vec![0xAAu8; want.len() + spare];
        assert_eq!(gather_into(&mut dst, &refs), want.len());
        assert!(
            gather_to_vec(&refs) == want,
            "sizes {sizes:?}: gather_to_vec"
        );
        assert!(
            dst[..want.len()] == want[..],
            "sizes {sizes:?}: bytes differ"
        );
        assert!(
            dst[want.len()..].iter().all(|&b| b == 0xAA),
            "wrote past the end"
        );
        for threads in 1..=5 {
            let mut dst = vec![0xAAu8; want.len() + spare];
            gather_on(uninit(&mut dst), &refs, want.len(), threads);
            assert!(
                dst[..want.len()] == want[..],
                "sizes {sizes:?}, {threads} threads: bytes differ"
            );
            assert!(
                dst[want.len()..].iter().all(|&b| b == 0xAA),
                "{threads} threads: wrote past the end"
            );
        }
    }

    #[test]
    fn buffers_grow_to_a_power_of_two_within_the_cap() {
        assert_eq!(buffer_capacity(602_112, 64 << 20), 1 << 20);
        assert_eq!(buffer_capacity(14 * 602_112, 64 << 20), 16 << 20);
        assert_eq!(buffer_capacity(16 << 20, 64 << 20), 16 << 20);
        // The cap wins over the rounding, the length over the cap.
        assert_eq!(buffer_capacity(40 << 20, 48 << 20), 48 << 20);
        assert_eq!(buffer_capacity(50 << 20, 48 << 20), 50 << 20);
        assert_eq!(buffer_capacity(usize::MAX - 1, 64), usize::MAX - 1);
    }

    #[test]
    fn small_copies_lay_the_parts_end_to_end() {
        check(&[], 0);
        check(&[0, 5, 0, 3], 4);
        check(&[1000, 1, 999], 0);
    }

    #[test]
    fn large_copies_split_across_threads_lay_the_parts_end_to_end() {
        assert_eq!(threads_for(PARALLEL_FROM - 1), 1);
        assert!((1..=MAX_THREADS).contains(&threads_for(usize::MAX / 2)));
        // 32 parts of 602,112 bytes (a batch of ResNet inputs), and uneven
        // parts whose boundaries fall inside the threads' ranges.
        check(&[602_112; 32], 0);
        check(&[3 << 20, 1, (5 << 20) + 3, 7, 1 << 20], 13);
        check(&[PARALLEL_FROM], 0);
    }

    #[test]
    fn every_thread_range_copies_exactly_its_bytes() {
        // The range logic alone, with ranges that start inside parts.
        let parts = parts(&[10, 3, 0, 17]);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let want = parts.concat();
        for at in 0..want.len() {
            for n in 0..=want.len() - at {
                let mut dst = vec![0u8; n];
                copy_range(uninit(&mut dst), at, &refs);
                assert_eq!(dst, want[at..at + n], "range {at}..{}", at + n);
            }
        }
    }

    #[test]
    #[should_panic(expected = "gather_into")]
    fn a_short_buffer_is_refused() {
        gather_into(&mut [0u8; 3], &[&[1, 2], &[3, 4]]);
    }
}
