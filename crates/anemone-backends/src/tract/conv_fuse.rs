//! Convolution fusion for the CUDA backend: a convolution, its bias, the
//! tensor a residual block adds to its output and the ReLU after it become
//! one operator, [`FusedConv`], before tract-cuda translates the model.
//!
//! tract-cuda 0.23.9 runs a convolution as cuDNN's convolution with a fixed
//! algorithm, then one kernel for the bias, one for a residual add and one for
//! the ReLU: four passes over the output where cuDNN's
//! `cudnnConvolutionBiasActivationForward` makes one
//! (`y = relu(conv(x) + z + bias)`). This module is the portable half: which
//! nodes to fuse (plain code, tested here on tract's CPU runtime, where
//! [`FusedConv`] evaluates as the ops it replaced), and the precision setting.
//! The CUDA half, `cuda_conv` and `cuda_runtime`, replaces each [`FusedConv`]
//! by a cuDNN call after tract-cuda's translation.
//!
//! What is fused (all of it float32, or all half after the fp16
//! translation; NCHW, 2-D, kernel OIHW, constant
//! weights and bias, padding equal before and after):
//! - `Conv` alone (bias added inside the cuDNN call);
//! - `Conv → Relu`;
//! - `Conv → Add(z) → Relu`, where `z` has the output's shape (a residual);
//! - a 1×1 convolution as tract's declutter leaves it (`EinSum
//!   NIHW,OI->NOHW` with its bias as an `Add`, behind `Downsample`s when
//!   strided, as in ResNet shortcuts) becomes a strided 1×1 convolution
//!   again, so cuDNN reads the strided pixels itself instead of a copy.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::{add, max, Add, Max};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The model setting that chooses [`Precision`] (`parameters` of a model's
/// configuration, or `LoadOptions::settings`).
pub const PRECISION_KEY: &str = "tract-cuda.precision";

/// How the GPU computes float32 convolutions and matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// True float32 (the default): cuDNN's `CUDNN_FMA_MATH`, cuBLAS's default
    /// math; no tensor-core rounding of the inputs.
    #[default]
    Fp32,
    /// TensorFloat-32: float32 in and out, the products rounded to a 10-bit
    /// mantissa on the tensor cores (cuDNN's `CUDNN_DEFAULT_MATH`, cuBLAS's
    /// `CUBLAS_TF32_TENSOR_OP_MATH`). What PyTorch does for convolutions by
    /// default. About 1e-3 relative error against float32.
    Tf32,
    /// Half precision: tract's `f32_to_f16` translation of the whole model
    /// (inputs and outputs stay float32, cast at the edges); convolutions
    /// fused as in float32, on half tensors with float32 accumulation on the
    /// tensor cores (cuDNN's `CUDNN_TENSOR_OP_MATH`), the rest on
    /// tract-cuda's half kernels. About 1e-3 to 1e-2 relative error against
    /// float32.
    Fp16,
}

impl Precision {
    /// The setting's values.
    pub const VALUES: [&'static str; 3] = ["fp32", "tf32", "fp16"];

    /// Parses a value of [`PRECISION_KEY`]; the error says what is accepted.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "tf32" | "tensorfloat32" => Ok(Precision::Tf32),
            "fp16" | "float16" | "half" => Ok(Precision::Fp16),
            other => Err(format!(
                "{PRECISION_KEY} is {other:?}; use one of {}",
                Self::VALUES.join(", ")
            )),
        }
    }

    /// The setting's value as written in a configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Fp16 => "fp16",
        }
    }
}

/// `act(conv(x, w) + bias [+ z])`: inputs `[x, w, bias]`, plus `z` when
/// `residual`; `bias` has one value per output channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FusedConv {
    /// The convolution, with its bias as input 2.
    pub conv: Conv,
    /// Input 3, of the output's shape, is added after the bias.
    pub residual: bool,
    /// `max(·, 0)` last.
    pub relu: bool,
    /// How the GPU computes it (the CPU evaluation is always float32).
    pub precision: Precision,
}

