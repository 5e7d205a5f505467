//! Triton's CUDA shared memory extension, as far as it goes without a GPU
//! (CI has none): what a registration needs is checked before the driver;
//! without a driver its absence is said plainly, and on a GPU machine a
//! handle no process exported is refused; CUDA and system regions share
//! names and keep to their kind in status and unregister. The transfers
//! themselves are checked on a GPU by scripts/cuda_shm_check.py.
#![cfg(unix)]

use crate::shared_memory::{add_server, Object};
use anemone_server::proto;
use serde_json::json;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_registrations_are_checked_before_the_driver_and_keep_to_their_kind() {
    let server = add_server().await;
    let inputs = Object::new("cuda-in", 64);
    let (code, body) = server
        .http(
            "POST",
            "/v2/systemsharedmemory/region/in/register",
            Some(json!({"key": inputs.key, "byte_size": 64})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let mut c = server.client().await;
    let cuda = |name: &str, raw_handle: Vec<u8>| proto::CudaSharedMemoryRegisterRequest {
        name: name.into(),
        raw_handle,
        device_id: 0,
        byte_size: 64,
    };
    for (request, says) in [
        (cuda("", vec![0; 64]), "needs a name"),
        (cuda("gpu", vec![0; 10]), "a CUDA IPC handle has 64"),
        (
            proto::CudaSharedMemoryRegisterRequest {
                device_id: -1,
                ..cuda("gpu", vec![0; 64])
            },
            "not a GPU's number",
        ),
        (cuda("in", vec![0; 64]), "already registered (as a system"),
    ] {
        let e = c.cuda_shared_memory_register(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains(says), "{says}: {}", e.message());
    }
    let e = c
        .cuda_shared_memory_register(cuda("gpu", vec![0; 64]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("needs the NVIDIA driver")
            || e.message().contains("cannot open its CUDA IPC handle"),
        "{}",
        e.message()
    );
    let (code, body) = server
        .http(
            "POST",
            "/v2/cudasharedmemory/region/gpu/register",
            Some(json!({"raw_handle": {"b64": "not base64!"}, "device_id": 0, "byte_size": 64})),
        )
        .await;
    assert_eq!(code, 400);
    assert!(body.to_string().contains("not base64"), "{body}");
    let (code, body) = server
        .http(
            "POST",
            "/v2/cudasharedmemory/region/gpu/register",
            Some(json!({"raw_handle": "AAAA", "device_id": 0, "byte_size": 64})),
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("malformed CUDA shared memory registration"),
        "{body}"
    );
    // The CUDA calls list no system region, and leave it registered.
    assert_eq!(
        server
            .http("GET", "/v2/cudasharedmemory/status", None)
            .await,
        (200, json!([]))
    );
    let (code, _) = server
        .http("GET", "/v2/cudasharedmemory/region/in/status", None)
        .await;
    assert_eq!(code, 404);
    let regions = c
        .cuda_shared_memory_status(proto::CudaSharedMemoryStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .regions;
    assert!(regions.is_empty());
    for path in [
        "/v2/cudasharedmemory/region/in/unregister",
        "/v2/cudasharedmemory/unregister",
    ] {
        assert_eq!(server.http("POST", path, None).await.0, 200, "{path}");
    }
    let (code, _) = server
        .http("GET", "/v2/systemsharedmemory/region/in/status", None)
        .await;
    assert_eq!(code, 200, "a CUDA unregister left the system region");
}
