//! ONNX Runtime's thread spinning (`onnxruntime.spinning`): on for a
//! direct model, off behind a dynamic batcher, and a bad value refused
//! before any backend takes the model.

use crate::support::{assert_close, Case};
use anemone_backends::{OnnxRuntime, TractCpu};
use anemone_core::Backend;
use anemone_runtime::{Batching, InferRequest, Manager, ModelSpec};
use std::sync::Arc;

/// ONNX Runtime's threads spin between calls for a direct model (its
/// default) and sleep behind a dynamic batcher, where they would take the
/// cores that decode the next batch; `onnxruntime.spinning` overrides
/// either way, and a bad value is refused by name.
#[test]
fn onnxruntime_threads_stop_spinning_behind_a_batcher_unless_told() {
    super::require_library();
    let case = Case::load("dynamic_batch");
    let m = Manager::builder()
        .backends([Arc::new(OnnxRuntime) as Arc<dyn Backend>])
        .build()
        .unwrap();
    let spinning = |name: &str, batched: bool, setting: Option<&str>| {
        let mut spec = ModelSpec::new(name, case.model_path()).max_batch_size(8);
        if batched {
            spec = spec.batching(Batching::default());
        }
        if let Some(value) = setting {
            spec.settings
                .push(("onnxruntime.spinning".into(), value.into()));
        }
        m.load_model_blocking(spec).map(|model| {
            model
                .metadata()
                .properties
                .iter()
                .find(|(k, _)| k == "anemone.onnxruntime.spinning")
                .map(|(_, v)| v.clone())
        })
    };
    assert_eq!(
        spinning("direct", false, None).unwrap().as_deref(),
        Some("on")
    );
    // Batches of one row come one after another, like direct calls.
    let one_row = m
        .load_model_blocking(
            ModelSpec::new("one_row", case.model_path())
                .max_batch_size(1)
                .batching(Batching::default()),
        )
        .unwrap();
    assert!(one_row
        .metadata()
        .properties
        .contains(&("anemone.onnxruntime.spinning".into(), "on".into())));
    assert_eq!(
        spinning("batched", true, None).unwrap().as_deref(),
        Some("off")
    );
    assert_eq!(
        spinning("told_on", true, Some("on")).unwrap().as_deref(),
        Some("on")
    );
    assert_eq!(
        spinning("told_off", false, Some("off")).unwrap().as_deref(),
        Some("off")
    );
    let e = spinning("bad", true, Some("fast")).unwrap_err();
    assert!(
        e.to_string()
            .contains("model 'bad': onnxruntime.spinning is \"fast\"; set on or off"),
        "{}",
        e.chain_string()
    );
    // Refused before any backend is tried: with tract-cpu beside ONNX
    // Runtime, the bad value does not move the model to tract-cpu.
    let both = Manager::builder()
        .backends([
            Arc::new(OnnxRuntime) as Arc<dyn Backend>,
            Arc::new(TractCpu) as Arc<dyn Backend>,
        ])
        .build()
        .unwrap();
    let mut spec = ModelSpec::new("typo", case.model_path());
    spec.settings
        .push(("onnxruntime.spinning".into(), "fast".into()));
    let e = both.load_model_blocking(spec).unwrap_err();
    assert!(
        matches!(&e, anemone_core::Error::Config(m) if m.contains("model 'typo': onnxruntime.spinning")),
        "{e}"
    );
    // The batched model still answers (the setting only changes waiting).
    let x = case.tensor(&case.runs[0].inputs[0].file);
    let want = case.tensor(&case.runs[0].outputs[0].file);
    let got = m
        .infer_blocking(InferRequest::new("batched").input("x", x))
        .unwrap();
    assert_close(
        "batched",
        got.output("y").unwrap(),
        &want,
        case.rtol,
        case.atol,
    );
}