impl Op for FusedConv {
    fn name(&self) -> StaticName {
        "AnemoneFusedConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.conv.info()?;
        info.push(format!(
            "residual: {}, relu: {}, precision: {}",
            self.residual,
            self.relu,
            self.precision.as_str()
        ));
        Ok(info)
    }

    op_as_typed_op!();
}

impl EvalOp for FusedConv {
    op_out_of_plan!();

    /// The ops it replaced, one after the other (tract's CPU kernels).
    fn eval(&self, ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let z = self.residual.then(|| inputs.pop()).flatten();
        let mut y = self.conv.eval(ctx, inputs)?.remove(0);
        if let Some(z) = z {
            y = add().eval(ctx, tvec!(y, z))?.remove(0);
        }
        if self.relu {
            let zero = Tensor::zero_dt(y.datum_type(), &vec![1; y.rank()])?.into_tvalue();
            y = max().eval(ctx, tvec!(y, zero))?.remove(0);
        }
        Ok(tvec!(y))
    }
}

impl TypedOp for FusedConv {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 3 + self.residual as usize);
        let facts = self.conv.output_facts(&inputs[..3])?;
        if self.residual {
            ensure!(
                inputs[3].shape == facts[0].shape,
                "residual of another shape"
            );
        }
        Ok(facts)
    }
}

/// Everything the CUDA backend does to a decluttered model before tract-cuda
/// translates it, for `precision`: for fp16 first tract's `f32_to_f16`
/// translation (its casts of constants folded again); then [`fuse_convs`]
/// and [`super::pool_fuse::mark_max_pools`] (float32 and half pools) unless
/// `tract_conv`; then [`super::rewrite::for_gpu`]; for fp16 last, float32
/// inputs and outputs at the edges.
pub fn for_cuda(
    model: TypedModel,
    precision: Precision,
    tract_conv: bool,
) -> TractResult<TypedModel> {
    let mut model = model;
    if precision == Precision::Fp16 {
        tract_onnx::tract_core::transform::get_transform("f32_to_f16")?
            .context("tract's f32_to_f16 transform is not registered")?
            .transform(&mut model)?;
        // The translation wires each float32 constant through a cast:
        // folded, the weights are constants again, as fusing needs them.
        model = model.into_decluttered()?;
    }
    if !tract_conv {
        model = super::pool_fuse::mark_max_pools(fuse_convs(model, precision)?)?;
    }
    let mut model = super::rewrite::for_gpu(model)?;
    if precision == Precision::Fp16 {
        model = float32_edges(model)?;
    }
    Ok(model)
}

/// The element types [`FusedConv`] computes in: float32, and half
/// precision (the model after `f32_to_f16`).
fn fusable_dt(dt: DatumType) -> bool {
    dt == f32::datum_type() || dt == f16::datum_type()
}

/// tract's `f32_to_f16` makes the model's inputs and outputs half precision
/// too; this puts float32 back at the edges (a float32 source cast to f16,
/// each f16 output cast to float32), so callers see the model they loaded.
fn float32_edges(mut model: TypedModel) -> TractResult<TypedModel> {
    let mut inputs = model.input_outlets()?.to_vec();
    for input in inputs.iter_mut() {
        let fact = model.outlet_fact(*input)?.clone();
        if fact.datum_type != f16::datum_type() {
            continue;
        }
        let name = model.node(input.node).name.clone();
        model.node_mut(input.node).name = format!("{name}.f16");
        let successors = model.node(input.node).outputs[input.slot]
            .successors
            .clone();
        let source = model.add_source(&name, f32::fact(fact.shape.iter()))?;
        let cast =
            model.wire_node(format!("{name}.to-f16"), cast(f16::datum_type()), &[source])?[0];
        for inlet in successors {
            model.add_edge(cast, inlet)?;
        }
        *input = source;
    }
    model.set_input_outlets(&inputs)?;
    let mut outputs = model.output_outlets()?.to_vec();
    for (ix, output) in outputs.iter_mut().enumerate() {
        if model.outlet_fact(*output)?.datum_type == f16::datum_type() {
            let name = format!("{}.to-f32-{ix}", model.node(output.node).name);
            *output = model.wire_node(name, cast(f32::datum_type()), &[*output])?[0];
        }
    }
    model.select_output_outlets(&outputs)?;
    model.into_compact()
}

