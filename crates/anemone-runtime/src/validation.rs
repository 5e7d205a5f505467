//! Checking a request's inputs against the model's declared inputs.

use anemone_core::{Dim, InputError, ModelMetadata, Tensor};

/// Checks `inputs` against `meta` and returns them in the model's input order.
///
/// Refuses, each with its own [`InputError`]: an unknown input, an input given
/// twice, a missing input, a wrong element type, a wrong rank, a wrong fixed
/// dimension, and a named dynamic dimension given two different sizes. Byte
/// lengths are checked when a [`Tensor`] is built, so they always agree here.
pub fn order_inputs(
    meta: &ModelMetadata,
    inputs: Vec<(String, Tensor)>,
) -> Result<Vec<Tensor>, InputError> {
    let specs = &meta.inputs;
    let mut slots: Vec<Option<Tensor>> = Vec::with_capacity(specs.len());
    slots.resize_with(specs.len(), || None);
    // (symbol, size, input index, axis) for each named dimension bound so far.
    let mut bound: Vec<(&str, usize, usize, usize)> = Vec::new();

    for (name, tensor) in inputs {
        let Some(index) = specs.iter().position(|s| s.name == name) else {
            return Err(InputError::Unknown {
                name,
                expected: specs.iter().map(|s| s.name.clone()).collect(),
            });
        };
        if slots[index].is_some() {
            return Err(InputError::Duplicate { name });
        }
        let spec = &specs[index];
        if tensor.dtype() != spec.dtype {
            return Err(InputError::Dtype {
                name,
                expected: spec.dtype,
                got: tensor.dtype(),
            });
        }
        if let Some(dims) = &spec.shape {
            let shape = tensor.shape();
            if shape.len() != dims.len() {
                return Err(InputError::Rank {
                    name,
                    expected: dims.len(),
                    expected_shape: spec.shape_string(),
                    got: shape.len(),
                    got_shape: shape.to_vec(),
                });
            }
            for (axis, (dim, &size)) in dims.iter().zip(shape).enumerate() {
                match dim {
                    Dim::Fixed(n) if *n as usize != size => {
                        return Err(InputError::Dim {
                            name,
                            axis,
                            expected: *n,
                            expected_shape: spec.shape_string(),
                            got: size,
                        });
                    }
                    Dim::Named(symbol) => match bound.iter().find(|(s, ..)| s == symbol) {
                        Some(&(_, b, by, by_axis)) if b != size => {
                            return Err(InputError::Symbol {
                                name,
                                axis,
                                symbol: symbol.clone(),
                                got: size,
                                bound: b,
                                bound_by: specs[by].name.clone(),
                                bound_axis: by_axis,
                            });
                        }
                        Some(_) => {}
                        None => bound.push((symbol, size, index, axis)),
                    },
                    _ => {}
                }
            }
        }
        slots[index] = Some(tensor);
    }

    slots
        .into_iter()
        .zip(specs)
        .map(|(slot, spec)| {
            slot.ok_or_else(|| InputError::Missing {
                name: spec.name.clone(),
                dtype: spec.dtype,
                shape: spec.shape_string(),
            })
        })
        .collect()
}

/// Resolves requested output names to indices into the model's outputs;
/// `None` selects every output in model order.
pub fn select_outputs(
    meta: &ModelMetadata,
    wanted: Option<&[String]>,
) -> Result<Option<Vec<usize>>, InputError> {
    let Some(wanted) = wanted else {
        return Ok(None);
    };
    wanted
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if wanted[..i].contains(name) {
                return Err(InputError::DuplicateOutput { name: name.clone() });
            }
            meta.outputs
                .iter()
                .position(|o| &o.name == name)
                .ok_or_else(|| InputError::UnknownOutput {
                    name: name.clone(),
                    expected: meta.outputs.iter().map(|o| o.name.clone()).collect(),
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::{DataType, ModelFormat, TensorSpec};

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

    #[test]
    fn orders_inputs_by_the_model() {
        let ordered = order_inputs(&meta(), good()).unwrap();
        assert_eq!(ordered[0].shape(), &[2, 3]);
        assert_eq!(ordered[1].shape(), &[2, 7]);
        assert!(ordered[2].shape().is_empty());
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
            "missing input 'b' (FP32 [n, -1])"
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
    fn outputs_are_selected_by_name() {
        let m = meta();
        assert_eq!(select_outputs(&m, None).unwrap(), None);
        assert_eq!(
            select_outputs(&m, Some(&["y".into()])).unwrap(),
            Some(vec![0])
        );
        assert!(matches!(
            select_outputs(&m, Some(&["nope".into()])),
            Err(InputError::UnknownOutput { .. })
        ));
        let twice = select_outputs(&m, Some(&["y".into(), "y".into()])).unwrap_err();
        assert_eq!(twice, InputError::DuplicateOutput { name: "y".into() });
    }
}
