//! The ONNX Runtime backend on its own. Its outputs are compared with tract's
//! on the same inputs, never with ONNX Runtime's: the fixtures' references
//! come from ONNX Runtime's Python API (the same engine), so each run first
//! checks tract against those references, then ONNX Runtime against tract.
//! Needs libonnxruntime (`scripts/setup.sh` installs it, or set
//! `ORT_DYLIB_PATH`); without it these tests fail, they do not skip.

mod session_options;
mod spinning;

use crate::support::{assert_close, fixtures, Case};
use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_core::{Backend, LoadOptions, LoadedModel, ModelSource, Probe, Tensor};

fn require_library() {
    if let Probe::Unavailable { reason } = OnnxRuntime.probe() {
        panic!("ONNX Runtime is not usable: {reason}\nInstall it with scripts/install-onnxruntime.sh (or set ORT_DYLIB_PATH).");
    }
}

/// The inputs of a run in the model's order.
fn ordered_inputs(name: &str, model: &dyn LoadedModel, given: &[(String, Tensor)]) -> Vec<Tensor> {
    model
        .metadata()
        .inputs
        .iter()
        .map(|spec| {
            given
                .iter()
                .find(|(n, _)| *n == spec.name)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| panic!("{name}: no input {}", spec.name))
        })
        .collect()
}

/// Output `output` of `outputs`, as `model` orders them.
fn output<'a>(
    name: &str,
    model: &dyn LoadedModel,
    outputs: &'a [Tensor],
    output: &str,
) -> &'a Tensor {
    let pos = model
        .metadata()
        .outputs
        .iter()
        .position(|o| o.name == output)
        .unwrap_or_else(|| panic!("{name}: no output {output}"));
    assert_eq!(
        outputs.len(),
        model.metadata().outputs.len(),
        "{name}: outputs"
    );
    &outputs[pos]
}

