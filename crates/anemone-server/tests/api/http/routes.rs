//! The server, model and statistics routes: metadata, health, readiness,
//! model config, statistics and Prometheus metrics.

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
    // A version the model does not serve is unknown, as on the other routes.
    assert_eq!(s.get("/v2/models/add/versions/2/ready").await.status, 404);
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
            .any(|l| l == "anemone_inference_request_success_total{model=\"add\",version=\"1\"} 1"),
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
