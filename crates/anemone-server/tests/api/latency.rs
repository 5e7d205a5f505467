//! gRPC must not be slower than HTTP by a whole delayed-ACK period on small
//! requests (Nagle's algorithm on accepted sockets cost ~40 ms per request).
//! One wide ratio over real TCP, the only kind of timing assert allowed.

use crate::net::{median, workspace, NetServer};
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::ModelInferRequest;
use std::time::{Duration, Instant};

/// Requests measured per protocol and size (after as many warm-ups).
const SAMPLES: usize = 25;

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

fn http_body(rows: usize) -> Vec<u8> {
    let data: Vec<f32> = (0..rows * 4).map(|i| i as f32).collect();
    let input = |name: &str| serde_json::json!({"name": name, "shape": [rows, 4], "datatype": "FP32", "data": data});
    serde_json::json!({"inputs": [input("x"), input("y")]})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_p50_stays_within_a_small_factor_of_http_on_small_requests() {
    let server = NetServer::start(&workspace().join("examples/models")).await;
    server.wait_ready().await;
    let mut grpc = server.grpc_client().await;
    let mut http = server.http_client().await;
    // 128, 512 and 2048 rows: 2, 8 and 32 KiB per input, as much back.
    for rows in [128usize, 512, 2048] {
        let request = grpc_request(rows);
        let body = http_body(rows);
        let (mut g, mut h) = (Vec::new(), Vec::new());
        for i in 0..2 * SAMPLES {
            let t = Instant::now();
            let reply = grpc
                .model_infer(request.clone())
                .await
                .unwrap()
                .into_inner();
            let grpc_took = t.elapsed();
            assert_eq!(reply.raw_output_contents[0].len(), rows * 16);
            let t = Instant::now();
            let reply = http.send("POST", "/v2/models/add/infer", &body).await;
            let http_took = t.elapsed();
            assert_eq!(
                reply.status,
                200,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            if i >= SAMPLES {
                g.push(grpc_took);
                h.push(http_took);
            }
        }
        let (g, h) = (median(g), median(h));
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
