//! Issue 13, tracing: `anemone serve --otlp-endpoint` against a real OTLP/gRPC
//! receiver built from the official opentelemetry-proto definitions. Requests
//! carry a known W3C `traceparent` over HTTP and gRPC; the spans that arrive
//! (unary and streamed) must continue those traces, name the model, protocol, version, batch size
//! and status, and have the stage spans below them, the engine call on a
//! worker thread. Sampling changes at run time through the trace extension.

use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::{trace_setting_request, InferTensorContents};
use anemone_server::proto::{ModelInferRequest, TraceSettingRequest};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
mod receiver;
use common::serve::{wait_ready, Serve, Serving, Stderr};
use common::temp_dir::TempDir;
use receiver::{Got, Receiver};

/// `anemone serve` on free ports, until dropped.
struct Served {
    serving: Serving,
    http: SocketAddr,
    grpc: SocketAddr,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A repository with `add` (no batching) and `batched` (the same model with
/// dynamic batching: two requests within 2 s form one batch of 2).
fn repository(test: &str) -> TempDir {
    let repo = TempDir::new(&format!("otlp-{test}"));
    let model = root().join("examples/models/add/1/model.onnx");
    for name in ["add", "batched"] {
        std::fs::create_dir_all(repo.join(name).join("1")).unwrap();
        std::fs::copy(&model, repo.join(name).join("1/model.onnx")).unwrap();
    }
    std::fs::write(
        repo.join("batched/config.pbtxt"),
        "max_batch_size: 8\ndynamic_batching {\n  max_queue_delay_microseconds: 2000000\n  preferred_batch_size: [ 2 ]\n}\n",
    )
    .unwrap();
    repo
}

fn serve(repo: &Path, args: &[&str]) -> Served {
    // Export every 100 ms rather than every 5 s.
    serve_exporting_every(repo, args, "100")
}

fn serve_exporting_every(repo: &Path, args: &[&str], delay_ms: &str) -> Served {
    serve_with_stderr(repo, args, delay_ms, Stderr::Inherit)
}

/// [`serve_exporting_every`], the server's stderr going to `stderr`.
fn serve_with_stderr(repo: &Path, args: &[&str], delay_ms: &str, stderr: Stderr) -> Served {
    let serving = Serve::on_free_ports()
        .without_env("OTEL_")
        .repository(repo)
        .args(args)
        .envs(&[
            ("OTEL_BSP_SCHEDULE_DELAY", delay_ms),
            // The flags' attributes add to these, and win over them.
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "team=ml,deployment.environment=from-env",
            ),
        ])
        .stderr(stderr)
        .start();
    let http = serving.next_address("HTTP");
    let grpc = serving.next_address("gRPC");
    wait_ready(http, Duration::from_secs(60));
    Served {
        serving,
        http,
        grpc,
    }
}

/// One HTTP/1.1 request: `(status, body)`.
fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

const ADD_BODY: &str = r#"{"inputs": [
    {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [4, 3, 2, 1]}]}"#;

/// An HTTP inference on `model` within trace `trace_id`, parent `span_id`.
fn http_infer(http: SocketAddr, model: &str, trace_id: &str, span_id: &str) -> u16 {
    let parent = format!("00-{trace_id}-{span_id}-01");
    let headers = [("traceparent", parent.as_str()), ("tracestate", "vendor=x")];
    let path = format!("/v2/models/{model}/infer");
    let (status, body) = http_request(http, "POST", &path, &headers, ADD_BODY);
    assert_eq!(status, 200, "{body}");
    status
}

fn post_setting(http: SocketAddr, path: &str, body: &str) -> serde_json::Value {
    let (status, answer) = http_request(http, "POST", path, &[], body);
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).unwrap()
}

fn id(n: u32, width: usize) -> String {
    format!("{n:0width$x}")
}

