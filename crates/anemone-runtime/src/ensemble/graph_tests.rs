//! Tests of `graph.rs`.

use super::*;
use crate::ensemble::spec::dims;
use anemone_core::DataType;

/// `a`: x F32 [-1, 4] -> y F32 [-1, 4]; `b`: u8 image [-1, 4] -> y F32 [-1, 4].
fn models(name: &str, _: Option<u64>) -> Option<ModelView> {
    let t = |n: &str, d: DataType| TensorSpec::new(n, d, dims(&[-1, 4]));
    match name {
        "a" => Some(ModelView {
            inputs: vec![t("x", DataType::F32)],
            outputs: vec![t("y", DataType::F32)],
            optional: vec![],
            max_batch_size: Some(8),
        }),
        "b" => Some(ModelView {
            inputs: vec![t("image", DataType::U8)],
            outputs: vec![t("y", DataType::F32)],
            optional: vec![],
            max_batch_size: Some(8),
        }),
        _ => None,
    }
}

fn chain() -> EnsembleSpec {
    EnsembleSpec::new("e")
        .input("in", DataType::F32, &[-1, 4])
        .output("out", DataType::F32, &[-1, 4])
        .step(
            EnsembleStep::new("a")
                .map_input("x", "in")
                .map_output("y", "mid"),
        )
        .step(
            EnsembleStep::new("a")
                .map_input("x", "mid")
                .map_output("y", "out"),
        )
}

fn refusal(spec: &EnsembleSpec) -> String {
    plan(spec, models).unwrap_err().join(" | ")
}

/// Triton's rule: an ensemble input no step reads, and a step output
/// that is neither read nor an ensemble output, are refused.
#[test]
fn every_tensor_must_be_read() {
    let unread_input = chain().input("spare", DataType::F32, &[-1, 4]);
    let e = refusal(&unread_input);
    assert!(
        e.contains("ensemble input 'spare' is not used by any step"),
        "{e}"
    );
    let unread_output = chain().step(
        EnsembleStep::new("a")
            .map_input("x", "in")
            .map_output("y", "dangling"),
    );
    let e = refusal(&unread_output);
    assert!(
        e.contains(
            "step 2 (model 'a'): output 'y' is mapped to tensor 'dangling', which no step reads"
        ),
        "{e}"
    );
    assert!(plan(&chain(), models).is_ok());
}

#[test]
fn a_chain_runs_producers_first() {
    let p = plan(&chain(), models).unwrap();
    assert_eq!(p.order, vec![0, 1]);
    assert_eq!(p.waits_for, vec![vec![], vec![0]]);
    assert_eq!(p.readers["mid"], 1);
}

#[test]
fn a_cycle_is_refused_naming_its_steps() {
    let spec = EnsembleSpec::new("e")
        .input("in", DataType::F32, &[-1, 4])
        .output("out", DataType::F32, &[-1, 4])
        .step(
            EnsembleStep::new("a")
                .map_input("x", "t1")
                .map_output("y", "t0"),
        )
        .step(
            EnsembleStep::new("a")
                .map_input("x", "t0")
                .map_output("y", "t1"),
        )
        .step(
            EnsembleStep::new("a")
                .map_input("x", "in")
                .map_output("y", "out"),
        );
    let e = refusal(&spec);
    assert!(
        e.contains("the steps form a cycle: step 0 (model 'a'), step 1 (model 'a')"),
        "{e}"
    );
    assert!(!e.contains("step 2"), "{e}");
}

#[test]
fn a_missing_model_is_refused() {
    let mut spec = chain();
    spec.steps[1].model = "ghost".into();
    let e = refusal(&spec);
    assert!(
        e.contains("step 1 (model 'ghost'): model 'ghost' is not loaded"),
        "{e}"
    );
    // One cause, one message: what the missing model would produce is not also reported.
    assert!(!e.contains("'out' is not produced"), "{e}");
    spec.steps[0].model = "ghost".into();
    let e = refusal(&spec);
    assert!(!e.contains("neither an ensemble input"), "{e}");
}

