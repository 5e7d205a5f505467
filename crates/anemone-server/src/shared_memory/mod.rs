//! Triton's system shared memory extension.
//!
//! A client on the same machine creates a POSIX shared memory object
//! (`shm_open`), registers part of it under a name
//! (`/v2/systemsharedmemory/region/{name}/register`, gRPC
//! `SystemSharedMemoryRegister`), and then names that region in an inference
//! request instead of sending tensor bytes: an input with the parameters
//! `shared_memory_region`, `shared_memory_byte_size` and
//! `shared_memory_offset` is copied out of the region once, and an output
//! with them is written into it and answered without data.
//!
//! A region is mapped once, at registration, and stays mapped while any
//! request still uses it, even after it is unregistered. The object's size
//! is checked at registration and again before every read or write, so an
//! object truncated since (which would fault the process on access) is
//! refused instead. Inputs are copied out at once rather than read in place
//! during the inference, for the same reason: the mapping is touched only
//! for the length of one `memcpy` per tensor, never while a model runs.

mod inputs;

pub use inputs::{read as read_inputs, SharedInputs};

use crate::errors::ApiError;
use anemone_core::Bytes;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::File;
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

/// One registered region: `byte_size` bytes of the object `key` from
/// `offset`, mapped read-write.
pub struct Region {
    status: RegionStatus,
    file: File,
    map: memmap2::MmapRaw,
}

/// What the status calls report of a region.
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
            self.region.status.name,
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
        if name.is_empty() {
            return Err(ApiError::invalid(
                "a shared memory region needs a name (an empty name means every region to status and unregister)",
            ));
        }
        crate::limits::check_name("shared memory region", name)?;
        check_key(key)?;
        if byte_size == 0 {
            return Err(ApiError::invalid(format!(
                "shared memory region '{name}': byte_size must be at least 1"
            )));
        }
        let end = offset.checked_add(byte_size).ok_or_else(|| {
            ApiError::invalid(format!(
                "shared memory region '{name}': offset {offset} + byte_size {byte_size} overflows"
            ))
        })?;
        // Taken before the object is opened, so that two registrations of
        // one name cannot both map it.
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        if regions.contains_key(name) {
            return Err(ApiError::invalid(format!(
                "shared memory region '{name}' is already registered; unregister it first, or choose another name"
            )));
        }
        if regions.len() >= MAX_REGIONS {
            return Err(ApiError::invalid(format!(
                "{MAX_REGIONS} shared memory regions are registered, the most the server keeps; unregister some first"
            )));
        }
        let file = open(key).map_err(|e| {
            ApiError::invalid(format!(
                "cannot open shared memory object '{key}' for region '{name}': {e}; create it (shm_open) on this machine before registering it"
            ))
        })?;
        let size = object_size(&file)
            .map_err(|e| ApiError::invalid(format!("shared memory object '{key}': {e}")))?;
        if end > size {
            return Err(ApiError::invalid(format!(
                "shared memory region '{name}' would end at byte {end} (offset {offset} + byte_size {byte_size}), but object '{key}' has {size} bytes"
            )));
        }
        let (Ok(offset_usize), Ok(len)) = (usize::try_from(offset), usize::try_from(byte_size))
        else {
            return Err(ApiError::invalid(format!(
                "shared memory region '{name}' is too large for this machine's address space"
            )));
        };
        let map = memmap2::MmapOptions::new()
            .offset(offset_usize as u64)
            .len(len)
            .map_raw(&file)
            .map_err(|e| {
                ApiError::invalid(format!(
                    "cannot map shared memory object '{key}' for region '{name}': {e}"
                ))
            })?;
        regions.insert(
            name.to_string(),
            Arc::new(Region {
                status: RegionStatus {
                    name: name.to_string(),
                    key: key.to_string(),
                    offset,
                    byte_size,
                },
                file,
                map,
            }),
        );
        Ok(())
    }

    /// Unregisters `name`, or every region when `name` is empty. A name not
    /// registered is no error (as in Triton). Requests already using a
    /// region keep it until they finish.
    pub fn unregister(&self, name: &str) {
        let mut regions = self.regions.write().unwrap_or_else(|e| e.into_inner());
        if name.is_empty() {
            regions.clear();
        } else {
            regions.remove(name);
        }
    }

    /// The status of `name`, or of every region (by name) when `name` is
    /// empty; an unknown name is NotFound.
    pub fn status(&self, name: &str) -> Result<Vec<RegionStatus>, ApiError> {
        let regions = self.regions.read().unwrap_or_else(|e| e.into_inner());
        if name.is_empty() {
            let mut all: Vec<RegionStatus> = regions.values().map(|r| r.status.clone()).collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(all);
        }
        regions
            .get(name)
            .map(|r| vec![r.status.clone()])
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no system shared memory region '{name}' is registered"
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
                "{what} '{tensor}' names shared memory region '{region}', which is not registered; register it first (/v2/systemsharedmemory/region/{region}/register)"
            ))
        })?;
        let end = offset.checked_add(byte_size);
        if end.is_none_or(|end| end > region.status.byte_size) {
            return Err(ApiError::invalid(format!(
                "{what} '{tensor}': offset {offset} + byte_size {byte_size} is beyond shared memory region '{}' ({} bytes)",
                region.status.name, region.status.byte_size
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
        self.check_mapped()?;
        let mut copy: Vec<u8> = Vec::with_capacity(self.len + ALIGN - 1);
        let pad = (ALIGN - copy.as_ptr() as usize % ALIGN) % ALIGN;
        copy.resize(pad, 0);
        copy.extend_from_slice(self.bytes());
        Ok(Bytes::from(copy).slice(pad..))
    }

    /// Writes `data` at the slice's start. `tensor` names the output, for
    /// the message when the slice is too small.
    pub fn write(&self, tensor: &str, data: &[u8]) -> Result<(), ApiError> {
        if data.len() > self.len {
            return Err(ApiError::invalid(format!(
                "output '{tensor}' is {} bytes, but its shared memory ({} bytes of region '{}') holds {}; give a larger '{BYTE_SIZE}'",
                data.len(),
                self.len,
                self.region.status.name,
                self.len
            )));
        }
        self.check_mapped()?;
        // SAFETY: `start + data.len() <= start + len <= the mapping's
        // length` (checked in `SharedMemory::slice` and above), and the
        // mapping lives as long as `self.region`. The memory is shared with
        // the client, which by the protocol does not touch an output's
        // bytes until the answer arrives.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.region.map.as_mut_ptr().add(self.start),
                data.len(),
            );
        }
        Ok(())
    }

    /// Refuses a region whose object has been truncated below it since it
    /// was registered: touching those pages would fault the process.
    fn check_mapped(&self) -> Result<(), ApiError> {
        let s = &self.region.status;
        let size = object_size(&self.region.file).unwrap_or(0);
        if size < s.offset + s.byte_size {
            return Err(ApiError::invalid(format!(
                "shared memory object '{}' of region '{}' now has {size} bytes, fewer than the region's end ({}); it was truncated after registration: unregister and register it again",
                s.key,
                s.name,
                s.offset + s.byte_size
            )));
        }
        Ok(())
    }

    /// The mapped bytes, for the copy in `read`.
    fn bytes(&self) -> &[u8] {
        // SAFETY: in bounds as in `write`; the slice borrows `self`, which
        // holds the mapping. Its bytes are shared with the client, which by
        // the protocol does not change an input while the request runs.
        unsafe { std::slice::from_raw_parts(self.region.map.as_ptr().add(self.start), self.len) }
    }
}

