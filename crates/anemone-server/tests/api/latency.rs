//! gRPC must not be slower than HTTP by a whole delayed-ACK period on small
//! requests (Nagle's algorithm on accepted sockets cost ~40 ms per request),
//! nor by a whole class on large ones (HTTP/2 frames and windows too small
//! for megabytes). Wide ratios over real TCP, the only kind of timing
//! assert allowed.

use crate::net::{median, workspace, HttpConn, HttpReply, NetServer};
use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::ModelInferRequest;
use std::time::{Duration, Instant};

type Grpc = GrpcInferenceServiceClient<tonic::transport::Channel>;

/// Requests measured per protocol and size (after as many warm-ups).
const SAMPLES: usize = 25;

/// The same for megabyte requests.
const LARGE_SAMPLES: usize = 10;

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

fn grpc_request(rows: usize) -> ModelInferRequest {
    let input = |name: &str| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![rows as i64, 4],
        ..Default::default()
    };
    ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![input("x"), input("y")],
        raw_input_contents: vec![f32_bytes(rows * 4), f32_bytes(rows * 4)]
            .into_iter()
            .map(Into::into)
            .collect(),
        ..Default::default()
    }
}

/// An HTTP request of the binary tensor extension: the JSON header, then
/// both inputs' raw bytes; the outputs are asked for as binary too. Returns
/// the extra header line and the body.
fn http_binary_body(rows: usize) -> (String, Vec<u8>) {
    let size = rows * 16;
    let input = |name: &str| serde_json::json!({"name": name, "shape": [rows, 4], "datatype": "FP32", "parameters": {"binary_data_size": size}});
    let output =
        |name: &str| serde_json::json!({"name": name, "parameters": {"binary_data": true}});
    let mut body = serde_json::json!({
        "inputs": [input("x"), input("y")],
        "outputs": [output("sum"), output("diff")],
    })
    .to_string()
    .into_bytes();
    let header = format!("inference-header-content-length: {}\r\n", body.len());
    body.extend(f32_bytes(rows * 4));
    body.extend(f32_bytes(rows * 4));
    (header, body)
}

fn http_body(rows: usize) -> Vec<u8> {
    let data: Vec<f32> = (0..rows * 4).map(|i| i as f32).collect();
    let input = |name: &str| serde_json::json!({"name": name, "shape": [rows, 4], "datatype": "FP32", "data": data});
    serde_json::json!({"inputs": [input("x"), input("y")]})
        .to_string()
        .into_bytes()
}

/// The p50s of `samples` gRPC and HTTP calls of the same request,
/// alternated, after as many warm-ups. Every gRPC answer must carry
/// `rows * 16` bytes of `sum`; `check` looks at every HTTP answer.
async fn p50s(
    samples: usize,
    grpc: &mut Grpc,
    request: &ModelInferRequest,
    rows: usize,
    http: &mut HttpConn,
    (headers, body): (&str, &[u8]),
    check: impl Fn(&HttpReply),
) -> (Duration, Duration) {
    let (mut g, mut h) = (Vec::new(), Vec::new());
    for i in 0..2 * samples {
        let t = Instant::now();
        let reply = grpc
            .model_infer(request.clone())
            .await
            .unwrap()
            .into_inner();
        let grpc_took = t.elapsed();
        assert_eq!(reply.raw_output_contents[0].len(), rows * 16);
        let t = Instant::now();
        let reply = http
            .send_with("POST", "/v2/models/add/infer", headers, body)
            .await;
        let http_took = t.elapsed();
        check(&reply);
        if i >= samples {
            g.push(grpc_took);
            h.push(http_took);
        }
    }
    (median(g), median(h))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_p50_stays_within_a_small_factor_of_http_on_small_requests() {
    let server = NetServer::start(&workspace().join("examples/models")).await;
    server.wait_ready().await;
    let mut grpc = server.grpc_client().await;
    let mut http = server.http_client().await;
    // 128, 512 and 2048 rows: 2, 8 and 32 KiB per input, as much back.
    for rows in [128usize, 512, 2048] {
        let body = http_body(rows);
        let json = ("content-type: application/json\r\n", &body[..]);
        let (g, h) = p50s(
            SAMPLES,
            &mut grpc,
            &grpc_request(rows),
            rows,
            &mut http,
            json,
            |r| assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body)),
        )
        .await;
        eprintln!("{rows} rows: gRPC p50 {g:?}, HTTP p50 {h:?}");
        // A delayed ACK is 40 ms on Linux; the floor keeps sub-millisecond
        // noise from failing the test.
        assert!(
            g <= h * 5 + Duration::from_millis(5),
            "{rows} rows ({} KiB per input): gRPC p50 {g:?} vs HTTP p50 {h:?}; \
             is TCP_NODELAY set on accepted gRPC sockets?",
            rows * 16 / 1024
        );
    }
    server.stop().await;
}

/// 1 and 4 MiB per input (as much back, twice): gRPC within a small factor
/// of HTTP with binary tensors, which carries the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_p50_stays_within_a_small_factor_of_http_on_large_requests() {
    let server = NetServer::start(&workspace().join("examples/models")).await;
    server.wait_ready().await;
    // tonic's client refuses answers over 4 MiB by default.
    let mut grpc = server
        .grpc_client()
        .await
        .max_decoding_message_size(64 << 20);
    let mut http = server.http_client().await;
    for rows in [1usize << 16, 1 << 18] {
        let (header, body) = http_binary_body(rows);
        let binary = (header.as_str(), &body[..]);
        let (g, h) = p50s(
            LARGE_SAMPLES,
            &mut grpc,
            &grpc_request(rows),
            rows,
            &mut http,
            binary,
            |r| {
                assert_eq!(r.status, 200);
                // The JSON header, then sum and diff as raw bytes.
                assert!(r.body.len() > 2 * rows * 16, "{}", r.body.len());
            },
        )
        .await;
        eprintln!("{rows} rows: gRPC p50 {g:?}, HTTP binary p50 {h:?}");
        assert!(
            g <= h * 5 + Duration::from_millis(10),
            "{rows} rows ({} MiB per input): gRPC p50 {g:?} vs HTTP binary p50 {h:?}; \
             are gRPC's HTTP/2 frame size and flow-control windows large enough?",
            (rows * 16) >> 20
        );
    }
    server.stop().await;
}
