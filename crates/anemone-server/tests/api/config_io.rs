//! A config's `output` list and `optional` inputs hold at request time, over
//! HTTP and gRPC (issue 17): a config that lists a subset of the model's
//! outputs serves exactly those, in its order, and refuses the others by name;
//! an input marked optional that the engine still needs is refused with an
//! error that says why. Numbers are checked against ONNX Runtime's Python
//! reference (`scripts/gen_fixtures.py`).

use crate::support::{error_text, serve, workspace, Repo, Served};
use anemone_core::{npy, Tensor};
use anemone_server::proto::{self, model_infer_request::InferInputTensor};
use anemone_server::ControlMode;
use serde_json::{json, Value};
use tonic::Code;

/// `multi_io`: inputs x, y [2, 3] and scale [1]; outputs sum, prod, scaled
/// and `out/with:odd*name`, all [2, 3]. This config serves prod and sum only,
/// in that order, and marks scale optional.
const SUBSET: &str = r#"
name: "mio"
platform: "onnxruntime_onnx"
input [
  { name: "x" data_type: TYPE_FP32 dims: [ 2, 3 ] },
  { name: "y" data_type: TYPE_FP32 dims: [ 2, 3 ] },
  { name: "scale" data_type: TYPE_FP32 dims: [ 1 ] optional: true }
]
output [
  { name: "prod" data_type: TYPE_FP32 dims: [ 2, 3 ] },
  { name: "sum" data_type: TYPE_FP32 dims: [ 2, 3 ] }
]
"#;

/// A server with `multi_io` loaded under the [`SUBSET`] config (explicit mode).
async fn serve_mio(tag: &str) -> (Repo, Served) {
    let repo = Repo::new(tag);
    let model = std::fs::read(workspace().join("fixtures/generated/multi_io/model.onnx")).unwrap();
    repo.write("mio/1/model.onnx", &model);
    repo.write("mio/config.pbtxt", SUBSET.as_bytes());
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let (status, body) = s.http_load("mio", None).await;
    assert_eq!(status, 200, "{body}");
    (repo, s)
}

fn fixture(file: &str) -> Tensor {
    let path = workspace().join("fixtures/generated/multi_io").join(file);
    npy::read(std::fs::File::open(&path).unwrap()).unwrap()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// The inputs of run 0 as (name, shape, values), without those in `leave_out`.
fn inputs(leave_out: &[&str]) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    [
        ("x", "run0_in_0.npy"),
        ("y", "run0_in_1.npy"),
        ("scale", "run0_in_2.npy"),
    ]
    .into_iter()
    .filter(|(name, _)| !leave_out.contains(name))
    .map(|(name, file)| {
        let t = fixture(file);
        (name, t.shape().to_vec(), f32s(&t))
    })
    .collect()
}

fn http_body(leave_out: &[&str], outputs: Option<&[&str]>) -> Value {
    let inputs: Vec<Value> = inputs(leave_out)
        .into_iter()
        .map(|(name, shape, data)| {
            json!({"name": name, "shape": shape, "datatype": "FP32", "data": data})
        })
        .collect();
    match outputs {
        None => json!({ "inputs": inputs }),
        Some(names) => {
            let outputs: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
            json!({ "inputs": inputs, "outputs": outputs })
        }
    }
}

async fn grpc_infer(
    s: &Served,
    leave_out: &[&str],
    outputs: &[&str],
) -> Result<proto::ModelInferResponse, tonic::Status> {
    let (tensors, raw): (Vec<_>, Vec<_>) = inputs(leave_out)
        .into_iter()
        .map(|(name, shape, data)| {
            let tensor = InferInputTensor {
                name: name.into(),
                datatype: "FP32".into(),
                shape: shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            };
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (tensor, bytes)
        })
        .unzip();
    s.client()
        .await
        .model_infer(proto::ModelInferRequest {
            model_name: "mio".into(),
            inputs: tensors,
            raw_input_contents: raw.into_iter().map(Into::into).collect(),
            outputs: outputs
                .iter()
                .map(|n| proto::model_infer_request::InferRequestedOutputTensor {
                    name: (*n).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

fn http_output(body: &Value, index: usize) -> (String, Vec<f32>) {
    let out = &body["outputs"][index];
    let data = crate::support::json_f32s(out);
    (out["name"].as_str().unwrap().to_string(), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_output_subset_is_what_is_served() {
    let (_repo, s) = serve_mio("config-io-outputs").await;
    let want_sum = f32s(&fixture("run0_out_0.npy"));
    let want_prod = f32s(&fixture("run0_out_1.npy"));

    // The metadata lists the served outputs, in the config's order.
    let (status, meta) = s.http("GET", "/v2/models/mio", None).await;
    assert_eq!(status, 200, "{meta}");
    let names: Vec<&str> = meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod", "sum"], "{meta}");
    let grpc_meta = s
        .client()
        .await
        .model_metadata(proto::ModelMetadataRequest {
            name: "mio".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = grpc_meta.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["prod", "sum"]);

    // No output asked: exactly the served ones, in order, with ORT's numbers.
    let (status, body) = s
        .http("POST", "/v2/models/mio/infer", Some(http_body(&[], None)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 2, "{body}");
    let (name, got) = http_output(&body, 0);
    assert_eq!(name, "prod");
    assert_close(&got, &want_prod, "prod over HTTP");
    let (name, got) = http_output(&body, 1);
    assert_eq!(name, "sum");
    assert_close(&got, &want_sum, "sum over HTTP");
    let r = grpc_infer(&s, &[], &[]).await.unwrap();
    let names: Vec<&str> = r.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["prod", "sum"]);
    let got: Vec<f32> = r.raw_output_contents[1]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_close(&got, &want_sum, "sum over gRPC");

    // One served output asked: only it.
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/mio/infer",
            Some(http_body(&[], Some(&["sum"]))),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(http_output(&body, 0).0, "sum");

    // An output of the model that the config leaves out: refused by name.
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/mio/infer",
            Some(http_body(&[], Some(&["scaled"]))),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let e = error_text(&body);
    assert!(
        e.contains("output 'scaled' is not served") && e.contains("lists only prod, sum"),
        "{e}"
    );
    let e = grpc_infer(&s, &[], &["scaled"]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("output 'scaled' is not served"),
        "{}",
        e.message()
    );

    // The refusals were counted and the server still serves.
    let r = grpc_infer(&s, &[], &["prod"]).await.unwrap();
    assert_eq!(r.outputs.len(), 1);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_input_the_model_needs_is_refused_with_the_reason() {
    let (_repo, s) = serve_mio("config-io-optional").await;

    // Leaving out the optional input: 400, saying it is optional but needed.
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/mio/infer",
            Some(http_body(&["scale"], None)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let e = error_text(&body);
    assert!(
        e.contains("missing input 'scale'") && e.contains("marks it optional"),
        "{e}"
    );
    let e = grpc_infer(&s, &["scale"], &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("marks it optional"), "{}", e.message());

    // Leaving out a required input: the plain refusal, no word of optional.
    let (status, body) = s
        .http(
            "POST",
            "/v2/models/mio/infer",
            Some(http_body(&["x"], None)),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let e = error_text(&body);
    assert!(
        e.contains("missing input 'x'") && !e.contains("optional"),
        "{e}"
    );
    s.shutdown().await;
}
