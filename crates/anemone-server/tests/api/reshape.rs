//! Triton's `reshape`: requests and answers carry the configuration's
//! `dims`, and the model takes and makes the reshape's shape. The model is
//! `add` (`x`, `y` of shape [batch, 4]; `sum` = x + y, `diff` = x - y); the
//! expected values are the arithmetic done here, element by element in
//! C order, which a reshape must not change.

use crate::support::{add_model, error_text, serve, Repo, Served};
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::{self, ModelMetadataRequest};
use anemone_server::ControlMode;
use serde_json::{json, Value};

/// As Triton's quickstart `densenet_onnx` writes it: no batch dimension,
/// dims without the model's leading 1, which the reshape puts back.
const FLAT: &str = r#"
max_batch_size: 0
input [
  { name: "x" data_type: TYPE_FP32 format: FORMAT_NONE dims: [ 2, 2 ] reshape { shape: [ 1, 4 ] } },
  { name: "y" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 1, 4 ] } }
]
output [
  { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 1, 4 ] } },
  { name: "diff" data_type: TYPE_FP32 dims: [ 1, 4 ] }
]
"#;

/// A batch dimension kept outside the reshape, dynamic batching, and a
/// warm-up sample in the served shape.
const BATCHED: &str = r#"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 20000 }
input [
  { name: "x" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 4 ] } },
  { name: "y" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "sum" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 4 ] } },
  { name: "diff" data_type: TYPE_FP32 dims: [ 4 ] }
]
model_warmup [ { name: "served shape" batch_size: 2
  inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 2, 2 ] random_data: true } }
  inputs { key: "y" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]
"#;

/// A variable-size dimension on both sides: its size goes across.
const VARIABLE: &str = r#"
max_batch_size: 0
input [
  { name: "x" data_type: TYPE_FP32 dims: [ -1, 2, 2 ] reshape { shape: [ -1, 4 ] } },
  { name: "y" data_type: TYPE_FP32 dims: [ -1, 4 ] }
]
output [ { name: "sum" data_type: TYPE_FP32 dims: [ -1, 2, 2 ] reshape { shape: [ -1, 4 ] } } ]
"#;

fn xs(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 1.5 - 3.0).collect()
}

fn ys(n: usize) -> Vec<f32> {
    (0..n).map(|i| 100.0 - i as f32 * 7.0).collect()
}

async fn infer(s: &Served, model: &str, inputs: Value) -> (u16, Value) {
    let path = format!("/v2/models/{model}/infer");
    s.http("POST", &path, Some(json!({ "inputs": inputs })))
        .await
}

fn output<'a>(answer: &'a Value, name: &str) -> &'a Value {
    let outputs = answer["outputs"].as_array().unwrap();
    outputs.iter().find(|o| o["name"] == name).unwrap()
}

fn values(v: &Value) -> Vec<f32> {
    serde_json::from_value(v["data"].clone()).unwrap()
}

