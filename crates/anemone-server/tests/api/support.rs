//! A small harness for the repository and configuration tests: a temporary
//! repository with a folder beside it ("outside", which nothing may reach),
//! and a server on it answering over the router (HTTP) and real gRPC.

use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::{self, model_repository_parameter::ParameterChoice};
use anemone_server::{ControlMode, Server, ServerOptions};
use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;
use tower::ServiceExt;

pub type Client = GrpcInferenceServiceClient<Channel>;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `fixtures/generated/<relative>`; panics with what to run when it is missing.
pub fn fixture(relative: &str) -> PathBuf {
    let path = workspace().join("fixtures/generated").join(relative);
    assert!(
        path.exists(),
        "missing fixture {}: run scripts/setup.sh to generate fixtures/generated/",
        path.display()
    );
    path
}

/// `values` as little-endian bytes (a raw or binary tensor payload).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian `bytes` back as f32 values.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// A JSON tensor's `data` (an answer's output) as f32 values; panics, naming
/// the tensor, when it has none.
pub fn json_f32s(tensor: &Value) -> Vec<f32> {
    tensor["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {tensor}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// The committed example `add` (two FP32 inputs `x`, `y` of shape [-1]).
pub fn add_model() -> Vec<u8> {
    std::fs::read(workspace().join("examples/models/add/1/model.onnx")).unwrap()
}

/// The shared test folder guard (the backends' file, also included by the
/// server's unit tests and the CLI's test binaries).
#[path = "../../../anemone-backends/src/test_dir.rs"]
mod test_dir;
pub use test_dir::TempDir;

/// `<tmp>/<tag>/repo` and `<tmp>/<tag>/outside`, removed on drop.
pub struct Repo {
    base: TempDir,
}

impl Repo {
    pub fn new(tag: &str) -> Repo {
        let base = TempDir::new(tag);
        std::fs::create_dir_all(base.join("repo")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        Repo { base }
    }

    pub fn root(&self) -> PathBuf {
        self.base.join("repo")
    }

    pub fn outside(&self) -> PathBuf {
        self.base.join("outside")
    }

    /// Writes `<root>/<rel>` (directories made as needed).
    pub fn write(&self, rel: &str, bytes: &[u8]) -> &Repo {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }

    /// A symbolic link `<root>/<rel>` to `target`.
    #[cfg(unix)]
    pub fn link(&self, rel: &str, target: &Path) -> &Repo {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
        self
    }
}

/// A bound server running on a task until `stop` is sent (or dropped).
pub struct Running {
    pub http: std::net::SocketAddr,
    pub grpc: std::net::SocketAddr,
    pub state: std::sync::Arc<anemone_server::state::AppState>,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Waits (60 s at most) until start-up loading is over, whatever became
    /// of each model.
    pub async fn started(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !self.state.repository.startup_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "start-up not over in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (60 s at most) until the server is ready.
    pub async fn ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !self.state.ready() {
            assert!(std::time::Instant::now() < deadline, "not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Options of a server on free HTTP and gRPC ports over the repository at
/// `root`, everything else as the defaults say.
pub fn on_free_ports(root: std::path::PathBuf) -> ServerOptions {
    ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: root,
        ..Default::default()
    }
}

/// Binds a server with `options` (ports as given) and `manager`, and runs it
/// on a task: the start every harness of this binary shares.
pub async fn run_server(options: ServerOptions, manager: anemone_runtime::Manager) -> Running {
    let server = Server::bind(options, manager).await.unwrap();
    let (http, grpc, state) = (
        server.http_addr().expect("HTTP is on"),
        server.grpc_addr().expect("gRPC is on"),
        server.state(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        http,
        grpc,
        state,
        stop,
        task,
    }
}

/// A running server.
pub struct Served {
    pub state: std::sync::Arc<anemone_server::state::AppState>,
    pub router: axum::Router,
    pub grpc: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// Starts a server on `root` (tract CPU; `budget`: the memory budget).
pub async fn serve(
    root: &Path,
    control: ControlMode,
    load: &[&str],
    budget: Option<u64>,
) -> Served {
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .memory_budget(budget)
        .build()
        .unwrap();
    serve_on(root, control, load, manager).await
}

/// Starts a server on `root` with a manager of the test's own.
pub async fn serve_on(
    root: &Path,
    control: ControlMode,
    load: &[&str],
    manager: anemone_runtime::Manager,
) -> Served {
    serve_with(root, control, load, manager, 1 << 20).await
}

/// [`serve_on`], with the router's HTTP body limit in bytes.
pub async fn serve_with(
    root: &Path,
    control: ControlMode,
    load: &[&str],
    manager: anemone_runtime::Manager,
    body_limit: usize,
) -> Served {
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: root.to_path_buf(),
        control,
        load_models: load.iter().map(|s| s.to_string()).collect(),
        exit_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let r = run_server(options, manager).await;
    Served {
        router: anemone_server::http::router(std::sync::Arc::clone(&r.state), body_limit),
        state: r.state,
        grpc: r.grpc,
        stop: r.stop,
        task: r.task,
    }
}

impl Served {
    /// An HTTP request through the router: status and JSON body (`Null` when empty).
    pub async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, json)
    }

    /// An HTTP load request with a config (JSON text) override, as Triton's.
    pub async fn http_load(&self, model: &str, config: Option<&Value>) -> (u16, Value) {
        let body = config.map(|c| serde_json::json!({"parameters": {"config": c.to_string()}}));
        self.http("POST", &format!("/v2/repository/models/{model}/load"), body)
            .await
    }

    pub async fn client(&self) -> Client {
        GrpcInferenceServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// A gRPC load request with a config override: the error status, if any.
    pub async fn grpc_load(
        &self,
        model: &str,
        config: Option<&Value>,
    ) -> Result<(), tonic::Status> {
        let parameters = config
            .map(|c| {
                HashMap::from([(
                    "config".to_string(),
                    proto::ModelRepositoryParameter {
                        parameter_choice: Some(ParameterChoice::StringParam(c.to_string())),
                    },
                )])
            })
            .unwrap_or_default();
        self.client()
            .await
            .repository_model_load(proto::RepositoryModelLoadRequest {
                model_name: model.into(),
                parameters,
                ..Default::default()
            })
            .await
            .map(|_| ())
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

/// The `error` text of an HTTP error body.
pub fn error_text(body: &Value) -> String {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
        .to_string()
}

/// Whether `message` is the timeout error for a deadline of `after`
/// ("300ms"), with its advice on what to change.
pub fn timed_out(message: &str, after: &str) -> bool {
    message.starts_with(&format!(
        "Request timeout expired: timed out after {after}: "
    )) && message.contains("the `timeout` parameter")
}
