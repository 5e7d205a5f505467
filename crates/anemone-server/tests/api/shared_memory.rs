//! Triton's system shared memory extension, over HTTP and gRPC: regions are
//! registered, listed and unregistered; inputs are read from them and
//! outputs written into them, with the outputs' values checked against the
//! arithmetic of the `add` model (x + y, x - y) done here; and every
//! mistake a client can make gets an error that names it, with nothing
//! else lost.
#![cfg(unix)]

use crate::support::{error_text, f32_bytes, f32s, serve, workspace};
use anemone_server::proto::infer_parameter::ParameterChoice;
use anemone_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use anemone_server::proto::{self, InferParameter};
use anemone_server::ControlMode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd;
use tonic::Code;

/// A shared memory object as a client makes one, removed when dropped.
struct Object {
    key: String,
    file: File,
}

impl Object {
    fn new(tag: &str, len: u64) -> Object {
        let key = format!("/anemone-api-{tag}-{}", std::process::id());
        let name = CString::new(key.clone()).unwrap();
        // SAFETY: plain libc calls on a valid string; the fd is then owned by `file`.
        let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600) };
        assert!(fd >= 0, "shm_open: {}", std::io::Error::last_os_error());
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len).unwrap();
        Object { key, file }
    }

    fn write(&self, at: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(bytes, at).unwrap();
    }

    fn read(&self, at: u64, len: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut out = vec![0; len];
        self.file.read_exact_at(&mut out, at).unwrap();
        out
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let name = CString::new(self.key.clone()).unwrap();
        unsafe { libc::shm_unlink(name.as_ptr()) };
    }
}

const X: [f32; 4] = [1.5, -2.0, 3.25, 8.0];
const Y: [f32; 4] = [10.0, 20.5, -30.0, 0.125];

fn sum() -> Vec<f32> {
    X.iter().zip(Y).map(|(a, b)| a + b).collect()
}

fn diff() -> Vec<f32> {
    X.iter().zip(Y).map(|(a, b)| a - b).collect()
}

/// An input of `add` in `region` at `offset`.
fn shm_input(name: &str, region: &str, offset: u64, size: u64) -> Value {
    json!({"name": name, "shape": [1, 4], "datatype": "FP32", "parameters": {
        "shared_memory_region": region, "shared_memory_byte_size": size, "shared_memory_offset": offset}})
}

