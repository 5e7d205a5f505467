//! An input the network cannot take (PP-OCR det at 8x8: its feature
//! pyramid's Add/Concat mismatch) is the client's fault on both engines:
//! HTTP 400 and gRPC INVALID_ARGUMENT, never 500, and however many come,
//! the model stays on its backend.

use crate::net::{fixture, NetServer, Repo};
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::ModelInferRequest;

fn config(backends: &str) -> String {
    format!("parameters {{ key: \"backends\" value: {{ string_value: \"{backends}\" }} }}\n")
}

fn http_body(side: usize) -> Vec<u8> {
    let data = vec![0.5f32; 3 * side * side];
    serde_json::json!({"inputs": [{"name": "x", "shape": [1, 3, side, side], "datatype": "FP32", "data": data}]})
        .to_string()
        .into_bytes()
}

fn grpc_request(model: &str, side: usize) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 3, side as i64, side as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0u8; 4 * 3 * side * side]]
            .into_iter()
            .map(Into::into)
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_the_network_cannot_take_are_bad_input_on_both_engines() {
    let det = fixture("ocr_det/model.onnx");
    // Each engine first, the other standing by: ten failures counted as
    // backend faults would hand the model over.
    let repo = Repo::new("bad-input")
        .model("det_tract", &det, Some(&config("tract-cpu,onnxruntime")))
        .model("det_ort", &det, Some(&config("onnxruntime,tract-cpu")));
    let server = NetServer::start(&repo.0).await;
    server.wait_ready().await;
    let mut http = server.http_client().await;
    let mut grpc = server.grpc_client().await;
    for (model, backend) in [("det_tract", "tract-cpu"), ("det_ort", "onnxruntime")] {
        assert_eq!(
            server.state.manager.model(model, None).unwrap().backend(),
            backend
        );
        let path = format!("/v2/models/{model}/infer");
        for _ in 0..10 {
            let r = http.send("POST", &path, &http_body(8)).await;
            let error = r.json()["error"].as_str().unwrap_or_default().to_string();
            assert_eq!(r.status, 400, "{model}: {error}");
            assert!(
                error.contains("cannot run on input 'x'") && error.contains(backend),
                "{model}: {error}"
            );
        }
        let status = grpc
            .model_infer(grpc_request(model, 8))
            .await
            .expect_err("8x8 cannot run");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{model}: {}",
            status.message()
        );
        assert_eq!(
            server.state.manager.model(model, None).unwrap().backend(),
            backend,
            "{model} moved after bad input"
        );
        // And the model still serves a size it can take.
        let r = http.send("POST", &path, &http_body(32)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    server.stop().await;
}
