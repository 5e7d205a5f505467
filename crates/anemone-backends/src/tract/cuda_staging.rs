//! Model inputs to the GPU through page-locked host memory.
//!
//! tract-cuda uploads a host input with `clone_htod` from wherever the host
//! tensor lives: ordinary (pageable) memory, which the CUDA driver copies
//! through its own small pinned buffer a chunk at a time. For a batch of 32
//! ResNet inputs (19 MB) that took 2 to 3 ms of a 8.4 ms call on an H200
//! (docs/PERFORMANCE.md), where a direct DMA from page-locked memory runs at
//! the bus's speed.
//!
//! So for a large input that goes straight to the device, [`upload`] copies
//! anemone's bytes into this thread's page-locked staging buffer (the copy
//! that converting to a tract tensor made anyway; for a dynamic batch, each
//! request's rows straight to their place, which saves the concatenation),
//! queues the upload from there into a device tensor, and hands tract that
//! device tensor in a [`LazyHostStorage`]: tract's `DeviceSync` passes such
//! a tensor through without a second upload. Anything else (small inputs, strings, inputs a
//! CPU operator reads first, [`STAGING_ENV`] set to `pageable`) takes
//! tract's own path.
//!
//! Where every part is already in page-locked memory (requests adopted at
//! admission, `cuda_host`), nothing is copied: one upload per part goes
//! straight from it.
//!
//! Memory: one buffer per thread that ran a staged input, as large as the
//! largest input it staged rounded up to a power of two (at most
//! [`STAGE_MAX`]), kept for the thread's life; all of them together at most
//! [`PINNED_BUDGET`]. Page-locked memory counts in the process's resident
//! size.

use super::convert;
use anemone_core::DataType;
use cudarc::driver::{CudaContext, CudaEvent, PinnedHostSlice};
use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tract_gpu::sync::{DeviceSync, DeviceSyncKind};
use tract_gpu::tensor::{DeviceTensor, LazyHostStorage};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::Runnable;

/// Inputs smaller than this take tract's own upload: the driver's pageable
/// path is as fast for them and a staging buffer would only cost memory.
pub const STAGE_MIN: usize = 256 << 10;

/// Inputs larger than this take tract's own upload, so that no thread pins
/// more than this much host memory.
pub const STAGE_MAX: usize = 64 << 20;

/// The most page-locked memory the staging buffers of all threads hold
/// together. A thread whose buffer would take them past it sends its inputs
/// up from ordinary memory instead.
///
/// The buffers are per thread, and a dynamic batch may run on any worker
/// thread: a ResNet batch of 32 (19 MB, in a 32 MiB buffer) on 16 workers
/// wants 512 MiB, which a budget like Triton's shared 256 MiB pool would
/// cut short (some batches then take the slow path). One pool shared by the threads would need only
/// as many buffers as uploads run at once; until then, 1 GiB.
pub const PINNED_BUDGET: usize = 1 << 30;

/// Bytes the staging buffers of all threads hold.
static PINNED: AtomicUsize = AtomicUsize::new(0);

/// Bytes of page-locked memory the staging buffers of all threads hold now
/// (a thread's is freed when the thread ends).
pub fn pinned_bytes() -> usize {
    PINNED.load(Ordering::Relaxed)
}

/// The environment variable that chooses how inputs go up ([`Mode`]):
/// `pinned` (the default), `gather` or `pageable`; for comparisons
/// (`scripts/bench_gpu_batching.sh`).
pub const STAGING_ENV: &str = "ANEMONE_TRACT_CUDA_STAGING";

/// How large inputs go up to the GPU ([`STAGING_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copied into page-locked memory as each request is admitted
    /// (`cuda_host`), uploaded from there with no copy in the run; inputs
    /// that were not are staged as with `Gather`. The default.
    Pinned,
    /// Copied into the running thread's staging buffer when the call runs
    /// (a dynamic batch: each request's rows to their place), then uploaded.
    Gather,
    /// tract's own upload, from ordinary memory.
    Pageable,
}

