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

    let channel = server.grpc_channel().await;
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

/// Sends `body` as the request stream of a `ModelInfer` call, as raw HTTP/2
/// (so that its gRPC framing can be wrong), and returns the call's status
/// and its one answer message, if any.
async fn raw_model_infer(
    channel: &mut tonic::transport::Channel,
    body: Vec<u8>,
) -> (tonic::Status, Option<ModelInferResponse>) {
    raw_model_infer_in(channel, vec![body]).await
}

/// [`raw_model_infer`] with the body sent in the given pieces.
async fn raw_model_infer_in(
    channel: &mut tonic::transport::Channel,
    pieces: Vec<Vec<u8>>,
) -> (tonic::Status, Option<ModelInferResponse>) {
    raw_model_infer_stream(channel, futures_util::stream::iter(pieces)).await
}

/// [`raw_model_infer`] with the body's frames taken from `pieces` as it
/// yields them (a stream that never ends leaves the call's stream open).
async fn raw_model_infer_stream(
    channel: &mut tonic::transport::Channel,
    pieces: impl futures_util::Stream<Item = Vec<u8>> + Send + 'static,
) -> (tonic::Status, Option<ModelInferResponse>) {
    raw_model_infer_with(channel, &[], pieces).await
}

/// [`raw_model_infer_stream`] with more request headers.
async fn raw_model_infer_with(
    channel: &mut tonic::transport::Channel,
    headers: &[(&'static str, &'static str)],
    pieces: impl futures_util::Stream<Item = Vec<u8>> + Send + 'static,
) -> (tonic::Status, Option<ModelInferResponse>) {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    use tower::{Service, ServiceExt};
    let mut request = tonic::codegen::http::Request::post(
        "http://anemone/inference.GRPCInferenceService/ModelInfer",
    )
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            pieces.map(|p| Ok::<_, tonic::Status>(http_body::Frame::data(bytes::Bytes::from(p)))),
        )))
        .unwrap();
    let response = channel.ready().await.unwrap().call(request).await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return (status, None); // a trailers-only answer
    }
    // As tonic and Triton answer: the status comes in trailers, after a
    // body of no declared length (with a `content-length`, curl stops at
    // the body's last byte and never reads the status).
    assert!(
        response.headers().get("content-length").is_none(),
        "{:?}",
        response.headers()
    );
    let all = response.into_body().collect().await.unwrap();
    let trailers = all
        .trailers()
        .cloned()
        .expect("an answer ends with trailers");
    let status = tonic::Status::from_header_map(&trailers).expect("a grpc-status trailer");
    let data = all.to_bytes();
    let message = (data.len() > 5).then(|| {
        let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        assert_eq!(data.len(), 5 + len, "one framed message");
        <ModelInferResponse as prost::Message>::decode(&data[5..]).unwrap()
    });
    (status, message)
}

/// The `add` model's request for x = y = [1, 2, 3, 4], encoded.
fn add_request() -> Vec<u8> {
    let x: Vec<u8> = [1f32, 2., 3., 4.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let request = ModelInferRequest {
        model_name: "add".into(),
        inputs: ["x", "y"]
            .map(|name| InferInputTensor {
                name: name.into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                ..Default::default()
            })
            .into(),
        raw_input_contents: vec![x.clone().into(), x.into()],
        ..Default::default()
    };
    prost::Message::encode_to_vec(&request)
}

fn framed(flag: u8, declared: u32, message: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend(declared.to_be_bytes());
    v.extend(message);
    v
}

/// `ModelInfer` reads its message from the HTTP/2 frames itself (not through
/// tonic's buffer): a well-framed call is answered as tonic would answer it,
/// and each framing error gets its own status, with the server going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_infer_framing_errors_on_the_wire_get_clear_statuses() {
    let server = NetServer::start(&workspace().join("examples/models")).await;
    server.wait_ready().await;
    let mut channel = server.grpc_channel().await;
    let message = add_request();
    let len = message.len() as u32;

    // Well framed: answered, with the sum, and grpc-status 0 in the trailers.
    let (status, answer) = raw_model_infer(&mut channel, framed(0, len, &message)).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let answer = answer.expect("one answer message");
    let at = answer
        .outputs
        .iter()
        .position(|o| o.name == "sum")
        .expect("output 'sum'");
    let sum: Vec<f32> = answer.raw_output_contents[at]
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(sum, [2., 4., 6., 8.]);

    let cases: [(Vec<u8>, Code, &str); 5] = [
        (
            framed(1, len, &message),
            Code::InvalidArgument,
            "marked compressed",
        ),
        (
            framed(0, len + 10, &message),
            Code::InvalidArgument,
            "the stream ended after",
        ),
        (
            [framed(0, len, &message), framed(0, len, &message)].concat(),
            Code::InvalidArgument,
            "one message",
        ),
        (Vec::new(), Code::InvalidArgument, "no request message"),
        (framed(0, u32::MAX, &[]), Code::ResourceExhausted, "limit"),
    ];
    for (body, code, text) in cases {
        let (status, answer) = raw_model_infer(&mut channel, body).await;
        assert_eq!(status.code(), code, "{text}: {status:?}");
        assert!(status.message().contains(text), "{text}: {status:?}");
        assert!(answer.is_none());
    }
    // The connection and the server go on, and a message sent a byte a
    // frame is read as well.
    let bytewise = framed(0, len, &message)
        .into_iter()
        .map(|b| vec![b])
        .collect();
    let (status, answer) = raw_model_infer_in(&mut channel, bytewise).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(answer.expect("one answer message").outputs.len(), 2);
    server.stop().await;
}

