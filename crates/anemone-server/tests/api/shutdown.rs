//! On shutdown, readiness turns false first, and a request still uploading
//! when the signal came is served, not refused (it got 503 before).

use crate::net::{workspace, NetServer};
use anemone_server::ServerOptions;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_uploading_at_shutdown_is_served_and_readiness_turns_false_first() {
    let mut server = NetServer::start_with(ServerOptions {
        repository: workspace().join("examples/models"),
        exit_timeout: std::time::Duration::from_secs(20),
        ..Default::default()
    })
    .await;
    server.wait_ready().await;
    let body =
        br#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}"#;
    let mut conn = server.http_client().await;
    let head = format!(
        "POST /v2/models/add/infer HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.stream().write_all(head.as_bytes()).await.unwrap();
    conn.stream().write_all(&body[..20]).await.unwrap();
    // The handler is waiting for the rest of the body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal_stop();
    let start = Instant::now();
    while server.state.ready() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "still ready after shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.stream().write_all(&body[20..]).await.unwrap();
    let reply = conn.read_reply().await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    server.stop().await;
}
