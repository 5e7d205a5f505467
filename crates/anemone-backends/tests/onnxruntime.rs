//! The ONNX Runtime backend against the ONNX Runtime Python references in
//! `fixtures/generated/<case>/`. Needs libonnxruntime: run
//! `scripts/install-onnxruntime.sh` or set `ORT_DYLIB_PATH`. Without it these
//! tests fail (they do not skip).
#![cfg(feature = "onnxruntime")]

use anemone_backends::OnnxRuntime;
use anemone_core::{npy, Backend, LoadOptions, ModelSource, Probe, Tensor};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated")
}

fn require_library() {
    if let Probe::Unavailable { reason } = OnnxRuntime.probe() {
        panic!("ONNX Runtime is not usable: {reason}\nInstall it with scripts/install-onnxruntime.sh (or set ORT_DYLIB_PATH).");
    }
}

fn tensor(dir: &Path, file: &str) -> Tensor {
    let bytes = std::fs::read(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()));
    npy::from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    if !want.dtype().is_float() {
        assert!(got == want, "{what}: values differ (exact comparison)");
        return;
    }
    let (g, w) = (got.to_f64_lossy().unwrap(), want.to_f64_lossy().unwrap());
    let bad: Vec<usize> = (0..g.len())
        .filter(|&i| {
            let (a, b) = (g[i], w[i]);
            !((a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= atol + rtol * b.abs())
        })
        .collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{what}: {} of {} values outside rtol {rtol} atol {atol}; first at {i}: got {} want {}",
            bad.len(),
            g.len(),
            g[i],
            w[i]
        );
    }
}

fn run_case(name: &str) {
    require_library();
    let dir = fixtures().join(name);
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).expect("case.json"))
            .expect("case.json is JSON");
    let rtol = case["rtol"].as_f64().unwrap_or(1e-4);
    let atol = case["atol"].as_f64().unwrap_or(1e-5);
    let source = ModelSource::from_path(dir.join(case["model"].as_str().expect("model")));
    let model = OnnxRuntime
        .load(&source, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: load: {e}"));
    assert_eq!(model.backend(), "onnxruntime");
    let runs = case["runs"].as_array().expect("runs");
    assert!(!runs.is_empty(), "{name}: no runs");
    for (k, run) in runs.iter().enumerate() {
        let specs = &model.metadata().inputs;
        let given = run["inputs"].as_array().expect("inputs");
        let inputs: Vec<Tensor> = specs
            .iter()
            .map(|spec| {
                let i = given
                    .iter()
                    .find(|i| i["name"] == spec.name.as_str())
                    .unwrap_or_else(|| panic!("{name}: no input {}", spec.name));
                tensor(&dir, i["file"].as_str().unwrap())
            })
            .collect();
        let got = model
            .infer(&inputs)
            .unwrap_or_else(|e| panic!("{name} run {k}: infer: {e}"));
        for out in run["outputs"].as_array().expect("outputs") {
            let out_name = out["name"].as_str().unwrap();
            let pos = model
                .metadata()
                .outputs
                .iter()
                .position(|o| o.name == out_name)
                .unwrap_or_else(|| panic!("{name}: no output {out_name}"));
            let want = tensor(&dir, out["file"].as_str().unwrap());
            assert_close(
                &format!("{name} run {k} output {out_name}"),
                &got[pos],
                &want,
                rtol,
                atol,
            );
        }
    }
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            run_case(stringify!($case));
        }
    )*};
}

cases!(
    dynamic_batch,
    all_dtypes,
    int_bool,
    multi_io,
    if_control,
    loop_control,
    gru,
    small_convnet,
    transformer_block,
    ocr_cls,
    magika,
    silero_vad,
);

#[test]
fn probe_names_the_library() {
    require_library();
    assert_eq!(OnnxRuntime.name(), "onnxruntime");
    let Probe::Available { detail } = OnnxRuntime.probe() else {
        unreachable!()
    };
    assert!(detail.contains("libonnxruntime"), "{detail}");
}

#[test]
fn bad_models_are_invalid_not_a_panic() {
    require_library();
    for file in [
        "empty.onnx",
        "missing_external.onnx",
        "not_onnx.onnx",
        "truncated.onnx",
        "unsupported_op.onnx",
    ] {
        let path = fixtures().join("bad").join(file);
        let err = OnnxRuntime
            .load(&ModelSource::from_path(&path), &LoadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{file} loaded"));
        assert!(
            matches!(err, anemone_core::Error::InvalidModel { .. }),
            "{file}: {err}"
        );
        assert!(err.to_string().contains(file), "{file}: {err}");
    }
}

/// A pool of sessions serves concurrent requests, each answer still right.
#[test]
fn a_session_pool_serves_concurrent_requests() {
    require_library();
    let dir = fixtures().join("small_convnet");
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let run = &case["runs"][0];
    let input = tensor(&dir, run["inputs"][0]["file"].as_str().unwrap());
    let want = tensor(&dir, run["outputs"][0]["file"].as_str().unwrap());
    let options = LoadOptions {
        threads: Some(1),
        settings: vec![("onnxruntime.sessions".into(), "3".into())],
    };
    let model = OnnxRuntime
        .load(&ModelSource::from_path(dir.join("model.onnx")), &options)
        .unwrap();
    assert!(model
        .metadata()
        .properties
        .iter()
        .any(|(k, v)| k == "anemone.onnxruntime.sessions" && v == "3"));
    std::thread::scope(|s| {
        for t in 0..6 {
            let (model, input, want) = (&model, &input, &want);
            s.spawn(move || {
                for _ in 0..5 {
                    let out = model.infer(std::slice::from_ref(input)).unwrap();
                    assert_close(&format!("thread {t}"), &out[0], want, 1e-4, 1e-5);
                }
            });
        }
    });
    for bad in ["0", "many", "65"] {
        let options = LoadOptions {
            settings: vec![("onnxruntime.sessions".into(), bad.into())],
            ..Default::default()
        };
        let err = OnnxRuntime
            .load(&ModelSource::from_path(dir.join("model.onnx")), &options)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("onnxruntime.sessions") && err.to_string().contains("1 to 64"),
            "{err}"
        );
    }
}
