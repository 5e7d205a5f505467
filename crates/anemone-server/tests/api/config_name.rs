//! Triton's `--model-config-name`: a model with `configs/<name>.pbtxt` is
//! loaded with it, a model without one with its `config.pbtxt`, as the
//! real tritonserver 2.51 does (checked side by side: a custom
//! `max_batch_size` read from `configs/h100.pbtxt`, the other model's from
//! its `config.pbtxt`).

use crate::support::{add_model, Repo};
use anemone_server::ServerOptions;
use serde_json::Value;
use std::sync::Arc;

/// `add` (outputs completed from the model) with `count` instances.
fn config(name: &str, count: u32) -> String {
    format!(
        r#"name: "{name}"
platform: "onnxruntime_onnx"
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 4 ] }}, {{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }} ]
max_batch_size: 8
instance_group [ {{ count: {count}, kind: KIND_CPU }} ]
"#
    )
}

/// Each model's instance count, or its state and reason when it did not
/// load, served with `config_name`.
async fn served(repo: &Repo, config_name: Option<&str>) -> Vec<(String, String)> {
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: repo.root(),
        config_name: config_name.map(str::to_string),
        ..Default::default()
    };
    let running = crate::support::run_server(options, manager).await;
    running.started().await;
    let router = anemone_server::http::router(Arc::clone(&running.state), 1 << 20);
    let mut seen = Vec::new();
    for row in running.state.repository.index() {
        let what = if row.state == "READY" {
            use tower::ServiceExt;
            let request = axum::http::Request::builder()
                .uri(format!("/v2/models/{}/config", row.name))
                .body(axum::body::Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let config: Value = serde_json::from_slice(&bytes).unwrap();
            format!("instances {}", config["instance_group"][0]["count"])
        } else {
            format!("{}: {}", row.state, row.reason)
        };
        seen.push((row.name, what));
    }
    running.stop().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_config_name_is_read_where_a_model_has_it() {
    let repo = Repo::new("config-name");
    let model = add_model();
    for name in ["custom", "plain", "broken"] {
        repo.write(&format!("{name}/1/model.onnx"), &model);
        repo.write(&format!("{name}/config.pbtxt"), config(name, 1).as_bytes());
    }
    repo.write("custom/configs/h100.pbtxt", config("custom", 3).as_bytes());
    repo.write("broken/configs/h100.pbtxt", b"instance_group [ { count: }");
    let seen = served(&repo, Some("h100")).await;
    assert_eq!(seen[1], ("custom".into(), "instances 3".into()));
    assert_eq!(seen[2], ("plain".into(), "instances 1".into()));
    // A custom config that does not parse is named in the reason.
    assert_eq!(seen[0].0, "broken");
    assert!(
        seen[0]
            .1
            .starts_with("UNAVAILABLE: configs/h100.pbtxt line 1"),
        "{}",
        seen[0].1
    );
    // Without the flag, configs/ is not read.
    let seen = served(&repo, None).await;
    let counts: Vec<&str> = seen.iter().map(|(_, what)| what.as_str()).collect();
    assert_eq!(counts, ["instances 1"; 3]);
}

#[tokio::test]
async fn a_config_name_that_is_a_path_is_refused() {
    let repo = Repo::new("config-name-path");
    for bad in ["../x", "a/b", ".hidden", "", "h 100"] {
        let manager = anemone_runtime::Manager::builder()
            .backend(anemone_backends::TractCpu)
            .build()
            .unwrap();
        let options = ServerOptions {
            http_port: 0,
            grpc_port: 0,
            repository: repo.root(),
            config_name: Some(bad.into()),
            ..Default::default()
        };
        let refused = anemone_server::Server::bind(options, manager).await.err();
        let message = refused.unwrap_or_else(|| panic!("{bad:?} was taken"));
        assert!(message.contains("is not a config name"), "{message}");
    }
}
