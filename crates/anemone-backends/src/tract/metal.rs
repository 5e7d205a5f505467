//! tract's Metal runtime (`tract-metal`, cargo feature `metal`): ONNX models
//! on the GPU of an Apple system.
//!
//! The runtime registers itself with tract under the name `metal` once the
//! crate is linked (`extern crate tract_metal` below, behind its gate); a
//! model is then prepared exactly as for tract's CPU runtime, from the
//! decluttered model (see `super::load`). tract-metal panics when the
//! machine has no Metal device, so the probe creates a Metal context first,
//! catching a panic, and `load` catches one too.
//!
//! Status: type-checked on Linux by `scripts/check-apple.sh`, tests included;
//! it has not yet run on Apple hardware. The tests at the end of this file are
//! what a first run on a Mac checks.

use anemone_core::{
    Backend, LoadOptions, LoadedModel, ModelFormat, ModelSource, Probe, Result, Support, Tier,
};

#[cfg(all(target_vendor = "apple", feature = "metal"))]
extern crate tract_metal;

/// The backend's name.
pub const NAME: &str = "tract-metal";

/// tract's Metal runtime. Registered on Apple systems; usable in builds
/// with the `metal` feature on a machine with a Metal device.
#[derive(Debug, Clone, Copy, Default)]
pub struct TractMetal;

impl Backend for TractMetal {
    fn name(&self) -> &'static str {
        NAME
    }

    fn probe(&self) -> Probe {
        #[cfg(all(target_vendor = "apple", feature = "metal"))]
        return probe_metal().clone();
        #[cfg(not(all(target_vendor = "apple", feature = "metal")))]
        Probe::Unavailable {
            reason: if cfg!(target_vendor = "apple") {
                "this anemone was built without the `metal` feature; rebuild with \
                 `cargo build --release -p anemone-cli --features anemone-backends/metal`"
            } else {
                "tract's Metal runtime needs an Apple system"
            }
            .into(),
        }
    }

    fn tier(&self) -> Tier {
        Tier::Gpu
    }

    fn supports(&self, source: &ModelSource) -> Support {
        match source.format {
            ModelFormat::Onnx => Support::Yes,
            other => Support::No(format!("{NAME} runs ONNX models, not {other} models")),
        }
    }

    fn load(&self, source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
        if let Probe::Unavailable { reason } = self.probe() {
            return Err(anemone_core::Error::Unavailable {
                what: NAME.into(),
                reason,
            });
        }
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::load(&METAL, &source.path, options, Default::default())
        }))
        .map_err(|_| anemone_core::Error::Backend {
            backend: NAME.into(),
            message: "tract-metal panicked while preparing the model".into(),
            retryable: false,
            source: None,
        })??;
        Ok(Box::new(loaded))
    }
}

/// tract's `metal` runtime as a [`super::Target`]. No rewrites: the GPU
/// rewrites made for tract-cuda are not yet measured on Metal.
const METAL: super::Target = super::Target {
    backend: NAME,
    runtime: "metal",
    rewrite: |model, _| Ok(model),
    runtime_impl: None,
    reuse_states: false,
    upload: None,
    run_state: None,
};

/// Whether a Metal device and tract's `metal` runtime are there; found once.
#[cfg(all(target_vendor = "apple", feature = "metal"))]
fn probe_metal() -> &'static Probe {
    static PROBE: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    PROBE.get_or_init(|| {
        use tract_onnx::tract_core::runtime::runtime_for_name;
        if !matches!(runtime_for_name("metal"), Ok(Some(_))) {
            return Probe::Unavailable {
                reason: "tract's `metal` runtime is not registered in this build".into(),
            };
        }
        match std::panic::catch_unwind(tract_metal::MetalContext::new) {
            Ok(Ok(_)) => Probe::Available {
                detail: format!(
                    "tract {} Metal runtime on the system GPU",
                    super::TRACT_VERSION
                ),
            },
            Ok(Err(e)) => Probe::Unavailable {
                reason: format!("no usable Metal device: {e}"),
            },
            Err(_) => Probe::Unavailable {
                reason: "no usable Metal device (creating a Metal context panicked)".into(),
            },
        }
    })
}

/// What a first `cargo test -p anemone-backends --features metal --lib metal`
/// on a Mac checks: the probe finds the GPU, and models run on it agree with
/// ONNX Runtime's references (`fixtures/generated`, another engine).
/// Type-checked on Linux by `scripts/check-apple.sh`.
#[cfg(all(test, target_vendor = "apple", feature = "metal"))]
mod tests {
    use super::TractMetal;
    use anemone_core::{Backend, LoadOptions, ModelSource, Probe, Tensor};
    use std::path::{Path, PathBuf};

    fn case_dir(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/generated")
            .join(name);
        assert!(
            dir.join("case.json").exists(),
            "fixture {} is missing: run scripts/setup.sh",
            dir.display()
        );
        dir
    }

    fn npy(path: &Path) -> Tensor {
        anemone_core::npy::read(std::fs::File::open(path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn probe_finds_the_gpu() {
        match TractMetal.probe() {
            Probe::Available { detail } => assert!(detail.contains("Metal runtime"), "{detail}"),
            Probe::Unavailable { reason } => {
                panic!("tract-metal is unavailable on a Mac: {reason}")
            }
        }
    }

    /// Every run of each case against the ONNX Runtime references, as
    /// ‖got − want‖ / ‖want‖ (the GPU may reorder fp32 sums).
    #[test]
    fn models_match_onnx_runtime() {
        for name in ["dynamic_batch", "small_convnet", "transformer_block", "gru"] {
            let dir = case_dir(name);
            let case: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap())
                    .unwrap();
            let model = TractMetal
                .load(
                    &ModelSource::from_path(dir.join("model.onnx")),
                    &LoadOptions::default(),
                )
                .unwrap_or_else(|e| panic!("{name}: {}", e.chain_string()));
            assert_eq!(model.backend(), "tract-metal");
            let runs = case["runs"].as_array().unwrap();
            assert!(!runs.is_empty());
            for (k, run) in runs.iter().enumerate() {
                let file = |v: &serde_json::Value| dir.join(v["file"].as_str().unwrap());
                let inputs: Vec<Tensor> = model
                    .metadata()
                    .inputs
                    .iter()
                    .map(|spec| {
                        let given = run["inputs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|i| i["name"] == spec.name.as_str())
                            .unwrap_or_else(|| panic!("{name}: no input {}", spec.name));
                        npy(&file(given))
                    })
                    .collect();
                let got = model
                    .infer(&inputs)
                    .unwrap_or_else(|e| panic!("{name} run {k}: {}", e.chain_string()));
                let outputs = run["outputs"].as_array().unwrap();
                assert_eq!(got.len(), outputs.len(), "{name} run {k}: outputs");
                for (o, g) in outputs.iter().zip(&got) {
                    let want = npy(&file(o));
                    assert_eq!(g.shape(), want.shape(), "{name} run {k} {}", o["name"]);
                    let (g, w) = (g.to_f64_lossy().unwrap(), want.to_f64_lossy().unwrap());
                    let num: f64 = g.iter().zip(&w).map(|(a, b)| (a - b).powi(2)).sum();
                    let den: f64 = w.iter().map(|b| b * b).sum::<f64>().max(1e-30);
                    let err = (num / den).sqrt();
                    assert!(
                        err < 1e-3,
                        "{name} run {k} {}: relative L2 error {err:.2e}",
                        o["name"]
                    );
                }
            }
        }
    }
}
