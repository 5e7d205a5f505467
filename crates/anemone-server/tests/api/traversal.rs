//! Issue 14: a model name or version from a request never becomes a path
//! outside the repository, for any API: `..`, `%2e%2e`, encoded slashes,
//! backslashes, absolute paths, over HTTP paths and gRPC names, for infer,
//! metadata, ready, config, stats, load and unload. Each gets 400 or 404 with
//! a message saying what is wrong, and a model beside the repository is never
//! loaded or served.

use crate::support::{add_model, error_text, serve, Repo};
use anemone_server::proto::{self, ModelInferRequest};
use anemone_server::ControlMode;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_names_and_versions_from_requests_stay_in_the_repository() {
    let repo = Repo::new("traversal");
    repo.write("m/1/model.onnx", &add_model());
    // A model just outside, which a traversal would find as "../outside".
    std::fs::create_dir_all(repo.outside().join("1")).unwrap();
    std::fs::write(repo.outside().join("1/model.onnx"), add_model()).unwrap();
    let s = serve(&repo.root(), ControlMode::Explicit, &["m"], None).await;
    for _ in 0..600 {
        if s.http("GET", "/v2/models/m/ready", None).await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let names = [
        "..%2Foutside",
        "%2e%2e%2Foutside",
        "%2E%2E",
        "..",
        "%2Fetc%2Fpasswd",
        "m%2F..%2F..%2Foutside",
        "..%5Coutside",
        "%00",
    ];
    let suffixes = [
        "",
        "/ready",
        "/config",
        "/stats",
        "/versions/1",
        "/versions/1/infer",
    ];
    for name in names {
        for suffix in suffixes {
            let path = format!("/v2/models/{name}{suffix}");
            let (status, body) = s.http("GET", &path, None).await;
            let method_ok = if suffix.ends_with("infer") { 405 } else { 0 };
            assert!(
                matches!(status, 400 | 404) || status == method_ok,
                "{path}: {status} {body}"
            );
        }
        let path = format!("/v2/models/{name}/infer");
        let (status, body) = s
            .http("POST", &path, Some(serde_json::json!({"inputs": []})))
            .await;
        assert!(matches!(status, 400 | 404), "{path}: {status} {body}");
        if status == 400 {
            let e = error_text(&body);
            assert!(
                e.contains("is not a folder name") || e.contains("bad path"),
                "{path}: {e}"
            );
        }
        for op in ["load", "unload"] {
            let path = format!("/v2/repository/models/{name}/{op}");
            let (status, body) = s.http("POST", &path, None).await;
            assert!(matches!(status, 400 | 404), "{path}: {status} {body}");
        }
    }
    // Versions are whole numbers; anything else is refused before a lookup.
    for version in ["..", "%2e%2e", "..%2F1", "%2F1", "1%2F..%2F..", "-1"] {
        let path = format!("/v2/models/m/versions/{version}/infer");
        let (status, body) = s
            .http("POST", &path, Some(serde_json::json!({"inputs": []})))
            .await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(error_text(&body).contains("version"), "{path}: {body}");
    }

    let mut client = s.client().await;
    for name in [
        "../outside",
        "..",
        ".",
        "/etc/passwd",
        "m/../../outside",
        "..\\outside",
    ] {
        let is_refused = |e: tonic::Status| {
            assert!(
                matches!(e.code(), Code::InvalidArgument | Code::NotFound),
                "{name}: {:?} {}",
                e.code(),
                e.message()
            );
        };
        let meta = proto::ModelMetadataRequest {
            name: name.into(),
            ..Default::default()
        };
        is_refused(client.model_metadata(meta).await.unwrap_err());
        let ready = proto::ModelReadyRequest {
            name: name.into(),
            ..Default::default()
        };
        // Ready answers false or refuses; it never says true.
        if let Ok(r) = client.model_ready(ready).await {
            assert!(!r.into_inner().ready, "{name}");
        }
        let config = proto::ModelConfigRequest {
            name: name.into(),
            ..Default::default()
        };
        is_refused(client.model_config(config).await.unwrap_err());
        let stats = proto::ModelStatisticsRequest {
            name: name.into(),
            ..Default::default()
        };
        is_refused(client.model_statistics(stats).await.unwrap_err());
        let infer = ModelInferRequest {
            model_name: name.into(),
            ..Default::default()
        };
        let e = client.model_infer(infer).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {}", e.message());
        assert!(
            e.message().contains("is not a folder name"),
            "{}",
            e.message()
        );
        let load = proto::RepositoryModelLoadRequest {
            model_name: name.into(),
            ..Default::default()
        };
        is_refused(client.repository_model_load(load).await.unwrap_err());
        let unload = proto::RepositoryModelUnloadRequest {
            model_name: name.into(),
            ..Default::default()
        };
        // As Triton: unloading such a name does nothing (nothing can be
        // loaded under it), and touches no file.
        client.repository_model_unload(unload).await.unwrap();
    }
    for version in ["..", "../1", "1/..", "/1"] {
        let meta = proto::ModelMetadataRequest {
            name: "m".into(),
            version: version.into(),
        };
        let e = client.model_metadata(meta).await.unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "{version}: {}",
            e.message()
        );
    }

    // Only `m` is loaded; nothing from outside is served under any name.
    let (_, index) = s.http("POST", "/v2/repository/index", None).await;
    let ready: Vec<&str> = index
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "READY")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(ready, ["m"], "{index}");
    s.shutdown().await;
}
