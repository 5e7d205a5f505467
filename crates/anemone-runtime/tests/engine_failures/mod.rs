//! Engines that panic or block: one request fails, nothing else; admission
//! fails fast and gives its permits back on every path.

use super::*;
use crate::support::double::{Double, DoubleLoad};

// ---- A test double for what real engines rarely do on demand: panic, block. ----

/// A backend whose model panics when the first input's first value is negative
/// and sleeps when it is above 1000 (value - 1000 milliseconds).
pub(crate) struct Tricky;

struct TrickyModel(ModelMetadata);

impl DoubleLoad for Tricky {
    const NAME: &'static str = "tricky";
    fn load(&self, _: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        Ok(Box::new(TrickyModel(ModelMetadata::new(
            ModelFormat::Onnx,
            vec![TensorSpec::new("x", DataType::F32, vec![Dim::Fixed(1)])],
            vec![TensorSpec::new("y", DataType::F32, vec![Dim::Fixed(1)])],
        ))))
    }
}

impl LoadedModel for TrickyModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn backend(&self) -> &'static str {
        "tricky"
    }
    fn memory_footprint(&self) -> u64 {
        0
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        let v = inputs[0].to_vec::<f32>().unwrap()[0];
        if v < 0.0 {
            panic!("boom: negative input");
        }
        if v > 1000.0 {
            std::thread::sleep(Duration::from_millis((v - 1000.0) as u64));
        }
        Ok(inputs.to_vec())
    }
}

pub(crate) fn x(v: f32) -> Tensor {
    Tensor::from_vec(vec![1], vec![v]).unwrap()
}

#[test]
fn a_panicking_backend_fails_one_request_only() {
    let m = Manager::builder()
        .backend(Double(Tricky))
        .backend(TractCpu)
        .workers(2)
        .build()
        .unwrap();
    let any_file = Case::load("identity").model_path();
    m.load_model_blocking(ModelSpec::new("tricky", &any_file).backends(["tricky"]))
        .unwrap();
    m.load_model_blocking(ModelSpec::new("real", &any_file).backends(["tract-cpu"]))
        .unwrap();
    for _ in 0..3 {
        let err = m
            .infer_blocking(InferRequest::new("tricky").input("x", x(-1.0)))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend);
        assert!(err.to_string().contains("panicked: boom"), "{err}");
        // The same model serves its next request, and the other model too.
        assert!(m
            .infer_blocking(InferRequest::new("tricky").input("x", x(1.0)))
            .is_ok());
        let ones = Tensor::from_vec(vec![1, 16], vec![1f32; 16]).unwrap();
        assert!(m
            .infer_blocking(InferRequest::new("real").input("x", ones))
            .is_ok());
    }
    let s = m.metrics();
    assert_eq!(
        s.model("tricky")
            .unwrap()
            .metrics
            .failures_of(ErrorKind::Backend),
        3
    );
    assert_eq!(s.in_flight, 0, "permits are released after a panic");
}

#[test]
fn admission_fails_fast_and_releases_permits_on_every_path() {
    let any_file = Case::load("identity").model_path();
    let m = Manager::builder()
        .backend(Double(Tricky))
        .workers(4)
        .max_concurrency(Some(3))
        .build()
        .unwrap();
    m.load_model_blocking(ModelSpec::new("slow", &any_file).max_concurrency(1))
        .unwrap();
    m.load_model_blocking(ModelSpec::new("other", &any_file).version(2))
        .unwrap();
    let rt = crate::support::runtime();
    rt.block_on(async {
        // One slow request holds the model's only permit.
        let slow = {
            let m = m.clone();
            tokio::spawn(async move {
                m.infer(InferRequest::new("slow").input("x", x(1300.0)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = m
            .infer(InferRequest::new("slow").input("x", x(1.0)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Overloaded);
        assert!(
            err.to_string()
                .contains("concurrency limit of model 'slow'"),
            "{err}"
        );
        assert!(err.retryable());

        // Two more fill the global limit of 3; the next is refused by the global limit.
        let others: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move {
                    m.infer(InferRequest::new("other").input("x", x(1300.0)))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = m
            .infer(InferRequest::new("other").input("x", x(1.0)))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("global concurrency limit"),
            "{err}"
        );

        // A timeout gives up waiting; the permit is released when the work ends.
        for t in others {
            t.await.unwrap().unwrap();
        }
        let err = m
            .infer(
                InferRequest::new("other")
                    .input("x", x(1200.0))
                    .timeout(Duration::from_millis(50)),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);

        // A cancelled request (dropped future) leaks nothing either.
        let cancelled = m.infer(InferRequest::new("other").input("x", x(1100.0)));
        let _ = tokio::time::timeout(Duration::from_millis(10), cancelled).await;
        slow.await.unwrap().unwrap();
    });
    // Wait for the abandoned runs to finish, then every permit must be back.
    for _ in 0..100 {
        if m.metrics().in_flight == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = m.metrics();
    assert_eq!(s.in_flight, 0);
    assert!(s.models.iter().all(|e| e.in_flight == 0));
    assert_eq!(
        s.model("other")
            .unwrap()
            .metrics
            .failures_of(ErrorKind::Timeout),
        1
    );
}
