//! Ensembles (issue 12) end to end: the OCR example pipeline
//! (preprocess -> PP-OCRv4 det -> binarize) against ONNX Runtime running the
//! three models in turn (references from `scripts/gen_fixtures.py`, case
//! `ocr_ensemble`), over HTTP JSON, HTTP binary and gRPC; the composing models'
//! statistics; the response cache at the ensemble's level.

use crate::support::{serve_on, workspace, Repo, Served};
use anemone_core::Tensor;
use anemone_server::proto::{self, model_infer_request::InferInputTensor};
use anemone_server::ControlMode;
use axum::body::Body;
use axum::http::Request;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tower::ServiceExt;

fn fixture() -> PathBuf {
    workspace().join("fixtures/generated/ocr_ensemble")
}

fn npy(name: &str) -> Tensor {
    let bytes = std::fs::read(fixture().join(name)).unwrap();
    anemone_core::npy::from_bytes(&bytes).unwrap()
}

/// The example's committed configurations with the generated model files.
pub fn ocr_repo(tag: &str) -> Repo {
    let repo = Repo::new(tag);
    let configs = workspace().join("examples/ocr_ensemble/model_repository");
    for model in ["preprocess", "det", "binarize", "ocr"] {
        let config = std::fs::read(configs.join(model).join("config.pbtxt")).unwrap();
        repo.write(&format!("{model}/config.pbtxt"), &config);
    }
    for model in ["preprocess", "det", "binarize"] {
        let file = fixture()
            .join("repository")
            .join(model)
            .join("1/model.onnx");
        repo.write(
            &format!("{model}/1/model.onnx"),
            &std::fs::read(file).unwrap(),
        );
    }
    std::fs::create_dir_all(repo.root().join("ocr/1")).unwrap();
    repo
}

pub async fn wait_ready(s: &Served, model: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while s
        .http("GET", &format!("/v2/models/{model}/ready"), None)
        .await
        .0
        != 200
    {
        assert!(Instant::now() < deadline, "{model} never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn serve_ocr(repo: &Repo, cache: Option<u64>) -> Served {
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .response_cache(cache)
        .build()
        .unwrap();
    let s = serve_on(&repo.root(), ControlMode::None, &[], manager).await;
    wait_ready(&s, "ocr").await;
    s
}

/// `prob` within the fixture's tolerance of ONNX Runtime's, and `mask`
/// equal to its (except where the reference probability sits on the threshold).
fn check(run: usize, prob: &[f32], mask: &[u8], how: &str) {
    let want_prob = npy(&format!("run{run}_prob.npy")).to_vec::<f32>().unwrap();
    let want_mask = npy(&format!("run{run}_mask.npy")).to_vec::<u8>().unwrap();
    assert_eq!(prob.len(), want_prob.len(), "{how} run {run}: prob length");
    for (i, (g, w)) in prob.iter().zip(&want_prob).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
            "{how} run {run}: prob[{i}] = {g}, ONNX Runtime {w}"
        );
    }
    assert_eq!(mask.len(), want_mask.len(), "{how} run {run}: mask length");
    for (i, (g, w)) in mask.iter().zip(&want_mask).enumerate() {
        assert!(
            g == w || (want_prob[i] - 0.3).abs() < 1e-3,
            "{how} run {run}: mask[{i}] = {g}, ONNX Runtime {w} (prob {})",
            want_prob[i]
        );
    }
}

async fn http_json(s: &Served, run: usize) {
    let image = npy(&format!("run{run}_image.npy"));
    let body = json!({"inputs": [{
        "name": "image", "shape": image.shape(), "datatype": "UINT8",
        "data": image.to_vec::<u8>().unwrap(),
    }]});
    let (status, body) = s.http("POST", "/v2/models/ocr/infer", Some(body)).await;
    assert_eq!(status, 200, "{body}");
    let output = |name: &str| -> &Value {
        body["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap()
    };
    let want: Vec<usize> = npy(&format!("run{run}_prob.npy")).shape().to_vec();
    assert_eq!(output("prob")["shape"], json!(want));
    assert_eq!(output("mask")["datatype"], "UINT8");
    let floats = |v: &Value| -> Vec<f32> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let bytes = |v: &Value| -> Vec<u8> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect()
    };
    check(
        run,
        &floats(output("prob")),
        &bytes(output("mask")),
        "HTTP JSON",
    );
}

