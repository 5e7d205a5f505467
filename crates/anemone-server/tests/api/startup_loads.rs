//! Triton's `--model-load-thread-count`: at most that many models load at
//! once, at start-up and through the load API; and Triton's
//! `--model-load-retry-count`: a failed load is tried again. A test backend
//! counts the loads in progress and fails the first ones it is asked to.

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
/// largest count seen, `tries` every load asked for. The first `failing`
/// loads fail.
#[derive(Default)]
struct Counted {
    now: AtomicUsize,
    most: AtomicUsize,
    tries: AtomicUsize,
    failing: usize,
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
        if self.0.tries.fetch_add(1, Ordering::SeqCst) < self.0.failing {
            return Err(anemone_core::Error::Backend {
                backend: "slow-load".into(),
                message: "the device is busy (test double)".into(),
                retryable: false,
                source: None,
            });
        }
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

/// A repository of `n` models (m0, m1, ...), each the identity fixture.
fn repository(tag: &str, n: usize) -> TempDir {
    let repo = TempDir::new(&format!("model-loads-{tag}"));
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/generated/identity/model.onnx");
    for i in 0..n {
        let dir = repo.join(format!("m{i}")).join("1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&file, dir.join("model.onnx"))
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh", file.display()));
    }
    repo
}

/// A server on `repo` whose only backend is [`Slow`] over `counted`.
async fn start(
    repo: &TempDir,
    counted: &Arc<Counted>,
    options: ServerOptions,
) -> crate::support::Running {
    let manager = anemone_runtime::Manager::builder()
        .backend(Slow(Arc::clone(counted)))
        .build()
        .unwrap();
    let options = ServerOptions {
        http_port: 0,
        grpc_port: 0,
        repository: repo.to_path_buf(),
        ..options
    };
    crate::support::run_server(options, manager).await
}

/// The most loads in progress at once while a server loads 6 models with
/// `startup_loads` at once.
async fn most_at_once(tag: &str, startup_loads: usize) -> usize {
    let repo = repository(tag, 6);
    let counted = Arc::new(Counted::default());
    let options = ServerOptions {
        model_loads: startup_loads,
        ..Default::default()
    };
    let running = start(&repo, &counted, options).await;
    running.ready().await;
    running.stop().await;
    counted.most.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_loads_at_most_the_model_load_thread_count_at_once() {
    assert_eq!(most_at_once("two", 2).await, 2);
    // Without the bound (6 or more), the six load together.
    assert!(most_at_once("six", 6).await > 2);
}

/// Six load requests sent together over HTTP (explicit mode): the most
/// loads in progress at once, and the statuses answered.
async fn api_loads_at_once(tag: &str, model_loads: usize) -> (usize, Vec<u16>) {
    let repo = repository(tag, 6);
    let counted = Arc::new(Counted::default());
    let options = ServerOptions {
        control: anemone_server::ControlMode::Explicit,
        model_loads,
        ..Default::default()
    };
    let running = start(&repo, &counted, options).await;
    running.started().await;
    let router = anemone_server::http::router(Arc::clone(&running.state), 1 << 20);
    let loads = (0..6).map(|i| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let request = axum::http::Request::builder()
                .method("POST")
                .uri(format!("/v2/repository/models/m{i}/load"))
                .body(axum::body::Body::empty())
                .unwrap();
            router.oneshot(request).await.unwrap().status().as_u16()
        }
    });
    let statuses = futures_util::future::join_all(loads).await;
    running.stop().await;
    (counted.most.load(Ordering::SeqCst), statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_requests_sent_together_take_turns_as_the_model_load_thread_count_allows() {
    let (most, statuses) = api_loads_at_once("api-two", 2).await;
    assert_eq!(statuses, vec![200; 6]);
    assert_eq!(most, 2, "loads in progress at once with the bound 2");
    let (most, statuses) = api_loads_at_once("api-six", 6).await;
    assert_eq!(statuses, vec![200; 6]);
    assert!(most > 2, "without the bound the six load together ({most})");
}

/// One model whose first `failing` loads fail, served with `retries`:
/// its index row (state, reason) after start-up, and the loads tried.
async fn flaky(tag: &str, failing: usize, retries: u32) -> (String, String, usize) {
    let repo = repository(tag, 1);
    let counted = Arc::new(Counted {
        failing,
        ..Default::default()
    });
    let options = ServerOptions {
        load_retries: retries,
        ..Default::default()
    };
    let running = start(&repo, &counted, options).await;
    running.started().await;
    let row = running
        .state
        .repository
        .index()
        .into_iter()
        .find(|r| r.name == "m0")
        .expect("m0 is in the index");
    running.stop().await;
    (row.state, row.reason, counted.tries.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_is_tried_again_as_the_model_load_retry_count_allows() {
    // Two failures, two retries: the third try loads it.
    let (state, reason, tries) = flaky("retry-two", 2, 2).await;
    assert_eq!((state.as_str(), tries), ("READY", 3), "{reason}");
    // Without retries (Triton's default), the first failure is final.
    let (state, reason, tries) = flaky("retry-none", 2, 0).await;
    assert_eq!((state.as_str(), tries), ("UNAVAILABLE", 1));
    assert!(reason.contains("the device is busy"), "{reason}");
    // Fewer retries than failures: unavailable, saying how often it was tried.
    let (state, reason, tries) = flaky("retry-short", 5, 1).await;
    assert_eq!((state.as_str(), tries), ("UNAVAILABLE", 2));
    assert!(reason.contains("(tried 2 times)"), "{reason}");
}
