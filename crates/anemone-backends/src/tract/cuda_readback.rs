//! A replayed call's outputs back to the host, and the wait for them.
//!
//! tract reads an output back with a synchronous copy into ordinary memory,
//! after waiting for the stream: two waits, each of which costs the
//! driver's wake-up when threads block (`gpu_wait`). A replay
//! (`cuda_graph`) instead queues the copies of its outputs into this
//! thread's page-locked buffer behind the graph, sleeps for the time the
//! graph is expected to take less a margin, polls the stream until the
//! copies are done, and only then copies the bytes into host tensors. The
//! thread neither spins for the whole GPU time nor waits for a wake-up.
//!
//! Memory: one page-locked buffer per thread that read back, as large as
//! the largest outputs it read rounded up to a power of two, counted in
//! `cuda_staging`'s budget. Outputs larger than [`READBACK_MAX`], or past
//! the budget, take tract's own path.

use super::cuda_staging::{self, Pinned};
use super::gpu_wait::{sleep_before_polling, Wait};
use cudarc::driver::sys;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tract_gpu::tensor::DeviceTensor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::bail;

/// Outputs larger than this (all of a call's together) are read back by
/// tract's own path.
pub const READBACK_MAX: usize = cuda_staging::STAGE_MAX;

/// Calls whose outputs came back this way, process-wide: lets a test on a
/// GPU machine tell that the path ran.
pub fn read_backs() -> u64 {
    READ_BACKS.load(Ordering::Relaxed)
}

static READ_BACKS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static READBACK: RefCell<Option<Pinned>> = const { RefCell::new(None) };
}

/// Whether replays read back and wait this way: threads block
/// ([`Wait::Block`], the default); with the driver spinning there is no
/// wake-up to save.
pub fn enabled() -> bool {
    Wait::configured() == Wait::Block
}

/// The work queued on this thread's stream so far, launched at `launched`
/// and expected to take `expected`, then `outputs` copied to the host.
/// Returns the host tensors, the time from `launched` to the moment the
/// work was seen done, and whether it was done at the first poll; `None`
/// where tract's own path should read the outputs (see the module
/// documentation).
pub fn read_back(
    outputs: &[DeviceTensor],
    launched: Instant,
    expected: Option<Duration>,
) -> TractResult<Option<(TVec<TValue>, Duration, bool)>> {
    let len: usize = outputs.iter().map(bytes).sum();
    if len == 0 || len > READBACK_MAX {
        return Ok(None);
    }
    tract_cuda::with_cuda_stream(|stream| {
        READBACK.with_borrow_mut(|slot| {
            let Some(host) = cuda_staging::buffer(slot, stream.context(), len)? else {
                return Ok(None);
            };
            let mut at = 0;
            for output in outputs {
                let n = bytes(output);
                let from = tract_cuda::kernels::get_cuda_view(output);
                // Into page-locked memory the copy is queued, not waited for.
                stream.memcpy_dtoh(&from, &mut host[at..at + n])?;
                at += n;
            }
            let sleep = sleep_before_polling(expected);
            if !sleep.is_zero() {
                std::thread::sleep(sleep);
            }
            let (took, at_once) = poll(stream.cu_stream(), launched)?;
            let mut at = 0;
            let tensors = outputs
                .iter()
                .map(|output| {
                    let n = bytes(output);
                    // SAFETY: every byte is written below before it is read.
                    let mut tensor =
                        unsafe { Tensor::uninitialized_dt(output.datum_type(), output.shape())? };
                    tensor.as_bytes_mut().copy_from_slice(&host[at..at + n]);
                    at += n;
                    Ok(tensor.into_tvalue())
                })
                .collect::<TractResult<TVec<_>>>()?;
            READ_BACKS.fetch_add(1, Ordering::Relaxed);
            Ok(Some((tensors, took, at_once)))
        })
    })
}

/// Bytes of a device tensor's elements.
fn bytes(t: &DeviceTensor) -> usize {
    t.len() * t.datum_type().size_of()
}

/// Polls `stream` until its work is done, yielding the core between
/// polls; the time since `launched` when it was seen done, and whether the
/// first poll saw it.
fn poll(stream: sys::CUstream, launched: Instant) -> TractResult<(Duration, bool)> {
    let mut first = true;
    loop {
        // SAFETY: a query of this thread's live stream.
        match unsafe { sys::cuStreamQuery(stream) } {
            sys::CUresult::CUDA_SUCCESS => return Ok((launched.elapsed(), first)),
            sys::CUresult::CUDA_ERROR_NOT_READY => {
                first = false;
                std::thread::yield_now()
            }
            error => {
                let e = cudarc::driver::DriverError(error);
                bail!("waiting for a replayed call (cuStreamQuery): {e:?}")
            }
        }
    }
}
