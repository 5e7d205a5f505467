//! System shared memory: a POSIX shared memory object (`shm_open`) of the
//! client's, mapped once at registration.
//!
//! The object's size is checked at registration and again before every read
//! or write, so an object truncated since (which would fault the process on
//! access) is refused instead. The mapping is touched only for the length of
//! one `memcpy` per tensor, never while a model runs.

use crate::errors::ApiError;
use std::fs::File;

/// `byte_size` bytes of the object `key` from `offset`, mapped read-write.
pub(super) struct Mapping {
    pub(super) key: String,
    pub(super) offset: u64,
    byte_size: u64,
    file: File,
    map: memmap2::MmapRaw,
}

impl Mapping {
    /// Opens the object `key` and maps `byte_size` bytes of it from `offset`,
    /// for the region `name`.
    pub(super) fn new(
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<Mapping, ApiError> {
        check_key(key)?;
        let end = offset.checked_add(byte_size).ok_or_else(|| {
            ApiError::invalid(format!(
                "shared memory region '{name}': offset {offset} + byte_size {byte_size} overflows"
            ))
        })?;
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
        let (Ok(_), Ok(len)) = (usize::try_from(offset), usize::try_from(byte_size)) else {
            return Err(ApiError::invalid(format!(
                "shared memory region '{name}' is too large for this machine's address space"
            )));
        };
        let map = memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_raw(&file)
            .map_err(|e| {
                ApiError::invalid(format!(
                    "cannot map shared memory object '{key}' for region '{name}': {e}"
                ))
            })?;
        Ok(Mapping {
            key: key.to_string(),
            offset,
            byte_size,
            file,
            map,
        })
    }

    /// Copies the region's bytes `start..start + out.len()` into `out`.
    /// The caller has checked the bounds against the region's size.
    pub(super) fn read(&self, name: &str, start: usize, out: &mut [u8]) -> Result<(), ApiError> {
        self.check_mapped(name)?;
        // SAFETY: the range lies inside the mapping (checked by the caller),
        // and the object still covers it (checked just above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(start),
                out.as_mut_ptr(),
                out.len(),
            );
        }
        Ok(())
    }

    /// Copies `data` into the region from `start`; bounds as for `read`.
    pub(super) fn write(&self, name: &str, start: usize, data: &[u8]) -> Result<(), ApiError> {
        self.check_mapped(name)?;
        // SAFETY: as in `read`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(start),
                data.len(),
            );
        }
        Ok(())
    }

    fn check_mapped(&self, name: &str) -> Result<(), ApiError> {
        let size = object_size(&self.file).unwrap_or(0);
        let end = self.offset + self.byte_size;
        if size < end {
            return Err(ApiError::invalid(format!(
                "shared memory object '{}' of region '{name}' now has {size} bytes, fewer than the region's end ({end}); it was truncated after registration: unregister and register it again",
                self.key
            )));
        }
        Ok(())
    }
}

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
            crate::limits::printable(key)
        )));
    }
    Ok(())
}

fn object_size(file: &File) -> std::io::Result<u64> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a shared memory object"));
    }
    Ok(meta.len())
}

#[cfg(unix)]
pub(super) fn open(key: &str) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    let name = std::ffi::CString::new(key)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(not(unix))]
pub(super) fn open(_key: &str) -> std::io::Result<File> {
    Err(std::io::Error::other(
        "system shared memory needs a Unix system (Linux or macOS)",
    ))
}
