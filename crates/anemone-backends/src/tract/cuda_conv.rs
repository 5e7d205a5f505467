//! [`CudnnConv`]: a [`FusedConv`] run on the GPU as one
//! `cudnnConvolutionBiasActivationForward` call (`y = act(conv(x) + z +
//! bias)`), through cudarc's cuDNN bindings and tract-cuda's per-thread
//! stream and cuDNN handle.
//!
//! Against tract-cuda 0.23.9's own convolution (`CudaConv` with
//! `ConvCudnn`), it:
//! - chooses the algorithm once per (operator, input shape, batch rounded up
//!   to a power of two: [`conv_algo::shape_bucket`]) by timing the
//!   candidates (policy in `conv_algo`), shared by every thread; tract-cuda
//!   always runs `IMPLICIT_PRECOMP_GEMM`;
//! - keeps one workspace per thread, grown when a shape needs more, where
//!   tract-cuda allocates (and frees) one on every call;
//! - keeps the cuDNN descriptors per thread, plan state and node, rebuilt
//!   only when the input shape changes (as tract-cuda does);
//! - adds bias, residual and ReLU inside the cuDNN call, where tract-cuda
//!   launches one element-wise kernel for each;
//! - sets the math type from [`Precision`]: `CUDNN_FMA_MATH` for fp32 (true
//!   float32), `CUDNN_DEFAULT_MATH` for tf32, `CUDNN_TENSOR_OP_MATH` for
//!   fp16 (half tensors, float32 accumulation). tract-cuda leaves cuDNN's
//!   default, which on Ampere and later already permits TF32.
//! - runs on NCHW activations, or NHWC ones with a KRSC kernel when the
//!   model's layout is NHWC (`layout`, opt-in).
//!
//! cuDNN runs the identity activation (a convolution with bias but no ReLU)
//! with `IMPLICIT_PRECOMP_GEMM` only, so those are not benchmarked. For a
//! ReLU convolution the benchmark also times `SPLIT`: the identity call
//! and then cuDNN's ReLU in place. Kernel by kernel (docs/PERFORMANCE.md,
//! "Per kernel, corrected"), `IMPLICIT_PRECOMP_GEMM` runs the tensor-core
//! kernels with the ReLU fused or not; `SPLIT` is picked where it measures
//! faster on the stream.
//!
//! All of this would fit inside tract-cuda's `ConvCudnn` (its `ConvKernel`
//! trait takes the bias already); it is here because tract-cuda's
//! translator registry is private.

use super::conv_algo::{self, Measured};
use super::conv_fuse::{FusedConv, Precision};
use super::cuda_workspace;
use super::layout::Layout;
use cudarc::cudnn::sys::{
    cudnnActivationMode_t, cudnnConvolutionFwdAlgo_t as Algo, cudnnConvolutionMode_t,
    cudnnMathType_t, cudnnNanPropagation_t, cudnnTensorFormat_t,
};
use cudarc::cudnn::{
    ActivationDescriptor, ActivationForward, ConvBiasActivationForward, ConvDescriptor, Cudnn,
    CudnnDataType, FilterDescriptor, TensorDescriptor,
};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaStream, CudaView};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tract_cuda::kernels::{get_cuda_view, get_cuda_view_mut};
use tract_gpu::tensor::{DeviceTensor, DeviceTensorExt};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// The forward algorithms, in `cudnnConvolutionFwdAlgo_t` order.
const ALGOS: [Algo; 8] = [
    Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
    Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
    Algo::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
    Algo::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
    Algo::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
    Algo::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
    Algo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
    Algo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
];
const PRECOMP: usize = 1;
/// The candidate after the fused algorithms, for ReLU convolutions only: the
/// fused call with the identity activation (`IMPLICIT_PRECOMP_GEMM`) and
/// then cuDNN's ReLU in place.
const SPLIT: usize = conv_algo::SPLIT;
const _: () = assert!(ALGOS.len() == SPLIT && conv_algo::CANDIDATES.len() == SPLIT + 1);

/// The algorithm of a candidate's fused call.
fn algorithm(candidate: usize) -> Algo {
    let fused = if candidate == SPLIT {
        PRECOMP
    } else {
        candidate
    };
    ALGOS[fused]
}

/// A [`FusedConv`] on device tensors whose activations (input, residual,
/// output) are in a [`Layout`]. Inputs as [`FusedConv`]'s; in NHWC the
/// kernel's bytes are in KRSC order ([`super::layout::krsc`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CudnnConv(pub FusedConv, pub Layout);

