//! Triton's `reshape`: a tensor whose shape in requests and answers (the
//! configuration's `dims`) differs from the shape the model takes or makes
//! (`reshape { shape }`), with the same elements in the same order.
//!
//! Requests are checked against the served shape, then their inputs are
//! given the model's shape before they are queued, batched or cached; the
//! model's outputs get the served shape back before they are answered. A
//! variable-size dimension (-1) takes its size from the other side's
//! variable-size dimensions, in order, as Triton does. Both shapes leave out
//! the batch dimension of a model with `max_batch_size > 0`, which is kept.

use anemone_core::{Dim, Error, ModelMetadata, Result, Tensor, TensorSpec};

/// One tensor's two shapes, each without the batch dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshape {
    /// The tensor's name.
    pub name: String,
    /// Its shape in requests and answers (Triton's `dims`); -1 is variable.
    pub served: Vec<i64>,
    /// Its shape in the model (Triton's `reshape { shape }`); -1 is variable.
    pub model: Vec<i64>,
}

impl Reshape {
    /// Checks that the two shapes hold the same elements: sizes are at least
    /// 1 (or -1), and the runs of fixed sizes between variable-size
    /// dimensions hold as many elements on both sides (`[2, 4, -1, 6]` and
    /// `[8, -1, 1, 6]` agree), which also means as many variable-size
    /// dimensions. `[1]` and `[]` agree: one element each.
    pub fn new(
        name: impl Into<String>,
        served: Vec<i64>,
        model: Vec<i64>,
    ) -> std::result::Result<Reshape, String> {
        let name = name.into();
        for (what, shape) in [("dims", &served), ("reshape", &model)] {
            if let Some(bad) = shape.iter().find(|&&d| d == 0 || d < -1) {
                return Err(format!(
                    "'{name}': {what} {shape:?} has a size {bad}; sizes are 1 or more, or -1 for a variable size"
                ));
            }
        }
        if runs(&served) != runs(&model) {
            return Err(format!(
                "'{name}': dims {served:?} and reshape {model:?} do not hold the same elements; the sizes \
                 between variable-size (-1) dimensions must multiply to the same counts on both sides, \
                 with as many -1s in each"
            ));
        }
        Ok(Reshape {
            name,
            served,
            model,
        })
    }

    /// The shape `actual` (without batch) takes on the other side: the
    /// sizes of `from`'s variable-size dimensions fill `to`'s, in order.
    /// `None` when `actual` does not fit `from`.
    fn map(actual: &[usize], from: &[i64], to: &[i64]) -> Option<Vec<usize>> {
        if actual.len() != from.len() {
            return None;
        }
        let mut variable = Vec::new();
        for (&a, &f) in actual.iter().zip(from) {
            match usize::try_from(f) {
                Ok(f) if f != a => return None,
                Ok(_) => {}
                Err(_) => variable.push(a),
            }
        }
        let mut variable = variable.into_iter();
        to.iter()
            .map(|&t| usize::try_from(t).ok().or_else(|| variable.next()))
            .collect()
    }

    /// `tensor` with `to`'s shape (its batch dimension, if `batched`, kept).
    fn apply(&self, tensor: Tensor, batched: bool, to_model: bool) -> Result<Tensor> {
        let (from, to) = match to_model {
            true => (&self.served, &self.model),
            false => (&self.model, &self.served),
        };
        let keep = usize::from(batched).min(tensor.shape().len());
        let (batch, rest) = tensor.shape().split_at(keep);
        let Some(mapped) = Reshape::map(rest, from, to) else {
            let (side, fix) = match to_model {
                true => ("input", "send it with the shape the model's metadata shows"),
                false => (
                    "output the model made",
                    "fix the output's reshape in config.pbtxt to the shape the model makes",
                ),
            };
            return Err(Error::Internal(format!(
                "{side} '{}' has shape {:?}, which does not fit its configured reshape from {from:?} \
                 to {to:?}{}; {fix}",
                self.name,
                tensor.shape(),
                if batched { " after the batch dimension" } else { "" },
            )));
        };
        let shape: Vec<usize> = batch.iter().copied().chain(mapped).collect();
        let name = self.name.clone();
        tensor
            .reshaped(shape)
            .map_err(|e| Error::Internal(format!("reshaping '{name}': {e}")))
    }
}

