//! What real engines rarely do on demand, through the real server over both
//! protocols: a model that is slow (timeouts, overload) or panics. The test
//! registers its own backend, `tricky`, on the server's manager.

use crate::support::{timed_out, TempDir};
use anemone_core::{
    Backend, DataType, Dim, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource,
    Probe, Support, Tensor, TensorSpec,
};
use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::infer_parameter::ParameterChoice;
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::{self, InferParameter, ModelInferRequest};
use anemone_server::state::AppState;
use anemone_server::{ControlMode, Server, ServerOptions};
use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;
use tower::ServiceExt;

/// A backend whose model returns its input `x` (`[n, 16]` FP32, the shape of
/// the `identity` fixture it is given, with a batch dimension) as `y`. When
/// every value is the same `x`, it panics if `x` is negative or there is
/// none (an empty input), sleeps
/// `x - 1000` ms if it is above 1000, and reports its device lost if it is
/// exactly 666.
pub(crate) struct Tricky;

struct TrickyModel(ModelMetadata);

impl Backend for Tricky {
    fn name(&self) -> &'static str {
        "tricky"
    }
    fn probe(&self) -> Probe {
        Probe::Available {
            detail: "test double".into(),
        }
    }
    fn supports(&self, _: &ModelSource) -> Support {
        Support::Yes
    }
    fn load(&self, _: &ModelSource, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        Ok(Box::new(TrickyModel(ModelMetadata::new(
            ModelFormat::Onnx,
            vec![TensorSpec::new(
                "x",
                DataType::F32,
                vec![Dim::Any, Dim::Fixed(16)],
            )],
            vec![TensorSpec::new(
                "y",
                DataType::F32,
                vec![Dim::Any, Dim::Fixed(16)],
            )],
        ))))
    }
}

impl LoadedModel for TrickyModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn backend(&self) -> &'static str {
        "tricky"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        let values = inputs[0].to_vec::<f32>().unwrap();
        if values.is_empty() {
            // tract's pooling over a height of 0.
            panic!("chunk size must be non-zero");
        }
        let v = values[0];
        // Tests send one value in every cell; a warm-up's random inputs run plainly.
        if values.iter().any(|x| *x != v) {
            return Ok(inputs.to_vec());
        }
        if v < 0.0 {
            panic!("boom: negative input");
        }
        if v == 666.0 {
            return Err(anemone_core::Error::DeviceLost {
                backend: "tricky".into(),
                message: "simulated: the GPU fell off the bus".into(),
            });
        }
        if v > 1000.0 {
            std::thread::sleep(Duration::from_millis((v - 1000.0) as u64));
        }
        Ok(inputs.to_vec())
    }
}

/// A server whose repository holds one model, `tricky`, on the test backend,
/// with at most `concurrency` requests at once.
pub(crate) struct Faulty {
    pub(crate) state: Arc<AppState>,
    router: axum::Router,
    pub(crate) grpc: std::net::SocketAddr,
    /// The real HTTP listener (tests that need sockets, not the router).
    pub(crate) http: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    /// Removed when dropped: after the server stops when the test calls
    /// [`Faulty::stop`], at once when a failed test unwinds.
    repo: TempDir,
}

impl Faulty {
    async fn start(tag: &str, concurrency: Option<usize>) -> Faulty {
        Faulty::start_with(tag, concurrency, &[("tricky", None)], false).await
    }

    /// A server whose repository holds `models` (name, `config.pbtxt`), each
    /// a copy of the `identity` fixture; on the test backend only, or with
    /// tract CPU after it as a standby candidate when `standby`.
    pub(crate) async fn start_with(
        tag: &str,
        concurrency: Option<usize>,
        models: &[(&str, Option<&str>)],
        standby: bool,
    ) -> Faulty {
        Faulty::start_with_ensembles(tag, concurrency, models, &[], standby).await
    }

