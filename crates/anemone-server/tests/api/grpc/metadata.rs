//! The server and model RPCs (liveness, metadata, readiness, config, the
//! index, statistics), and the standard health service once models are ready.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_model_rpcs_answer() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;

    assert!(
        c.server_live(proto::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    let meta = c
        .server_metadata(proto::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "anemone");
    assert!(!meta.version.is_empty());
    assert!(
        meta.extensions.iter().any(|e| e == "model_repository"),
        "{:?}",
        meta.extensions
    );

    let ready = |name: &str, version: &str| proto::ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        c.model_ready(ready("add", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        c.model_ready(ready("add", "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    // As tritonserver 2.51 (checked side by side): an unknown model is not
    // ready, an answer rather than an error.
    assert!(
        !c.model_ready(ready("nope", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    // A version that is not a number is still refused.
    assert_eq!(
        c.model_ready(ready("add", "one")).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let m = c
        .model_metadata(proto::ModelMetadataRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.name, "add");
    assert_eq!(m.versions, vec!["1"]);
    assert!(!m.platform.is_empty());
    let names = |t: &[proto::model_metadata_response::TensorMetadata]| {
        t.iter().map(|t| t.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&m.inputs), ["x", "y"]);
    assert_eq!(names(&m.outputs), ["sum", "diff"]);
    for t in m.inputs.iter().chain(&m.outputs) {
        assert_eq!(
            (t.datatype.as_str(), t.shape.as_slice()),
            ("FP32", &[-1, 4][..]),
            "{t:?}"
        );
    }

    let config = c
        .model_config(proto::ModelConfigRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let config = config.config.expect("ModelConfigResponse has a config");
    assert_eq!(config.name, "add");
    assert_eq!(
        config
            .input
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["x", "y"]
    );
    let err = c
        .model_config(proto::ModelConfigRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let index = c
        .repository_index(proto::RepositoryIndexRequest {
            repository_name: String::new(),
            ready: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(index.models.len(), 1);
    assert_eq!(
        (
            index.models[0].name.as_str(),
            index.models[0].version.as_str(),
            index.models[0].state.as_str()
        ),
        ("add", "1", "READY")
    );

    let stats = c
        .model_statistics(proto::ModelStatisticsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stats
            .model_stats
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["add"]
    );

    // Shared memory answers (shared_memory.rs has the rest): a CUDA region
    // without a name is refused before anything is opened.
    let regions = c
        .system_shared_memory_status(proto::SystemSharedMemoryStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .regions;
    assert!(regions.is_empty());
    let e = c
        .cuda_shared_memory_register(proto::CudaSharedMemoryRegisterRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("needs a name"), "{}", e.message());
    // Trace settings answer (issue 13); without --otlp-endpoint the level is OFF.
    let trace = c
        .trace_setting(proto::TraceSettingRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trace.settings["trace_level"].value, ["OFF"]);
    // A server without a log control (this harness) cannot change its logging.
    assert_eq!(
        c.log_settings(proto::LogSettingsRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_reports_serving_once_ready() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let server = TestServer::start(examples(), ControlMode::None).await;
    server.ready_client().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let start = Instant::now();
    for service in ["", "inference.GRPCInferenceService"] {
        loop {
            let request = HealthCheckRequest {
                service: service.into(),
            };
            let status = health.check(request).await.map(|r| r.into_inner().status);
            if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
                break;
            }
            // The health reporter follows readiness every 200 ms.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "service '{service}' not SERVING: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop().await;
}
