//! Engine backends for anemone.
//!
//! Each engine implements [`anemone_core::Backend`]. The tract CPU runtime
//! ([`TractCpu`]) is always built; other engines sit behind cargo features
//! or platform gates: ONNX Runtime (`OnnxRuntime`) behind `onnxruntime`,
//! Core ML ([`CoreMl`], registered everywhere, running only on Apple systems
//! built with the `coreml` feature), tract's Metal runtime ([`TractMetal`],
//! registered on Apple systems, running with the `metal` feature), and
//! tract's CUDA runtime (`TractCuda`, behind `cuda` on Linux).
//! [`onnx`] and [`coreml`] read model files into engine-independent
//! metadata on any system; [`describe_file`] picks the reader by format.
#![deny(missing_docs)]

pub mod coreml;
pub mod file;
pub use anemone_core::gather;
pub mod input_blame;
pub mod onnx;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
#[cfg(feature = "onnxruntime")]
pub mod ort_coreml;
#[cfg(feature = "onnxruntime")]
mod ort_empty_inputs;
#[cfg(feature = "onnxruntime")]
pub mod ort_log;
pub mod ort_options;
#[cfg(feature = "onnxruntime")]
mod ort_tensors;
pub mod python;
pub mod settings;
#[cfg(test)]
mod test_dir;
pub mod tract;

pub use coreml::CoreMl;
#[cfg(feature = "onnxruntime")]
pub use onnxruntime::OnnxRuntime;
pub use python::Python;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub use tract::cuda::TractCuda;
pub use tract::metal::TractMetal;
pub use tract::TractCpu;

use anemone_core::{Backend, ModelFormat, ModelMetadata, Result};
use std::path::Path;
use std::sync::Arc;

/// Describes a model file without loading it on an engine: Core ML files
/// (`.mlmodel`, `.mlpackage`, `.mlmodelc`) through [`coreml`], everything
/// else as ONNX through [`onnx`].
pub fn describe_file(path: &Path) -> Result<ModelMetadata> {
    match ModelFormat::from_path(path) {
        Some(ModelFormat::CoreMl) => coreml::describe_file(path).map(|d| d.metadata),
        Some(ModelFormat::Python) => Err(anemone_core::Error::Config(format!(
            "{} is a Python model: its inputs and outputs come from its config.pbtxt, not the file",
            path.display()
        ))),
        _ => onnx::describe_file(path),
    }
}

/// Every backend built into this binary, in the default order of preference:
/// by [`anemone_core::Tier`] (Neural Engine, GPU, optimised CPU, portable CPU).
pub fn default_backends() -> Vec<Arc<dyn Backend>> {
    #[allow(unused_mut)]
    let mut all: Vec<Arc<dyn Backend>> = vec![
        Arc::new(TractCpu),
        Arc::new(CoreMl),
        Arc::new(Python::default()),
    ];
    #[cfg(feature = "onnxruntime")]
    all.push(Arc::new(OnnxRuntime));
    // Listed on Apple systems only, where it may run (its probe says why not).
    #[cfg(target_vendor = "apple")]
    all.push(Arc::new(TractMetal));
    #[cfg(all(feature = "cuda", target_os = "linux"))]
    all.push(Arc::new(TractCuda));
    all.sort_by_key(|b| b.tier());
    all
}
