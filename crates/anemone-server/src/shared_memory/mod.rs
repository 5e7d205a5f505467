//! Triton's shared memory extensions, system and CUDA.
//!
//! A client on the same machine shares memory with the server and registers
//! part of it under a name: a POSIX shared memory object
//! (`/v2/systemsharedmemory/region/{name}/register`, gRPC
//! `SystemSharedMemoryRegister`; `system.rs`) or GPU memory through a CUDA IPC
//! handle (`/v2/cudasharedmemory/region/{name}/register`, gRPC
//! `CudaSharedMemoryRegister`; `cuda.rs`). It then names that region in an
//! inference request instead of sending tensor bytes: an input with the
//! parameters `shared_memory_region`, `shared_memory_byte_size` and
//! `shared_memory_offset` is copied out of the region once, and an output
//! with them is written into it and answered without data.
//!
//! System and CUDA regions share one set of names, as in Triton. A region
//! stays open while any request still uses it, even after it is
//! unregistered. Inputs are copied out at once rather than read in place
//! during the inference: a region is touched only for the length of one
//! copy per tensor, never while a model runs.

mod cuda;
mod inputs;
mod system;

pub use cuda::HANDLE_BYTES as CUDA_HANDLE_BYTES;
pub use inputs::{read as read_inputs, SharedInputs};

use crate::errors::ApiError;
use anemone_core::Bytes;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// At most this many regions are registered at once.
pub const MAX_REGIONS: usize = 4096;

/// The request parameter naming a region.
pub const REGION: &str = "shared_memory_region";
/// The request parameter giving the byte count in the region.
pub const BYTE_SIZE: &str = "shared_memory_byte_size";
/// The request parameter giving where in the region the data starts.
pub const OFFSET: &str = "shared_memory_offset";

/// The registered regions, by name.
#[derive(Default)]
pub struct SharedMemory {
    regions: RwLock<HashMap<String, Arc<Region>>>,
}

/// One registered region: `byte_size` bytes of shared memory.
pub struct Region {
    name: String,
    byte_size: u64,
    memory: Memory,
}

enum Memory {
    System(system::Mapping),
    Cuda(cuda::DeviceMemory),
}

impl Memory {
    fn is_cuda(&self) -> bool {
        matches!(self, Memory::Cuda(_))
    }
}

/// What the status calls report of a system region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegionStatus {
    /// The name it was registered under.
    pub name: String,
    /// The shared memory object's key (`shm_open`'s name, such as `/input0`).
    pub key: String,
    /// Where in the object the region starts.
    pub offset: u64,
    /// The region's length.
    pub byte_size: u64,
}

/// What the status calls report of a CUDA region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CudaRegionStatus {
    /// The name it was registered under.
    pub name: String,
    /// The GPU its memory is on.
    pub device_id: u64,
    /// The region's length.
    pub byte_size: u64,
}

/// A byte range of a region, as a request names it.
#[derive(Clone)]
pub struct Slice {
    region: Arc<Region>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for Slice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Slice({}[{}..{}])",
            self.region.name,
            self.start,
            self.start + self.len
        )
    }
}

impl PartialEq for Slice {
    fn eq(&self, other: &Slice) -> bool {
        Arc::ptr_eq(&self.region, &other.region)
            && self.start == other.start
            && self.len == other.len
    }
}

impl Eq for Slice {}

/// Runs a registration on a blocking thread: opening a shared memory object
/// or a CUDA IPC handle are system and driver calls, kept off the threads
/// that serve requests.
pub async fn register_blocking(
    register: impl FnOnce() -> Result<(), ApiError> + Send + 'static,
) -> Result<(), ApiError> {
    tokio::task::spawn_blocking(register)
        .await
        .unwrap_or_else(|e| {
            Err(ApiError {
                kind: anemone_core::ErrorKind::Internal,
                message: format!("registering failed: {e}"),
                too_large: false,
            })
        })
}

