//! Slow and silent HTTP clients are disconnected (header, idle and body
//! timeouts); they never starve a normal client.

use crate::net::{workspace, HttpConn, NetServer};
use anemone_server::server::HttpTimeouts;
use anemone_server::ServerOptions;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADD: &str = r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}"#;

/// Reads until the server closes the connection; what it sent, or `None`
/// if it is still open after `within`.
async fn closed_within(conn: &mut HttpConn, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.stream().read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_stalled_http_clients_are_cut_off() {
    let timeouts = HttpTimeouts {
        header: Duration::from_secs(1),
        body: Duration::from_secs(1),
    };
    let server = NetServer::start_with(ServerOptions {
        repository: workspace().join("examples/models"),
        http_timeouts: timeouts,
        ..Default::default()
    })
    .await;
    server.wait_ready().await;

    // A slow-loris: many connections, each with half a request head.
    let mut loris = Vec::new();
    for _ in 0..64 {
        let mut c = server.http_client().await;
        c.stream()
            .write_all(b"POST /v2/models/add/infer HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        loris.push(c);
    }
    // A body that stops half way.
    let mut stalled = server.http_client().await;
    stalled
        .stream()
        .write_all(b"POST /v2/models/add/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"inputs\"")
        .await
        .unwrap();
    // A body that never starts: its first read is pending, with no chunk
    // to come (the body timer is armed only at the second pending read).
    let mut unstarted = server.http_client().await;
    unstarted
        .stream()
        .write_all(b"POST /v2/models/add/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n")
        .await
        .unwrap();
    // An idle keep-alive connection after one answered request.
    let mut idle = server.http_client().await;
    let r = idle
        .send("POST", "/v2/models/add/infer", ADD.as_bytes())
        .await;
    assert_eq!(r.status, 200);

    // Meanwhile a normal client is served at once.
    let start = Instant::now();
    let mut normal = server.http_client().await;
    let r = normal
        .send("POST", "/v2/models/add/infer", ADD.as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    // Generous: 1 s timeouts, 10 s to see them.
    let stalled_answer = closed_within(&mut stalled, Duration::from_secs(10))
        .await
        .expect("a stalled body is answered and its connection closed");
    assert!(
        stalled_answer.starts_with("HTTP/1.1 408"),
        "{stalled_answer}"
    );
    assert!(
        stalled_answer.contains("--http-body-timeout-secs"),
        "{stalled_answer}"
    );
    let unstarted_answer = closed_within(&mut unstarted, Duration::from_secs(10))
        .await
        .expect("a body that never starts is answered and its connection closed");
    assert!(
        unstarted_answer.starts_with("HTTP/1.1 408"),
        "{unstarted_answer}"
    );
    for (i, c) in loris.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(10)).await.is_some(),
            "slow-loris connection {i} still open"
        );
    }
    assert!(
        closed_within(&mut idle, Duration::from_secs(10))
            .await
            .is_some(),
        "an idle keep-alive connection is kept forever"
    );
    server.stop().await;
}
