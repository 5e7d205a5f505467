//! Issue 14: what a request may make the server allocate is bounded and
//! checked before anything is allocated from what the request claims. Each
//! limit over HTTP (JSON and the binary extension) and gRPC (typed contents
//! and raw_input_contents): a clear 400 / INVALID_ARGUMENT, and the server
//! keeps serving.

use crate::net::{HttpReply, NetServer, Repo};
use anemone_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use anemone_server::proto::{InferParameter, InferTensorContents, ModelInferRequest};
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio::io::AsyncWriteExt;

/// A server on the example `add` model: FP32 `x`, `y` of shape [batch, 4].
pub async fn add_server(tag: &str) -> (NetServer, Repo) {
    let model = crate::net::workspace().join("examples/models/add/1/model.onnx");
    let repo = Repo::new(tag).model("add", &model, None);
    let server = NetServer::start(&repo.0).await;
    server.wait_ready().await;
    (server, repo)
}

/// One HTTP request with extra headers, on a fresh connection.
pub async fn send(
    server: &NetServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let mut conn = server.http_client().await;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: anemone\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    conn.stream().write_all(&bytes).await.unwrap();
    conn.read_reply().await
}

fn error(reply: &HttpReply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Posts `body` (JSON) to `add` and expects a 400 whose message has `says`.
async fn http_refused(server: &NetServer, body: &Value, says: &str) {
    let r = send(
        server,
        "POST",
        "/v2/models/add/infer",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        error(&r).contains(says),
        "wanted '{says}' in: {}",
        error(&r)
    );
}

/// Sends `request` over gRPC and expects INVALID_ARGUMENT saying `says`.
async fn grpc_refused(server: &NetServer, request: ModelInferRequest, says: &str) {
    let status = server
        .grpc_client()
        .await
        .model_infer(request)
        .await
        .expect_err("refused");
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains(says),
        "wanted '{says}' in: {}",
        status.message()
    );
}

fn input(name: &str, shape: Vec<i64>, data: Value) -> Value {
    json!({"name": name, "shape": shape, "datatype": "FP32", "data": data})
}