/// A `ModelInfer` message that stalls mid-way, or never ends its stream, is
/// answered DEADLINE_EXCEEDED after the body timeout (as an HTTP body is
/// 408), and the calls beside it on the same connection are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_model_infer_message_times_out_and_others_go_on() {
    let stall = std::time::Duration::from_secs(1);
    let server = NetServer::start_with(anemone_server::ServerOptions {
        repository: workspace().join("examples/models"),
        http_timeouts: anemone_server::server::HttpTimeouts {
            header: std::time::Duration::from_secs(30),
            body: stall,
        },
        ..Default::default()
    })
    .await;
    server.wait_ready().await;
    let channel = server.grpc_channel().await;
    let whole = framed(0, add_request().len() as u32, &add_request());
    let half = whole[..whole.len() / 2].to_vec();
    let stalled = |first: Vec<u8>| {
        let mut channel = channel.clone();
        tokio::spawn(async move {
            let pieces = futures_util::StreamExt::chain(
                futures_util::stream::iter([first]),
                futures_util::stream::pending(),
            );
            let started = std::time::Instant::now();
            let (status, answer) = raw_model_infer_stream(&mut channel, pieces).await;
            (status, answer, started.elapsed())
        })
    };
    let (mid_message, unended) = (stalled(half), stalled(whole.clone()));
    // Meanwhile, on the same connection, whole calls are answered at once.
    let mut channel_now = channel.clone();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (status, answer) = raw_model_infer(&mut channel_now, whole.clone()).await;
        assert_eq!(status.code(), Code::Ok, "{status:?}");
        assert_eq!(answer.expect("an answer").outputs.len(), 2);
        assert!(started.elapsed() < stall, "{:?}", started.elapsed());
    }
    for (call, what) in [(mid_message, "mid-message"), (unended, "unended stream")] {
        // Bounded, so that a server that never times the message out fails
        // here rather than hanging (the default timeout is 60 s).
        let (status, answer, took) = tokio::time::timeout(stall * 20, call)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer in {:?}", stall * 20))
            .unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{what}: {status:?}");
        assert!(
            status.message().contains("--http-body-timeout-secs"),
            "{what}: {status:?}"
        );
        assert!(answer.is_none(), "{what}");
        assert!(took >= stall, "{what}: answered after {took:?}");
    }
    // The connection still serves.
    let (status, _) = raw_model_infer(&mut channel_now, whole).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    server.stop().await;
}

/// Requests compressed with gzip or deflate (tritonclient's
/// `compression_algorithm`, which Triton accepts) are answered; one that
/// does not decompress is INVALID_ARGUMENT, and one larger than
/// `--max-request-bytes` once decompressed is RESOURCE_EXHAUSTED, without
/// the server decompressing past the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_requests_are_read_within_the_limit() {
    use tonic::codec::CompressionEncoding;
    let limit = 1 << 20;
    let server = NetServer::start_with(anemone_server::ServerOptions {
        repository: workspace().join("examples/models"),
        max_request_bytes: limit,
        ..Default::default()
    })
    .await;
    server.wait_ready().await;
    let request = <ModelInferRequest as prost::Message>::decode(&add_request()[..]).unwrap();
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Deflate] {
        let mut client = server.grpc_client().await.send_compressed(encoding);
        let answer = client
            .model_infer(request.clone())
            .await
            .unwrap()
            .into_inner();
        let at = answer.outputs.iter().position(|o| o.name == "sum").unwrap();
        let sum: Vec<f32> = answer.raw_output_contents[at]
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(sum, [2., 4., 6., 8.], "{encoding:?}");

        // 2 MiB of zeros compress to a few KB, and decompress past the limit.
        let mut bomb = request.clone();
        bomb.raw_input_contents[0] = vec![0u8; 2 << 20].into();
        let status = client.model_infer(bomb).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{encoding:?}: {status:?}"
        );
        assert!(
            status.message().contains("--max-request-bytes")
                && status.message().contains("decompressed"),
            "{encoding:?}: {status:?}"
        );
    }
    // Bytes marked gzip that are not gzip.
    let mut channel = server.grpc_channel().await;
    let (status, answer) = raw_model_infer_with(
        &mut channel,
        &[("grpc-encoding", "gzip")],
        futures_util::stream::iter([framed(1, 16, &[0x55; 16])]),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("malformed request: "),
        "{status:?}"
    );
    assert!(answer.is_none());
    // The server goes on.
    let (status, _) = raw_model_infer(
        &mut channel,
        framed(0, add_request().len() as u32, &add_request()),
    )
    .await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    server.stop().await;
}
