//! Issue 13: Triton's trace extension. `GET/POST /v2/trace/setting`,
//! `/v2/models/{m}/trace/setting` and the gRPC `TraceSetting` RPC read and
//! change the settings in Triton's shapes; a model's setting follows the
//! global one where it sets nothing; bad changes get a 400 / INVALID_ARGUMENT
//! that says what to send; the `trace` restriction group guards them.
//! (The spans themselves are checked against a real OTLP receiver in
//! anemone-cli's `otlp` test.)

use crate::net::{NetServer, Repo};
use crate::request_limits::send;
use anemone_server::proto::{trace_setting_request::SettingValue, TraceSettingRequest};
use anemone_server::restricted::{RestrictedApi, Restrictions};
use anemone_server::telemetry::{TraceLevel, TracingOptions};
use anemone_server::ServerOptions;
use serde_json::{json, Value};

fn repo(tag: &str) -> Repo {
    let model = crate::net::workspace().join("examples/models/add/1/model.onnx");
    Repo::new(tag).model("add", &model, None)
}

async fn start(repo: &Repo, tracing: TracingOptions, restricted: RestrictedApi) -> NetServer {
    let server = NetServer::start_with(ServerOptions {
        repository: repo.0.to_path_buf(),
        tracing,
        restricted,
        ..Default::default()
    })
    .await;
    server.wait_ready().await;
    server
}

fn exporting() -> TracingOptions {
    TracingOptions {
        endpoint: Some("http://collector.invalid:4317".into()),
        level: TraceLevel::TIMESTAMPS,
        rate: 5,
        count: -1,
        follow_context: false,
        ..Default::default()
    }
}

async fn post(server: &NetServer, path: &str, body: &str) -> (u16, Value) {
    let r = send(server, "POST", path, &[], body.as_bytes()).await;
    (r.status, r.json())
}

