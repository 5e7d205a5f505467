//! Nothing a request or a configuration names may lead out of the model
//! repository (issue 14, defects 1, 2 and 8), over HTTP and gRPC in explicit
//! mode: not a model file (`default_model_filename`), not a directory a
//! backend writes (`coreml.cache_dir`), not a model name; and a model file
//! that is a device or a FIFO fails at once instead of being read forever.

use crate::support::{add_model, error_text, serve, Repo};
use anemone_server::ControlMode;
use serde_json::json;
use std::time::Duration;
use tonic::Code;

/// Loads with `config` over HTTP and gRPC; both must refuse with 400 /
/// INVALID_ARGUMENT. Returns the HTTP message.
async fn refused_both(
    s: &crate::support::Served,
    model: &str,
    config: &serde_json::Value,
) -> String {
    let (status, body) = s.http_load(model, Some(config)).await;
    assert_eq!(status, 400, "{body}");
    let e = s.grpc_load(model, Some(config)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    let (status, _) = s
        .http("GET", &format!("/v2/models/{model}/ready"), None)
        .await;
    assert_ne!(status, 200, "the model must not be served");
    error_text(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_model_filename_cannot_leave_the_model_directory() {
    let repo = Repo::new("paths-filename");
    repo.write("m/1/model.onnx", &add_model());
    std::fs::write(repo.outside().join("other.onnx"), add_model()).unwrap();
    #[cfg(unix)]
    repo.link("m/1/link.onnx", &repo.outside().join("other.onnx"));
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;

    let outside_file = repo.outside().join("other.onnx");
    let outside_missing = repo.outside().join("missing.onnx");
    let mut messages = Vec::new();
    for name in [
        outside_file.display().to_string(),
        outside_missing.display().to_string(),
        "../../../outside/other.onnx".to_string(),
        "../../../outside/missing.onnx".to_string(),
        "../../../outside".to_string(),
        "./../../../outside/other.onnx".to_string(),
    ] {
        let e = refused_both(&s, "m", &json!({ "default_model_filename": name })).await;
        assert!(
            e.contains("absolute paths and '..' are refused"),
            "{name}: {e}"
        );
        // The message only echoes what was sent: nothing about what exists.
        messages.push(e.replace(&name, "<name>"));
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:#?}");

    // A link that leads out reads like a missing file: it reveals nothing.
    #[cfg(unix)]
    {
        let linked = refused_both(&s, "m", &json!({ "default_model_filename": "link.onnx" })).await;
        let missing =
            refused_both(&s, "m", &json!({ "default_model_filename": "nope.onnx" })).await;
        assert_eq!(
            linked.replace("link.onnx", "X"),
            missing.replace("nope.onnx", "X")
        );
        assert!(
            linked.contains("'link.onnx'") && linked.contains("missing"),
            "{linked}"
        );
    }
    // The model's own file still loads, also named as "./model.onnx" (as
    // Triton opens it; refused until session 44).
    for name in ["model.onnx", "./model.onnx"] {
        let (status, body) = s
            .http_load("m", Some(&json!({ "default_model_filename": name })))
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        let (status, _) = s.http("GET", "/v2/models/m/ready", None).await;
        assert_eq!(status, 200, "{name}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_settings_cannot_leave_the_model_directory() {
    let repo = Repo::new("paths-settings");
    repo.write("m/1/model.onnx", &add_model());
    #[cfg(unix)]
    repo.link("m/out", &repo.outside());
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let outside = repo.outside().display().to_string();
    for key in ["coreml.cache_dir", "onnxruntime.coreml.cache_dir"] {
        for value in [outside.as_str(), "../../outside", "/tmp"] {
            let config = json!({ "parameters": { key: { "string_value": value } } });
            let e = refused_both(&s, "m", &config).await;
            assert!(
                e.contains(key) && e.contains("relative to the model's directory"),
                "{e}"
            );
        }
        #[cfg(unix)]
        {
            let config = json!({ "parameters": { key: { "string_value": "out/cache" } } });
            let e = refused_both(&s, "m", &config).await;
            assert!(
                e.contains("does not stay inside the model's directory"),
                "{e}"
            );
        }
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_names_never_lead_out_of_the_repository() {
    let repo = Repo::new("paths-names");
    repo.write("m/1/model.onnx", &add_model());
    std::fs::create_dir_all(repo.outside().join("1")).unwrap();
    std::fs::write(repo.outside().join("1/model.onnx"), add_model()).unwrap();
    #[cfg(unix)]
    repo.link("evil", &repo.outside());
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let absent = s
        .http("POST", "/v2/repository/models/absent/load", None)
        .await;
    assert_eq!(absent.0, 404, "{}", absent.1);
    let absent_text = error_text(&absent.1);
    for path in [
        "..%2Foutside",
        "..%2F..%2F",
        "%2E%2E",
        "..",
        "%2Ftmp",
        "m%2F..%2F..%2Foutside",
        "m%5C..%5C..%5Coutside",
        "evil",
    ] {
        let (status, body) = s
            .http("POST", &format!("/v2/repository/models/{path}/load"), None)
            .await;
        assert!(matches!(status, 400 | 404), "{path}: {status} {body}");
        if status == 404 {
            let same = absent_text.replace("'absent'", &format!("'{}'", percent_decode(path)));
            assert_eq!(error_text(&body), same, "{path}");
        }
    }
    let mut client = s.client().await;
    for name in ["../outside", "/tmp", "..", "evil", "m/../../outside"] {
        let e = client
            .repository_model_load(anemone_server::proto::RepositoryModelLoadRequest {
                model_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        // A name that cannot be a folder is refused as such (400); the link is not found.
        assert!(
            matches!(e.code(), Code::NotFound | Code::InvalidArgument),
            "{name}: {}",
            e.message()
        );
    }
    // Nothing outside got loaded under any name.
    let (_, index) = s.http("POST", "/v2/repository/index", None).await;
    assert!(
        index
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] != "READY"),
        "{index}"
    );
    s.shutdown().await;
}

fn percent_decode(s: &str) -> String {
    s.replace("%2F", "/")
        .replace("%2E", ".")
        .replace("%5C", "\\")
}

/// A model file that is `/dev/zero` or a FIFO fails fast with a clear
/// error; before the fix the server read `/dev/zero` until memory ran out.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_fifos_are_refused_at_once() {
    let repo = Repo::new("paths-devices");
    repo.link("zero/1/model.onnx", std::path::Path::new("/dev/zero"));
    repo.write("fifo/1/keep", b"");
    let fifo = repo.root().join("fifo/1/model.onnx");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo failed");
    repo.write("named/1/model.onnx", &add_model());
    repo.link("named/1/zero.onnx", std::path::Path::new("/dev/zero"));
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    for model in ["zero", "fifo"] {
        let (status, body) = within(s.http_load(model, None)).await;
        assert_eq!(status, 400, "{body}");
        let e = error_text(&body);
        assert!(e.contains("not a usable model file"), "{model}: {e}");
        let e = within(s.grpc_load(model, None)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    let config = json!({ "default_model_filename": "zero.onnx" });
    let (status, body) = within(s.http_load("named", Some(&config))).await;
    assert_eq!(status, 400, "{body}");
    s.shutdown().await;
}

/// Waits for `f` at most a minute: a read that never ends fails the test
/// instead of hanging it.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("answered at once, not after reading forever")
}

/// A model file larger than the memory budget leaves free is refused before
/// it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_beyond_the_memory_budget_is_refused_before_reading() {
    let repo = Repo::new("paths-budget");
    repo.write("m/1/model.onnx", &add_model());
    let s = serve(&repo.root(), ControlMode::Explicit, &[], Some(16)).await;
    let (status, body) = s.http_load("m", None).await;
    assert_eq!(status, 400, "{body}");
    let e = error_text(&body);
    assert!(
        e.contains("more than the memory budget has free (16 bytes)"),
        "{e}"
    );
    assert!(e.contains("--memory-budget"), "{e}");
    s.shutdown().await;
}

/// A folder whose name no model may have (a `\`, a path separator on
/// Windows, which the API refuses in names) is UNAVAILABLE in the index
/// with what to do, not "not in the repository"; the other models serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_named_with_a_backslash_says_to_rename_it() {
    let repo = Repo::new("backslash-folder");
    repo.write("a\\b/1/model.onnx", &add_model());
    repo.write("add/1/model.onnx", &add_model());
    let s = serve(&repo.root(), ControlMode::None, &[], None).await;
    let start = std::time::Instant::now();
    while !s.state.repository.startup_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "start-up never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, index) = s.http("POST", "/v2/repository/index", None).await;
    assert_eq!(status, 200, "{index}");
    let row = |name: &str| {
        index
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {index}"))
    };
    let bad = row("a\\b");
    assert_eq!(bad["state"], "UNAVAILABLE", "{bad}");
    assert!(
        bad["reason"]
            .as_str()
            .unwrap()
            .contains("rename the folder"),
        "{bad}"
    );
    assert_eq!(row("add")["state"], "READY", "{index}");
    s.shutdown().await;
}
