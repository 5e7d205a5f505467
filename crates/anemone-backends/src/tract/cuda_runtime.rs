//! anemone's CUDA runtime: tract-cuda's, plus anemone's own convolution.
//!
//! tract-cuda's runtime (`cuda`) translates a model with `CudaTransform`,
//! optimises it and plans it. This one does the same, with one step between
//! the translation and the optimisation: each [`FusedConv`] and
//! [`CudnnMaxPoolMark`] (made by `conv_fuse` and `pool_fuse` before the
//! translation; tract-cuda has no kernel for them, so it wired them on the
//! CPU, between copies to and from the host) becomes a [`CudnnConv`] or
//! [`CudnnMaxPool`] reading and writing the device tensors directly.
//!
//! The convolutions and pools run in one memory layout (`layout`): NCHW,
//! or NHWC (for tf32 models while CUDA graphs are on, or when
//! `ANEMONE_TRACT_CUDA_LAYOUT=nhwc` asks), with a [`CudnnRelayout`] on
//! each edge between them and anything else.
//!
//! tract-cuda registers the operators it translates in a private inventory,
//! so an outside crate cannot add one; a `register_cuda_op!` usable from
//! other crates (or a public `CudaOpTranslator`) upstream would make this
//! whole runtime a plain translator.

use super::conv_fuse::{FusedConv, Precision};
use super::cuda_conv::CudnnConv;
use super::cuda_pool::CudnnMaxPool;
use super::cuda_relayout::CudnnRelayout;
use super::layout::{self, insert_relayouts, Layout};
use super::pool_fuse::CudnnMaxPoolMark;
use tract_cuda::CudaTransform;
use tract_gpu::fact::{DeviceFact, DeviceTypedFactExt};
use tract_gpu::sync::{DeviceSync, DeviceSyncKind};
use tract_gpu::tensor::IntoDevice;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::runtime::{RunOptions, Runnable, Runtime};
use tract_onnx::tract_core::transform::ModelTransform;

/// tract-cuda's runtime with [`CudnnConv`] and [`CudnnMaxPool`] for the
/// convolutions and pools `conv_fuse` and `pool_fuse` marked.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnemoneCuda;

/// The one instance, for `super::Target`.
pub static ANEMONE_CUDA: AnemoneCuda = AnemoneCuda;

const MISSING: &str = "cuda runtime supported dependencies not found.";

impl Runtime for AnemoneCuda {
    fn name(&self) -> StaticName {
        "anemone-cuda".into()
    }

    fn check(&self) -> TractResult<()> {
        tract_cuda::utils::ensure_cuda_runtime_dependencies(MISSING)
    }

    /// As tract-cuda's `CudaRuntime::prepare_with_options`, with
    /// [`lower_to_cudnn`] after the translation.
    fn prepare_with_options(
        &self,
        mut model: TypedModel,
        options: &RunOptions,
    ) -> TractResult<Box<dyn Runnable>> {
        tract_cuda::utils::ensure_cuda_runtime_dependencies(MISSING)?;
        CudaTransform.transform(&mut model)?;
        lower_to_cudnn(&mut model)?;
        model.optimize()?;
        let options = RunOptions {
            skip_order_opt_ram: true,
            ..options.clone()
        };
        let mut plan = TypedSimplePlan::build(model, &options)?;
        if let Some(handler) = tract_gpu::turn_handler::DeviceTurnHandler::for_plan(
            &plan,
            options.memory_sizing_hints.as_ref(),
        )? {
            plan = plan.with_turn_handler(handler);
        }
        // The constants were uploaded asynchronously on this thread's stream;
        // other threads' streams read them, so wait for the uploads here.
        tract_cuda::with_cuda_stream(|stream| Ok(stream.context().synchronize()?))?;
        Ok(Box::new(Arc::new(plan)))
    }
}

