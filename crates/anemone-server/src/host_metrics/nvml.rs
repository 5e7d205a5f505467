//! NVIDIA GPUs' utilization, memory, power and energy through NVML
//! (`libnvidia-ml.so.1`, part of the NVIDIA driver), loaded at run time as
//! the CUDA driver is for CUDA shared memory: every build has GPU metrics,
//! no build needs CUDA, and a machine without the driver has none.
//!
//! The GPUs are the CUDA-visible ones, as Triton's (`CUDA_VISIBLE_DEVICES`
//! applies): the CUDA driver lists them with their PCI bus ids, and NVML
//! finds each by its bus id. Where the CUDA driver cannot be loaded, every
//! GPU NVML sees is listed.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr};

type Status = c_int;
type Device = *mut c_void;

/// `nvmlUtilization_t`.
#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// `nvmlMemory_t`.
#[repr(C)]
#[derive(Default)]
struct Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// NVML's answer for a query the GPU does not support.
const NOT_SUPPORTED: Status = 3;

struct Api {
    init: unsafe extern "C" fn() -> Status,
    count: unsafe extern "C" fn(*mut c_uint) -> Status,
    by_index: unsafe extern "C" fn(c_uint, *mut Device) -> Status,
    by_bus_id: unsafe extern "C" fn(*const c_char, *mut Device) -> Status,
    uuid: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Status,
    name: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Status,
    utilization: unsafe extern "C" fn(Device, *mut Utilization) -> Status,
    memory: unsafe extern "C" fn(Device, *mut Memory) -> Status,
    power: unsafe extern "C" fn(Device, *mut c_uint) -> Status,
    power_limit: unsafe extern "C" fn(Device, *mut c_uint) -> Status,
    energy: unsafe extern "C" fn(Device, *mut c_ulonglong) -> Status,
    error_string: unsafe extern "C" fn(Status) -> *const c_char,
    /// Keeps the functions above loaded.
    _library: libloading::Library,
}

/// One GPU NVML answers for.
pub struct Gpu {
    /// Its CUDA ordinal (NVML's index where the CUDA driver is not there).
    pub ordinal: u32,
    /// `GPU-…`, Triton's `gpu_uuid` label.
    pub uuid: String,
    /// The product name, for the start-up log.
    pub name: String,
    device: Device,
}

/// What one look at a GPU found; `None` where the GPU does not answer that
/// query (power on some boards, energy on older ones).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    /// The share of the last sample period a kernel ran, 0 to 1.
    pub utilization: Option<f64>,
    /// Memory, in bytes.
    pub memory_total: Option<u64>,
    /// Memory in use (by any process), in bytes.
    pub memory_used: Option<u64>,
    /// Power drawn now, in watts.
    pub power: Option<f64>,
    /// The power management limit, in watts.
    pub power_limit: Option<f64>,
    /// Energy since the driver was loaded, in millijoules.
    pub energy_mj: Option<u64>,
}

/// NVML, initialised, and the GPUs it answers for.
pub struct Nvml {
    api: Api,
    /// The CUDA-visible GPUs, in CUDA's order.
    pub gpus: Vec<Gpu>,
}

// SAFETY: NVML's functions are thread-safe (NVML's documentation), and its
// device handles stay valid while the library is loaded.
unsafe impl Send for Nvml {}
unsafe impl Sync for Nvml {}

