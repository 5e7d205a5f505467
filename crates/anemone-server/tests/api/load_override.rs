//! Issue 14: Triton's load-with-override. A load request's `config` (the
//! model configuration as JSON) is accepted; `file:<path>` contents are
//! refused with a 400 / INVALID_ARGUMENT that says what is supported,
//! whatever the path, and nothing is written anywhere.

use crate::support::{add_model, error_text, serve, Repo};
use anemone_server::proto::model_repository_parameter::ParameterChoice;
use anemone_server::proto::{self, ModelRepositoryParameter};
use anemone_server::ControlMode;
use serde_json::json;
use std::collections::HashMap;
use tonic::Code;

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_load_takes_a_config_override_and_refuses_file_contents() {
    let repo = Repo::new("load-override");
    repo.write("m/1/model.onnx", &add_model());
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let before = (files(&repo.root()), files(&repo.outside()));

    let content = "AAAA"; // base64, as Triton's clients send file contents
    for key in [
        "file:1/model.onnx",
        "file:../x",
        "file:/etc/passwd",
        "file:../../outside/1/model.onnx",
    ] {
        let body = json!({"parameters": {key: content, "config": "{}"}});
        let (status, body) = s
            .http("POST", "/v2/repository/models/m/load", Some(body))
            .await;
        assert_eq!(status, 400, "{key}: {body}");
        let e = error_text(&body);
        assert!(
            e.contains(&format!("load parameter '{key}' is refused"))
                && e.contains("may carry only 'config'"),
            "{key}: {e}"
        );
        let parameters = HashMap::from([(
            key.to_string(),
            ModelRepositoryParameter {
                parameter_choice: Some(ParameterChoice::BytesParam(vec![0; 4])),
            },
        )]);
        let e = s
            .client()
            .await
            .repository_model_load(proto::RepositoryModelLoadRequest {
                model_name: "m".into(),
                parameters,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key}: {}", e.message());
        assert!(e.message().contains("is refused"), "{}", e.message());
    }
    assert_eq!(
        (files(&repo.root()), files(&repo.outside())),
        before,
        "a refused load wrote files"
    );
    let (status, _) = s.http("GET", "/v2/models/m/ready", None).await;
    assert_ne!(status, 200, "nothing was loaded");

    // The config override alone is accepted, over both protocols.
    let config = json!({"max_batch_size": 0});
    let (status, body) = s.http_load("m", Some(&config)).await;
    assert_eq!(status, 200, "{body}");
    s.grpc_load("m", Some(&config)).await.unwrap();
    assert_eq!(s.http("GET", "/v2/models/m/ready", None).await.0, 200);
    s.shutdown().await;
}
