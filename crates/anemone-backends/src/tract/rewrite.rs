//! Model rewrites applied before a tract runtime prepares a model.
//!
//! tract's GPU runtimes translate the operators they have kernels for and run
//! the others on the CPU, copying the tensors across both ways. In
//! tract-cuda 0.23.9, three common operators are among the others:
//!
//! - `MaxPool`: in a ResNet it sits right after the first convolution, on
//!   its largest tensor (100 MB at batch 32);
//! - `Downsample`: tract's declutter turns a strided 1×1 convolution (ResNet
//!   shortcuts) into a Downsample and a plain convolution;
//! - `GeluExact`: GELU with erf, in most transformer MLPs (45 ms of 70 at
//!   batch 32 on an H100 for a 4-layer encoder).
//!
//! [`for_gpu`] expresses each with operators the GPU runtime has (constant
//! Pad, Reshape, Slice, Max, Mul, Add, Erf), so the network stays on the
//! device. Each rewrite computes the same function; the tests check that on
//! tract's CPU runtime.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Pad, PadMode, Slice};
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::downsample::Downsample;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::{add, erf, max, mul};
use tract_onnx::tract_core::ops::nn::GeluExact;

/// Every rewrite here: [`max_pool_as_slices`], Downsample as a strided
/// slice, exact GELU through Erf.
pub fn for_gpu(mut model: TypedModel) -> TractResult<TypedModel> {
    Rewriter::default()
        .with_rule_for("anemone-max-pool-as-slices", max_pool_rule)
        .with_rule_for("anemone-downsample-as-slice", downsample_rule)
        .with_rule_for("anemone-gelu-through-erf", gelu_rule)
        .rewrite(&(), &mut model)?;
    Ok(model)
}

/// Rewrites every 2-D (or 1-D, 3-D) float `MaxPool` whose spatial sizes are
/// known and whose dilations are 1 into a chain of Pad, Reshape, Slice and
/// Max. Other pools are left as they are.
///
/// Max pooling is separable: the max over a window is the max over its rows
/// of the max along each row. Along one axis of length `L`, with kernel `k`,
/// stride `s`, padding `pb` before and `O` outputs, output `o` reads padded
/// positions `s·o + j` for `j < k`, that is row `o + j / s`, column `j % s`
/// of the padded axis reshaped to `[M, s]` with `M = O + (k - 1) / s`. So the
/// axis is padded with -inf (or cut) to `M·s`, split, and each of the `k`
/// taps is one slice; the taps are combined with `Max`.
pub fn max_pool_as_slices(mut model: TypedModel) -> TractResult<TypedModel> {
    Rewriter::default()
        .with_rule_for("anemone-max-pool-as-slices", max_pool_rule)
        .rewrite(&(), &mut model)?;
    Ok(model)
}

/// `Downsample { axis, stride s > 0, modulo m }` keeps positions `m + s·i`:
/// the axis from `m` on, padded at the end to a multiple of `s`, split into
/// `[O, s]`, column 0.
fn downsample_rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    op: &Downsample,
) -> TractResult<Option<TypedModelPatch>> {
    let fact = model.outlet_fact(node.inputs[0])?;
    let Ok(len) = fact.shape[op.axis].to_usize() else {
        return Ok(None);
    };
    let (axis, m) = (op.axis, op.modulo);
    if op.stride <= 0 || m >= len || !fact.is_plain() {
        return Ok(None);
    }
    let s = op.stride as usize;
    let outputs = (len - m).div_ceil(s);
    let mut patch = TypedModelPatch::default();
    let mut wire = patch.tap_model(model, node.inputs[0])?;
    if m > 0 {
        wire = patch.wire_node(format!("{name}.skip"), Slice::new(axis, m, len), &[wire])?[0];
    }
    if s > 1 {
        let target = outputs * s;
        if target > len - m {
            let mut pads = vec![(0, 0); fact.rank()];
            pads[axis] = (0, target - (len - m));
            let zero = tensor0(0f32)
                .cast_to_dt(fact.datum_type)?
                .into_owned()
                .into_arc_tensor();
            let pad = Pad::new(pads, PadMode::Constant(zero));
            wire = patch.wire_node(format!("{name}.pad"), pad, &[wire])?[0];
        }
        let split = AxisOp::Reshape(
            axis,
            tvec!(target.to_dim()),
            tvec!(outputs.to_dim(), s.to_dim()),
        );
        wire = patch.wire_node(format!("{name}.split"), split, &[wire])?[0];
        wire = patch.wire_node(format!("{name}.first"), Slice::new(axis + 1, 0, 1), &[wire])?[0];
        wire = patch.wire_node(format!("{name}.squeeze"), AxisOp::Rm(axis + 1), &[wire])?[0];
    }
    patch.shunt_outside(model, node.id.into(), wire)?;
    Ok(Some(patch))
}