/// Replaces every [`FusedConv`] (and [`CudnnMaxPoolMark`]) of a model
/// `CudaTransform` translated by a [`CudnnConv`] (a [`CudnnMaxPool`]) on the
/// device tensors around it: the copies to the host
/// before it and back to the device after it drop out, host constants
/// (weights, bias) become device constants. Returns how many it replaced.
pub fn lower_to_cudnn(model: &mut TypedModel) -> TractResult<usize> {
    // One layout for the model's cuDNN operators (`layout`), where it has a
    // convolution. A convolution whose kernel is not a constant (which NHWC
    // needs rearranged) and any operator on a tensor that is not 4-D stay in
    // NCHW.
    let convs: Vec<&FusedConv> = model
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<FusedConv>())
        .collect();
    let layout = if convs.is_empty() {
        Layout::Nchw
    } else {
        let tensor_cores = convs
            .iter()
            .all(|c| matches!(c.precision, Precision::Tf32 | Precision::Fp16));
        Layout::configured(Layout::default_for(
            tensor_cores,
            super::cuda_graph::enabled(),
        ))
    };
    // Called for the convolutions and pools only: they have an input.
    let rank4 = |model: &TypedModel, node: &TypedNode| {
        node.inputs
            .first()
            .is_some_and(|&i| model.outlet_fact(i).is_ok_and(|f| f.rank() == 4))
    };
    // The operator replacing `node`, and whether it reads a KRSC kernel.
    let device_op = |model: &TypedModel, node: &TypedNode| -> Option<(Box<dyn TypedOp>, bool)> {
        if !node.op_is::<FusedConv>() && !node.op_is::<CudnnMaxPoolMark>() {
            return None;
        }
        let layout = if rank4(model, node) {
            layout
        } else {
            Layout::Nchw
        };
        if let Some(op) = node.op_as::<FusedConv>() {
            // A host constant: `device_wire` uploads it, rearranged. (One
            // already on the device would be read as it is.)
            let kernel_const = node.inputs.get(1).is_some_and(|&k| {
                model.node(k.node).op_is::<Const>()
                    && model
                        .outlet_fact(k)
                        .is_ok_and(|f| f.as_device_fact().is_none())
            });
            let layout = if kernel_const { layout } else { Layout::Nchw };
            let krsc = layout == Layout::Nhwc;
            Some((Box::new(CudnnConv(op.clone(), layout)), krsc))
        } else {
            node.op_as::<CudnnMaxPoolMark>().map(|op| {
                (
                    Box::new(CudnnMaxPool(op.clone(), layout)) as Box<dyn TypedOp>,
                    false,
                )
            })
        }
    };
    let ids: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| device_op(model, n).is_some())
        .map(|n| n.id)
        .collect();
    for &id in &ids {
        let node = model.node(id).clone();
        // An NHWC convolution reads its kernel (input 1) in KRSC order.
        let (op, krsc_kernel) = device_op(model, &node).expect("filtered above; this is a bug");
        let mut patch = TypedModelPatch::default();
        let mut inputs = tvec!();
        for (ix, &input) in node.inputs.iter().enumerate() {
            let krsc = krsc_kernel && ix == 1;
            inputs.push(device_wire(model, &mut patch, &node.name, ix, input, krsc)?);
        }
        let out = patch.wire_node(format!("{}.cudnn", node.name), op, &inputs)?[0];
        let mut host_readers = model.output_outlets()?.contains(&node.id.into());
        for succ in &node.outputs[0].successors {
            let reader = model.node(succ.node);
            match reader.op_as::<DeviceSync>() {
                Some(sync) if sync.kind == DeviceSyncKind::ToDevice => {
                    patch.shunt_outside(model, reader.id.into(), out)?
                }
                _ => host_readers = true,
            }
        }
        if host_readers {
            let host = patch.wire_node(
                format!("{}.to-host", node.name),
                DeviceSync::new(DeviceSyncKind::ToHost),
                &[out],
            )?[0];
            patch.shunt_outside(model, node.id.into(), host)?;
        }
        patch.apply(model)?;
    }
    // The replaced nodes go first: their host copies would count as readers.
    model.compact()?;
    let nhwc_slots = |node: &TypedNode| -> Option<TVec<usize>> {
        if let Some(conv) = node.op_as::<CudnnConv>() {
            // The input, and the residual (of the output's shape) if any.
            let residual = conv.0.residual.then_some(3);
            (conv.1 == Layout::Nhwc).then(|| std::iter::once(0).chain(residual).collect())
        } else {
            node.op_as::<CudnnMaxPool>()
                .filter(|p| p.1 == Layout::Nhwc)
                .map(|_| tvec!(0))
        }
    };
    let relayouts = insert_relayouts(model, nhwc_slots, |to| Box::new(CudnnRelayout(to)))?;
    tracing::debug!(
        lowered = ids.len(),
        layout = layout.as_str(),
        relayouts,
        "tract-cuda: cuDNN operators"
    );
    model.compact()?;
    Ok(ids.len())
}

