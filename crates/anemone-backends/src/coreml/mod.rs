//! Core ML: reading Core ML model files on any system, and the `coreml`
//! backend that runs them on Apple systems.
//!
//! The portable part describes `.mlmodel` files and `.mlpackage` packages
//! (their protobuf specification, [`spec`], compiled at build time from
//! `proto/coreml/Model.proto`) and holds every decision the backend takes
//! that does not need Apple's frameworks: settings and compute units
//! ([`options`]), the compiled-model cache ([`cache`]), flexible shapes
//! ([`shape`]), single or batch predictions ([`batch`]), array layouts
//! ([`layout`]) and the thermal policy
//! ([`thermal`]). These are tested on every system.
//!
//! The backend itself, [`CoreMl`], is registered everywhere so that the
//! reason it cannot run shows up in `anemone inspect` and in the model
//! repository's index. It runs models only on Apple systems built with the
//! cargo feature `coreml` (module `apple`, behind
//! `cfg(all(target_vendor = "apple", feature = "coreml"))`).
//!
//! ```no_run
//! let d = anemone_backends::coreml::describe_file("model.mlpackage".as_ref()).unwrap();
//! println!("{} model, spec version {}", d.model_type, d.specification_version);
//! for input in &d.metadata.inputs {
//!     println!("{} {} {}", input.name, input.dtype, input.shape_string());
//! }
//! ```

#[cfg(all(target_vendor = "apple", feature = "coreml"))]
pub mod apple;
pub mod batch;
pub mod cache;
pub mod describe;
pub mod file;
pub mod layout;
pub mod options;
pub mod plan;
pub mod shape;
pub mod spec;
pub mod thermal;

#[cfg(test)]
mod tests;

pub use describe::{describe_file, Description, Feature, FeatureKind};
pub use options::{ComputeUnits, CoreMlOptions};
pub use plan::{compute_plan, ComputePlan};
pub use thermal::ThermalState;

use anemone_core::{
    Backend, LoadOptions, LoadedModel, ModelFormat, ModelSource, Probe, Result, Support, Tier,
};

/// The backend's name.
pub const NAME: &str = "coreml";

/// Apple's Core ML: the Neural Engine, the GPU (through Metal Performance
/// Shaders) and the CPU, chosen by the `coreml.compute_units` setting.
///
/// Runs `.mlmodelc`, and `.mlmodel`/`.mlpackage` after compiling them once
/// into a cache. Usable only on Apple systems in builds with the `coreml`
/// feature; elsewhere its probe says why not.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreMl;

impl Backend for CoreMl {
    fn name(&self) -> &'static str {
        NAME
    }

    fn probe(&self) -> Probe {
        #[cfg(all(target_vendor = "apple", feature = "coreml"))]
        return apple::probe();
        #[cfg(not(all(target_vendor = "apple", feature = "coreml")))]
        Probe::Unavailable {
            reason: unavailable_reason().into(),
        }
    }

    /// [`Tier::NeuralEngine`]: with its default compute units (`all`), Core
    /// ML may use the Neural Engine. A model set to `gpu` or `cpu` still
    /// comes first for Core ML files, which only this backend runs.
    fn tier(&self) -> Tier {
        Tier::NeuralEngine
    }

    fn supports(&self, source: &ModelSource) -> Support {
        match source.format {
            ModelFormat::CoreMl => Support::Yes,
            other => Support::No(format!(
                "{NAME} runs Core ML models (.mlmodel, .mlpackage, .mlmodelc), not {other} models"
            )),
        }
    }

    fn load(&self, source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
        #[cfg(all(target_vendor = "apple", feature = "coreml"))]
        return apple::load(source, options);
        #[cfg(not(all(target_vendor = "apple", feature = "coreml")))]
        {
            let _ = (source, options);
            Err(anemone_core::Error::Unavailable {
                what: NAME.into(),
                reason: unavailable_reason().into(),
            })
        }
    }
}

/// Why the backend cannot run here.
#[cfg(not(all(target_vendor = "apple", feature = "coreml")))]
const fn unavailable_reason() -> &'static str {
    if cfg!(target_vendor = "apple") {
        "this anemone was built without the `coreml` feature; rebuild with \
         `cargo build --release -p anemone-cli --features anemone-backends/coreml`"
    } else {
        "Core ML needs macOS (Apple's CoreML framework); on this system anemone can describe \
         .mlmodel and .mlpackage files (anemone inspect) but not run them; run Core ML models \
         on a Mac, or serve the model as ONNX"
    }
}
