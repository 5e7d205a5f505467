//! `--eviction lru` through the real server: a repository whose models
//! together exceed the memory budget serves every model over HTTP and gRPC
//! (with ONNX Runtime's numbers), evicts the least recently used, and shows
//! what happened in the repository index (both protocols) and `/metrics`.

use crate::support::{workspace, Repo};
use anemone_core::{npy, Tensor};
use anemone_runtime::{EvictionPolicy, Manager, ModelSpec};
use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::{self, ModelInferRequest};
use anemone_server::ControlMode;
use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// FP32 fixture cases with weights: each is charged for what it holds.
const CASES: [&str; 3] = ["small_convnet", "ocr_cls", "transformer_block"];

fn case_dir(case: &str) -> PathBuf {
    workspace().join("fixtures/generated").join(case)
}

/// A case's first run: inputs and ONNX Runtime's outputs, with its tolerances.
struct Run {
    inputs: Vec<(String, Tensor)>,
    outputs: Vec<(String, Tensor)>,
    rtol: f64,
    atol: f64,
}

fn first_run(case: &str) -> Run {
    let dir = case_dir(case);
    let text = std::fs::read_to_string(dir.join("case.json"))
        .unwrap_or_else(|e| panic!("{case}: {e}; run scripts/setup.sh"));
    let c: Value = serde_json::from_str(&text).unwrap();
    let read = |list: &Value| -> Vec<(String, Tensor)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let file = dir.join(t["file"].as_str().unwrap());
                let tensor = npy::read(std::fs::File::open(file).unwrap()).unwrap();
                (t["name"].as_str().unwrap().to_string(), tensor)
            })
            .collect()
    };
    Run {
        inputs: read(&c["runs"][0]["inputs"]),
        outputs: read(&c["runs"][0]["outputs"]),
        rtol: c["rtol"].as_f64().unwrap(),
        atol: c["atol"].as_f64().unwrap(),
    }
}

fn check(what: &str, got: &[f32], want: &Tensor, rtol: f64, atol: f64) {
    let want = want.to_vec::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = atol + rtol * f64::from(w.abs());
        assert!(
            f64::from((g - w).abs()) <= tol,
            "{what}[{i}]: {g} vs ONNX Runtime's {w}"
        );
    }
}

/// What each case is charged on tract.
async fn charges() -> Vec<(String, u64)> {
    let probe = Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let mut out = Vec::new();
    for case in CASES {
        let path = case_dir(case).join("model.onnx");
        let m = probe.load_model(ModelSpec::new(case, path)).await.unwrap();
        assert!(m.memory_footprint() > 0, "{case} is charged nothing");
        out.push((case.to_string(), m.memory_footprint()));
    }
    out
}

/// The evicting server: the shared harness, with this file's helpers below.
type Evicting = crate::support::Served;

async fn start(root: &Path, budget: u64, control: ControlMode, load: &[&str]) -> Evicting {
    let manager = Manager::builder()
        .backend(anemone_backends::TractCpu)
        .memory_budget(Some(budget))
        .eviction(EvictionPolicy::Lru)
        .build()
        .unwrap();
    let s = crate::support::serve_with(root, control, load, manager, 4 << 20).await;
    let start = Instant::now();
    while !s.state.repository.startup_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "start-up never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s
}

