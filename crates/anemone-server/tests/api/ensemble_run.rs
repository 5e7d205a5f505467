//! How ensembles run (issue 12), through the library: independent steps run
//! concurrently; steps of concurrent requests share dynamic batches of their
//! model; a failed step names the step and model, with the client's fault
//! (invalid input) only when the refused input came from the request.

use anemone_core::{
    Backend, DataType, Dim, ErrorKind, LoadOptions, LoadedModel, ModelFormat, ModelMetadata,
    ModelSource, Probe, Support, Tensor, TensorSpec,
};
use anemone_runtime::ensemble::{EnsembleSpec, EnsembleStep};
use anemone_runtime::{Batching, InferRequest, Manager, ModelSpec};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn fixture(case: &str) -> std::path::PathBuf {
    crate::support::workspace().join(format!("fixtures/generated/{case}/model.onnx"))
}

/// A backend whose model (`x` FP32 [-1] -> `y`, the same) returns only once
/// two calls are running at the same time, and fails if it waited 20 s alone.
struct Gate(Arc<Barrier>);

struct GateModel(ModelMetadata, Arc<Barrier>);

impl Backend for Gate {
    fn name(&self) -> &'static str {
        "gate"
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
        let t = |n: &str| TensorSpec::new(n, DataType::F32, vec![Dim::Any]);
        Ok(Box::new(GateModel(
            ModelMetadata::new(ModelFormat::Onnx, vec![t("x")], vec![t("y")]),
            Arc::clone(&self.0),
        )))
    }
}

