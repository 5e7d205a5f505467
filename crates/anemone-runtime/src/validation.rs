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

/// An unknown input that the server gives the model itself (`what` says
/// which kind, `None` for an input that is not), named as such.
pub fn explain_server_given(
    e: InputError,
    what: impl Fn(&str) -> Option<&'static str>,
) -> InputError {
    match e {
        InputError::Unknown { name, expected } => match what(&name) {
            Some(what) => InputError::ServerGiven {
                name,
                what,
                expected,
            },
            None => InputError::Unknown { name, expected },
        },
        e => e,
    }
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
#[path = "validation_tests.rs"]
mod tests;
