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
pub(crate) struct Object {
    pub(crate) key: String,
    file: File,
}

impl Object {
    pub(crate) fn new(tag: &str, len: u64) -> Object {
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

/// A server on `examples/models`, with `add` ready.
pub(crate) async fn add_server() -> crate::support::Served {
    let server = serve(
        &workspace().join("examples/models"),
        ControlMode::None,
        &[],
        None,
    )
    .await;
    crate::ensemble::wait_ready(&server, "add").await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_and_outputs_go_through_registered_regions() {
    let server = add_server().await;
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
    for extension in ["system_shared_memory", "cuda_shared_memory"] {
        assert!(
            meta["extensions"]
                .as_array()
                .unwrap()
                .contains(&json!(extension)),
            "{extension}"
        );
    }

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
    let input = |name: &str, parameters| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![1, 4],
        parameters,
        contents: None,
    };
    let request = |x_region: &str| proto::ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![
            input("x", grpc_shm(x_region, 0, 16)),
            input("y", HashMap::new()),
        ],
        // Only y is in the request.
        raw_input_contents: vec![f32_bytes(&Y).into()],
        outputs: vec![
            InferRequestedOutputTensor {
                name: "sum".into(),
                parameters: grpc_shm("tail", 4, 16),
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

/// gRPC parameters naming `size` bytes of `region` from `offset`.
fn grpc_shm(region: &str, offset: i64, size: i64) -> HashMap<String, InferParameter> {
    let int = |v| InferParameter {
        parameter_choice: Some(ParameterChoice::Int64Param(v)),
    };
    HashMap::from([
        (
            "shared_memory_region".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::StringParam(region.into())),
            },
        ),
        ("shared_memory_offset".to_string(), int(offset)),
        ("shared_memory_byte_size".to_string(), int(size)),
    ])
}

/// Large inputs in shared memory (copied on a blocking thread) land at their
/// place among the request's inputs; inputs in shared memory adding up to
/// more than `--max-request-bytes` are refused before anything is copied,
/// with 413 / RESOURCE_EXHAUSTED; and ModelStreamInfer reads and writes
/// shared memory as ModelInfer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_inputs_are_bounded_and_placed_in_order() {
    // The HTTP limit here is 1 MiB (the test router's); gRPC's is the
    // server's default, 64 MiB.
    let server = add_server().await;
    // 8,192 rows of `add`: 128 KiB an input, over the size that is copied
    // on a blocking thread.
    const ROWS: usize = 8192;
    let x: Vec<f32> = (0..ROWS * 4).map(|i| i as f32 * 0.5 - 7.0).collect();
    let y: Vec<f32> = (0..ROWS * 4).map(|i| 3.0 - i as f32 * 0.25).collect();
    let want_sum: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    let want_diff: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
    let bytes = (ROWS * 16) as u64;
    let data = Object::new("large", 4 * bytes);
    data.write(0, &f32_bytes(&y));
    data.write(bytes, &f32_bytes(&x));
    // Large enough for 68 MB inputs; never written, so it takes no memory.
    let huge = Object::new("huge", 70_000_000);
    for (name, key, size) in [
        ("large", &data.key, 4 * bytes),
        ("huge", &huge.key, 70_000_000),
    ] {
        let (code, answer) = server
            .http(
                "POST",
                &format!("/v2/systemsharedmemory/region/{name}/register"),
                Some(json!({"key": key, "byte_size": size})),
            )
            .await;
        assert_eq!(code, 200, "{answer}");
    }

    // HTTP: x in the request, y (second) in shared memory; outputs into the region.
    let body = json!({
        "inputs": [
            {"name": "x", "shape": [ROWS, 4], "datatype": "FP32", "data": x},
            {"name": "y", "shape": [ROWS, 4], "datatype": "FP32", "parameters": {
                "shared_memory_region": "large", "shared_memory_byte_size": bytes}},
        ],
        "outputs": [
            {"name": "diff", "parameters": {"shared_memory_region": "large",
                "shared_memory_offset": 2 * bytes, "shared_memory_byte_size": bytes}},
        ],
    });
    let (code, answer) = server
        .http("POST", "/v2/models/add/infer", Some(body))
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(f32s(&data.read(2 * bytes, bytes as usize)), want_diff);

    // HTTP: shared memory inputs over the 1 MiB limit, refused before the
    // model sees them (which would refuse the shape with a 400).
    let over = |name: &str, offset: u64| {
        json!({"name": name, "shape": [1, 150_000], "datatype": "FP32", "parameters": {
            "shared_memory_region": "huge", "shared_memory_offset": offset,
            "shared_memory_byte_size": 600_000}})
    };
    let body = json!({"inputs": [over("x", 0), over("y", 600_000)]});
    let (code, answer) = server
        .http("POST", "/v2/models/add/infer", Some(body))
        .await;
    assert_eq!(code, 413, "{answer}");
    let says = error_text(&answer);
    assert!(
        says.contains("add up to 1200000 bytes (input 'y' reaches it)")
            && says.contains("--max-request-bytes"),
        "{says}"
    );

    // gRPC: x (first) in shared memory, y in raw_input_contents.
    let mut c = server.client().await;
    let input = |name: &str, rows: i64, parameters| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![rows, 4],
        parameters,
        contents: None,
    };
    let request = proto::ModelInferRequest {
        model_name: "add".into(),
        id: "large".into(),
        inputs: vec![
            input(
                "x",
                ROWS as i64,
                grpc_shm("large", bytes as i64, bytes as i64),
            ),
            input("y", ROWS as i64, HashMap::new()),
        ],
        raw_input_contents: vec![f32_bytes(&y).into()],
        outputs: vec![
            InferRequestedOutputTensor {
                name: "sum".into(),
                parameters: HashMap::new(),
            },
            InferRequestedOutputTensor {
                name: "diff".into(),
                parameters: grpc_shm("large", 3 * bytes as i64, bytes as i64),
            },
        ],
        ..Default::default()
    };
    let answer = c.model_infer(request.clone()).await.unwrap().into_inner();
    assert_eq!(f32s(&answer.raw_output_contents[0]), want_sum);
    assert!(answer.raw_output_contents[1].is_empty());
    assert_eq!(f32s(&data.read(3 * bytes, bytes as usize)), want_diff);

    // gRPC: 68 MB in shared memory, over the 64 MiB message limit.
    let too_big = proto::ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![input("x", 4_250_000, grpc_shm("huge", 0, 68_000_000))],
        ..Default::default()
    };
    let e = c.model_infer(too_big.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message().contains("--max-request-bytes"),
        "{}",
        e.message()
    );

