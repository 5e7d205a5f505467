//! [`CudnnMaxPool`]: a [`CudnnMaxPoolMark`] run on the GPU as one
//! `cudnnPoolingForward` (`CUDNN_POOLING_MAX`: padding never wins the max),
//! on tract-cuda's per-thread stream and cuDNN handle. A pooling kernel
//! belongs in tract-cuda (upstream); this is the one anemone needs.

use super::cuda_conv::Elem;
use super::layout::Layout;
use super::pool_fuse::{cudnn_geometry, CudnnMaxPoolMark};
use cudarc::cudnn::sys::{cudnnNanPropagation_t, cudnnPoolingMode_t};
use cudarc::cudnn::{PoolingDescriptor, PoolingForward, TensorDescriptor};
use std::cell::RefCell;
use std::collections::HashMap;
use tract_cuda::kernels::{get_cuda_view, get_cuda_view_mut};
use tract_gpu::tensor::DeviceTensorExt;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// A [`CudnnMaxPoolMark`] on device tensors in a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CudnnMaxPool(pub CudnnMaxPoolMark, pub Layout);

impl Op for CudnnMaxPool {
    fn name(&self) -> StaticName {
        "AnemoneCudnnMaxPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = self.0.info()?;
        info.push(format!("layout: {}", self.1.as_str()));
        Ok(info)
    }

    op_as_typed_op!();
}

impl TypedOp for CudnnMaxPool {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        tract_gpu::utils::facts_to_device_facts(inputs, |facts| self.0.output_facts(facts))
            .context("computing the facts of AnemoneCudnnMaxPool")
    }
}

/// The descriptors of one pool at one input shape, in the element type
/// `T` it runs on.
struct Typed<T> {
    pool: PoolingDescriptor<T>,
    x: TensorDescriptor<T>,
    y: TensorDescriptor<T>,
}

/// [`Typed`] for the element types cuDNN pools here: float32, and half
/// (the fp16 precision's model).
enum ByType {
    F32(Typed<f32>),
    F16(Typed<f16>),
}

struct Descriptors {
    input_shape: TVec<usize>,
    typed: ByType,
}

thread_local! {
    /// Descriptors per (plan state, node), rebuilt when the shape changes.
    static SCRATCH: RefCell<HashMap<(SessionId, usize), Descriptors>> =
        RefCell::new(HashMap::new());
}

fn i32s(v: &[usize]) -> Vec<i32> {
    v.iter().map(|d| *d as i32).collect()
}

/// The descriptors of a pool with `geometry` from `input` to `output`
/// shapes in `layout`, for element type `T`.
fn typed<T: Elem>(
    cudnn: &std::sync::Arc<cudarc::cudnn::Cudnn>,
    [window, pads, strides]: &[[usize; 2]; 3],
    layout: Layout,
    input: &[usize],
    output: &[usize],
) -> TractResult<Typed<T>> {
    Ok(Typed {
        pool: cudnn.create_poolingnd::<T>(
            &i32s(window),
            &i32s(pads),
            &i32s(strides),
            cudnnPoolingMode_t::CUDNN_POOLING_MAX,
            cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
        )?,
        x: cudnn.create_nd_tensor::<T>(&i32s(input), &layout.strides(input))?,
        y: cudnn.create_nd_tensor::<T>(&i32s(output), &layout.strides(output))?,
    })
}

/// Runs the pool of `d` from `x` into `y`, both of element type `T`.
///
/// # Safety
/// `x` and `y` hold packed tensors of type `T` matching `d`'s descriptors.
unsafe fn launch<T: Elem>(
    d: &Typed<T>,
    x: &cudarc::driver::CudaView<'_, u8>,
    y: &mut cudarc::driver::CudaViewMut<'_, u8>,
) -> TractResult<()> {
    let size = size_of::<T>();
    let x = x
        .transmute::<T>(x.len() / size)
        .context("pool input of the wrong size")?;
    let n = y.len() / size;
    let mut y = y
        .transmute_mut::<T>(n)
        .context("pool output of the wrong size")?;
    PoolingForward {
        pooling: &d.pool,
        x: &d.x,
        y: &d.y,
    }
    .launch((T::ONE, T::ZERO), &x, &mut y)
    .map_err(|e| anyhow!("cudnnPoolingForward: {e:?}"))
}

impl EvalOp for CudnnMaxPool {
    not_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].to_device_tensor()?;
        let dt = input.datum_type();
        let shape = self.0 .0.pool_spec.output_shape(input.shape())?.shape;
        let output = tract_gpu::turn_handler::make_tensor_for_node(ctx, dt, &shape)?;
        if output.len() == 0 {
            return Ok(tvec!(output.into_tensor().into_tvalue()));
        }
        tract_cuda::with_cuda_stream(|stream| {
            SCRATCH.with_borrow_mut(|scratch| {
                let key = (ctx.session, ctx.node_id);
                if scratch
                    .get(&key)
                    .is_none_or(|d| &*d.input_shape != input.shape())
                {
                    let fact = TypedFact::dt_shape(dt, input.shape());
                    let geometry = cudnn_geometry(&self.0 .0, &fact)
                        .context("a pool cuDNN cannot take reached AnemoneCudnnMaxPool")?;
                    let cudnn = stream.cudnn();
                    let (layout, x) = (self.1, input.shape());
                    let typed = if dt == f16::datum_type() {
                        ByType::F16(typed(cudnn, &geometry, layout, x, &shape)?)
                    } else {
                        ByType::F32(typed(cudnn, &geometry, layout, x, &shape)?)
                    };
                    scratch.insert(
                        key,
                        Descriptors {
                            input_shape: x.into(),
                            typed,
                        },
                    );
                }
                let d = scratch.get(&key).expect("inserted above");
                let (x, mut y) = (get_cuda_view(input), get_cuda_view_mut(&output));
                // SAFETY: input and output have the pool's element type
                // (`cudnn_geometry` takes f32 and f16 only; the output is
                // made with the input's type above), are packed, and match
                // the descriptors built for this input shape.
                unsafe {
                    match &d.typed {
                        ByType::F32(t) => launch(t, &x, &mut y),
                        ByType::F16(t) => launch(t, &x, &mut y),
                    }
                }
            })
        })?;
        Ok(tvec!(output.into_tensor().into_tvalue()))
    }

    fn drop_session(&self, session: SessionId, node_id: usize) {
        SCRATCH.with_borrow_mut(|s| s.remove(&(session, node_id)));
    }
}
