//! The process's resident memory stays flat under on-demand churn: two copies
//! of a real model under a budget that holds one, asked in turn, so every
//! request loads one and evicts the other; on tract, then on ONNX Runtime.
//! Its own test binary, with one test, so no other test allocates in the
//! same process while it measures.
//!
//! Linux only (it reads `VmRSS` from `/proc/self/status`).

#![cfg(target_os = "linux")]

use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_core::{Backend, Tensor};
use anemone_runtime::{EvictionPolicy, InferRequest, Manager, ModelSpec};
use std::path::Path;
use std::sync::Arc;

/// Resident memory of this process, in bytes (as the monitor reads it).
fn rss() -> u64 {
    let rss = anemone_runtime::monitor::process_rss();
    assert!(rss > 0, "VmRSS could not be read from /proc/self/status");
    rss
}

/// Warm-up rounds (allocator arenas and tract's caches settle), then
/// measured rounds; each round loads both models once.
const WARM_UP: usize = 10;
const ROUNDS: usize = 60;
/// What the measured rounds may add (about 1 MiB was seen): a leak of 100 KB
/// per load, far less than one engine, adds 12 MB over the 120 loads.
const TOLERANCE: u64 = 8 << 20;

#[test]
fn rss_stays_flat_under_on_demand_churn() {
    churn("tract-cpu", Arc::new(TractCpu));
    churn("onnxruntime", Arc::new(OnnxRuntime));
}

fn churn(engine: &str, backend: Arc<dyn Backend>) {
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/generated/transformer_block/model.onnx");
    assert!(model.exists(), "{}: run scripts/setup.sh", model.display());
    let probe = Manager::builder()
        .backends([backend.clone()])
        .build()
        .unwrap();
    let one = probe
        .load_model_blocking(ModelSpec::new("probe", &model))
        .unwrap()
        .memory_footprint();
    drop(probe);
    let m = Manager::builder()
        .backends([backend])
        .workers(1)
        .memory_budget(Some(one * 3 / 2))
        .eviction(EvictionPolicy::Lru)
        .build()
        .unwrap();
    for name in ["a", "b"] {
        m.load_model_blocking(ModelSpec::new(name, &model)).unwrap();
    }
    let x = Tensor::from_vec(vec![1, 5, 32], vec![0.25f32; 160]).unwrap();
    let round = || {
        for name in ["a", "b"] {
            m.infer_blocking(InferRequest::new(name).input("x", x.clone()))
                .unwrap_or_else(|e| panic!("{name}: {}", e.chain_string()));
        }
    };
    for _ in 0..WARM_UP {
        round();
    }
    let before = rss();
    for _ in 0..ROUNDS {
        round();
    }
    let after = rss();
    let loads: u64 = m
        .metrics()
        .eviction
        .on_demand_loads
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        loads,
        2 * (WARM_UP + ROUNDS) as u64,
        "every request loaded its model"
    );
    assert!(
        after <= before + TOLERANCE,
        "{engine}: RSS grew by {} KiB over {} on-demand loads ({} KiB before, {} KiB after)",
        (after - before) >> 10,
        2 * ROUNDS,
        before >> 10,
        after >> 10
    );
    eprintln!(
        "{engine}: RSS {} KiB before, {} KiB after {} on-demand loads",
        before >> 10,
        after >> 10,
        2 * ROUNDS
    );
}
