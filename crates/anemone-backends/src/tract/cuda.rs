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
    captures, cuda_graph, cuda_host, cuda_runtime, cuda_staging, load, Target, TractModel,
    TRACT_VERSION,
};
use anemone_core::{
    Backend, Error, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource, Probe,
    Result, Support, Tensor, Tier,
};
use libloading::Library;
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
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
        if let Probe::Unavailable { reason } = self.probe() {
            return Err(Error::Unavailable {
                what: "tract-cuda".into(),
                reason,
            });
        }
        set_wait();
        let model =
            bracketed(|| guarded("load", || load(&CUDA, &source.path, options, precision)))?;
        Ok(Box::new(CudaModel(model, precision)))
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
        let outputs = bracketed(|| {
            guarded("inference", || {
                self.set_math()?;
                self.0.infer(inputs)
            })
        });
        // The inputs' page-locked blocks are free to reuse once the call
        // returns, whatever its outcome: its uploads must be over.
        cuda_staging::settle();
        outputs
    }

    fn infer_stacked(&self, requests: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        let outputs = bracketed(|| {
            guarded("inference", || {
                self.set_math()?;
                self.0.infer_stacked(requests)
            })
        });
        cuda_staging::settle();
        outputs
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

// ----------------------------------------------------------------------------- probe

fn probe_now() -> Probe {
    match check() {
        Ok(detail) => Probe::Available { detail },
        Err(reason) => Probe::Unavailable { reason },
    }
}

/// Everything tract-cuda needs, checked in the order a user would fix it.
fn check() -> std::result::Result<String, String> {
    let device = driver()?;
    let nvrtc = open_library(&NVRTC)?;
    open_library(&CUDART)?;
    let cublas = open_library(&CUBLAS)?;
    let cudnn = open_library(&CUDNN)?;
    let nvrtc_version = nvrtc_version(nvrtc);
    let cudnn_version = cudnn_version(cudnn);
    let cublas_version = cublas_version(cublas);
    let kernels = kernel_source(&device)?;
    // tract's own check (cudarc's library search) must agree with ours.
    let runtime = tract_onnx::tract_core::runtime::runtime_for_name("cuda")
        .ok()
        .flatten()
        .ok_or("tract's cuda runtime is not registered in this build; this is a bug")?;
    runtime
        .check()
        .map_err(|e| format!("tract-cuda's own check failed: {e:#}"))?;
    Ok(format!(
        "tract {TRACT_VERSION} on {} (sm_{}{}, {} MiB), driver CUDA {}, NVRTC {nvrtc_version}, \
         cuBLAS {cublas_version}, cuDNN {cudnn_version}; {kernels}",
        device.name,
        device.major,
        device.minor,
        device.memory >> 20,
        version_string(device.driver_api),
    ))
}

struct Device {
    name: String,
    major: i32,
    minor: i32,
    memory: usize,
    driver_api: i32,
}

fn version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The libraries the probe opened, kept open for the life of the process.
fn keep(lib: Library) -> &'static Library {
    Box::leak(Box::new(lib))
}

