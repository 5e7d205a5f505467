//! Triton's classification extension over HTTP and gRPC: an output asked
//! for with `classification: N` comes back as its top N classes,
//! `"<value>:<index>[:<label>]"`, per batch row for a model with a batch
//! dimension and over the whole tensor otherwise, with labels from the
//! output's `label_filename`. The expected strings are built here from the
//! arithmetic of `add` (x + y), ranked and formatted by this test.

use crate::support::{add_model, error_text, serve, Repo, Served};
use anemone_server::proto::infer_parameter::ParameterChoice;
use anemone_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use anemone_server::proto::{self, InferParameter};
use anemone_server::ControlMode;
use serde_json::{json, Value};
use std::collections::HashMap;

const X: [[f32; 4]; 2] = [[1.0, 9.0, 3.0, 4.0], [5.0, 0.5, 7.25, -8.0]];
const Y: [[f32; 4]; 2] = [[10.0, -20.0, 30.0, 40.0], [0.0, 1.0, 2.0, 3.0]];
const LABELS: [&str; 4] = ["zero", "one", "two", "three"];

/// The top `k` of each row of `rows` (value order, highest first), as
/// `value:index[:label]` with six decimals; a label where `labels` (the
/// first of [`LABELS`]) has one for the index.
fn expected(rows: &[Vec<f32>], k: usize, labels: bool) -> Vec<String> {
    let mut out = Vec::new();
    for row in rows {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
        for &i in order.iter().take(k) {
            let mut s = format!("{:.6}:{i}", row[i]);
            if let Some(label) = LABELS.get(i).filter(|_| labels) {
                s = format!("{s}:{label}");
            }
            out.push(s);
        }
    }
    out
}

fn sums() -> Vec<Vec<f32>> {
    X.iter()
        .zip(Y)
        .map(|(x, y)| x.iter().zip(y).map(|(a, b)| a + b).collect())
        .collect()
}

fn body(k: Value, binary: bool) -> Value {
    json!({
        "inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X},
            {"name": "y", "shape": [2, 4], "datatype": "FP32", "data": Y},
        ],
        "outputs": [{"name": "sum", "parameters": {"classification": k, "binary_data": binary}}],
    })
}

