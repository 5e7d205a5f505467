//! Triton's `--grpc-infer-response-compression-level`: with a level set,
//! an inference answer comes back compressed with the codec the client
//! accepts (Triton's for the level when it accepts both), through both of the server's gRPC
//! paths (an uncompressed request, and a compressed one, which tonic
//! reads); a client that accepts neither, and every client of a server
//! left at the default, gets it uncompressed. The sums are checked against
//! the arithmetic done here.

use crate::support::{add_model, f32s, run_server, serve, Client, Repo};
use anemone_server::grpc::ResponseCompression;
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use anemone_server::{ControlMode, ServerOptions};
use tonic::codec::CompressionEncoding::{Deflate, Gzip};

const ROWS: usize = 2048;

fn request() -> (proto::ModelInferRequest, Vec<f32>) {
    let x: Vec<f32> = (0..ROWS * 4).map(|i| (i % 97) as f32).collect();
    let y: Vec<f32> = (0..ROWS * 4).map(|i| (i % 13) as f32 * 0.5).collect();
    let sum = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    let input = |name: &str, v: Vec<f32>| InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![ROWS as i64, 4],
        contents: Some(proto::InferTensorContents {
            fp32_contents: v,
            ..Default::default()
        }),
        ..Default::default()
    };
    let request = proto::ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![input("x", x), input("y", y)],
        ..Default::default()
    };
    (request, sum)
}

/// The answer's `grpc-encoding`, after checking its sum.
async fn ask(mut client: Client) -> Option<String> {
    let (request, want) = request();
    let answer = client.model_infer(request).await.unwrap();
    let encoding = answer
        .metadata()
        .get("grpc-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let answer = answer.into_inner();
    let at = answer.outputs.iter().position(|o| o.name == "sum").unwrap();
    assert_eq!(f32s(&answer.raw_output_contents[at]), want);
    encoding
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_answers_are_compressed_as_asked_and_accepted() {
    let repo = Repo::new("grpc-compression");
    repo.write("add/1/model.onnx", &add_model());
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let running = run_server(
        ServerOptions {
            http_port: 0,
            grpc_port: 0,
            repository: repo.root(),
            grpc_response_compression: ResponseCompression::High,
            ..Default::default()
        },
        manager,
    )
    .await;
    let connect = || async {
        GrpcInferenceServiceClient::connect(format!("http://{}", running.grpc))
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !running.state.ready() {
        assert!(std::time::Instant::now() < deadline, "not ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        ask(connect().await.accept_compressed(Gzip))
            .await
            .as_deref(),
        Some("gzip")
    );
    assert_eq!(
        ask(connect().await.accept_compressed(Deflate))
            .await
            .as_deref(),
        Some("deflate")
    );
    // A compressed request takes tonic's path; its answer is compressed too.
    let both = connect()
        .await
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    assert_eq!(ask(both).await.as_deref(), Some("gzip"));
    assert_eq!(
        ask(connect().await).await,
        None,
        "a client that accepts neither"
    );
    let _ = running.stop.send(());
    let _ = running.task.await;

    // By default (Triton's too), nothing is compressed.
    let s = serve(&repo.root(), ControlMode::None, &[], None).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !s.state.ready() {
        assert!(std::time::Instant::now() < deadline, "not ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(ask(s.client().await.accept_compressed(Gzip)).await, None);
    s.shutdown().await;
}
