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

/// A load request reloads a model whose files changed anywhere under its
/// folder (here ONNX external data in `1/weights/`, three levels down) and
/// does nothing for one unchanged, as Triton compares its files' times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_applies_a_change_however_deep_and_skips_an_unchanged_model() {
    use anemone_core::npy;
    let case = crate::support::fixture("external_weights");
    let repo = Repo::new("load-deep");
    repo.write(
        "ext/1/model.onnx",
        &std::fs::read(case.join("model.onnx")).unwrap(),
    );
    repo.write(
        "ext/1/weights/w.bin",
        &std::fs::read(case.join("weights/w.bin")).unwrap(),
    );
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let load = || async {
        let (status, body) = s.http_load("ext", None).await;
        assert_eq!(status, 200, "{body}");
    };
    let open = |f: &str| npy::read(std::fs::File::open(case.join(f)).unwrap()).unwrap();
    let (x, want) = (open("run0_in_0.npy"), open("run0_out_0.npy"));
    let x = x.to_vec::<f32>().unwrap();
    let infer = || async {
        let body =
            json!({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": x}]});
        let (status, body) = s.http("POST", "/v2/models/ext/infer", Some(body)).await;
        assert_eq!(status, 200, "{body}");
        crate::support::json_f32s(&body["outputs"][0])
    };
    let successes = || async {
        let (status, body) = s.http("GET", "/v2/models/ext/stats", None).await;
        assert_eq!(status, 200, "{body}");
        body["model_stats"][0]["inference_stats"]["success"]["count"]
            .as_u64()
            .unwrap()
    };
    load().await;
    let want = want.to_vec::<f32>().unwrap();
    let got = infer().await;
    assert!(
        got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-5),
        "{got:?} against ONNX Runtime's {want:?}"
    );
    // Unchanged on disk: nothing to do, so the statistics go on.
    load().await;
    infer().await;
    assert_eq!(successes().await, 2, "the unchanged model was loaded again");

    // New weights written over the old file, as a user updates a model in
    // place; its time set a second later, as a later copy would have it.
    let weights: Vec<f32> = vec![100.0, 200.0, 300.0, 400.0];
    repo.write("ext/1/weights/w.bin", &crate::support::f32_bytes(&weights));
    let file = std::fs::File::options()
        .write(true)
        .open(repo.root().join("ext/1/weights/w.bin"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(1))
        .unwrap();
    load().await;
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| v + weights[i % 4])
        .collect();
    assert_eq!(infer().await, want, "the new weights were not loaded");
    s.shutdown().await;
}
