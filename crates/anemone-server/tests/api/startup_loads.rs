//! Triton's `--model-load-thread-count`: at start-up, at most that many
//! models load at once. A test backend counts the loads in progress.

use crate::support::TempDir;
use anemone_core::{
    Backend, DataType, Dim, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource,
    Probe, Support, Tensor, TensorSpec,
};
use anemone_server::ServerOptions;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Loads take 150 ms each; `now` counts those in progress, `most` the
/// largest count seen.
#[derive(Default)]
struct Counted {
    now: AtomicUsize,
    most: AtomicUsize,
}

struct Slow(Arc<Counted>);

struct Loaded(ModelMetadata);

impl Backend for Slow {
    fn name(&self) -> &'static str {
        "slow-load"
    }
    fn probe(&self) -> Probe {
        Probe::Available {
            detail: "test double".into(),
        }
    }
    fn supports(&self, _: &ModelSource) -> Support {
        Support::Yes
    }
    fn load(&self, _: &ModelSource, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let now = self.0.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(150));
        self.0.now.fetch_sub(1, Ordering::SeqCst);
        let spec = |name| TensorSpec::new(name, DataType::F32, vec![Dim::Any, Dim::Fixed(16)]);
        Ok(Box::new(Loaded(ModelMetadata::new(
            ModelFormat::Onnx,
            vec![spec("x")],
            vec![spec("y")],
        ))))
    }
}

impl LoadedModel for Loaded {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn backend(&self) -> &'static str {
        "slow-load"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        Ok(inputs.to_vec())
    }
}

/// The most loads in progress at once while a server loads 6 models with
/// `startup_loads` at once.
async fn most_at_once(tag: &str, startup_loads: usize) -> usize {
    let repo = TempDir::new(&format!("startup-loads-{tag}"));
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/generated/identity/model.onnx");
    for i in 0..6 {
        let dir = repo.join(format!("m{i}")).join("1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&file, dir.join("model.onnx"))
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh", file.display()));
    }
    let counted = Arc::new(Counted::default());
    let manager = anemone_runtime::Manager::builder()
        .backend(Slow(Arc::clone(&counted)))
        .build()
        .unwrap();
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: repo.to_path_buf(),
        startup_loads,
        ..Default::default()
    };
    let running = crate::support::run_server(options, manager).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !running.state.ready() {
        assert!(std::time::Instant::now() < deadline, "not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = running.stop.send(());
    let _ = running.task.await;
    counted.most.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_loads_at_most_the_model_load_thread_count_at_once() {
    assert_eq!(most_at_once("two", 2).await, 2);
    // Without the bound (6 or more), the six load together.
    assert!(most_at_once("six", 6).await > 2);
}