impl Mode {
    /// The mode a value of [`STAGING_ENV`] names; anything else is the
    /// default, [`Mode::Pinned`].
    pub fn parse(value: Option<&str>) -> Mode {
        match value {
            Some("pageable") => Mode::Pageable,
            Some("gather") => Mode::Gather,
            _ => Mode::Pinned,
        }
    }
}

/// This process's [`Mode`], read from [`STAGING_ENV`] once.
pub fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| Mode::parse(std::env::var(STAGING_ENV).ok().as_deref()))
}

/// How many inputs went up through a staging buffer, or straight from
/// page-locked blocks, process-wide: lets a test on a GPU machine tell
/// that the staged path ran.
pub fn staged_uploads() -> u64 {
    STAGED.load(Ordering::Relaxed)
}

/// How many of [`staged_uploads`] went up straight from the requests'
/// page-locked blocks (`cuda_host`), with no copy when the call ran.
pub fn direct_uploads() -> u64 {
    DIRECT.load(Ordering::Relaxed)
}

static STAGED: AtomicU64 = AtomicU64::new(0);
static DIRECT: AtomicU64 = AtomicU64::new(0);

/// A thread's staging buffer, and the end of the last upload from it.
#[derive(Default)]
struct Staging {
    /// Grown to the largest input staged.
    buffer: Option<Pinned>,
    /// Recorded on the thread's stream after the last upload: the buffer is
    /// written again only once it has completed.
    uploaded: Option<CudaEvent>,
}

thread_local! {
    static STAGING: RefCell<Staging> = RefCell::new(Staging::default());
}

fn enabled() -> bool {
    mode() != Mode::Pageable
}

/// Waits for this thread's last queued upload. Called when an engine call
/// returns, success or not: the requests' page-locked blocks it read from
/// may go back to the pool (and be written) as soon as their tensors drop.
pub fn settle() {
    let last = STAGING.with_borrow_mut(|staging| staging.uploaded.take());
    if let Some(last) = last {
        if let Err(e) = last.synchronize() {
            tracing::warn!(error = %e, "tract-cuda: waiting for an input upload failed");
        }
    }
}

