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
use anemone_server::{ControlMode, ServerOptions};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{f32_bytes, f32s, fixture, workspace, TempDir};

type Client = GrpcInferenceServiceClient<Channel>;

// ---------------------------------------------------------------- harness

/// Sends `first` then `second` on one ModelStreamInfer stream, checks that
/// `first` is answered (under its id) with an error containing `error` and
/// that `second` still succeeds, and returns the stream for more checks.
async fn stream_error_then_ok(
    c: &mut Client,
    first: ModelInferRequest,
    second: ModelInferRequest,
    error: &str,
) -> tonic::Streaming<proto::ModelStreamInferResponse> {
    let (first_id, second_id) = (first.id.clone(), second.id.clone());
    let mut responses = c
        .model_stream_infer(tokio_stream::iter([first, second]))
        .await
        .unwrap()
        .into_inner();
    let answer = responses.message().await.unwrap().unwrap();
    assert_eq!(answer.infer_response.unwrap().id, first_id);
    assert!(
        answer.error_message.contains(error),
        "{}",
        answer.error_message
    );
    let answer = responses.message().await.unwrap().unwrap();
    assert_eq!(
        (
            answer.error_message.as_str(),
            answer.infer_response.unwrap().id.as_str()
        ),
        ("", second_id.as_str())
    );
    responses
}

fn read_npy(relative: &str) -> Tensor {
    let path = fixture(relative);
    npy::read(std::fs::File::open(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A model repository in the temporary directory, removed when dropped.
struct TempRepo(TempDir);

impl TempRepo {
    /// `models` are `(name, fixture file)`; each becomes `<name>/1/model.onnx`.
    fn new(tag: &str, models: &[(&str, &str)]) -> TempRepo {
        let root = TempDir::new(&format!("grpc-{tag}"));
        for (name, file) in models {
            let dir = root.join(name).join("1");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(fixture(file), dir.join("model.onnx")).unwrap();
        }
        TempRepo(root)
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
        let r = crate::support::run_server(options, manager).await;
        TestServer {
            addr: r.grpc,
            state: r.state,
            stop: Some(r.stop),
            done: r.task,
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

/// `add` with raw inputs of shape `[rows, 4]`.
fn add_raw(x: &[f32], y: &[f32]) -> ModelInferRequest {
    let rows = (x.len() / 4) as i64;
    ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![
            tensor("x", "FP32", &[rows, 4]),
            tensor("y", "FP32", &[rows, 4]),
        ],
        raw_input_contents: vec![f32_bytes(x), f32_bytes(y)]
            .into_iter()
            .map(Into::into)
            .collect(),
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

mod bad_requests;
mod infer;
mod metadata;
mod repository;
mod statistics;
mod stream;
mod transport;

// The client's deadline (`grpc-timeout`) against the `timeout` parameter is
// tested over real gRPC with a slow test backend in `faults.rs`.
