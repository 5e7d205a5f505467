//! Engine backends for anemone.
//!
//! Each engine implements [`anemone_core::Backend`]. The tract CPU runtime
//! ([`TractCpu`]) is always built; other engines sit behind cargo features
//! or platform gates: ONNX Runtime (`OnnxRuntime`) behind `onnxruntime`, and
//! tract's CUDA runtime (`TractCuda`) behind `cuda` (Linux).
//! [`onnx`] reads ONNX files into engine-independent metadata.
#![deny(missing_docs)]

pub mod onnx;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
pub mod tract;

#[cfg(feature = "onnxruntime")]
pub use onnxruntime::OnnxRuntime;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub use tract::cuda::TractCuda;
pub use tract::TractCpu;

use anemone_core::Backend;
use std::sync::Arc;

/// Every backend built into this binary, in the default order of preference:
/// by [`anemone_core::Tier`] (Neural Engine, GPU, optimised CPU, portable CPU).
pub fn default_backends() -> Vec<Arc<dyn Backend>> {
    #[allow(unused_mut)]
    let mut all: Vec<Arc<dyn Backend>> = vec![Arc::new(TractCpu)];
    #[cfg(feature = "onnxruntime")]
    all.push(Arc::new(OnnxRuntime));
    #[cfg(all(feature = "cuda", target_os = "linux"))]
    all.push(Arc::new(TractCuda));
    all.sort_by_key(|b| b.tier());
    all
}
