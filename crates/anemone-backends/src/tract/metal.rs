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
//! Status: type-checked on Linux by `scripts/check-apple.sh`; it has not yet
//! run on Apple hardware.

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
            super::load(&METAL, &source.path, options)
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
    rewrite: Ok,
    reuse_states: false,
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
