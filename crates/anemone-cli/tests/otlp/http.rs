//! OTLP/HTTP: `--otlp-protocol http/protobuf`, and Triton's command line
//! for its OpenTelemetry mode (`--trace-config mode=opentelemetry`,
//! `opentelemetry,url=HOST:PORT/v1/traces`, resources and the batch
//! processor's delay), against a plain HTTP receiver that decodes the
//! protobuf bodies with the official definitions.

use super::*;

/// The request span of trace `trace_id`, once it and one stage span below
/// it have arrived.
async fn request_span(receiver: &Receiver, trace_id: &str) -> Got {
    let spans = receiver.trace(trace_id, 1).await;
    spans.into_iter().find(|s| s.name == "infer").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritons_opentelemetry_command_line_exports_over_http() {
    let (receiver, otlp) = Receiver::start_http().await;
    let repo = repository("http-triton");
    let url = format!("opentelemetry,url={otlp}/v1/traces");
    // The environment asks for an export every 60 s; Triton's
    // bsp_schedule_delay of 100 ms must win, or no span comes in time.
    let served = serve_exporting_every(
        &repo,
        &[
            "--trace-config",
            "mode=opentelemetry",
            "--trace-config",
            &url,
            "--trace-config",
            "level=TIMESTAMPS",
            // Triton's default rate, 1000: the request below is traced
            // because it carries a sampled trace context (Triton's rule).
            "--trace-config",
            "opentelemetry,resource=service.name=migrated",
            "--trace-config",
            "opentelemetry,resource=deployment.environment=staging",
            "--trace-config",
            "opentelemetry,bsp_schedule_delay=100",
        ],
        "60000",
    );
    let (trace_id, parent) = (id(0x7a1, 32), id(0x51, 16));
    http_infer(served.http, "add", &trace_id, &parent);
    let span = request_span(&receiver, &trace_id).await;
    assert_eq!(span.parent, parent, "the client's span is the parent");
    assert_eq!(span.attributes["model"], "add");
    assert_eq!(span.resource["service.name"], "migrated");
    assert_eq!(span.resource["deployment.environment"], "staging");
    assert!(
        receiver.paths().iter().all(|p| p == "/v1/traces"),
        "{:?}",
        receiver.paths()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_protocol_http_adds_the_traces_path() {
    let (receiver, otlp) = Receiver::start_http().await;
    let repo = repository("http-flag");
    let endpoint = format!("http://{otlp}");
    let served = serve(
        &repo,
        &[
            "--otlp-protocol",
            "http/protobuf",
            "--otlp-endpoint",
            &endpoint,
        ],
    );
    let (trace_id, parent) = (id(0x7a2, 32), id(0x52, 16));
    http_infer(served.http, "add", &trace_id, &parent);
    let span = request_span(&receiver, &trace_id).await;
    assert_eq!(span.parent, parent);
    assert_eq!(span.resource["team"], "ml", "from OTEL_RESOURCE_ATTRIBUTES");
    assert_eq!(
        receiver.paths().first().map(String::as_str),
        Some("/v1/traces")
    );
}

/// With Triton's mode and no level or rate, Triton's defaults: nothing
/// traced (level OFF) until the trace extension turns it on, one request in
/// 1000 then.
#[test]
fn tritons_mode_takes_tritons_defaults() {
    let repo = repository("http-defaults");
    let served = serve(
        &repo,
        &[
            "--trace-config",
            "mode=opentelemetry",
            "--trace-config",
            "opentelemetry,url=127.0.0.1:9/v1/traces",
        ],
    );
    let (status, body) = http_request(served.http, "GET", "/v2/trace/setting", &[], "");
    assert_eq!(status, 200, "{body}");
    let settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        settings["trace_level"],
        serde_json::json!(["OFF"]),
        "{settings}"
    );
    assert_eq!(settings["trace_rate"], "1000", "{settings}");
}

/// Triton's `rate=0`: only the requests that carry a sampled trace context
/// are traced; one without is not (its span would be exported in the same
/// 100 ms batches as the other's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritons_rate_0_traces_only_requests_with_a_context() {
    let (receiver, otlp) = Receiver::start_http().await;
    let repo = repository("http-rate-0");
    let url = format!("opentelemetry,url={otlp}/v1/traces");
    let served = serve(
        &repo,
        &[
            "--trace-config",
            "mode=opentelemetry",
            "--trace-config",
            &url,
            "--trace-config",
            "level=TIMESTAMPS",
            "--trace-config",
            "rate=0",
        ],
    );
    let (status, body) = http_request(served.http, "POST", "/v2/models/add/infer", &[], ADD_BODY);
    assert_eq!(status, 200, "{body}");
    let (trace_id, parent) = (id(0x7a3, 32), id(0x53, 16));
    http_infer(served.http, "add", &trace_id, &parent);
    request_span(&receiver, &trace_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = receiver.all();
    assert!(
        all.iter().all(|s| s.trace_id == trace_id),
        "a request without a context was traced: {all:#?}"
    );
}
