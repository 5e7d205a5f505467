//! `--triton-metrics`: `/metrics` also has Triton's own families, with the
//! names, types and help tritonserver 2.51 writes (read off a real
//! tritonserver's `/metrics`), and values equal to anemone's own families in
//! Triton's units (microseconds). A malformed request is not counted as a
//! failure, as Triton refuses it before the model; cached answers count as
//! hits, not inferences.

use crate::support::{add_model, run_server, Repo};
use anemone_server::ServerOptions;
use serde_json::json;
use std::sync::Arc;
use tower::ServiceExt;

/// The value of the sample `name{labels}` (labels as written, in order).
pub(crate) fn sample(metrics: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in\n{metrics}"))
        .parse()
        .unwrap()
}

pub(crate) async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// `/metrics` after three identical requests (one run, two cached) and a
/// malformed one, on a server with `triton_metrics`.
async fn metrics_after_requests(tag: &str, triton_metrics: bool) -> String {
    let repo = Repo::new(tag);
    repo.write("cached/1/model.onnx", &add_model());
    repo.write(
        "cached/config.pbtxt",
        b"name: \"cached\"\nresponse_cache { enable: true }\n",
    );
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .response_cache(Some(1 << 20))
        .build()
        .unwrap();
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: repo.root(),
        ops: anemone_server::settings::OpsOptions {
            triton_metrics,
            ..Default::default()
        },
        ..Default::default()
    };
    let running = run_server(options, manager).await;
    running.ready().await;
    let router = anemone_server::http::router(Arc::clone(&running.state), 1 << 20);
    let body = json!({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    for _ in 0..3 {
        let (status, answer) = call(
            &router,
            "POST",
            "/v2/models/cached/infer",
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let bad = json!({"inputs": [
        {"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]},
        {"name": "y", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]});
    let (status, _) = call(&router, "POST", "/v2/models/cached/infer", &bad.to_string()).await;
    assert_eq!(status, 400);
    let (status, metrics) = call(&router, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    running.stop().await;
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritons_families_carry_anemones_values_in_tritons_units() {
    let m = metrics_after_requests("triton-metrics", true).await;
    // Names, types and help as tritonserver 2.51 writes them.
    for (name, kind, help) in [
        ("nv_inference_request_success", "counter", "Number of successful inference requests, all batch sizes"),
        ("nv_inference_request_failure", "counter", "Number of failed inference requests, all batch sizes"),
        ("nv_inference_count", "counter", "Number of inferences performed (does not include cached requests)"),
        ("nv_inference_exec_count", "counter", "Number of model executions performed (does not include cached requests)"),
        ("nv_inference_request_duration_us", "counter", "Cumulative inference request duration in microseconds (includes cached requests)"),
        ("nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds (includes cached requests)"),
        ("nv_inference_compute_input_duration_us", "counter", "Cumulative compute input duration in microseconds (does not include cached requests)"),
        ("nv_inference_compute_infer_duration_us", "counter", "Cumulative compute inference duration in microseconds (does not include cached requests)"),
        ("nv_inference_compute_output_duration_us", "counter", "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
        ("nv_inference_pending_request_count", "gauge", "Instantaneous number of pending requests awaiting execution per-model."),
        ("nv_cache_num_hits_per_model", "counter", "Number of cache hits per model"),
        ("nv_cache_num_misses_per_model", "counter", "Number of cache misses per model"),
    ] {
        assert!(m.contains(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n")), "{name}:\n{m}");
    }
    let model = r#"model="cached",version="1""#;
    assert_eq!(sample(&m, "nv_inference_request_success", model), 3.0);
    assert_eq!(
        sample(&m, "nv_inference_request_success", model),
        sample(&m, "anemone_inference_request_success_total", model)
    );
    // One run; the two others answered from the cache.
    assert_eq!(sample(&m, "nv_inference_count", model), 1.0);
    assert_eq!(sample(&m, "nv_inference_exec_count", model), 1.0);
    assert_eq!(sample(&m, "nv_cache_num_hits_per_model", model), 2.0);
    assert_eq!(sample(&m, "nv_cache_num_misses_per_model", model), 1.0);
    // The malformed request is anemone's invalid_input, and no Triton failure.
    assert_eq!(
        sample(
            &m,
            "anemone_inference_request_failure_total",
            r#"model="cached",version="1",reason="invalid_input""#
        ),
        1.0
    );
    for reason in ["REJECTED", "CANCELED", "BACKEND", "OTHER"] {
        let labels = format!(r#"model="cached",reason="{reason}",version="1""#);
        assert_eq!(
            sample(&m, "nv_inference_request_failure", &labels),
            0.0,
            "{reason}"
        );
    }
    // Durations: anemone's seconds as whole microseconds.
    for (triton, ours) in [
        (
            "nv_inference_request_duration_us",
            "anemone_inference_success_duration_seconds_total",
        ),
        (
            "nv_inference_queue_duration_us",
            "anemone_inference_queue_duration_seconds_total",
        ),
        (
            "nv_inference_compute_infer_duration_us",
            "anemone_inference_compute_infer_duration_seconds_total",
        ),
    ] {
        let us = sample(&m, triton, model);
        let seconds = sample(&m, ours, model);
        assert!(
            (us - (seconds * 1e6).floor()).abs() <= 1.0,
            "{triton} {us} against {ours} {seconds}"
        );
    }
    assert!(sample(&m, "nv_inference_request_duration_us", model) > 0.0);
    assert_eq!(sample(&m, "nv_inference_pending_request_count", model), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_there_is_no_triton_family() {
    let m = metrics_after_requests("no-triton-metrics", false).await;
    assert!(!m.contains("nv_"), "{m}");
}