async fn http_binary(s: &Served, run: usize) {
    let image = npy(&format!("run{run}_image.npy"));
    let raw = image.as_bytes().unwrap().to_vec();
    let header = json!({
        "inputs": [{"name": "image", "shape": image.shape(), "datatype": "UINT8",
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "prob", "parameters": {"binary_data": true}},
                    {"name": "mask", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let request = Request::builder()
        .method("POST")
        .uri("/v2/models/ocr/infer")
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", header.len().to_string())
        .body(Body::from(body))
        .unwrap();
    let response = s.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let n: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let meta: Value = serde_json::from_slice(&bytes[..n]).unwrap();
    let (mut at, mut parts) = (n, Vec::new());
    for output in meta["outputs"].as_array().unwrap() {
        let size = output["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        parts.push((
            output["name"].as_str().unwrap().to_string(),
            bytes[at..at + size].to_vec(),
        ));
        at += size;
    }
    assert_eq!(parts[0].0, "prob");
    assert_eq!(parts[1].0, "mask");
    let prob: Vec<f32> = parts[0]
        .1
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    check(run, &prob, &parts[1].1, "HTTP binary");
}

async fn grpc(s: &Served, run: usize) {
    let image = npy(&format!("run{run}_image.npy"));
    let r = s
        .client()
        .await
        .model_infer(proto::ModelInferRequest {
            model_name: "ocr".into(),
            inputs: vec![InferInputTensor {
                name: "image".into(),
                datatype: "UINT8".into(),
                shape: image.shape().iter().map(|&d| d as i64).collect(),
                ..Default::default()
            }],
            raw_input_contents: vec![image.as_bytes().unwrap().to_vec()]
                .into_iter()
                .map(Into::into)
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let index = |name: &str| r.outputs.iter().position(|o| o.name == name).unwrap();
    let prob: Vec<f32> = r.raw_output_contents[index("prob")]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    check(run, &prob, &r.raw_output_contents[index("mask")], "gRPC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ocr_ensemble_matches_onnx_runtime_over_http_json_binary_and_grpc() {
    let repo = ocr_repo("ensemble-ocr");
    let s = serve_ocr(&repo, None).await;
    let (status, meta) = s.http("GET", "/v2/models/ocr", None).await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["platform"], "ensemble");
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, -1, -1, 3]));
    for run in [0, 1] {
        http_json(&s, run).await;
        http_binary(&s, run).await;
        grpc(&s, run).await;
    }
    // Six ensemble requests, each one request to every composing model.
    let (_, stats) = s.http("GET", "/v2/models/stats", None).await;
    let success = |model: &str| {
        stats["model_stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == model)
            .unwrap()["inference_stats"]["success"]["count"]
            .as_u64()
            .unwrap()
    };
    for model in ["ocr", "preprocess", "det", "binarize"] {
        assert_eq!(success(model), 6, "{model}: {stats}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ensemble_caches_at_its_own_level() {
    let repo = ocr_repo("ensemble-cache");
    let text = std::fs::read_to_string(repo.root().join("ocr/config.pbtxt")).unwrap();
    repo.write(
        "ocr/config.pbtxt",
        format!("{text}\nresponse_cache {{ enable: true }}\n").as_bytes(),
    );
    let s = serve_ocr(&repo, Some(64 << 20)).await;
    for _ in 0..3 {
        http_json(&s, 0).await;
    }
    let stats = |model: &'static str| {
        let s = &s;
        async move {
            let (_, v) = s
                .http("GET", &format!("/v2/models/{model}/stats"), None)
                .await;
            v["model_stats"][0]["inference_stats"].clone()
        }
    };
    let ocr = stats("ocr").await;
    assert_eq!(ocr["cache_hit"]["count"], 2, "{ocr}");
    assert_eq!(ocr["cache_miss"]["count"], 1, "{ocr}");
    assert_eq!(ocr["success"]["count"], 3, "{ocr}");
    // The steps ran once: the hits never reached the composing models.
    assert_eq!(stats("det").await["success"]["count"], 1);
    s.shutdown().await;
}
