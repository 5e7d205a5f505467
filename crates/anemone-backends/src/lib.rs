//! Engine backends for anemone.
//!
//! Each engine implements [`anemone_core::Backend`]. The tract CPU runtime
//! ([`TractCpu`]) is always built; other engines sit behind cargo features
//! or platform gates. [`onnx`] reads ONNX files into engine-independent
//! metadata.
#![deny(missing_docs)]

pub mod onnx;
pub mod tract;

pub use tract::TractCpu;

use anemone_core::Backend;
use std::sync::Arc;

/// Every backend built into this binary, in the default order of preference.
pub fn default_backends() -> Vec<Arc<dyn Backend>> {
    vec![Arc::new(TractCpu)]
}
