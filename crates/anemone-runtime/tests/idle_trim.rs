//! Memory freed by inference goes back to the system once traffic pauses:
//! the health monitor's thread gives the allocator's free pages back after
//! each burst of requests (issue 11). Its own test binary, so no other test
//! allocates while it measures.
//!
//! Linux with glibc only (it reads `VmRSS`, and the trim is glibc's).

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use anemone_backends::OnnxRuntime;
use anemone_core::Tensor;
use anemone_runtime::{HealthPolicy, InferRequest, Manager, ModelSpec};
use std::path::Path;
use std::time::{Duration, Instant};

/// Resident memory of this process, in bytes (as the monitor reads it).
fn rss() -> u64 {
    let rss = anemone_runtime::monitor::process_rss();
    assert!(rss > 0, "VmRSS could not be read from /proc/self/status");
    rss
}

#[test]
fn freed_activations_go_back_once_traffic_pauses() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/ocr_det/model.onnx");
    assert!(model.exists(), "{}: run scripts/setup.sh", model.display());
    let interval = Duration::from_millis(300);
    let m = Manager::builder()
        .backend(OnnxRuntime)
        .health(HealthPolicy {
            interval,
            ..HealthPolicy::default()
        })
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("det", &model))
        .unwrap();
    // Images of several sizes: each leaves its activations freed behind.
    for side in [320, 384, 448, 512] {
        let x = Tensor::from_vec(vec![1, 3, side, side], vec![0.25f32; 3 * side * side]).unwrap();
        m.infer_blocking(InferRequest::new("det").input("x", x))
            .unwrap();
    }
    let after_traffic = rss();
    // The trim comes after one whole idle interval, at the next look.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = rss();
    while now + (8 << 20) > after_traffic && Instant::now() < deadline {
        std::thread::sleep(interval);
        now = rss();
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    eprintln!(
        "RSS after the requests {:.1} MiB, once idle {:.1} MiB",
        mib(after_traffic),
        mib(now)
    );
    // Measured (debug build, 2026-11-30): 126 -> 45 MiB; without the trim, 152 MiB stayed.
    assert!(
        now + (8 << 20) <= after_traffic,
        "RSS {:.1} MiB after the requests, {:.1} MiB once idle: the freed memory was kept",
        mib(after_traffic),
        mib(now)
    );
}
