//! The engine the selection drops gives its memory back: with the default
//! order, a model is loaded on both CPU engines to time them and the slower
//! one is dropped; the process must not stay as large as if both were kept.
//! Its own test binary, so no other test allocates while it measures.
//!
//! Linux with glibc only (it reads `VmRSS`, and the trim is glibc's).

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_runtime::{Manager, ModelSpec};
use std::path::Path;

/// Resident memory of this process, in bytes (as the monitor reads it).
fn rss() -> u64 {
    let rss = anemone_runtime::monitor::process_rss();
    assert!(rss > 0, "VmRSS could not be read from /proc/self/status");
    rss
}

#[test]
fn the_slower_engine_is_not_kept_resident() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/resnet18/model.onnx");
    assert!(model.exists(), "{}: run scripts/setup.sh", model.display());
    let m = Manager::builder()
        .backend(OnnxRuntime)
        .backend(TractCpu)
        .build()
        .unwrap();
    // The engine libraries' own start-up (thread pools, caches) is not the
    // model's: a tiny model first.
    let small =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/identity/model.onnx");
    m.load_model_blocking(ModelSpec::new("warm", &small))
        .unwrap();
    let before = rss();
    let loaded = m.load_model_blocking(ModelSpec::new("m", &model)).unwrap();
    let grew = rss().saturating_sub(before);
    let charge = loaded.memory_footprint();
    eprintln!(
        "on {}: RSS grew {:.1} MiB for a charge of {:.1} MiB",
        loaded.backend(),
        grew as f64 / 1048576.0,
        charge as f64 / 1048576.0
    );
    // Measured on resnet18 (debug build, 2026-11-30): 54-90 MiB with the
    // dropped engine's pages given back, 197 MiB without (charge 44.6 MiB).
    assert!(
        grew < charge * 3,
        "RSS grew {grew} bytes for a model charged {charge}: the dropped engine's memory was kept"
    );
}
