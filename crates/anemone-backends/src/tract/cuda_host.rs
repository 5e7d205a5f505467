//! Request inputs copied into page-locked host memory as they are admitted.
//!
//! A large input goes up to the GPU from page-locked memory
//! (`cuda_staging`). Copying a dynamic batch's rows there when the batch
//! runs puts that copy on the batch's critical path: about a third of a
//! batch's engine time for ResNet-18 on an H200 (docs/PERFORMANCE.md,
//! device run 47). `adopt` (tract-cuda's
//! [`anemone_core::LoadedModel::adopt_input`]) makes the copy earlier, on
//! the request's own task before it queues, into a block of a process-wide
//! pool. The upload then queues one DMA per request straight from its
//! block ([`is_pinned`]), with no host copy in the batch's run.
//!
//! Which block an input gets is `host_blocks`'s rule (portable, tested on
//! any machine): size classes a quarter of a power of two apart (a 602 KB
//! image takes a 640 KiB block), a free block of the class first, then a
//! new one, then any free block large enough. A block goes back to the
//! pool when the last tensor viewing it is dropped. Blocks are never
//! freed: together they stay within [`POOL_BUDGET`], and count toward
//! [`cuda_staging::PINNED_BUDGET`] with the staging buffers. An input that
//! finds no block (the pool at its budget with none free, page-locked
//! memory refused) stays where it is and takes the staging path.
//!
//! A block is reused only after its tensor is dropped, which is after the
//! engine call that uploaded it returned, and that call waits for its
//! uploads before it returns (`cuda_staging::settle`): the GPU never reads
//! a block that the next request is writing.

use super::cuda_staging;
use super::host_blocks::{BlockPool, HostBlock};
use anemone_core::{Bytes, Tensor};
use cudarc::driver::{CudaContext, PinnedHostSlice};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use tract_onnx::tract_core::runtime::Runnable;

/// The most page-locked memory the pool's blocks hold together: 409
/// ResNet-sized inputs (640 KiB blocks) waiting at once. Queued requests
/// past it keep their ordinary memory.
pub const POOL_BUDGET: usize = 256 << 20;

/// Inputs copied into a block, process-wide (for tests and `cuda_bench`).
static ADOPTED: AtomicU64 = AtomicU64::new(0);

/// How many request inputs were copied into page-locked blocks as they
/// were admitted, process-wide: lets a test on a GPU machine tell that the
/// path ran.
pub fn adopted_inputs() -> u64 {
    ADOPTED.load(Ordering::Relaxed)
}

/// Bytes of page-locked memory the pool's blocks hold, in use or free.
pub fn pooled_bytes() -> usize {
    POOL.get().map_or(0, |pool| pool.blocks.held_bytes())
}

/// A copy of input `ix` in a page-locked block, for an input that the
/// upload would stage (see `cuda_staging`); `None` for any other input,
/// with staging not `pinned` ([`cuda_staging::STAGING_ENV`]), or where no
/// block can be had.
pub(super) fn adopt(runnable: &dyn Runnable, ix: usize, input: &Tensor) -> Option<Tensor> {
    if cuda_staging::mode() != cuda_staging::Mode::Pinned {
        return None;
    }
    let bytes = super::inputs::plain_bytes(input)?;
    if is_pinned(bytes) || !cuda_staging::stages(runnable, ix, input.dtype(), bytes.len()) {
        return None;
    }
    let block = pool().take(bytes.len())?;
    // SAFETY: the block is this lease's alone until it is dropped (taken
    // from the free list under its lock), at least `bytes.len()` long, and
    // no DMA reads it: the last upload from it completed before its
    // previous tensor was dropped (module documentation).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), block.ptr, bytes.len()) };
    let lease = Lease {
        block: ManuallyDrop::new(block),
        len: bytes.len(),
    };
    let adopted = Tensor::from_bytes(
        input.dtype(),
        input.shape().to_vec(),
        Bytes::from_owner(lease),
    )
    .ok()?;
    ADOPTED.fetch_add(1, Ordering::Relaxed);
    Some(adopted)
}