#[test]
fn a_dtype_mismatch_is_refused_naming_step_and_tensor() {
    let mut spec = chain();
    spec.steps[1] = EnsembleStep::new("b")
        .map_input("image", "mid")
        .map_output("y", "out");
    let e = refusal(&spec);
    assert!(
        e.contains("step 1 (model 'b'): tensor 'mid' (FP32 [-1, 4]) cannot feed input 'image' (UINT8 [-1, 4]): the data types differ"),
        "{e}"
    );
}

#[test]
fn a_shape_mismatch_is_refused() {
    let mut spec = chain();
    spec.inputs[0] = TensorSpec::new("in", DataType::F32, dims(&[-1, 5]));
    let e = refusal(&spec);
    assert!(e.contains("step 0 (model 'a'): tensor 'in' (FP32 [-1, 5]) cannot feed input 'x' (FP32 [-1, 4]): dimension 1 differs (5 against 4)"), "{e}");
    // Neither the full shape ([5] against [-1, 4]) nor the dims without
    // the batch dimension ([5] against [4]) agree.
    spec.inputs[0] = TensorSpec::new("in", DataType::F32, dims(&[5]));
    assert!(refusal(&spec).contains("the ranks differ (1 against 2)"));
}

/// Triton's conflicting_scheduler_ensemble: an ensemble that does not
/// batch, of dims [4], over models of dims [4] that batch (full shape
/// [-1, 4]): the steps are sent batches of one, and the output loses
/// the batch dimension again.
#[test]
fn an_ensemble_without_batching_may_use_models_that_batch() {
    let mut spec = chain();
    spec.inputs[0] = TensorSpec::new("in", DataType::F32, dims(&[4]));
    spec.outputs[0] = TensorSpec::new("out", DataType::F32, dims(&[4]));
    let p = plan(&spec, models).unwrap();
    assert_eq!(p.step_inputs[0], [Adapt::AddBatch(dims(&[4]))]);
    // Step 1 reads step 0's output: both batch.
    assert_eq!(p.step_inputs[1], [Adapt::Keep]);
    assert_eq!(p.outputs["out"], Adapt::DropBatch(dims(&[4])));
    // The full shapes agreeing (the ensemble's dims hold the batch), as before.
    let p = plan(&chain(), models).unwrap();
    assert_eq!(p.step_inputs[0], [Adapt::AddBatch(dims(&[4]))]);
}

#[test]
fn an_unproduced_output_is_refused() {
    let spec = chain().output("extra", DataType::F32, &[-1, 4]);
    let e = refusal(&spec);
    assert!(
        e.contains("ensemble output 'extra' is not produced by any step"),
        "{e}"
    );
}

#[test]
fn two_producers_are_refused() {
    let mut spec = chain();
    spec.steps[1].output_map[0].1 = "mid".into();
    let e = refusal(&spec);
    assert!(
        e.contains("tensor 'mid' has two producers: step 0 (model 'a') output 'y' and step 1 (model 'a') output 'y'"),
        "{e}"
    );
    let mut spec = chain();
    spec.steps[0].output_map[0].1 = "in".into();
    assert!(
        refusal(&spec).contains("tensor 'in' has two producers: the ensemble's input and step 0")
    );
}

#[test]
fn unmapped_and_unknown_tensors_are_refused() {
    let mut spec = chain();
    spec.steps[0].input_map.clear();
    let e = refusal(&spec);
    assert!(
        e.contains("step 0 (model 'a'): the model's input 'x' is not mapped"),
        "{e}"
    );
    let mut spec = chain();
    spec.steps[0].input_map[0].1 = "nowhere".into();
    let e = refusal(&spec);
    assert!(
        e.contains("input 'x' is mapped from tensor 'nowhere', which is neither"),
        "{e}"
    );
    let mut spec = chain();
    spec.steps[0].output_map[0].0 = "z".into();
    assert!(refusal(&spec).contains(
        "output_map names output 'z', which the model does not have; its outputs are 'y'"
    ));
}

#[test]
fn the_batch_bound_must_fit_every_model() {
    let spec = chain().max_batch_size(16);
    let e = refusal(&spec);
    assert!(
        e.contains("the ensemble's max_batch_size is 16 but the model's is 8"),
        "{e}"
    );
    assert!(plan(&chain().max_batch_size(8), models).is_ok());
}