/// A key as `shm_open` takes it: one name, with or without a leading `/`.
fn check_key(key: &str) -> Result<(), ApiError> {
    let name = key.strip_prefix('/').unwrap_or(key);
    if name.is_empty()
        || name.len() > 255
        || name.contains(['/', '\0'])
        || name == "."
        || name == ".."
    {
        return Err(ApiError::invalid(format!(
            "shared memory key '{}' is not a shared memory object's name: give one name such as '/input0' (at most 255 bytes, no other '/')",
            key.escape_debug()
        )));
    }
    Ok(())
}

/// The object's size, if it is a shared memory object (a regular file).
fn object_size(file: &File) -> std::io::Result<u64> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a shared memory object"));
    }
    Ok(meta.len())
}

#[cfg(unix)]
fn open(key: &str) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    let name = std::ffi::CString::new(key)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(not(unix))]
fn open(_key: &str) -> std::io::Result<File> {
    Err(std::io::Error::other(
        "system shared memory needs a Unix system (Linux or macOS)",
    ))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use serde_json::json;

    /// A shared memory object made for a test, removed when dropped.
    struct Object(String);

    impl Object {
        fn new(tag: &str, len: u64) -> Object {
            let key = format!("/anemone-test-{tag}-{}", std::process::id());
            let name = std::ffi::CString::new(key.clone()).unwrap();
            // SAFETY: plain libc calls on a valid string.
            let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600) };
            assert!(fd >= 0, "shm_open: {}", std::io::Error::last_os_error());
            let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            file.set_len(len).unwrap();
            Object(key)
        }
    }

    impl Drop for Object {
        fn drop(&mut self) {
            let name = std::ffi::CString::new(self.0.clone()).unwrap();
            unsafe { libc::shm_unlink(name.as_ptr()) };
        }
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn written_bytes_are_read_back_through_another_region() {
        let object = Object::new("rw", 64);
        let shm = SharedMemory::default();
        shm.register("all", &object.0, 0, 64).unwrap();
        // Not page-aligned: the region starts 24 bytes in.
        shm.register("tail", &object.0, 24, 40).unwrap();
        let out = shm
            .slice(
                "output",
                "y",
                &params(json!({REGION: "all", BYTE_SIZE: 16, OFFSET: 32})),
            )
            .unwrap()
            .unwrap();
        out.write("y", &[7u8; 16]).unwrap();
        let back = shm
            .slice(
                "input",
                "x",
                &params(json!({REGION: "tail", BYTE_SIZE: 16, OFFSET: 8})),
            )
            .unwrap()
            .unwrap()
            .read()
            .unwrap();
        assert_eq!(&back[..], &[7u8; 16]);
        let err = out.write("y", &[0u8; 17]).unwrap_err();
        assert!(err.message.contains("holds 16"), "{}", err.message);
    }

    #[test]
    fn registrations_are_checked() {
        let object = Object::new("reg", 32);
        let shm = SharedMemory::default();
        let e = |r: Result<(), ApiError>| r.unwrap_err().message;
        assert!(e(shm.register("r", &object.0, 0, 33)).contains("has 32 bytes"));
        assert!(e(shm.register("r", &object.0, 16, 17)).contains("end at byte 33"));
        assert!(e(shm.register("r", &object.0, 0, 0)).contains("at least 1"));
        assert!(e(shm.register("", &object.0, 0, 8)).contains("needs a name"));
        assert!(e(shm.register("r", "/anemone-no-such-object", 0, 8)).contains("cannot open"));
        for bad in ["", "/", "/a/b", "../x", "/.."] {
            assert!(
                e(shm.register("r", bad, 0, 8)).contains("not a shared memory object's name"),
                "{bad}"
            );
        }
        shm.register("r", &object.0, 0, 32).unwrap();
        assert!(e(shm.register("r", &object.0, 0, 32)).contains("already registered"));
        assert_eq!(shm.status("").unwrap().len(), 1);
        assert_eq!(
            shm.status("nope").unwrap_err().kind,
            anemone_core::ErrorKind::NotFound
        );
        shm.unregister("nope");
        shm.unregister("r");
        assert!(shm.status("").unwrap().is_empty());
    }

    #[test]
    fn slices_stay_inside_their_region() {
        let object = Object::new("slice", 32);
        let shm = SharedMemory::default();
        shm.register("r", &object.0, 0, 32).unwrap();
        let slice = |v: Value| shm.slice("input", "x", &params(v));
        assert!(slice(json!({})).unwrap().is_none());
        assert_eq!(
            slice(json!({REGION: "r", BYTE_SIZE: 32}))
                .unwrap()
                .unwrap()
                .len(),
            32
        );
        for (v, says) in [
            (json!({REGION: "r", BYTE_SIZE: 8, OFFSET: 25}), "beyond"),
            (
                json!({REGION: "r", BYTE_SIZE: u64::MAX, OFFSET: 2}),
                "beyond",
            ),
            (
                json!({REGION: "r"}),
                "no parameter 'shared_memory_byte_size'",
            ),
            (json!({REGION: "r", BYTE_SIZE: "8"}), "must be a byte count"),
            (json!({REGION: 3, BYTE_SIZE: 8}), "must be a region's name"),
            (json!({BYTE_SIZE: 8}), "no 'shared_memory_region'"),
        ] {
            let m = slice(v.clone()).unwrap_err().message;
            assert!(m.contains(says), "{v}: {m}");
        }
        let gone = slice(json!({REGION: "other", BYTE_SIZE: 8})).unwrap_err();
        assert_eq!(gone.kind, anemone_core::ErrorKind::NotFound);
    }

    #[test]
    fn a_truncated_object_is_refused_not_touched() {
        let object = Object::new("trunc", 8192);
        let shm = SharedMemory::default();
        shm.register("r", &object.0, 0, 8192).unwrap();
        let s = shm
            .slice("input", "x", &params(json!({REGION: "r", BYTE_SIZE: 8192})))
            .unwrap()
            .unwrap();
        // The client shrinks its object, as any process that can open it may.
        open(&object.0).unwrap().set_len(100).unwrap();
        assert!(s.read().unwrap_err().message.contains("truncated"));
        assert!(s
            .write("y", &[1])
            .unwrap_err()
            .message
            .contains("truncated"));
    }

    #[test]
    fn an_unregistered_region_stays_mapped_for_its_requests() {
        let object = Object::new("unreg", 16);
        let shm = SharedMemory::default();
        shm.register("r", &object.0, 0, 16).unwrap();
        let s = shm
            .slice("output", "y", &params(json!({REGION: "r", BYTE_SIZE: 16})))
            .unwrap()
            .unwrap();
        shm.unregister("");
        s.write("y", &[3; 16]).unwrap();
        assert_eq!(&s.read().unwrap()[..], &[3; 16]);
    }
}