impl Op for CudnnConv {
    fn name(&self) -> StaticName {
        "AnemoneCudnnConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.0.info()?;
        info.push(format!("layout: {}", self.1.as_str()));
        Ok(info)
    }

    op_as_typed_op!();
}

impl TypedOp for CudnnConv {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        tract_gpu::utils::facts_to_device_facts(inputs, |facts| self.0.output_facts(facts))
            .context("computing the facts of AnemoneCudnnConv")
    }
}

/// The element types the fused call runs on: float32, and half with
/// float32 accumulation (cuDNN's `PSEUDO_HALF_CONFIG`); `cuda_pool`'s too.
pub(super) trait Elem: CudnnDataType<Scalar = f32> + Copy + 'static {
    const ONE: Self;
    const ZERO: Self;
}

impl Elem for f32 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;
}

impl Elem for f16 {
    const ONE: Self = f16::ONE;
    const ZERO: Self = f16::ZERO;
}

/// The descriptors of one fused call on `T` tensors; the convolution
/// computes (accumulates) in float32 either way.
struct Typed<T: Elem> {
    conv: ConvDescriptor<f32>,
    /// The fused call's activation: the operator's (ReLU or identity).
    act: ActivationDescriptor<f32>,
    /// The identity, for [`SPLIT`]'s fused call.
    identity: ActivationDescriptor<f32>,
    /// ReLU on its own, for [`SPLIT`]'s second call.
    relu: ActivationDescriptor<T>,
    x: TensorDescriptor<T>,
    w: FilterDescriptor<T>,
    y: TensorDescriptor<T>,
    bias: TensorDescriptor<T>,
}

impl<T: Elem> Typed<T> {
    /// The fused call these descriptors describe; `z` (the residual) is
    /// described like the output `y`.
    fn forward(&self, candidate: usize) -> ConvBiasActivationForward<'_, T, f32, f32, T> {
        ConvBiasActivationForward {
            conv: &self.conv,
            act: if candidate == SPLIT {
                &self.identity
            } else {
                &self.act
            },
            x: &self.x,
            w: &self.w,
            z: &self.y,
            bias: &self.bias,
            y: &self.y,
        }
    }
}

/// [`Typed`] for the tensors' element type.
enum ByType {
    F32(Typed<f32>),
    F16(Typed<f16>),
}

/// What one thread keeps for one node of one plan state.
struct Descriptors {
    input_shape: TVec<usize>,
    typed: ByType,
    candidate: usize,
}

impl Descriptors {
    /// Bytes of workspace `candidate` needs here, or cuDNN's refusal.
    fn workspace_size(&self, candidate: usize) -> Result<usize, cudarc::cudnn::CudnnError> {
        let algo = algorithm(candidate);
        match &self.typed {
            ByType::F32(t) => t.forward(candidate).get_workspace_size(algo),
            ByType::F16(t) => t.forward(candidate).get_workspace_size(algo),
        }
    }
}

thread_local! {
    /// Descriptors, keyed like tract-cuda's conv scratch: (plan state,
    /// node), one per input shape seen (up to [`SHAPES_KEPT`], the most
    /// recent last). A dynamic batch changes the batch size from one call
    /// to the next: rebuilding every convolution's descriptors each time
    /// cost more than the convolutions of a small batch.
    static SCRATCH: RefCell<HashMap<(SessionId, usize), Vec<Descriptors>>> =
        RefCell::new(HashMap::new());
}

/// Input shapes whose descriptors one node keeps on one thread: enough for
/// every batch size a dynamic batcher forms below 64 rows in steps, few
/// enough that a model fed ever-new image sizes does not grow without end.
const SHAPES_KEPT: usize = 32;

/// A benchmark's result: the candidate chosen, and every one as measured.
struct Choice {
    candidate: usize,
    measured: Vec<Measured>,
}

type ChoiceKey = (FusedConv, Layout, TVec<usize>);

/// The candidate chosen for each (operator, input shape bucket), for every thread.
fn chosen() -> &'static Mutex<HashMap<ChoiceKey, Choice>> {
    static CHOSEN: OnceLock<Mutex<HashMap<ChoiceKey, Choice>>> = OnceLock::new();
    CHOSEN.get_or_init(Mutex::default)
}

