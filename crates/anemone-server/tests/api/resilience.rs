//! Faults through the real server, over both protocols: a backend that hangs
//! past the request timeout, a backend that loses its device, a model file
//! corrupted on disk in poll mode, and shutdown with requests running and
//! queued.

use crate::faults::{grpc_request_to, Faulty};
use crate::net::{fixture, HttpConn, NetServer, Repo};
use crate::overload::{body, drained, get, sample, stats};
use crate::support::timed_out;
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::ModelInferRequest;
use anemone_server::{ControlMode, ServerOptions};
use serde_json::json;
use std::time::{Duration, Instant};
use tonic::Code;

/// A backend call that hangs (3 s) past the request's timeout (300 ms):
/// HTTP 504 and gRPC DEADLINE_EXCEEDED at the timeout; meanwhile another
/// model answers at once; once the call ends, the gauges are back at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_backend_times_out_and_leaves_the_others_alone() {
    let s = Faulty::start_with("hang", None, &[("tricky", None), ("other", None)], false).await;
    let started = Instant::now();
    let (status, answer) = s
        .http_to("tricky", 4000.0, json!({"timeout": 300_000}))
        .await;
    assert_eq!(status, 504, "{answer}");
    assert!(
        timed_out(answer["error"].as_str().unwrap_or_default(), "300ms"),
        "{answer}"
    );
    let e = s
        .client()
        .await
        .model_infer(grpc_request_to("tricky", 4000.0, Some(300_000), None))
        .await
        .expect_err("a 300 ms timeout on a 3 s call");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(timed_out(e.message(), "300ms"), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered at the timeout, not when the call ended"
    );
    // Both engine calls still hang; another model is unaffected.
    assert!(s.state.manager.metrics().in_flight >= 1);
    for x in [1.0, 2.0, 3.0] {
        let (status, answer) = s.http_to("other", x, json!({})).await;
        assert_eq!(
            (status, &answer["outputs"][0]["data"]),
            (200, &json!(vec![x; 16]))
        );
        s.client()
            .await
            .model_infer(grpc_request_to("other", x, None, None))
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the other model waited for the hung one"
    );
    drained(&s).await;
    assert_eq!(stats(&s, "tricky").await, (0, 2));
    assert_eq!(stats(&s, "other").await, (6, 0));
    s.stop().await;
}