fn repo() -> Repo {
    let repo = Repo::new("reshape");
    for (name, config) in [("flat", FLAT), ("batched", BATCHED), ("variable", VARIABLE)] {
        repo.write(&format!("{name}/1/model.onnx"), &add_model());
        repo.write(&format!("{name}/config.pbtxt"), config.as_bytes());
    }
    // An ensemble sees the served shapes of its step.
    repo.write(
        "ens/config.pbtxt",
        br#"platform: "ensemble"
input [ { name: "a" data_type: TYPE_FP32 dims: [ 2, 2 ] }, { name: "b" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "total" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [ { model_name: "flat" model_version: -1
  input_map { key: "x" value: "a" } input_map { key: "y" value: "b" }
  output_map { key: "sum" value: "total" } } ] }
"#,
    );
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_answers_carry_dims_and_the_model_its_reshape() {
    let repo = repo();
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    for model in ["flat", "batched", "variable", "ens"] {
        let (code, answer) = s.http_load(model, None).await;
        assert_eq!(code, 200, "{model}: {answer}");
    }

    // Metadata shows the served shapes, over both protocols.
    let (_, meta) = s.http("GET", "/v2/models/flat", None).await;
    assert_eq!(meta["inputs"][0]["shape"], json!([2, 2]), "{meta}");
    assert_eq!(meta["inputs"][1]["shape"], json!([4]), "{meta}");
    // An output's dims narrow the model's shape ([batch, 4]) as Triton shows them.
    let shapes = json!([{"name": "sum", "datatype": "FP32", "shape": [4]},
                        {"name": "diff", "datatype": "FP32", "shape": [1, 4]}]);
    assert_eq!(meta["outputs"], shapes);
    let grpc = s
        .client()
        .await
        .model_metadata(ModelMetadataRequest {
            name: "batched".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let shapes: Vec<Vec<i64>> = grpc.outputs.iter().map(|o| o.shape.clone()).collect();
    assert_eq!(shapes, [vec![-1, 2, 2], vec![-1, 4]]);
    let (_, config) = s.http("GET", "/v2/models/flat/config", None).await;
    assert_eq!(
        config["input"][0]["reshape"]["shape"],
        json!([1, 4]),
        "{config}"
    );

    // Without a batch dimension, as densenet_onnx: [2, 2] + [4] → [4].
    let (x, y) = (xs(4), ys(4));
    let (code, answer) = infer(
        &s,
        "flat",
        json!([
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": x},
            {"name": "y", "shape": [4], "datatype": "FP32", "data": y},
        ]),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let sum = output(&answer, "sum");
    assert_eq!(sum["shape"], json!([4]), "{answer}");
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    assert_eq!(values(sum), want);
    let diff = output(&answer, "diff");
    assert_eq!(diff["shape"], json!([1, 4]), "{answer}");
    let minus: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
    assert_eq!(values(diff), minus);

    // The shape the model takes is not the one requests send.
    let (code, answer) = infer(
        &s,
        "flat",
        json!([
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [x]},
            {"name": "y", "shape": [4], "datatype": "FP32", "data": y},
        ]),
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    let e = error_text(&answer);
    assert!(e.contains("'x'") && e.contains("[2, 2]"), "{e}");

    // The ensemble's step gets its served shapes.
    let (code, answer) = infer(
        &s,
        "ens",
        json!([
            {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": x},
            {"name": "b", "shape": [4], "datatype": "FP32", "data": y},
        ]),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(output(&answer, "total")["shape"], json!([4]), "{answer}");
    assert_eq!(values(output(&answer, "total")), want);

    // A variable size goes across: [3, 2, 2] → [3, 4] → [3, 2, 2].
    let (x, y) = (xs(12), ys(12));
    let (code, answer) = infer(
        &s,
        "variable",
        json!([
            {"name": "x", "shape": [3, 2, 2], "datatype": "FP32", "data": x},
            {"name": "y", "shape": [3, 4], "datatype": "FP32", "data": y},
        ]),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let sum = output(&answer, "sum");
    assert_eq!(sum["shape"], json!([3, 2, 2]), "{answer}");
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    assert_eq!(values(sum), want);
    s.shutdown().await;
}

/// Concurrent requests of different batch sizes, batched together: each
/// gets its own rows, in its served shapes, over HTTP and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_each_get_their_own_rows_in_served_shapes() {
    let repo = repo();
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let (code, answer) = s.http_load("batched", None).await;
    assert_eq!(code, 200, "{answer}");
    let rows = [1usize, 3, 2, 1];
    let calls = rows.iter().enumerate().map(|(i, &b)| {
        let s = &s;
        async move {
            let offset = i as f32 * 1000.0;
            let x: Vec<f32> = xs(b * 4).iter().map(|v| v + offset).collect();
            let y = ys(b * 4);
            let sum: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
            let diff: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
            if i % 2 == 0 {
                let (code, answer) = infer(
                    s,
                    "batched",
                    json!([
                        {"name": "x", "shape": [b, 2, 2], "datatype": "FP32", "data": x},
                        {"name": "y", "shape": [b, 4], "datatype": "FP32", "data": y},
                    ]),
                )
                .await;
                assert_eq!(code, 200, "{answer}");
                assert_eq!(output(&answer, "sum")["shape"], json!([b, 2, 2]));
                assert_eq!(output(&answer, "diff")["shape"], json!([b, 4]));
                assert_eq!(values(output(&answer, "sum")), sum);
                assert_eq!(values(output(&answer, "diff")), diff);
            } else {
                let tensor = |name: &str, shape: Vec<i64>, v: &[f32]| InferInputTensor {
                    name: name.into(),
                    datatype: "FP32".into(),
                    shape,
                    contents: Some(proto::InferTensorContents {
                        fp32_contents: v.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let b = b as i64;
                let answer = s
                    .client()
                    .await
                    .model_infer(proto::ModelInferRequest {
                        model_name: "batched".into(),
                        inputs: vec![tensor("x", vec![b, 2, 2], &x), tensor("y", vec![b, 4], &y)],
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let f32s = |k: usize| crate::support::f32s(&answer.raw_output_contents[k]);
                let at = |name: &str| answer.outputs.iter().position(|o| o.name == name).unwrap();
                assert_eq!(answer.outputs[at("sum")].shape, [b, 2, 2]);
                assert_eq!(answer.outputs[at("diff")].shape, [b, 4]);
                assert_eq!(f32s(at("sum")), sum);
                assert_eq!(f32s(at("diff")), diff);
            }
        }
    });
    futures_util::future::join_all(calls).await;
    let (_, stats) = s.http("GET", "/v2/models/batched/stats", None).await;
    let stats = &stats["model_stats"][0];
    // Seven rows, plus the warm-up's, which Triton does not count either.
    assert_eq!(stats["inference_count"], 7, "{stats}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshape_that_cannot_hold_the_elements_is_refused_at_load() {
    let repo = Repo::new("reshape-bad");
    let cases = [
        // dims hold 4 elements, the reshape 6.
        (
            "count",
            r#"input [ { name: "x" dims: [ -1, 4 ] reshape { shape: [ 2, 3 ] } }, { name: "y" } ]"#,
            "do not hold the same elements",
        ),
        // The same count, but not the shape the model takes ([-1, 4]).
        (
            "model",
            r#"input [ { name: "x" dims: [ 8 ] reshape { shape: [ 4, 2 ] } }, { name: "y" } ]"#,
            "reshape[1] is 2 in the config but the model's shape",
        ),
        // The runs between variable sizes differ: [2, -1, 2] against [4, -1].
        (
            "runs",
            r#"output [ { name: "sum" dims: [ 2, -1, 2 ] reshape { shape: [ 4, -1 ] } } ]"#,
            "between variable-size (-1) dimensions",
        ),
        (
            "zero",
            r#"input [ { name: "x" dims: [ 4 ] reshape { shape: [ 0, 4 ] } }, { name: "y" } ]"#,
            "has a size 0",
        ),
    ];
    for (name, config, _) in cases {
        repo.write(&format!("{name}/1/model.onnx"), &add_model());
        repo.write(&format!("{name}/config.pbtxt"), config.as_bytes());
    }
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    for (name, _, needle) in cases {
        let (code, answer) = s.http_load(name, None).await;
        assert_eq!(code, 400, "{name}: {answer}");
        let e = error_text(&answer);
        assert!(e.contains(needle), "{name}: {e}");
    }
    s.shutdown().await;
}