/// `GeluExact(x) = 0.5·x·(1 + erf(x/√2))`, with tract's own Erf.
fn gelu_rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    op: &ElementWiseOp,
) -> TractResult<Option<TypedModelPatch>> {
    if op.0.downcast_ref::<GeluExact>().is_none() {
        return Ok(None);
    }
    let fact = model.outlet_fact(node.inputs[0])?;
    if !fact.datum_type.is_float() || !fact.is_plain() {
        return Ok(None);
    }
    let mut patch = TypedModelPatch::default();
    let x = patch.tap_model(model, node.inputs[0])?;
    let mut scalar = |suffix: &str, v: f32| -> TractResult<OutletId> {
        let t = tensor0(v)
            .cast_to_dt(fact.datum_type)?
            .into_owned()
            .broadcast_into_rank(fact.rank())?;
        patch.add_const(format!("{name}.{suffix}"), t)
    };
    let (inv_sqrt2, one, half) = (
        scalar("inv_sqrt2", std::f32::consts::FRAC_1_SQRT_2)?,
        scalar("one", 1.0)?,
        scalar("half", 0.5)?,
    );
    let scaled = patch.wire_node(format!("{name}.scaled"), mul(), &[x, inv_sqrt2])?[0];
    let e = patch.wire_node(format!("{name}.erf"), erf(), &[scaled])?[0];
    let e1 = patch.wire_node(format!("{name}.plus_one"), add(), &[e, one])?[0];
    let hx = patch.wire_node(format!("{name}.half_x"), mul(), &[x, half])?[0];
    let y = patch.wire_node(name, mul(), &[hx, e1])?[0];
    patch.shunt_outside(model, node.id.into(), y)?;
    Ok(Some(patch))
}

