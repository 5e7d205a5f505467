//! CUDA shared memory: GPU memory of the client's, shared through a CUDA IPC
//! handle (`cudaIpcGetMemHandle`), opened once at registration.
//!
//! The NVIDIA driver (`libcuda.so.1`) is loaded when the first region is
//! registered, so the same binary serves CPU-only machines, where a
//! registration is refused with the reason. Inputs are copied from the GPU
//! to the host and outputs back, as Triton does for a model that runs on
//! the CPU. The copies go through page-locked buffers on streams of their
//! own that do not synchronise with other work (`CU_STREAM_NON_BLOCKING`),
//! so they neither wait for a model running on the same GPU nor stall it:
//! a copy from pageable memory on a default stream serialised with the
//! engine's work and ran at a quarter of system shared memory's rate.

use crate::errors::ApiError;

/// The length of a CUDA IPC memory handle (`CU_IPC_HANDLE_SIZE`).
pub const HANDLE_BYTES: usize = 64;

/// GPU memory opened from a client's IPC handle.
pub(super) struct DeviceMemory {
    pub(super) device_id: u64,
    #[cfg(target_os = "linux")]
    opened: driver::Opened,
}

impl DeviceMemory {
    /// Opens `raw_handle` on GPU `device_id` for the region `name`, checking
    /// that the memory behind it holds `byte_size` bytes.
    pub(super) fn open(
        name: &str,
        raw_handle: &[u8],
        device_id: i64,
        byte_size: u64,
    ) -> Result<DeviceMemory, ApiError> {
        if raw_handle.len() != HANDLE_BYTES {
            return Err(ApiError::invalid(format!(
                "CUDA shared memory region '{name}': raw_handle is {} bytes, but a CUDA IPC handle has {HANDLE_BYTES}; send the bytes of cudaIpcGetMemHandle's handle (base64 in HTTP's {{\"raw_handle\": {{\"b64\": ...}}}})",
                raw_handle.len()
            )));
        }
        let Ok(device) = u64::try_from(device_id) else {
            return Err(ApiError::invalid(format!(
                "CUDA shared memory region '{name}': device_id {device_id} is not a GPU's number; give 0 for the first GPU"
            )));
        };
        #[cfg(target_os = "linux")]
        {
            let mut handle = [0u8; HANDLE_BYTES];
            handle.copy_from_slice(raw_handle);
            let opened = driver::Opened::new(&handle, device, byte_size).map_err(|e| {
                ApiError::invalid(format!("CUDA shared memory region '{name}': {e}"))
            })?;
            Ok(DeviceMemory {
                device_id: device,
                opened,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (device, byte_size);
            Err(ApiError::invalid(format!(
                "cannot register CUDA shared memory region '{name}': CUDA shared memory needs Linux with an NVIDIA GPU; use system shared memory (/v2/systemsharedmemory)"
            )))
        }
    }

    /// Copies the region's bytes `start..start + out.len()` into `out`. The
    /// caller has checked the bounds against the region's size.
    pub(super) fn read(&self, name: &str, start: usize, out: &mut [u8]) -> Result<(), ApiError> {
        #[cfg(target_os = "linux")]
        return self.opened.read(start, out).map_err(|e| {
            ApiError::invalid(format!(
                "cannot read CUDA shared memory region '{name}': {e}"
            ))
        });
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (start, out);
            Err(ApiError::invalid(format!(
                "cannot read CUDA shared memory region '{name}'"
            )))
        }
    }

    /// Copies `data` into the region from `start`; bounds as for `read`.
    /// Returns once the bytes are on the GPU.
    pub(super) fn write(&self, name: &str, start: usize, data: &[u8]) -> Result<(), ApiError> {
        #[cfg(target_os = "linux")]
        return self.opened.write(start, data).map_err(|e| {
            ApiError::invalid(format!(
                "cannot write CUDA shared memory region '{name}': {e}"
            ))
        });
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (start, data);
            Err(ApiError::invalid(format!(
                "cannot write CUDA shared memory region '{name}'"
            )))
        }
    }
}