/// The algorithms chosen so far in this process, as (kernel, strides,
/// input shape, choice, every candidate's time) lines: for diagnostics and
/// benchmarks.
pub fn chosen_algorithms() -> Vec<String> {
    let chosen = chosen().lock().unwrap_or_else(|e| e.into_inner());
    let mut lines: Vec<String> = chosen
        .iter()
        .map(|((op, layout, shape), choice)| {
            let spec = &op.conv.pool_spec;
            format!(
                "kernel {:?} strides {:?} {} {} input {:?}: {} ({})",
                spec.kernel_shape,
                spec.strides(),
                op.precision.as_str(),
                layout.as_str(),
                shape,
                conv_algo::CANDIDATES[choice.candidate],
                conv_algo::describe(&choice.measured)
            )
        })
        .collect();
    lines.sort();
    lines
}

fn dims(shape: &[usize]) -> Vec<i32> {
    shape.iter().map(|d| *d as i32).collect()
}

fn descriptors(
    cudnn: &Arc<Cudnn>,
    op: &FusedConv,
    layout: Layout,
    dt: DatumType,
    x: &[usize],
    w: &[usize],
    y: &[usize],
) -> TractResult<Descriptors> {
    let typed = if dt == f16::datum_type() {
        ByType::F16(typed::<f16>(cudnn, op, layout, x, w, y)?)
    } else {
        ensure!(
            dt == f32::datum_type(),
            "AnemoneCudnnConv on {dt:?} tensors"
        );
        ByType::F32(typed::<f32>(cudnn, op, layout, x, w, y)?)
    };
    Ok(Descriptors {
        input_shape: x.into(),
        typed,
        candidate: PRECOMP,
    })
}

fn typed<T: Elem>(
    cudnn: &Arc<Cudnn>,
    op: &FusedConv,
    layout: Layout,
    x: &[usize],
    w: &[usize],
    y: &[usize],
) -> TractResult<Typed<T>> {
    let spec = &op.conv.pool_spec;
    let shape = spec.data_format.shape(x)?;
    let padding = spec.computed_padding(shape.hw_dims());
    ensure!(padding.iter().all(|p| p.pad_before == p.pad_after));
    let pads: Vec<i32> = padding.iter().map(|p| p.pad_before as i32).collect();
    let strides: Vec<i32> = spec.strides().iter().map(|s| *s as i32).collect();
    let dilations: Vec<i32> = spec.dilations().iter().map(|d| *d as i32).collect();
    let mut conv = cudnn.create_convnd::<f32>(
        &pads,
        &strides,
        &dilations,
        cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
    )?;
    conv.set_group_count(op.conv.group as i32)?;
    conv.set_math_type(match op.precision {
        Precision::Fp32 => cudnnMathType_t::CUDNN_FMA_MATH,
        Precision::Tf32 => cudnnMathType_t::CUDNN_DEFAULT_MATH,
        Precision::Fp16 => cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
    })?;
    let mode = if op.relu {
        cudnnActivationMode_t::CUDNN_ACTIVATION_RELU
    } else {
        cudnnActivationMode_t::CUDNN_ACTIVATION_IDENTITY
    };
    let nan = cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN;
    let act = cudnn.create_activation::<f32>(mode, nan, 0.0)?;
    let identity = cudnn.create_activation::<f32>(
        cudnnActivationMode_t::CUDNN_ACTIVATION_IDENTITY,
        nan,
        0.0,
    )?;
    let relu =
        cudnn.create_activation::<T>(cudnnActivationMode_t::CUDNN_ACTIVATION_RELU, nan, 0.0)?;
    let c = y[1];
    // In NHWC the kernel is KRSC (`lower_to_cudnn` uploads it so), and the
    // kernel's format is what makes cuDNN take its NHWC kernels.
    let filter_format = match layout {
        Layout::Nchw => cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
        Layout::Nhwc => cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
    };
    Ok(Typed {
        conv,
        act,
        identity,
        relu,
        x: cudnn.create_nd_tensor::<T>(&dims(x), &layout.strides(x))?,
        w: cudnn.create_nd_filter::<T>(filter_format, &dims(w))?,
        y: cudnn.create_nd_tensor::<T>(&dims(y), &layout.strides(y))?,
        bias: cudnn.create_nd_tensor::<T>(&[1, c as i32, 1, 1], &[c as i32, 1, 1, 1])?,
    })
}

