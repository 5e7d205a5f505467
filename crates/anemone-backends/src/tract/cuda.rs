//! tract's CUDA runtime (`tract-cuda`), behind the `cuda` cargo feature.
//!
//! tract-cuda binds CUDA at run time (cudarc dynamic loading), so this builds
//! on machines without CUDA. At run time it needs the NVIDIA driver (libcuda,
//! for CUDA 13.0 or newer), NVRTC, the CUDA runtime, cuBLAS and cuDNN 9, and
//! the CUDA toolkit headers: it compiles its kernels with NVRTC on the first
//! load (about a minute on an H100), then keeps them under `~/.cache/tract`.
//!
//! [`TractCuda::probe`] checks all of that without creating a CUDA context,
//! and says what is missing and what to install. tract-cuda panics on some
//! failures (no device, allocation failures); loading and inference catch
//! those panics and return errors instead.

use super::conv_fuse::{Precision, PRECISION_KEY};
use super::gpu_wait::Wait;
use super::{
    captures, cuda_graph, cuda_host, cuda_probe::probe_now, cuda_runtime, cuda_staging, load,
    Target, TractModel,
};
use anemone_core::{
    Backend, Error, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource, Probe,
    Result, Support, Tensor, Tier,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

// Linking the crate registers its runtime (named `cuda`) with tract.
extern crate tract_cuda;

/// The CUDA driver API version tract-cuda is built against (13.0): the
/// driver must support at least this version.
pub const REQUIRED_DRIVER_API: i32 = tract_cuda::utils::REQUIRED_CUDA_API;

/// tract's CUDA runtime on the first CUDA device (device 0).
///
/// Each thread that calls `infer` gets its own CUDA stream, cuBLAS and cuDNN
/// handles (tract-cuda keeps them per thread), so concurrent calls run
/// concurrently on the device; the weights are shared.
#[derive(Debug, Clone, Copy, Default)]
pub struct TractCuda;

const CUDA: Target = Target {
    backend: "tract-cuda",
    runtime: "anemone-cuda",
    rewrite: cuda_runtime::rewrite,
    runtime_impl: Some(cuda_runtime::runtime),
    reuse_states: true,
    upload: Some(cuda_staging::upload),
    run_state: Some(cuda_graph::run),
};

impl Backend for TractCuda {
    fn name(&self) -> &'static str {
        CUDA.backend
    }

    /// Cached after the first call.
    fn probe(&self) -> Probe {
        static PROBE: OnceLock<Probe> = OnceLock::new();
        PROBE
            .get_or_init(|| {
                catch_unwind(probe_now).unwrap_or_else(|panic| Probe::Unavailable {
                    reason: format!(
                        "the CUDA probe panicked ({}); this is a bug",
                        panic_message(&*panic)
                    ),
                })
            })
            .clone()
    }

    fn tier(&self) -> Tier {
        Tier::Gpu
    }

    fn supports(&self, source: &ModelSource) -> Support {
        match source.format {
            ModelFormat::Onnx => Support::Yes,
            other => Support::No(format!("tract-cuda runs ONNX models, not {other} models")),
        }
    }

    fn load(&self, source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
        // A bad setting is the configuration's fault on every machine.
        let precision = match options.setting(PRECISION_KEY) {
            Some(value) => Precision::parse(value).map_err(Error::Config)?,
            None => Precision::default(),
        };
        match self.probe() {
            Probe::Unavailable { reason } => {
                return Err(Error::Unavailable {
                    what: "tract-cuda".into(),
                    reason,
                })
            }
            Probe::Available { detail } => say_first_compile(&detail),
        }
        set_wait();
        let model =
            bracketed(|| guarded("load", || load(&CUDA, &source.path, options, precision)))?;
        Ok(Box::new(CudaModel(model, precision)))
    }
}

