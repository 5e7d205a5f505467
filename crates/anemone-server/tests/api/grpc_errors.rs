//! gRPC errors a client can read: a message that would echo a huge name is
//! cut (a status over the client's 16 KiB header limit reached it as
//! RESOURCE_EXHAUSTED), and bytes that are not a valid request are
//! INVALID_ARGUMENT, not INTERNAL.

use crate::net::{workspace, NetServer};
use anemone_server::proto::model_infer_request::InferInputTensor;
use anemone_server::proto::{ModelInferRequest, ModelInferResponse};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;

/// Field 1 of `ModelInferRequest` (`model_name`, a string) as raw bytes, so
/// that it can carry invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawName {
    #[prost(bytes = "vec", tag = "1")]
    model_name: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_messages_are_cut_and_malformed_requests_are_invalid_argument() {
    let server = NetServer::start(&workspace().join("examples/models")).await;
    server.wait_ready().await;
    let mut client = server.grpc_client().await;
    let name = "n".repeat(40_000);
    let request = ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![InferInputTensor {
            name: name.clone(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0u8; 16]].into_iter().map(Into::into).collect(),
        ..Default::default()
    };
    let status = client.model_infer(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().len() <= 2048, "{}", status.message().len());
    // Names over 1024 bytes are refused (issue 14), with a message that quotes
    // only their start; errors.rs tests the cut of other long messages.
    assert!(
        status.message().starts_with("input name 'nnnn")
            && status
                .message()
                .ends_with("is 40000 bytes long, over the limit of 1024"),
        "{}",
        status.message()
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(RawName {
                model_name: vec![0xff, 0xfe, 0xfd],
            }),
            PathAndQuery::from_static("/inference.GRPCInferenceService/ModelInfer"),
            tonic_prost::ProstCodec::<RawName, ModelInferResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("malformed request"), "{status:?}");
    // The connection and the server go on.
    assert!(
        client
            .server_live(anemone_server::proto::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    server.stop().await;
}