/// Rewrites every convolution cuDNN can take (see the module's list) into a
/// [`FusedConv`] computing in `precision`, with the residual add and ReLU
/// that follow it where the graph has them. Other nodes are left alone.
pub fn fuse_convs(mut model: TypedModel, precision: Precision) -> TractResult<TypedModel> {
    Rewriter::default()
        .with_rule_for("anemone-fuse-conv", fuse_rule)
        .with_rule_for("anemone-fuse-1x1-einsum", einsum_rule)
        .rewrite(&precision, &mut model)?;
    Ok(model)
}

/// Whether cuDNN takes this convolution as [`FusedConv`] does: float32 or
/// half NCHW 2-D (input, weights and bias of one type), OIHW weights,
/// constant weights and bias, symmetric padding.
pub fn fusable(model: &TypedModel, node: &TypedNode, conv: &Conv) -> TractResult<bool> {
    let facts = model.node_input_facts(node.id)?;
    if facts.len() != 3
        || conv.q_params.is_some()
        || !fusable_dt(facts[0].datum_type)
        || facts
            .iter()
            .any(|f| f.datum_type != facts[0].datum_type || !f.is_plain())
        || facts[1].konst.is_none()
        || facts[2].konst.is_none()
        || conv.kernel_fmt != KernelFormat::OIHW
        || !conv.pool_spec.data_format.has_n()
        || conv.pool_spec.data_format.c_is_last()
        || conv.pool_spec.kernel_shape.len() != 2
        || facts[0].rank() != 4
    {
        return Ok(false);
    }
    let shape = conv.pool_spec.data_format.shape(&facts[0].shape)?;
    let symmetric = conv
        .pool_spec
        .computed_padding(shape.hw_dims())
        .iter()
        .all(|p| p.pad_before == p.pad_after);
    Ok(symmetric)
}

/// The node that alone reads `outlet`, if exactly one does and the outlet is
/// not a model output.
fn sole_successor(model: &TypedModel, outlet: OutletId) -> Option<&TypedNode> {
    let succ = &model.node(outlet.node).outputs[outlet.slot].successors;
    if succ.len() != 1 || model.output_outlets().ok()?.contains(&outlet) {
        return None;
    }
    Some(model.node(succ[0].node))
}

/// `Max(y, 0)` with a constant all-zero operand: how tract spells ONNX `Relu`.
fn is_relu(model: &TypedModel, node: &TypedNode, input: OutletId) -> TractResult<bool> {
    let Some(op) = node.op_as::<TypedBinOp>() else {
        return Ok(false);
    };
    if !op.0.is::<Max>() || node.inputs.len() != 2 {
        return Ok(false);
    }
    let other = if node.inputs[0] == input {
        node.inputs[1]
    } else {
        node.inputs[0]
    };
    let fact = model.outlet_fact(other)?;
    Ok(match &fact.konst {
        Some(k) => fusable_dt(k.datum_type()) && k.is_all_zero()?,
        None => false,
    })
}

/// The residual operand when `node` is `Add(input, z)` with `z` of `input`'s
/// shape and type.
fn residual_of(
    model: &TypedModel,
    node: &TypedNode,
    input: OutletId,
) -> TractResult<Option<OutletId>> {
    let Some(op) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if !op.0.is::<Add>() || node.inputs.len() != 2 || node.inputs[0] == node.inputs[1] {
        return Ok(None);
    }
    let z = if node.inputs[0] == input {
        node.inputs[1]
    } else {
        node.inputs[0]
    };
    let (yf, zf) = (model.outlet_fact(input)?, model.outlet_fact(z)?);
    Ok((yf.shape == zf.shape && yf.datum_type == zf.datum_type && zf.is_plain()).then_some(z))
}