/// The driver: present, initialised, new enough, with a device.
fn driver() -> std::result::Result<Device, String> {
    let lib = ["libcuda.so.1", "libcuda.so"]
        .iter()
        .find_map(|name| unsafe { Library::new(*name) }.ok())
        .ok_or(
            "libcuda.so.1 not found: no NVIDIA driver is installed here. Install the NVIDIA \
             driver (580 or newer, for CUDA 13); in a container, run it with the GPU passed \
             through (for Docker: --gpus all)",
        )?;
    let lib = keep(lib);
    type Init = unsafe extern "C" fn(u32) -> c_int;
    type Int = unsafe extern "C" fn(*mut c_int) -> c_int;
    type Get = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type Name = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    type Attr = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
    type Mem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
    let symbol = |name: &str| -> std::result::Result<*const (), String> {
        unsafe { lib.get::<*const ()>(name.as_bytes()) }
            .map(|s| *s)
            .map_err(|e| {
                format!(
                    "libcuda has no {name} ({e}): the NVIDIA driver is broken or too old; \
                     reinstall the driver (580 or newer, for CUDA 13)"
                )
            })
    };
    // SAFETY: each pointer is the driver API function of that name, with the
    // signature documented by NVIDIA; every out-pointer is a live local.
    unsafe {
        let init: Init = std::mem::transmute(symbol("cuInit")?);
        let driver_version: Int = std::mem::transmute(symbol("cuDriverGetVersion")?);
        let count: Int = std::mem::transmute(symbol("cuDeviceGetCount")?);
        let get: Get = std::mem::transmute(symbol("cuDeviceGet")?);
        let name: Name = std::mem::transmute(symbol("cuDeviceGetName")?);
        let attr: Attr = std::mem::transmute(symbol("cuDeviceGetAttribute")?);
        let mem: Mem = std::mem::transmute(symbol("cuDeviceTotalMem_v2")?);

        let mut version = 0;
        if driver_version(&mut version) != 0 {
            return Err(
                "cuDriverGetVersion failed: the NVIDIA driver is not working; check \
                        nvidia-smi"
                    .into(),
            );
        }
        if version < REQUIRED_DRIVER_API {
            return Err(format!(
                "driver too old: the NVIDIA driver supports CUDA {}, tract-cuda {TRACT_VERSION} \
                 needs CUDA {} or newer; upgrade the NVIDIA driver (580 or newer)",
                version_string(version),
                version_string(REQUIRED_DRIVER_API)
            ));
        }
        let code = init(0);
        if code != 0 {
            return Err(match code {
                100 => "no CUDA device is visible to this process (cuInit: \
                        CUDA_ERROR_NO_DEVICE); check nvidia-smi and CUDA_VISIBLE_DEVICES"
                    .to_string(),
                35 | 803 => format!(
                    "the NVIDIA kernel module and libcuda do not match (cuInit error {code}); \
                     reboot, or reinstall the driver"
                ),
                _ => format!(
                    "the CUDA driver failed to start (cuInit error {code}); check nvidia-smi, \
                     the /dev/nvidia* devices and their permissions"
                ),
            });
        }
        let mut n = 0;
        if count(&mut n) != 0 || n == 0 {
            return Err(
                "no CUDA device found (cuDeviceGetCount is 0); check nvidia-smi and \
                        CUDA_VISIBLE_DEVICES"
                    .into(),
            );
        }
        let mut dev = 0;
        let mut buf = [0 as c_char; 256];
        let (mut major, mut minor, mut memory) = (0, 0, 0usize);
        if get(&mut dev, 0) != 0
            || name(buf.as_mut_ptr(), buf.len() as c_int, dev) != 0
            || attr(&mut major, 75, dev) != 0
            || attr(&mut minor, 76, dev) != 0
            || mem(&mut memory, dev) != 0
        {
            return Err("cannot read the properties of CUDA device 0; check nvidia-smi".into());
        }
        let name = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
        Ok(Device {
            name,
            major,
            minor,
            memory,
            driver_api: version,
        })
    }
}

/// A library tract-cuda opens at run time, and how to get it.
struct Lib {
    what: &'static str,
    names: &'static [&'static str],
    install: &'static str,
}

const NVRTC: Lib = Lib {
    what: "NVRTC",
    names: &["libnvrtc.so.13", "libnvrtc.so"],
    install: "install the CUDA 13 NVRTC library (apt: cuda-nvrtc-13-0; pip: nvidia-cuda-nvrtc)",
};
const CUDART: Lib = Lib {
    what: "the CUDA runtime",
    names: &["libcudart.so.13", "libcudart.so"],
    install: "install the CUDA 13 runtime (apt: cuda-cudart-13-0; pip: nvidia-cuda-runtime)",
};
const CUBLAS: Lib = Lib {
    what: "cuBLAS",
    names: &["libcublas.so.13", "libcublas.so"],
    install: "install cuBLAS for CUDA 13 (apt: libcublas-13-0; pip: nvidia-cublas)",
};
const CUDNN: Lib = Lib {
    what: "cuDNN",
    names: &["libcudnn.so.9", "libcudnn.so"],
    install: "install cuDNN 9 for CUDA 13 (apt: libcudnn9-cuda-13; pip: nvidia-cudnn-cu13)",
};

fn open_library(lib: &Lib) -> std::result::Result<&'static Library, String> {
    lib.names
        .iter()
        .find_map(|name| unsafe { Library::new(*name) }.ok())
        .map(keep)
        .ok_or_else(|| {
            format!(
                "{} not found ({} for {}): {}, or add the folder that holds it to \
                 LD_LIBRARY_PATH",
                lib.names[0], lib.what, "tract-cuda", lib.install
            )
        })
}