/// A backend that reports its device lost: that request fails with the
/// reason, the model moves to its standby backend (tract CPU) and serves on
/// it, and the index, the model's metadata and the metrics say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_device_moves_the_model_to_its_standby_backend_with_the_reason_visible() {
    let config = "parameters { key: \"backends\" value: { string_value: \"tricky,tract-cpu\" } }";
    let s = Faulty::start_with("device-lost", None, &[("tricky", Some(config))], true).await;
    let meta: serde_json::Value =
        serde_json::from_str(&get(&s, "/v2/models/tricky").await).unwrap();
    assert_eq!(meta["platform"], "tricky", "{meta}");
    let (status, answer) = s.http_to("tricky", 666.0, json!({})).await;
    assert_eq!(status, 500, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(message.contains("lost its device"), "{message}");
    // The fallback runs in the background: wait for the new backend.
    let start = Instant::now();
    let meta = loop {
        let meta: serde_json::Value =
            serde_json::from_str(&get(&s, "/v2/models/tricky").await).unwrap();
        if meta["platform"] == "tract-cpu" {
            break meta;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no fallback: {meta}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let selection = meta["backend_selection"].to_string();
    assert!(
        selection.contains("device_lost") && selection.contains("fell off the bus"),
        "{selection}"
    );
    let mut conn = HttpConn::connect(s.http).await;
    let r = conn.send("POST", "/v2/repository/index", b"").await.json();
    let row = r
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "tricky")
        .unwrap()
        .clone();
    let reason = row["reason"].as_str().unwrap();
    assert_eq!(row["state"], "READY", "{row}");
    assert!(
        reason.contains("tract-cpu") && reason.contains("device_lost"),
        "{reason}"
    );
    // The same input now runs on tract: the identity model gives it back.
    let (status, answer) = s.http_to("tricky", 666.0, json!({})).await;
    assert_eq!(
        (status, &answer["outputs"][0]["data"]),
        (200, &json!(vec![666.0; 16]))
    );
    let m = get(&s, "/metrics").await;
    assert_eq!(
        sample(
            &m,
            "anemone_backend_fallbacks_total",
            &["model=\"tricky\"", "reason=\"device_lost\""]
        ),
        1.0,
        "{m}"
    );
    s.stop().await;
}

/// In poll mode, a model file overwritten with garbage while the server runs:
/// the reload fails, the index says why, and the old version keeps serving
/// the right answers over both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_corrupted_in_poll_mode_leaves_the_old_version_serving() {
    let repo = Repo::new("corrupt").model("identity", &fixture("identity/model.onnx"), None);
    let server = NetServer::start_with(ServerOptions {
        repository: repo.0.to_path_buf(),
        control: ControlMode::Poll,
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    server.wait_ready().await;
    std::fs::write(
        repo.0.join("identity/1/model.onnx"),
        b"\x08\x07garbage, not a protobuf at all",
    )
    .unwrap();
    let mut conn = server.http_client().await;
    let start = Instant::now();
    let row = loop {
        let rows = conn.send("POST", "/v2/repository/index", b"").await.json();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "identity")
            .unwrap()
            .clone();
        if row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("still serving"))
        {
            break row;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the corrupt file was never noticed: {row}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row["state"], "READY", "{row}");
    let reason = row["reason"].as_str().unwrap();
    assert!(reason.contains("model.onnx"), "{reason}");
    let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.5 - 3.0).collect();
    let r = conn
        .send(
            "POST",
            "/v2/models/identity/infer",
            json!({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x}]})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["outputs"][0]["data"], json!(x));
    let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let answer = server
        .grpc_client()
        .await
        .model_infer(ModelInferRequest {
            model_name: "identity".into(),
            inputs: vec![InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![1, 16],
                ..Default::default()
            }],
            raw_input_contents: vec![raw.clone()].into_iter().map(Into::into).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.raw_output_contents, vec![raw]);
    server.stop().await;
}

/// Shutdown with one request running and three queued behind it (a model
/// with a queue and one instance): readiness turns false first (the idle
/// connections of probes are closed), every
/// request is answered 200, and the server stops well within its exit timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_running_and_queued_requests_with_readiness_false_first() {
    let config = "max_batch_size: 1
dynamic_batching { default_queue_policy { max_queue_size: 8 } }
instance_group [ { count: 1 kind: KIND_CPU } ]
";
    let s = Faulty::start_with("drain", None, &[("queued", Some(config))], false).await;
    let mut clients = Vec::new();
    for (i, x) in [1600.0, 1300.0, 1300.0, 1300.0].into_iter().enumerate() {
        let addr = s.http;
        clients.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(addr).await;
            let r = conn.send("POST", "/v2/models/queued/infer", &body(x)).await;
            (i, r.status, String::from_utf8_lossy(&r.body).into_owned())
        }));
        // In this order: the first runs, the others queue behind it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    while s.state.manager.metrics().in_flight < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never 4 in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = get(&s, "/metrics").await;
    assert_eq!(sample(&m, "anemone_pending_requests", &[]), 3.0, "{m}");
    let state = std::sync::Arc::clone(&s.state);
    let started = Instant::now();
    let done = s.begin_stop();
    while state.ready() {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still ready after shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for c in clients {
        let (i, status, text) = c.await.unwrap();
        assert_eq!(status, 200, "request {i}: {text}");
    }
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("stopped within the exit timeout")
        .unwrap()
        .unwrap();
    // 1.6 s + 3 × 0.3 s of engine time, far under the 10 s exit timeout.
    assert!(started.elapsed() < Duration::from_secs(8));
}