/// Whether `part` lies inside one of the pool's page-locked blocks, so the
/// GPU can copy it without a host copy first.
pub fn is_pinned(part: &[u8]) -> bool {
    let Some(pool) = POOL.get() else {
        return false;
    };
    let (start, end) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
    pool.ranges
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|&(s, e)| s <= start && end <= e)
}

static POOL: OnceLock<Pool> = OnceLock::new();

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool {
        blocks: BlockPool::new(POOL_BUDGET),
        ranges: RwLock::new(Vec::new()),
        context: OnceLock::new(),
    })
}

/// The blocks, and the address range of every block allocated.
struct Pool {
    blocks: BlockPool<Block>,
    ranges: RwLock<Vec<(usize, usize)>>,
    /// The device's primary context, the one tract-cuda runs on; `None`
    /// when it could not be had (no block is allocated then).
    context: OnceLock<Option<Arc<CudaContext>>>,
}

impl Pool {
    /// A block of at least `len` bytes (`host_blocks`'s rule).
    fn take(&self, len: usize) -> Option<Block> {
        self.blocks.take(len, |size| self.allocate(size))
    }

    /// A new page-locked block of `size` bytes, within
    /// [`cuda_staging::PINNED_BUDGET`] (the pool keeps its own budget).
    fn allocate(&self, size: usize) -> Option<Block> {
        if !cuda_staging::take_budget(size) {
            return None;
        }
        let refund = || cuda_staging::return_budget(size);
        let Some(context) = self
            .context
            .get_or_init(|| super::captures::outside_captures(|| CudaContext::new(0).ok()))
            .clone()
        else {
            refund();
            return None;
        };
        // Never while another thread captures a CUDA graph (as for the
        // staging buffers). Portable: pinned for every context, whichever
        // one a later upload runs on.
        let allocated = super::captures::outside_captures(|| {
            // SAFETY: every lease writes the prefix it hands out before any
            // of it is read.
            unsafe {
                context.alloc_pinned_with_flags::<u8>(
                    size,
                    cudarc::driver::sys::CU_MEMHOSTALLOC_PORTABLE,
                )
            }
        });
        let mut slice = match allocated {
            Ok(slice) => slice,
            Err(e) => {
                refund();
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    tracing::warn!(
                        error = %e,
                        bytes = size,
                        "tract-cuda: cannot allocate page-locked memory for request inputs; \
                         they are staged when their batch runs instead"
                    )
                });
                return None;
            }
        };
        let ptr = match slice.as_mut_slice() {
            Ok(s) => s.as_mut_ptr(),
            Err(_) => {
                // Dropping the slice frees it (a fresh allocation: no work
                // is queued on it).
                super::captures::outside_captures(|| drop(slice));
                refund();
                return None;
            }
        };
        self.ranges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((ptr as usize, ptr as usize + size));
        Some(Block {
            ptr,
            size,
            _slice: ManuallyDrop::new(slice),
        })
    }
}

/// One page-locked allocation of the pool; never freed.
struct Block {
    ptr: *mut u8,
    size: usize,
    _slice: ManuallyDrop<PinnedHostSlice<u8>>,
}

impl HostBlock for Block {
    fn size(&self) -> usize {
        self.size
    }
}

// SAFETY: the block is plain host memory owned by the pool; a lease gives
// one tensor at a time shared, read-only access to it.
unsafe impl Send for Block {}
unsafe impl Sync for Block {}

/// A block lent to one tensor: its first `len` bytes are the tensor's.
struct Lease {
    block: ManuallyDrop<Block>,
    len: usize,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: written before the lease was made; not written again
        // while the lease lives.
        unsafe { std::slice::from_raw_parts(self.block.ptr, self.len) }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is not used again.
        let block = unsafe { ManuallyDrop::take(&mut self.block) };
        pool().blocks.give(block);
    }
}