/// A 1×1, unpadded, stride-1 convolution reading `Downsample`s of `x` on its
/// spatial axes (modulo 0): `x` and the strides that reproduce them.
fn strided_source(
    model: &TypedModel,
    input: OutletId,
    conv: &Conv,
) -> TractResult<Option<(OutletId, [usize; 2])>> {
    let spec = &conv.pool_spec;
    let unpadded = match &spec.padding {
        PaddingSpec::Valid => true,
        PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, _) => {
            b.iter().chain(a.iter()).all(|p| *p == 0)
        }
        _ => false,
    };
    if spec.kernel_shape.iter().any(|k| *k != 1)
        || spec.strides().iter().any(|s| *s != 1)
        || !unpadded
    {
        return Ok(None);
    }
    let (mut wire, mut strides) = (input, [1usize, 1]);
    while let Some(ds) = model.node(wire.node).op_as::<Downsample>() {
        // Axes 2 and 3 are H and W (NCHW, checked by `fusable`).
        let Some(slot) = ds.axis.checked_sub(2).filter(|s| *s < 2) else {
            break;
        };
        if ds.modulo != 0 || ds.stride <= 0 || strides[slot] != 1 {
            break;
        }
        strides[slot] = ds.stride as usize;
        wire = model.node(wire.node).inputs[0];
    }
    Ok((strides != [1, 1]).then_some((wire, strides)))
}

fn fuse_rule(
    precision: &Precision,
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    conv: &Conv,
) -> TractResult<Option<TypedModelPatch>> {
    if !fusable(model, node, conv)? {
        return Ok(None);
    }
    let mut conv = conv.clone();
    let mut x = node.inputs[0];
    if let Some((source, strides)) = strided_source(model, x, &conv)? {
        conv.pool_spec.strides = Some(tvec!(strides[0], strides[1]));
        conv.pool_spec.padding = PaddingSpec::Valid;
        x = source;
    }
    let facts = model.node_input_facts(node.id)?;
    let channels = conv.pool_spec.output_channels;
    let bias = facts[2].konst.clone().expect("checked by fusable");
    let bias = if bias.len() == channels {
        bias.into_tensor().into_shape(&[channels])?
    } else if bias.len() == 1 {
        let value = bias
            .cast_to::<f32>()?
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .next()
            .unwrap_or(0.0);
        tract_ndarray::Array1::from_elem(channels, value)
            .into_tensor()
            .cast_to_dt(bias.datum_type())?
            .into_owned()
    } else {
        return Ok(None);
    };
    let weights = Weights::Wire(node.inputs[1]);
    fuse_tail(*precision, model, node, name, conv, x, weights, bias).map(Some)
}

/// The weights of the fused convolution: the model's, or a new constant.
enum Weights {
    Wire(OutletId),
    Const(Tensor),
}

/// tract's declutter turns a 1×1 convolution into `EinSum NIHW,OI->NOHW`
/// (behind `Downsample`s when strided) and its bias into an `Add`: this
/// turns them back into one [`FusedConv`], so cuDNN reads the strided
/// pixels and adds the bias itself.
fn einsum_rule(
    precision: &Precision,
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    op: &EinSum,
) -> TractResult<Option<TypedModelPatch>> {
    if op.q_params.is_some()
        || !fusable_dt(op.operating_dt)
        || op.axes.to_string() != "NIHW,OI->NOHW"
        || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let (xf, wf) = (
        model.outlet_fact(node.inputs[0])?,
        model.outlet_fact(node.inputs[1])?,
    );
    let Some(w) = wf.konst.clone() else {
        return Ok(None);
    };
    let dt = op.operating_dt;
    if xf.datum_type != dt
        || w.datum_type() != dt
        || !xf.is_plain()
        || w.rank() != 2
        || xf.rank() != 4
    {
        return Ok(None);
    }
    let (o, i) = (w.shape()[0], w.shape()[1]);
    let spec = PoolSpec {
        data_format: DataFormat::NCHW,
        kernel_shape: tvec!(1, 1),
        padding: PaddingSpec::Valid,
        dilations: None,
        strides: None,
        input_channels: i,
        output_channels: o,
    };
    let mut conv = Conv::new(spec, KernelFormat::OIHW, 1, None);
    let mut x = node.inputs[0];
    if let Some((source, strides)) = strided_source(model, x, &conv)? {
        conv.pool_spec.strides = Some(tvec!(strides[0], strides[1]));
        x = source;
    }
    // The bias: a following Add of a constant with one value per channel.
    let mut head = node;
    let mut bias = Tensor::zero_dt(dt, &[o])?;
    if let Some(next) = sole_successor(model, node.id.into()) {
        if let Some(b) = channel_bias(model, next, node.id.into(), o, dt)? {
            bias = b;
            head = next;
        }
    }
    let weights = Weights::Const(w.into_tensor().into_shape(&[o, i, 1, 1])?);
    fuse_tail(*precision, model, head, name, conv, x, weights, bias).map(Some)
}