impl SharedMemory {
    /// Maps `byte_size` bytes of the shared memory object `key` from
    /// `offset` and registers them as `name`.
    pub fn register(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<(), ApiError> {
        self.add(name, byte_size, || {
            system::Mapping::new(name, key, offset, byte_size).map(Memory::System)
        })
    }

    /// Opens the GPU memory that the CUDA IPC handle `raw_handle` shares, on
    /// GPU `device_id`, and registers `byte_size` bytes of it as `name`.
    pub fn register_cuda(
        &self,
        name: &str,
        raw_handle: &[u8],
        device_id: i64,
        byte_size: u64,
    ) -> Result<(), ApiError> {
        self.add(name, byte_size, || {
            cuda::DeviceMemory::open(name, raw_handle, device_id, byte_size).map(Memory::Cuda)
        })
    }

    /// Registers what `open` opens as `name`, once the name and size are
    /// checked.
    fn add(
        &self,
        name: &str,
        byte_size: u64,
        open: impl FnOnce() -> Result<Memory, ApiError>,
    ) -> Result<(), ApiError> {
        if name.is_empty() {
            return Err(ApiError::invalid(
                "a shared memory region needs a name (an empty name means every region to status and unregister)",
            ));
        }
        crate::limits::check_name("shared memory region", name)?;
        if byte_size == 0 {
            return Err(ApiError::invalid(format!(
                "shared memory region '{name}': byte_size must be at least 1"
            )));
        }
        if usize::try_from(byte_size).is_err() {
            return Err(ApiError::invalid(format!(
                "shared memory region '{name}' is too large for this machine's address space"
            )));
        }
        // Taken before the memory is opened, so that two registrations of
        // one name cannot both open it.
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(there) = regions.get(name) {
            let kind = if there.memory.is_cuda() {
                "a CUDA"
            } else {
                "a system"
            };
            return Err(ApiError::invalid(format!(
                "shared memory region '{name}' is already registered (as {kind} shared memory region); unregister it first, or choose another name"
            )));
        }
        if regions.len() >= MAX_REGIONS {
            return Err(ApiError::invalid(format!(
                "{MAX_REGIONS} shared memory regions are registered, the most the server keeps; unregister some first"
            )));
        }
        let memory = open()?;
        regions.insert(
            name.to_string(),
            Arc::new(Region {
                name: name.to_string(),
                byte_size,
                memory,
            }),
        );
        Ok(())
    }

    /// Unregisters the system region `name`, or every system region when
    /// `name` is empty. A name not registered is no error (as in Triton),
    /// nor is a CUDA region's, which stays. Requests already using a region
    /// keep it until they finish.
    pub fn unregister(&self, name: &str) {
        self.remove(name, false);
    }

    /// Unregisters the CUDA region `name`, or every CUDA region when `name`
    /// is empty.
    pub fn unregister_cuda(&self, name: &str) {
        self.remove(name, true);
    }

    fn remove(&self, name: &str, cuda: bool) {
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        if name.is_empty() {
            regions.retain(|_, r| r.memory.is_cuda() != cuda);
        } else if regions
            .get(name)
            .is_some_and(|r| r.memory.is_cuda() == cuda)
        {
            regions.remove(name);
        }
    }

    /// The status of the system region `name`, or of every system region (by
    /// name) when `name` is empty; an unknown name is NotFound.
    pub fn status(&self, name: &str) -> Result<Vec<RegionStatus>, ApiError> {
        self.find(name, "system", |r| match &r.memory {
            Memory::System(m) => Some(RegionStatus {
                name: r.name.clone(),
                key: m.key.clone(),
                offset: m.offset,
                byte_size: r.byte_size,
            }),
            Memory::Cuda(_) => None,
        })
    }

    /// The CUDA regions (every one when `name` is empty), by name.
    pub fn cuda_status(&self, name: &str) -> Result<Vec<CudaRegionStatus>, ApiError> {
        self.find(name, "CUDA", |r| match &r.memory {
            Memory::Cuda(m) => Some(CudaRegionStatus {
                name: r.name.clone(),
                device_id: m.device_id,
                byte_size: r.byte_size,
            }),
            Memory::System(_) => None,
        })
    }

    fn find<T>(
        &self,
        name: &str,
        kind: &str,
        status: impl Fn(&Region) -> Option<T>,
    ) -> Result<Vec<T>, ApiError> {
        let regions = self.regions.read().unwrap_or_else(|e| e.into_inner());
        if name.is_empty() {
            let mut all: Vec<&Arc<Region>> = regions.values().collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(all.into_iter().filter_map(|r| status(r)).collect());
        }
        regions
            .get(name)
            .and_then(|r| status(r))
            .map(|s| vec![s])
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no {kind} shared memory region '{name}' is registered"
                ))
            })
    }

    /// The slice of a region that a tensor's parameters name, or `None`
    /// when they name no region. `what` is "input" or "output", `tensor`
    /// its name, for messages.
    pub fn slice(
        &self,
        what: &str,
        tensor: &str,
        parameters: &Map<String, Value>,
    ) -> Result<Option<Slice>, ApiError> {
        let Some(region) = parameters.get(REGION) else {
            if let Some(key) = [BYTE_SIZE, OFFSET]
                .into_iter()
                .find(|k| parameters.contains_key(*k))
            {
                return Err(ApiError::invalid(format!(
                    "{what} '{tensor}' has parameter '{key}' but no '{REGION}'; name the registered region it refers to"
                )));
            }
            return Ok(None);
        };
        let region = region.as_str().ok_or_else(|| {
            ApiError::invalid(format!(
                "{what} '{tensor}': parameter '{REGION}' must be a region's name, got {region}"
            ))
        })?;
        let count = |key: &str, required: bool| -> Result<u64, ApiError> {
            match parameters.get(key) {
                None if required => Err(ApiError::invalid(format!(
                    "{what} '{tensor}' is in shared memory region '{region}' but has no parameter '{key}'; give the tensor's byte count"
                ))),
                None => Ok(0),
                Some(v) => v.as_u64().ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{what} '{tensor}': parameter '{key}' must be a byte count, got {v}"
                    ))
                }),
            }
        };
        let byte_size = count(BYTE_SIZE, true)?;
        let offset = count(OFFSET, false)?;
        let found = self
            .regions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(region)
            .cloned();
        let region = found.ok_or_else(|| {
            ApiError::not_found(format!(
                "{what} '{tensor}' names shared memory region '{region}', which is not registered; register it first (/v2/systemsharedmemory/region/{region}/register, or /v2/cudasharedmemory for GPU memory)"
            ))
        })?;
        let end = offset.checked_add(byte_size);
        if end.is_none_or(|end| end > region.byte_size) {
            return Err(ApiError::invalid(format!(
                "{what} '{tensor}': offset {offset} + byte_size {byte_size} is beyond shared memory region '{}' ({} bytes)",
                region.name, region.byte_size
            )));
        }
        // Both fit in the region, which fits in the address space.
        Ok(Some(Slice {
            region,
            start: offset as usize,
            len: byte_size as usize,
        }))
    }
}

