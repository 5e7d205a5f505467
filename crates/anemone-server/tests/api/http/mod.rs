//! The HTTP API end to end: an in-process server on real listeners, asked
//! mostly through the router (`tower::ServiceExt::oneshot`) and once over
//! real TCP.
//!
//! Repositories are `examples/models` and temporary ones built from the
//! fixtures under `fixtures/generated/`, which `scripts/setup.sh` makes.

use anemone_core::{DataType, Tensor};
use anemone_server::state::AppState;
use anemone_server::{ControlMode, Server, ServerOptions};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

use crate::support::{f32_bytes, f32s, fixture, workspace, TempDir};

/// The body limit of every test server.
const LIMIT: usize = 1 << 20;

fn npy(rel: &str) -> Tensor {
    anemone_core::npy::read(std::fs::File::open(fixture(rel)).unwrap()).unwrap()
}

/// A model repository in the temporary directory, removed on drop.
struct TempRepo(TempDir);

impl TempRepo {
    fn new(tag: &str) -> TempRepo {
        TempRepo(TempDir::new(&format!("http-{tag}")))
    }

    fn file(self, name: &str, bytes: &[u8]) -> TempRepo {
        let dir = self.0.join(name).join("1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.onnx"), bytes).unwrap();
        self
    }

    /// A model from a generated fixture case.
    fn fixture(self, name: &str, case: &str) -> TempRepo {
        let bytes = std::fs::read(fixture(&format!("{case}/model.onnx"))).unwrap();
        self.file(name, &bytes)
    }

    /// The committed example `add`.
    fn add(self) -> TempRepo {
        let bytes = std::fs::read(workspace().join("examples/models/add/1/model.onnx")).unwrap();
        self.file("add", &bytes)
    }
}

/// A running server and a router on its state.
struct TestServer {
    state: Arc<AppState>,
    router: axum::Router,
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// An answer: status, headers, body.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `error` of an error body (which must be exactly `{"error": "..."}`).
    fn error(&self) -> String {
        let v = self.json();
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("error body is not an object: {v}"));
        assert_eq!(obj.len(), 1, "error body has other fields: {v}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        obj["error"].as_str().unwrap().to_string()
    }
}

async fn start(repo: &Path, control: ControlMode, load: &[&str]) -> TestServer {
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    start_with(repo, control, load, manager).await
}

async fn start_with(
    repo: &Path,
    control: ControlMode,
    load: &[&str],
    manager: anemone_runtime::Manager,
) -> TestServer {
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: repo.to_path_buf(),
        control,
        load_models: load.iter().map(|s| s.to_string()).collect(),
        max_request_bytes: LIMIT,
        exit_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let r = crate::support::run_server(options, manager).await;
    TestServer {
        router: anemone_server::http::router(Arc::clone(&r.state), LIMIT),
        state: r.state,
        addr: r.http,
        stop: r.stop,
        task: r.task,
    }
}

impl TestServer {
    async fn call(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
        let mut request = Request::post(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.call(request.body(body.into()).unwrap()).await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// A request in Triton's binary tensor data extension: `header` as JSON,
    /// then each of `payloads` in order, with `inference-header-content-length`.
    async fn post_binary(&self, path: &str, header: &Value, payloads: &[&[u8]]) -> Reply {
        let header = header.to_string();
        let mut body = header.clone().into_bytes();
        for payload in payloads {
            body.extend_from_slice(payload);
        }
        let length = header.len().to_string();
        self.post(path, &[("inference-header-content-length", &length)], body)
            .await
    }

    /// Polls until `path` answers `status`, for at most a minute.
    async fn wait_for_status(&self, path: &str, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(path).await;
            if r.status == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} still answers {} ({})",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for server readiness and each model's.
    async fn wait_ready(&self, models: &[&str]) {
        for m in models {
            self.wait_for_status(&format!("/v2/models/{m}/ready"), 200)
                .await;
        }
        self.wait_for_status("/v2/health/ready", 200).await;
    }

    /// Polls the repository index until every `(model, state)` holds.
    async fn wait_index(&self, want: &[(&str, &str)]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let index = self.post("/v2/repository/index", &[], "").await.json();
            let rows = index.as_array().unwrap().clone();
            let state = |name: &str| {
                rows.iter()
                    .find(|r| r["name"] == name)
                    .and_then(|r| r["state"].as_str())
                    .map(str::to_string)
            };
            if want.iter().all(|(m, s)| state(m).as_deref() == Some(*s)) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "index never reached {want:?}: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A server on `examples/models`, with `add` ready.
async fn add_server() -> TestServer {
    let s = start(&workspace().join("examples/models"), ControlMode::None, &[]).await;
    s.wait_ready(&["add"]).await;
    s
}

const X: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
const Y: [f32; 8] = [10.0, 20.0, 30.0, 40.0, 0.5, 0.25, -1.0, -2.0];
const SUM: [f32; 8] = [11.0, 22.0, 33.0, 44.0, 5.5, 6.25, 6.0, 6.0];
const DIFF: [f32; 8] = [-9.0, -18.0, -27.0, -36.0, 4.5, 5.75, 8.0, 10.0];

fn add_request() -> Value {
    json!({
        "inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X},
            {"name": "y", "shape": [2, 4], "datatype": "FP32", "data": [[10, 20, 30, 40], [0.5, 0.25, -1, -2]]}
        ]
    })
}

/// The values of a tensor as JSON, written independently of the server's codec.
fn values(t: &Tensor) -> Value {
    match t.dtype() {
        DataType::Bool => t
            .as_bytes()
            .unwrap()
            .iter()
            .map(|&b| Value::Bool(b != 0))
            .collect(),
        DataType::I32 => t
            .to_vec::<i32>()
            .unwrap()
            .into_iter()
            .map(Value::from)
            .collect(),
        DataType::I64 => t
            .to_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(Value::from)
            .collect(),
        DataType::F32 => t
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(|x| Value::from(x as f64))
            .collect(),
        other => panic!("no test conversion for {other}"),
    }
}

fn output<'a>(response: &'a Value, name: &str) -> &'a Value {
    response["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {response}"))
}

/// Splits a binary response into its JSON header and binary part.
fn split_binary(r: &Reply) -> (Value, Bytes) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let n: usize = r
        .header("inference-header-content-length")
        .expect("Inference-Header-Content-Length")
        .parse()
        .unwrap();
    (
        serde_json::from_slice(&r.body[..n]).unwrap(),
        r.body.slice(n..),
    )
}

mod bad_requests;
mod infer;
mod repository;
mod repository_modes;
mod routes;
mod tcp;
