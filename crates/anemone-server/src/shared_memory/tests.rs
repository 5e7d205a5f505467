//! The regions' bookkeeping, bounds and refusals, on real POSIX shared
//! memory objects (CUDA's where they need no GPU).

use super::*;
use serde_json::json;
use std::fs::File;

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
    system::open(&object.0).unwrap().set_len(100).unwrap();
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

#[test]
fn cuda_registrations_are_checked_and_share_names_with_system_ones() {
    let object = Object::new("cuda", 16);
    let shm = SharedMemory::default();
    shm.register("sys", &object.0, 0, 16).unwrap();
    let e = |name: &str, handle: &[u8], device: i64, size: u64| {
        shm.register_cuda(name, handle, device, size)
            .unwrap_err()
            .message
    };
    let handle = [0u8; CUDA_HANDLE_BYTES];
    assert!(e("", &handle, 0, 8).contains("needs a name"));
    assert!(e("g", &handle, 0, 0).contains("at least 1"));
    assert!(e("g", &handle[..63], 0, 8).contains("raw_handle is 63 bytes"));
    assert!(e("g", &handle, -1, 8).contains("not a GPU's number"));
    assert!(e("sys", &handle, 0, 8).contains("already registered (as a system"));
    // A handle of zeros was exported by no process: refused by the
    // driver where there is one, or for the want of one.
    let m = e("g", &handle, 0, 8);
    assert!(
        m.contains("needs the NVIDIA driver") || m.contains("cannot open its CUDA IPC handle"),
        "{m}"
    );
    // The CUDA calls see no system region, and leave it.
    assert!(shm.cuda_status("").unwrap().is_empty());
    assert_eq!(
        shm.cuda_status("sys").unwrap_err().kind,
        anemone_core::ErrorKind::NotFound
    );
    shm.unregister_cuda("sys");
    shm.unregister_cuda("");
    assert_eq!(shm.status("sys").unwrap().len(), 1);
    // A system unregister of every region leaves none of its kind.
    shm.unregister("");
    assert!(shm.status("").unwrap().is_empty());
}