async fn http_classes(s: &Served, model: &str, k: usize) -> (Vec<usize>, Vec<String>) {
    let (code, answer) = s
        .http(
            "POST",
            &format!("/v2/models/{model}/infer"),
            Some(body(json!(k), false)),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let out = &answer["outputs"][0];
    assert_eq!(out["datatype"], "BYTES", "{answer}");
    (
        serde_json::from_value(out["shape"].clone()).unwrap(),
        serde_json::from_value(out["data"].clone()).unwrap(),
    )
}

async fn grpc_classes(s: &Served, model: &str, k: i64) -> (Vec<i64>, Vec<String>) {
    let input = |name: &str, v: &[[f32; 4]; 2]| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![2, 4],
        contents: Some(proto::InferTensorContents {
            fp32_contents: v.iter().flatten().copied().collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer = s
        .client()
        .await
        .model_infer(proto::ModelInferRequest {
            model_name: model.into(),
            inputs: vec![input("x", &X), input("y", &Y)],
            outputs: vec![InferRequestedOutputTensor {
                name: "sum".into(),
                parameters: HashMap::from([(
                    "classification".to_string(),
                    InferParameter {
                        parameter_choice: Some(ParameterChoice::Int64Param(k)),
                    },
                )]),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let out = &answer.outputs[0];
    assert_eq!(out.datatype, "BYTES");
    // BYTES in raw_output_contents: a 4-byte length before each element.
    let mut raw = &answer.raw_output_contents[0][..];
    let mut strings = Vec::new();
    while let Some((len, rest)) = raw.split_first_chunk::<4>() {
        let n = u32::from_le_bytes(*len) as usize;
        strings.push(String::from_utf8(rest[..n].to_vec()).unwrap());
        raw = &rest[n..];
    }
    (out.shape.clone(), strings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_come_back_as_their_top_classes() {
    let repo = Repo::new("classification");
    let output = |labels: &str| {
        format!(
            "input [ {{ name: \"x\" data_type: TYPE_FP32 dims: [ 4 ] }}, {{ name: \"y\" data_type: TYPE_FP32 dims: [ 4 ] }} ]\n\
             output [ {{ name: \"sum\" data_type: TYPE_FP32 dims: [ 4 ]{labels} }} ]\n"
        )
    };
    repo.write("labelled/1/model.onnx", &add_model());
    repo.write(
        "labelled/config.pbtxt",
        format!(
            "max_batch_size: 8\n{}",
            output(" label_filename: \"labels.txt\"")
        )
        .as_bytes(),
    );
    // As a Windows editor saves it: a byte order mark and CRLF line ends.
    let windows = format!("\u{feff}{}\r\n", LABELS.join("\r\n"));
    repo.write("labelled/labels.txt", windows.as_bytes());
    // No batch dimension: the whole [2, 4] tensor is one row.
    repo.write("whole/1/model.onnx", &add_model());
    // A label file that is not there, and one outside the model directory.
    repo.write("missing/1/model.onnx", &add_model());
    repo.write(
        "missing/config.pbtxt",
        format!(
            "max_batch_size: 8\n{}",
            output(" label_filename: \"nope.txt\"")
        )
        .as_bytes(),
    );
    // An ensemble over `whole`, with labels for the first four of its
    // output's eight values.
    repo.write(
        "ens/config.pbtxt",
        b"platform: \"ensemble\"\n\
          input [ { name: \"x\" data_type: TYPE_FP32 dims: [ -1, 4 ] }, { name: \"y\" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]\n\
          output [ { name: \"sum\" data_type: TYPE_FP32 dims: [ -1, 4 ] label_filename: \"labels.txt\" } ]\n\
          ensemble_scheduling { step [ { model_name: \"whole\" model_version: -1 input_map { key: \"x\" value: \"x\" } \
          input_map { key: \"y\" value: \"y\" } output_map { key: \"sum\" value: \"sum\" } } ] }\n",
    );
    repo.write("ens/labels.txt", LABELS.join("\n").as_bytes());
    repo.write("outside/1/model.onnx", &add_model());
    repo.write(
        "outside/config.pbtxt",
        format!(
            "max_batch_size: 8\n{}",
            output(" label_filename: \"../labelled/labels.txt\"")
        )
        .as_bytes(),
    );
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    for model in ["labelled", "whole", "ens"] {
        let (code, answer) = s.http_load(model, None).await;
        assert_eq!(code, 200, "{model}: {answer}");
    }
    let (_, meta) = s.http("GET", "/v2", None).await;
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("classification")));

    let rows = sums();
    for (k, kept) in [(2, 2), (10, 4)] {
        let want = expected(&rows, k, true);
        assert_eq!(
            http_classes(&s, "labelled", k).await,
            (vec![2, kept], want.clone())
        );
        assert_eq!(
            grpc_classes(&s, "labelled", k as i64).await,
            (vec![2, kept as i64], want)
        );
    }
    let whole = vec![rows.concat()];
    for (k, kept) in [(3, 3), (20, 8)] {
        let want = expected(&whole, k, false);
        assert_eq!(
            http_classes(&s, "whole", k).await,
            (vec![kept], want.clone())
        );
        assert_eq!(
            grpc_classes(&s, "whole", k as i64).await,
            (vec![kept as i64], want)
        );
    }
    // An ensemble's output, labelled from the ensemble's own file.
    let want = expected(&whole, 5, true);
    assert!(
        want.iter().filter(|s| s.split(':').count() == 3).count() >= 1,
        "{want:?}"
    );
    assert_eq!(http_classes(&s, "ens", 5).await, (vec![5], want.clone()));
    assert_eq!(grpc_classes(&s, "ens", 5).await, (vec![5], want));
    // Binary data: the same strings, as BYTES in the binary part.
    let (code, raw) = s
        .http(
            "POST",
            "/v2/models/labelled/infer",
            Some(body(json!(1), true)),
        )
        .await;
    assert_eq!(code, 200);
    assert!(raw.is_string(), "a binary answer is not JSON: {raw}");
    // 0 asks for none: the values themselves.
    let (code, answer) = s
        .http(
            "POST",
            "/v2/models/labelled/infer",
            Some(body(json!(0), false)),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["outputs"][0]["datatype"], "FP32");

    // Label files that cannot be read fail the load, saying which and why.
    for (model, says) in [
        (
            "missing",
            "label_filename \"nope.txt\" of output 'sum' is missing",
        ),
        ("outside", "is not a file name inside the model directory"),
    ] {
        let (code, answer) = s.http_load(model, None).await;
        assert_eq!(code, 400, "{model}: {answer}");
        assert!(error_text(&answer).contains(says), "{model}: {answer}");
    }
    s.shutdown().await;
}
