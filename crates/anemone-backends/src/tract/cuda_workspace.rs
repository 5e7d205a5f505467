//! The thread's cuDNN workspace: every convolution of a thread runs on the
//! thread's one stream, in order, so one buffer serves them all
//! (`cuda_conv`). It only grows; each replacement counts one more
//! [`generation`], so that a CUDA graph recorded on an older one
//! (`cuda_graph`) is recorded again.

use cudarc::driver::{CudaSlice, CudaStream};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use tract_onnx::prelude::*;

thread_local! {
    static WORKSPACE: RefCell<Option<CudaSlice<u8>>> = const { RefCell::new(None) };
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Which of this thread's workspaces is the current one.
pub fn generation() -> u64 {
    GENERATION.get()
}

/// Makes the thread's workspace at least `bytes` long.
pub(super) fn reserve(stream: &Arc<CudaStream>, bytes: usize) -> TractResult<()> {
    WORKSPACE.with_borrow_mut(|ws| {
        if bytes > 0 && ws.as_ref().is_none_or(|w| w.len() < bytes) {
            // SAFETY: cuDNN writes the workspace before it reads it.
            *ws = Some(unsafe { stream.alloc::<u8>(bytes) }?);
            GENERATION.set(GENERATION.get() + 1);
        }
        Ok(())
    })
}

/// Runs `f` on the thread's workspace (`None` before any was reserved).
pub(super) fn with<R>(f: impl FnOnce(Option<&mut CudaSlice<u8>>) -> R) -> R {
    WORKSPACE.with_borrow_mut(|ws| f(ws.as_mut()))
}
