//! Over real TCP rather than the router: a binary request and its headers,
//! and a shutdown that lets requests in flight finish.

use super::*;
use std::io::{Read, Write};

/// Status, headers (lower-case names), body.
type Exchange = (u16, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 exchange over a fresh blocking connection, off the async executor.
async fn exchange(
    addr: std::net::SocketAddr,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> Exchange {
    exchange_in(addr, method, path, headers, vec![body]).await
}

/// [`exchange`] with the body written in `pieces`, 20 ms apart, so that the
/// server reads it in as many chunks.
async fn exchange_in(
    addr: std::net::SocketAddr,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    pieces: Vec<Vec<u8>>,
) -> Exchange {
    tokio::task::spawn_blocking(move || exchange_blocking(addr, method, path, &headers, &pieces))
        .await
        .unwrap()
}

fn exchange_blocking(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    pieces: &[Vec<u8>],
) -> Exchange {
    let body_len: usize = pieces.iter().map(Vec::len).sum();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {body_len}\r\n",
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        stream.write_all(piece).unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_infer_over_real_tcp() {
    let s = start(&workspace().join("examples/models"), ControlMode::None, &[]).await;
    let addr = s.addr;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, ..) = exchange(addr, "GET", "/v2/models/add/ready", vec![], vec![]).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "add never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, body) = exchange(addr, "GET", "/v2/health/ready", vec![], vec![]).await;
    assert_eq!((status, body.as_slice()), (200, &br#"{"ready":true}"#[..]));

    let header = json!({
            "id": "tcp",
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
                {"name": "y", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
            ],
            "outputs": [{"name": "diff", "parameters": {"binary_data": true}}, {"name": "sum", "parameters": {"binary_data": true}}]
        })
        .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(f32_bytes(&X));
    body.extend(f32_bytes(&Y));
    let headers = vec![
        ("inference-header-content-length", header.len().to_string()),
        ("content-type", "application/octet-stream".into()),
    ];
    let (status, headers, body) =
        exchange(addr, "POST", "/v2/models/add/infer", headers, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        find(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        find(&headers, "content-length"),
        Some(body.len().to_string().as_str()),
        "{headers:?}"
    );
    assert!(find(&headers, "transfer-encoding").is_none(), "{headers:?}");
    let n: usize = find(&headers, "inference-header-content-length")
        .unwrap()
        .parse()
        .unwrap();
    let v: Value = serde_json::from_slice(&body[..n]).unwrap();
    assert_eq!(
        v,
        json!({
            "model_name": "add",
            "model_version": "1",
            "id": "tcp",
            "outputs": [
                {"name": "sum", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}},
                {"name": "diff", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}},
            ]
        })
    );
    assert_eq!(f32s(&body[n..n + 32]), SUM);
    assert_eq!(f32s(&body[n + 32..]), DIFF);

    // The same request arriving in pieces (the server joins them, placing
    // the binary part aligned): the same answer, for every way to cut it.
    let mut request = header.clone().into_bytes();
    request.extend(f32_bytes(&X));
    request.extend(f32_bytes(&Y));
    for cuts in [
        vec![header.len()],
        vec![header.len() - 1, header.len() + 3],
        vec![5, header.len() + 32, header.len() + 50],
    ] {
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts.iter().copied().chain([request.len()]) {
            pieces.push(request[from..cut].to_vec());
            from = cut;
        }
        let headers = vec![("inference-header-content-length", header.len().to_string())];
        let (status, headers, body) =
            exchange_in(addr, "POST", "/v2/models/add/infer", headers, pieces).await;
        assert_eq!(status, 200, "{cuts:?}: {}", String::from_utf8_lossy(&body));
        let n: usize = find(&headers, "inference-header-content-length")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(f32s(&body[n..n + 32]), SUM, "{cuts:?}");
        assert_eq!(f32s(&body[n + 32..]), DIFF, "{cuts:?}");
    }

    let (status, _, body) = exchange(
        addr,
        "POST",
        "/v2/models/add/infer",
        vec![],
        br#"{"inputs": []"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("malformed inference request JSON"));
    s.shutdown().await;
}

/// SIGTERM-style shutdown while a slow request runs: the request finishes
/// with 200, later connections are refused, and `run` returns Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let repo = TempRepo::new("shutdown").fixture("resnet", "resnet18");
    let s = start(&repo.0, ControlMode::None, &[]).await;
    s.wait_ready(&["resnet"]).await;
    let x = npy("resnet18/run0_in_0.npy");
    let header = json!({
            "inputs": [{"name": "input", "shape": x.shape(), "datatype": "FP32", "parameters": {"binary_data_size": x.byte_len()}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]
        })
        .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(x.as_bytes().unwrap());
    let headers = vec![("inference-header-content-length", header.len().to_string())];
    let addr = s.addr;
    let in_flight = tokio::spawn(exchange(
        addr,
        "POST",
        "/v2/models/resnet/infer",
        headers,
        body,
    ));
    // Wait until the engine is running it, then ask the server to stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.state.manager.metrics().in_flight == 0 {
        assert!(Instant::now() < deadline, "the request never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let TestServer {
        state, stop, task, ..
    } = s;
    let _ = stop.send(());
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(
        status,
        200,
        "the request in flight must complete: {}",
        String::from_utf8_lossy(&body)
    );
    task.await
        .unwrap()
        .expect("run() returns Ok after draining");
    assert!(!state.live(), "not live after shutdown");
    assert_eq!(state.manager.metrics().in_flight, 0);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is closed"
    );
}
