//! Max pooling for the CUDA backend: each `MaxPool` cuDNN can take becomes a
//! [`CudnnMaxPoolMark`] before tract-cuda translates the model, and
//! `cuda_runtime` runs it as one `cudnnPoolingForward` after the
//! translation. The others keep `rewrite::for_gpu`'s Pad/Slice/Max form.
//!
//! tract-cuda 0.23.9 has no pooling kernel; the Pad/Slice/Max form keeps the
//! tensor on the device but makes ten strided copies and four Max kernels of
//! a ResNet stem (3.5 ms of 11 at batch 32 on an H200).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::MaxPool;

/// A `MaxPool` that cuDNN runs: float32 or half NCHW 2-D, dilation 1, padding equal
/// on both sides and the output size cuDNN computes (no ceil mode), no index
/// output. On the CPU it evaluates as the `MaxPool` it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CudnnMaxPoolMark(pub MaxPool);

impl Op for CudnnMaxPoolMark {
    fn name(&self) -> StaticName {
        "AnemoneMaxPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.0.info()
    }

    op_as_typed_op!();
}

impl EvalOp for CudnnMaxPoolMark {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval(ctx, inputs)
    }
}

impl TypedOp for CudnnMaxPoolMark {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.0.output_facts(inputs)
    }
}

/// Marks every `MaxPool` cuDNN can take (see [`CudnnMaxPoolMark`]).
pub fn mark_max_pools(mut model: TypedModel) -> TractResult<TypedModel> {
    Rewriter::default()
        .with_rule_for("anemone-cudnn-max-pool", mark_rule)
        .rewrite(&(), &mut model)?;
    Ok(model)
}

/// The window, padding and strides cuDNN takes for `pool` on `input`, or
/// `None` when it cannot take it.
pub fn cudnn_geometry(pool: &MaxPool, input: &TypedFact) -> Option<[[usize; 2]; 3]> {
    let spec = &pool.pool_spec;
    if pool.with_index_outputs.is_some()
        || (input.datum_type != f32::datum_type() && input.datum_type != f16::datum_type())
        || !input.is_plain()
        || input.rank() != 4
        || !spec.data_format.has_n()
        || spec.data_format.c_is_last()
        || spec.kernel_shape.len() != 2
        || spec.dilations().iter().any(|d| *d != 1)
    {
        return None;
    }
    let hw: Vec<usize> = input
        .shape
        .iter()
        .skip(2)
        .map(|d| d.to_usize().ok())
        .collect::<Option<_>>()?;
    let padding = spec.computed_padding(&hw);
    let (k, s) = (&spec.kernel_shape, spec.strides());
    let mut geometry = [[0; 2]; 3];
    for i in 0..2 {
        let p = &padding[i];
        // cuDNN: out = 1 + (in + 2·pad − window) / stride, rounded down.
        let cudnn_out = (hw[i] + 2 * p.pad_before).checked_sub(k[i])? / s[i] + 1;
        if p.pad_before != p.pad_after || p.convoluted != cudnn_out || p.pad_before >= k[i] {
            return None;
        }
        geometry[0][i] = k[i];
        geometry[1][i] = p.pad_before;
        geometry[2][i] = s[i];
    }
    Some(geometry)
}

fn mark_rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    pool: &MaxPool,
) -> TractResult<Option<TypedModelPatch>> {
    if cudnn_geometry(pool, model.outlet_fact(node.inputs[0])?).is_none() {
        return Ok(None);
    }
    let _ = name;
    TypedModelPatch::replace_single_op(model, node, &node.inputs, CudnnMaxPoolMark(pool.clone()))
        .map(Some)
}
