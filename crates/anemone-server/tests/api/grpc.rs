//! The gRPC front end end to end: a real server on port 0, the generated
//! tonic client, the tract CPU backend.
//!
//! Models come from the committed `examples/models` and from temporary
//! repositories built from `fixtures/generated/` (made by `scripts/setup.sh`).

use anemone_core::{npy, Tensor};
use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::infer_parameter::ParameterChoice;
use anemone_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use anemone_server::proto::{
    self, InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
};
use anemone_server::state::AppState;
use anemone_server::{ControlMode, Server, ServerOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

type Client = GrpcInferenceServiceClient<Channel>;

// ---------------------------------------------------------------- harness

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(relative: &str) -> PathBuf {
    let path = workspace().join("fixtures/generated").join(relative);
    assert!(
        path.exists(),
        "missing fixture {}: run scripts/setup.sh to generate fixtures/generated/",
        path.display()
    );
    path
}

fn read_npy(relative: &str) -> Tensor {
    let path = fixture(relative);
    npy::read(std::fs::File::open(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A model repository in the temporary directory, removed when dropped.
struct TempRepo(PathBuf);

impl TempRepo {
    /// `models` are `(name, fixture file)`; each becomes `<name>/1/model.onnx`.
    fn new(tag: &str, models: &[(&str, &str)]) -> TempRepo {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let root =
            std::env::temp_dir().join(format!("anemone-grpc-{tag}-{}-{nanos}", std::process::id()));
        for (name, file) in models {
            let dir = root.join(name).join("1");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(fixture(file), dir.join("model.onnx")).unwrap();
        }
        TempRepo(root)
    }
}

impl Drop for TempRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct TestServer {
    addr: std::net::SocketAddr,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), String>>,
}

impl TestServer {
    async fn start(repository: PathBuf, control: ControlMode) -> TestServer {
        TestServer::start_with(ServerOptions {
            http_port: 0,
            grpc_port: 0,
            repository,
            control,
            ..Default::default()
        })
        .await
    }

    async fn start_with(options: ServerOptions) -> TestServer {
        let manager = anemone_runtime::Manager::builder()
            .backend(anemone_backends::TractCpu)
            .build()
            .unwrap();
        let server = Server::bind(options, manager).await.unwrap();
        let (addr, state) = (server.grpc_addr(), server.state());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            state,
            stop: Some(stop),
            done,
        }
    }

    async fn client(&self) -> Client {
        GrpcInferenceServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// A client, once `ServerReady` says so.
    async fn ready_client(&self) -> Client {
        let mut client = self.client().await;
        let start = Instant::now();
        while !client
            .server_ready(proto::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "server not ready after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

fn examples() -> PathBuf {
    workspace().join("examples/models")
}

/// Waits until no model of the index is still to be loaded (for
/// repositories with a broken model, which are never ready).
async fn wait_loaded(client: &mut Client) -> Vec<proto::repository_index_response::ModelIndex> {
    let start = Instant::now();
    loop {
        let index = client
            .repository_index(proto::RepositoryIndexRequest::default())
            .await
            .unwrap()
            .into_inner()
            .models;
        if index
            .iter()
            .all(|m| m.state == "READY" || m.state == "UNAVAILABLE")
        {
            return index;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "models still loading after 120 s: {index:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --------------------------------------------------------------- requests

fn tensor(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..Default::default()
    }
}

fn typed(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: InferTensorContents,
) -> InferInputTensor {
    InferInputTensor {
        contents: Some(contents),
        ..tensor(name, datatype, shape)
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `add` with raw inputs of shape `[rows, 4]`.
fn add_raw(x: &[f32], y: &[f32]) -> ModelInferRequest {
    let rows = (x.len() / 4) as i64;
    ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![
            tensor("x", "FP32", &[rows, 4]),
            tensor("y", "FP32", &[rows, 4]),
        ],
        raw_input_contents: vec![f32_bytes(x), f32_bytes(y)],
        ..Default::default()
    }
}

/// `add` with typed `fp32_contents`.
fn add_typed(x: &[f32], y: &[f32]) -> ModelInferRequest {
    let rows = (x.len() / 4) as i64;
    let fp32 = |v: &[f32]| InferTensorContents {
        fp32_contents: v.to_vec(),
        ..Default::default()
    };
    ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![
            typed("x", "FP32", &[rows, 4], fp32(x)),
            typed("y", "FP32", &[rows, 4], fp32(y)),
        ],
        ..Default::default()
    }
}

fn output<'a>(
    response: &'a ModelInferResponse,
    name: &str,
) -> (&'a proto::model_infer_response::InferOutputTensor, &'a [u8]) {
    let i = response
        .outputs
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output '{name}' in {response:?}"));
    assert_eq!(
        response.outputs.len(),
        response.raw_output_contents.len(),
        "one raw_output_contents entry per output"
    );
    (&response.outputs[i], &response.raw_output_contents[i])
}

fn param(choice: ParameterChoice) -> InferParameter {
    InferParameter {
        parameter_choice: Some(choice),
    }
}

const X: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
const Y: [f32; 8] = [0.5, 0.25, -1.0, 10.0, 0.0, 1.0, 2.0, 3.0];

fn zip(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    a.iter().zip(b).map(|(a, b)| f(*a, *b)).collect()
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_model_rpcs_answer() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;

    assert!(
        c.server_live(proto::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    let meta = c
        .server_metadata(proto::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "anemone");
    assert!(!meta.version.is_empty());
    assert!(
        meta.extensions.iter().any(|e| e == "model_repository"),
        "{:?}",
        meta.extensions
    );

    let ready = |name: &str, version: &str| proto::ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        c.model_ready(ready("add", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        c.model_ready(ready("add", "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert_eq!(
        c.model_ready(ready("nope", "")).await.unwrap_err().code(),
        Code::NotFound
    );

    let m = c
        .model_metadata(proto::ModelMetadataRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.name, "add");
    assert_eq!(m.versions, vec!["1"]);
    assert!(!m.platform.is_empty());
    let names = |t: &[proto::model_metadata_response::TensorMetadata]| {
        t.iter().map(|t| t.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&m.inputs), ["x", "y"]);
    assert_eq!(names(&m.outputs), ["sum", "diff"]);
    for t in m.inputs.iter().chain(&m.outputs) {
        assert_eq!(
            (t.datatype.as_str(), t.shape.as_slice()),
            ("FP32", &[-1, 4][..]),
            "{t:?}"
        );
    }

    let config = c
        .model_config(proto::ModelConfigRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let config = config.config.expect("ModelConfigResponse has a config");
    assert_eq!(config.name, "add");
    assert_eq!(
        config
            .input
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["x", "y"]
    );
    let err = c
        .model_config(proto::ModelConfigRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let index = c
        .repository_index(proto::RepositoryIndexRequest {
            repository_name: String::new(),
            ready: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(index.models.len(), 1);
    assert_eq!(
        (
            index.models[0].name.as_str(),
            index.models[0].version.as_str(),
            index.models[0].state.as_str()
        ),
        ("add", "1", "READY")
    );

    let stats = c
        .model_statistics(proto::ModelStatisticsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stats
            .model_stats
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["add"]
    );

    // What anemone does not do is said, not faked.
    let e = c
        .system_shared_memory_status(proto::SystemSharedMemoryStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("shared memory"), "{}", e.message());
    let e = c
        .cuda_shared_memory_register(proto::CudaSharedMemoryRegisterRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    // Trace settings answer (issue 13); without --otlp-endpoint the level is OFF.
    let trace = c
        .trace_setting(proto::TraceSettingRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trace.settings["trace_level"].value, ["OFF"]);
    // A server without a log control (this harness) cannot change its logging.
    assert_eq!(
        c.log_settings(proto::LogSettingsRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_reports_serving_once_ready() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let server = TestServer::start(examples(), ControlMode::None).await;
    server.ready_client().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let start = Instant::now();
    for service in ["", "inference.GRPCInferenceService"] {
        loop {
            let request = HealthCheckRequest {
                service: service.into(),
            };
            let status = health.check(request).await.map(|r| r.into_inner().status);
            if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
                break;
            }
            // The health reporter follows readiness every 200 ms.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "service '{service}' not SERVING: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_with_raw_and_typed_contents() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;
    let (sum, diff) = (zip(&X, &Y, |a, b| a + b), zip(&X, &Y, |a, b| a - b));

    for request in [add_raw(&X, &Y), add_typed(&X, &Y)] {
        let r = c.model_infer(request).await.unwrap().into_inner();
        assert_eq!(
            (
                r.model_name.as_str(),
                r.model_version.as_str(),
                r.id.as_str()
            ),
            ("add", "1", "")
        );
        assert_eq!(
            r.outputs
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>(),
            ["sum", "diff"]
        );
        for (name, want) in [("sum", &sum), ("diff", &diff)] {
            let (meta, raw) = output(&r, name);
            assert_eq!(
                (meta.datatype.as_str(), meta.shape.as_slice()),
                ("FP32", &[2, 4][..])
            );
            assert!(
                meta.contents.is_none(),
                "outputs travel in raw_output_contents"
            );
            assert_eq!(&f32s(raw), want, "{name}");
        }
    }

    // A subset of outputs, an id and parameters of every kind, echoed back.
    let mut request = add_raw(&X[..4], &Y[..4]);
    request.id = "req-42".into();
    request.outputs = vec![InferRequestedOutputTensor {
        name: "diff".into(),
        ..Default::default()
    }];
    request.parameters = HashMap::from([
        (
            "timeout".to_string(),
            param(ParameterChoice::Int64Param(30_000_000)),
        ),
        ("flag".to_string(), param(ParameterChoice::BoolParam(true))),
        (
            "label".to_string(),
            param(ParameterChoice::StringParam("hello".into())),
        ),
        (
            "ratio".to_string(),
            param(ParameterChoice::DoubleParam(0.5)),
        ),
        (
            "big".to_string(),
            param(ParameterChoice::Uint64Param(u64::MAX)),
        ),
    ]);
    let r = c.model_infer(request.clone()).await.unwrap().into_inner();
    assert_eq!(r.id, "req-42");
    assert_eq!(r.parameters, request.parameters);
    assert_eq!(r.outputs.len(), 1);
    let (meta, raw) = output(&r, "diff");
    assert_eq!(meta.shape, [1, 4]);
    assert_eq!(f32s(raw), diff[..4]);

    // Outputs come in the order asked for.
    let mut request = add_raw(&X[..4], &Y[..4]);
    request.outputs = ["diff", "sum"]
        .map(|n| InferRequestedOutputTensor {
            name: n.into(),
            ..Default::default()
        })
        .to_vec();
    let r = c.model_infer(request).await.unwrap().into_inner();
    assert_eq!(
        r.outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["diff", "sum"]
    );

    // A version that exists, and one that does not.
    let mut request = add_raw(&X[..4], &Y[..4]);
    request.model_version = "1".into();
    assert_eq!(
        c.model_infer(request.clone())
            .await
            .unwrap()
            .into_inner()
            .model_version,
        "1"
    );
    request.model_version = "7".into();
    assert_eq!(
        c.model_infer(request).await.unwrap_err().code(),
        Code::NotFound
    );

    // The `timeout` parameter reaches the scheduler: a wrong one is refused there.
    let mut request = add_raw(&X[..4], &Y[..4]);
    request.parameters.insert(
        "timeout".into(),
        param(ParameterChoice::StringParam("soon".into())),
    );
    let e = c.model_infer(request).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("timeout"), "{}", e.message());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int_bool_model_with_every_dtype_and_a_scalar() {
    let repo = TempRepo::new("int-bool", &[("int_bool", "int_bool/model.onnx")]);
    let server = TestServer::start(repo.0.clone(), ControlMode::None).await;
    let mut c = server.ready_client().await;

    let m = c
        .model_metadata(proto::ModelMetadataRequest {
            name: "int_bool".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let dtypes: Vec<(&str, &str)> = m
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str()))
        .collect();
    assert_eq!(
        dtypes,
        [
            ("ids", "INT32"),
            ("offsets", "INT64"),
            ("mask", "BOOL"),
            ("k", "INT64")
        ]
    );
    assert_eq!(m.inputs[3].shape, Vec::<i64>::new(), "k is 0-d");

    let outputs = ["sum_i64", "masked", "not_mask", "ids_times2"];
    for run in 0..2 {
        let inputs: Vec<Tensor> = (0..4)
            .map(|i| read_npy(&format!("int_bool/run{run}_in_{i}.npy")))
            .collect();
        let shape = |t: &Tensor| t.shape().iter().map(|&d| d as i64).collect::<Vec<i64>>();
        let names = ["ids", "offsets", "mask", "k"];
        let datatypes = ["INT32", "INT64", "BOOL", "INT64"];

        // Typed contents, each dtype in its own field.
        let contents = [
            InferTensorContents {
                int_contents: inputs[0].to_vec::<i32>().unwrap(),
                ..Default::default()
            },
            InferTensorContents {
                int64_contents: inputs[1].to_vec::<i64>().unwrap(),
                ..Default::default()
            },
            InferTensorContents {
                bool_contents: inputs[2].to_vec::<bool>().unwrap(),
                ..Default::default()
            },
            InferTensorContents {
                int64_contents: inputs[3].to_vec::<i64>().unwrap(),
                ..Default::default()
            },
        ];
        let typed_request = ModelInferRequest {
            model_name: "int_bool".into(),
            id: format!("typed-{run}"),
            inputs: (0..4)
                .map(|i| {
                    typed(
                        names[i],
                        datatypes[i],
                        &shape(&inputs[i]),
                        contents[i].clone(),
                    )
                })
                .collect(),
            ..Default::default()
        };
        // The same inputs as raw bytes.
        let raw_request = ModelInferRequest {
            model_name: "int_bool".into(),
            id: format!("raw-{run}"),
            inputs: (0..4)
                .map(|i| tensor(names[i], datatypes[i], &shape(&inputs[i])))
                .collect(),
            raw_input_contents: inputs
                .iter()
                .map(|t| t.as_bytes().unwrap().to_vec())
                .collect(),
            ..Default::default()
        };
        for request in [typed_request, raw_request] {
            let id = request.id.clone();
            let r = c.model_infer(request).await.unwrap().into_inner();
            assert_eq!(r.id, id);
            for (i, name) in outputs.iter().enumerate() {
                let want = read_npy(&format!("int_bool/run{run}_out_{i}.npy"));
                let (meta, raw) = output(&r, name);
                assert_eq!(meta.datatype, want.dtype().kserve_name(), "{id} {name}");
                assert_eq!(meta.shape, shape(&want), "{id} {name}");
                assert_eq!(
                    raw,
                    want.as_bytes().unwrap(),
                    "{id} {name}: values differ from the reference"
                );
            }
        }
    }

    // Raw BOOL bytes other than 0 and 1 mean true, as in C.
    let request = ModelInferRequest {
        model_name: "int_bool".into(),
        inputs: vec![
            tensor("ids", "INT32", &[4]),
            tensor("offsets", "INT64", &[4]),
            tensor("mask", "BOOL", &[4]),
            tensor("k", "INT64", &[]),
        ],
        raw_input_contents: vec![
            vec![0; 16],
            vec![0; 32],
            vec![2, 0, 255, 1],
            5i64.to_le_bytes().to_vec(),
        ],
        outputs: ["not_mask", "masked"]
            .map(|n| InferRequestedOutputTensor {
                name: n.into(),
                ..Default::default()
            })
            .to_vec(),
        ..Default::default()
    };
    let r = c.model_infer(request).await.unwrap().into_inner();
    assert_eq!(output(&r, "not_mask").1, [0, 1, 0, 0]);
    let masked: Vec<i64> = output(&r, "masked")
        .1
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(masked, [5, 0, 5, 5]);

    // A BOOL input given in int_contents is refused, naming both fields.
    let inputs: Vec<Tensor> = (0..4)
        .map(|i| read_npy(&format!("int_bool/run0_in_{i}.npy")))
        .collect();
    let n = inputs[0].len() as i64;
    let request = ModelInferRequest {
        model_name: "int_bool".into(),
        inputs: vec![
            typed(
                "ids",
                "INT32",
                &[n],
                InferTensorContents {
                    int_contents: inputs[0].to_vec().unwrap(),
                    ..Default::default()
                },
            ),
            typed(
                "offsets",
                "INT64",
                &[n],
                InferTensorContents {
                    int64_contents: inputs[1].to_vec().unwrap(),
                    ..Default::default()
                },
            ),
            typed(
                "mask",
                "BOOL",
                &[n],
                InferTensorContents {
                    int_contents: vec![1; n as usize],
                    ..Default::default()
                },
            ),
            typed(
                "k",
                "INT64",
                &[],
                InferTensorContents {
                    int64_contents: vec![1],
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    };
    let e = c.model_infer(request).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("input 'mask'")
            && e.message().contains("bool_contents")
            && e.message().contains("int_contents"),
        "{}",
        e.message()
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_answers_every_request_and_survives_errors() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;

    let mut requests = Vec::new();
    for i in 0..6 {
        let x: Vec<f32> = X[..4].iter().map(|v| v + i as f32).collect();
        let mut r = if i % 2 == 0 {
            add_raw(&x, &Y[..4])
        } else {
            add_typed(&x, &Y[..4])
        };
        r.id = format!("s{i}");
        if i == 2 {
            r.inputs[0].shape = vec![1, 5]; // 16 bytes cannot fill [1, 5]
        }
        if i == 4 {
            r.model_name = "nope".into();
        }
        requests.push(r);
    }
    let mut responses = c
        .model_stream_infer(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(message) = responses.message().await.unwrap() {
        let r = message
            .infer_response
            .expect("every answer carries infer_response, at least with the id");
        let i: usize = r.id.trim_start_matches('s').parse().unwrap();
        match i {
            2 => assert!(
                message.error_message.contains("input 'x'"),
                "{}",
                message.error_message
            ),
            4 => assert!(
                message.error_message.contains("nope"),
                "{}",
                message.error_message
            ),
            _ => {
                assert_eq!(message.error_message, "", "request {i}");
                let x: Vec<f32> = X[..4].iter().map(|v| v + i as f32).collect();
                assert_eq!(
                    f32s(output(&r, "sum").1),
                    zip(&x, &Y[..4], |a, b| a + b),
                    "request {i}"
                );
            }
        }
        seen.push(i);
    }
    assert_eq!(
        seen,
        [0, 1, 2, 3, 4, 5],
        "one answer per request, in request order"
    );

    // A stream with a bad request first still serves the next one.
    let mut bad = add_raw(&X[..4], &Y[..4]);
    bad.raw_input_contents.pop();
    bad.id = "bad".into();
    let mut good = add_raw(&X[..4], &Y[..4]);
    good.id = "good".into();
    let mut responses = c
        .model_stream_infer(tokio_stream::iter([bad, good]))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    assert_eq!(first.infer_response.unwrap().id, "bad");
    assert!(
        first.error_message.contains("raw_input_contents"),
        "{}",
        first.error_message
    );
    let second = responses.message().await.unwrap().unwrap();
    assert_eq!(
        (
            second.error_message.as_str(),
            second.infer_response.unwrap().id.as_str()
        ),
        ("", "good")
    );
    assert!(responses.message().await.unwrap().is_none());

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_successes_and_failures() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;
    for _ in 0..3 {
        c.model_infer(add_raw(&X[..4], &Y[..4])).await.unwrap();
    }
    let mut wrong = add_raw(&X, &Y);
    wrong.inputs[0].shape = vec![1, 8]; // right byte count, wrong shape: refused by the model
    assert_eq!(
        c.model_infer(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let stats = c
        .model_statistics(proto::ModelStatisticsRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.model_stats.len(), 1);
    let s = &stats.model_stats[0];
    assert_eq!((s.name.as_str(), s.version.as_str()), ("add", "1"));
    // The refused request reached no engine: 3 executions of batch size 1.
    assert_eq!((s.inference_count, s.execution_count), (3, 3));
    assert_eq!(s.batch_stats.len(), 1, "{:?}", s.batch_stats);
    let b = &s.batch_stats[0];
    assert_eq!(b.batch_size, 1);
    for d in [b.compute_input, b.compute_infer, b.compute_output] {
        assert_eq!(d.unwrap().count, 3, "{b:?}");
    }
    assert!(b.compute_infer.unwrap().ns > 0);
    assert!(s.last_inference > 0);
    let i = s.inference_stats.as_ref().unwrap();
    assert_eq!(i.success.unwrap().count, 3);
    assert_eq!(i.fail.unwrap().count, 1);
    assert!(i.compute_infer.unwrap().ns > 0);
    assert_eq!(
        i.queue.unwrap().count,
        3,
        "queue time per successful request"
    );

    let e = c
        .model_statistics(proto::ModelStatisticsRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_index_reports_a_broken_model_with_its_reason() {
    let repo = TempRepo::new(
        "broken",
        &[
            ("identity", "identity/model.onnx"),
            ("broken", "bad/not_onnx.onnx"),
        ],
    );
    let server = TestServer::start(repo.0.clone(), ControlMode::None).await;
    let mut c = server.client().await;
    let index = wait_loaded(&mut c).await;
    let row = |name: &str| {
        index
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} not in {index:?}"))
            .clone()
    };
    let broken = row("broken");
    assert_eq!(broken.state, "UNAVAILABLE");
    assert!(!broken.reason.is_empty(), "an unavailable model says why");
    assert_eq!(
        (
            row("identity").state.as_str(),
            row("identity").reason.as_str()
        ),
        ("READY", "on tract-cpu"),
        "a ready model's reason says which backend serves it"
    );

    let ready_only = c
        .repository_index(proto::RepositoryIndexRequest {
            ready: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ready_only
            .models
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["identity"]
    );

    // Strict readiness: one broken model keeps the server not ready.
    assert!(
        !c.server_ready(proto::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = c
        .model_ready(proto::ModelReadyRequest {
            name: "broken".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    let e = c
        .model_metadata(proto::ModelMetadataRequest {
            name: "broken".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains(&broken.reason),
        "{} should carry the reason {}",
        e.message(),
        broken.reason
    );

    // The good model still serves.
    let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.5).collect();
    let request = ModelInferRequest {
        model_name: "identity".into(),
        inputs: vec![tensor("x", "FP32", &[1, 16])],
        raw_input_contents: vec![f32_bytes(&x)],
        ..Default::default()
    };
    let r = c.model_infer(request).await.unwrap().into_inner();
    assert_eq!(f32s(&r.raw_output_contents[0]), x);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_mode_loads_and_unloads_models() {
    let repo = TempRepo::new("explicit", &[("identity", "identity/model.onnx")]);
    let server = TestServer::start(repo.0.clone(), ControlMode::Explicit).await;
    let mut c = server.ready_client().await;
    let name = |n: &str| proto::ModelReadyRequest {
        name: n.into(),
        version: String::new(),
    };
    let load = |model: &str, parameters: HashMap<String, proto::ModelRepositoryParameter>| {
        proto::RepositoryModelLoadRequest {
            model_name: model.into(),
            parameters,
            ..Default::default()
        }
    };
    let unload = |model: &str| proto::RepositoryModelUnloadRequest {
        model_name: model.into(),
        ..Default::default()
    };
    let string = |s: &str| proto::ModelRepositoryParameter {
        parameter_choice: Some(
            proto::model_repository_parameter::ParameterChoice::StringParam(s.into()),
        ),
    };

    assert!(
        !c.model_ready(name("identity"))
            .await
            .unwrap()
            .into_inner()
            .ready,
        "nothing is loaded at start in explicit mode"
    );
    c.repository_model_load(load("identity", HashMap::new()))
        .await
        .unwrap();
    assert!(
        c.model_ready(name("identity"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let index = c
        .repository_index(proto::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        index
            .models
            .iter()
            .map(|m| (m.name.as_str(), m.state.as_str()))
            .collect::<Vec<_>>(),
        [("identity", "READY")]
    );

    // A config override in JSON, as Triton's `config` parameter.
    let json = r#"{"parameters": {"threads": {"string_value": "1"}}}"#;
    c.repository_model_load(load(
        "identity",
        HashMap::from([("config".to_string(), string(json))]),
    ))
    .await
    .unwrap();
    let config = c
        .model_config(proto::ModelConfigRequest {
            name: "identity".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.config.unwrap().parameters["threads"].string_value,
        "1"
    );
    let e = c
        .repository_model_load(load(
            "identity",
            HashMap::from([("config".to_string(), string("{\"bogus\": 1}"))]),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("config"), "{}", e.message());
    let e = c
        .repository_model_load(load(
            "identity",
            HashMap::from([("file:1/model.onnx".to_string(), string("x"))]),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    c.repository_model_unload(unload("identity")).await.unwrap();
    assert!(
        !c.model_ready(name("identity"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let request = ModelInferRequest {
        model_name: "identity".into(),
        inputs: vec![tensor("x", "FP32", &[1, 16])],
        raw_input_contents: vec![vec![0; 64]],
        ..Default::default()
    };
    assert!(
        c.model_infer(request.clone()).await.is_err(),
        "an unloaded model does not answer"
    );
    let index = c
        .repository_index(proto::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(index.models[0].state, "UNLOADED");

    assert_eq!(
        c.repository_model_load(load("nope", HashMap::new()))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        c.repository_model_unload(unload("nope"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    c.repository_model_load(load("identity", HashMap::new()))
        .await
        .unwrap();
    c.model_infer(request).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_mode_refuses_load_and_unload() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;
    let e = c
        .repository_model_load(proto::RepositoryModelLoadRequest {
            model_name: "add".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("explicit"), "{}", e.message());
    let e = c
        .repository_model_unload(proto::RepositoryModelUnloadRequest {
            model_name: "add".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        c.model_ready(proto::ModelReadyRequest {
            name: "add".into(),
            version: String::new()
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_the_server_goes_on() {
    const LIMIT: usize = 1 << 20;
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: examples(),
        max_request_bytes: LIMIT,
        ..Default::default()
    };
    let server = TestServer::start_with(options).await;
    let mut c = server.ready_client().await;

    let good = || add_raw(&X[..4], &Y[..4]);
    let with = |f: &dyn Fn(&mut ModelInferRequest)| {
        let mut r = good();
        f(&mut r);
        r
    };
    let fp32 = |n: usize| InferTensorContents {
        fp32_contents: vec![1.0; n],
        ..Default::default()
    };
    let cases: Vec<(&str, ModelInferRequest, Code, &str)> = vec![
        ("unknown model", with(&|r| r.model_name = "nope".into()), Code::NotFound, "model 'nope'"),
        ("bad version", with(&|r| r.model_version = "v1".into()), Code::InvalidArgument, "version 'v1'"),
        ("unknown datatype", with(&|r| r.inputs[0].datatype = "FP8".into()), Code::InvalidArgument, "input 'x': unknown datatype 'FP8'"),
        ("wrong datatype for the model", with(&|r| r.inputs[0].datatype = "INT32".into()), Code::InvalidArgument, "input 'x'"),
        ("raw bytes vs shape", with(&|r| r.raw_input_contents[0].truncate(12)), Code::InvalidArgument, "input 'x' has 12 bytes"),
        ("typed values vs shape", add_typed(&X[..3], &Y[..4]), Code::InvalidArgument, "input 'x' has 3 values in contents.fp32_contents"),
        ("no data at all", with(&|r| r.raw_input_contents.clear()), Code::InvalidArgument, "input 'x' has 0 values"),
        ("negative dimension", with(&|r| r.inputs[1].shape = vec![-1, 4]), Code::InvalidArgument, "input 'y' has a negative dimension"),
        ("overflowing shape", with(&|r| r.inputs[0].shape = vec![i64::MAX, i64::MAX]), Code::InvalidArgument, "input 'x' shape"),
        (
            "input given twice",
            with(&|r| {
                r.inputs[1].name = "x".into();
            }),
            Code::InvalidArgument,
            "input 'x' is given more than once",
        ),
        ("unknown input", with(&|r| r.inputs[1].name = "z".into()), Code::InvalidArgument, "unknown input 'z'"),
        ("raw entries vs inputs", with(&|r| r.raw_input_contents.push(vec![0; 16])), Code::InvalidArgument, "3 raw_input_contents entries"),
        ("mixed raw and typed", with(&|r| r.inputs[1].contents = Some(fp32(4))), Code::InvalidArgument, "input 'y' has typed contents"),
        (
            "FP16 typed",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0] = typed("x", "FP16", &[1, 4], fp32(4));
            }),
            Code::InvalidArgument,
            "input 'x' is FP16, which has no typed contents field; send its data in raw_input_contents",
        ),
        (
            "typed field vs datatype",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0] = typed("x", "FP32", &[1, 4], InferTensorContents { fp64_contents: vec![1.0; 4], ..Default::default() });
            }),
            Code::InvalidArgument,
            "input 'x' is FP32, whose values go in contents.fp32_contents, but contents.fp64_contents is given",
        ),
        (
            "typed value out of range",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0] = typed("x", "INT8", &[1, 4], InferTensorContents { int_contents: vec![1, 2, 300, 4], ..Default::default() });
            }),
            Code::InvalidArgument,
            "input 'x' value 2 (300) is out of range for INT8",
        ),
        (
            "BYTES length prefix",
            with(&|r| {
                r.inputs[0].datatype = "BYTES".into();
                r.raw_input_contents[0] = vec![9, 0, 0, 0, 1];
            }),
            Code::InvalidArgument,
            "input 'x': a BYTES element claims 9 bytes",
        ),
        (
            "shared memory input",
            with(&|r| {
                r.inputs[0].parameters.insert("shared_memory_region".into(), param(ParameterChoice::StringParam("r".into())));
            }),
            Code::InvalidArgument,
            "shared memory",
        ),
        (
            "unknown output",
            with(&|r| r.outputs = vec![InferRequestedOutputTensor { name: "prod".into(), ..Default::default() }]),
            Code::InvalidArgument,
            "unknown output 'prod'",
        ),
        (
            "parameter without a value",
            with(&|r| {
                r.parameters.insert("timeout".into(), InferParameter { parameter_choice: None });
            }),
            Code::InvalidArgument,
            "parameter 'timeout' has no value",
        ),
        (
            "non-finite parameter",
            with(&|r| {
                r.parameters.insert("ratio".into(), param(ParameterChoice::DoubleParam(f64::NAN)));
            }),
            Code::InvalidArgument,
            "parameter 'ratio'",
        ),
        (
            "oversized message",
            with(&|r| {
                r.inputs[0].shape = vec![(LIMIT / 16 + 1) as i64, 4];
                r.raw_input_contents[0] = vec![0; (LIMIT / 16 + 1) * 16];
            }),
            Code::ResourceExhausted,
            "limit",
        ),
    ];
    for (what, request, code, message) in cases {
        let e = c.model_infer(request).await.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        assert!(
            e.message().contains(message),
            "{what}: '{}' should contain '{message}'",
            e.message()
        );
        // The server still answers, on the same connection.
        assert!(
            c.server_live(proto::ServerLiveRequest {})
                .await
                .unwrap()
                .into_inner()
                .live,
            "{what}"
        );
    }

    // Oversized on a stream: the stream ends with RESOURCE_EXHAUSTED too.
    let mut big = good();
    big.raw_input_contents[0] = vec![0; LIMIT + 1];
    let stream = c
        .model_stream_infer(tokio_stream::iter([good(), big]))
        .await;
    let status = match stream {
        Err(status) => status,
        Ok(response) => {
            let mut responses = response.into_inner();
            let first = responses
                .message()
                .await
                .expect("the first request is answered")
                .unwrap();
            assert_eq!(first.error_message, "");
            responses
                .message()
                .await
                .expect_err("an oversized message ends the stream")
        }
    };
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );

    let r = c.model_infer(good()).await.unwrap().into_inner();
    assert_eq!(
        f32s(output(&r, "sum").1),
        zip(&X[..4], &Y[..4], |a, b| a + b)
    );
    assert_eq!(
        server.state.manager.metrics().in_flight,
        0,
        "every permit was released"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_are_refused_and_streams_go_on() {
    // int_bool's outputs take 21 bytes per element and its inputs 13, so a
    // request under the limit can ask for a response over it.
    const LIMIT: usize = 1 << 20;
    let repo = TempRepo::new("big-response", &[("int_bool", "int_bool/model.onnx")]);
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: repo.0.clone(),
        max_request_bytes: LIMIT,
        ..Default::default()
    };
    let server = TestServer::start_with(options).await;
    let mut c = server.ready_client().await;
    let request = |n: usize, id: &str| ModelInferRequest {
        model_name: "int_bool".into(),
        id: id.into(),
        inputs: vec![
            tensor("ids", "INT32", &[n as i64]),
            tensor("offsets", "INT64", &[n as i64]),
            tensor("mask", "BOOL", &[n as i64]),
            tensor("k", "INT64", &[]),
        ],
        raw_input_contents: vec![vec![0; 4 * n], vec![0; 8 * n], vec![1; n], vec![0; 8]],
        ..Default::default()
    };
    let n = 60_000;
    let e = c.model_infer(request(n, "big")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message().contains("response") && e.message().contains(&LIMIT.to_string()),
        "{}",
        e.message()
    );

    let mut responses = c
        .model_stream_infer(tokio_stream::iter([request(n, "big"), request(4, "small")]))
        .await
        .unwrap()
        .into_inner();
    let first = responses.message().await.unwrap().unwrap();
    assert_eq!(first.infer_response.unwrap().id, "big");
    assert!(
        first.error_message.contains("response"),
        "{}",
        first.error_message
    );
    let second = responses.message().await.unwrap().unwrap();
    assert_eq!(
        (
            second.error_message.as_str(),
            second.infer_response.unwrap().id.as_str()
        ),
        ("", "small")
    );
    server.stop().await;
}

// The client's deadline (`grpc-timeout`) against the `timeout` parameter is
// tested over real gRPC with a slow test backend in `faults.rs`.
