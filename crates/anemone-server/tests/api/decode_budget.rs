//! Issue 14: the server-wide decode budget (`--max-decoding-bytes`) is taken
//! only once a body has arrived, so clients that trickle big bodies in hold
//! their own connections, not the budget, and other requests go on; clients
//! that go away mid-body leave nothing behind.

use crate::net::{NetServer, Repo};
use anemone_server::server::RequestLimits;
use anemone_server::ServerOptions;
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_trickling_bodies_do_not_hold_the_decode_budget() {
    let model = crate::net::workspace().join("examples/models/add/1/model.onnx");
    let repo = Repo::new("decode-budget").model("add", &model, None);
    let server = NetServer::start_with(ServerOptions {
        repository: repo.0.to_path_buf(),
        limits: RequestLimits {
            max_decoding_bytes: 64 << 10,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    server.wait_ready().await;

    // Three clients announce 1 MiB bodies (each over the whole budget) and
    // send a few bytes of them.
    let mut tricklers = Vec::new();
    for _ in 0..3 {
        let mut conn = server.http_client().await;
        let head = "POST /v2/models/add/infer HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n{\"inputs\": [";
        conn.stream().write_all(head.as_bytes()).await.unwrap();
        tricklers.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let body = json!({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]})
    .to_string();
    let mut conn = server.http_client().await;
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        conn.send("POST", "/v2/models/add/infer", body.as_bytes()),
    )
    .await
    .expect("a small request waited behind bodies that had not arrived");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.json()["outputs"][0]["data"],
        json!([2.0, 3.0, 4.0, 5.0])
    );
    // The three clients go away mid-body: nothing of theirs reaches the
    // model (its statistics count only the answered requests), and the
    // server goes on answering.
    drop(tricklers);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = conn
        .send("POST", "/v2/models/add/infer", body.as_bytes())
        .await;
    assert_eq!(reply.status, 200);
    let stats = conn.send("GET", "/v2/models/add/stats", b"").await.json();
    let inference = &stats["model_stats"][0]["inference_stats"];
    assert_eq!(
        (
            &inference["success"]["count"],
            &inference["fail"]["count"],
            &stats["model_stats"][0]["execution_count"]
        ),
        (&json!(2), &json!(0), &json!(2)),
        "{stats}"
    );
    server.stop().await;
}
