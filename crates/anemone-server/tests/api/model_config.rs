//! What a Triton `config.pbtxt` (or a load request's config) promises is
//! what the server does (issue 9, items 3 to 7), over HTTP and gRPC:
//! `max_batch_size` and narrowed `dims` hold at request time, backend
//! settings are checked by name, settings that change nothing load, every
//! refusal is reported at once, and a missing `default_model_filename` is
//! named.

use crate::support::{error_text, serve, workspace, Repo, Served};
use anemone_core::{npy, Tensor};
use anemone_server::proto::{self, model_infer_request::InferInputTensor};
use anemone_server::ControlMode;
use serde_json::{json, Value};
use tonic::Code;

fn dynamic_batch() -> Vec<u8> {
    std::fs::read(workspace().join("fixtures/generated/dynamic_batch/model.onnx")).unwrap()
}

fn read_npy(rel: &str) -> Tensor {
    let path = workspace().join("fixtures/generated").join(rel);
    npy::read(std::fs::File::open(&path).unwrap()).unwrap()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// An HTTP infer request for input `x` of `shape`, filled with `values` (or zeros).
fn http_infer_body(shape: &[usize], values: Option<Vec<f32>>) -> Value {
    let n: usize = shape.iter().product();
    let data = values.unwrap_or_else(|| vec![0.0; n]);
    json!({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": data}]})
}

/// An inference of `db` with input `x` of `shape` is refused on both
/// protocols: HTTP 400 whose error holds every one of `http`, gRPC
/// INVALID_ARGUMENT whose message holds every one of `grpc`.
async fn refused_on_both(s: &Served, shape: &[usize], http: &[&str], grpc: &[&str]) {
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/db/infer",
            Some(http_infer_body(shape, None)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let e = error_text(&body);
    assert!(http.iter().all(|n| e.contains(n)), "{e}");
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let e = grpc_infer(s, "db", &dims).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        grpc.iter().all(|n| e.message().contains(n)),
        "{}",
        e.message()
    );
}

async fn grpc_infer(
    s: &Served,
    model: &str,
    shape: &[i64],
) -> Result<proto::ModelInferResponse, tonic::Status> {
    let n: i64 = shape.iter().product();
    let raw: Vec<u8> = (0..n).flat_map(|_| 0f32.to_le_bytes()).collect();
    s.client()
        .await
        .model_infer(proto::ModelInferRequest {
            model_name: model.into(),
            inputs: vec![InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: shape.to_vec(),
                ..Default::default()
            }],
            raw_input_contents: vec![raw].into_iter().map(Into::into).collect(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// `dynamic_batch` is y = Relu(x W + b), x: [batch, seq, 8]. The config
/// batches (max 4) and fixes seq to 3.
const BATCHED: &str = r#"
name: "db"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3, 8 ] } ]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_size_and_narrowed_dims_hold_at_request_time() {
    let repo = Repo::new("config-batch");
    repo.write("db/1/model.onnx", &dynamic_batch());
    repo.write("db/config.pbtxt", BATCHED.as_bytes());
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let (status, body) = s.http_load("db", None).await;
    assert_eq!(status, 200, "{body}");

    // The metadata shows the declared shape: batch, then the config's dims.
    let (status, meta) = s.http("GET", "/v2/models/db", None).await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 3, 8]), "{meta}");
    let grpc_meta = s
        .client()
        .await
        .model_metadata(proto::ModelMetadataRequest {
            name: "db".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_meta.inputs[0].shape, vec![-1, 3, 8]);

    // Within bounds: served, and equal to ONNX Runtime's reference.
    let x = read_npy("dynamic_batch/run0_in_0.npy");
    assert_eq!(x.shape(), &[1, 3, 8]);
    let want = f32s(&read_npy("dynamic_batch/run0_out_0.npy"));
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/db/infer",
            Some(http_infer_body(&[1, 3, 8], Some(f32s(&x)))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = crate::support::json_f32s(&body["outputs"][0]);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
            "{got:?} vs {want:?}"
        );
    }
    assert!(grpc_infer(&s, "db", &[4, 3, 8]).await.is_ok());

    // A batch above max_batch_size: 400 naming the input, on both protocols.
    let both = ["input 'x'", "max_batch_size is 4"];
    refused_on_both(&s, &[5, 3, 8], &both, &both).await;
    // Zero rows: 400 too (Triton's answer), not an engine run counted as a
    // batch of 0.
    let http = ["input 'x' has batch size 0", "between 1 and 4 rows"];
    refused_on_both(&s, &[0, 3, 8], &http, &["batch size 0"]).await;
    // A dimension the config fixes (the engine leaves it dynamic).
    let http = ["input 'x' dimension 1 is 4, but the model fixes it at 3"];
    refused_on_both(&s, &[1, 4, 8], &http, &["fixes it at 3"]).await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_settings_are_checked_by_name() {
    let repo = Repo::new("config-keys");
    repo.write("db/1/model.onnx", &dynamic_batch());
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let config = json!({"parameters": {
        "onnxruntime.bogus": {"string_value": "1"},
        "tract-cpu.bogus": {"string_value": "1"},
    }});
    let (status, body) = s.http_load("db", Some(&config)).await;
    assert_eq!(status, 400, "{body}");
    let e = error_text(&body);
    assert!(
        e.contains("unknown parameter 'onnxruntime.bogus'; backend onnxruntime reads: onnxruntime.sessions"),
        "{e}"
    );
    assert!(
        e.contains(
            "unknown parameter 'tract-cpu.bogus'; backend tract-cpu reads: tract-cpu.plan_cache"
        ),
        "{e}"
    );
    let e = s.grpc_load("db", Some(&config)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("onnxruntime.bogus"), "{}", e.message());
    // Known keys still load.
    let ok = json!({"parameters": {"onnxruntime.sessions": {"string_value": "2"}}});
    let (status, body) = s.http_load("db", Some(&ok)).await;
    assert_eq!(status, 200, "{body}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_change_nothing_load() {
    let repo = Repo::new("config-noops");
    repo.write("db/1/model.onnx", &dynamic_batch());
    repo.write(
        "db/config.pbtxt",
        br#"
name: "db"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NONE dims: [ -1, 8 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
model_transaction_policy { decoupled: false }
optimization { input_pinned_memory { enable: true } output_pinned_memory { enable: true }
  priority: PRIORITY_MAX cuda { graphs: true } eager_batching: true }
response_cache { enable: false }
instance_group [ { count: 1 kind: KIND_CPU } ]
version_policy: { latest { num_versions: 1 } }
"#,
    );
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let (status, body) = s.http_load("db", None).await;
    assert_eq!(status, 200, "{body}");
    // It serves (Triton's performance hints above are ignored, with a warning).
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/db/infer",
            Some(http_infer_body(&[2, 3, 8], None)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The JSON form, with an NCHW format, loads over gRPC too.
    let config = json!({"max_batch_size": 8, "input": [{"name": "x", "format": "FORMAT_NCHW"}],
                        "model_transaction_policy": {"decoupled": false}, "optimization": {}});
    s.grpc_load("db", Some(&config)).await.unwrap();
    // What would change behaviour is still refused.
    let e = s
        .grpc_load(
            "db",
            Some(&json!({"model_transaction_policy": {"decoupled": true}})),
        )
        .await
        .unwrap_err();
    assert!(
        e.message().contains("'model_transaction_policy.decoupled'"),
        "{}",
        e.message()
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_reported_at_once_and_a_missing_file_is_named() {
    let repo = Repo::new("config-all");
    repo.write("db/1/model.onnx", &dynamic_batch());
    // A Triton quickstart-style config (densenet_onnx), aimed at this model.
    repo.write(
        "db/config.pbtxt",
        br#"
name: "db"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 1, 3, 8 ] reshape { shape: [ 1, 3, 8 ] } is_shape_tensor: true } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1, 3, 4 ] label_filename: "labels.txt" } ]
runtime: "libmodel.so"
parameters { key: "max_concurency" value: { string_value: "1" } }
parameters { key: "threads" value: { string_value: "100000" } }
"#,
    );
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let (status, body) = s.http_load("db", None).await;
    assert_eq!(status, 400, "{body}");
    let e = error_text(&body);
    for needle in [
        "4 problems in config.pbtxt",
        "'input[0].is_shape_tensor'",
        "'runtime'",
        "unknown parameter 'max_concurency' (did you mean 'max_concurrency'?)",
        "parameter 'threads' is \"100000\"; set an integer from 1 to",
    ] {
        assert!(e.contains(needle), "{needle}: {e}");
    }

    // default_model_filename naming a missing file says so, by name.
    let config = json!({"default_model_filename": "densenet.onnx"});
    let (status, body) = s.http_load("db", Some(&config)).await;
    assert_eq!(status, 400, "{body}");
    let e = error_text(&body);
    assert!(
        e.contains("the model file 'densenet.onnx' named by default_model_filename is missing (looked in 1/)"),
        "{e}"
    );
    let e = s.grpc_load("db", Some(&config)).await.unwrap_err();
    assert!(e.message().contains("'densenet.onnx'"), "{}", e.message());
    s.shutdown().await;
}

/// A loaded model's config shows its instance groups (and its backend and
/// file name) as Triton shows them:
/// a model whose config names none gets one named after it, `KIND_AUTO`
/// is resolved to where the instances run, over HTTP and gRPC alike; the
/// config read back loads again unchanged; and a Triton GPU config's
/// `gpus: [ 0 ]` is read, while another device is refused with the way to
/// pick it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_groups_are_shown_as_they_run() {
    let repo = Repo::new("config-groups");
    repo.write("plain/1/model.onnx", &dynamic_batch());
    repo.write("grouped/1/model.onnx", &dynamic_batch());
    repo.write(
        "grouped/config.pbtxt",
        b"instance_group [ { count: 2 }, { name: \"mine\" kind: KIND_CPU } ]\n",
    );
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    for model in ["plain", "grouped"] {
        let (status, body) = s.http_load(model, None).await;
        assert_eq!(status, 200, "{model}: {body}");
    }
    let group = |name: &str, count: i64| {
        json!({"name": name, "kind": "KIND_CPU", "count": count, "gpus": [], "secondary_devices": [],
               "profile": [], "passive": false, "host_policy": ""})
    };
    let (status, plain) = s.http("GET", "/v2/models/plain/config", None).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["instance_group"], json!([group("plain", 1)]));
    // The backend and file, as Triton names them for an ONNX model.
    assert_eq!(
        (&plain["backend"], &plain["default_model_filename"]),
        (&json!("onnxruntime"), &json!("model.onnx"))
    );
    assert_eq!(
        plain["optimization"]["input_pinned_memory"],
        json!({"enable": true})
    );
    let (_, grouped) = s.http("GET", "/v2/models/grouped/config", None).await;
    assert_eq!(
        grouped["instance_group"],
        json!([group("grouped_0", 2), group("mine", 1)])
    );
    // gRPC's ModelConfig says the same.
    let config = s
        .client()
        .await
        .model_config(proto::ModelConfigRequest {
            name: "grouped".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    let shown: Vec<(String, i32, i32)> = (config.instance_group.iter())
        .map(|g| (g.name.clone(), g.count, g.kind))
        .collect();
    let cpu = proto::model_instance_group::Kind::Cpu as i32;
    assert_eq!(
        shown,
        vec![("grouped_0".into(), 2, cpu), ("mine".into(), 1, cpu)]
    );

    // What GET gives loads again as an override, and reads back the same.
    let (status, body) = s.http_load("plain", Some(&plain)).await;
    assert_eq!(status, 200, "{body}");
    let (_, again) = s.http("GET", "/v2/models/plain/config", None).await;
    assert_eq!(again, plain);

    // Triton's GPU configs name device 0; on this CPU-only server the group
    // then has no backend to run on, and says so, not that gpus is unknown.
    let gpu = json!({"instance_group": [{"kind": "KIND_GPU", "gpus": [0]}]});
    let (status, body) = s.http_load("plain", Some(&gpu)).await;
    assert_eq!(status, 400, "{body}");
    assert!(!error_text(&body).contains("gpus"), "{body}");
    let other = json!({"instance_group": [{"kind": "KIND_GPU", "gpus": [1]}]});
    let (status, body) = s.http_load("plain", Some(&other)).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_text(&body).contains("CUDA_VISIBLE_DEVICES"), "{body}");
    s.shutdown().await;
}

