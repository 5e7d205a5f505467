//! Triton's `model_warmup` (issue 11): a model with warm-up samples loads
//! and is ready after them; a sample that cannot run fails the load naming
//! it; an `input_data_file` must lie in the model's `warmup` folder.

use crate::support::{add_model, error_text, serve, Repo};
use anemone_server::ControlMode;
use serde_json::json;

/// A config whose one sample (a batch of 2, run twice) gives input `a_name` zeros and `y`
/// what `b_data` says (`zero_data: true`, `input_data_file: ...`).
fn config(sample: &str, a_name: &str, b_data: &str) -> String {
    format!(
        "name: \"m\"\nmax_batch_size: 8\n\
         model_warmup [ {{ name: \"{sample}\" batch_size: 2 count: 2\n\
           inputs {{ key: \"{a_name}\" value: {{ data_type: TYPE_FP32 dims: [ 4 ] zero_data: true }} }}\n\
           inputs {{ key: \"y\" value: {{ data_type: TYPE_FP32 dims: [ 4 ] {b_data} }} }}\n\
         }} ]\n"
    )
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

async fn load(repo: &Repo, text: &str) -> (u16, String) {
    repo.write("m/config.pbtxt", text.as_bytes());
    let s = serve(&repo.root(), ControlMode::Explicit, &[], None).await;
    let (status, body) = s.http_load("m", None).await;
    let ready = s.http("GET", "/v2/models/m/ready", None).await.0;
    if status == 200 {
        assert_eq!(ready, 200, "loaded but not ready");
        // It serves correct answers after its warm-up.
        let (st, out) = s
            .http(
                "POST",
                "/v2/models/m/infer",
                Some(json!({"inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
                    {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [10, 20, 30, 40]},
                ]})),
            )
            .await;
        assert_eq!(st, 200, "{out}");
        assert_eq!(out["outputs"][0]["data"], json!([11.0, 22.0, 33.0, 44.0]));
    } else {
        assert_ne!(ready, 200, "a model whose load failed is served");
    }
    s.shutdown().await;
    let text = if status == 200 {
        String::new()
    } else {
        error_text(&body)
    };
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_warmup_samples_loads_and_serves() {
    let repo = Repo::new("warmup-ok");
    repo.write("m/1/model.onnx", &add_model());
    repo.write("m/warmup/b.bin", &floats(&[1.0, 2.0, 3.0, 4.0]));
    for data in [
        "random_data: true",
        "zero_data: true",
        "input_data_file: \"b.bin\"",
    ] {
        let (status, e) = load(&repo, &config("s", "x", data)).await;
        assert_eq!(status, 200, "{data}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_that_cannot_run_fails_the_load_naming_it() {
    let repo = Repo::new("warmup-bad");
    repo.write("m/1/model.onnx", &add_model());
    repo.write("m/warmup/short.bin", &floats(&[1.0]));
    let (status, e) = load(&repo, &config("wrong-name", "nope", "zero_data: true")).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e.contains("warm-up sample 'wrong-name'") && e.contains("'nope'"),
        "{e}"
    );
    let (status, e) = load(
        &repo,
        &config("short", "x", "input_data_file: \"short.bin\""),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e.contains("sample 'short'") && e.contains("holds 4 bytes"),
        "{e}"
    );
    let (status, e) = load(&repo, &config("no-data", "x", "")).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e.contains("sample 'no-data'") && e.contains("holds no data"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_data_file_stays_in_the_model_directory() {
    let repo = Repo::new("warmup-paths");
    repo.write("m/1/model.onnx", &add_model());
    repo.write("other/warmup/b.bin", &floats(&[1.0; 4]));
    std::fs::write(repo.outside().join("b.bin"), floats(&[1.0; 4])).unwrap();
    #[cfg(unix)]
    repo.link("m/warmup/out.bin", &repo.outside().join("b.bin"));
    #[cfg(unix)]
    repo.link(
        "m/warmup/other.bin",
        &repo.root().join("other/warmup/b.bin"),
    );
    let outside = repo.outside().join("b.bin").display().to_string();
    for file in [
        outside.as_str(),
        "../../other/warmup/b.bin",
        "../1/model.onnx",
        "out.bin",
        "other.bin",
        "missing.bin",
    ] {
        let data = format!("input_data_file: \"{file}\"");
        let (status, e) = load(&repo, &config("s", "x", &data)).await;
        assert_eq!(status, 400, "{file}: {e}");
        assert!(e.contains("in the model's 'warmup' folder"), "{file}: {e}");
    }
}
