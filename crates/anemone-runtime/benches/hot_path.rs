//! The framework's own cost on the request path, piece by piece, and
//! `Manager::infer` against calling tract directly on a trivial model.
//!
//! Run with `cargo bench -p anemone-runtime --bench hot_path`. Figures are
//! recorded in docs/PERFORMANCE.md; nothing here is asserted.

use anemone_backends::TractCpu;
use anemone_core::{DataType, Dim, ErrorKind, ModelFormat, ModelMetadata, Tensor, TensorSpec};
use anemone_runtime::admission::Limiter;
use anemone_runtime::metrics::{Ewma, ModelMetrics, Timings};
use anemone_runtime::validation::order_inputs;
use anemone_runtime::{InferRequest, Manager, ModelSpec};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;
use tract_onnx::prelude::*;

fn fixture(case: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/generated")
        .join(case)
        .join("model.onnx");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

fn admission(c: &mut Criterion) {
    let global = Limiter::new("global", Some(1024));
    let model = Limiter::new("model", Some(64));
    c.bench_function(
        "admission: global + model permit, acquire and release",
        |b| {
            b.iter(|| {
                let g = global.try_acquire().unwrap();
                let m = model.try_acquire().unwrap();
                black_box((g, m));
            })
        },
    );
    let full = Limiter::new("full", Some(0));
    c.bench_function("admission: refused (overloaded)", |b| {
        b.iter(|| black_box(full.try_acquire().is_err()))
    });
}

fn lookup(c: &mut Criterion) {
    let m = Manager::builder().backend(TractCpu).build().unwrap();
    for i in 0..32 {
        m.load_model_blocking(ModelSpec::new(format!("model-{i}"), fixture("identity")))
            .unwrap();
    }
    c.bench_function("registry: lookup latest version among 32 models", |b| {
        b.iter(|| black_box(m.model(black_box("model-17"), None).unwrap()))
    });
    c.bench_function(
        "registry: borrowed lookup (no handle) among 32 models",
        |b| {
            b.iter(|| {
                black_box(
                    m.with_model(black_box("model-17"), None, |m| m.version())
                        .unwrap(),
                )
            })
        },
    );
    // From here on this thread caches the registry's snapshot, as tokio's
    // workers do in `anemone serve` (the rows after these ones included).
    anemone_runtime::registry::on_thread_park();
    c.bench_function(
        "registry: lookup latest version among 32 models, caching thread",
        |b| b.iter(|| black_box(m.model(black_box("model-17"), None).unwrap())),
    );
    c.bench_function(
        "registry: borrowed lookup (no handle) among 32 models, caching thread",
        |b| {
            b.iter(|| {
                black_box(
                    m.with_model(black_box("model-17"), None, |m| m.version())
                        .unwrap(),
                )
            })
        },
    );
    // The thread remembers its last answer: two models asked in turn each
    // take the hash probe.
    c.bench_function(
        "registry: borrowed lookups of two models in turn (per pair), caching thread",
        |b| {
            b.iter(|| {
                black_box(m.with_model(black_box("model-17"), None, |m| m.version()));
                black_box(m.with_model(black_box("model-3"), None, |m| m.version()))
            })
        },
    );
    // What the first lookup after an idle spell costs: the park empties the
    // cache, the lookup loads the snapshot again.
    c.bench_function(
        "registry: borrowed lookup among 32 models after a park (release + refresh)",
        |b| {
            b.iter(|| {
                anemone_runtime::registry::on_thread_park();
                black_box(
                    m.with_model(black_box("model-17"), None, |m| m.version())
                        .unwrap(),
                )
            })
        },
    );
}

fn validation(c: &mut Criterion) {
    let spec = |n: &str| {
        TensorSpec::new(
            n,
            DataType::F32,
            vec![Dim::Named("batch".into()), Dim::Fixed(4)],
        )
    };
    let meta = ModelMetadata::new(
        ModelFormat::Onnx,
        vec![spec("a"), spec("b"), spec("c"), spec("d")],
        vec![spec("y")],
    );
    let t = Tensor::from_vec(vec![1, 4], vec![1f32; 4]).unwrap();
    let request: Vec<(String, Tensor)> = ["d", "c", "b", "a"]
        .iter()
        .map(|n| (n.to_string(), t.clone()))
        .collect();
    c.bench_function("validation: 4-input request", |b| {
        b.iter_batched(
            || request.clone(),
            |r| black_box(order_inputs(&meta, r).unwrap()),
            BatchSize::SmallInput,
        )
    });
}

fn metrics(c: &mut Criterion) {
    let ewma = Ewma::default();
    c.bench_function("metrics: EWMA update", |b| {
        b.iter(|| ewma.update(black_box(Duration::from_micros(250))))
    });
    let m = ModelMetrics::default();
    let t = Timings {
        total: Duration::from_micros(250),
        compute_infer: Duration::from_micros(200),
        ..Default::default()
    };
    c.bench_function(
        "metrics: record one success (counters, EWMA, histogram, stages)",
        |b| b.iter(|| m.record_success(black_box(&t))),
    );
    let summarized = ModelMetrics::with_summaries(Some(
        anemone_runtime::metrics::summary::TRITON_QUANTILES.into(),
    ));
    c.bench_function(
        "metrics: record one success with Triton's latency summaries on",
        |b| b.iter(|| summarized.record_success(black_box(&t))),
    );
    c.bench_function(
        "metrics: record one execution (counts, batch-size stats)",
        |b| b.iter(|| m.record_unbatched_execution(black_box(&t))),
    );
    c.bench_function("metrics: record one failure", |b| {
        b.iter(|| m.record_failure(black_box(ErrorKind::InvalidInput), Duration::from_micros(3)))
    });
}

fn overhead(c: &mut Criterion) {
    let path = fixture("identity");
    let x = Tensor::from_vec(vec![1, 16], vec![1f32; 16]).unwrap();

    let plan = tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let tx: TValue = tract_ndarray::Array2::<f32>::ones((1, 16))
        .into_tensor()
        .into_tvalue();
    c.bench_function("identity model: tract directly", |b| {
        b.iter(|| black_box(plan.run(tvec!(tx.clone())).unwrap()))
    });

    let m = Manager::builder()
        .backend(TractCpu)
        .threads(1)
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("id", &path)).unwrap();
    c.bench_function("identity model: Manager::infer_blocking", |b| {
        b.iter(|| {
            black_box(
                m.infer_blocking(InferRequest::new("id").input("x", x.clone()))
                    .unwrap(),
            )
        })
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    c.bench_function("identity model: Manager::infer (async)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                m.infer(InferRequest::new("id").input("x", x.clone()))
                    .await
                    .unwrap(),
            )
        })
    });
}

