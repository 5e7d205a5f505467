//! The HTTP/2 settings the gRPC listener advertises.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the server says first: its SETTINGS frame's `(identifier, value)`
/// pairs, and the increment of its first WINDOW_UPDATE for the whole
/// connection (stream 0), if one comes within a second of the settings.
/// Read after sending the client preface and an empty SETTINGS frame.
async fn server_frames(addr: std::net::SocketAddr) -> (Vec<(u16, u32)>, Option<u32>) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut settings = None;
    loop {
        let wait = if settings.is_some() { 1 } else { 10 };
        let mut head = [0u8; 9];
        let read = tokio::time::timeout(Duration::from_secs(wait), tcp.read_exact(&mut head)).await;
        let Ok(read) = read else {
            let settings = settings.expect("the server sends its settings");
            return (settings, None);
        };
        read.unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        let (kind, ack) = (head[3], head[4] & 1 == 1);
        if kind == 4 && !ack && settings.is_none() {
            settings = Some(
                payload
                    .chunks_exact(6)
                    .map(|s| {
                        (
                            u16::from_be_bytes([s[0], s[1]]),
                            u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
        }
        if kind == 8 && stream == 0 {
            let increment = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            let settings = settings.expect("WINDOW_UPDATE before SETTINGS");
            return (settings, Some(increment & 0x7fff_ffff));
        }
    }
}

/// The server's SETTINGS frame.
async fn server_settings(addr: std::net::SocketAddr) -> Vec<(u16, u32)> {
    server_frames(addr).await.0
}

/// Large inputs arrive in few frames: the listener takes frames of
/// `GRPC_MAX_FRAME_SIZE` (1 MiB), not HTTP/2's default 16 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_listener_takes_one_mebibyte_frames() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let settings = server_settings(server.addr).await;
    const SETTINGS_MAX_FRAME_SIZE: u16 = 5;
    let max_frame = settings
        .iter()
        .find(|(id, _)| *id == SETTINGS_MAX_FRAME_SIZE)
        .map(|(_, v)| *v);
    assert_eq!(
        max_frame,
        Some(anemone_server::server::GRPC_MAX_FRAME_SIZE),
        "settings: {settings:?}"
    );
    assert_eq!(anemone_server::server::GRPC_MAX_FRAME_SIZE, 1 << 20);
    // A request larger than one default frame still round-trips.
    let mut c = server.ready_client().await;
    let x: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
    let y: Vec<f32> = (0..100_000).map(|i| (i % 7) as f32).collect();
    // 400 KB per input: 25 frames of the default size.
    let answer = c.model_infer(add_raw(&x, &y)).await;
    server.stop().await;
    let answer = answer.unwrap().into_inner();
    assert_eq!(
        f32s(&answer.raw_output_contents[0]),
        zip(&x, &y, |a, b| a + b)
    );
}

/// The flow-control windows are Triton's: 4 MiB per stream and per
/// connection (HTTP/2 starts both at 65,535 bytes; the connection's grows
/// by a WINDOW_UPDATE), the header list limit is Triton's 16 KiB, and a
/// connection may have 1024 requests open (`--grpc-max-concurrent-streams`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_listener_has_tritons_windows_and_header_limit() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let (settings, connection_increment) = server_frames(server.addr).await;
    server.stop().await;
    let setting = |id: u16| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 4;
    const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 6;
    const TRITON_WINDOW: u32 = 4 << 20;
    assert_eq!(anemone_server::server::GRPC_WINDOW_SIZE, TRITON_WINDOW);
    assert_eq!(
        setting(SETTINGS_INITIAL_WINDOW_SIZE),
        Some(TRITON_WINDOW),
        "settings: {settings:?}"
    );
    assert_eq!(
        connection_increment.map(|i| 65_535 + i),
        Some(TRITON_WINDOW),
        "the connection's window update"
    );
    // The HTTP/2 layer takes 4 MiB of headers, so that a call's metadata
    // over Triton's 16 KiB gets Triton's own refusal (metadata_limit.rs).
    assert_eq!(
        setting(SETTINGS_MAX_HEADER_LIST_SIZE),
        Some(4 << 20),
        "settings: {settings:?}"
    );
    // Open requests per connection are bounded (HTTP/2 leaves them unlimited).
    const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 3;
    assert_eq!(
        setting(SETTINGS_MAX_CONCURRENT_STREAMS),
        Some(1024),
        "settings: {settings:?}"
    );
}

/// A call whose deadline (`grpc-timeout`) ends before it reaches its
/// handler is answered DEADLINE_EXCEEDED, as Triton answers it. Here the
/// request's message comes 1.5 s after its headers, under a 500 ms
/// deadline: the server answers at 475 ms, before the client's own timer
/// (tonic's, at 500 ms: CANCELLED "Timeout expired"). Until session 44 the
/// server's tonic answered CANCELLED "Timeout expired" itself at 500 ms,
/// as for a 1 ms deadline on a loaded host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_ends_before_the_message_arrives_is_deadline_exceeded() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut ready = server.ready_client().await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let late = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        add_raw(&[1.0; 4], &[2.0; 4])
    });
    let mut request = tonic::Request::new(late);
    request.set_timeout(Duration::from_millis(500));
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/inference.GRPCInferenceService/ModelInfer",
    );
    grpc.ready().await.unwrap();
    let started = Instant::now();
    let codec = tonic_prost::ProstCodec::<ModelInferRequest, ModelInferResponse>::default();
    let answer = grpc.client_streaming(request, path, codec).await;
    let e = answer.expect_err("the deadline ends before the message arrives");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    // The same connection's next calls are served.
    let sum = ready
        .model_infer(add_raw(&[1.0; 4], &[2.0; 4]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f32s(&sum.raw_output_contents[0]), vec![3.0; 4]);
    server.stop().await;
}
