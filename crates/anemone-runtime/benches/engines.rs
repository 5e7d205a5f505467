//! tract CPU on a ResNet-18-shaped model at batch 1 and 8, through the Manager.
//!
//! Compare with ONNX Runtime's Python API on the same model and threads:
//! `.venv/bin/python scripts/bench_ort.py` (see docs/PERFORMANCE.md).

use anemone_backends::TractCpu;
use anemone_core::{npy, Tensor};
use anemone_runtime::{default_parallelism, InferRequest, Manager, ModelSpec};
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::PathBuf;

fn resnet(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/resnet18");
    assert!(
        dir.exists(),
        "{} is missing: run scripts/setup.sh",
        dir.display()
    );
    let threads = default_parallelism();
    let m = Manager::builder()
        .backend(TractCpu)
        .threads(threads)
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("resnet18", dir.join("model.onnx")))
        .unwrap();
    let read = |f: &str| npy::read(std::fs::File::open(dir.join(f)).unwrap()).unwrap();
    let inputs: [(&str, Tensor); 2] = [
        ("batch 1", read("run0_in_0.npy")),
        ("batch 8", read("bench_b8.npy")),
    ];
    let mut group = c.benchmark_group(format!("resnet18 tract-cpu {threads} threads"));
    group.sample_size(10);
    for (label, x) in inputs {
        group.bench_function(label, |b| {
            b.iter(|| {
                m.infer_blocking(InferRequest::new("resnet18").input("input", x.clone()))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, resnet);
criterion_main!(benches);