fn max_pool_rule(
    _ctx: &(),
    model: &TypedModel,
    node: &TypedNode,
    name: &str,
    op: &MaxPool,
) -> TractResult<Option<TypedModelPatch>> {
    let fact = model.outlet_fact(node.inputs[0])?;
    if op.with_index_outputs.is_some() || !fact.datum_type.is_float() {
        return Ok(None);
    }
    let spec = &op.pool_spec;
    if spec.dilations().iter().any(|d| *d != 1) {
        return Ok(None);
    }
    let shape = spec.data_format.shape(fact.shape.to_tvec())?;
    let Some(hw) = shape
        .hw_dims()
        .iter()
        .map(|d| d.to_usize().ok())
        .collect::<Option<TVec<usize>>>()
    else {
        return Ok(None);
    };
    let first_hw_axis = shape.h_axis();
    let padding = spec.computed_padding(&hw);
    let strides = spec.strides();
    let neg_inf = tensor0(f32::NEG_INFINITY)
        .cast_to_dt(fact.datum_type)?
        .into_owned()
        .into_arc_tensor();

    let mut patch = TypedModelPatch::default();
    let mut wire = patch.tap_model(model, node.inputs[0])?;
    for (i, pad) in padding.iter().enumerate() {
        let axis = first_hw_axis + i;
        let (k, s, len) = (spec.kernel_shape[i], strides[i], hw[i]);
        let (before, outputs) = (pad.pad_before, pad.convoluted);
        if k == 1 && s == 1 && before == 0 && outputs == len {
            continue;
        }
        let rows = outputs + (k - 1) / s;
        let target = rows * s;
        let after = target.saturating_sub(len + before);
        let prefix = format!("{name}.axis{axis}");
        if before > 0 || after > 0 {
            let mut pads = vec![(0, 0); fact.rank()];
            pads[axis] = (before, after);
            let op = Pad::new(pads, PadMode::Constant(neg_inf.clone()));
            wire = patch.wire_node(format!("{prefix}.pad"), op, &[wire])?[0];
        }
        if len + before > target {
            let op = Slice::new(axis, 0, target);
            wire = patch.wire_node(format!("{prefix}.cut"), op, &[wire])?[0];
        }
        if s > 1 {
            let split = AxisOp::Reshape(
                axis,
                tvec!(target.to_dim()),
                tvec!(rows.to_dim(), s.to_dim()),
            );
            wire = patch.wire_node(format!("{prefix}.split"), split, &[wire])?[0];
        }
        let mut best: Option<OutletId> = None;
        for j in 0..k {
            let (row, col) = (j / s, j % s);
            let tap = format!("{prefix}.tap{j}");
            let mut t = patch.wire_node(
                format!("{tap}.rows"),
                Slice::new(axis, row, row + outputs),
                &[wire],
            )?[0];
            if s > 1 {
                t = patch.wire_node(
                    format!("{tap}.col"),
                    Slice::new(axis + 1, col, col + 1),
                    &[t],
                )?[0];
                t = patch.wire_node(format!("{tap}.squeeze"), AxisOp::Rm(axis + 1), &[t])?[0];
            }
            best = Some(match best {
                None => t,
                Some(b) => patch.wire_node(format!("{tap}.max"), max(), &[b, t])?[0],
            });
        }
        wire = best.expect("a pooling kernel has at least one tap; this is a bug");
    }
    patch.shunt_outside(model, node.id.into(), wire)?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// A model holding one MaxPool, and the same model rewritten; both run on
    /// tract's CPU runtime and must agree exactly (max is exact).
    fn check(input: &[usize], kernel: &[usize], strides: &[usize], padding: PaddingSpec) {
        let spec = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: kernel.into(),
            padding,
            dilations: None,
            strides: Some(strides.into()),
            input_channels: input[1],
            output_channels: input[1],
        };
        let what = format!("input {input:?} kernel {kernel:?} strides {strides:?}");
        check_op(input, MaxPool::new(spec, None), 0.0, &what);
    }

    /// One op on a float input, the model as is and rewritten by [`for_gpu`]:
    /// the op must be gone and the outputs within `tol` of each other.
    fn check_op(input: &[usize], op: impl Into<Box<dyn TypedOp>>, tol: f32, what: &str) {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(input)).expect("source");
        let op = op.into();
        let op_name = op.name();
        let y = model.wire_node("op", op, &[x]).expect("wire")[0];
        model.select_output_outlets(&[y]).expect("outputs");
        let rewritten = for_gpu(model.clone()).expect("rewrite");
        assert!(
            !rewritten.nodes().iter().any(|n| n.op().name() == op_name),
            "{op_name} was not rewritten"
        );
        let n: usize = input.iter().product();
        // Distinct values with both signs, so -inf padding and every tap matter.
        let data: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 - 500.0).collect();
        let t = tract_ndarray::ArrayD::from_shape_vec(input, data)
            .expect("shape")
            .into_tensor();
        let want = model
            .into_runnable()
            .expect("plan")
            .run(tvec!(t.clone().into_tvalue()))
            .expect("run original");
        let got = rewritten
            .into_runnable()
            .expect("plan")
            .run(tvec!(t.into_tvalue()))
            .expect("run rewritten");
        assert_eq!(got[0].shape(), want[0].shape(), "shape");
        let (got, want) = (
            got[0].to_plain_array_view::<f32>().unwrap(),
            want[0].to_plain_array_view::<f32>().unwrap(),
        );
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() <= tol, "{what}: got {g}, want {w}");
        }
    }

    fn explicit(before: &[usize], after: &[usize], ceil: bool) -> PaddingSpec {
        PaddingSpec::ExplicitOnnxPool(before.into(), after.into(), ceil)
    }

    #[test]
    fn downsample_is_a_strided_slice() {
        for (len, stride, modulo) in [(8, 2, 0), (7, 2, 0), (7, 2, 1), (10, 3, 2), (5, 1, 1)] {
            let op = Downsample::new(2, stride, modulo);
            let what = format!("len {len} stride {stride} modulo {modulo}");
            check_op(&[1, 2, len, 3], op, 0.0, &what);
        }
    }

    #[test]
    fn gelu_exact_through_erf() {
        let op = tract_onnx::tract_core::ops::nn::gelu_exact::gelu_exact();
        check_op(&[2, 3, 50], op, 1e-6, "gelu");
    }

    #[test]
    fn resnet_stem_pool_3x3_stride_2_pad_1() {
        check(
            &[2, 3, 12, 12],
            &[3, 3],
            &[2, 2],
            explicit(&[1, 1], &[1, 1], false),
        );
        check(
            &[1, 2, 11, 13],
            &[3, 3],
            &[2, 2],
            explicit(&[1, 1], &[1, 1], false),
        );
    }

    #[test]
    fn pool_2x2_stride_2_no_padding() {
        check(&[1, 4, 8, 8], &[2, 2], &[2, 2], PaddingSpec::Valid);
        check(&[1, 1, 9, 7], &[2, 2], &[2, 2], PaddingSpec::Valid);
    }

    #[test]
    fn uneven_kernel_stride_and_ceil_mode() {
        check(
            &[1, 2, 10, 9],
            &[3, 2],
            &[1, 3],
            explicit(&[0, 1], &[2, 0], false),
        );
        check(
            &[1, 2, 10, 9],
            &[3, 3],
            &[2, 2],
            explicit(&[0, 0], &[0, 0], true),
        );
        check(
            &[1, 1, 7, 7],
            &[5, 4],
            &[3, 2],
            explicit(&[2, 1], &[2, 2], false),
        );
    }
}
