//! Triton's `--allow-http` and `--allow-grpc`: a protocol switched off has
//! no listener while the other serves (`add`'s sum checked against the
//! arithmetic done here), and switching both off is refused, saying so;
//! and `--http-address`, `--metrics-address`: listeners on addresses of
//! their own.

use crate::net::{HttpConn, Repo};
use anemone_server::proto::{self, model_infer_request::InferInputTensor};
use anemone_server::{Server, ServerOptions};
use serde_json::json;
use std::time::{Duration, Instant};

fn manager() -> anemone_runtime::Manager {
    anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap()
}

/// Runs `server` until `check` is done, once its models are ready.
async fn serve_while<F: std::future::Future<Output = ()>>(
    server: Server,
    check: impl FnOnce() -> F,
) {
    let state = server.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.ready() {
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_switched_off_has_no_listener() {
    let model = crate::net::workspace().join("examples/models/add/1/model.onnx");
    let repo = Repo::new("listeners").model("add", &model, None);
    let options = |allow_http, allow_grpc| ServerOptions {
        repository: repo.0.to_path_buf(),
        http_port: 0,
        grpc_port: 0,
        allow_http,
        allow_grpc,
        ..Default::default()
    };

    // gRPC only.
    let server = Server::bind(options(false, true), manager()).await.unwrap();
    assert_eq!(server.http_addr(), None);
    let grpc = server.grpc_addr().expect("gRPC is on");
    serve_while(server, || async move {
        let mut client = proto::grpc_inference_service_client::GrpcInferenceServiceClient::connect(
            format!("http://{grpc}"),
        )
        .await
        .unwrap();
        let input = |name: &str, v: Vec<f32>| InferInputTensor {
            name: name.into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            contents: Some(proto::InferTensorContents {
                fp32_contents: v,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (x, y) = (vec![1.0, 2.0, 3.0, 4.0], vec![0.5, -2.0, 10.0, 0.25]);
        let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
        let answer = client
            .model_infer(proto::ModelInferRequest {
                model_name: "add".into(),
                inputs: vec![input("x", x), input("y", y)],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(crate::support::f32s(&answer.raw_output_contents[0]), want);
    })
    .await;

    // HTTP only.
    let server = Server::bind(options(true, false), manager()).await.unwrap();
    assert_eq!(server.grpc_addr(), None);
    let http = server.http_addr().expect("HTTP is on");
    serve_while(server, || async move {
        let body = json!({"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [10, 20, 30, 40]}]});
        let reply = HttpConn::connect(http)
            .await
            .send("POST", "/v2/models/add/infer", body.to_string().as_bytes())
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()["outputs"][0]["data"],
            json!([11.0, 22.0, 33.0, 44.0])
        );
    })
    .await;

    // HTTP and metrics on addresses of their own (Triton's --http-address,
    // --metrics-address), gRPC on --host (every interface here); all serve.
    let server = Server::bind(
        ServerOptions {
            host: "0.0.0.0".into(),
            addresses: anemone_server::server::ListenerAddresses {
                http: Some("127.0.0.1".into()),
                metrics: Some("127.0.0.1".into()),
                ..Default::default()
            },
            ops: anemone_server::settings::OpsOptions {
                metrics_port: Some(0),
                ..Default::default()
            },
            ..options(true, true)
        },
        manager(),
    )
    .await
    .unwrap();
    let (http, grpc) = (server.http_addr().unwrap(), server.grpc_addr().unwrap());
    let metrics = server.metrics_addr().expect("metrics have a port");
    assert_eq!(
        (
            http.ip().to_string(),
            grpc.ip().to_string(),
            metrics.ip().to_string()
        ),
        (
            "127.0.0.1".to_string(),
            "0.0.0.0".to_string(),
            "127.0.0.1".to_string()
        )
    );
    let grpc = std::net::SocketAddr::from(([127, 0, 0, 1], grpc.port()));
    serve_while(server, || async move {
        let reply = HttpConn::connect(http)
            .await
            .send("GET", "/v2/health/ready", b"")
            .await;
        assert_eq!(reply.status, 200);
        let reply = HttpConn::connect(metrics)
            .await
            .send("GET", "/metrics", b"")
            .await;
        assert_eq!(reply.status, 200);
        let text = String::from_utf8_lossy(&reply.body).to_string();
        assert!(
            text.contains("anemone_inference_request_success_total"),
            "{text}"
        );
        let mut client = proto::grpc_inference_service_client::GrpcInferenceServiceClient::connect(
            format!("http://{grpc}"),
        )
        .await
        .unwrap();
        let live = client
            .server_live(proto::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(live.live);
    })
    .await;

    // Neither: nothing to serve.
    let e = Server::bind(options(false, false), manager())
        .await
        .err()
        .expect("refused");
    assert!(
        e.contains("nothing to serve") && e.contains("--allow-grpc false"),
        "{e}"
    );
}

/// Triton's `--reuse-http-port`, `--reuse-grpc-port`: two servers that both
/// ask for it listen on one port, and both answer there; a second server
/// that does not ask is refused the port, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_reuse_a_port_share_it() {
    let model = crate::net::workspace().join("examples/models/add/1/model.onnx");
    let repo = Repo::new("reuse-ports").model("add", &model, None);
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (http_port, grpc_port) = (free(), free());
    let options = |reuse| ServerOptions {
        repository: repo.0.to_path_buf(),
        http_port,
        grpc_port,
        reuse_ports: anemone_server::server::ReusePorts {
            http: reuse,
            grpc: reuse,
        },
        ..Default::default()
    };
    let first = Server::bind(options(true), manager()).await.unwrap();
    let refused = Server::bind(options(false), manager()).await.err();
    let refused = refused.expect("a server that does not reuse the port is refused it");
    assert!(
        refused.contains(&format!("cannot listen for HTTP on 127.0.0.1:{http_port}")),
        "{refused}"
    );
    let second = Server::bind(options(true), manager()).await.unwrap();
    assert_eq!(first.http_addr(), second.http_addr());
    assert_eq!(first.grpc_addr(), second.grpc_addr());
    // Both serve: closing the first leaves the second answering on the port.
    let http = first.http_addr().unwrap();
    let (state, (stop, stopped)) = (second.state(), tokio::sync::oneshot::channel::<()>());
    let task = tokio::spawn(second.run(async move {
        let _ = stopped.await;
    }));
    serve_while(first, || async move {
        let reply = HttpConn::connect(http)
            .await
            .send("GET", "/v2/health/live", b"")
            .await;
        assert_eq!(reply.status, 200);
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.ready() {
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = HttpConn::connect(http)
        .await
        .send("GET", "/v2/health/ready", b"")
        .await;
    assert_eq!(reply.status, 200);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