/// Says once, before the first load, that tract-cuda is about to compile
/// its kernels for this GPU (about a minute, once per machine and GPU
/// architecture): a load that long with nothing in the log looks hung.
fn say_first_compile(probe: &str) {
    static SAID: OnceLock<()> = OnceLock::new();
    if let Some(warning) = super::kernel_cache::first_compile_warning(probe) {
        SAID.get_or_init(|| tracing::warn!("{warning}"));
    }
}

/// Sets how threads wait for device 0 ([`Wait::configured`]: they block by
/// default) on its primary context, once per process, before tract-cuda
/// creates that context on the first load. A failure leaves the driver's
/// default and says so.
fn set_wait() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        use cudarc::driver::sys::CUctx_flags;
        let wait = Wait::configured();
        let flags = match wait {
            Wait::Block => CUctx_flags::CU_CTX_SCHED_BLOCKING_SYNC,
            Wait::Spin => CUctx_flags::CU_CTX_SCHED_SPIN,
            Wait::Yield => CUctx_flags::CU_CTX_SCHED_YIELD,
            Wait::Auto => CUctx_flags::CU_CTX_SCHED_AUTO,
        };
        let set = device0().and_then(|device| {
            // SAFETY: a driver call on a device handle the driver gave.
            unsafe { cudarc::driver::sys::cuDevicePrimaryCtxSetFlags_v2(device, flags as u32) }
                .result()
        });
        match set {
            Ok(()) => tracing::debug!(
                wait = wait.as_str(),
                "tract-cuda: how threads wait for the GPU"
            ),
            Err(e) => tracing::warn!(
                wait = wait.as_str(),
                error = %e,
                "tract-cuda: cannot set how threads wait for the GPU; the driver's default stays"
            ),
        }
    });
}

/// Device 0, the driver initialised (once per process; later calls are cheap).
fn device0() -> std::result::Result<cudarc::driver::sys::CUdevice, cudarc::driver::DriverError> {
    use cudarc::driver::result;
    result::init()?;
    result::device::get(0)
}

/// The scheduling flags of device 0's primary context (`CU_CTX_SCHED_*`,
/// the low three bits), where the driver answers: lets a test on a GPU
/// machine check [`Wait`] took effect.
pub fn context_wait_flags() -> Option<u32> {
    use cudarc::driver::sys;
    let device = device0().ok()?;
    let (mut flags, mut active) = (0u32, 0i32);
    // SAFETY: a driver query on a device handle the driver gave, writing
    // into locals.
    unsafe { sys::cuDevicePrimaryCtxGetState(device, &mut flags, &mut active) }
        .result()
        .ok()?;
    Some(flags & sys::CUctx_flags::CU_CTX_SCHED_MASK as u32)
}

/// A model prepared by tract-cuda: a [`TractModel`] whose failures are
/// classified (device lost, out of memory) and whose panics are caught,
/// with the precision its matrix products run in.
struct CudaModel(TractModel, Precision);

impl LoadedModel for CudaModel {
    fn metadata(&self) -> &ModelMetadata {
        self.0.metadata()
    }

    fn backend(&self) -> &'static str {
        CUDA.backend
    }

    fn memory_footprint(&self) -> u64 {
        self.0.memory_footprint()
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.call(|| self.0.infer(inputs))
    }

    fn infer_stacked(&self, requests: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        self.call(|| self.0.infer_stacked(requests))
    }

    /// Large inputs that go straight to the GPU, copied into page-locked
    /// memory (`cuda_host`), from which the upload reads them with no copy
    /// when the call runs.
    fn adopt_input(&self, ix: usize, input: &Tensor) -> Option<Tensor> {
        let runnable = self.0.static_plan()?;
        // A failure here only loses the head start: the input stays as it is.
        catch_unwind(AssertUnwindSafe(|| cuda_host::adopt(runnable, ix, input))).unwrap_or(None)
    }
}

