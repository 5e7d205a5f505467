//! Checking a request's inputs against the model's declared inputs.

use anemone_core::{Dim, InputCount, InputError, ModelMetadata, Tensor, TensorSpec};

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
    let slots = fill_slots(meta, inputs, &[])?;
    if slots.iter().any(Option::is_none) {
        return Err(missing(&meta.inputs, &slots, &[]));
    }
    Ok(slots.into_iter().flatten().collect())
}

/// [`order_inputs`] for an engine that reads its inputs by name (a Python
/// model, [`anemone_core::LoadedModel::takes_absent_inputs`]): an input named
/// in `optional` that the request leaves out is allowed, and stands in the
/// returned order as an empty placeholder; the placeholders' positions
/// come back too, in order.
pub fn order_inputs_absent(
    meta: &ModelMetadata,
    inputs: Vec<(String, Tensor)>,
    optional: &[String],
) -> Result<(Vec<Tensor>, Vec<usize>), InputError> {
    let slots = fill_slots(meta, inputs, optional)?;
    let needed = |(slot, spec): (&Option<Tensor>, &TensorSpec)| {
        slot.is_none() && !optional.contains(&spec.name)
    };
    if slots.iter().zip(&meta.inputs).any(needed) {
        return Err(missing(&meta.inputs, &slots, optional));
    }
    let mut absent = Vec::new();
    let mut ordered = Vec::with_capacity(slots.len());
    for (index, (slot, spec)) in slots.into_iter().zip(&meta.inputs).enumerate() {
        match slot {
            Some(tensor) => ordered.push(tensor),
            None if optional.contains(&spec.name) => {
                absent.push(index);
                ordered.push(placeholder(spec));
            }
            None => unreachable!("every required input was checked above"),
        }
    }
    Ok((ordered, absent))
}

/// An empty tensor of the input's type, standing for an absent input.
fn placeholder(spec: &TensorSpec) -> Tensor {
    let empty = match spec.dtype {
        anemone_core::DataType::Bytes => Tensor::from_strings(vec![0], Vec::new()),
        dtype => Tensor::from_bytes(dtype, vec![0], anemone_core::Bytes::new()),
    };
    empty.expect("an empty tensor of any type")
}

/// The error naming every required input (not in `optional`) that has no
/// slot filled, the first with its type and shape.
fn missing(specs: &[TensorSpec], slots: &[Option<Tensor>], optional: &[String]) -> InputError {
    let given = specs
        .iter()
        .zip(slots)
        .filter(|(_, slot)| slot.is_some())
        .map(|(spec, _)| spec.name.clone());
    lacking(specs, given.collect(), optional)
}

/// The error naming every required input (not in `optional`) whose name is
/// not among `given`, the first with its type and shape.
fn lacking(specs: &[TensorSpec], given: Vec<String>, optional: &[String]) -> InputError {
    let required = |spec: &&TensorSpec| !optional.contains(&spec.name);
    let mut lacking = specs
        .iter()
        .filter(required)
        .filter(|spec| !given.contains(&spec.name));
    let first = lacking
        .next()
        .expect("called with at least one input missing");
    InputError::Missing {
        name: first.name.clone(),
        dtype: first.dtype,
        shape: first.shape_string(),
        others: lacking.map(|s| s.name.clone()).collect(),
        count: InputCount {
            given,
            required: specs.iter().filter(required).count(),
            total: specs.len(),
        },
        model: String::new(),
    }
}

/// Each input in its slot of the model's order (`None`: not given),
/// checked as [`order_inputs`] says.
fn fill_slots(
    meta: &ModelMetadata,
    inputs: Vec<(String, Tensor)>,
    optional: &[String],
) -> Result<Vec<Option<Tensor>>, InputError> {
    let specs = &meta.inputs;
    // Fewer inputs than the model needs: refused before any is looked at,
    // as Triton counts them first.
    if inputs.len() < specs.len() {
        let required = specs.iter().filter(|s| !optional.contains(&s.name)).count();
        if inputs.len() < required {
            let given = inputs.into_iter().map(|(name, _)| name).collect();
            return Err(lacking(specs, given, optional));
        }
    }
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
    Ok(slots)
}