fn nvrtc_version(lib: &Library) -> String {
    type F = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
    // SAFETY: nvrtcVersion(int*, int*), both out-pointers live locals.
    unsafe {
        let Ok(f) = lib.get::<F>(b"nvrtcVersion") else {
            return "?".into();
        };
        let (mut major, mut minor) = (0, 0);
        if f(&mut major, &mut minor) == 0 {
            format!("{major}.{minor}")
        } else {
            "?".into()
        }
    }
}

fn cudnn_version(lib: &Library) -> String {
    type F = unsafe extern "C" fn() -> usize;
    // SAFETY: cudnnGetVersion() takes nothing and returns a size_t.
    unsafe {
        match lib.get::<F>(b"cudnnGetVersion") {
            Ok(f) => {
                let v = f();
                format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
            }
            Err(_) => "?".into(),
        }
    }
}

fn cublas_version(lib: &Library) -> String {
    type F = unsafe extern "C" fn(c_int, *mut c_int) -> c_int;
    // SAFETY: cublasGetProperty(libraryPropertyType, int*); 0, 1, 2 are the
    // major, minor and patch levels.
    unsafe {
        let Ok(f) = lib.get::<F>(b"cublasGetProperty") else {
            return "?".into();
        };
        let mut v = [0; 3];
        for (i, out) in v.iter_mut().enumerate() {
            if f(i as c_int, out) != 0 {
                return "?".into();
            }
        }
        format!("{}.{}.{}", v[0], v[1], v[2])
    }
}

/// Where the kernels come from: compiled from the CUDA headers on the first
/// load, or already in tract's cache for this GPU architecture.
fn kernel_source(device: &Device) -> std::result::Result<String, String> {
    let cache =
        tract_cuda::kernels::cubin_dir().join(format!("sm_{}{}", device.major, device.minor));
    let cached = cache.is_dir();
    match cuda_headers() {
        Ok(include) if cached => Ok(format!(
            "kernels cached in {}, headers in {}",
            cache.display(),
            include.display()
        )),
        Ok(include) => Ok(format!(
            "the first load compiles the kernels (about a minute) from the headers in {} into {}",
            include.display(),
            cache.display()
        )),
        Err(_) if cached => Ok(format!(
            "kernels cached in {} (no CUDA headers found: a new kernel could not be compiled)",
            cache.display()
        )),
        Err(missing) => Err(format!(
            "CUDA headers not found ({missing}): tract-cuda compiles its kernels at run time \
             with NVRTC, which needs the CUDA toolkit headers (cuda_fp16.h) and CCCL \
             (cuda/std/cstdint). Install cuda-cudart-dev-13-0 and cuda-cccl-13-0 (or the \
             CUDA 13 toolkit), or set CUDA_HOME to where the toolkit is"
        )),
    }
}

/// The toolkit include folder, found as tract-cuda finds it: `CUDA_HOME`,
/// `CUDA_PATH`, `/usr/local/cuda`, then the folder above `nvcc` on the PATH.
fn cuda_headers() -> std::result::Result<PathBuf, String> {
    let home = std::env::var_os("CUDA_HOME")
        .or_else(|| std::env::var_os("CUDA_PATH"))
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/local/cuda")).filter(|p| p.exists()))
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .find(|dir| dir.join("nvcc").is_file())
                .and_then(|bin| bin.parent().map(Path::to_path_buf))
        })
        .ok_or("no CUDA toolkit: CUDA_HOME unset, no /usr/local/cuda, no nvcc on the PATH")?;
    let mut candidates = vec![home.join("include")];
    if let Ok(entries) = std::fs::read_dir(home.join("targets")) {
        candidates.extend(entries.flatten().map(|e| e.path().join("include")));
    }
    let include = candidates
        .into_iter()
        .find(|dir| dir.join("cuda_fp16.h").is_file())
        .ok_or_else(|| format!("no cuda_fp16.h under {}", home.display()))?;
    let cstdint = Path::new("cuda").join("std").join("cstdint");
    [
        include.join("cccl"),
        include.join("libcudacxx").join("include"),
        include.clone(),
    ]
    .iter()
    .any(|root| root.join(&cstdint).is_file())
    .then_some(include.clone())
    .ok_or_else(|| format!("no CCCL (cuda/std/cstdint) under {}", include.display()))
}

#[cfg(test)]
#[path = "cuda_tests.rs"]
mod tests;