/// Element counts of the runs of fixed sizes between variable-size dimensions.
fn runs(shape: &[i64]) -> Vec<i64> {
    let mut counts = vec![1i64];
    for &d in shape {
        match d {
            -1 => counts.push(1),
            d => {
                let last = counts.last_mut().expect("starts with one run");
                *last = last.saturating_mul(d);
            }
        }
    }
    counts
}

/// A model's metadata as requests see it: the engine's, narrowed by the
/// spec's declared inputs and output shapes, with reshaped tensors in their
/// served shapes.
pub(crate) fn served_metadata(spec: &crate::ModelSpec, engine: &ModelMetadata) -> ModelMetadata {
    let mut meta = crate::validation::declared_metadata(engine, spec.declared_inputs.as_deref());
    if let Some(declared) = &spec.declared_output_shapes {
        crate::validation::narrow(&mut meta.outputs, declared);
    }
    // A sequence model's control inputs come from the server, not the request.
    if let Some(sequence) = &spec.sequence {
        meta.inputs.retain(|i| !sequence.is_supplied(&i.name));
    }
    // So do batch inputs; a ragged input and a batch output, flat in the
    // model, have their declared shapes in requests and answers.
    if spec.ragged.reshapes_batches() {
        let (inputs, outputs) = (
            spec.declared_inputs.as_deref(),
            spec.declared_output_shapes.as_deref(),
        );
        meta = spec.ragged.served(meta, inputs, outputs);
    }
    match spec.reshapes.is_empty() {
        true => meta,
        false => spec.reshapes.served(meta, batched(spec)),
    }
}

/// Whether the model's tensors start with a batch dimension.
pub(crate) fn batched(spec: &crate::ModelSpec) -> bool {
    spec.max_batch_size.is_some_and(|n| n > 0)
}

/// The reshaped inputs and outputs of one model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reshapes {
    /// Inputs whose served shape differs from the model's.
    pub inputs: Vec<Reshape>,
    /// Outputs whose served shape differs from the model's.
    pub outputs: Vec<Reshape>,
}