/// The few calls of the CUDA driver API that CUDA shared memory needs,
/// loaded from `libcuda.so.1` at run time.
#[cfg(target_os = "linux")]
mod driver {
    use std::collections::HashMap;
    use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
    use std::sync::{Arc, Mutex, OnceLock};

    type CuResult = c_int;
    type Device = c_int;
    type Context = *mut c_void;
    type Stream = *mut c_void;
    type DevicePtr = u64;

    /// `CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS`, as Triton opens handles.
    const LAZY_ENABLE_PEER_ACCESS: c_uint = 1;
    /// `CU_STREAM_NON_BLOCKING`: a stream that never waits for the legacy
    /// default stream, which engines may use.
    const NON_BLOCKING: c_uint = 1;
    /// `CU_MEMHOSTALLOC_PORTABLE`.
    const PORTABLE: c_uint = 1;
    /// The largest page-locked buffer of a lane: larger tensors are copied
    /// in pieces.
    const LANE_BYTES: usize = 16 << 20;
    /// The smallest: a lane's buffer is the size it first served, rounded up
    /// to a power of two.
    const MIN_LANE_BYTES: usize = 1 << 20;
    /// What idle lanes hold per GPU at most, as Triton's default pinned
    /// memory pool (256 MB). A lane beyond it is freed when returned, which
    /// waits for the GPU; below it, lanes are kept and never freed, so that
    /// steady traffic allocates and frees no page-locked memory.
    const IDLE_BYTES: usize = 256 << 20;

    #[repr(C)]
    #[derive(Clone, Copy)]
    struct IpcMemHandle {
        reserved: [u8; super::HANDLE_BYTES],
    }

    struct Driver {
        device_count: unsafe extern "C" fn(*mut c_int) -> CuResult,
        device_get: unsafe extern "C" fn(*mut Device, c_int) -> CuResult,
        primary_retain: unsafe extern "C" fn(*mut Context, Device) -> CuResult,
        push: unsafe extern "C" fn(Context) -> CuResult,
        pop: unsafe extern "C" fn(*mut Context) -> CuResult,
        ipc_open: unsafe extern "C" fn(*mut DevicePtr, IpcMemHandle, c_uint) -> CuResult,
        ipc_close: unsafe extern "C" fn(DevicePtr) -> CuResult,
        address_range: unsafe extern "C" fn(*mut DevicePtr, *mut usize, DevicePtr) -> CuResult,
        dtoh: unsafe extern "C" fn(*mut c_void, DevicePtr, usize, Stream) -> CuResult,
        htod: unsafe extern "C" fn(DevicePtr, *const c_void, usize, Stream) -> CuResult,
        stream_create: unsafe extern "C" fn(*mut Stream, c_uint) -> CuResult,
        stream_destroy: unsafe extern "C" fn(Stream) -> CuResult,
        stream_sync: unsafe extern "C" fn(Stream) -> CuResult,
        host_alloc: unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> CuResult,
        host_free: unsafe extern "C" fn(*mut c_void) -> CuResult,
        error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
        error_string: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
        /// Each GPU's primary context (the one every CUDA library in the
        /// process shares), retained once and kept, with its idle lanes.
        gpus: Mutex<HashMap<Device, Arc<Gpu>>>,
        _library: libloading::Library,
    }

    /// One GPU's primary context and the lanes its copies run on.
    struct Gpu {
        ctx: Context,
        lanes: Mutex<Vec<Lane>>,
    }

    /// A stream of its own and a page-locked buffer: what one copy needs.
    struct Lane {
        stream: Stream,
        pinned: *mut u8,
        /// The buffer's length.
        len: usize,
    }

    // SAFETY: a context, a stream and page-locked memory may be used from
    // any thread (a lane by one at a time: it is taken out of the pool).
    unsafe impl Send for Gpu {}
    unsafe impl Sync for Gpu {}
    unsafe impl Send for Lane {}
    // SAFETY: the function pointers are plain values the driver allows from
    // any thread; `gpus` is behind a mutex.
    unsafe impl Send for Driver {}
    unsafe impl Sync for Driver {}