/// Input `ix` of `runnable`, a tensor of `dtype` and `shape` whose bytes
/// are `parts` one after another, as a device tensor uploaded through this
/// thread's staging buffer; `None` where tract's own path should take it
/// (see the module documentation for which inputs those are).
///
/// The upload is queued on the thread's stream and not waited for: the
/// plan's kernels run after it on the same stream.
pub fn upload(
    runnable: &dyn Runnable,
    ix: usize,
    dtype: DataType,
    shape: &[usize],
    parts: &[&[u8]],
) -> TractResult<Option<TValue>> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let dt = convert::datum_type(dtype);
    if !enabled()
        || shape.iter().product::<usize>() * dt.size_of() != len
        || !stages(runnable, ix, dtype, len)
    {
        return Ok(None);
    }
    let t0 = std::time::Instant::now();
    let device = DeviceTensor::uninitialized_dt(dt, shape)?;
    // Wrapped before the upload is queued: wrapping waits for this thread's
    // stream, which is idle here, where after the upload it would wait for
    // the copy and hold back the launches that can overlap it.
    let value = LazyHostStorage::new(device.clone())?
        .into_tensor()
        .into_tvalue();
    let t1 = std::time::Instant::now();
    if parts.iter().all(|p| super::cuda_host::is_pinned(p)) {
        return direct(&device, parts).map(|()| Some(value));
    }
    let staged = tract_cuda::with_cuda_stream(|stream| {
        STAGING.with_borrow_mut(|staging| {
            if let Some(last) = staging.uploaded.take() {
                last.synchronize()?;
            }
            let t2 = std::time::Instant::now();
            let host = match buffer(&mut staging.buffer, stream.context(), len) {
                Ok(Some(host)) => host,
                Ok(None) => {
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        tracing::info!(
                            budget_mib = PINNED_BUDGET >> 20,
                            bytes = len,
                            "tract-cuda: the page-locked staging buffers are at their budget; \
                             inputs that would need more go up from ordinary memory"
                        )
                    });
                    return Ok(false);
                }
                Err(e) => {
                    // Page-locked memory can run out where ordinary memory
                    // does not: the request still runs, through tract's path.
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        tracing::warn!(
                            error = %e,
                            bytes = len,
                            "tract-cuda: cannot allocate page-locked staging memory; \
                             inputs go up from ordinary memory (slower for large inputs)"
                        )
                    });
                    return Ok(false);
                }
            };
            // Large copies on a few threads (`gather`): one core's memory
            // bandwidth is what limits them.
            let t3 = std::time::Instant::now();
            crate::gather::gather_into(&mut host[..len], parts);
            let t4 = std::time::Instant::now();
            let mut view = tract_cuda::kernels::get_cuda_view_mut(&device);
            // From page-locked memory the copy is asynchronous.
            stream.memcpy_htod(&host[..len], &mut view)?;
            staging.uploaded = Some(stream.record_event(None)?);
            tracing::trace!(
                parts = parts.len(),
                bytes = len,
                alloc_us = (t1 - t0).as_micros() as u64,
                wait_us = (t2 - t1).as_micros() as u64,
                buffer_us = (t3 - t2).as_micros() as u64,
                gather_us = (t4 - t3).as_micros() as u64,
                copy_us = t4.elapsed().as_micros() as u64,
                "staged upload"
            );
            Ok(true)
        })
    })?;
    if !staged {
        return Ok(None);
    }
    STAGED.fetch_add(1, Ordering::Relaxed);
    Ok(Some(value))
}

/// Queues one upload per part into `device`, straight from the parts'
/// page-locked blocks (`cuda_host`), and records its end for [`settle`].
fn direct(device: &DeviceTensor, parts: &[&[u8]]) -> TractResult<()> {
    let t0 = std::time::Instant::now();
    tract_cuda::with_cuda_stream(|stream| {
        let queued = (|| -> TractResult<()> {
            let mut offset = 0;
            for part in parts {
                let mut view =
                    tract_cuda::kernels::get_sliced_cuda_view_mut(device, offset, part.len())?;
                // From page-locked memory the copy is asynchronous.
                stream.memcpy_htod(*part, &mut view)?;
                offset += part.len();
            }
            // Recorded after the uploads on the same stream: once it has
            // completed, so have they (and any earlier one it replaces).
            let event = stream.record_event(None)?;
            STAGING.with_borrow_mut(|staging| staging.uploaded = Some(event));
            Ok(())
        })();
        if queued.is_err() {
            // Uploads queued before the failure must not outlive the call
            // (their blocks go back to the pool): wait for them here.
            let _ = stream.synchronize();
        }
        queued
    })?;
    STAGED.fetch_add(1, Ordering::Relaxed);
    DIRECT.fetch_add(1, Ordering::Relaxed);
    tracing::trace!(
        parts = parts.len(),
        bytes = parts.iter().map(|p| p.len()).sum::<usize>(),
        copy_us = t0.elapsed().as_micros() as u64,
        "direct upload from page-locked request memory"
    );
    Ok(())
}

