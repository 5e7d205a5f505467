//! Tensors passed between a model that batches and one that does not, as
//! Triton's ensembles pass them (`ReshapeTensorDims` in Triton's
//! `ensemble_scheduler.cc`).
//!
//! A tensor made without a batch dimension (an ensemble input of an
//! ensemble that does not batch, or a step output of a model that does not)
//! and read by a model that batches is sent as a batch of one when its
//! shape is the reader's dims without the batch dimension: `[3, 224, 224]`
//! reaches a model of `dims: [ 3, 224, 224 ]` and `max_batch_size: 8` as
//! `[1, 3, 224, 224]`. The other way, a batch of one read by something that
//! does not batch loses its batch dimension unless its shape is already the
//! reader's. Any other tensor passes as it is.

use anemone_core::{Dim, Tensor, TensorSpec};

/// What happens to a tensor on its way from its producer to one reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Adapt {
    /// Passed as it is (both batch, or neither does).
    Keep,
    /// From a producer that does not batch to a reader that does: a leading
    /// 1 is added when the tensor's shape matches these dims (the reader's,
    /// without its batch dimension).
    AddBatch(Vec<Dim>),
    /// From a producer that batches to a reader that does not: a leading
    /// dimension of 1 is dropped unless the shape matches these dims (the
    /// reader's own).
    DropBatch(Vec<Dim>),
}

impl Adapt {
    /// The adaptation between a producer (`batches`: whether its model, or
    /// the ensemble for its inputs, batches) and `reader` (full shape, with
    /// the batch dimension first when `reader_batches`).
    pub(crate) fn between(batches: bool, reader: &TensorSpec, reader_batches: bool) -> Adapt {
        let Some(shape) = &reader.shape else {
            return Adapt::Keep;
        };
        match (batches, reader_batches) {
            (false, true) if !shape.is_empty() => Adapt::AddBatch(shape[1..].to_vec()),
            (true, false) => Adapt::DropBatch(shape.clone()),
            _ => Adapt::Keep,
        }
    }

    /// `tensor` as the reader gets it.
    pub(crate) fn apply(&self, tensor: Tensor) -> Tensor {
        match self {
            Adapt::AddBatch(dims) if matches(dims, tensor.shape()) => {
                let mut shape = Vec::with_capacity(tensor.shape().len() + 1);
                shape.push(1);
                shape.extend_from_slice(tensor.shape());
                reshaped(tensor, shape)
            }
            Adapt::DropBatch(dims)
                if tensor.shape().first() == Some(&1) && !matches(dims, tensor.shape()) =>
            {
                let shape = tensor.shape()[1..].to_vec();
                reshaped(tensor, shape)
            }
            _ => tensor,
        }
    }
}

/// `tensor` under `shape`, which has as many elements.
fn reshaped(tensor: Tensor, shape: Vec<usize>) -> Tensor {
    tensor
        .reshaped(shape)
        .expect("adding or dropping a dimension of 1 keeps the element count; this is a bug")
}

/// Whether `shape` fits `dims` (-1 and named dimensions match any size).
fn matches(dims: &[Dim], shape: &[usize]) -> bool {
    dims.len() == shape.len()
        && dims.iter().zip(shape).all(|(d, &n)| match d {
            Dim::Fixed(k) => *k == n as u64,
            Dim::Named(_) | Dim::Any => true,
        })
}

/// `t`'s dims without the batch dimension, when `batches` (Triton's `dims`
/// as against its full shape).
pub(crate) fn without_batch(t: &TensorSpec, batches: bool) -> TensorSpec {
    let mut t = t.clone();
    if let (true, Some(shape)) = (batches, &mut t.shape) {
        if !shape.is_empty() {
            shape.remove(0);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::spec::dims;
    use anemone_core::DataType;

    fn tensor(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(shape.to_vec(), (0..n).map(|i| i as f32).collect()).unwrap()
    }

    fn spec(shape: &[i64]) -> TensorSpec {
        TensorSpec::new("t", DataType::F32, dims(shape))
    }

    /// Triton's conflicting_scheduler_ensemble: an ensemble of dims [4]
    /// that does not batch, over models of dims [4] that batch.
    #[test]
    fn a_tensor_without_batch_reaches_a_batching_model_as_a_batch_of_one() {
        let into_step = Adapt::between(false, &spec(&[-1, 4]), true);
        assert_eq!(into_step.apply(tensor(&[4])).shape(), [1, 4]);
        // Already batched (the ensemble's own dims were [-1, 4]): as it is.
        assert_eq!(into_step.apply(tensor(&[3, 4])).shape(), [3, 4]);
        let out_of_step = Adapt::between(true, &spec(&[4]), false);
        assert_eq!(out_of_step.apply(tensor(&[1, 4])).shape(), [4]);
        // The reader's own shape, or more than one row: as it is.
        assert_eq!(
            Adapt::between(true, &spec(&[1, 4]), false)
                .apply(tensor(&[1, 4]))
                .shape(),
            [1, 4]
        );
        assert_eq!(out_of_step.apply(tensor(&[2, 4])).shape(), [2, 4]);
        let data = out_of_step.apply(tensor(&[1, 4]));
        assert_eq!(data.to_vec::<f32>().unwrap(), [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn both_batching_or_neither_keeps_the_tensor() {
        assert_eq!(Adapt::between(true, &spec(&[-1, 4]), true), Adapt::Keep);
        assert_eq!(Adapt::between(false, &spec(&[4]), false), Adapt::Keep);
        let unknown = TensorSpec {
            shape: None,
            ..spec(&[4])
        };
        assert_eq!(Adapt::between(false, &unknown, true), Adapt::Keep);
    }
}