/// Checks the batch dimension of ordered `inputs` (in `meta`'s input order)
/// against the model's `max_batch_size` (Triton's): with `Some(n)`, the first
/// dimension of every input is its batch size and must be 1 to `n` (Triton
/// refuses an empty batch too: it would run the engine, and count a batch,
/// for nothing). `None` and `Some(0)` let everything through. Returns the inputs unchanged.
pub fn check_batch(
    max_batch_size: Option<usize>,
    meta: &ModelMetadata,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, InputError> {
    check_batch_given(max_batch_size, meta, inputs, &[])
}

/// [`check_batch`], passing over the inputs at positions `absent` (the
/// placeholders of [`order_inputs_absent`]).
pub fn check_batch_given(
    max_batch_size: Option<usize>,
    meta: &ModelMetadata,
    inputs: Vec<Tensor>,
    absent: &[usize],
) -> Result<Vec<Tensor>, InputError> {
    let Some(max) = max_batch_size.filter(|n| *n > 0) else {
        return Ok(inputs);
    };
    let given = inputs
        .iter()
        .zip(&meta.inputs)
        .enumerate()
        .filter(|(i, _)| !absent.contains(i))
        .map(|(_, pair)| pair);
    for (tensor, spec) in given {
        if let Some(&got) = tensor.shape().first() {
            if got == 0 {
                return Err(InputError::EmptyBatch {
                    name: spec.name.clone(),
                    max,
                });
            }
            if got > max {
                return Err(InputError::Batch {
                    name: spec.name.clone(),
                    got,
                    max,
                });
            }
        }
    }
    Ok(inputs)
}

/// The metadata requests are checked against: the engine's, with each input
/// narrowed by the configuration's declaration of it (`declared`, matched by
/// name). A declared fixed size replaces a dynamic engine dimension; the
/// engine's fixed sizes and its rank always stand, so a declaration can only
/// narrow what the engine accepts, never widen it.
pub fn declared_metadata(engine: &ModelMetadata, declared: Option<&[TensorSpec]>) -> ModelMetadata {
    let mut meta = engine.clone();
    if let Some(declared) = declared {
        narrow(&mut meta.inputs, declared);
    }
    meta
}

/// Narrows each of `specs` by its declaration in `declared` (matched by
/// name), as [`declared_metadata`] does for inputs.
pub fn narrow(specs: &mut [TensorSpec], declared: &[TensorSpec]) {
    for spec in specs {
        let Some(d) = declared.iter().find(|d| d.name == spec.name) else {
            continue;
        };
        match (&mut spec.shape, &d.shape) {
            (Some(shape), Some(narrow)) if shape.len() == narrow.len() => {
                for (dim, n) in shape.iter_mut().zip(narrow) {
                    if !matches!(dim, Dim::Fixed(_)) && matches!(n, Dim::Fixed(_)) {
                        *dim = n.clone();
                    }
                }
            }
            (None, Some(narrow)) => spec.shape = Some(narrow.clone()),
            _ => {}
        }
    }
}

/// Resolves requested output names to indices into the model's outputs.
///
/// `served` is the spec's `declared_outputs`: with `Some`, only those outputs
/// may be asked for, in that order (whatever order a request names them
/// in, as Triton answers them).
/// With `None`, every output may be asked for, and `wanted == None` selects
/// every output in model order (returned as `None`, the cheap case).
pub fn select_outputs(
    meta: &ModelMetadata,
    served: Option<&[String]>,
    wanted: Option<&[String]>,
) -> Result<Option<Vec<usize>>, InputError> {
    let index_of = |name: &String| meta.outputs.iter().position(|o| &o.name == name);
    let Some(wanted) = wanted else {
        return Ok(served.map(|served| served.iter().filter_map(index_of).collect()));
    };
    // An output named twice is answered once, as Triton answers it.
    wanted
        .iter()
        .enumerate()
        .filter(|(i, name)| !wanted[..*i].contains(name))
        .map(|(_, name)| {
            let index = index_of(name).ok_or_else(|| InputError::UnknownOutput {
                name: name.clone(),
                expected: match served {
                    Some(served) => served.to_vec(),
                    None => meta.outputs.iter().map(|o| o.name.clone()).collect(),
                },
            })?;
            match served {
                Some(served) if !served.contains(name) => Err(InputError::UnservedOutput {
                    name: name.clone(),
                    served: served.to_vec(),
                }),
                _ => Ok(index),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|mut indices| {
            // Answered in the configuration's order (the model's, without
            // one), whatever order the request names them in, as Triton's.
            let rank = |i: &usize| match served {
                Some(served) => served
                    .iter()
                    .position(|n| *n == meta.outputs[*i].name)
                    .unwrap_or(usize::MAX),
                None => *i,
            };
            indices.sort_by_key(rank);
            Some(indices)
        })
}

/// Turns a missing input that `optional` lists into
/// [`InputError::MissingOptional`], whose message says why it is still needed.
pub fn explain_optional(e: InputError, optional: &[String]) -> InputError {
    match e {
        InputError::Missing {
            name, dtype, shape, ..
        } if optional.contains(&name) => InputError::MissingOptional { name, dtype, shape },
        e => e,
    }
}

#[cfg(test)]
mod tests {
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
}
