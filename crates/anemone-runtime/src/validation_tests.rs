//! Tests of `validation.rs`.
use super::*;
use anemone_core::{DataType, ModelFormat};

fn meta() -> ModelMetadata {
    let n = || Dim::Named("n".into());
    ModelMetadata::new(
        ModelFormat::Onnx,
        vec![
            TensorSpec::new("a", DataType::F32, vec![n(), Dim::Fixed(3)]),
            TensorSpec::new("b", DataType::F32, vec![n(), Dim::Any]),
            TensorSpec::new("k", DataType::I64, vec![]),
        ],
        vec![TensorSpec::new(
            "y",
            DataType::F32,
            vec![n(), Dim::Fixed(3)],
        )],
    )
}

fn f32s(shape: &[usize]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), vec![0f32; shape.iter().product()]).unwrap()
}

fn good() -> Vec<(String, Tensor)> {
    vec![
        ("k".into(), Tensor::scalar(3i64)),
        ("b".into(), f32s(&[2, 7])),
        ("a".into(), f32s(&[2, 3])),
    ]
}

/// Every required input a request lacks is named at once, as Triton
/// names them (an optional one is not, for a model that reads by name).
#[test]
fn every_missing_input_is_named() {
    let only_k: Vec<(String, Tensor)> = good().into_iter().filter(|(n, _)| n == "k").collect();
    let e = order_inputs(&meta(), only_k.clone()).unwrap_err();
    assert_eq!(
        e.clone().for_model("m").to_string(),
        "missing input 'a' (FP32 [n, 3]), and 'b' too: expected 3 inputs but got 1 inputs \
         for model 'm'. Got input(s) ['k'], but missing required input(s) ['a','b']. \
         Please provide all required input(s).",
    );
    let e = order_inputs_absent(&meta(), only_k, &["b".to_string()]).unwrap_err();
    assert!(
        matches!(&e, InputError::Missing { name, others, .. } if name == "a" && others.is_empty()),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains(": expected number of inputs between 2 and 3 but got 1 inputs. "),
        "{e}"
    );
    // Fewer inputs than needed are refused before any is checked, as
    // Triton counts them first: the wrong type of 'k' is not reached.
    let e = order_inputs(&meta(), vec![("k".into(), Tensor::scalar(3f32))]).unwrap_err();
    assert!(
        matches!(&e, InputError::Missing { name, .. } if name == "a"),
        "{e}"
    );
}

#[test]
fn orders_inputs_by_the_model() {
    let ordered = order_inputs(&meta(), good()).unwrap();
    assert_eq!(ordered[0].shape(), &[2, 3]);
    assert_eq!(ordered[1].shape(), &[2, 7]);
    assert!(ordered[2].shape().is_empty());
}

#[test]
fn an_optional_input_left_out_stands_as_an_empty_placeholder_for_a_model_that_reads_by_name() {
    let given: Vec<(String, Tensor)> = good().into_iter().filter(|(n, _)| n != "b").collect();
    let optional = ["b".to_string()];
    let (ordered, absent) = order_inputs_absent(&meta(), given.clone(), &optional).unwrap();
    assert_eq!(absent, [1]);
    assert_eq!(ordered[1].shape(), &[0]);
    assert_eq!(ordered[1].dtype(), anemone_core::DataType::F32);
    // The batch check passes over it (its first dimension is 0).
    let checked = check_batch_given(Some(4), &meta(), ordered, &absent).unwrap();
    assert_eq!(checked[0].shape(), &[2, 3]);
    // A required input left out is still missing; all given: nothing absent.
    let e = order_inputs_absent(&meta(), given, &[]).unwrap_err();
    assert!(
        matches!(e, InputError::Missing { ref name, .. } if name == "b"),
        "{e}"
    );
    assert!(order_inputs_absent(&meta(), good(), &optional)
        .unwrap()
        .1
        .is_empty());
}

#[test]
fn each_failure_has_its_own_error() {
    let m = meta();
    let mut unknown = good();
    unknown.push(("zzz".into(), f32s(&[1])));
    let e = order_inputs(&m, unknown).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown input 'zzz': the model's inputs are a, b, k"
    );

    let mut dup = good();
    dup.push(("a".into(), f32s(&[2, 3])));
    assert_eq!(
        order_inputs(&m, dup).unwrap_err(),
        InputError::Duplicate { name: "a".into() }
    );

    let missing: Vec<_> = good().into_iter().filter(|(n, _)| n != "b").collect();
    assert_eq!(
        order_inputs(&m, missing).unwrap_err().to_string(),
        "missing input 'b' (FP32 [n, -1]): expected 3 inputs but got 2 inputs. Got input(s) \
         ['k','a'], but missing required input(s) ['b']. Please provide all required input(s)."
    );

    let mut dtype = good();
    dtype[0].1 = Tensor::scalar(3i32);
    assert_eq!(
        order_inputs(&m, dtype).unwrap_err().to_string(),
        "input 'k' has type INT32, but the model expects INT64"
    );

    let mut rank = good();
    rank[2].1 = f32s(&[2, 3, 1]);
    assert!(matches!(
        order_inputs(&m, rank).unwrap_err(),
        InputError::Rank {
            expected: 2,
            got: 3,
            ..
        }
    ));

    let mut fixed = good();
    fixed[2].1 = f32s(&[2, 4]);
    assert_eq!(
        order_inputs(&m, fixed).unwrap_err().to_string(),
        "input 'a' dimension 1 is 4, but the model fixes it at 3 (shape [n, 3])"
    );

    let mut symbol = good();
    symbol[2].1 = f32s(&[5, 3]);
    assert_eq!(
        order_inputs(&m, symbol).unwrap_err().to_string(),
        "input 'a' dimension 0 ('n') is 5, but 'n' is 2 from input 'b' dimension 0"
    );
}