impl Evicting {
    /// Infers a case's first run over HTTP (JSON) and checks every output.
    async fn infer_http(&self, model: &str, case: &str) {
        let run = first_run(case);
        let inputs: Vec<Value> = run
            .inputs
            .iter()
            .map(|(name, t)| {
                json!({"name": name, "shape": t.shape(), "datatype": "FP32", "data": t.to_vec::<f32>().unwrap()})
            })
            .collect();
        let (status, body) = self
            .http(
                "POST",
                &format!("/v2/models/{model}/infer"),
                Some(json!({"inputs": inputs})),
            )
            .await;
        assert_eq!(status, 200, "{model}: {body}");
        for (name, want) in &run.outputs {
            let out = body["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{model}: no output {name} in {body}"));
            let got = crate::support::json_f32s(out);
            check(
                &format!("{model} {name} (HTTP)"),
                &got,
                want,
                run.rtol,
                run.atol,
            );
        }
    }

    /// Infers a case's first run over gRPC (raw tensors) and checks every output.
    async fn infer_grpc(&self, model: &str, case: &str) {
        let run = first_run(case);
        let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap();
        let request = ModelInferRequest {
            model_name: model.into(),
            inputs: run
                .inputs
                .iter()
                .map(|(name, t)| InferInputTensor {
                    name: name.clone(),
                    datatype: "FP32".into(),
                    shape: t.shape().iter().map(|d| *d as i64).collect(),
                    ..Default::default()
                })
                .collect(),
            raw_input_contents: run
                .inputs
                .iter()
                .map(|(_, t)| t.as_bytes().unwrap().to_vec().into())
                .collect(),
            ..Default::default()
        };
        let response = client
            .model_infer(request)
            .await
            .unwrap_or_else(|e| panic!("{model} over gRPC: {e}"))
            .into_inner();
        for (name, want) in &run.outputs {
            let i = response
                .outputs
                .iter()
                .position(|o| &o.name == name)
                .unwrap_or_else(|| panic!("{model}: no output {name}"));
            let got: Vec<f32> = response.raw_output_contents[i]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            check(
                &format!("{model} {name} (gRPC)"),
                &got,
                want,
                run.rtol,
                run.atol,
            );
        }
    }

    /// The HTTP repository index: name → (state, reason).
    async fn index(&self) -> Vec<(String, String, String)> {
        let (status, body) = self.http("POST", "/v2/repository/index", None).await;
        assert_eq!(status, 200, "{body}");
        body.as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                (s("name"), s("state"), s("reason"))
            })
            .collect()
    }

    async fn metrics(&self) -> String {
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn resident(&self) -> Vec<String> {
        self.state
            .manager
            .models()
            .iter()
            .map(|m| m.name().to_string())
            .collect()
    }
}

/// One metric's value, by its exact name and labels.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_larger_than_the_budget_serves_every_model() {
    let charges = charges().await;
    // Room for any two of the three, never for all three.
    let budget = charges.iter().map(|(_, b)| *b).sum::<u64>() - 1;
    let repo = Repo::new("evict-serve");
    for case in CASES {
        repo.write(
            &format!("{case}/1/model.onnx"),
            &std::fs::read(case_dir(case).join("model.onnx")).unwrap(),
        );
    }
    let s = start(&repo.root(), budget, ControlMode::None, &[]).await;
    // Start-up loaded all three; one had to make room.
    let index = s.index().await;
    let evicted: Vec<_> = index
        .iter()
        .filter(|(_, st, _)| st == "UNAVAILABLE")
        .collect();
    assert_eq!(evicted.len(), 1, "{index:?}");
    assert!(
        evicted[0].2.starts_with("evicted (LRU) to make room for '"),
        "{index:?}"
    );
    assert!(
        evicted[0]
            .2
            .ends_with("; the next request for it loads it again"),
        "{index:?}"
    );
    assert_eq!(s.resident().len(), 2);
    assert!(
        s.state.ready(),
        "evicted models do not make the server unready"
    );

    // Use the two resident ones in a known order, then ask for the evicted one:
    // the least recently used of the two is the one evicted for it.
    let cold = evicted[0].0.clone();
    let warm: Vec<String> = CASES
        .iter()
        .map(|c| c.to_string())
        .filter(|c| *c != cold)
        .collect();
    s.infer_http(&warm[0], &warm[0]).await;
    s.infer_http(&warm[1], &warm[1]).await;
    s.infer_http(&cold, &cold).await;
    let mut want_resident = vec![warm[1].clone(), cold.clone()];
    want_resident.sort();
    assert_eq!(
        s.resident(),
        want_resident,
        "the LRU one ({}) goes",
        warm[0]
    );
    let index = s.index().await;
    let row = index.iter().find(|(n, ..)| *n == warm[0]).unwrap();
    assert_eq!(row.1, "UNAVAILABLE", "{index:?}");
    assert!(
        row.2
            .contains(&format!("evicted (LRU) to make room for '{cold}'")),
        "{row:?}"
    );

    // Metadata and config of the evicted model are answered without loading it.
    let (status, meta) = s
        .http("GET", &format!("/v2/models/{}", warm[0]), None)
        .await;
    assert_eq!(status, 200, "{meta}");
    let names: Vec<&str> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let run = first_run(&warm[0]);
    assert_eq!(
        names,
        run.inputs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
    );
    assert_eq!(meta["versions"], json!(["1"]), "{meta}");
    let (status, config) = s
        .http("GET", &format!("/v2/models/{}/config", warm[0]), None)
        .await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["name"], warm[0].as_str(), "{config}");
    assert!(
        !s.resident().contains(&warm[0]),
        "metadata does not load it"
    );

    // The gRPC index says the same, and a gRPC request brings it back.
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let grpc_index = client
        .repository_index(proto::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    let g = grpc_index.iter().find(|m| m.name == warm[0]).unwrap();
    assert_eq!(
        (g.state.as_str(), g.reason.as_str()),
        (row.1.as_str(), row.2.as_str())
    );
    s.infer_grpc(&warm[0], &warm[0]).await;
    assert!(s.resident().contains(&warm[0]));
    assert_eq!(s.resident().len(), 2);

    // Metrics: evictions, on-demand loads, bytes charged within the budget, load times.
    let m = s.metrics().await;
    let on_demand = |model: &str| {
        sample(
            &m,
            &format!("anemone_model_on_demand_loads_total{{model=\"{model}\"}}"),
        )
    };
    assert_eq!(on_demand(&cold), Some(1.0), "{m}");
    assert_eq!(on_demand(&warm[0]), Some(1.0), "{m}");
    assert_eq!(
        sample(
            &m,
            &format!("anemone_model_evictions_total{{model=\"{}\"}}", warm[0])
        ),
        Some(1.0),
        "{m}"
    );
    let used = sample(&m, "anemone_memory_used_bytes").unwrap();
    assert!(used > 0.0 && used <= budget as f64, "{used} of {budget}");
    assert_eq!(
        sample(&m, "anemone_memory_budget_bytes"),
        Some(budget as f64)
    );
    assert_eq!(
        sample(&m, "anemone_model_load_duration_seconds_count"),
        Some(5.0),
        "{m}"
    );
    assert!(m.contains("anemone_model_evicted{model=\""), "{m}");
    s.shutdown().await;
}