    fn driver() -> Result<&'static Driver, String> {
        static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
        DRIVER
            .get_or_init(|| {
                // SAFETY: loading the NVIDIA driver runs its initialisers,
                // which are meant to run in any process.
                let library = unsafe { libloading::Library::new("libcuda.so.1") }.map_err(|e| {
                    format!("CUDA shared memory needs the NVIDIA driver (libcuda.so.1), which this machine does not have ({e}); use system shared memory (/v2/systemsharedmemory)")
                })?;
                Driver::load(library)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    impl Driver {
        fn load(library: libloading::Library) -> Result<Driver, String> {
            macro_rules! symbol {
                ($($name:literal),+) => {{
                    let mut found = None;
                    $(
                        if found.is_none() {
                            // SAFETY: the type is the one cuda.h declares for
                            // this symbol.
                            found = unsafe { library.get(concat!($name, "\0").as_bytes()) }
                                .ok()
                                .map(|s: libloading::Symbol<'_, _>| *s);
                        }
                    )+
                    found.ok_or_else(|| {
                        format!("the NVIDIA driver has no {}; update it", [$($name),+][0])
                    })?
                }};
            }
            let init: unsafe extern "C" fn(c_uint) -> CuResult = symbol!("cuInit");
            let driver = Driver {
                device_count: symbol!("cuDeviceGetCount"),
                device_get: symbol!("cuDeviceGet"),
                primary_retain: symbol!("cuDevicePrimaryCtxRetain"),
                push: symbol!("cuCtxPushCurrent_v2", "cuCtxPushCurrent"),
                pop: symbol!("cuCtxPopCurrent_v2", "cuCtxPopCurrent"),
                ipc_open: symbol!("cuIpcOpenMemHandle_v2", "cuIpcOpenMemHandle"),
                ipc_close: symbol!("cuIpcCloseMemHandle"),
                address_range: symbol!("cuMemGetAddressRange_v2", "cuMemGetAddressRange"),
                dtoh: symbol!("cuMemcpyDtoHAsync_v2", "cuMemcpyDtoHAsync"),
                htod: symbol!("cuMemcpyHtoDAsync_v2", "cuMemcpyHtoDAsync"),
                stream_create: symbol!("cuStreamCreate"),
                stream_destroy: symbol!("cuStreamDestroy_v2", "cuStreamDestroy"),
                stream_sync: symbol!("cuStreamSynchronize"),
                host_alloc: symbol!("cuMemHostAlloc"),
                host_free: symbol!("cuMemFreeHost"),
                error_name: symbol!("cuGetErrorName"),
                error_string: symbol!("cuGetErrorString"),
                gpus: Mutex::default(),
                _library: library,
            };
            // SAFETY: cuInit takes flags, which must be 0.
            driver.check(unsafe { init(0) }, "cuInit")?;
            Ok(driver)
        }

        /// `Ok` for CUDA_SUCCESS; else the error's name and description.
        fn check(&self, result: CuResult, call: &str) -> Result<(), String> {
            if result == 0 {
                return Ok(());
            }
            let text = |f: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult| {
                let mut s: *const c_char = std::ptr::null();
                // SAFETY: the driver writes a static string or leaves null.
                if unsafe { f(result, &mut s) } != 0 || s.is_null() {
                    return format!("error {result}");
                }
                // SAFETY: non-null, NUL-terminated and static.
                unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
            };
            Err(format!(
                "{call} failed: {} ({})",
                text(self.error_name),
                text(self.error_string)
            ))
        }

        fn gpu(&self, ordinal: u64) -> Result<Arc<Gpu>, String> {
            let mut count = 0;
            // SAFETY: writes one int.
            self.check(
                unsafe { (self.device_count)(&mut count) },
                "cuDeviceGetCount",
            )?;
            if ordinal >= count.max(0) as u64 {
                return Err(format!(
                    "device_id {ordinal} is not a GPU of this server's: it has {count} (numbered from 0)"
                ));
            }
            let mut gpus = self.gpus.lock().unwrap_or_else(|e| e.into_inner());
            let mut device: Device = 0;
            // SAFETY: writes one device handle; the ordinal is in range.
            self.check(
                unsafe { (self.device_get)(&mut device, ordinal as c_int) },
                "cuDeviceGet",
            )?;
            if let Some(gpu) = gpus.get(&device) {
                return Ok(Arc::clone(gpu));
            }
            let mut ctx: Context = std::ptr::null_mut();
            // SAFETY: writes one context handle.
            self.check(
                unsafe { (self.primary_retain)(&mut ctx, device) },
                "cuDevicePrimaryCtxRetain",
            )?;
            let gpu = Arc::new(Gpu {
                ctx,
                lanes: Mutex::default(),
            });
            gpus.insert(device, Arc::clone(&gpu));
            Ok(gpu)
        }

        /// Runs `f` with `gpu`'s context current on this thread, and the
        /// thread's context as it was afterwards.
        fn within<T>(&self, gpu: &Gpu, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
            // SAFETY: `gpu.ctx` is a retained primary context.
            self.check(unsafe { (self.push)(gpu.ctx) }, "cuCtxPushCurrent")?;
            let result = f();
            let mut popped: Context = std::ptr::null_mut();
            // SAFETY: pops the context pushed above.
            let _ = unsafe { (self.pop)(&mut popped) };
            result
        }

        /// Runs `f` on an idle lane of `gpu`'s whose buffer holds `bytes`
        /// (or LANE_BYTES), or on a new one; the context is current.
        fn on_lane<T>(
            &self,
            gpu: &Gpu,
            bytes: usize,
            f: impl FnOnce(&Lane) -> Result<T, String>,
        ) -> Result<T, String> {
            let wanted = bytes.clamp(MIN_LANE_BYTES, LANE_BYTES).next_power_of_two();
            self.within(gpu, || {
                let idle = {
                    let mut lanes = gpu.lanes.lock().unwrap_or_else(|e| e.into_inner());
                    let fits = lanes.iter().position(|l| l.len >= wanted);
                    fits.map(|i| lanes.swap_remove(i))
                };
                let lane = match idle {
                    Some(lane) => lane,
                    None => self.new_lane(wanted)?,
                };
                let result = f(&lane);
                let mut lanes = gpu.lanes.lock().unwrap_or_else(|e| e.into_inner());
                let held: usize = lanes.iter().map(|l| l.len).sum();
                if result.is_ok() && held + lane.len <= IDLE_BYTES {
                    lanes.push(lane);
                } else {
                    drop(lanes);
                    self.free_lane(lane);
                }
                result
            })
        }

        fn new_lane(&self, len: usize) -> Result<Lane, String> {
            let mut stream: Stream = std::ptr::null_mut();
            // SAFETY: writes one stream handle; a context is current.
            self.check(
                unsafe { (self.stream_create)(&mut stream, NON_BLOCKING) },
                "cuStreamCreate",
            )?;
            let mut pinned: *mut c_void = std::ptr::null_mut();
            // SAFETY: writes one pointer to `len` bytes of page-locked memory.
            let allocated = self.check(
                unsafe { (self.host_alloc)(&mut pinned, len, PORTABLE) },
                "cuMemHostAlloc",
            );
            if let Err(e) = allocated {
                // SAFETY: destroys the stream created above, unused.
                unsafe { (self.stream_destroy)(stream) };
                return Err(e);
            }
            Ok(Lane {
                stream,
                pinned: pinned.cast(),
                len,
            })
        }

        fn free_lane(&self, lane: Lane) {
            // SAFETY: the lane's own stream and buffer, used no more; its
            // context is current.
            unsafe {
                (self.stream_sync)(lane.stream);
                (self.stream_destroy)(lane.stream);
                (self.host_free)(lane.pinned.cast());
            }
        }
    }

    /// A client's GPU memory, opened in this process.
    pub(super) struct Opened {
        driver: &'static Driver,
        gpu: Arc<Gpu>,
        ptr: DevicePtr,
    }

    // SAFETY: the device pointer is an address valid in every thread of the
    // process; every use makes the context current first.
    unsafe impl Send for Opened {}
    unsafe impl Sync for Opened {}

    impl Opened {
        pub(super) fn new(
            handle: &[u8; super::HANDLE_BYTES],
            device: u64,
            byte_size: u64,
        ) -> Result<Opened, String> {
            let driver = driver()?;
            let gpu = driver.gpu(device)?;
            let handle = IpcMemHandle { reserved: *handle };
            let ptr = driver.within(&gpu, || {
                let mut ptr: DevicePtr = 0;
                // SAFETY: writes one device pointer; the handle is 64 bytes.
                driver
                    .check(
                        unsafe { (driver.ipc_open)(&mut ptr, handle, LAZY_ENABLE_PEER_ACCESS) },
                        "cuIpcOpenMemHandle",
                    )
                    .map_err(|e| format!("cannot open its CUDA IPC handle on device {device}: {e}; send a handle from cudaIpcGetMemHandle in another process, of memory still allocated"))?;
                let (mut base, mut size): (DevicePtr, usize) = (0, 0);
                // SAFETY: writes the allocation's base and size.
                let range = driver.check(
                    unsafe { (driver.address_range)(&mut base, &mut size, ptr) },
                    "cuMemGetAddressRange",
                );
                let held = (base + size as u64).saturating_sub(ptr);
                if range.is_ok() && byte_size > held {
                    // SAFETY: closes what was opened just above.
                    unsafe { (driver.ipc_close)(ptr) };
                    return Err(format!(
                        "byte_size {byte_size} is more than the {held} bytes of GPU memory its handle shares"
                    ));
                }
                Ok(ptr)
            })?;
            Ok(Opened { driver, gpu, ptr })
        }

        /// Copies the device bytes from `start` into `out`, a lane's buffer
        /// at a time.
        pub(super) fn read(&self, start: usize, out: &mut [u8]) -> Result<(), String> {
            let d = self.driver;
            d.on_lane(&self.gpu, out.len(), |lane| {
                for (i, piece) in out.chunks_mut(lane.len).enumerate() {
                    let from = self.ptr + (start + i * lane.len) as u64;
                    // SAFETY: the lane's buffer holds the piece; the device range lies inside the opened memory
                    // (checked by the caller).
                    d.check(
                        unsafe { (d.dtoh)(lane.pinned.cast(), from, piece.len(), lane.stream) },
                        "cuMemcpyDtoHAsync",
                    )?;
                    // SAFETY: waits for the copy on the lane's own stream.
                    d.check(
                        unsafe { (d.stream_sync)(lane.stream) },
                        "cuStreamSynchronize",
                    )?;
                    // SAFETY: the copy above filled `piece.len()` bytes.
                    piece.copy_from_slice(unsafe {
                        std::slice::from_raw_parts(lane.pinned, piece.len())
                    });
                }
                Ok(())
            })
        }

        /// Copies `data` to the device from `start`; returns once it is
        /// there, before the answer tells the client to read it.
        pub(super) fn write(&self, start: usize, data: &[u8]) -> Result<(), String> {
            let d = self.driver;
            d.on_lane(&self.gpu, data.len(), |lane| {
                for (i, piece) in data.chunks(lane.len).enumerate() {
                    let to = self.ptr + (start + i * lane.len) as u64;
                    // SAFETY: the lane's buffer holds the piece, and no copy from it is in flight (each waits).
                    unsafe {
                        std::ptr::copy_nonoverlapping(piece.as_ptr(), lane.pinned, piece.len())
                    };
                    // SAFETY: as in `read`, the other way.
                    d.check(
                        unsafe { (d.htod)(to, lane.pinned.cast(), piece.len(), lane.stream) },
                        "cuMemcpyHtoDAsync",
                    )?;
                    // SAFETY: waits for the copy on the lane's own stream.
                    d.check(
                        unsafe { (d.stream_sync)(lane.stream) },
                        "cuStreamSynchronize",
                    )?;
                }
                Ok(())
            })
        }
    }

    impl Drop for Opened {
        fn drop(&mut self) {
            let d = self.driver;
            let _ = d.within(&self.gpu, || {
                // SAFETY: closes the memory opened in `new`, used no more.
                d.check(unsafe { (d.ipc_close)(self.ptr) }, "cuIpcCloseMemHandle")
            });
        }
    }
}