/// The thread's staging buffer as a slice of at least `len` bytes, allocated
/// or grown on the context of the thread's stream: to
/// [`crate::gather::buffer_capacity`] (a power of two, so that the next
/// batch a few rows larger fits), or to `len` where that would take the
/// buffers past [`PINNED_BUDGET`]; `None` when even `len` would.
pub(super) fn buffer<'a>(
    buffer: &'a mut Option<Pinned>,
    context: &Arc<CudaContext>,
    len: usize,
) -> TractResult<Option<&'a mut [u8]>> {
    if buffer.as_ref().is_none_or(|b| b.0.len() < len) {
        // Drop the old buffer first: both at once would pin twice the memory.
        *buffer = None;
        let roomy = crate::gather::buffer_capacity(len, STAGE_MAX);
        let size = if take_budget(roomy) {
            roomy
        } else if take_budget(len) {
            len
        } else {
            return Ok(None);
        };
        // Never while another thread captures a CUDA graph: that
        // invalidated its capture (`captures::outside_captures`).
        let allocated = super::captures::outside_captures(|| {
            // SAFETY: the bytes are written before any are read (each user
            // writes the prefix it copies out). Plain page-locked memory (no
            // write-combining): the CPU copy into it is an ordinary memcpy.
            unsafe { context.alloc_pinned_with_flags::<u8>(size, 0) }
        });
        match allocated {
            Ok(slice) => *buffer = Some(Pinned(ManuallyDrop::new(slice))),
            Err(e) => {
                PINNED.fetch_sub(size, Ordering::Relaxed);
                return Err(e.into());
            }
        }
    }
    let buffer = buffer.as_mut().expect("allocated above; this is a bug");
    Ok(Some(buffer.0.as_mut_slice()?))
}

/// Counts `bytes` more in [`PINNED`] if that stays within [`PINNED_BUDGET`].
pub(super) fn take_budget(bytes: usize) -> bool {
    let fits = PINNED.fetch_add(bytes, Ordering::Relaxed) + bytes <= PINNED_BUDGET;
    if !fits {
        PINNED.fetch_sub(bytes, Ordering::Relaxed);
    }
    fits
}

/// Counts `bytes` fewer in [`PINNED`] (taken with [`take_budget`], not
/// allocated after all).
pub(super) fn return_budget(bytes: usize) {
    PINNED.fetch_sub(bytes, Ordering::Relaxed);
}

/// A page-locked buffer, counted in [`PINNED`] while it lives.
pub(super) struct Pinned(ManuallyDrop<PinnedHostSlice<u8>>);

impl Drop for Pinned {
    fn drop(&mut self) {
        PINNED.fetch_sub(self.0.len(), Ordering::Relaxed);
        // Freeing page-locked memory waits on the device: never while
        // another thread captures a CUDA graph (device run 43, where a
        // buffer replaced by a larger one invalidated other threads'
        // captures after the allocations alone had been kept apart).
        super::captures::outside_captures(|| {
            // SAFETY: dropped once, here; the field is never used again.
            unsafe { ManuallyDrop::drop(&mut self.0) }
        });
    }
}

/// Whether input `ix` of `runnable`, `len` bytes of `dtype`, is one that
/// goes up through page-locked memory: large enough to gain, small enough
/// to pin, of a type the device holds, and read by the device first.
pub(super) fn stages(runnable: &dyn Runnable, ix: usize, dtype: DataType, len: usize) -> bool {
    (STAGE_MIN..=STAGE_MAX).contains(&len)
        && DeviceTensor::is_supported_dt(convert::datum_type(dtype))
        && goes_straight_to_device(runnable, ix)
}

/// Whether every reader of input `ix` is tract's upload to the device (a
/// CPU operator reading it would bring a staged tensor back to the host).
fn goes_straight_to_device(runnable: &dyn Runnable, ix: usize) -> bool {
    let Some(model) = runnable.typed_model() else {
        return false;
    };
    let Some(outlet) = model.inputs.get(ix) else {
        return false;
    };
    let readers = &model.nodes()[outlet.node].outputs[outlet.slot].successors;
    !readers.is_empty()
        && readers.iter().all(|r| {
            model.nodes()[r.node]
                .op_as::<DeviceSync>()
                .is_some_and(|s| s.kind == DeviceSyncKind::ToDevice)
        })
}