/// A byte view of a device tensor of `T` as `T`.
fn as_elem<'a, T>(v: &'a CudaView<'_, u8>) -> TractResult<CudaView<'a, T>> {
    // SAFETY: every tensor given to `launch` is of the descriptors' type
    // (one type for all, checked by `fusable` before the rewrite, and by the
    // facts since).
    unsafe { v.transmute::<T>(v.len() / size_of::<T>()) }.context("a tensor of another type")
}

/// One launch of `candidate` on the thread's workspace.
fn launch(
    d: &Descriptors,
    op: &FusedConv,
    candidate: usize,
    inputs: &[&DeviceTensor],
    output: &DeviceTensor,
) -> TractResult<()> {
    match &d.typed {
        ByType::F32(t) => launch_typed(t, op, candidate, inputs, output),
        ByType::F16(t) => launch_typed(t, op, candidate, inputs, output),
    }
}

fn launch_typed<T: Elem>(
    d: &Typed<T>,
    op: &FusedConv,
    candidate: usize,
    inputs: &[&DeviceTensor],
    output: &DeviceTensor,
) -> TractResult<()> {
    // With no residual, z is the output itself and alpha2 is 0, as cuDNN asks.
    let alpha2 = if op.residual { T::ONE } else { T::ZERO };
    let (x, w, bias) = (
        get_cuda_view(inputs[0]),
        get_cuda_view(inputs[1]),
        get_cuda_view(inputs[2]),
    );
    let z = get_cuda_view(if op.residual { inputs[3] } else { output });
    let (x, w, bias, z) = (
        as_elem::<T>(&x)?,
        as_elem::<T>(&w)?,
        as_elem::<T>(&bias)?,
        as_elem::<T>(&z)?,
    );
    let mut out = get_cuda_view_mut(output);
    let n = out.len() / size_of::<T>();
    // SAFETY: the output tensor has the input's type (made by `eval` so).
    let mut y = unsafe { out.transmute_mut::<T>(n) }.context("an output of another type")?;
    let fwd = d.forward(candidate);
    let algo = algorithm(candidate);
    cuda_workspace::with(|ws| {
        // SAFETY: the descriptors were built from these tensors' shapes and
        // type, all packed; the workspace is at least the algorithm's size.
        unsafe { fwd.launch(algo, ws, (T::ONE, alpha2), &x, &w, &z, &bias, &mut y) }
            .map_err(|e| anyhow!("cudnnConvolutionBiasActivationForward ({algo:?}): {e:?}"))
    })?;
    if candidate == SPLIT {
        // ReLU in place (cuDNN allows x and y to be one buffer).
        let x = get_cuda_view(output);
        let x = as_elem::<T>(&x)?;
        let relu = ActivationForward {
            act: &d.relu,
            x: &d.y,
            y: &d.y,
        };
        // SAFETY: x and y are the output, described by `d.y`.
        unsafe { relu.launch((T::ONE, T::ZERO), &x, &mut y) }
            .map_err(|e| anyhow!("cudnnActivationForward (ReLU): {e:?}"))?;
    }
    Ok(())
}

/// Times every candidate cuDNN accepts for this call (each fused algorithm,
/// then [`SPLIT`]) and returns them with the one [`conv_algo::choose`] picks
/// (the fixed algorithm if none ran).
fn benchmark(
    stream: &Arc<CudaStream>,
    d: &Descriptors,
    op: &FusedConv,
    inputs: &[&DeviceTensor],
    output: &DeviceTensor,
) -> TractResult<Choice> {
    // The candidates cuDNN accepts within the cap, each launched once
    // untimed (which also rules out those that fail to launch).
    let mut measured = vec![];
    for i in 0..=SPLIT {
        let Ok(workspace) = d.workspace_size(i) else {
            continue;
        };
        let mut m = Measured {
            algo: i,
            workspace,
            seconds: None,
        };
        if workspace <= conv_algo::WORKSPACE_CAP {
            cuda_workspace::reserve(stream, workspace)?;
            if launch(d, op, i, inputs, output).is_ok() {
                m.seconds = Some(f64::INFINITY);
            }
        }
        measured.push(m);
    }
    // Then rounds over them all, keeping each one's fastest launch: GPU time
    // between two events, not the host's clock (which adds each launch's
    // API cost: it counted against SPLIT's two launches); rounds rather than
    // one candidate after another, so that the GPU's clock rising from idle
    // during the first launches does not count against the first candidates.
    let timing = Some(CUevent_flags::CU_EVENT_DEFAULT);
    for _ in 0..conv_algo::REPEATS {
        for m in measured.iter_mut().filter(|m| m.seconds.is_some()) {
            let start = stream.record_event(timing)?;
            launch(d, op, m.algo, inputs, output)?;
            let end = stream.record_event(timing)?;
            let seconds = f64::from(start.elapsed_ms(&end)?) / 1e3;
            m.seconds = m.seconds.map(|best| best.min(seconds));
        }
    }
    let choice = conv_algo::choose(&measured, conv_algo::WORKSPACE_CAP);
    tracing::debug!(?measured, ?choice, conv = ?op.conv.pool_spec, "cuDNN algorithm benchmark");
    Ok(Choice {
        candidate: choice.map_or(PRECOMP, |m| m.algo),
        measured,
    })
}