async fn get(server: &NetServer, path: &str) -> Value {
    let r = send(server, "GET", path, &[], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn setting(pairs: &[(&str, &[&str])], model: &str) -> TraceSettingRequest {
    TraceSettingRequest {
        settings: pairs
            .iter()
            .map(|(k, v)| {
                let value = v.iter().map(|s| s.to_string()).collect();
                (k.to_string(), SettingValue { value })
            })
            .collect(),
        model_name: model.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_trace_settings_over_http_and_grpc_in_tritons_shapes() {
    let repo = repo("trace-setting");
    let server = start(&repo, exporting(), RestrictedApi::default()).await;
    let global = "/v2/trace/setting";
    let model = "/v2/models/add/trace/setting";
    assert_eq!(
        get(&server, global).await,
        json!({"trace_level": ["TIMESTAMPS"], "trace_rate": "5", "trace_count": "-1",
               "trace_mode": "opentelemetry", "url": "http://collector.invalid:4317"})
    );
    let extensions = get(&server, "/v2").await["extensions"].clone();
    assert!(
        extensions.as_array().unwrap().contains(&json!("trace")),
        "{extensions}"
    );

    // A model's own rate; its level follows the global one, now and after a change.
    let (status, body) = post(&server, model, r#"{"trace_rate": "2"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["trace_rate"].clone(), body["trace_level"].clone()),
        (json!("2"), json!(["TIMESTAMPS"]))
    );
    let (status, body) = post(
        &server,
        global,
        r#"{"trace_level": ["OFF"], "trace_count": 7}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["trace_level"].clone(), body["trace_count"].clone()),
        (json!(["OFF"]), json!("7"))
    );
    let body = get(&server, model).await;
    assert_eq!(
        (body["trace_level"].clone(), body["trace_rate"].clone()),
        (json!(["OFF"]), json!("2"))
    );
    // null clears: the model's rate follows the global one again.
    let (_, body) = post(&server, model, r#"{"trace_rate": null}"#).await;
    assert_eq!(body["trace_rate"], "5");

    for (path, body, says) in [
        (
            "/v2/models/nope/trace/setting",
            "{}",
            "Request for unknown model : nope",
        ),
        (
            global,
            r#"{"trace_file": "/tmp/t.json"}"#,
            "can not be updated",
        ),
        (global, r#"{"trace_rate": "0"}"#, "'trace_rate'"),
        (global, r#"{"trace_level": ["OFF", "TENSORS"]}"#, "alone"),
        (
            global,
            r#"{"trace_level": {"on": true}}"#,
            "must be a string, a list of strings or null",
        ),
        (global, r#"{"trace_level": 3}"#, "unknown trace level '3'"),
        (
            global,
            r#"{"sampling": "1"}"#,
            "unknown trace setting 'sampling'",
        ),
        (global, "rate=1", "malformed trace setting JSON"),
    ] {
        let (status, answer) = post(&server, path, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(
        get(&server, global).await["trace_rate"],
        "5",
        "a refused change changes nothing"
    );

    // gRPC: the same settings; an empty value clears.
    let mut grpc = server.grpc_client().await;
    let read = grpc
        .trace_setting(setting(&[], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.settings["trace_level"].value, ["OFF"]);
    assert_eq!(read.settings["trace_count"].value, ["7"]);
    let changed = grpc
        .trace_setting(setting(
            &[
                ("trace_level", &["TIMESTAMPS", "TENSORS"]),
                ("trace_rate", &["3"]),
            ],
            "add",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        changed.settings["trace_level"].value,
        ["TIMESTAMPS", "TENSORS"]
    );
    assert_eq!(changed.settings["trace_rate"].value, ["3"]);
    assert_eq!(
        get(&server, model).await["trace_rate"],
        "3",
        "one state behind both protocols"
    );
    let cleared = grpc
        .trace_setting(setting(&[("trace_rate", &[])], "add"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.settings["trace_rate"].value, ["5"]);
    let unknown = grpc.trace_setting(setting(&[], "nope")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument, "{unknown:?}");
    let bad = grpc
        .trace_setting(setting(&[("trace_count", &["-5"])], ""))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("trace_count"), "{bad:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_without_an_endpoint_tracing_cannot_be_turned_on() {
    let repo = repo("trace-no-endpoint");
    let server = start(&repo, TracingOptions::default(), RestrictedApi::default()).await;
    let body = get(&server, "/v2/trace/setting").await;
    assert_eq!(body["trace_level"], json!(["OFF"]));
    assert!(body.get("url").is_none(), "{body}");
    let (status, answer) = post(
        &server,
        "/v2/trace/setting",
        r#"{"trace_level": ["TIMESTAMPS"]}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("--otlp-endpoint"),
        "{answer}"
    );
    // Rate and count can still be set, ready for when tracing is on.
    let (status, _) = post(&server, "/v2/trace/setting", r#"{"trace_rate": "10"}"#).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_trace_group_can_be_restricted() {
    let repo = repo("trace-restricted");
    let group = |grpc| Restrictions::parse(&["trace:admin-key=k3y".to_string()], grpc).unwrap();
    let restricted = RestrictedApi {
        http: group(false),
        grpc: group(true),
        ..Default::default()
    };
    let server = start(&repo, exporting(), restricted).await;
    for path in ["/v2/trace/setting", "/v2/models/add/trace/setting"] {
        let refused = send(&server, "GET", path, &[], b"").await;
        assert_eq!(refused.status, 403, "{path}");
        let allowed = send(&server, "GET", path, &[("admin-key", "k3y")], b"").await;
        assert_eq!(allowed.status, 200, "{path}");
    }
    let mut grpc = server.grpc_client().await;
    let refused = grpc.trace_setting(setting(&[], "")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let mut allowed = tonic::Request::new(setting(&[], ""));
    allowed
        .metadata_mut()
        .insert("triton-grpc-protocol-admin-key", "k3y".parse().unwrap());
    grpc.trace_setting(allowed).await.unwrap();
    // Inference is not in the group.
    let infer = send(&server, "GET", "/v2/models/add", &[], b"").await;
    assert_eq!(infer.status, 200);
    server.stop().await;
}
