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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// The body limit of every test server.
const LIMIT: usize = 1 << 20;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(rel: &str) -> PathBuf {
    let path = workspace().join("fixtures/generated").join(rel);
    assert!(
        path.exists(),
        "missing fixture {}: run scripts/setup.sh to generate fixtures/generated/",
        path.display()
    );
    path
}

fn npy(rel: &str) -> Tensor {
    anemone_core::npy::read(std::fs::File::open(fixture(rel)).unwrap()).unwrap()
}

/// A model repository in the temporary directory, removed on drop.
struct TempRepo(PathBuf);

impl TempRepo {
    fn new(tag: &str) -> TempRepo {
        let dir = std::env::temp_dir().join(format!("anemone-http-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempRepo(dir)
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

impl Drop for TempRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
    let server = Server::bind(options, manager).await.unwrap();
    let state = server.state();
    let addr = server.http_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let router = anemone_server::http::router(Arc::clone(&state), LIMIT);
    TestServer {
        state,
        router,
        addr,
        stop,
        task,
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

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
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

mod routes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_metadata_and_health() {
        let s = add_server().await;
        let r = s.get("/v2").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["name"], "anemone");
        assert!(v["version"].as_str().is_some_and(|v| !v.is_empty()));
        for ext in ["binary_tensor_data", "model_repository", "statistics"] {
            assert!(
                v["extensions"].as_array().unwrap().contains(&json!(ext)),
                "{v}"
            );
        }
        assert_eq!(s.get("/v2/health/live").await.status, 200);
        assert_eq!(s.get("/v2/health/ready").await.status, 200);
        let r = s.get("/v2/nothing/here").await;
        assert_eq!(r.status, 404);
        assert!(r.error().contains("no route for '/v2/nothing/here'"));
        s.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn model_metadata_readiness_and_config() {
        let s = add_server().await;
        for path in ["/v2/models/add", "/v2/models/add/versions/1"] {
            let r = s.get(path).await;
            assert_eq!(r.status, 200, "{path}");
            let v = r.json();
            assert_eq!(v["name"], "add");
            assert_eq!(v["versions"], json!(["1"]));
            assert_eq!(v["platform"], "tract-cpu", "platform names the backend");
            assert_eq!(
                v["backend_selection"],
                json!({"mode": "ordered", "attempts": [{"backend": "tract-cpu", "outcome": "chosen"}]}),
                "how the backend was chosen travels beside the KServe fields"
            );
            assert_eq!(
                v["inputs"],
                json!([
                    {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                    {"name": "y", "datatype": "FP32", "shape": [-1, 4]},
                ])
            );
            assert_eq!(
                v["outputs"],
                json!([
                    {"name": "sum", "datatype": "FP32", "shape": [-1, 4]},
                    {"name": "diff", "datatype": "FP32", "shape": [-1, 4]},
                ])
            );
        }
        assert_eq!(s.get("/v2/models/add/ready").await.status, 200);
        assert_eq!(s.get("/v2/models/add/versions/1/ready").await.status, 200);
        assert_eq!(s.get("/v2/models/add/versions/2/ready").await.status, 503);
        let r = s.get("/v2/models/nope/ready").await;
        assert_eq!(r.status, 404);
        assert!(r.error().contains("'nope'"));
        let r = s.get("/v2/models/nope").await;
        assert_eq!(r.status, 404);
        let r = s.get("/v2/models/add/versions/one").await;
        assert_eq!(r.status, 400);
        assert!(r
            .error()
            .contains("model version 'one' is not a non-negative integer"));

        for path in ["/v2/models/add/config", "/v2/models/add/versions/1/config"] {
            let r = s.get(path).await;
            assert_eq!(
                r.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let v = r.json();
            assert_eq!(v["name"], "add");
            let inputs: Vec<&str> = v["input"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap())
                .collect();
            assert_eq!(inputs, ["x", "y"], "{v}");
            assert_eq!(v["input"][0]["data_type"], "TYPE_FP32", "{v}");
        }
        assert_eq!(s.get("/v2/models/nope/config").await.status, 404);
        s.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statistics_count_requests() {
        let s = add_server().await;
        for _ in 0..3 {
            assert_eq!(
                s.post_json("/v2/models/add/infer", &add_request())
                    .await
                    .status,
                200
            );
        }
        for path in [
            "/v2/models/stats",
            "/v2/models/add/stats",
            "/v2/models/add/versions/1/stats",
        ] {
            let r = s.get(path).await;
            assert_eq!(r.status, 200, "{path}");
            let v = r.json();
            let stats = v["model_stats"].as_array().unwrap();
            assert_eq!(stats.len(), 1, "{v}");
            let m = &stats[0];
            assert_eq!(m["name"], "add");
            assert_eq!(m["version"], "1");
            assert!(m["last_inference"].as_u64().unwrap() > 0, "{m}");
            // Unbatched: every request is one execution of batch size 1.
            assert_eq!(m["inference_count"], 3, "{m}");
            assert_eq!(m["execution_count"], 3, "{m}");
            let i = &m["inference_stats"];
            assert_eq!(i["success"]["count"], 3, "{m}");
            assert!(i["success"]["ns"].as_u64().unwrap() > 0, "{m}");
            assert_eq!(i["fail"]["count"], 0, "{m}");
            for key in [
                "queue",
                "compute_input",
                "compute_infer",
                "compute_output",
                "cache_hit",
                "cache_miss",
            ] {
                assert!(
                    i[key]["count"].is_u64() && i[key]["ns"].is_u64(),
                    "{key}: {m}"
                );
            }
            let b = m["batch_stats"].as_array().unwrap();
            assert_eq!(b.len(), 1, "one batch size: {m}");
            assert_eq!(b[0]["batch_size"], 1, "{m}");
            for key in ["compute_input", "compute_infer", "compute_output"] {
                assert_eq!(b[0][key]["count"], 3, "{key}: {m}");
            }
            assert!(b[0]["compute_infer"]["ns"].as_u64().unwrap() > 0, "{m}");
            // Per request and per execution agree when nothing is batched.
            assert_eq!(b[0]["compute_infer"]["ns"], i["compute_infer"]["ns"], "{m}");
            assert_eq!(i["queue"]["count"], 3, "{m}");
        }
        assert_eq!(s.get("/v2/models/nope/stats").await.status, 404);
        s.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_are_prometheus_text() {
        let s = add_server().await;
        assert_eq!(
            s.post_json("/v2/models/add/infer", &add_request())
                .await
                .status,
            200
        );
        let r = s.get("/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(
            text.lines()
                .any(|l| l
                    == "anemone_inference_request_success_total{model=\"add\",version=\"1\"} 1"),
            "{text}"
        );
        for line in [
            "anemone_model_backend{model=\"add\",version=\"1\",backend=\"tract-cpu\",mode=\"ordered\"} 1",
            "anemone_backend_available{backend=\"tract-cpu\",tier=\"portable-cpu\"} 1",
            "anemone_backend_retries_total{model=\"add\",version=\"1\",backend=\"tract-cpu\"} 0",
            "# TYPE anemone_backend_fallbacks_total counter",
            "anemone_inference_executions_total{model=\"add\",version=\"1\"} 1",
            "anemone_inferences_total{model=\"add\",version=\"1\"} 1",
            "# TYPE anemone_inference_batch_size histogram",
            "anemone_inference_batch_size_bucket{model=\"add\",version=\"1\",le=\"1\"} 1",
            "anemone_inference_batch_size_bucket{model=\"add\",version=\"1\",le=\"+Inf\"} 1",
            "anemone_inference_batch_size_sum{model=\"add\",version=\"1\"} 1",
            "anemone_inference_batch_size_count{model=\"add\",version=\"1\"} 1",
            "# TYPE anemone_pending_requests gauge",
            "anemone_pending_requests{model=\"add\",version=\"1\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        s.shutdown().await;
    }
}

mod infer {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn json_in_json_out_with_id_and_parameters() {
        let s = add_server().await;
        let mut request = add_request();
        request["id"] = json!("req-42");
        request["parameters"] = json!({"tag": "abc", "n": 3});
        for path in ["/v2/models/add/infer", "/v2/models/add/versions/1/infer"] {
            let r = s.post_json(path, &request).await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert!(r.header("inference-header-content-length").is_none());
            assert_eq!(
                r.json(),
                json!({
                    "model_name": "add",
                    "model_version": "1",
                    "id": "req-42",
                    "parameters": {"tag": "abc", "n": 3},
                    "outputs": [
                        {"name": "sum", "datatype": "FP32", "shape": [2, 4], "data": SUM},
                        {"name": "diff", "datatype": "FP32", "shape": [2, 4], "data": DIFF},
                    ]
                })
            );
        }
        // Without id and parameters, neither appears.
        let v = s
            .post_json("/v2/models/add/infer", &add_request())
            .await
            .json();
        assert!(
            v.get("id").is_none() && v.get("parameters").is_none(),
            "{v}"
        );
        s.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binary_inputs_and_outputs() {
        let s = add_server().await;
        // x in binary, y in JSON; sum back in binary, diff in JSON.
        let header = json!({
            "id": "b1",
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
                {"name": "y", "shape": [2, 4], "datatype": "FP32", "data": Y},
            ],
            "outputs": [{"name": "sum", "parameters": {"binary_data": true}}, {"name": "diff"}]
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend(f32_bytes(&X));
        let length = header.len().to_string();
        let r = s
            .post(
                "/v2/models/add/infer",
                &[("inference-header-content-length", &length)],
                body,
            )
            .await;
        let (v, binary) = split_binary(&r);
        assert_eq!(
            r.header("content-length").unwrap(),
            r.body.len().to_string()
        );
        assert_eq!(v["id"], "b1");
        assert_eq!(
            v["outputs"][0],
            json!({"name": "sum", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}})
        );
        assert_eq!(
            v["outputs"][1],
            json!({"name": "diff", "datatype": "FP32", "shape": [2, 4], "data": DIFF})
        );
        assert_eq!(f32s(&binary), SUM);

        // Both inputs binary; binary_data_output makes every output binary, in order.
        let header = json!({
            "parameters": {"binary_data_output": true},
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
                {"name": "y", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
            ]
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend(f32_bytes(&X));
        body.extend(f32_bytes(&Y));
        let length = header.len().to_string();
        let r = s
            .post(
                "/v2/models/add/infer",
                &[("inference-header-content-length", &length)],
                body,
            )
            .await;
        let (v, binary) = split_binary(&r);
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 32);
        assert_eq!(v["outputs"][1]["parameters"]["binary_data_size"], 32);
        assert!(v["outputs"][0].get("data").is_none());
        assert_eq!(f32s(&binary[..32]), SUM);
        assert_eq!(f32s(&binary[32..]), DIFF);

        // A per-output binary_data: false beats binary_data_output.
        let mut request = add_request();
        request["parameters"] = json!({"binary_data_output": true});
        request["outputs"] =
            json!([{"name": "diff", "parameters": {"binary_data": false}}, {"name": "sum"}]);
        let (v, binary) = split_binary(&s.post_json("/v2/models/add/infer", &request).await);
        assert_eq!(
            v["outputs"][0],
            json!({"name": "diff", "datatype": "FP32", "shape": [2, 4], "data": DIFF})
        );
        assert_eq!(v["outputs"][1]["name"], "sum");
        assert_eq!(f32s(&binary), SUM);
        s.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requested_outputs_subset_in_order() {
        let repo = TempRepo::new("subset").fixture("multi_io", "multi_io");
        let s = start(&repo.0, ControlMode::None, &[]).await;
        s.wait_ready(&["multi_io"]).await;
        let input = |name: &str, file: &str| {
            let t = npy(&format!("multi_io/{file}"));
            json!({"name": name, "shape": t.shape(), "datatype": "FP32", "data": values(&t)})
        };
        let request = json!({
            "inputs": [input("x", "run0_in_0.npy"), input("y", "run0_in_1.npy"), input("scale", "run0_in_2.npy")],
            "outputs": [{"name": "out/with:odd*name"}, {"name": "sum"}]
        });
        let r = s.post_json("/v2/models/multi_io/infer", &request).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        let names: Vec<&str> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["out/with:odd*name", "sum"]);
        let close = |got: &Value, want: &Tensor| {
            let want = want.to_vec::<f32>().unwrap();
            let got: Vec<f64> = got["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w as f64).abs() <= 1e-5 + 1e-4 * (w as f64).abs(),
                    "{g} vs {w}"
                );
            }
        };
        close(&v["outputs"][0], &npy("multi_io/run0_out_3.npy"));
        close(&v["outputs"][1], &npy("multi_io/run0_out_0.npy"));
        s.shutdown().await;
    }

    /// int32, int64, bool and a 0-d scalar, in JSON and in binary, against the reference outputs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn int_bool_matches_reference_both_ways() {
        let repo = TempRepo::new("int-bool").fixture("int_bool", "int_bool");
        let s = start(&repo.0, ControlMode::None, &[]).await;
        s.wait_ready(&["int_bool"]).await;
        let inputs = ["ids", "offsets", "mask", "k"];
        let outputs = ["sum_i64", "masked", "not_mask", "ids_times2"];
        for run in 0..2 {
            let ins: Vec<Tensor> = (0..4)
                .map(|i| npy(&format!("int_bool/run{run}_in_{i}.npy")))
                .collect();
            let outs: Vec<Tensor> = (0..4)
                .map(|i| npy(&format!("int_bool/run{run}_out_{i}.npy")))
                .collect();

            let json_inputs: Vec<Value> = inputs
                .iter()
                .zip(&ins)
                .map(|(n, t)| {
                    // The 0-d scalar goes as a bare value, the others as lists.
                    let data = if t.shape().is_empty() { values(t)[0].clone() } else { values(t) };
                    json!({"name": n, "shape": t.shape(), "datatype": t.dtype().kserve_name(), "data": data})
                })
                .collect();
            let r = s
                .post_json(
                    "/v2/models/int_bool/infer",
                    &json!({ "inputs": json_inputs }),
                )
                .await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let v = r.json();
            for (name, want) in outputs.iter().zip(&outs) {
                let got = output(&v, name);
                assert_eq!(got["datatype"], want.dtype().kserve_name(), "{name}");
                assert_eq!(got["shape"], json!(want.shape()), "{name}");
                assert_eq!(got["data"], values(want), "run {run} {name}");
            }

            let header_inputs: Vec<Value> = inputs
                .iter()
                .zip(&ins)
                .map(|(n, t)| {
                    json!({"name": n, "shape": t.shape(), "datatype": t.dtype().kserve_name(),
                           "parameters": {"binary_data_size": t.as_bytes().unwrap().len()}})
                })
                .collect();
            let header =
                json!({"inputs": header_inputs, "parameters": {"binary_data_output": true}})
                    .to_string();
            let mut body = header.clone().into_bytes();
            for t in &ins {
                body.extend_from_slice(t.as_bytes().unwrap());
            }
            let length = header.len().to_string();
            let r = s
                .post(
                    "/v2/models/int_bool/infer",
                    &[("inference-header-content-length", &length)],
                    body,
                )
                .await;
            let (v, binary) = split_binary(&r);
            let returned: Vec<&str> = v["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                returned, outputs,
                "run {run}: every output, in the model's order"
            );
            let mut at = 0;
            for o in v["outputs"].as_array().unwrap() {
                let name = o["name"].as_str().unwrap();
                let want = &outs[outputs.iter().position(|n| *n == name).unwrap()];
                let size = o["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
                assert_eq!(o["datatype"], want.dtype().kserve_name(), "{name}");
                assert_eq!(
                    &binary[at..at + size],
                    want.as_bytes().unwrap(),
                    "run {run} {name}"
                );
                at += size;
            }
            assert_eq!(at, binary.len());
        }
        s.shutdown().await;
    }
}

mod repository {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_shows_a_broken_model_as_unavailable() {
        let repo = TempRepo::new("broken")
            .add()
            .fixture("identity", "identity")
            .file("broken", b"this is not an ONNX model");
        let s = start(&repo.0, ControlMode::None, &[]).await;
        let rows = s
            .wait_index(&[
                ("add", "READY"),
                ("identity", "READY"),
                ("broken", "UNAVAILABLE"),
            ])
            .await;
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(
            rows.contains(
                &json!({"name": "add", "version": "1", "state": "READY", "reason": "on tract-cpu"})
            ),
            "{rows:?}"
        );
        let broken = rows.iter().find(|r| r["name"] == "broken").unwrap();
        assert!(
            broken["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{broken}"
        );
        assert!(broken.get("version").is_none(), "{broken}");

        let ready = s
            .post_json("/v2/repository/index", &json!({"ready": true}))
            .await
            .json();
        let names: Vec<&str> = ready
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["add", "identity"]);

        // Strict readiness: one unavailable model makes the server not ready; the others still serve.
        assert_eq!(s.get("/v2/health/ready").await.status, 503);
        assert_eq!(s.get("/v2/models/broken/ready").await.status, 503);
        let r = s.get("/v2/models/broken").await;
        assert_eq!(r.status, 503);
        assert!(r.error().contains("model 'broken' is not ready"));
        assert_eq!(
            s.post_json("/v2/models/add/infer", &add_request())
                .await
                .status,
            200
        );

        // Mode none refuses the repository API.
        for op in ["load", "unload"] {
            let r = s
                .post(&format!("/v2/repository/models/add/{op}"), &[], "")
                .await;
            assert_eq!(r.status, 503, "{op}");
            assert!(r.error().contains("--model-control-mode explicit"), "{op}");
        }
        s.shutdown().await;
    }

    /// Core ML models are found (`model.mlpackage`, `model.mlmodel`) and,
    /// where no backend can run them, listed UNAVAILABLE with the reason;
    /// a corrupt one says what is wrong.
    #[cfg(not(target_vendor = "apple"))]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_lists_core_ml_models_with_the_reason() {
        fn copy_tree(from: &Path, to: &Path) {
            if from.is_dir() {
                std::fs::create_dir_all(to).unwrap();
                for e in std::fs::read_dir(from).unwrap() {
                    let e = e.unwrap();
                    copy_tree(&e.path(), &to.join(e.file_name()));
                }
            } else {
                std::fs::copy(from, to).unwrap();
            }
        }
        let repo = TempRepo::new("coreml").add();
        for (name, file, target) in [
            (
                "package",
                "coreml/program_fp16_int32.mlpackage",
                "model.mlpackage",
            ),
            ("spec", "coreml/nn_flexible.mlmodel", "model.mlmodel"),
            ("corrupt", "coreml/bad/truncated.mlmodel", "model.mlmodel"),
        ] {
            let dir = repo.0.join(name).join("1");
            std::fs::create_dir_all(&dir).unwrap();
            copy_tree(&fixture(file), &dir.join(target));
        }
        let manager = anemone_runtime::Manager::builder()
            .backend(anemone_backends::TractCpu)
            .backend(anemone_backends::CoreMl)
            .build()
            .unwrap();
        let s = start_with(&repo.0, ControlMode::None, &[], manager).await;
        let rows = s
            .wait_index(&[
                ("add", "READY"),
                ("package", "UNAVAILABLE"),
                ("spec", "UNAVAILABLE"),
                ("corrupt", "UNAVAILABLE"),
            ])
            .await;
        let reason = |name: &str| {
            rows.iter()
                .find(|r| r["name"] == name)
                .and_then(|r| r["reason"].as_str())
                .unwrap_or_else(|| panic!("no reason for {name}: {rows:?}"))
                .to_string()
        };
        for name in ["package", "spec"] {
            let r = reason(name);
            assert!(r.contains("no backend can run"), "{name}: {r}");
            assert!(r.contains("coreml: Core ML needs macOS"), "{name}: {r}");
        }
        let r = reason("corrupt");
        assert!(
            r.contains("not a valid protobuf (corrupt or truncated?)"),
            "{r}"
        );
        s.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_and_unload_in_explicit_mode() {
        let repo = TempRepo::new("explicit")
            .fixture("identity", "identity")
            .fixture("int_bool", "int_bool");
        let s = start(&repo.0, ControlMode::Explicit, &[]).await;
        s.wait_for_status("/v2/health/ready", 200).await;
        let rows = s.post("/v2/repository/index", &[], "").await.json();
        assert_eq!(rows, json!([{"name": "identity"}, {"name": "int_bool"}]));
        assert_eq!(s.get("/v2/models/identity/ready").await.status, 503);

        let r = s.post("/v2/repository/models/identity/load", &[], "").await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(s.get("/v2/models/identity/ready").await.status, 200);
        let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.5).collect();
        let request =
            json!({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x}]});
        let v = s
            .post_json("/v2/models/identity/infer", &request)
            .await
            .json();
        assert_eq!(v["outputs"][0]["data"], json!(x));

        let r = s
            .post("/v2/repository/models/identity/unload", &[], "")
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(s.get("/v2/models/identity/ready").await.status, 503);
        s.wait_index(&[("identity", "UNLOADED")]).await;

        // A config override, as tritonclient sends it.
        let config = json!({"name": "int_bool", "max_batch_size": 0}).to_string();
        let r = s
            .post_json(
                "/v2/repository/models/int_bool/load",
                &json!({"parameters": {"config": config}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(s.get("/v2/models/int_bool/ready").await.status, 200);
        let r = s.get("/v2/models/int_bool/config").await;
        assert_eq!(r.json()["max_batch_size"], 0);

        let bad = json!({"parameters": {"config": "{\"no_such_field\": 1}"}});
        let r = s
            .post_json("/v2/repository/models/identity/load", &bad)
            .await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("config override"));
        let r = s
            .post_json(
                "/v2/repository/models/identity/load",
                &json!({"parameters": {"file:1/model.onnx": "AAAA"}}),
            )
            .await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("not supported"));
        let r = s.post("/v2/repository/models/nope/load", &[], "").await;
        assert_eq!(r.status, 404);
        assert!(r.error().contains("'nope'"));
        let r = s.post("/v2/repository/models/nope/unload", &[], "").await;
        assert_eq!(r.status, 404);
        s.shutdown().await;
    }
}

mod repository_modes {
    use super::*;

    /// Poll mode follows the repository on disk: a new model is loaded, a
    /// changed config is applied, a removed model is unloaded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn poll_mode_follows_the_disk() {
        let repo = TempRepo::new("poll").add();
        let manager = anemone_runtime::Manager::builder()
            .backend(anemone_backends::TractCpu)
            .build()
            .unwrap();
        let options = ServerOptions {
            http_port: 0,
            grpc_port: 0,
            repository: repo.0.clone(),
            control: ControlMode::Poll,
            poll_interval: Duration::from_millis(100),
            ..Default::default()
        };
        let server = Server::bind(options, manager).await.unwrap();
        let state = server.state();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let router = anemone_server::http::router(Arc::clone(&state), LIMIT);
        let s = TestServer {
            state,
            router,
            addr: "127.0.0.1:1".parse().unwrap(),
            stop,
            task,
        };
        s.wait_ready(&["add"]).await;

        let repo = repo.fixture("identity", "identity");
        s.wait_for_status("/v2/models/identity/ready", 200).await;

        // A changed config the server must refuse: the reload fails with the field
        // named, and the previous load keeps serving (as in Triton).
        std::fs::write(
            repo.0.join("identity/config.pbtxt"),
            "name: \"identity\"\ndynamic_batching { }\n",
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let reason = loop {
            let rows = s.post("/v2/repository/index", &[], "").await.json();
            let row = rows
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == "identity")
                .cloned()
                .unwrap();
            if let Some(reason) = row["reason"]
                .as_str()
                .filter(|r| r.contains("still serving"))
            {
                assert_eq!(row["state"], "READY", "{row}");
                break reason.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "the bad config was never noticed: {row}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            reason.contains("dynamic_batching") && reason.contains("still serving"),
            "{reason}"
        );
        assert_eq!(s.get("/v2/models/identity/ready").await.status, 200);

        // An entirely new model with a bad config is unavailable, with the reason.
        let repo = repo.fixture("strict", "identity");
        std::fs::write(
            repo.0.join("strict/config.pbtxt"),
            "name: \"strict\"\nsequence_batching { }\n",
        )
        .unwrap();
        let rows = s.wait_index(&[("strict", "UNAVAILABLE")]).await;
        let reason = rows.iter().find(|r| r["name"] == "strict").unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(reason.contains("sequence_batching"), "{reason}");

        std::fs::remove_dir_all(repo.0.join("identity")).unwrap();
        s.wait_for_status("/v2/models/identity/ready", 404).await;
        assert_eq!(
            s.get("/v2/models/add/ready").await.status,
            200,
            "the other model never stopped serving"
        );
        let r = s.post("/v2/repository/models/add/unload", &[], "").await;
        assert_eq!(r.status, 503, "poll mode refuses the load/unload API");
        s.shutdown().await;
    }
}

mod bad_requests {
    use super::*;

    struct Case {
        what: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        status: u16,
        error: &'static str,
    }

    fn infer(
        what: &'static str,
        body: impl Into<Vec<u8>>,
        status: u16,
        error: &'static str,
    ) -> Case {
        Case {
            what,
            path: "/v2/models/add/infer",
            headers: vec![],
            body: body.into(),
            status,
            error,
        }
    }

    /// An infer request with a binary part: the JSON, then `binary`.
    fn binary(
        what: &'static str,
        header: Value,
        binary: &[u8],
        length: Option<&str>,
        status: u16,
        error: &'static str,
    ) -> Case {
        let header = header.to_string();
        let length = length
            .map(str::to_string)
            .unwrap_or_else(|| header.len().to_string());
        let mut body = header.into_bytes();
        body.extend_from_slice(binary);
        Case {
            headers: vec![("inference-header-content-length", length)],
            ..infer(what, body, status, error)
        }
    }

    fn x(extra: Value) -> Value {
        let mut x = json!({"name": "x", "shape": [1, 4], "datatype": "FP32"});
        x.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        x
    }

    fn y() -> Value {
        json!({"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]})
    }

    fn with(inputs: Value) -> Vec<u8> {
        json!({ "inputs": inputs }).to_string().into_bytes()
    }

    fn cases() -> Vec<Case> {
        let data = json!({"data": [1, 2, 3, 4]});
        let bin16 = json!({"parameters": {"binary_data_size": 16}});
        vec![
            infer("truncated JSON", r#"{"inputs": ["#, 400, "malformed inference request JSON: EOF while parsing a list at line 1 column 12"),
            infer("not JSON", "hello", 400, "malformed inference request JSON: expected value at line 1 column 1"),
            infer("inputs missing", "{}", 400, "missing field `inputs`"),
            infer("inputs not a list", r#"{"inputs": 5}"#, 400, "invalid type: integer `5`, expected a sequence"),
            infer("shape missing", with(json!([{"name": "x", "datatype": "FP32", "data": [1]}])), 400, "missing field `shape`"),
            infer("datatype missing", with(json!([{"name": "x", "shape": [1], "data": [1]}])), 400, "missing field `datatype`"),
            infer("name missing", with(json!([{"shape": [1], "datatype": "FP32", "data": [1]}])), 400, "missing field `name`"),
            infer("too few values", with(json!([x(json!({"data": [1, 2, 3]})), y()])), 400, "input 'x' has 3 values in 'data', but shape [1, 4] needs 4"),
            infer("a value of the wrong type", with(json!([x(json!({"data": [1, 2, "a", 4]})), y()])), 400, "input 'x' value 2 (\"a\") is not a valid FP32"),
            infer("unknown datatype", with(json!([x(json!({"datatype": "FP8", "data": [1, 2, 3, 4]})), y()])), 400, "input 'x': unknown datatype 'FP8'"),
            infer("negative dimension", with(json!([x(json!({"shape": [-1, 4], "data": [1, 2, 3, 4]})), y()])), 400, "input 'x' has a negative dimension -1"),
            infer("overflowing element count", with(json!([x(json!({"shape": [4294967296u64, 4294967296u64, 16], "data": [1]})), y()])), 400, "has more elements than can be addressed"),
            infer("dimension beyond i64", br#"{"inputs": [{"name": "x", "shape": [99999999999999999999], "datatype": "FP32", "data": [1]}]}"#.to_vec(), 400, "malformed inference request JSON"),
            infer("input given twice", with(json!([x(data.clone()), x(data.clone()), y()])), 400, "input 'x' is given more than once"),
            infer("both data and binary_data_size", with(json!([x(json!({"data": [1, 2, 3, 4], "parameters": {"binary_data_size": 16}})), y()])), 400, "input 'x' has both 'data' and parameter 'binary_data_size'"),
            infer("neither data nor binary_data_size", with(json!([x(json!({})), y()])), 400, "input 'x' has neither 'data' nor parameter 'binary_data_size'"),
            infer("binary_data_size not a count", with(json!([x(json!({"parameters": {"binary_data_size": -16}})), y()])), 400, "parameter 'binary_data_size' must be a byte count, got -16"),
            infer("binary_data_size without a binary part", with(json!([x(bin16.clone()), y()])), 400, "the request has no binary part"),
            binary("header length not a number", json!({"inputs": [x(bin16.clone()), y()]}), &[0; 16], Some("abc"), 400, "header Inference-Header-Content-Length must be a byte count, got 'abc'"),
            binary("header length past the body", json!({"inputs": [x(bin16.clone()), y()]}), &[0; 16], Some("100000"), 400, "header Inference-Header-Content-Length is 100000, but the body has only"),
            binary("binary part too short", json!({"inputs": [x(bin16.clone()), y()]}), &[0; 12], None, 400, "input 'x' has binary_data_size 16, but only 12 of the 12 bytes after the JSON header remain"),
            binary("binary part too long", json!({"inputs": [x(bin16.clone()), y()]}), &[0; 20], None, 400, "the binary part has 20 bytes, but the inputs' binary_data_size values add up to 16"),
            binary("binary size disagrees with the shape", json!({"inputs": [x(json!({"parameters": {"binary_data_size": 12}})), y()]}), &[0; 12], None, 400, "input 'x' has 12 bytes of data, but"),
            infer("unknown input", with(json!([x(data.clone()), {"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}])), 400, "unknown input 'z'"),
            infer("wrong dtype for the model", with(json!([x(json!({"datatype": "INT32", "data": [1, 2, 3, 4]})), y()])), 400, "input 'x' has type"),
            infer("unknown output", json!({"inputs": [x(data.clone()), y()], "outputs": [{"name": "nope"}]}).to_string(), 400, "unknown output 'nope'"),
            infer("binary_data not a boolean", json!({"inputs": [x(data.clone()), y()], "outputs": [{"name": "sum", "parameters": {"binary_data": "yes"}}]}).to_string(), 400, "output 'sum': parameter 'binary_data' must be true or false"),
            infer("binary_data_output not a boolean", json!({"inputs": [x(data.clone()), y()], "parameters": {"binary_data_output": 1}}).to_string(), 400, "request parameter 'binary_data_output' must be true or false"),
            infer("shared memory", with(json!([x(json!({"parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 16}})), y()])), 400, "the shared memory extension is not supported"),
            infer("classification", json!({"inputs": [x(data.clone()), y()], "outputs": [{"name": "sum", "parameters": {"classification": 2}}]}).to_string(), 400, "the classification extension is not supported"),
            infer("timeout not a number", json!({"inputs": [x(data.clone()), y()], "parameters": {"timeout": "soon"}}).to_string(), 400, "parameter 'timeout' must be a positive number of microseconds"),
            Case { path: "/v2/models/add/versions/one/infer", ..infer("version not an integer", with(json!([x(data.clone()), y()])), 400, "model version 'one' is not a non-negative integer") },
            Case { path: "/v2/models/add/versions/-1/infer", ..infer("negative version", with(json!([x(data.clone()), y()])), 400, "model version '-1' is not a non-negative integer") },
            Case { path: "/v2/models/add/versions/7/infer", ..infer("unknown version", with(json!([x(data.clone()), y()])), 404, "'add'") },
            Case { path: "/v2/models/nope/infer", ..infer("unknown model", with(json!([x(data.clone()), y()])), 404, "model 'nope'") },
            Case {
                headers: vec![("content-encoding", "gzip".into())],
                ..infer("compressed body", with(json!([x(data.clone()), y()])), 400, "Content-Encoding 'gzip' is not supported")
            },
            infer("body over the limit", vec![b' '; LIMIT + 1], 413, "request body exceeds the 1048576-byte limit"),
            Case { path: "/v2/repository/index", ..infer("malformed index request", "{", 400, "malformed repository index request JSON") },
            Case { path: "/v2/repository/index", ..infer("index ready not a boolean", r#"{"ready": "yes"}"#, 400, "expected a boolean") },
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_gets_a_clear_error_and_nothing_else_changes() {
        let s = add_server().await;
        let mut failures = Vec::new();
        for case in cases() {
            let headers: Vec<(&str, &str)> =
                case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = s.post(case.path, &headers, case.body).await;
            let error = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string));
            match error {
                Some(e) if r.status == case.status && e.contains(case.error) => {
                    r.error(); // exactly {"error": "..."}
                }
                _ => failures.push(format!(
                    "{}: expected {} containing {:?}, got {} {}",
                    case.what,
                    case.status,
                    case.error,
                    r.status,
                    String::from_utf8_lossy(&r.body)
                )),
            }
        }
        assert!(
            failures.is_empty(),
            "{} case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );

        let r = s.post_json("/v2/models/add/infer", &add_request()).await;
        assert_eq!(r.status, 200);
        assert_eq!(output(&r.json(), "sum")["data"], json!(SUM));
        assert_eq!(s.state.manager.metrics().in_flight, 0);
        assert_eq!(s.get("/v2/health/ready").await.status, 200);
        s.shutdown().await;
    }
}

mod tcp {
    use super::*;
    use std::io::{Read, Write};

    /// Status, headers (lower-case names), body.
    type Exchange = (u16, Vec<(String, String)>, Vec<u8>);

    /// One HTTP/1.1 exchange over a fresh blocking connection, off the async executor.
    async fn exchange(
        addr: std::net::SocketAddr,
        method: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Exchange {
        tokio::task::spawn_blocking(move || exchange_blocking(addr, method, path, &headers, &body))
            .await
            .unwrap()
    }

    fn exchange_blocking(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Exchange {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head");
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        (status, headers, raw[split + 4..].to_vec())
    }

    fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binary_infer_over_real_tcp() {
        let s = start(&workspace().join("examples/models"), ControlMode::None, &[]).await;
        let addr = s.addr;

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, ..) = exchange(addr, "GET", "/v2/models/add/ready", vec![], vec![]).await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "add never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, _, body) = exchange(addr, "GET", "/v2/health/ready", vec![], vec![]).await;
        assert_eq!((status, body.len()), (200, 0));

        let header = json!({
            "id": "tcp",
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
                {"name": "y", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
            ],
            "outputs": [{"name": "diff", "parameters": {"binary_data": true}}, {"name": "sum", "parameters": {"binary_data": true}}]
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend(f32_bytes(&X));
        body.extend(f32_bytes(&Y));
        let headers = vec![
            ("inference-header-content-length", header.len().to_string()),
            ("content-type", "application/octet-stream".into()),
        ];
        let (status, headers, body) =
            exchange(addr, "POST", "/v2/models/add/infer", headers, body).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(
            find(&headers, "content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(
            find(&headers, "content-length"),
            Some(body.len().to_string().as_str()),
            "{headers:?}"
        );
        assert!(find(&headers, "transfer-encoding").is_none(), "{headers:?}");
        let n: usize = find(&headers, "inference-header-content-length")
            .unwrap()
            .parse()
            .unwrap();
        let v: Value = serde_json::from_slice(&body[..n]).unwrap();
        assert_eq!(
            v,
            json!({
                "model_name": "add",
                "model_version": "1",
                "id": "tcp",
                "outputs": [
                    {"name": "diff", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}},
                    {"name": "sum", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}},
                ]
            })
        );
        assert_eq!(f32s(&body[n..n + 32]), DIFF);
        assert_eq!(f32s(&body[n + 32..]), SUM);

        let (status, _, body) = exchange(
            addr,
            "POST",
            "/v2/models/add/infer",
            vec![],
            br#"{"inputs": []"#.to_vec(),
        )
        .await;
        assert_eq!(status, 400);
        assert!(String::from_utf8_lossy(&body).contains("malformed inference request JSON"));
        s.shutdown().await;
    }

    /// SIGTERM-style shutdown while a slow request runs: the request finishes
    /// with 200, later connections are refused, and `run` returns Ok.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_lets_requests_in_flight_finish() {
        let repo = TempRepo::new("shutdown").fixture("resnet", "resnet18");
        let s = start(&repo.0, ControlMode::None, &[]).await;
        s.wait_ready(&["resnet"]).await;
        let x = npy("resnet18/run0_in_0.npy");
        let header = json!({
            "inputs": [{"name": "input", "shape": x.shape(), "datatype": "FP32", "parameters": {"binary_data_size": x.byte_len()}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(x.as_bytes().unwrap());
        let headers = vec![("inference-header-content-length", header.len().to_string())];
        let addr = s.addr;
        let in_flight = tokio::spawn(exchange(
            addr,
            "POST",
            "/v2/models/resnet/infer",
            headers,
            body,
        ));
        // Wait until the engine is running it, then ask the server to stop.
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.state.manager.metrics().in_flight == 0 {
            assert!(Instant::now() < deadline, "the request never started");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let TestServer {
            state, stop, task, ..
        } = s;
        let _ = stop.send(());
        let (status, _, body) = in_flight.await.unwrap();
        assert_eq!(
            status,
            200,
            "the request in flight must complete: {}",
            String::from_utf8_lossy(&body)
        );
        task.await
            .unwrap()
            .expect("run() returns Ok after draining");
        assert!(!state.live(), "not live after shutdown");
        assert_eq!(state.manager.metrics().in_flight, 0);
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "the listener is closed"
        );
    }
}
