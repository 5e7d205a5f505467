//! Warm-up samples (Triton's `model_warmup`, [`ModelSpec::warmup`]): run
//! before the model is published, a failing one fails the load naming it, and
//! the CPU engines are compared on their shapes.

use super::file;
use crate::support::shaped::shaped;
use anemone_core::{Tensor, Tier};
use anemone_runtime::{Manager, ModelSpec, WarmupSample};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

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