fn grpc_input(name: &str, shape: Vec<i64>, values: Vec<f32>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape,
        contents: Some(InferTensorContents {
            fp32_contents: values,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn grpc_request(inputs: Vec<InferInputTensor>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "add".into(),
        inputs,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_counts_and_lengths_over_their_limits_are_refused() {
    let (server, _repo) = add_server("limits-counts").await;

    // Inputs: 1025.
    let many: Vec<Value> = (0..1025)
        .map(|i| input(&format!("i{i}"), vec![1], json!([0.0])))
        .collect();
    http_refused(&server, &json!({ "inputs": many }), "more than 1024 inputs").await;
    let many = (0..1025)
        .map(|i| grpc_input(&format!("i{i}"), vec![1], vec![0.0]))
        .collect();
    grpc_refused(
        &server,
        grpc_request(many),
        "1025 inputs, over the limit of 1024",
    )
    .await;

    // Outputs asked for: 1025.
    let outputs: Vec<Value> = (0..1025)
        .map(|i| json!({ "name": format!("o{i}") }))
        .collect();
    let x = input("x", vec![1, 4], json!([1, 2, 3, 4]));
    http_refused(
        &server,
        &json!({"inputs": [x], "outputs": outputs}),
        "more than 1024 outputs",
    )
    .await;
    let mut r = grpc_request(vec![grpc_input("x", vec![1, 4], vec![0.0; 4])]);
    r.outputs = (0..1025)
        .map(|i| InferRequestedOutputTensor {
            name: format!("o{i}"),
            ..Default::default()
        })
        .collect();
    grpc_refused(&server, r, "1025 outputs, over the limit of 1024").await;

    // Dimensions: 65.
    http_refused(
        &server,
        &json!({"inputs": [input("x", vec![1; 65], json!([0.0]))]}),
        "more than 64 dimensions",
    )
    .await;
    grpc_refused(
        &server,
        grpc_request(vec![grpc_input("x", vec![1; 65], vec![0.0])]),
        "65 dimensions, over the limit of 64",
    )
    .await;

    // Names: 2000 bytes.
    let long = "n".repeat(2000);
    http_refused(
        &server,
        &json!({"inputs": [input(&long, vec![1], json!([0.0]))]}),
        "2000 bytes long, over the limit of 1024",
    )
    .await;
    grpc_refused(
        &server,
        grpc_request(vec![grpc_input(&long, vec![1], vec![0.0])]),
        "2000 bytes long, over the limit of 1024",
    )
    .await;
    let r = send(
        &server,
        "POST",
        &format!("/v2/models/{long}/infer"),
        &[],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(error(&r).contains("model name"), "{}", error(&r));

    // Parameters: 129, and only scalars.
    let params: serde_json::Map<String, Value> =
        (0..129).map(|i| (format!("p{i}"), json!(i))).collect();
    let x = input("x", vec![1, 4], json!([1, 2, 3, 4]));
    http_refused(
        &server,
        &json!({"inputs": [x.clone()], "parameters": params}),
        "more than 128 parameters",
    )
    .await;
    http_refused(
        &server,
        &json!({"inputs": [x], "parameters": {"deep": [[[1]]]}}),
        "a parameter value",
    )
    .await;
    let mut r = grpc_request(vec![grpc_input("x", vec![1, 4], vec![0.0; 4])]);
    r.parameters = (0..129)
        .map(|i| (format!("p{i}"), InferParameter::default()))
        .collect::<HashMap<_, _>>();
    grpc_refused(&server, r, "129 parameters, over the limit of 128").await;

    // JSON nesting: `data` deeper than 64 lists, and a document deeper than serde_json's 128.
    let mut deep = json!(1.0);
    for _ in 0..70 {
        deep = json!([deep]);
    }
    http_refused(
        &server,
        &json!({"inputs": [input("x", vec![1], deep)]}),
        "nested deeper than 64 lists",
    )
    .await;
    let body = format!("{{\"inputs\": {}{}", "[".repeat(200), "]".repeat(200));
    let r = send(
        &server,
        "POST",
        "/v2/models/add/infer",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", error(&r));

    // And the model still serves.
    let x = input("x", vec![1, 4], json!([1, 2, 3, 4]));
    let y = input("y", vec![1, 4], json!([1, 1, 1, 1]));
    let r = send(
        &server,
        "POST",
        "/v2/models/add/infer",
        &[],
        json!({"inputs": [x, y]}).to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["outputs"][0]["data"], json!([2.0, 3.0, 4.0, 5.0]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_shapes_that_claim_more_than_the_request_carries_are_refused() {
    let (server, _repo) = add_server("limits-shapes").await;
    let huge = 1i64 << 40; // a terabyte of FP32 and more

    // Overflowing products, negative dimensions.
    for (shape, says) in [
        (
            vec![1i64 << 62, 1 << 62],
            "more elements than can be addressed",
        ),
        (vec![2, -1], "negative dimension -1"),
    ] {
        http_refused(
            &server,
            &json!({"inputs": [input("x", shape.clone(), json!([0.0]))]}),
            says,
        )
        .await;
        grpc_refused(
            &server,
            grpc_request(vec![grpc_input("x", shape, vec![0.0])]),
            says,
        )
        .await;
    }

    // A terabyte shape with two values of data: JSON, typed and raw contents.
    http_refused(
        &server,
        &json!({"inputs": [input("x", vec![huge], json!([1, 2]))]}),
        "has 2 values in 'data', but shape [1099511627776] needs 1099511627776",
    )
    .await;
    grpc_refused(
        &server,
        grpc_request(vec![grpc_input("x", vec![huge], vec![1.0, 2.0])]),
        "has 2 values in contents.fp32_contents",
    )
    .await;
    let mut raw = grpc_request(vec![InferInputTensor {
        name: "x".into(),
        datatype: "FP32".into(),
        shape: vec![huge],
        ..Default::default()
    }]);
    raw.raw_input_contents = vec![vec![0u8; 8]].into_iter().map(Into::into).collect();
    grpc_refused(&server, raw, "has 8 bytes").await;

    // Data that outgrows its shape stops at the first extra value.
    http_refused(
        &server,
        &json!({"inputs": [input("x", vec![1, 4], json!([1, 2, 3, 4, 5]))]}),
        "has more values in 'data' than shape [1, 4] needs (4)",
    )
    .await;

    // The binary extension: the header length, binary_data_size, BYTES prefixes.
    let binary = |json: &Value, data: &[u8], length: &str| {
        let mut body = json.to_string().into_bytes();
        let header = length.replace("{}", &body.len().to_string());
        body.extend_from_slice(data);
        (body, header)
    };
    let x = json!({"inputs": [{"name": "x", "shape": [huge], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]});
    let (body, length) = binary(&x, &[0; 8], "{}");
    let r = send(
        &server,
        "POST",
        "/v2/models/add/infer",
        &[("inference-header-content-length", &length)],
        &body,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        error(&r).contains("input 'x' has 8 bytes of data, but FP32 [1099511627776] needs"),
        "{}",
        error(&r)
    );
    for bad in ["99999999999", "-1", "ten"] {
        let r = send(
            &server,
            "POST",
            "/v2/models/add/infer",
            &[("inference-header-content-length", bad)],
            &body,
        )
        .await;
        assert_eq!(r.status, 400, "{bad}: {}", error(&r));
        assert!(
            error(&r).contains("Inference-Header-Content-Length"),
            "{}",
            error(&r)
        );
    }
    let x = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 1u64 << 60}}]});
    let (body, length) = binary(&x, &[0; 4], "{}");
    let r = send(
        &server,
        "POST",
        "/v2/models/add/infer",
        &[("inference-header-content-length", &length)],
        &body,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        error(&r).contains("binary_data_size 1152921504606846976"),
        "{}",
        error(&r)
    );
    let s = json!({"inputs": [{"name": "s", "shape": [huge], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]});
    let (body, length) = binary(&s, &[0xff, 0xff, 0xff, 0x7f, b'a', b'b', b'c', b'd'], "{}");
    let r = send(
        &server,
        "POST",
        "/v2/models/add/infer",
        &[("inference-header-content-length", &length)],
        &body,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        error(&r).contains("claims 2147483647 bytes but only 4 remain"),
        "{}",
        error(&r)
    );
    let mut raw = grpc_request(vec![InferInputTensor {
        name: "s".into(),
        datatype: "BYTES".into(),
        shape: vec![1],
        ..Default::default()
    }]);
    raw.raw_input_contents = vec![vec![1, 0, 0, 0, b'a', 1, 0, 0, 0, b'b']]
        .into_iter()
        .map(Into::into)
        .collect();
    grpc_refused(&server, raw, "holds more than the 1 elements").await;
    server.stop().await;
}