impl LoadedModel for GateModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn backend(&self) -> &'static str {
        "gate"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        // A warm-up runs alone: let it through.
        if inputs[0].to_vec::<f32>().unwrap().first() != Some(&7.0) {
            return Ok(inputs.to_vec());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let barrier = Arc::clone(&self.1);
        std::thread::spawn(move || {
            barrier.wait();
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(()) => Ok(inputs.to_vec()),
            Err(_) => Err(anemone_core::Error::Backend {
                backend: "gate".into(),
                message: "ran alone for 20 s: the other step never ran beside it".into(),
                retryable: false,
                source: None,
            }),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_run_concurrently() {
    let manager = Manager::builder()
        .backend(Gate(Arc::new(Barrier::new(2))))
        .workers(4)
        .build()
        .unwrap();
    manager
        .load_model(ModelSpec::new("gate", fixture("identity")))
        .await
        .unwrap();
    let spec = EnsembleSpec::new("fork")
        .input("x", DataType::F32, &[-1])
        .output("a", DataType::F32, &[-1])
        .output("b", DataType::F32, &[-1])
        .step(
            EnsembleStep::new("gate")
                .map_input("x", "x")
                .map_output("y", "a"),
        )
        .step(
            EnsembleStep::new("gate")
                .map_input("x", "x")
                .map_output("y", "b"),
        );
    manager.load_ensemble(spec).unwrap();
    let x = Tensor::from_vec(vec![3], vec![7.0f32; 3]).unwrap();
    let response = manager
        .infer(InferRequest::new("fork").input("x", x))
        .await
        .unwrap();
    assert_eq!(
        response.output("a").unwrap().to_vec::<f32>().unwrap(),
        vec![7.0; 3]
    );
    assert_eq!(
        response.output("b").unwrap().to_vec::<f32>().unwrap(),
        vec![7.0; 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steps_of_concurrent_requests_share_dynamic_batches() {
    let manager = Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let mut add = ModelSpec::new(
        "add",
        crate::support::workspace().join("examples/models/add/1/model.onnx"),
    );
    add.max_batch_size = Some(16);
    add.batching = Some(Batching {
        max_queue_delay: Duration::from_millis(300),
        ..Default::default()
    });
    manager.load_model(add).await.unwrap();
    let spec = EnsembleSpec::new("twice")
        .max_batch_size(16)
        .input("x", DataType::F32, &[-1, 4])
        .input("y", DataType::F32, &[-1, 4])
        .output("out", DataType::F32, &[-1, 4])
        .step(
            EnsembleStep::new("add")
                .map_input("x", "x")
                .map_input("y", "y")
                .map_output("sum", "s"),
        )
        .step(
            EnsembleStep::new("add")
                .map_input("x", "s")
                .map_input("y", "y")
                .map_output("sum", "out"),
        );
    manager.load_ensemble(spec).unwrap();
    let requests = (0..8).map(|i| {
        let manager = manager.clone();
        async move {
            let x = Tensor::from_vec(vec![1, 4], vec![i as f32; 4]).unwrap();
            let y = Tensor::from_vec(vec![1, 4], vec![1.0f32; 4]).unwrap();
            let r = manager
                .infer(InferRequest::new("twice").input("x", x).input("y", y))
                .await
                .unwrap();
            // Each client gets its own row back: x + 2y.
            assert_eq!(
                r.output("out").unwrap().to_vec::<f32>().unwrap(),
                vec![i as f32 + 2.0; 4]
            );
        }
    });
    futures_util::future::join_all(requests).await;
    let add = manager.metrics().model("add").unwrap().metrics.clone();
    assert_eq!(add.inference_count, 16, "8 requests, two steps each");
    assert!(
        add.execution_count < 16,
        "the steps never shared a batch: {} executions for 16 step requests",
        add.execution_count
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_is_named_and_blamed_on_whoever_gave_the_input() {
    // same_symbol: a, b FP32 [n, 3] -> sum [n, 3]; both inputs must share n.
    let manager = Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    manager
        .load_model(ModelSpec::new("same", fixture("same_symbol")))
        .await
        .unwrap();
    let spec = EnsembleSpec::new("join")
        .input("x", DataType::F32, &[-1, -1])
        .input("y", DataType::F32, &[-1, -1])
        .output("out", DataType::F32, &[-1, 3])
        .step(
            EnsembleStep::new("same")
                .map_input("a", "x")
                .map_input("b", "x")
                .map_output("sum", "p"),
        )
        .step(
            EnsembleStep::new("same")
                .map_input("a", "y")
                .map_input("b", "y")
                .map_output("sum", "q"),
        )
        .step(
            EnsembleStep::new("same")
                .map_input("a", "p")
                .map_input("b", "q")
                .map_output("sum", "out"),
        );
    manager.load_ensemble(spec).unwrap();
    let t = |rows: usize, cols: usize| {
        Tensor::from_vec(vec![rows, cols], vec![1.0f32; rows * cols]).unwrap()
    };
    let run =
        |x: Tensor, y: Tensor| manager.infer(InferRequest::new("join").input("x", x).input("y", y));

    let ok = run(t(2, 3), t(2, 3)).await.unwrap();
    assert_eq!(
        ok.output("out").unwrap().to_vec::<f32>().unwrap(),
        vec![4.0; 6]
    );

    // The same, on a thread that may block: the steps run one after another.
    let blocking = manager.clone();
    let answer = tokio::task::spawn_blocking(move || {
        blocking.infer_blocking(
            InferRequest::new("join")
                .input("x", t(2, 3))
                .input("y", t(2, 3)),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        answer.output("out").unwrap().to_vec::<f32>().unwrap(),
        vec![4.0; 6]
    );

    // The request's own x has 4 columns: step 0 refuses it, the client's fault.
    let e = run(t(2, 4), t(2, 3)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        e.to_string()
            .starts_with("ensemble 'join' step 0 (model 'same') failed: "),
        "{e}"
    );

    // x and y are each fine, but the steps' outputs disagree in n: step 2
    // refuses tensors that other steps made, the ensemble's fault, not the client's.
    let e = run(t(1, 3), t(2, 3)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert!(
        e.to_string()
            .starts_with("ensemble 'join' step 2 (model 'same') failed: "),
        "{e}"
    );

    // The ensemble counts its failures by kind; the composing model its own.
    let metrics = manager.metrics();
    let join = &metrics.model("join").unwrap().metrics;
    assert_eq!(join.success, 2);
    assert_eq!(join.failures_of(ErrorKind::InvalidInput), 1);
    assert_eq!(join.failures_of(ErrorKind::Internal), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ensemble_can_be_a_step_of_another() {
    let manager = Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let add = crate::support::workspace().join("examples/models/add/1/model.onnx");
    manager
        .load_model(ModelSpec::new("add", add))
        .await
        .unwrap();
    // inner: d = x - y; outer: out = inner(x, y) + y = x.
    let inner = EnsembleSpec::new("inner")
        .input("x", DataType::F32, &[-1, 4])
        .input("y", DataType::F32, &[-1, 4])
        .output("d", DataType::F32, &[-1, 4])
        .step(
            EnsembleStep::new("add")
                .map_input("x", "x")
                .map_input("y", "y")
                .map_output("diff", "d"),
        );
    manager.load_ensemble(inner).unwrap();
    let outer = EnsembleSpec::new("outer")
        .input("x", DataType::F32, &[-1, 4])
        .input("y", DataType::F32, &[-1, 4])
        .output("out", DataType::F32, &[-1, 4])
        .step(
            EnsembleStep::new("inner")
                .map_input("x", "x")
                .map_input("y", "y")
                .map_output("d", "d"),
        )
        .step(
            EnsembleStep::new("add")
                .map_input("x", "d")
                .map_input("y", "y")
                .map_output("sum", "out"),
        );
    manager.load_ensemble(outer).unwrap();
    let x = Tensor::from_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let y = Tensor::from_vec(vec![1, 4], vec![5.0f32, 6.0, 7.0, 8.0]).unwrap();
    let r = manager
        .infer(InferRequest::new("outer").input("x", x).input("y", y))
        .await
        .unwrap();
    assert_eq!(
        r.output("out").unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    // Without its composing model, the inner ensemble and so the outer are unavailable.
    manager.unload_model("add", None).unwrap();
    match manager.ensemble_state("outer").unwrap() {
        anemone_runtime::ModelState::Unavailable { reason } => assert!(
            reason.starts_with("step 0 (model 'inner'): composing model 'add'"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
}
