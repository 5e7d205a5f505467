//! Tests of `cuda.rs` that need no GPU.

use super::*;

#[test]
fn probe_never_panics_and_explains_itself() {
    match TractCuda.probe() {
        Probe::Available { detail } => assert!(detail.contains("sm_"), "{detail}"),
        Probe::Unavailable { reason } => {
            assert!(!reason.contains("panicked"), "{reason}");
            assert!(reason.len() > 30, "too terse: {reason}");
        }
    }
    // Cached: the same answer again.
    assert_eq!(TractCuda.probe(), TractCuda.probe());
}

#[test]
fn a_bad_precision_is_refused_with_the_values_on_any_machine() {
    let options = LoadOptions {
        settings: vec![(PRECISION_KEY.into(), "fp64".into())],
        ..LoadOptions::default()
    };
    let source = ModelSource::from_path("/nonexistent/model.onnx");
    let Err(e) = TractCuda.load(&source, &options) else {
        panic!("fp64 was accepted");
    };
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("fp32, tf32, fp16"), "{e}");
}

#[test]
fn sticky_cuda_errors_mean_the_device_is_lost() {
    let e = classify(Error::Backend {
        backend: "tract-cuda".into(),
        message: "inference failed: DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, \"an illegal memory access was encountered\")".into(),
        retryable: false,
        source: None,
    });
    assert!(matches!(e, Error::DeviceLost { .. }), "{e:?}");
    let e = classify(Error::Backend {
        backend: "tract-cuda".into(),
        message: "inference panicked in tract-cuda: DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        retryable: false,
        source: None,
    });
    assert!(
        matches!(
            e,
            Error::Backend {
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
    let e = classify(Error::Backend {
        backend: "tract-cuda".into(),
        message: "inference failed: shape mismatch".into(),
        retryable: false,
        source: None,
    });
    assert!(
        matches!(
            e,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
}
