//! Runs N identity requests (the first argument; 10000 by default) through
//! `Manager::infer_blocking`: a fixed workload whose instruction count
//! (`valgrind --tool=cachegrind`) does not depend on what else the machine
//! runs, unlike a timing. Counting two values of N and subtracting gives the
//! instructions per request; see docs/PERFORMANCE.md, "Tracing off".

use anemone_backends::TractCpu;
use anemone_core::Tensor;
use anemone_runtime::{InferRequest, Manager, ModelSpec};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/generated/identity/model.onnx"
    );
    let manager = Manager::builder()
        .backend(TractCpu)
        .threads(1)
        .workers(1)
        .build()
        .expect("a manager");
    manager
        .load_model_blocking(ModelSpec::new("id", model))
        .expect("the identity fixture loads (scripts/setup.sh makes it)");
    let x = Tensor::from_vec(vec![1, 16], vec![1f32; 16]).expect("a tensor");
    for _ in 0..n {
        let request = InferRequest::new("id").input("x", x.clone());
        std::hint::black_box(manager.infer_blocking(request).expect("an answer"));
    }
}
