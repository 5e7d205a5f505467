//! Tests of `backend.rs`.
use super::*;

fn t(rows: usize, first: f32) -> Tensor {
    let values = (0..rows * 2).map(|i| first + i as f32).collect();
    Tensor::from_vec(vec![rows, 2], values).unwrap()
}

#[test]
fn stacking_puts_each_requests_rows_in_order_per_input() {
    let a = [t(1, 0.0), t(1, 100.0)];
    let b = [t(2, 10.0), t(2, 200.0)];
    let stacked = stack_inputs(&[&a, &b]).unwrap();
    assert_eq!(stacked.len(), 2);
    assert_eq!(stacked[0].shape(), &[3, 2]);
    assert_eq!(
        stacked[0].to_vec::<f32>().unwrap(),
        [0.0, 1.0, 10.0, 11.0, 12.0, 13.0]
    );
    assert_eq!(
        stacked[1].to_vec::<f32>().unwrap(),
        [100.0, 101.0, 200.0, 201.0, 202.0, 203.0]
    );
}

#[test]
fn parameters_go_to_json_and_back_and_json_that_no_parameter_holds_is_none() {
    let all = [
        Parameter::Bool(true),
        Parameter::Int(-3),
        Parameter::Uint(u64::MAX),
        Parameter::Double(2.5),
        Parameter::String("x".into()),
    ];
    for p in all {
        assert_eq!(Parameter::from_json(&p.to_json()), Some(p.clone()), "{p:?}");
    }
    for v in [
        serde_json::json!(null),
        serde_json::json!([1]),
        serde_json::json!({"a": 1}),
    ] {
        assert_eq!(Parameter::from_json(&v), None, "{v}");
    }
}

#[test]
fn requests_that_cannot_be_stacked_are_an_internal_error_naming_the_request() {
    let a = [t(1, 0.0), t(1, 0.0)];
    let b = [t(1, 0.0)];
    let e = stack_inputs(&[&a, &b]).unwrap_err();
    assert!(matches!(e, Error::Internal(_)), "{e:?}");
    assert!(e.to_string().contains("request 1 has 1 inputs"), "{e}");
    let c = [
        Tensor::from_vec(vec![1, 3], vec![0f32; 3]).unwrap(),
        t(1, 0.0),
    ];
    assert!(matches!(stack_inputs(&[&a, &c]), Err(Error::Internal(_))));
    assert!(matches!(stack_inputs(&[]), Err(Error::Internal(_))));
}