impl Reshapes {
    /// Whether no tensor is reshaped.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty() && self.outputs.is_empty()
    }

    /// The model's metadata as requests see it: each reshaped tensor with its
    /// served shape (after a variable batch dimension when `batched`).
    pub fn served(&self, mut meta: ModelMetadata, batched: bool) -> ModelMetadata {
        let serve = |specs: &mut [TensorSpec], reshapes: &[Reshape]| {
            for spec in specs {
                if let Some(r) = reshapes.iter().find(|r| r.name == spec.name) {
                    let dims = r
                        .served
                        .iter()
                        .map(|&d| u64::try_from(d).map_or(Dim::Any, Dim::Fixed));
                    let batch = batched.then_some(Dim::Any);
                    spec.shape = Some(batch.into_iter().chain(dims).collect());
                }
            }
        };
        serve(&mut meta.inputs, &self.inputs);
        serve(&mut meta.outputs, &self.outputs);
        meta
    }

    /// Gives checked inputs (in the model's input order, `names`) the shapes
    /// the model takes.
    pub fn to_model<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        inputs: Vec<Tensor>,
        batched: bool,
    ) -> Result<Vec<Tensor>> {
        names
            .zip(inputs)
            .map(
                |(name, tensor)| match self.inputs.iter().find(|r| r.name == name) {
                    Some(r) => r.apply(tensor, batched, true),
                    None => Ok(tensor),
                },
            )
            .collect()
    }

    /// Gives the model's outputs their served shapes.
    pub fn to_served(&self, outputs: &mut [(String, Tensor)], batched: bool) -> Result<()> {
        for (name, tensor) in outputs {
            if let Some(r) = self.outputs.iter().find(|r| &r.name == name) {
                let t = std::mem::replace(tensor, Tensor::scalar(0u8));
                *tensor = r.apply(t, batched, false)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::DataType;

    fn tensor(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec(shape.to_vec(), (0..n).map(|i| i as f32).collect()).unwrap()
    }

    #[test]
    fn shapes_must_hold_the_same_elements() {
        assert!(Reshape::new("x", vec![3, 224, 224], vec![1, 3, 224, 224]).is_ok());
        assert!(Reshape::new("x", vec![1], vec![]).is_ok());
        assert!(Reshape::new("x", vec![2, 4, -1, 6], vec![8, -1, 1, 6]).is_ok());
        let e = Reshape::new("x", vec![4], vec![2, 3]).unwrap_err();
        assert!(e.contains("do not hold the same elements"), "{e}");
        // Same count overall, but split differently around the -1.
        let e = Reshape::new("x", vec![2, -1, 3], vec![3, -1, 2]).unwrap_err();
        assert!(e.contains("between variable-size"), "{e}");
        // As many -1s on each side.
        assert!(Reshape::new("x", vec![-1, -1], vec![-1]).is_err());
        let e = Reshape::new("x", vec![4], vec![0, 4]).unwrap_err();
        assert!(e.contains("size 0"), "{e}");
        assert!(Reshape::new("x", vec![-2], vec![-2]).is_err());
    }

    #[test]
    fn variable_sizes_fill_in_order_and_the_batch_dimension_stays() {
        let r = Reshape::new("x", vec![2, 4, -1, 6], vec![8, -1, 1, 6]).unwrap();
        let t = r.apply(tensor(&[2, 4, 5, 6]), false, true).unwrap();
        assert_eq!(t.shape(), [8, 5, 1, 6]);
        // The elements and their order are the same.
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            tensor(&[240]).to_vec::<f32>().unwrap()
        );
        let back = r.apply(t, false, false).unwrap();
        assert_eq!(back.shape(), [2, 4, 5, 6]);

        let r = Reshape::new("x", vec![1], vec![]).unwrap();
        assert_eq!(r.apply(tensor(&[7, 1]), true, true).unwrap().shape(), [7]);
        assert_eq!(r.apply(tensor(&[7]), true, false).unwrap().shape(), [7, 1]);
    }

    #[test]
    fn a_tensor_that_does_not_fit_is_an_error_that_names_it() {
        let r = Reshape::new("prob", vec![1000], vec![1, 1000, 1, 1]).unwrap();
        let e = r
            .apply(tensor(&[1, 999, 1, 1]), false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'prob'") && e.contains("[1, 999, 1, 1]"), "{e}");
        assert!(e.contains("config.pbtxt"), "{e}");
    }

    #[test]
    fn served_metadata_shows_dims_and_the_rest_unchanged() {
        let spec = |name: &str, shape| TensorSpec::new(name, DataType::F32, shape);
        let meta = ModelMetadata::new(
            anemone_core::ModelFormat::Onnx,
            vec![
                spec("a", vec![Dim::Any, Dim::Fixed(1), Dim::Fixed(4)]),
                spec("b", vec![Dim::Any]),
            ],
            vec![spec("y", vec![Dim::Any, Dim::Fixed(4)])],
        );
        let reshapes = Reshapes {
            inputs: vec![Reshape::new("a", vec![4], vec![1, 4]).unwrap()],
            outputs: vec![Reshape::new("y", vec![2, -1], vec![2, -1, 1]).unwrap()],
        };
        let served = reshapes.served(meta.clone(), true);
        assert_eq!(served.inputs[0].shape_string(), "[-1, 4]");
        assert_eq!(served.inputs[1], meta.inputs[1]);
        assert_eq!(served.outputs[0].shape_string(), "[-1, 2, -1]");
        let inputs = reshapes
            .to_model(
                ["a", "b"].into_iter(),
                vec![tensor(&[3, 4]), tensor(&[3])],
                true,
            )
            .unwrap();
        assert_eq!(inputs[0].shape(), [3, 1, 4]);
        assert_eq!(inputs[1].shape(), [3]);
    }
}
