//! A model served with Triton's `dynamic_batching` and `instance_group` over
//! both protocols: concurrent single-row requests are batched, each client
//! gets exactly the rows ONNX Runtime's Python API computed for its input,
//! `priority` and `timeout` are typed at the edge, a bad `priority` is a 400.

use crate::net::{fixture, NetServer, Repo};
use anemone_core::{npy, Tensor};
use anemone_server::proto::infer_parameter::ParameterChoice;
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::{InferParameter, ModelInferRequest};

const CONFIG: &str = "max_batch_size: 8
dynamic_batching {
  max_queue_delay_microseconds: 20000
  preferred_batch_size: [ 8 ]
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { max_queue_size: 64 allow_timeout_override: true }
}
instance_group [ { count: 2 kind: KIND_CPU } ]
";

/// The rows of the `dynamic_batch` fixture's 4-row reference run, one request
/// each: `(input [1, 5, 8], ONNX Runtime's output [1, 5, 4])`.
fn rows() -> Vec<(Vec<f32>, Vec<f32>)> {
    let read = |f: &str| -> Tensor {
        npy::read(std::fs::File::open(fixture(&format!("dynamic_batch/{f}"))).unwrap()).unwrap()
    };
    let (x, y) = (read("run1_in_0.npy"), read("run1_out_0.npy"));
    assert_eq!((x.shape(), y.shape()), (&[4, 5, 8][..], &[4, 5, 4][..]));
    let (x, y) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    x.chunks(40)
        .zip(y.chunks(20))
        .map(|(a, b)| (a.to_vec(), b.to_vec()))
        .collect()
}

/// POSTs `body` to `mlp`'s infer endpoint on a connection of its own and
/// returns the answer, which must be a 200.
async fn infer_http(addr: std::net::SocketAddr, body: serde_json::Value) -> serde_json::Value {
    let mut http = crate::net::HttpConn::connect(addr).await;
    let r = http
        .send("POST", "/v2/models/mlp/infer", body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The first output's `data`, as f32.
fn first_output(v: &serde_json::Value) -> Vec<f32> {
    v["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_f64().unwrap() as f32)
        .collect()
}

fn close(got: &[f32], want: &[f32]) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(a, b)| (a - b).abs() <= 1e-5 + 1e-4 * b.abs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batched_model_answers_each_client_its_own_rows_over_http_and_grpc() {
    let repo =
        Repo::new("batching").model("mlp", &fixture("dynamic_batch/model.onnx"), Some(CONFIG));
    let server = NetServer::start(&repo.0).await;
    server.wait_ready().await;
    let instance = server.state.manager.model("mlp", None).unwrap();
    assert_eq!(instance.instances().len(), 2, "instance_group count 2");
    let rows = rows();

    let mut tasks = Vec::new();
    for i in 0..16 {
        let (x, want) = rows[i % rows.len()].clone();
        let addr = server.http;
        let priority = 1 + i % 2;
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({
                "parameters": {"priority": priority, "timeout": 30_000_000},
                "inputs": [{"name": "x", "shape": [1, 5, 8], "datatype": "FP32", "data": x}]
            });
            let v = infer_http(addr, body).await;
            let got = first_output(&v);
            assert_eq!(v["outputs"][0]["shape"], serde_json::json!([1, 5, 4]));
            assert!(
                close(&got, &want),
                "HTTP request {i}: got {got:?} want {want:?}"
            );
        }));
    }
    for i in 0..16 {
        let (x, want) = rows[(i + 1) % rows.len()].clone();
        let mut grpc = server.grpc_client().await;
        tasks.push(tokio::spawn(async move {
            let request = ModelInferRequest {
                model_name: "mlp".into(),
                inputs: vec![InferInputTensor {
                    name: "x".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, 5, 8],
                    ..Default::default()
                }],
                raw_input_contents: vec![x.iter().flat_map(|v| v.to_le_bytes()).collect()],
                parameters: [(
                    "priority".to_string(),
                    InferParameter {
                        parameter_choice: Some(ParameterChoice::Uint64Param(1 + (i % 2) as u64)),
                    },
                )]
                .into(),
                ..Default::default()
            };
            let response = grpc.model_infer(request).await.unwrap().into_inner();
            assert_eq!(response.outputs[0].shape, vec![1, 5, 4]);
            let got: Vec<f32> = response.raw_output_contents[0]
                .chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert!(
                close(&got, &want),
                "gRPC request {i}: got {got:?} want {want:?}"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = server
        .state
        .manager
        .metrics()
        .model("mlp")
        .unwrap()
        .metrics
        .clone();
    assert_eq!(stats.success, 32);
    assert!(
        stats.execution_count < 32,
        "32 concurrent requests were batched into fewer engine calls, got {}",
        stats.execution_count
    );

    // A priority that is not a level is refused at the edge, on both protocols.
    let mut http = server.http_client().await;
    let body = serde_json::json!({
        "parameters": {"priority": -1},
        "inputs": [{"name": "x", "shape": [1, 5, 8], "datatype": "FP32", "data": rows[0].0}]
    });
    let r = http
        .send("POST", "/v2/models/mlp/infer", body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("parameter 'priority'"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let mut grpc = server.grpc_client().await;
    let status = grpc
        .model_infer(ModelInferRequest {
            model_name: "mlp".into(),
            inputs: vec![InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![1, 5, 8],
                ..Default::default()
            }],
            raw_input_contents: vec![vec![0u8; 160]].into_iter().map(Into::into).collect(),
            parameters: [(
                "priority".to_string(),
                InferParameter {
                    parameter_choice: Some(ParameterChoice::StringParam("high".into())),
                },
            )]
            .into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{}",
        status.message()
    );
    server.stop().await;
}

/// docs/SERVING.md's recipe for Triton's instances (one request at a time
/// each): `max_batch_size: 1` and an empty `dynamic_batching` block load as
/// a queue whose batches hold one row, concurrent clients all get their
/// rows, and every engine call ran one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_of_one_row_batches_loads_from_a_triton_config_and_serves_every_client() {
    const TRITON_STYLE: &str = "max_batch_size: 1
dynamic_batching { }
instance_group [ { count: 2 kind: KIND_CPU } ]
";
    let repo = Repo::new("one-row-queue").model(
        "mlp",
        &fixture("dynamic_batch/model.onnx"),
        Some(TRITON_STYLE),
    );
    let server = NetServer::start(&repo.0).await;
    server.wait_ready().await;
    let instance = server.state.manager.model("mlp", None).unwrap();
    let spec = instance.spec();
    assert_eq!(spec.max_batch_size, Some(1));
    assert!(
        spec.batching.is_some(),
        "dynamic_batching {{ }} gives the model a queue"
    );
    assert_eq!(instance.instances().len(), 2, "instance_group count 2");
    let rows = rows();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (x, want) = rows[i % rows.len()].clone();
            let addr = server.http;
            tokio::spawn(async move {
                let body = serde_json::json!({
                    "inputs": [{"name": "x", "shape": [1, 5, 8], "datatype": "FP32", "data": x}]
                });
                let got = first_output(&infer_http(addr, body).await);
                assert!(close(&got, &want), "request {i}: got {got:?} want {want:?}");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = instance.metrics().snapshot();
    assert_eq!((stats.inference_count, stats.execution_count), (12, 12));
    let sizes: Vec<u64> = stats.batch_stats.iter().map(|b| b.batch_size).collect();
    assert_eq!(sizes, vec![1], "every engine call ran one request");
    server.stop().await;
}
