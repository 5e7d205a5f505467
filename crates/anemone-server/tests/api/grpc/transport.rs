//! The HTTP/2 settings the gRPC listener advertises.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server's SETTINGS frame: `(identifier, value)` pairs, read after
/// sending the client preface and an empty SETTINGS frame.
async fn server_settings(addr: std::net::SocketAddr) -> Vec<(u16, u32)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    loop {
        let mut head = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut head))
            .await
            .expect("the server sends its settings")
            .unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        let (kind, ack) = (head[3], head[4] & 1 == 1);
        if kind == 4 && !ack {
            return payload
                .chunks_exact(6)
                .map(|s| {
                    (
                        u16::from_be_bytes([s[0], s[1]]),
                        u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
                    )
                })
                .collect();
        }
    }
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