    // ModelStreamInfer: the refusal answers its own request; the next one,
    // through shared memory, is answered as by ModelInfer.
    data.write(3 * bytes, &vec![0; bytes as usize]);
    let mut responses = c
        .model_stream_infer(tokio_stream::iter([too_big, request]))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    assert!(
        first.error_message.contains("--max-request-bytes"),
        "{}",
        first.error_message
    );
    let second = responses.message().await.unwrap().unwrap();
    assert_eq!(second.error_message, "");
    let answer = second.infer_response.unwrap();
    assert_eq!(answer.id, "large");
    assert_eq!(f32s(&answer.raw_output_contents[0]), want_sum);
    assert_eq!(f32s(&data.read(3 * bytes, bytes as usize)), want_diff);
    server.shutdown().await;
}

/// With the response cache on, a request whose inputs are in shared memory
/// is keyed by the bytes read from the region (new bytes, new answer), and
/// a cached answer is still written into the shared memory the request
/// names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_are_keyed_by_and_written_to_shared_memory() {
    use crate::response_cache::{counts, repo, serve_with_cache};
    let repo = repo("shm-cache");
    let server = serve_with_cache(&repo, 1 << 20).await;
    let region = Object::new("cache", 256);
    let (code, answer) = server
        .http(
            "POST",
            "/v2/systemsharedmemory/region/r/register",
            Some(json!({"key": region.key, "byte_size": 256})),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let infer = |out_at: u64| {
        json!({
            "inputs": [shm_input("x", "r", 0, 16), shm_input("y", "r", 16, 16)],
            "outputs": [shm_output("sum", "r", out_at, 16)],
        })
    };
    let run = |body: Value| {
        let server = &server;
        async move {
            let (code, answer) = server
                .http("POST", "/v2/models/cached/infer", Some(body))
                .await;
            assert_eq!(code, 200, "{answer}");
        }
    };

    region.write(0, &f32_bytes(&X));
    region.write(16, &f32_bytes(&Y));
    run(infer(64)).await;
    assert_eq!(f32s(&region.read(64, 16)), sum());
    // Other bytes in the same region: a miss, and their own sum.
    region.write(16, &f32_bytes(&X));
    run(infer(96)).await;
    let doubled: Vec<f32> = X.iter().map(|v| v + v).collect();
    assert_eq!(f32s(&region.read(96, 16)), doubled);
    // The first bytes again, the answer wanted elsewhere: a hit, written there.
    region.write(16, &f32_bytes(&Y));
    run(infer(128)).await;
    assert_eq!(f32s(&region.read(128, 16)), sum());
    // (success, executions, hits, misses)
    assert_eq!(counts(&server, "cached").await, (3, 2, 1, 2));
    server.shutdown().await;
}
