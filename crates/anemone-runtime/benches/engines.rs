//! The engines through the Manager (`infer_blocking`), on a ResNet-18-shaped
//! model at batch 1 and 8 and a transformer block: tract CPU and, when its
//! library is installed, ONNX Runtime, with one intra-op thread per core
//! (or `ANEMONE_BENCH_THREADS`).
//!
//! Compare with ONNX Runtime's own Python API on the same models, inputs and
//! threads: `.venv/bin/python scripts/bench_ort.py` (see docs/PERFORMANCE.md).

use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_core::{npy, Backend, Tensor};
use anemone_runtime::{default_parallelism, InferRequest, Manager, ModelSpec};
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::PathBuf;
use std::sync::Arc;

/// `(model, label, input name, input file)`.
const WORKLOADS: [(&str, &str, &str, &str); 3] = [
    ("resnet18", "batch 1", "input", "run0_in_0.npy"),
    ("resnet18", "batch 8", "input", "bench_b8.npy"),
    ("transformer_block", "batch 1", "x", "run0_in_0.npy"),
];

fn engines(c: &mut Criterion) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated");
    assert!(
        fixtures.join("resnet18").exists(),
        "{} is missing: run scripts/setup.sh",
        fixtures.display()
    );
    let threads = std::env::var("ANEMONE_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(default_parallelism);
    let mut backends: Vec<Arc<dyn Backend>> = vec![Arc::new(TractCpu)];
    if OnnxRuntime.probe().is_available() {
        backends.push(Arc::new(OnnxRuntime));
    } else {
        eprintln!("onnxruntime is unavailable: benchmarking tract-cpu only (run scripts/install-onnxruntime.sh)");
    }
    for backend in backends {
        let name = backend.name();
        let m = Manager::builder()
            .backends([backend])
            .threads(threads)
            .build()
            .unwrap();
        let mut group = c.benchmark_group(format!("{name} {threads} threads"));
        group.sample_size(10);
        for (model, label, input, file) in WORKLOADS {
            let dir = fixtures.join(model);
            if m.model(model, None).is_err() {
                m.load_model_blocking(ModelSpec::new(model, dir.join("model.onnx")))
                    .unwrap();
            }
            let meta_input = m.model(model, None).unwrap().metadata().inputs[0]
                .name
                .clone();
            let input = if meta_input.is_empty() {
                input.to_string()
            } else {
                meta_input
            };
            let x: Tensor = npy::read(std::fs::File::open(dir.join(file)).unwrap()).unwrap();
            group.bench_function(format!("{model} {label}"), |b| {
                b.iter(|| {
                    m.infer_blocking(InferRequest::new(model).input(input.as_str(), x.clone()))
                        .unwrap()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, engines);
criterion_main!(benches);
