//! The `coreml` backend on a Mac: what a first `cargo test -p anemone-backends
//! --features coreml` there runs. Compiled only on Apple systems with the
//! feature (the module is gated with `apple`); `scripts/check-apple.sh`
//! type-checks it on Linux.
//!
//! The models are the coremltools fixtures (`scripts/gen_coreml_fixtures.py`,
//! `fixtures/generated/coreml/`): element-wise functions whose right answer
//! is computed here in plain Rust, independently of Core ML.

use super::array::{from_multi_array, to_multi_array};
use crate::coreml::{compute_plan, ComputeUnits, CoreMl};
use anemone_core::{
    Backend, DataType, Error, LoadOptions, LoadedModel, ModelSource, Probe, Tensor,
};
use half::f16;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/coreml");
    assert!(
        dir.join("nn_flexible.mlmodel").exists(),
        "Core ML fixtures are missing in {}: run scripts/setup.sh (it runs scripts/gen_coreml_fixtures.py)",
        dir.display()
    );
    dir
}

/// A fresh compile cache per test, and the compute units.
fn options(units: &str, tag: &str) -> LoadOptions {
    let cache =
        std::env::temp_dir().join(format!("anemone-coreml-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    LoadOptions {
        threads: None,
        settings: vec![
            ("coreml.compute_units".into(), units.into()),
            (
                "coreml.cache_dir".into(),
                cache.to_string_lossy().into_owned(),
            ),
        ],
        ..Default::default()
    }
}

fn load(file: &str, units: &str) -> Box<dyn LoadedModel> {
    CoreMl
        .load(
            &ModelSource::from_path(fixtures().join(file)),
            &options(units, file),
        )
        .unwrap_or_else(|e| panic!("{file} on {units}: {}", e.chain_string()))
}

fn ramp(n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f32 / (n.max(2) - 1) as f32)
        .collect()
}

/// `got` (any float dtype) against `want` within `tol`, element by element.
fn assert_near(what: &str, got: &Tensor, shape: &[usize], want: &[f32], tol: f32) {
    assert_eq!(got.shape(), shape, "{what}: shape");
    let got: Vec<f64> = got.to_f64_lossy().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f32 - w).abs() <= tol,
            "{what}: element {i} is {g}, want {w} (tolerance {tol})"
        );
    }
}

#[test]
fn probe_is_available_and_says_where() {
    let Probe::Available { detail } = CoreMl.probe() else {
        panic!("Core ML is unavailable on a Mac: {:?}", CoreMl.probe())
    };
    assert!(detail.starts_with("Core ML on "), "{detail}");
    assert!(detail.contains("thermal state"), "{detail}");
}

/// A NeuralNetwork `.mlmodel`: relu of a shape-range input and sigmoid of an
/// enumerated-shape input, on the CPU (exact in fp32) and with every unit
/// (the Neural Engine computes in fp16: a looser tolerance).
#[test]
fn nn_flexible_runs_relu_and_sigmoid() {
    for (units, tol) in [("cpu", 1e-6), ("all", 2e-3)] {
        let model = load("nn_flexible.mlmodel", units);
        assert_eq!(model.backend(), "coreml");
        let names: Vec<&str> = model
            .metadata()
            .inputs
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["x", "z"]);
        // x inside its range (batch 2, 3, 16, 8), z one of its enumerated shapes (4, 16).
        let x = ramp(2 * 3 * 16 * 8, -2.0, 2.0);
        let z = ramp(4 * 16, -6.0, 6.0);
        let out = model
            .infer(&[
                Tensor::from_vec(vec![2, 3, 16, 8], x.clone()).unwrap(),
                Tensor::from_vec(vec![4, 16], z.clone()).unwrap(),
            ])
            .unwrap_or_else(|e| panic!("{units}: {}", e.chain_string()));
        assert_eq!(out.len(), 2);
        let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        let sigmoid: Vec<f32> = z.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
        assert_near(
            &format!("y on {units}"),
            &out[0],
            &[2, 3, 16, 8],
            &relu,
            tol,
        );
        assert_near(&format!("zr on {units}"), &out[1], &[4, 16], &sigmoid, tol);
    }
}

/// A shape outside the model's range is the caller's error, not Core ML's crash.
#[test]
fn nn_flexible_refuses_a_shape_outside_its_range() {
    let model = load("nn_flexible.mlmodel", "cpu");
    let err = model
        .infer(&[
            Tensor::from_vec(vec![5, 3, 8, 8], vec![0f32; 5 * 3 * 64]).unwrap(),
            Tensor::from_vec(vec![2, 16], vec![0f32; 32]).unwrap(),
        ])
        .err()
        .expect("batch 5 is over the range 1..4");
    assert_eq!(err.kind(), anemone_core::ErrorKind::InvalidInput, "{err}");
}

/// A pipeline of two networks: tanh(relu(x)).
#[test]
fn pipeline_runs_both_stages() {
    let model = load("pipeline.mlmodel", "cpu");
    let x = ramp(6, -3.0, 3.0);
    let out = model
        .infer(&[Tensor::from_vec(vec![6], x.clone()).unwrap()])
        .unwrap();
    let want: Vec<f32> = x.iter().map(|v| v.max(0.0).tanh()).collect();
    assert_near("out", &out[0], &[6], &want, 1e-6);
}