/// The response cache: the key of a 1 MiB input (the hash cost per MiB), and
/// a hit (lookup and copy of a 4 KiB answer) against the same key's miss.
fn response_cache(c: &mut Criterion) {
    use anemone_runtime::cache::ResponseCache;
    let cache = ResponseCache::new(64 << 20);
    let input = Tensor::from_vec(vec![1, 1 << 18], vec![0.5f32; 1 << 18]).unwrap();
    let inputs = [input];
    c.bench_function("cache: key of a 1 MiB input", |b| {
        b.iter(|| cache.key("m", 1, &[1], std::hint::black_box(&inputs), None))
    });
    let small = [Tensor::from_vec(vec![1, 16], vec![1f32; 16]).unwrap()];
    let key = cache.key("m", 1, &[1], &small, None);
    let answer = vec![(
        "y".to_string(),
        Tensor::from_vec(vec![1, 1024], vec![2f32; 1024]).unwrap(),
    )];
    cache.insert(key, &answer);
    c.bench_function("cache: hit (64-byte input, 4 KiB answer)", |b| {
        b.iter(|| {
            let k = cache.key("m", 1, &[1], std::hint::black_box(&small), None);
            cache.get(&k).unwrap()
        })
    });
    let other = [Tensor::from_vec(vec![1, 16], vec![3f32; 16]).unwrap()];
    c.bench_function("cache: miss (64-byte input)", |b| {
        b.iter(|| {
            let k = cache.key("m", 1, &[1], std::hint::black_box(&other), None);
            cache.get(&k).is_none()
        })
    });
}

criterion_group!(
    benches,
    admission,
    lookup,
    validation,
    metrics,
    overhead,
    response_cache
);
criterion_main!(benches);