/// In explicit mode, an evicted model comes back on demand; `unload` forgets
/// it, so a request for it is refused rather than loading it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_unload_of_an_evicted_model_forgets_it() {
    let charges = charges().await;
    let (small, large) = (&charges[0], &charges[1]);
    let repo = Repo::new("evict-explicit");
    for case in ["small_convnet", "ocr_cls"] {
        repo.write(
            &format!("{case}/1/model.onnx"),
            &std::fs::read(case_dir(case).join("model.onnx")).unwrap(),
        );
    }
    // Room for the larger one, not for both.
    let budget = large.1 + small.1 / 2;
    let s = start(
        &repo.root(),
        budget,
        ControlMode::Explicit,
        &["small_convnet"],
    )
    .await;
    let (status, body) = s
        .http("POST", "/v2/repository/models/ocr_cls/load", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.resident(), ["ocr_cls"]);
    let (status, body) = s.http("GET", "/v2/models/small_convnet/ready", None).await;
    assert_eq!(status, 503, "not resident: {body}");
    s.infer_http("small_convnet", "small_convnet").await;
    assert_eq!(s.resident(), ["small_convnet"]);
    // A load request for the evicted model, unchanged on disk, loads it: the
    // "loaded and unchanged, nothing to do" rule is for a model that serves.
    let (status, body) = s
        .http("POST", "/v2/repository/models/ocr_cls/load", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.resident(), ["ocr_cls"], "the load did not bring it back");
    s.infer_http("small_convnet", "small_convnet").await;
    assert_eq!(s.resident(), ["small_convnet"]);

    let (status, body) = s
        .http("POST", "/v2/repository/models/ocr_cls/unload", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(s.state.manager.evicted().is_empty());
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/ocr_cls/infer",
            Some(json!({"inputs": []})),
        )
        .await;
    assert!(status == 404 || status == 400, "{status} {body}");
    let index = s.index().await;
    let row = index.iter().find(|(n, ..)| n == "ocr_cls").unwrap();
    assert_eq!(row.1, "UNAVAILABLE", "{index:?}");
    s.shutdown().await;
}