/// Triton's `--strict-model-config` (`--disable-auto-complete-config`):
/// nothing is filled in from the model file. A model without a config, or
/// whose config leaves out its platform, outputs or dims, is UNAVAILABLE
/// saying what is missing; a complete config loads and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_server_loads_only_complete_configs() {
    let repo = Repo::new("config-strict");
    let complete = "platform: \"onnxruntime_onnx\"\nmax_batch_size: 8\n\
        input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 4 ] }, { name: \"y\" data_type: TYPE_FP32 dims: [ 4 ] } ]\n\
        output [ { name: \"sum\" data_type: TYPE_FP32 dims: [ 4 ] }, { name: \"diff\" data_type: TYPE_FP32 dims: [ 4 ] } ]\n";
    let partial = "backend: \"onnxruntime\"\nmax_batch_size: 8\n\
        input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 4 ] }, { name: \"y\" data_type: TYPE_FP32 } ]\n";
    for (name, config) in [
        ("complete", Some(complete)),
        ("partial", Some(partial)),
        ("bare", None),
    ] {
        repo.write(
            &format!("{name}/1/model.onnx"),
            &crate::support::add_model(),
        );
        if let Some(config) = config {
            repo.write(&format!("{name}/config.pbtxt"), config.as_bytes());
        }
    }
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let server = crate::support::run_server(
        anemone_server::ServerOptions {
            repository: repo.root(),
            http_port: 0,
            grpc_port: 0,
            strict_config: true,
            ..Default::default()
        },
        manager,
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !server.state.repository.startup_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "start-up loads never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let index = server.state.repository.index();
    let row = |name: &str| index.iter().find(|r| r.name == name).unwrap().clone();
    assert_eq!(row("complete").state, "READY", "{:?}", row("complete"));
    let partial = row("partial");
    assert_eq!(partial.state, "UNAVAILABLE");
    assert!(
        partial
            .reason
            .contains("it lacks the 'output' list, input 'y''s dims"),
        "{}",
        partial.reason
    );
    let bare = row("bare");
    assert_eq!(bare.state, "UNAVAILABLE");
    assert!(
        bare.reason.contains("there is no config.pbtxt"),
        "{}",
        bare.reason
    );
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
}
