//! `--triton-metrics`: `/metrics` also has Triton's own families, with the
//! names, types and help tritonserver 2.51 writes (read off a real
//! tritonserver's `/metrics`), and values equal to anemone's own families in
//! Triton's units (microseconds). A malformed request is not counted as a
//! failure, as Triton refuses it before the model; cached answers count as
//! hits, not inferences.

use crate::support::{add_model, on_free_ports, run_server, Repo};
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
        ops: anemone_server::settings::OpsOptions {
            triton_metrics,
            ..Default::default()
        },
        ..on_free_ports(repo.root())
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
    // The server-wide gauges, with tritonserver 2.51's names, help and
    // order (read off it with `--cache-config local,size=...`).
    let gauges = [
        ("nv_cache_util", "Cache utilization [0.0 - 1.0]"),
        (
            "nv_cache_num_entries",
            "Number of responses stored in response cache",
        ),
        (
            "nv_cache_num_hits",
            "Number of cache hits in response cache",
        ),
        (
            "nv_cache_num_misses",
            "Number of cache misses in response cache",
        ),
        (
            "nv_cache_num_lookups",
            "Number of cache lookups in response cache",
        ),
        (
            "nv_cache_num_evictions",
            "Number of cache evictions in response cache",
        ),
        (
            "nv_cache_lookup_duration",
            "Total cache lookup duration (hit and miss), in microseconds",
        ),
        (
            "nv_cache_insertion_duration",
            "Total cache insertion duration, in microseconds",
        ),
    ];
    let mut at = 0;
    for (name, help) in gauges {
        let header = format!("# HELP {name} {help}\n# TYPE {name} gauge\n");
        let found = m[at..]
            .find(&header)
            .unwrap_or_else(|| panic!("{name} after {at}:\n{m}"));
        at += found + header.len();
    }
    let total = |name: &str| -> f64 {
        let prefix = format!("{name} ");
        (m.lines().find_map(|l| l.strip_prefix(&prefix)))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        (
            total("nv_cache_num_hits"),
            total("nv_cache_num_misses"),
            total("nv_cache_num_lookups")
        ),
        (2.0, 1.0, 3.0)
    );
    assert_eq!(total("nv_cache_num_entries"), 1.0);
    assert_eq!(total("nv_cache_num_evictions"), 0.0);
    let util = total("nv_cache_util");
    assert!(util > 0.0 && util < 1.0, "{util}");
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

/// `--metrics-config summary_latencies=true`: Triton's summaries, with its
/// names, help and labels (read off tritonserver 2.51), counts and sums
/// equal to the counters', and quantiles of what the engine really took:
/// the test backend sleeps 5, 10, ..., 100 ms for twenty requests, so the
/// nearest-rank p50 of the engine's time is the 10th (50 ms), p90 the 18th
/// (90 ms), the maximum the 20th (100 ms), each late by the sleep's
/// overshoot only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_summaries_report_the_quantiles_of_what_the_engine_took() {
    let repo = Repo::new("latency-summaries");
    let identity = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/generated/identity/model.onnx");
    repo.write("tricky/1/model.onnx", &std::fs::read(identity).unwrap());
    let manager = anemone_runtime::Manager::builder()
        .backend(crate::faults::Tricky)
        .latency_summaries(Some(vec![0.5, 0.9, 1.0]))
        .build()
        .unwrap();
    let running = run_server(on_free_ports(repo.root()), manager).await;
    running.ready().await;
    let router = anemone_server::http::router(Arc::clone(&running.state), 1 << 20);
    for k in 1..=20 {
        let value = 1000.0 + 5.0 * k as f64;
        let body = json!({"inputs": [
            {"name": "x", "shape": [1, 16], "datatype": "FP32", "data": vec![value; 16]}]});
        let (status, answer) = call(
            &router,
            "POST",
            "/v2/models/tricky/infer",
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, m) = call(&router, "GET", "/metrics", "").await;
    running.stop().await;
    for (name, help) in [
        ("nv_inference_request_summary_us", "Summary of inference request duration in microseconds (includes cached requests)"),
        ("nv_inference_queue_summary_us", "Summary of inference queuing duration in microseconds (includes cached requests)"),
        ("nv_inference_compute_input_summary_us", "Cumulative compute input duration in microseconds (does not include cached requests)"),
        ("nv_inference_compute_infer_summary_us", "Cumulative compute inference duration in microseconds (does not include cached requests)"),
        ("nv_inference_compute_output_summary_us", "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
    ] {
        assert!(m.contains(&format!("# HELP {name} {help}\n# TYPE {name} summary\n")), "{name}:\n{m}");
    }
    let model = r#"model="tricky",version="1""#;
    let infer = "nv_inference_compute_infer_summary_us";
    assert_eq!(sample(&m, &format!("{infer}_count"), model), 20.0);
    // The sum is the counter's (anemone's, in seconds; Triton's in µs).
    let counter = sample(
        &m,
        "anemone_inference_compute_infer_duration_seconds_total",
        model,
    );
    let sum = sample(&m, &format!("{infer}_sum"), model);
    assert!(
        (sum - counter * 1e6).abs() <= 1.0,
        "{sum} µs against {counter} s"
    );
    let quantile = |q: &str| sample(&m, infer, &format!(r#"{model},quantile="{q}""#)) / 1000.0;
    for (q, ms) in [("0.5", 50.0), ("0.9", 90.0), ("1", 100.0)] {
        let got = quantile(q);
        assert!(
            got >= ms && got < ms + 25.0,
            "p{q} of the engine's time: {got} ms, slept {ms} ms"
        );
    }
    let request = sample(
        &m,
        "nv_inference_request_summary_us",
        &format!(r#"{model},quantile="0.5""#),
    );
    assert!(
        request / 1000.0 >= 50.0,
        "a request lasts at least its engine call: {request} µs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_summaries_asked_for_there_is_no_summary_family() {
    let m = metrics_after_requests("no-summaries", true).await;
    assert!(!m.contains("_summary_us"), "{m}");
}