/// Checks a request span and its stage spans; returns the stage spans by name.
fn check_request(
    spans: &[Got],
    parent: &str,
    model: &str,
    protocol: &str,
    status: &str,
) -> HashMap<String, Got> {
    let request = spans.iter().find(|s| s.name == "infer").unwrap();
    assert_eq!(request.parent, parent, "the client's span is the parent");
    assert_eq!(request.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(request.status, 1, "STATUS_CODE_OK");
    let a = &request.attributes;
    assert_eq!(a["model"], model);
    assert_eq!(a["protocol"], protocol);
    assert_eq!(a["version"], "1");
    assert_eq!(a["batch_size"], "1");
    assert_eq!(a["status"], status);
    assert_eq!(
        a["trace_id"], request.trace_id,
        "the trace id, for the logs"
    );
    assert_eq!(request.resource["service.name"], "anemone-test");
    assert_eq!(request.resource["deployment.environment"], "ci");
    assert_eq!(
        request.resource.get("team").map(String::as_str),
        Some("ml"),
        "from OTEL_RESOURCE_ATTRIBUTES"
    );
    spans
        .iter()
        .filter(|s| s.parent == request.span_id)
        .map(|s| (s.name.clone(), s.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_spans_continue_the_callers_trace_over_http_and_grpc() {
    let (receiver, otlp) = Receiver::start().await;
    let repo = repository("spans");
    let endpoint = format!("http://{otlp}");
    let serving = serve(
        &repo,
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-service-name",
            "anemone-test",
            "--otlp-resource-attribute",
            "deployment.environment=ci",
        ],
    );
    let stages = ["compute_infer", "compute_input", "compute_output", "queue"];

    // HTTP, with a traceparent. (Blocking clients run off the test's runtime.)
    let http = serving.http;
    let blocking = |f: Box<dyn FnOnce() + Send>| tokio::task::spawn_blocking(f);
    let (t1, s1) = (id(0xa1, 32), id(0xb1, 16));
    let (a, b) = (t1.clone(), s1.clone());
    blocking(Box::new(move || {
        assert_eq!(http_infer(http, "add", &a, &b), 200)
    }))
    .await
    .unwrap();
    let spans = receiver.trace(&t1, 4).await;
    let children = check_request(&spans, &s1, "add", "http", "200");
    let request = spans.iter().find(|s| s.name == "infer").unwrap();
    assert_eq!(request.trace_state, "vendor=x", "tracestate is carried");
    let mut names: Vec<&str> = children.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, stages);
    let engine = &children["compute_infer"];
    assert!(
        engine.attributes["thread.name"].starts_with("anemone-worker"),
        "the engine call ran on a worker thread: {engine:?}"
    );

    // gRPC, with the traceparent in the metadata.
    let (t2, s2) = (id(0xa2, 32), id(0xb2, 16));
    let mut grpc = GrpcInferenceServiceClient::connect(format!("http://{}", serving.grpc))
        .await
        .unwrap();
    let tensor = |name: &str, data: Vec<f32>| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![1, 4],
        contents: Some(InferTensorContents {
            fp32_contents: data,
            ..Default::default()
        }),
        ..Default::default()
    };
    let add = || ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![tensor("x", vec![1.0; 4]), tensor("y", vec![2.0; 4])],
        ..Default::default()
    };
    let mut request = tonic::Request::new(add());
    let parent = format!("00-{t2}-{s2}-01");
    request
        .metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    grpc.model_infer(request).await.unwrap();
    let spans = receiver.trace(&t2, 4).await;
    let children = check_request(&spans, &s2, "add", "grpc", "Ok");
    assert_eq!(children.len(), 4, "{children:#?}");

    // The gRPC stream: a span per request, each a child of the stream's traceparent.
    let (t7, s7) = (id(0xa7, 32), id(0xd7, 16));
    let mut call = tonic::Request::new(tokio_stream::iter([add(), add()]));
    let parent = format!("00-{t7}-{s7}-01");
    call.metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    let mut answers = grpc.model_stream_infer(call).await.unwrap().into_inner();
    while let Some(answer) = answers.message().await.unwrap() {
        assert_eq!(answer.error_message, "");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let requests = loop {
        let spans = receiver.spans(&t7);
        let requests: Vec<Got> = spans
            .iter()
            .filter(|s| s.name == "infer")
            .cloned()
            .collect();
        if requests.len() == 2 {
            break requests;
        }
        assert!(
            Instant::now() < deadline,
            "two stream requests, got {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for r in &requests {
        assert_eq!(r.parent, s7);
        assert_eq!(
            (
                r.attributes["protocol"].as_str(),
                r.attributes["status"].as_str()
            ),
            ("grpc", "Ok")
        );
    }

    // Two requests batched together: each has its own stage spans, with the batch's size.
    let (t3, t4) = (id(0xa3, 32), id(0xa4, 32));
    let sid = id(0xb3, 16);
    let both: Vec<_> = [t3.clone(), t4.clone()]
        .into_iter()
        .map(|t| {
            let sid = sid.clone();
            std::thread::spawn(move || http_infer(http, "batched", &t, &sid))
        })
        .collect();
    both.into_iter()
        .for_each(|h| assert_eq!(h.join().unwrap(), 200));
    for t in [&t3, &t4] {
        let spans = receiver.trace(t, 5).await;
        let children = check_request(&spans, &sid, "batched", "http", "200");
        for stage in ["batch_assembly", "compute_infer", "compute_output"] {
            let a = &children[stage].attributes;
            let batch = (a["batch_size"].as_str(), a["batch_requests"].as_str());
            assert_eq!(batch, ("2", "2"), "{stage}");
        }
    }

    // Level OFF at run time: nothing traced until it is back on.
    let (t5, t6) = (id(0xa5, 32), id(0xa6, 32));
    let (sent, url) = (t6.clone(), endpoint.clone());
    blocking(Box::new(move || {
        let off = post_setting(http, "/v2/trace/setting", r#"{"trace_level": ["OFF"]}"#);
        assert_eq!(off["trace_level"], serde_json::json!(["OFF"]));
        http_infer(http, "add", &t5, &sid);
        let on = post_setting(http, "/v2/trace/setting", r#"{"trace_level": null}"#);
        assert_eq!(on["trace_level"], serde_json::json!(["TIMESTAMPS"]));
        assert_eq!(on["url"], url);
        http_infer(http, "add", &sent, &sid);
    }))
    .await
    .unwrap();
    receiver.trace(&t6, 4).await;
    assert!(receiver.spans(&id(0xa5, 32)).is_empty(), "traced while OFF");

    // One in two over gRPC's TraceSetting: of two requests, exactly one is traced.
    let rate = |value: &str| TraceSettingRequest {
        settings: [(
            "trace_rate".to_string(),
            trace_setting_request::SettingValue {
                value: vec![value.into()],
            },
        )]
        .into(),
        model_name: String::new(),
    };
    let answer = grpc.trace_setting(rate("2")).await.unwrap().into_inner();
    assert_eq!(answer.settings["trace_rate"].value, ["2"]);
    let traces: Vec<String> = (0..3).map(|i| id(0xc0 + i, 32)).collect();
    let (sent, sid) = (traces.clone(), id(0xb7, 16));
    blocking(Box::new(move || {
        http_infer(http, "add", &sent[0], &sid);
        http_infer(http, "add", &sent[1], &sid);
    }))
    .await
    .unwrap();
    grpc.trace_setting(rate("1")).await.unwrap();
    let (sent, sid) = (traces[2].clone(), id(0xb8, 16));
    blocking(Box::new(move || {
        http_infer(http, "add", &sent, &sid);
    }))
    .await
    .unwrap();
    receiver.trace(&traces[2], 4).await;
    let traced = traces[..2]
        .iter()
        .filter(|t| !receiver.spans(t).is_empty())
        .count();
    assert_eq!(traced, 1, "trace_rate 2 traces one request in two");
    drop(serving);
}

#[test]
fn issue_13_bad_tracing_flags_stop_the_server_with_what_to_do() {
    let repo = repository("flags");
    for (args, says) in [
        (
            vec!["--trace-level", "TIMESTAMPS"],
            "needs somewhere to send traces: add --otlp-endpoint URL",
        ),
        (
            vec![
                "--otlp-endpoint",
                "http://127.0.0.1:9",
                "--otlp-resource-attribute",
                "novalue",
            ],
            "expected KEY=VALUE",
        ),
        (
            vec![
                "--otlp-endpoint",
                "http://127.0.0.1:9",
                "--otlp-header",
                "x-api-key",
            ],
            "--otlp-header 'x-api-key': expected KEY=VALUE",
        ),
        (vec!["--trace-level", "LOUD"], "unknown trace level 'LOUD'"),
        // Triton's trace files: a level needs the file; one mode at a time;
        // the file's folder must exist.
        (
            vec![
                "--trace-config",
                "mode=triton",
                "--trace-config",
                "level=TIMESTAMPS",
            ],
            "or --trace-file PATH for Triton's trace files",
        ),
        (
            vec![
                "--trace-file",
                "/tmp/t.json",
                "--otlp-endpoint",
                "http://127.0.0.1:9",
            ],
            "give one",
        ),
        (
            vec![
                "--trace-config",
                "mode=opentelemetry",
                "--trace-config",
                "triton,file=/tmp/trace.json",
            ],
            "give one mode",
        ),
        (vec!["--trace-log-frequency", "5"], "give the file too"),
        (
            vec![
                "--trace-file",
                "/tmp/t.json",
                "--trace-config",
                "triton,file=/tmp/u.json",
            ],
            "--trace-config triton,file=; give one",
        ),
        (
            vec!["--trace-file", "/nonexistent-folder/t.json"],
            "the folder /nonexistent-folder does not exist",
        ),
        (
            vec![
                "--trace-config",
                "mode=opentelemetry",
                "--trace-config",
                "opentelemetry,url=127.0.0.1:9/v1/traces",
                "--otlp-endpoint",
                "http://127.0.0.1:9",
            ],
            "the collector is given twice",
        ),
    ] {
        // The trace flags checked together are flag mistakes (exit 2), a
        // resource attribute or header that is not KEY=VALUE among them; a
        // trace file's folder, read when the file is opened, exits 1.
        let late = args.contains(&"/nonexistent-folder/t.json");
        let status = if late { 1 } else { 2 };
        refused(&repo, &args, says, status);
    }
}

/// `anemone serve` on `repo` with `args` exits `status` at once, saying `says`.
fn refused(repo: &Path, args: &[&str], says: &str, status: i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_anemone"))
        .args([
            "serve",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--model-repository",
        ])
        .arg(repo)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
}

/// A request that fails is traced with its status, and the OpenTelemetry
/// status ERROR with the reason; a client's "not sampled" flag is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_a_failed_request_has_its_status_on_the_span() {
    let (receiver, otlp) = Receiver::start().await;
    let repo = repository("failed");
    let endpoint = format!("http://{otlp}");
    let serving = serve(&repo, &["--otlp-endpoint", &endpoint]);
    let (trace_id, span_id) = (id(0xe1, 32), id(0xf1, 16));
    let parent = format!("00-{trace_id}-{span_id}-01");
    let http = serving.http;
    let unsampled = id(0xe3, 32);
    let (status, body) = tokio::task::spawn_blocking(move || {
        // First a client that says "not sampled": honoured, nothing recorded.
        let not_sampled = format!("00-{}-{}-00", id(0xe3, 32), id(0xf3, 16));
        let headers = [("traceparent", not_sampled.as_str())];
        let (status, _) = http_request(http, "POST", "/v2/models/add/infer", &headers, ADD_BODY);
        assert_eq!(status, 200);
        let bad = r#"{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
            {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [4, 3, 2, 1]}]}"#;
        let headers = [("traceparent", parent.as_str())];
        http_request(http, "POST", "/v2/models/add/infer", &headers, bad)
    })
    .await
    .unwrap();
    assert_eq!(status, 400, "{body}");
    let spans = receiver.trace(&trace_id, 1).await;
    let request = spans.iter().find(|s| s.name == "infer").unwrap();
    assert_eq!(request.parent, span_id);
    assert_eq!(request.attributes["status"], "400");
    assert_eq!(request.status, 2, "STATUS_CODE_ERROR: {request:?}");
    assert!(
        receiver.spans(&unsampled).is_empty(),
        "a not-sampled parent was traced"
    );
    drop(serving);
}

/// Spans not exported yet when the server stops (SIGTERM) are flushed before
/// it exits: here the exporter would otherwise wait a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_spans_are_flushed_at_shutdown() {
    let (receiver, otlp) = Receiver::start().await;
    let repo = repository("flush");
    let endpoint = format!("http://{otlp}");
    let mut serving = serve_exporting_every(&repo, &["--otlp-endpoint", &endpoint], "60000");
    let (trace_id, span_id) = (id(0xe2, 32), id(0xf2, 16));
    let http = serving.http;
    let sent = trace_id.clone();
    tokio::task::spawn_blocking(move || http_infer(http, "add", &sent, &span_id))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.spans(&trace_id).is_empty(),
        "exported before the delay"
    );
    let exit = tokio::task::spawn_blocking(move || {
        let status = serving.serving.terminate();
        (serving, status)
    });
    let (serving, status) = exit.await.unwrap();
    assert!(status.success(), "{status:?}");
    receiver.trace(&trace_id, 4).await;
    drop(serving);
}

mod ensemble;
mod http;
mod tls;
mod trace_file;
mod unreachable;