/// `input` of a CPU-wired node, as a device tensor wire in `patch`; a
/// constant convolution kernel in KRSC order if `krsc`.
fn device_wire(
    model: &TypedModel,
    patch: &mut TypedModelPatch,
    name: &str,
    ix: usize,
    input: OutletId,
    krsc: bool,
) -> TractResult<OutletId> {
    let producer = model.node(input.node);
    if model.outlet_fact(input)?.as_device_fact().is_some() {
        return patch.tap_model(model, input);
    }
    if producer
        .op_as::<DeviceSync>()
        .is_some_and(|s| s.kind == DeviceSyncKind::ToHost)
    {
        return patch.tap_model(model, producer.inputs[0]);
    }
    if let Some(konst) = producer.op_as::<Const>() {
        let value = if krsc {
            layout::krsc(konst.val())?.into_arc_tensor()
        } else {
            Arc::clone(konst.val())
        };
        let fact: TypedFact = Arc::clone(&value).try_into()?;
        let device = value.into_device()?.into_tensor().into_arc_tensor();
        let op = Const::new_with_exotic_fact(device, Box::new(DeviceFact::from_host(fact)?))?;
        return Ok(patch.wire_node(format!("{name}.device-{ix}"), op, &[])?[0]);
    }
    let wire = patch.tap_model(model, input)?;
    Ok(patch.wire_node(
        format!("{name}.to-device-{ix}"),
        DeviceSync::new(DeviceSyncKind::ToDevice),
        &[wire],
    )?[0])
}

/// The runtime, for `super::Target::runtime_impl`.
pub fn runtime() -> &'static dyn Runtime {
    &ANEMONE_CUDA
}

/// The environment variable that, set to `tract`, keeps tract-cuda's own
/// convolution (no fusion, no algorithm choice): for comparisons.
pub const CONV_ENV: &str = "ANEMONE_TRACT_CUDA_CONV";

/// The rewrites before the translation: [`super::conv_fuse::for_cuda`],
/// with tract-cuda's own convolution when [`CONV_ENV`] is `tract`.
pub fn rewrite(model: TypedModel, precision: Precision) -> TractResult<TypedModel> {
    let tract_conv = std::env::var(CONV_ENV).is_ok_and(|v| v == "tract");
    super::conv_fuse::for_cuda(model, precision, tract_conv)
}

/// Sets the calling thread's cuBLAS math mode (tract-cuda's matrix products)
/// for `precision`. The handle is the thread's, shared by every model the
/// thread runs, so it is set before each inference.
pub fn set_cublas_math(precision: Precision) -> TractResult<()> {
    use cudarc::cublas::sys::{cublasMath_t, cublasSetMathMode, cublasStatus_t};
    let mode = match precision {
        Precision::Fp32 | Precision::Fp16 => cublasMath_t::CUBLAS_DEFAULT_MATH,
        Precision::Tf32 => cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
    };
    tract_cuda::with_cuda_stream(|stream| {
        // SAFETY: the handle is this thread's live cuBLAS handle.
        let status = unsafe { cublasSetMathMode(*stream.cublas().handle(), mode) };
        ensure!(
            status == cublasStatus_t::CUBLAS_STATUS_SUCCESS,
            "cublasSetMathMode: {status:?}"
        );
        Ok(())
    })
}