/// Runs `op` on this thread's stream: descriptors and algorithm first if
/// this node has not run on this thread at this input shape.
fn dispatch(
    ctx: &EvalContext,
    op: &FusedConv,
    layout: Layout,
    inputs: &[&DeviceTensor],
    output: &DeviceTensor,
) -> TractResult<()> {
    tract_cuda::with_cuda_stream(|stream| {
        SCRATCH.with_borrow_mut(|scratch| {
            let kept = scratch.entry((ctx.session, ctx.node_id)).or_default();
            let found = kept
                .iter()
                .position(|d| &*d.input_shape == inputs[0].shape());
            let at = match found {
                Some(at) => at,
                None => {
                    let d = prepare(stream.cudnn(), stream, op, layout, inputs, output)?;
                    if kept.len() == SHAPES_KEPT {
                        kept.remove(0);
                    }
                    kept.push(d);
                    kept.len() - 1
                }
            };
            let d = &kept[at];
            launch(d, op, d.candidate, inputs, output)
        })
    })
}

/// `op`'s descriptors for these tensors, its algorithm (timed once per
/// operator and shape bucket in the process, for fused ReLU convolutions),
/// and the thread's workspace grown to fit it.
fn prepare(
    cudnn: &Arc<Cudnn>,
    cuda: &Arc<CudaStream>,
    op: &FusedConv,
    layout: Layout,
    inputs: &[&DeviceTensor],
    output: &DeviceTensor,
) -> TractResult<Descriptors> {
    let mut d = descriptors(
        cudnn,
        op,
        layout,
        inputs[0].datum_type(),
        inputs[0].shape(),
        inputs[1].shape(),
        output.shape(),
    )?;
    if op.relu {
        let shape_key = (
            op.clone(),
            layout,
            TVec::from(conv_algo::shape_bucket(inputs[0].shape())),
        );
        let known = chosen()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&shape_key)
            .map(|c| c.candidate);
        d.candidate = match conv_algo::pinned().or(known) {
            Some(candidate) => candidate,
            None => {
                let choice = benchmark(cuda, &d, op, inputs, output)?;
                let candidate = choice.candidate;
                chosen()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(shape_key, choice);
                candidate
            }
        };
    }
    let size = |d: &Descriptors, c: usize| d.workspace_size(c);
    // A choice timed on another batch size of the bucket: if cuDNN refuses
    // it for this one, the fixed algorithm runs.
    let workspace = match size(&d, d.candidate) {
        Ok(bytes) => bytes,
        Err(_) if d.candidate != PRECOMP => {
            d.candidate = PRECOMP;
            size(&d, PRECOMP)?
        }
        Err(e) => return Err(e.into()),
    };
    cuda_workspace::reserve(cuda, workspace)?;
    Ok(d)
}

impl EvalOp for CudnnConv {
    not_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let inputs = inputs
            .iter()
            .map(|t| t.to_device_tensor())
            .collect::<TractResult<TVec<_>>>()?;
        let shape = self.0.conv.pool_spec.output_shape(inputs[0].shape())?.shape;
        let dt = inputs[0].datum_type();
        let output = tract_gpu::turn_handler::make_tensor_for_node(ctx, dt, &shape)?;
        if output.len() > 0 {
            dispatch(ctx, &self.0, self.1, &inputs, &output)?;
        }
        Ok(tvec!(output.into_tensor().into_tvalue()))
    }

    fn drop_session(&self, session: SessionId, node_id: usize) {
        SCRATCH.with_borrow_mut(|s| s.remove(&(session, node_id)));
    }
}
