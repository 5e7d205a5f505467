//! The repository API: the index with broken and Core ML models and their
//! reasons, and loading and unloading in explicit mode.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_shows_a_broken_model_as_unavailable() {
    let repo = TempRepo::new("broken")
        .add()
        .fixture("identity", "identity")
        .file("broken", b"this is not an ONNX model");
    let s = start(&repo.0, ControlMode::None, &[]).await;
    let rows = s
        .wait_index(&[
            ("add", "READY"),
            ("identity", "READY"),
            ("broken", "UNAVAILABLE"),
        ])
        .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.contains(
            &json!({"name": "add", "version": "1", "state": "READY", "reason": "on tract-cpu"})
        ),
        "{rows:?}"
    );
    let broken = rows.iter().find(|r| r["name"] == "broken").unwrap();
    assert!(
        broken["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{broken}"
    );
    assert!(broken.get("version").is_none(), "{broken}");

    let ready = s
        .post_json("/v2/repository/index", &json!({"ready": true}))
        .await
        .json();
    let names: Vec<&str> = ready
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "identity"]);

    // Strict readiness: one unavailable model makes the server not ready; the others still serve.
    assert_eq!(s.get("/v2/health/ready").await.status, 503);
    assert_eq!(s.get("/v2/models/broken/ready").await.status, 503);
    let r = s.get("/v2/models/broken").await;
    assert_eq!(r.status, 503);
    assert!(r.error().contains("model 'broken' is not ready"));
    assert_eq!(
        s.post_json("/v2/models/add/infer", &add_request())
            .await
            .status,
        200
    );

    // Mode none refuses the repository API.
    for op in ["load", "unload"] {
        let r = s
            .post(&format!("/v2/repository/models/add/{op}"), &[], "")
            .await;
        assert_eq!(r.status, 503, "{op}");
        assert!(r.error().contains("--model-control-mode explicit"), "{op}");
    }
    s.shutdown().await;
}

/// Core ML models are found (`model.mlpackage`, `model.mlmodel`) and,
/// where no backend can run them, listed UNAVAILABLE with the reason;
/// a corrupt one says what is wrong.
#[cfg(not(target_vendor = "apple"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_lists_core_ml_models_with_the_reason() {
    fn copy_tree(from: &Path, to: &Path) {
        if from.is_dir() {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                copy_tree(&e.path(), &to.join(e.file_name()));
            }
        } else {
            std::fs::copy(from, to).unwrap();
        }
    }
    let repo = TempRepo::new("coreml").add();
    for (name, file, target) in [
        (
            "package",
            "coreml/program_fp16_int32.mlpackage",
            "model.mlpackage",
        ),
        ("spec", "coreml/nn_flexible.mlmodel", "model.mlmodel"),
        ("corrupt", "coreml/bad/truncated.mlmodel", "model.mlmodel"),
    ] {
        let dir = repo.0.join(name).join("1");
        std::fs::create_dir_all(&dir).unwrap();
        copy_tree(&fixture(file), &dir.join(target));
    }
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .backend(anemone_backends::CoreMl)
        .build()
        .unwrap();
    let s = start_with(&repo.0, ControlMode::None, &[], manager).await;
    let rows = s
        .wait_index(&[
            ("add", "READY"),
            ("package", "UNAVAILABLE"),
            ("spec", "UNAVAILABLE"),
            ("corrupt", "UNAVAILABLE"),
        ])
        .await;
    let reason = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["reason"].as_str())
            .unwrap_or_else(|| panic!("no reason for {name}: {rows:?}"))
            .to_string()
    };
    for name in ["package", "spec"] {
        let r = reason(name);
        assert!(r.contains("no backend can run"), "{name}: {r}");
        assert!(r.contains("coreml: Core ML needs macOS"), "{name}: {r}");
    }
    let r = reason("corrupt");
    assert!(
        r.contains("not a valid protobuf (corrupt or truncated?)"),
        "{r}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_unload_in_explicit_mode() {
    let repo = TempRepo::new("explicit")
        .fixture("identity", "identity")
        .fixture("int_bool", "int_bool");
    let s = start(&repo.0, ControlMode::Explicit, &[]).await;
    s.wait_for_status("/v2/health/ready", 200).await;
    let rows = s.post("/v2/repository/index", &[], "").await.json();
    assert_eq!(rows, json!([{"name": "identity"}, {"name": "int_bool"}]));
    assert_eq!(s.get("/v2/models/identity/ready").await.status, 503);

    let r = s.post("/v2/repository/models/identity/load", &[], "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.get("/v2/models/identity/ready").await.status, 200);
    let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.5).collect();
    let request =
        json!({"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x}]});
    let v = s
        .post_json("/v2/models/identity/infer", &request)
        .await
        .json();
    assert_eq!(v["outputs"][0]["data"], json!(x));

    let r = s
        .post("/v2/repository/models/identity/unload", &[], "")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.get("/v2/models/identity/ready").await.status, 503);
    s.wait_index(&[("identity", "UNAVAILABLE")]).await;

    // A config override, as tritonclient sends it.
    let config = json!({"name": "int_bool", "max_batch_size": 0}).to_string();
    let r = s
        .post_json(
            "/v2/repository/models/int_bool/load",
            &json!({"parameters": {"config": config}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.get("/v2/models/int_bool/ready").await.status, 200);
    let r = s.get("/v2/models/int_bool/config").await;
    assert_eq!(r.json()["max_batch_size"], 0);

    let bad = json!({"parameters": {"config": "{\"no_such_field\": 1}"}});
    let r = s
        .post_json("/v2/repository/models/identity/load", &bad)
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("config override"));
    let r = s
        .post_json(
            "/v2/repository/models/identity/load",
            &json!({"parameters": {"file:1/model.onnx": "AAAA"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("not supported"));
    let r = s.post("/v2/repository/models/nope/load", &[], "").await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("'nope'"));
    // As Triton: unloading what is not there does nothing, and succeeds.
    let r = s.post("/v2/repository/models/nope/unload", &[], "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    s.shutdown().await;
}

/// A `--load-model` name the repository lacks (a typo) leaves the server not
/// ready, as a model that fails to load at start does, and the index says
/// why; unloading the name forgets it, and the server is ready. It was
/// ready at once, the model missing, with one warning in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_model_name_not_in_the_repository_keeps_the_server_unready() {
    let repo = TempRepo::new("load-model-typo").add();
    let s = start(&repo.0, ControlMode::Explicit, &["ad", "add"]).await;
    let rows = s
        .wait_index(&[("add", "READY"), ("ad", "UNAVAILABLE")])
        .await;
    let typo = rows.iter().find(|r| r["name"] == "ad").unwrap();
    assert!(
        typo["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not in the repository")),
        "{typo}"
    );
    assert_eq!(s.get("/v2/health/ready").await.status, 503);
    assert_eq!(
        s.post_json("/v2/models/add/infer", &add_request())
            .await
            .status,
        200,
        "the other model serves"
    );
    let r = s.post("/v2/repository/models/ad/unload", &[], "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.get("/v2/health/ready").await.status, 200);
    let rows = s.post("/v2/repository/index", &[], "").await.json();
    assert!(
        rows.as_array().unwrap().iter().all(|r| r["name"] != "ad"),
        "{rows}"
    );
    s.shutdown().await;
}