/// An ML program with an fp16 and an int32 input: y = relu(x) * w (w the
/// constant ramp -1..1 over 192 values, in fp16), m = n + 1.
#[test]
fn program_fp16_int32_keeps_its_types() {
    let model = load("program_fp16_int32.mlpackage", "cpu");
    let x: Vec<f16> = ramp(192, -1.0, 3.0)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let n = vec![-2i32, 0, 7, i32::MAX - 1];
    let out = model
        .infer(&[
            Tensor::from_vec(vec![1, 3, 8, 8], x.clone()).unwrap(),
            Tensor::from_vec(vec![4], n.clone()).unwrap(),
        ])
        .unwrap();
    let w = ramp(192, -1.0, 1.0);
    let want: Vec<f32> = x
        .iter()
        .zip(&w)
        .map(|(x, w)| f16::from_f32(x.to_f32().max(0.0) * f16::from_f32(*w).to_f32()).to_f32())
        .collect();
    assert_eq!(out[0].dtype(), DataType::F16);
    assert_near("y", &out[0], &[1, 3, 8, 8], &want, 4e-3);
    assert_eq!(out[1].dtype(), DataType::I32);
    assert_eq!(out[1].to_vec::<i32>().unwrap(), vec![-1, 1, 8, i32::MAX]);
}

/// A free batch dimension: any batch runs, in one call.
#[test]
fn program_ranges_takes_any_batch() {
    let model = load("program_ranges.mlpackage", "cpu");
    for batch in [1, 3, 17] {
        let x = ramp(batch * 4, -1.0, 1.0);
        let out = model
            .infer(&[Tensor::from_vec(vec![batch, 4], x.clone()).unwrap()])
            .unwrap();
        let want: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        assert_near(&format!("batch {batch}"), &out[0], &[batch, 4], &want, 1e-6);
    }
}

/// What the backend does not run yet is refused at load, saying why.
#[test]
fn stateful_and_image_models_are_refused_with_the_reason() {
    for (file, says) in [
        ("program_stateful.mlpackage", "stateful"),
        (
            "program_images.mlpackage",
            "ct.TensorType instead of ct.ImageType",
        ),
    ] {
        let err = CoreMl
            .load(
                &ModelSource::from_path(fixtures().join(file)),
                &options("cpu", file),
            )
            .err()
            .unwrap_or_else(|| panic!("{file} loaded"));
        assert!(matches!(err, Error::InvalidModel { .. }), "{file}: {err}");
        assert!(err.to_string().contains(says), "{file}: {err}");
    }
}

/// Broken files are errors that name the file, never a crash.
#[test]
fn broken_files_are_errors() {
    let bad = fixtures().join("bad");
    let mut seen = 0;
    for entry in std::fs::read_dir(&bad).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = CoreMl.load(&ModelSource::from_path(&path), &options("cpu", &name));
        let err = result.err().unwrap_or_else(|| panic!("{name} loaded"));
        assert!(
            err.to_string().contains(&name) || err.chain_string().contains(&name),
            "{name}: {err}"
        );
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} broken files");
}

/// The second load of a model comes from the compile cache, and gives the same answer.
#[test]
fn compiled_models_are_cached() {
    let opts = options("cpu", "cache");
    let source = ModelSource::from_path(fixtures().join("pipeline.mlmodel"));
    let first = CoreMl.load(&source, &opts).unwrap();
    let cache = PathBuf::from(&opts.settings[1].1);
    let entries = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()))
        .count();
    assert!(entries >= 1, "nothing cached in {}", cache.display());
    let second = CoreMl.load(&source, &opts).unwrap();
    let x = Tensor::from_vec(vec![6], ramp(6, -1.0, 1.0)).unwrap();
    assert_eq!(
        first.infer(std::slice::from_ref(&x)).unwrap(),
        second.infer(std::slice::from_ref(&x)).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        entries,
        "compiled again"
    );
}

/// Tensors survive the trip into an `MLMultiArray` and back, for every
/// element type Core ML holds; the others are refused with the list.
#[test]
fn multi_arrays_round_trip() {
    let shape = vec![2, 3];
    let tensors = [
        Tensor::from_vec(shape.clone(), ramp(6, -1.5, 2.5)).unwrap(),
        Tensor::from_vec(
            shape.clone(),
            (0..6)
                .map(|i| f16::from_f32(i as f32 / 4.0))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        Tensor::from_vec(shape.clone(), vec![1e-300f64, -2.0, 3.5, 0.0, 1e300, -0.25]).unwrap(),
        Tensor::from_vec(shape.clone(), vec![i32::MIN, -1, 0, 1, 2, i32::MAX]).unwrap(),
    ];
    for t in tensors {
        let back = from_multi_array(&to_multi_array(t.clone()).unwrap()).unwrap();
        assert_eq!(back, t, "{}", t.dtype());
    }
    let err = to_multi_array(Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap()).unwrap_err();
    assert!(err.contains("FP16, FP32, FP64, INT32 or INT8"), "{err}");
}

/// The compute plan (macOS 14.4 and newer) lists every operation with a device.
#[test]
fn compute_plan_lists_operations() {
    let plan = match compute_plan(
        &fixtures().join("program_ranges.mlpackage"),
        ComputeUnits::All,
    ) {
        Ok(plan) => plan,
        Err(Error::Unavailable { reason, .. }) if reason.contains("14.4") => {
            eprintln!("SKIPPED (nothing checked): the compute plan needs macOS 14.4: {reason}");
            return;
        }
        Err(e) => panic!("{}", e.chain_string()),
    };
    assert_eq!(plan.compute_units, "all");
    assert!(
        plan.operations
            .iter()
            .any(|op| op.operator.contains("relu")),
        "{plan:?}"
    );
}

/// The thermal state reads as one of the four states.
#[test]
fn thermal_state_reads() {
    let state = super::device::thermal_state().as_str();
    assert!(
        ["nominal", "fair", "serious", "critical"].contains(&state),
        "{state}"
    );
}
