//! Warm-up samples (Triton's `model_warmup`, [`ModelSpec::warmup`]): run
//! before the model is published, a failing one fails the load naming it, and
//! the CPU engines are compared on their shapes.

use super::file;
use anemone_core::{
    Backend, DataType, Dim, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource,
    Probe, Support, Tensor, TensorSpec, Tier,
};
use anemone_runtime::{Manager, ModelSpec, WarmupSample};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What every model of a [`Shaped`] backend saw.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) calls: AtomicU32,
    /// The largest row count `n` of `x` inferred.
    largest: AtomicU32,
    /// Whether some call found model "w" already served by the manager.
    served_during_call: AtomicBool,
}

/// A CPU backend whose model takes `x: f32[n]` and whose speed depends on
/// `n`: `small_us` per call when n is 1, `large_us` otherwise.
pub(super) struct Shaped {
    name: &'static str,
    tier: Tier,
    small_us: u64,
    large_us: u64,
    seen: Arc<Seen>,
    manager: Arc<OnceLock<Manager>>,
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

pub(super) fn shaped(
    name: &'static str,
    tier: Tier,
    small_us: u64,
    large_us: u64,
) -> (Shaped, Arc<Seen>) {
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

fn sample(name: &str, rows: usize, count: usize) -> WarmupSample {
    WarmupSample {
        name: name.into(),
        inputs: vec![(
            "x".into(),
            Tensor::from_vec(vec![rows], vec![0.5f32; rows]).unwrap(),
        )],
        count,
    }
}

#[test]
fn warmup_samples_run_count_times_before_the_model_is_served() {
    let (mut one, seen) = shaped("one", Tier::Gpu, 0, 0);
    let handle = Arc::new(OnceLock::new());
    one.manager = handle.clone();
    let m = Manager::builder().backend(one).build().unwrap();
    handle.set(m.clone()).ok().unwrap();
    let spec = ModelSpec::new("w", file())
        .warmup(sample("rows-8", 8, 3))
        .warmup(sample("once", 2, 0));
    m.load_model_blocking(spec).unwrap();
    // 3 runs of the first sample, and count 0 means once: nothing else ran.
    assert_eq!(seen.calls.load(Ordering::SeqCst), 4);
    assert_eq!(seen.largest.load(Ordering::SeqCst), 8);
    assert!(
        !seen.served_during_call.load(Ordering::SeqCst),
        "the model was served while its warm-up ran"
    );
}

#[test]
fn a_bad_sample_fails_the_load_naming_it() {
    let (one, _) = shaped("one", Tier::Gpu, 0, 0);
    let m = Manager::builder().backend(one).build().unwrap();
    let mut bad = sample("wrong-input", 2, 1);
    bad.inputs[0].0 = "z".into();
    let e = m
        .load_model_blocking(ModelSpec::new("w", file()).warmup(bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("warm-up sample 'wrong-input'"), "{e}");
    assert!(e.contains("'z'"), "{e}");
    assert!(
        m.model("w", None).is_err(),
        "a failed warm-up left it served"
    );
    let mut f64s = sample("wrong-type", 2, 1);
    f64s.inputs[0].1 = Tensor::from_vec(vec![2], vec![0.5f64; 2]).unwrap();
    let e = m
        .load_model_blocking(ModelSpec::new("w", file()).warmup(f64s))
        .unwrap_err()
        .to_string();
    assert!(e.contains("warm-up sample 'wrong-type'"), "{e}");
}

#[test]
fn the_cpu_engines_are_compared_on_the_warmup_shapes() {
    // `tiny` is fast on one row and slow on many; `big` is the reverse.
    let build = || {
        let (tiny, tiny_seen) = shaped("tiny", Tier::OptimisedCpu, 100, 6000);
        let (big, _) = shaped("big", Tier::PortableCpu, 3000, 600);
        let m = Manager::builder()
            .backend(tiny)
            .backend(big)
            .build()
            .unwrap();
        (m, tiny_seen)
    };
    // Without samples: every dynamic dimension is 1, so `tiny` wins.
    let (m, _) = build();
    let plain = m.load_model_blocking(ModelSpec::new("p", file())).unwrap();
    assert_eq!(plain.selection().chosen(), Some("tiny"));
    // With a sample of 64 rows, the engines are timed on 64 rows: `big` wins.
    let (m, tiny_seen) = build();
    let warmed = m
        .load_model_blocking(ModelSpec::new("w", file()).warmup(sample("rows-64", 64, 1)))
        .unwrap();
    let sel = warmed.selection();
    assert_eq!(sel.chosen(), Some("big"), "{}", sel.summary());
    assert_eq!(tiny_seen.largest.load(Ordering::SeqCst), 64);
}
