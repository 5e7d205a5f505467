//! The tract-cuda probe: the driver, NVRTC, the CUDA runtime, cuBLAS, cuDNN
//! and the toolkit headers, checked without creating a CUDA context, in the
//! order a user would fix them, each failure saying what to install.

use super::cuda::REQUIRED_DRIVER_API;
use super::TRACT_VERSION;
use anemone_core::Probe;
use libloading::Library;
use std::ffi::{c_char, c_int, CStr};
use std::path::{Path, PathBuf};

pub(super) fn probe_now() -> Probe {
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
        Ok(include) => Ok(super::kernel_cache::compiles_on_first_load(
            &include, &cache,
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
