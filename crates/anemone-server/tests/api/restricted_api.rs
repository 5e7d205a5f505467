//! Issue 14: `--http-restricted-api` / `--grpc-restricted-protocol`, as
//! Triton's. A restricted group without its header gets 403 /
//! PERMISSION_DENIED naming the header (never the value); with it, the
//! request goes through; groups not listed stay open.

use crate::net::{NetServer, Repo};
use crate::request_limits::send;
use anemone_server::proto::{self, ModelInferRequest};
use anemone_server::restricted::{RestrictedApi, Restrictions};
use anemone_server::ServerOptions;
use serde_json::json;

type Key = Option<(&'static str, &'static str)>;
const ADMIN: Key = Some(("triton-grpc-protocol-admin-key", "adm1n"));
const WRONG: Key = Some(("triton-grpc-protocol-admin-key", "nope"));
const USER: Key = Some(("triton-grpc-protocol-user-key", "u5er"));

/// A gRPC request with the metadata `key`, if any.
fn req<T>(message: T, key: Key) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some((k, v)) = key {
        r.metadata_mut().insert(k, v.parse().unwrap());
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_restricted_groups_need_their_header_over_http_and_grpc() {
    let model = crate::net::workspace().join("examples/models/add/1/model.onnx");
    let repo = Repo::new("restricted").model("add", &model, None);
    let groups = |grpc| {
        Restrictions::parse(
            &[
                "model-repository,model-config,statistics,shared-memory:admin-key=adm1n"
                    .to_string(),
                "inference:user-key=u5er".to_string(),
            ],
            grpc,
        )
        .unwrap()
    };
    let server = NetServer::start_with(ServerOptions {
        repository: repo.0.to_path_buf(),
        restricted: RestrictedApi {
            http: groups(false),
            grpc: groups(true),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    server.wait_ready().await;

    // HTTP: refused without the header (or with a wrong value), never echoing the value.
    let infer = json!({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]})
    .to_string();
    let cases: [(&str, &str, &[u8], &str, &str); 5] = [
        ("POST", "/v2/repository/index", b"{}", "admin-key", "adm1n"),
        (
            "GET",
            "/v2/systemsharedmemory/status",
            b"",
            "admin-key",
            "adm1n",
        ),
        ("GET", "/v2/models/add/config", b"", "admin-key", "adm1n"),
        (
            "GET",
            "/v2/models/add/versions/1/stats",
            b"",
            "admin-key",
            "adm1n",
        ),
        (
            "POST",
            "/v2/models/add/infer",
            infer.as_bytes(),
            "user-key",
            "u5er",
        ),
    ];
    for (method, path, body, key, value) in cases {
        for headers in [vec![], vec![(key, "wrong")], vec![("other", value)]] {
            let r = send(&server, method, path, &headers, body).await;
            let text = String::from_utf8_lossy(&r.body).to_string();
            assert_eq!(r.status, 403, "{path} {headers:?}: {text}");
            assert!(text.contains(&format!("send the header '{key}'")), "{text}");
            assert!(!text.contains(value), "the value leaked: {text}");
        }
        let r = send(&server, method, path, &[(key, value)], body).await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Groups not listed stay open; the admin key does not open inference.
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/add",
        "/v2/models/add/ready",
        "/metrics",
    ] {
        assert_eq!(
            send(&server, "GET", path, &[], b"").await.status,
            200,
            "{path}"
        );
    }
    let r = send(
        &server,
        "POST",
        "/v2/models/add/infer",
        &[("admin-key", "adm1n")],
        infer.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403);
    // Load passes the restriction, then meets model control mode 'none'.
    let r = send(
        &server,
        "POST",
        "/v2/repository/models/add/load",
        &[("admin-key", "adm1n")],
        b"",
    )
    .await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let r = send(&server, "POST", "/v2/repository/models/add/load", &[], b"").await;
    assert_eq!(r.status, 403);

    // gRPC: the metadata is `triton-grpc-protocol-<key>`.
    let mut client = server.grpc_client().await;
    let index = proto::RepositoryIndexRequest::default();
    let status = client
        .repository_index(req(index.clone(), None))
        .await
        .expect_err("restricted");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("'triton-grpc-protocol-admin-key'"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("adm1n"));
    assert_eq!(
        client
            .repository_index(req(index.clone(), WRONG))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    client.repository_index(req(index, ADMIN)).await.unwrap();
    let config = proto::ModelConfigRequest {
        name: "add".into(),
        ..Default::default()
    };
    assert_eq!(
        client
            .model_config(req(config.clone(), None))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    client.model_config(req(config, ADMIN)).await.unwrap();
    let regions = proto::SystemSharedMemoryStatusRequest::default();
    assert_eq!(
        client
            .system_shared_memory_status(req(regions.clone(), None))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    client
        .system_shared_memory_status(req(regions, ADMIN))
        .await
        .unwrap();
    let load = proto::RepositoryModelLoadRequest {
        model_name: "add".into(),
        ..Default::default()
    };
    assert_eq!(
        client
            .repository_model_load(req(load, None))
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    let request = ModelInferRequest {
        model_name: "add".into(),
        ..Default::default()
    };
    let status = client
        .model_infer(req(request.clone(), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("triton-grpc-protocol-user-key"));
    // With the key, the request reaches the decoder (and is refused for its own reasons).
    let status = client.model_infer(req(request, USER)).await.unwrap_err();
    assert_ne!(
        status.code(),
        tonic::Code::PermissionDenied,
        "{}",
        status.message()
    );
    // Open groups stay open.
    client
        .server_live(proto::ServerLiveRequest::default())
        .await
        .unwrap();
    client
        .model_metadata(proto::ModelMetadataRequest {
            name: "add".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_restricting_health_covers_the_grpc_health_service() {
    let repo = Repo::new("restricted-health");
    let server = NetServer::start_with(ServerOptions {
        repository: repo.0.to_path_buf(),
        restricted: RestrictedApi {
            grpc: Restrictions::parse(&["health:probe=p".to_string()], true).unwrap(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let mut r = tonic::Request::new(tonic_health::pb::HealthCheckRequest::default());
    r.metadata_mut()
        .insert("triton-grpc-protocol-probe", "p".parse().unwrap());
    health.check(r).await.unwrap();
    // HTTP was not restricted.
    assert_eq!(
        send(&server, "GET", "/v2/health/live", &[], b"")
            .await
            .status,
        200
    );
    server.stop().await;
}
