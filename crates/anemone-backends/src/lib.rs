//! Engine backends for anemone.
//!
//! Each engine implements [`anemone_core::Backend`]. The tract CPU runtime
//! ([`TractCpu`]) is always built; other engines sit behind cargo features
//! or platform gates: ONNX Runtime (`OnnxRuntime`) behind `onnxruntime`.
//! [`onnx`] reads ONNX files into engine-independent metadata.
#![deny(missing_docs)]

pub mod onnx;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
pub mod tract;

#[cfg(feature = "onnxruntime")]
pub use onnxruntime::OnnxRuntime;
pub use tract::TractCpu;

use anemone_core::Backend;
use std::sync::Arc;

/// Every backend built into this binary, in the default order of preference.
pub fn default_backends() -> Vec<Arc<dyn Backend>> {
    let tract: Arc<dyn Backend> = Arc::new(TractCpu);
    #[cfg(feature = "onnxruntime")]
    return vec![Arc::new(OnnxRuntime), tract];
    #[cfg(not(feature = "onnxruntime"))]
    vec![tract]
}