/// tract's outputs for every run of a case, each checked against the ONNX
/// Runtime Python reference: the independent reference for ONNX Runtime.
fn tract_references(case: &Case, name: &str) -> Vec<Vec<(String, Tensor)>> {
    let tract = TractCpu
        .load(
            &ModelSource::from_path(case.model_path()),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: tract load: {e}"));
    case.runs
        .iter()
        .enumerate()
        .map(|(k, run)| {
            let got = tract
                .infer(&ordered_inputs(name, &*tract, &case.inputs(run)))
                .unwrap_or_else(|e| panic!("{name} run {k}: tract infer: {e}"));
            run.outputs
                .iter()
                .map(|out| {
                    let t = output(name, &*tract, &got, &out.name).clone();
                    assert_close(
                        &format!(
                            "{name} run {k} output {} (tract against ONNX Runtime Python)",
                            out.name
                        ),
                        &t,
                        &case.tensor(&out.file),
                        case.rtol,
                        case.atol,
                    );
                    (out.name.clone(), t)
                })
                .collect()
        })
        .collect()
}

fn run_case(name: &str) {
    require_library();
    let case = Case::load(name);
    let model = OnnxRuntime
        .load(
            &ModelSource::from_path(case.model_path()),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: load: {e}"));
    assert_eq!(model.backend(), "onnxruntime");
    assert!(!case.runs.is_empty(), "{name}: no runs");
    let references = tract_references(&case, name);
    // The backend reads aligned input bytes in place and copies the others:
    // each run goes both ways.
    for (layout, place) in [
        ("aligned", aligned as fn(&Tensor) -> Tensor),
        ("misaligned", misaligned),
    ] {
        for (k, (run, want)) in case.runs.iter().zip(&references).enumerate() {
            let inputs: Vec<Tensor> = ordered_inputs(name, &*model, &case.inputs(run))
                .iter()
                .map(place)
                .collect();
            let got = model
                .infer(&inputs)
                .unwrap_or_else(|e| panic!("{name} run {k} ({layout}): infer: {e}"));
            assert!(!want.is_empty(), "{name} run {k}: no outputs to check");
            for (out, want) in want {
                assert_close(
                    &format!("{name} run {k} ({layout} inputs) output {out} (ONNX Runtime against tract)"),
                    output(name, &*model, &got, out),
                    want,
                    case.rtol,
                    case.atol,
                );
            }
        }
    }
}

/// `t` with its numeric bytes at the start of an allocation of their own.
fn aligned(t: &Tensor) -> Tensor {
    t.compact()
}

/// `t` with its numeric bytes one byte into an allocation: misaligned for
/// every element type wider than a byte, as a request's bytes can be where
/// the transport decoded them.
fn misaligned(t: &Tensor) -> Tensor {
    let Some(bytes) = t.as_bytes() else {
        return t.clone();
    };
    let mut shifted = Vec::with_capacity(bytes.len() + 1);
    shifted.push(0u8);
    shifted.extend_from_slice(bytes);
    let view = anemone_core::Bytes::from(shifted).slice(1..);
    let size = t.dtype().size().unwrap_or(1);
    assert!(
        size == 1 || view.is_empty() || !(view.as_ptr() as usize).is_multiple_of(size),
        "the shifted copy is aligned after all"
    );
    Tensor::from_bytes(t.dtype(), t.shape().to_vec(), view).unwrap()
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
    four_inputs,
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
fn ort_probe_names_the_library() {
    require_library();
    assert_eq!(OnnxRuntime.name(), "onnxruntime");
    let Probe::Available { detail } = OnnxRuntime.probe() else {
        unreachable!()
    };
    assert!(detail.contains("libonnxruntime"), "{detail}");
}

#[test]
fn ort_bad_models_are_invalid_not_a_panic() {
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
fn ort_a_session_pool_serves_concurrent_requests() {
    require_library();
    let case = Case::load("small_convnet");
    let dir = case.dir.clone();
    let input = case.tensor(&case.runs[0].inputs[0].file);
    let want = tract_references(&case, "small_convnet")[0][0].1.clone();
    let (rtol, atol) = (case.rtol, case.atol);
    let options = LoadOptions {
        threads: Some(1),
        settings: vec![("onnxruntime.sessions".into(), "3".into())],
        ..Default::default()
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
                    assert_close(&format!("thread {t}"), &out[0], want, rtol, atol);
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

/// The execution providers come from what the library has: the PyPI CPU
/// wheel has no CUDA or TensorRT, so only CPU is registered, and the probe
/// says how to get the others; a malformed provider setting is refused.
#[test]
fn ort_execution_providers_follow_the_library() {
    require_library();
    let Probe::Available { detail } = OnnxRuntime.probe() else {
        unreachable!()
    };
    assert!(
        detail.contains("execution providers in this library: CPU (not CUDA or TensorRT: install an onnxruntime-gpu build"),
        "{detail}"
    );
    assert_eq!(OnnxRuntime.tier(), anemone_core::Tier::OptimisedCpu);
    let case = Case::load("identity");
    let options = LoadOptions {
        settings: vec![("onnxruntime.cuda".into(), "on".into())],
        ..Default::default()
    };
    let model = OnnxRuntime
        .load(&ModelSource::from_path(case.model_path()), &options)
        .unwrap();
    let providers = model
        .metadata()
        .properties
        .iter()
        .find(|(k, _)| k == "anemone.onnxruntime.providers");
    assert_eq!(
        providers.map(|(_, v)| v.as_str()),
        Some("CPU"),
        "CUDA is asked for but not in this library"
    );
    let options = LoadOptions {
        settings: vec![("onnxruntime.cuda".into(), "maybe".into())],
        ..Default::default()
    };
    let err = OnnxRuntime
        .load(&ModelSource::from_path(case.model_path()), &options)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("onnxruntime.cuda is \"maybe\"; set on or off"),
        "{err}"
    );
}