    /// As [`Faulty::start_with`], with `ensembles` (name, `config.pbtxt`) over
    /// those models in the repository too; waits until they are ready.
    pub(crate) async fn start_with_ensembles(
        tag: &str,
        concurrency: Option<usize>,
        models: &[(&str, Option<&str>)],
        ensembles: &[(&str, &str)],
        standby: bool,
    ) -> Faulty {
        let repo = TempDir::new(&format!("faults-{tag}"));
        // The repository reads the file's signature; the test backend runs
        // it. A config with a batch dimension needs a file that has one.
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated");
        for (name, config) in models {
            let dir = repo.join(name).join("1");
            std::fs::create_dir_all(&dir).unwrap();
            let batched = config.is_some_and(|c| c.contains("max_batch_size"));
            let file = fixtures
                .join(if batched {
                    "batched_identity"
                } else {
                    "identity"
                })
                .join("model.onnx");
            std::fs::copy(&file, dir.join("model.onnx"))
                .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh", file.display()));
            if let Some(config) = config {
                std::fs::write(repo.join(name).join("config.pbtxt"), config).unwrap();
            }
        }
        for (name, config) in ensembles {
            std::fs::create_dir_all(repo.join(name).join("1")).unwrap();
            std::fs::write(repo.join(name).join("config.pbtxt"), config).unwrap();
        }
        let mut builder = anemone_runtime::Manager::builder().backend(Tricky);
        if standby {
            builder = builder.backend(anemone_backends::TractCpu);
        }
        let manager = builder
            .max_concurrency(concurrency)
            .workers(4)
            .build()
            .unwrap();
        let options = ServerOptions {
            http_port: 0,
            grpc_port: 0,
            repository: repo.to_path_buf(),
            control: ControlMode::None,
            exit_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let server = Server::bind(options, manager).await.unwrap();
        let (state, grpc, http) = (
            server.state(),
            server.grpc_addr().expect("gRPC is on"),
            server.http_addr().expect("HTTP is on"),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let router = anemone_server::http::router(Arc::clone(&state), 1 << 20);
        let start = Instant::now();
        // Resident in the manager, and READY in the repository: the
        // repository marks its entry a moment after the load returns, and a
        // test that reads the index (or falls back) before that saw LOADING.
        for (name, _) in models {
            while state.manager.model(name, None).is_err()
                || state.repository.entry(name).map(|e| e.state.as_str()) != Some("READY")
            {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "{name} never loaded: {:?}",
                    state.repository.entry(name).map(|e| e.reason)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for (name, _) in ensembles {
            while state.repository.entry(name).map(|e| e.state.as_str()) != Some("READY") {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "{name} never became ready: {:?}",
                    state.repository.entry(name).map(|e| e.reason)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Faulty {
            state,
            router,
            grpc,
            http,
            stop,
            task,
            repo,
        }
    }

    /// `POST /v2/models/tricky/infer` with `x` and these request parameters:
    /// the status and the JSON body.
    async fn http(&self, x: f32, parameters: Value) -> (u16, Value) {
        self.http_to("tricky", x, parameters).await
    }

    /// `POST /v2/models/{model}/infer`, as [`Faulty::http`].
    pub(crate) async fn http_to(&self, model: &str, x: f32, parameters: Value) -> (u16, Value) {
        let body = json!({
            "inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": vec![x; 16]}],
            "parameters": parameters,
        });
        let request = Request::post(format!("/v2/models/{model}/infer"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    pub(crate) async fn client(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// The model's failure count, as gRPC ModelStatistics reports it.
    async fn failures(&self) -> u64 {
        let stats = self
            .client()
            .await
            .model_statistics(proto::ModelStatisticsRequest {
                name: "tricky".into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        stats.model_stats[0]
            .inference_stats
            .as_ref()
            .unwrap()
            .fail
            .as_ref()
            .unwrap()
            .count
    }

    /// Waits until `n` requests are running on the engine.
    async fn wait_in_flight(&self, n: usize) {
        let start = Instant::now();
        while self.state.manager.metrics().in_flight < n {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never {n} in flight"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends the shutdown signal and returns at once: the task that ends when
    /// the server has stopped (and its repository is removed).
    pub(crate) fn begin_stop(self) -> tokio::task::JoinHandle<Result<(), String>> {
        let _ = self.stop.send(());
        let (task, repo) = (self.task, self.repo);
        tokio::spawn(async move {
            let result = task.await.unwrap();
            drop(repo);
            result
        })
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A gRPC request for `tricky` with `x`, a `timeout` parameter in
/// microseconds and a client deadline (`grpc-timeout`, e.g. "400m").
pub(crate) fn grpc_request(
    x: f32,
    timeout_us: Option<i64>,
    deadline: Option<&str>,
) -> tonic::Request<ModelInferRequest> {
    grpc_request_to("tricky", x, timeout_us, deadline)
}

/// [`grpc_request`] for `model`.
pub(crate) fn grpc_request_to(
    model: &str,
    x: f32,
    timeout_us: Option<i64>,
    deadline: Option<&str>,
) -> tonic::Request<ModelInferRequest> {
    let mut r = ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 16],
            ..Default::default()
        }],
        raw_input_contents: vec![x.to_le_bytes().repeat(16)]
            .into_iter()
            .map(Into::into)
            .collect(),
        ..Default::default()
    };
    if let Some(us) = timeout_us {
        r.parameters.insert(
            "timeout".into(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(us)),
            },
        );
    }
    let mut request = tonic::Request::new(r);
    if let Some(d) = deadline {
        request
            .metadata_mut()
            .insert("grpc-timeout", d.parse().unwrap());
    }
    request
}

/// Over real gRPC, the earlier of the client's deadline (`grpc-timeout`) and
/// the `timeout` parameter ends the request with anemone's own
/// DEADLINE_EXCEEDED and message (not tonic's bare cancellation), and each
/// timed-out request is counted as a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_deadline_is_the_earlier_of_header_and_parameter() {
    let s = Faulty::start("deadline", None).await;
    let mut c = s.client().await;
    assert_eq!(s.failures().await, 0);
    // The parameter is earlier: 200 ms against a 30 s deadline.
    let e = c
        .model_infer(grpc_request(1800.0, Some(200_000), Some("30S")))
        .await
        .expect_err("a 200 ms timeout on an 800 ms run");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(timed_out(e.message(), "200ms"), "{e:?}");
    assert_eq!(s.failures().await, 1);
    // The header is earlier: 400 ms (less 40 ms to answer) against 30 s.
    let started = Instant::now();
    let e = c
        .model_infer(grpc_request(1800.0, Some(30_000_000), Some("400m")))
        .await
        .expect_err("a 400 ms deadline on an 800 ms run");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(timed_out(e.message(), "360ms"), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(790),
        "answered at the deadline"
    );
    assert_eq!(s.failures().await, 2);
    // The header alone; then a deadline long enough: it succeeds.
    let e = c
        .model_infer(grpc_request(1800.0, None, Some("300m")))
        .await
        .expect_err("a 300 ms deadline on an 800 ms run");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(timed_out(e.message(), "270ms"), "{e:?}");
    assert_eq!(s.failures().await, 3);
    c.model_infer(grpc_request(1010.0, Some(30_000_000), Some("20S")))
        .await
        .unwrap();
    assert_eq!(s.failures().await, 3);
    s.stop().await;
}

/// HTTP: a request over its `timeout` parameter is 504 with anemone's message, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_timeout_is_504_and_counted() {
    let s = Faulty::start("http-timeout", None).await;
    let (status, body) = s.http(1600.0, json!({"timeout": 100_000})).await;
    assert_eq!(status, 504, "{body}");
    assert!(
        timed_out(body["error"].as_str().unwrap_or_default(), "100ms"),
        "{body}"
    );
    assert_eq!(s.failures().await, 1);
    let (status, body) = s.http(1001.0, json!({"timeout": 20_000_000})).await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}

/// Past the concurrency limit a request is refused at once: HTTP 429, gRPC
/// RESOURCE_EXHAUSTED, both saying which limit and what to do; the running
/// request finishes, and the next one after it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_429_and_resource_exhausted() {
    let s = Arc::new(Faulty::start("overload", Some(1)).await);
    let busy = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.http(1700.0, json!({})).await })
    };
    s.wait_in_flight(1).await;
    let want = "overloaded: global concurrency limit reached (1 of 1 in use); retry later or raise the limit";
    let started = Instant::now();
    let (status, body) = s.http(1.0, json!({})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body, json!({"error": want}));
    let e = s
        .client()
        .await
        .model_infer(grpc_request(1.0, None, None))
        .await
        .expect_err("over the limit");
    assert_eq!((e.code(), e.message()), (Code::ResourceExhausted, want));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once, not queued"
    );
    let (status, body) = busy.await.unwrap();
    assert_eq!(
        (status, &body["outputs"][0]["data"]),
        (200, &json!(vec![1700.0; 16]))
    );
    let (status, body) = s.http(2.0, json!({})).await;
    assert_eq!(
        (status, &body["outputs"][0]["data"]),
        (200, &json!(vec![2.0; 16]))
    );
    let Ok(s) = Arc::try_unwrap(s) else {
        panic!("the server is still shared")
    };
    s.stop().await;
}

/// A backend that panics on an empty input (a dimension of 0, which the
/// model's dims allow) fails on what the request sent: HTTP 400 and gRPC
/// INVALID_ARGUMENT, naming the panic; the model stays on its backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_on_an_empty_input_is_the_requests_fault() {
    // No batching (the `batched_identity` file, dims [-1, 16]): a first
    // dimension of 0 passes validation, as an empty sequence would.
    let s = Faulty::start_with(
        "panic-empty",
        None,
        &[("tricky", Some("max_batch_size: 0"))],
        false,
    )
    .await;
    let body = json!({"inputs": [{"name": "x", "shape": [0, 16], "datatype": "FP32", "data": []}]});
    let request = Request::post("/v2/models/tricky/infer")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = s.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let message = serde_json::from_slice::<Value>(&bytes).unwrap()["error"].to_string();
    assert!(
        message.contains("chunk size must be non-zero") && message.contains("empty input"),
        "{message}"
    );
    let mut empty = grpc_request(0.0, None, None).into_inner();
    empty.inputs[0].shape = vec![0, 16];
    empty.raw_input_contents = vec![Vec::new().into()];
    let e = s
        .client()
        .await
        .model_infer(empty)
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let (status, body) = s.http(3.0, json!({})).await;
    assert_eq!(
        (status, &body["outputs"][0]["data"]),
        (200, &json!(vec![3.0; 16]))
    );
    s.stop().await;
}

/// A backend that panics fails that request only: HTTP 500 and gRPC INTERNAL
/// naming the panic; the same model serves the next request, and the
/// failures are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_backend_is_500_and_internal_and_the_server_goes_on() {
    let s = Faulty::start("panic", None).await;
    let mut c = s.client().await;
    for round in 0..2 {
        let (status, body) = s.http(-1.0, json!({})).await;
        assert_eq!(status, 500, "{body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("tricky") && message.contains("panicked: boom: negative input"),
            "{message}"
        );
        let e = c
            .model_infer(grpc_request(-1.0, None, None))
            .await
            .expect_err("a panic");
        assert_eq!(e.code(), Code::Internal, "{e:?}");
        assert_eq!(e.message(), message);
        let (status, body) = s.http(3.0, json!({})).await;
        assert_eq!(
            (status, &body["outputs"][0]["data"]),
            (200, &json!(vec![3.0; 16])),
            "round {round}"
        );
        let ok = c.model_infer(grpc_request(4.0, None, None)).await.unwrap();
        assert_eq!(
            ok.into_inner().raw_output_contents[0],
            4f32.to_le_bytes().repeat(16)
        );
    }
    assert_eq!(s.failures().await, 4);
    assert_eq!(
        s.state.manager.metrics().in_flight,
        0,
        "permits released after a panic"
    );
    s.stop().await;
}