fn shm_output(name: &str, region: &str, offset: u64, size: u64) -> Value {
    json!({"name": name, "parameters": {
        "shared_memory_region": region, "shared_memory_byte_size": size, "shared_memory_offset": offset}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_and_outputs_go_through_registered_regions() {
    let server = serve(
        &workspace().join("examples/models"),
        ControlMode::None,
        &[],
        None,
    )
    .await;
    crate::ensemble::wait_ready(&server, "add").await;
    let inputs = Object::new("in", 64);
    let outputs = Object::new("out", 4096);
    inputs.write(0, &f32_bytes(&X));
    inputs.write(16, &f32_bytes(&Y));

    // Register; the status lists what was registered.
    let register = |name: &str, key: &str, offset: u64, size: u64| {
        (
            format!("/v2/systemsharedmemory/region/{name}/register"),
            json!({"key": key, "offset": offset, "byte_size": size}),
        )
    };
    for (path, body) in [
        register("in", &inputs.key, 0, 64),
        register("out", &outputs.key, 0, 4096),
    ] {
        assert_eq!(
            server.http("POST", &path, Some(body)).await,
            (200, Value::Null)
        );
    }
    let (code, status) = server
        .http("GET", "/v2/systemsharedmemory/status", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        status,
        json!([{"name": "in", "key": inputs.key, "offset": 0, "byte_size": 64},
               {"name": "out", "key": outputs.key, "offset": 0, "byte_size": 4096}])
    );
    let (code, one) = server
        .http("GET", "/v2/systemsharedmemory/region/in/status", None)
        .await;
    assert_eq!((code, one[0]["name"].as_str()), (200, Some("in")));
    let (_, meta) = server.http("GET", "/v2", None).await;
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("system_shared_memory")));

    // Registrations the server cannot take say why, and change nothing.
    let refusals = [
        (
            register("in", &inputs.key, 0, 64),
            400,
            "already registered",
        ),
        (
            register("r", "/anemone-no-such-object", 0, 64),
            400,
            "cannot open shared memory object",
        ),
        (
            register("r", &inputs.key, 32, 64),
            400,
            "would end at byte 96",
        ),
        (
            register("r", "/dev/zero", 0, 64),
            400,
            "not a shared memory object's name",
        ),
        (register("r", &inputs.key, 0, 0), 400, "at least 1"),
        (
            (
                "/v2/systemsharedmemory/region/r/register".into(),
                json!({"offset": 0, "byte_size": 8}),
            ),
            400,
            "missing field `key`",
        ),
    ];
    for ((path, body), want, says) in refusals {
        let (code, body) = server.http("POST", &path, Some(body)).await;
        assert_eq!(code, want, "{body}");
        assert!(error_text(&body).contains(says), "{body}");
    }
    let (code, body) = server
        .http("GET", "/v2/systemsharedmemory/region/r/status", None)
        .await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        server
            .http("GET", "/v2/systemsharedmemory/status", None)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Inputs from shared memory, both outputs into it: answered without data.
    let body = json!({
        "inputs": [shm_input("x", "in", 0, 16), shm_input("y", "in", 16, 16)],
        "outputs": [shm_output("sum", "out", 0, 16), shm_output("diff", "out", 64, 16)],
    });
    let (code, answer) = server
        .http("POST", "/v2/models/add/infer", Some(body))
        .await;
    assert_eq!(code, 200, "{answer}");
    for output in answer["outputs"].as_array().unwrap() {
        assert_eq!(output.get("data"), None, "{answer}");
        assert_eq!(output.get("parameters"), None, "{answer}");
        assert_eq!(output["shape"], json!([1, 4]));
    }
    assert_eq!(f32s(&outputs.read(0, 16)), sum());
    assert_eq!(f32s(&outputs.read(64, 16)), diff());

    // One output in shared memory, the other in the answer; one input in the request.
    let body = json!({
        "inputs": [shm_input("x", "in", 0, 16), {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": Y}],
        "outputs": [{"name": "sum"}, shm_output("diff", "out", 128, 16)],
    });
    let (code, answer) = server
        .http("POST", "/v2/models/add/infer", Some(body))
        .await;
    assert_eq!(code, 200, "{answer}");
    let data: Vec<f32> = serde_json::from_value(answer["outputs"][0]["data"].clone()).unwrap();
    assert_eq!(data, sum());
    assert_eq!(f32s(&outputs.read(128, 16)), diff());

    // Requests that name regions wrongly are refused, and say what to fix.
    let infer = |x: Value, outputs: Value| json!({"inputs": [x, shm_input("y", "in", 16, 16)], "outputs": outputs});
    let bad = [
        (
            infer(
                shm_input("x", "in", 0, 16),
                json!([shm_output("sum", "out", 0, 8)]),
            ),
            400,
            "holds 8",
        ),
        (
            infer(shm_input("x", "in", 56, 16), json!([])),
            400,
            "beyond shared memory region 'in' (64 bytes)",
        ),
        (
            infer(shm_input("x", "in", 0, 12), json!([])),
            400,
            "input 'x' has 12 bytes of data",
        ),
        (
            infer(shm_input("x", "nope", 0, 16), json!([])),
            404,
            "not registered",
        ),
        (
            infer(
                shm_input("x", "in", 0, 16),
                json!([shm_output("sum", "nope", 0, 16)]),
            ),
            404,
            "output 'sum' names shared memory region 'nope'",
        ),
        (
            infer(
                json!({"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X, "parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 16}}),
                json!([]),
            ),
            400,
            "has 'data' and parameter 'shared_memory_region'",
        ),
        (
            infer(
                json!({"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"shared_memory_region": "in"}}),
                json!([]),
            ),
            400,
            "no parameter 'shared_memory_byte_size'",
        ),
    ];
    for (body, want, says) in bad {
        let (code, answer) = server
            .http("POST", "/v2/models/add/infer", Some(body.clone()))
            .await;
        assert_eq!(code, want, "{body}: {answer}");
        assert!(error_text(&answer).contains(says), "{body}: {answer}");
    }

    // gRPC: its own registration, a mixed request, and the empty
    // raw_output_contents entry Triton gives an output in shared memory.
    let mut c = server.client().await;
    let status = c
        .system_shared_memory_status(proto::SystemSharedMemoryStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.regions.len(), 2);
    assert_eq!(status.regions["in"].key, inputs.key);
    c.system_shared_memory_register(proto::SystemSharedMemoryRegisterRequest {
        name: "tail".into(),
        key: outputs.key.clone(),
        offset: 1000,
        byte_size: 100,
    })
    .await
    .unwrap();
    let e = c
        .system_shared_memory_register(proto::SystemSharedMemoryRegisterRequest {
            name: "tail".into(),
            key: outputs.key.clone(),
            offset: 0,
            byte_size: 8,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let shm = |region: &str, offset: i64, size: i64| {
        HashMap::from([
            (
                "shared_memory_region".to_string(),
                InferParameter {
                    parameter_choice: Some(ParameterChoice::StringParam(region.into())),
                },
            ),
            (
                "shared_memory_offset".to_string(),
                InferParameter {
                    parameter_choice: Some(ParameterChoice::Int64Param(offset)),
                },
            ),
            (
                "shared_memory_byte_size".to_string(),
                InferParameter {
                    parameter_choice: Some(ParameterChoice::Int64Param(size)),
                },
            ),
        ])
    };
    let input = |name: &str, parameters| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![1, 4],
        parameters,
        contents: None,
    };
    let request = |x_region: &str| proto::ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![input("x", shm(x_region, 0, 16)), input("y", HashMap::new())],
        // Only y is in the request.
        raw_input_contents: vec![f32_bytes(&Y).into()],
        outputs: vec![
            InferRequestedOutputTensor {
                name: "sum".into(),
                parameters: shm("tail", 4, 16),
            },
            InferRequestedOutputTensor {
                name: "diff".into(),
                parameters: HashMap::new(),
            },
        ],
        ..Default::default()
    };
    let answer = c.model_infer(request("in")).await.unwrap().into_inner();
    assert_eq!(answer.raw_output_contents.len(), 2);
    assert!(answer.raw_output_contents[0].is_empty());
    assert_eq!(f32s(&answer.raw_output_contents[1]), diff());
    assert_eq!(f32s(&outputs.read(1004, 16)), sum());

    // Unregistered: requests naming it are NOT_FOUND; other regions still serve.
    c.system_shared_memory_unregister(proto::SystemSharedMemoryUnregisterRequest {
        name: "in".into(),
    })
    .await
    .unwrap();
    let e = c.model_infer(request("in")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    assert!(e.message().contains("register it first"), "{}", e.message());
    let e = c
        .system_shared_memory_status(proto::SystemSharedMemoryStatusRequest { name: "in".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let (code, _) = server
        .http(
            "POST",
            "/v2/systemsharedmemory/region/in/register",
            Some(json!({"key": inputs.key, "byte_size": 64})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        c.model_infer(request("in"))
            .await
            .unwrap()
            .into_inner()
            .raw_output_contents
            .len(),
        2
    );

    // CUDA shared memory: none, said plainly.
    let e = c
        .cuda_shared_memory_register(proto::CudaSharedMemoryRegisterRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(
        e.message().contains("use system shared memory"),
        "{}",
        e.message()
    );
    assert_eq!(
        server
            .http("GET", "/v2/cudasharedmemory/status", None)
            .await,
        (200, json!([]))
    );

    // Unregistering all leaves none; a name never registered is no error.
    assert_eq!(
        server
            .http(
                "POST",
                "/v2/systemsharedmemory/region/never/unregister",
                None
            )
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .http("POST", "/v2/systemsharedmemory/unregister", None)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .http("GET", "/v2/systemsharedmemory/status", None)
            .await,
        (200, json!([]))
    );
    server.shutdown().await;
}