impl Nvml {
    /// Loads and initialises NVML and lists the GPUs; an error says why
    /// there are no GPU metrics (no driver, no GPU).
    pub fn open() -> Result<Nvml, String> {
        // SAFETY: loading the NVIDIA driver's own library, whose
        // initialisers are safe to run.
        let library = unsafe { libloading::Library::new("libnvidia-ml.so.1") }.map_err(|_| {
            "no NVIDIA driver here (its NVML library, libnvidia-ml.so.1, cannot be loaded)"
                .to_string()
        })?;
        let api = Api::load(library)?;
        // SAFETY: NVML's documented entry point, no arguments.
        api.check(unsafe { (api.init)() }, "nvmlInit_v2")?;
        let gpus = match cuda_bus_ids() {
            Some(bus_ids) => (bus_ids.into_iter().enumerate())
                .map(|(ordinal, bus_id)| api.by_bus_id(ordinal as u32, &bus_id))
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                let mut count: c_uint = 0;
                // SAFETY: writes one integer into a local.
                api.check(unsafe { (api.count)(&mut count) }, "nvmlDeviceGetCount_v2")?;
                (0..count)
                    .map(|i| {
                        let mut device: Device = std::ptr::null_mut();
                        // SAFETY: an index below NVML's count, a local out.
                        let status = unsafe { (api.by_index)(i, &mut device) };
                        api.check(status, "nvmlDeviceGetHandleByIndex_v2")?;
                        api.describe(i, device)
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        if gpus.is_empty() {
            return Err(match std::env::var("CUDA_VISIBLE_DEVICES") {
                Ok(visible) => {
                    format!("no GPU is visible to CUDA (CUDA_VISIBLE_DEVICES={visible:?})")
                }
                Err(_) => "NVML sees no GPU".into(),
            });
        }
        Ok(Nvml { api, gpus })
    }

    /// Reads `gpu` now.
    pub fn read(&self, gpu: &Gpu) -> GpuReading {
        let api = &self.api;
        let d = gpu.device;
        let mut utilization = Utilization::default();
        let mut memory = Memory::default();
        let (mut power, mut limit, mut energy) = (0 as c_uint, 0 as c_uint, 0 as c_ulonglong);
        // SAFETY: each call writes into its own local through a handle NVML gave.
        let (u, m, p, l, e) = unsafe {
            (
                (api.utilization)(d, &mut utilization),
                (api.memory)(d, &mut memory),
                (api.power)(d, &mut power),
                (api.power_limit)(d, &mut limit),
                (api.energy)(d, &mut energy),
            )
        };
        let ok = |status: Status, what: &str| -> bool {
            if status != 0 && status != NOT_SUPPORTED {
                tracing::debug!(gpu = gpu.ordinal, error = %api.describe_status(status), "NVML: cannot read the GPU's {what}");
            }
            status == 0
        };
        GpuReading {
            utilization: ok(u, "utilization").then(|| f64::from(utilization.gpu) / 100.0),
            memory_total: ok(m, "memory").then_some(memory.total),
            memory_used: (m == 0).then_some(memory.used),
            power: ok(p, "power").then(|| f64::from(power) / 1000.0),
            power_limit: ok(l, "power limit").then(|| f64::from(limit) / 1000.0),
            energy_mj: ok(e, "energy").then_some(energy),
        }
    }
}

impl Api {
    fn load(library: libloading::Library) -> Result<Api, String> {
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the type is the function's in nvml.h.
                *unsafe { library.get($name) }.map_err(|e| {
                    format!(
                        "NVML lacks {}: {e}",
                        String::from_utf8_lossy(&$name[..$name.len() - 1])
                    )
                })?
            };
        }
        Ok(Api {
            init: symbol!(b"nvmlInit_v2\0"),
            count: symbol!(b"nvmlDeviceGetCount_v2\0"),
            by_index: symbol!(b"nvmlDeviceGetHandleByIndex_v2\0"),
            by_bus_id: symbol!(b"nvmlDeviceGetHandleByPciBusId_v2\0"),
            uuid: symbol!(b"nvmlDeviceGetUUID\0"),
            name: symbol!(b"nvmlDeviceGetName\0"),
            utilization: symbol!(b"nvmlDeviceGetUtilizationRates\0"),
            memory: symbol!(b"nvmlDeviceGetMemoryInfo\0"),
            power: symbol!(b"nvmlDeviceGetPowerUsage\0"),
            power_limit: symbol!(b"nvmlDeviceGetPowerManagementLimit\0"),
            energy: symbol!(b"nvmlDeviceGetTotalEnergyConsumption\0"),
            error_string: symbol!(b"nvmlErrorString\0"),
            _library: library,
        })
    }

    fn describe_status(&self, status: Status) -> String {
        // SAFETY: NVML returns a static string for any status.
        let text = unsafe { (self.error_string)(status) };
        if text.is_null() {
            return format!("NVML error {status}");
        }
        // SAFETY: a NUL-terminated static string, per NVML.
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        format!("{text} (NVML error {status})")
    }

    fn check(&self, status: Status, call: &str) -> Result<(), String> {
        match status {
            0 => Ok(()),
            _ => Err(format!("{call}: {}", self.describe_status(status))),
        }
    }

    fn by_bus_id(&self, ordinal: u32, bus_id: &CStr) -> Result<Gpu, String> {
        let mut device: Device = std::ptr::null_mut();
        // SAFETY: a NUL-terminated bus id, a local out.
        let status = unsafe { (self.by_bus_id)(bus_id.as_ptr(), &mut device) };
        self.check(status, "nvmlDeviceGetHandleByPciBusId_v2")?;
        self.describe(ordinal, device)
    }

    fn describe(&self, ordinal: u32, device: Device) -> Result<Gpu, String> {
        let text = |f: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Status,
                    call: &str|
         -> Result<String, String> {
            let mut buffer = [0 as c_char; 96];
            // SAFETY: NVML writes at most `len` bytes, NUL included.
            let status = unsafe { f(device, buffer.as_mut_ptr(), buffer.len() as c_uint) };
            self.check(status, call)?;
            // SAFETY: NVML wrote a NUL-terminated string into the buffer.
            Ok(unsafe { CStr::from_ptr(buffer.as_ptr()) }
                .to_string_lossy()
                .into_owned())
        };
        Ok(Gpu {
            ordinal,
            uuid: text(self.uuid, "nvmlDeviceGetUUID")?,
            name: text(self.name, "nvmlDeviceGetName")?,
            device,
        })
    }
}

/// The PCI bus ids of the CUDA-visible GPUs in CUDA's order, from the CUDA
/// driver; `None` where it cannot be loaded or initialised.
fn cuda_bus_ids() -> Option<Vec<std::ffi::CString>> {
    type Init = unsafe extern "C" fn(c_uint) -> c_int;
    type Count = unsafe extern "C" fn(*mut c_int) -> c_int;
    type Get = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type BusId = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    // SAFETY: the NVIDIA driver's library; the types are cuda.h's.
    unsafe {
        let library = libloading::Library::new("libcuda.so.1").ok()?;
        let init: Init = *library.get(b"cuInit\0").ok()?;
        let count: Count = *library.get(b"cuDeviceGetCount\0").ok()?;
        let get: Get = *library.get(b"cuDeviceGet\0").ok()?;
        let bus_id: BusId = *library.get(b"cuDeviceGetPCIBusId\0").ok()?;
        match init(0) {
            0 => {}
            // CUDA_ERROR_NO_DEVICE: none visible (CUDA_VISIBLE_DEVICES="").
            100 => return Some(Vec::new()),
            _ => return None,
        }
        let mut n: c_int = 0;
        if count(&mut n) != 0 {
            return None;
        }
        let mut ids = Vec::new();
        for ordinal in 0..n {
            let mut device: c_int = 0;
            let mut text = [0 as c_char; 64];
            if get(&mut device, ordinal) != 0
                || bus_id(text.as_mut_ptr(), text.len() as c_int, device) != 0
            {
                return None;
            }
            ids.push(CStr::from_ptr(text.as_ptr()).to_owned());
        }
        // The driver stays loaded for the process (tract-cuda and CUDA
        // shared memory load it too): dropping the handle would only
        // lower its count.
        std::mem::forget(library);
        Some(ids)
    }
}