/// When `node` is `Add(input, c)` with `c` a constant of `channels` values
/// of type `dt` along axis 1 of a rank-4 tensor: those values.
fn channel_bias(
    model: &TypedModel,
    node: &TypedNode,
    input: OutletId,
    channels: usize,
    dt: DatumType,
) -> TractResult<Option<Tensor>> {
    if !node.op_as::<TypedBinOp>().is_some_and(|b| b.0.is::<Add>()) || node.inputs.len() != 2 {
        return Ok(None);
    }
    let other = if node.inputs[0] == input {
        node.inputs[1]
    } else {
        node.inputs[0]
    };
    let fact = model.outlet_fact(other)?;
    let Some(k) = &fact.konst else {
        return Ok(None);
    };
    let mut shape: Vec<usize> = k.shape().to_vec();
    while shape.len() < 4 {
        shape.insert(0, 1);
    }
    if k.datum_type() != dt || shape != [1, channels, 1, 1] {
        return Ok(None);
    }
    Ok(Some(k.clone().into_tensor().into_shape(&[channels])?))
}

/// Wires a [`FusedConv`] for `conv(x) + bias`, whose last replaced node so
/// far is `head`, taking in the residual add and ReLU that follow.
#[allow(clippy::too_many_arguments)]
fn fuse_tail(
    precision: Precision,
    model: &TypedModel,
    head: &TypedNode,
    name: &str,
    conv: Conv,
    x: OutletId,
    weights: Weights,
    bias: Tensor,
) -> TractResult<TypedModelPatch> {
    // The chain the fused op replaces: head [→ add z → relu | → relu].
    let mut last = head;
    let mut z = None;
    if let Some(next) = sole_successor(model, last.id.into()) {
        if let Some(found) = residual_of(model, next, last.id.into())? {
            // Fused only with a ReLU after it: the identity activation limits
            // cuDNN to one algorithm, and tract adds as fast.
            if let Some(relu) = sole_successor(model, next.id.into()) {
                if is_relu(model, relu, next.id.into())? {
                    z = Some(found);
                    last = next;
                }
            }
        }
    }
    let mut relu = false;
    if let Some(next) = sole_successor(model, last.id.into()) {
        if is_relu(model, next, last.id.into())? {
            relu = true;
            last = next;
        }
    }
    let mut patch = TypedModelPatch::default();
    let x = patch.tap_model(model, x)?;
    let w = match weights {
        Weights::Wire(w) => patch.tap_model(model, w)?,
        Weights::Const(t) => patch.add_const(format!("{name}.weights"), t)?,
    };
    let mut inputs = tvec!(x, w, patch.add_const(format!("{name}.bias"), bias)?);
    if let Some(z) = z {
        inputs.push(patch.tap_model(model, z)?);
    }
    let op = FusedConv {
        conv,
        residual: z.is_some(),
        relu,
        precision,
    };
    let out = patch.wire_node(format!("{name}.fused"), op, &inputs)?[0];
    patch.shunt_outside(model, last.id.into(), out)?;
    Ok(patch)
}

#[cfg(test)]
#[path = "conv_fuse_tests.rs"]
mod tests;
