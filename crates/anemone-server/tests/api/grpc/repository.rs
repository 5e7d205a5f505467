//! The repository RPCs: the index with a broken model and its reason,
//! loading and unloading in explicit mode, and refusals in none mode.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_index_reports_a_broken_model_with_its_reason() {
    let repo = TempRepo::new(
        "broken",
        &[
            ("identity", "identity/model.onnx"),
            ("broken", "bad/not_onnx.onnx"),
        ],
    );
    let server = TestServer::start(repo.0.to_path_buf(), ControlMode::None).await;
    let mut c = server.client().await;
    let index = wait_loaded(&mut c).await;
    let row = |name: &str| {
        index
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} not in {index:?}"))
            .clone()
    };
    let broken = row("broken");
    assert_eq!(broken.state, "UNAVAILABLE");
    assert!(!broken.reason.is_empty(), "an unavailable model says why");
    assert_eq!(
        (
            row("identity").state.as_str(),
            row("identity").reason.as_str()
        ),
        ("READY", "on tract-cpu"),
        "a ready model's reason says which backend serves it"
    );

    let ready_only = c
        .repository_index(proto::RepositoryIndexRequest {
            ready: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ready_only
            .models
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["identity"]
    );

    // Strict readiness: one broken model keeps the server not ready.
    assert!(
        !c.server_ready(proto::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = c
        .model_ready(proto::ModelReadyRequest {
            name: "broken".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    let e = c
        .model_metadata(proto::ModelMetadataRequest {
            name: "broken".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    // The reason, with its paths relative to the repository: the index
    // (which `model-repository` may restrict) has the full ones, the
    // model's own routes do not show the server's layout (SECURITY.md).
    let root = format!("{}/", repo.0.display());
    assert!(broken.reason.contains(&root), "{}", broken.reason);
    let relative = broken.reason.replace(&root, "");
    assert!(
        e.message().contains(&relative) && !e.message().contains(&root),
        "{} should carry the reason {relative}",
        e.message(),
    );

    // The good model still serves.
    let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.5).collect();
    let request = ModelInferRequest {
        model_name: "identity".into(),
        inputs: vec![tensor("x", "FP32", &[1, 16])],
        raw_input_contents: vec![f32_bytes(&x)].into_iter().map(Into::into).collect(),
        ..Default::default()
    };
    let r = c.model_infer(request).await.unwrap().into_inner();
    assert_eq!(f32s(&r.raw_output_contents[0]), x);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_mode_loads_and_unloads_models() {
    let repo = TempRepo::new("explicit", &[("identity", "identity/model.onnx")]);
    let server = TestServer::start(repo.0.to_path_buf(), ControlMode::Explicit).await;
    let mut c = server.ready_client().await;
    let name = |n: &str| proto::ModelReadyRequest {
        name: n.into(),
        version: String::new(),
    };
    let load = |model: &str, parameters: HashMap<String, proto::ModelRepositoryParameter>| {
        proto::RepositoryModelLoadRequest {
            model_name: model.into(),
            parameters,
            ..Default::default()
        }
    };
    let unload = |model: &str| proto::RepositoryModelUnloadRequest {
        model_name: model.into(),
        ..Default::default()
    };
    let string = |s: &str| proto::ModelRepositoryParameter {
        parameter_choice: Some(
            proto::model_repository_parameter::ParameterChoice::StringParam(s.into()),
        ),
    };

    assert!(
        !c.model_ready(name("identity"))
            .await
            .unwrap()
            .into_inner()
            .ready,
        "nothing is loaded at start in explicit mode"
    );
    c.repository_model_load(load("identity", HashMap::new()))
        .await
        .unwrap();
    assert!(
        c.model_ready(name("identity"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let index = c
        .repository_index(proto::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        index
            .models
            .iter()
            .map(|m| (m.name.as_str(), m.state.as_str()))
            .collect::<Vec<_>>(),
        [("identity", "READY")]
    );

    // A config override in JSON, as Triton's `config` parameter.
    let json = r#"{"parameters": {"threads": {"string_value": "1"}}}"#;
    c.repository_model_load(load(
        "identity",
        HashMap::from([("config".to_string(), string(json))]),
    ))
    .await
    .unwrap();
    let config = c
        .model_config(proto::ModelConfigRequest {
            name: "identity".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.config.unwrap().parameters["threads"].string_value,
        "1"
    );
    let e = c
        .repository_model_load(load(
            "identity",
            HashMap::from([("config".to_string(), string("{\"bogus\": 1}"))]),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("config"), "{}", e.message());
    let e = c
        .repository_model_load(load(
            "identity",
            HashMap::from([("file:1/model.onnx".to_string(), string("x"))]),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    c.repository_model_unload(unload("identity")).await.unwrap();
    assert!(
        !c.model_ready(name("identity"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let request = ModelInferRequest {
        model_name: "identity".into(),
        inputs: vec![tensor("x", "FP32", &[1, 16])],
        raw_input_contents: vec![vec![0; 64]].into_iter().map(Into::into).collect(),
        ..Default::default()
    };
    assert!(
        c.model_infer(request.clone()).await.is_err(),
        "an unloaded model does not answer"
    );
    let index = c
        .repository_index(proto::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    // As Triton's index: no UNLOADED state, UNAVAILABLE "unloaded".
    assert_eq!(
        (
            index.models[0].state.as_str(),
            index.models[0].reason.as_str()
        ),
        ("UNAVAILABLE", "unloaded")
    );

    assert_eq!(
        c.repository_model_load(load("nope", HashMap::new()))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // As tritonserver 2.51 (checked side by side): unloading what is not
    // there does nothing, and succeeds.
    c.repository_model_unload(unload("nope")).await.unwrap();

    c.repository_model_load(load("identity", HashMap::new()))
        .await
        .unwrap();
    c.model_infer(request).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_mode_refuses_load_and_unload() {
    let server = TestServer::start(examples(), ControlMode::None).await;
    let mut c = server.ready_client().await;
    let e = c
        .repository_model_load(proto::RepositoryModelLoadRequest {
            model_name: "add".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("explicit"), "{}", e.message());
    let e = c
        .repository_model_unload(proto::RepositoryModelUnloadRequest {
            model_name: "add".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        c.model_ready(proto::ModelReadyRequest {
            name: "add".into(),
            version: String::new()
        })
        .await
        .unwrap()
        .into_inner()
        .ready
    );
    server.stop().await;
}