impl Slice {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of the bytes, starting on a 64-byte boundary (so that engines
    /// read it in place).
    pub fn read(&self) -> Result<Bytes, ApiError> {
        const ALIGN: usize = 64;
        let mut copy: Vec<u8> = Vec::with_capacity(self.len + ALIGN - 1);
        let pad = (ALIGN - copy.as_ptr() as usize % ALIGN) % ALIGN;
        copy.resize(pad + self.len, 0);
        let region = &self.region;
        let out = &mut copy[pad..];
        match &region.memory {
            Memory::System(m) => m.read(&region.name, self.start, out)?,
            Memory::Cuda(m) => m.read(&region.name, self.start, out)?,
        }
        Ok(Bytes::from(copy).slice(pad..))
    }

    /// Writes `data`, the output `tensor`'s bytes, at the slice's start.
    pub fn write(&self, tensor: &str, data: &[u8]) -> Result<(), ApiError> {
        let region = &self.region;
        if data.len() > self.len {
            return Err(ApiError::invalid(format!(
                "output '{tensor}' is {} bytes, but its shared memory ({} bytes of region '{}') holds {}; give a larger '{BYTE_SIZE}'",
                data.len(),
                self.len,
                region.name,
                self.len
            )));
        }
        match &region.memory {
            Memory::System(m) => m.write(&region.name, self.start, data),
            Memory::Cuda(m) => m.write(&region.name, self.start, data),
        }
    }
}

#[cfg(all(test, unix))]
mod tests;
