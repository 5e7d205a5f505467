//! `Shaped`: a fake CPU engine whose speed depends on the size of its input,
//! for the tests of engine selection (the warm-up shapes and the health
//! monitor in `selection/`, the comparison in a child in `compare_child.rs`).

use anemone_core::{
    Backend, DataType, Dim, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource,
    Probe, Support, Tensor, TensorSpec, Tier,
};
use anemone_runtime::Manager;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What every model of a [`Shaped`] backend saw.
#[derive(Default)]
pub struct Seen {
    /// Inference calls.
    pub calls: AtomicU32,
    /// The largest row count `n` of `x` inferred.
    pub largest: AtomicU32,
    /// Whether some call found model "w" already served by the manager.
    pub served_during_call: AtomicBool,
}

/// A CPU backend whose model takes `x: f32[n]` and whose speed depends on
/// `n`: `small_us` per call when n is 1, `large_us` otherwise.
pub struct Shaped {
    name: &'static str,
    tier: Tier,
    small_us: u64,
    large_us: u64,
    seen: Arc<Seen>,
    /// The manager serving the model, when a test sets it: each call
    /// records whether model "w" is already served.
    pub manager: Arc<OnceLock<Manager>>,
}

struct ShapedModel {
    meta: ModelMetadata,
    name: &'static str,
    small_us: u64,
    large_us: u64,
    seen: Arc<Seen>,
    manager: Arc<OnceLock<Manager>>,
}

impl Backend for Shaped {
    fn name(&self) -> &'static str {
        self.name
    }
    fn probe(&self) -> Probe {
        Probe::Available {
            detail: "test double".into(),
        }
    }
    fn tier(&self) -> Tier {
        self.tier
    }
    fn supports(&self, _: &ModelSource) -> Support {
        Support::Yes
    }
    fn load(&self, _: &ModelSource, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let n = Dim::Named("n".into());
        Ok(Box::new(ShapedModel {
            meta: ModelMetadata::new(
                ModelFormat::Onnx,
                vec![TensorSpec::new("x", DataType::F32, vec![n.clone()])],
                vec![TensorSpec::new("y", DataType::F32, vec![n])],
            ),
            name: self.name,
            small_us: self.small_us,
            large_us: self.large_us,
            seen: self.seen.clone(),
            manager: self.manager.clone(),
        }))
    }
}

impl LoadedModel for ShapedModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn backend(&self) -> &'static str {
        self.name
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        let n = inputs[0].shape()[0];
        self.seen.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.largest.fetch_max(n as u32, Ordering::SeqCst);
        if let Some(m) = self.manager.get() {
            if m.model("w", None).is_ok() {
                self.seen.served_during_call.store(true, Ordering::SeqCst);
            }
        }
        let us = if n == 1 { self.small_us } else { self.large_us };
        std::thread::sleep(Duration::from_micros(us));
        Ok(vec![inputs[0].clone()])
    }
}

/// A [`Shaped`] backend named `name`, and what its models see.
pub fn shaped(name: &'static str, tier: Tier, small_us: u64, large_us: u64) -> (Shaped, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let backend = Shaped {
        name,
        tier,
        small_us,
        large_us,
        seen: seen.clone(),
        manager: Arc::new(OnceLock::new()),
    };
    (backend, seen)
}