#[test]
fn batch_sizes_above_max_batch_size_are_refused_by_input() {
    let m = meta();
    let ordered = || order_inputs(&m, good()).unwrap();
    assert!(check_batch(None, &m, ordered()).is_ok());
    assert!(check_batch(Some(2), &m, ordered()).is_ok());
    assert_eq!(
        check_batch(Some(1), &m, ordered()).unwrap_err(),
        InputError::Batch {
            name: "a".into(),
            got: 2,
            max: 1
        }
    );
    let e = check_batch(Some(1), &m, ordered()).unwrap_err().to_string();
    assert!(
        e.contains("input 'a'") && e.contains("max_batch_size is 1"),
        "{e}"
    );
}

#[test]
fn an_empty_batch_is_refused_only_where_the_model_batches() {
    let m = meta();
    let empty = || {
        let mut inputs = good();
        inputs[1].1 = f32s(&[0, 7]);
        inputs[2].1 = f32s(&[0, 3]);
        order_inputs(&m, inputs).unwrap()
    };
    assert!(check_batch(None, &m, empty()).is_ok());
    assert!(check_batch(Some(0), &m, empty()).is_ok());
    let e = check_batch(Some(4), &m, empty()).unwrap_err();
    assert_eq!(
        e,
        InputError::EmptyBatch {
            name: "a".into(),
            max: 4
        }
    );
    assert!(e.to_string().contains("between 1 and 4 rows"), "{e}");
}

#[test]
fn declarations_narrow_dynamic_dims_only() {
    let engine = meta();
    assert_eq!(declared_metadata(&engine, None), engine);
    let n = || Dim::Named("n".into());
    let declared = vec![
        // Narrows b's dynamic second dimension; cannot widen a's fixed 3.
        TensorSpec::new("b", DataType::F32, vec![n(), Dim::Fixed(7)]),
        TensorSpec::new("a", DataType::F32, vec![Dim::Fixed(2), Dim::Fixed(4)]),
        // A different rank is ignored.
        TensorSpec::new("k", DataType::I64, vec![Dim::Fixed(1)]),
    ];
    let m = declared_metadata(&engine, Some(&declared));
    assert_eq!(m.inputs[0].shape_string(), "[2, 3]");
    assert_eq!(m.inputs[1].shape_string(), "[n, 7]");
    assert_eq!(m.inputs[2].shape, Some(vec![]));
    assert_eq!(m.outputs, engine.outputs);
    assert!(order_inputs(&m, good()).is_ok());
    let mut wide = good();
    wide[1].1 = f32s(&[2, 8]);
    assert_eq!(
        order_inputs(&m, wide).unwrap_err().to_string(),
        "input 'b' dimension 1 is 8, but the model fixes it at 7 (shape [n, 7])"
    );
}

#[test]
fn outputs_are_selected_by_name() {
    let m = meta();
    assert_eq!(select_outputs(&m, None, None).unwrap(), None);
    assert_eq!(
        select_outputs(&m, None, Some(&["y".into()])).unwrap(),
        Some(vec![0])
    );
    assert!(matches!(
        select_outputs(&m, None, Some(&["nope".into()])),
        Err(InputError::UnknownOutput { .. })
    ));
    let twice = select_outputs(&m, None, Some(&["y".into(), "y".into()])).unwrap();
    assert_eq!(twice, Some(vec![0]), "once, as Triton answers it");
}

#[test]
fn a_declared_subset_of_outputs_is_all_that_is_served() {
    let mut m = meta();
    m.outputs.push(TensorSpec::new("z", DataType::I64, vec![]));
    m.outputs.push(TensorSpec::new("w", DataType::I64, vec![]));
    let served: Vec<String> = vec!["w".into(), "y".into()];
    // Nothing asked: the served ones, in the configuration's order.
    assert_eq!(
        select_outputs(&m, Some(&served), None).unwrap(),
        Some(vec![2, 0])
    );
    assert_eq!(
        select_outputs(&m, Some(&served), Some(&["y".into()])).unwrap(),
        Some(vec![0])
    );
    // Asked in another order: answered in the configuration's, as Triton.
    assert_eq!(
        select_outputs(&m, Some(&served), Some(&["y".into(), "w".into()])).unwrap(),
        Some(vec![2, 0])
    );
    assert_eq!(
        select_outputs(&m, None, Some(&["w".into(), "y".into()])).unwrap(),
        Some(vec![0, 2])
    );
    let e = select_outputs(&m, Some(&served), Some(&["z".into()])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "output 'z' is not served: the model's configuration lists only w, y; \
         add 'z' to the configuration's outputs to serve it"
    );
    let e = select_outputs(&m, Some(&served), Some(&["nope".into()])).unwrap_err();
    assert_eq!(
        e,
        InputError::UnknownOutput {
            name: "nope".into(),
            expected: served.clone()
        }
    );
}

#[test]
fn a_missing_optional_input_says_why_it_is_still_needed() {
    let m = meta();
    let mut partial = good();
    partial.retain(|(name, _)| name != "b");
    let e = order_inputs(&m, partial.clone()).unwrap_err();
    assert!(matches!(e, InputError::Missing { .. }));
    assert_eq!(explain_optional(e.clone(), &["a".into()]), e);
    let e = explain_optional(e, &["b".into()]);
    assert!(matches!(e, InputError::MissingOptional { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "missing input 'b' (FP32 [n, -1]): the model's configuration marks it optional"
        ),
        "{e}"
    );
}