/// Runs `f`, which may use tract-cuda's per-thread state for the first
/// time on this thread, inside the thread-exit bracket of `captures`: when
/// the thread ends, that state is destroyed while no thread captures a
/// CUDA graph.
fn bracketed<T>(f: impl FnOnce() -> T) -> T {
    captures::enter();
    let out = f();
    captures::entered();
    out
}

impl CudaModel {
    /// One inference call: in the thread-exit bracket, with panics caught,
    /// at the model's cuBLAS math mode, and its uploads waited for before it
    /// returns (the inputs' page-locked blocks are free to reuse then,
    /// whatever the outcome).
    fn call(&self, run: impl FnOnce() -> Result<Vec<Tensor>>) -> Result<Vec<Tensor>> {
        let outputs = bracketed(|| {
            guarded("inference", || {
                self.set_math()?;
                run()
            })
        });
        cuda_staging::settle();
        outputs
    }

    /// Sets this thread's cuBLAS math mode for the model's precision.
    fn set_math(&self) -> Result<()> {
        cuda_runtime::set_cublas_math(self.1).map_err(|e| Error::Backend {
            backend: CUDA.backend.into(),
            message: format!("cannot set the cuBLAS math mode: {e:#}"),
            retryable: false,
            source: None,
        })
    }
}

/// Runs `f`, turning a panic into an error and classifying CUDA failures.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(classify),
        Err(panic) => Err(classify(Error::Backend {
            backend: CUDA.backend.into(),
            message: format!("{what} panicked in tract-cuda: {}", panic_message(&*panic)),
            retryable: false,
            source: None,
        })),
    }
}

/// CUDA errors after which the context is unusable: every later call fails
/// too, so the runtime should move the model to another backend.
const STICKY: &[&str] = &[
    "CUDA_ERROR_ILLEGAL_ADDRESS",
    "CUDA_ERROR_LAUNCH_FAILED",
    "CUDA_ERROR_ILLEGAL_INSTRUCTION",
    "CUDA_ERROR_MISALIGNED_ADDRESS",
    "CUDA_ERROR_INVALID_ADDRESS_SPACE",
    "CUDA_ERROR_INVALID_PC",
    "CUDA_ERROR_HARDWARE_STACK_ERROR",
    "CUDA_ERROR_ECC_UNCORRECTABLE",
    "CUDA_ERROR_ASSERT",
    "CUDA_ERROR_LAUNCH_TIMEOUT",
    "CUDA_ERROR_NO_DEVICE",
    "CUDA_ERROR_DEVICE_UNAVAILABLE",
    "CUDA_ERROR_DEINITIALIZED",
    "CUDA_ERROR_CONTEXT_IS_DESTROYED",
    "CUDA_ERROR_NVLINK_UNCORRECTABLE",
    "CUDA_ERROR_SYSTEM_NOT_READY",
    "CUDNN_STATUS_EXECUTION_FAILED",
    "CUBLAS_STATUS_EXECUTION_FAILED",
];

/// Failures that may pass: the device is short of memory for now.
const TRANSIENT: &[&str] = &[
    "CUDA_ERROR_OUT_OF_MEMORY",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
];

/// Maps a tract-cuda failure to [`Error::DeviceLost`] when the device or its
/// context is gone, to a retryable [`Error::Backend`] when it ran out of
/// memory, and leaves other errors as they are.
fn classify(e: Error) -> Error {
    let Error::Backend {
        backend,
        message,
        retryable,
        source,
    } = e
    else {
        return e;
    };
    let text = match &source {
        Some(s) => format!("{message}: {s:?}"),
        None => message.clone(),
    };
    if STICKY.iter().any(|code| text.contains(code)) {
        Error::DeviceLost {
            backend,
            message: format!("{message} (the CUDA context is unusable; restart the process to use the GPU again)"),
        }
    } else {
        let retryable = retryable || TRANSIENT.iter().any(|code| text.contains(code));
        Error::Backend {
            backend,
            message,
            retryable,
            source,
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
#[path = "cuda_tests.rs"]
mod tests;
