//! [`CudnnMaxPool`]: a [`CudnnMaxPoolMark`] run on the GPU as one
//! `cudnnPoolingForward` (`CUDNN_POOLING_MAX`: padding never wins the max),
//! on tract-cuda's per-thread stream and cuDNN handle. A pooling kernel
//! belongs in tract-cuda (upstream); this is the one anemone needs.

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

struct Descriptors {
    input_shape: TVec<usize>,
    pool: PoolingDescriptor<f32>,
    x: TensorDescriptor<f32>,
    y: TensorDescriptor<f32>,
}

thread_local! {
    /// Descriptors per (plan state, node), rebuilt when the shape changes.
    static SCRATCH: RefCell<HashMap<(SessionId, usize), Descriptors>> =
        RefCell::new(HashMap::new());
}

fn i32s(v: &[usize]) -> Vec<i32> {
    v.iter().map(|d| *d as i32).collect()
}

impl EvalOp for CudnnMaxPool {
    not_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].to_device_tensor()?;
        let shape = self.0 .0.pool_spec.output_shape(input.shape())?.shape;
        let output = tract_gpu::turn_handler::make_tensor_for_node(ctx, f32::datum_type(), &shape)?;
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
                    let fact = f32::fact(input.shape());
                    let [window, pads, strides] = cudnn_geometry(&self.0 .0, &fact)
                        .context("a pool cuDNN cannot take reached AnemoneCudnnMaxPool")?;
                    let cudnn = stream.cudnn();
                    let d = Descriptors {
                        input_shape: input.shape().into(),
                        pool: cudnn.create_poolingnd::<f32>(
                            &i32s(&window),
                            &i32s(&pads),
                            &i32s(&strides),
                            cudnnPoolingMode_t::CUDNN_POOLING_MAX,
                            cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                        )?,
                        x: cudnn.create_nd_tensor::<f32>(
                            &i32s(input.shape()),
                            &self.1.strides(input.shape()),
                        )?,
                        y: cudnn.create_nd_tensor::<f32>(&i32s(&shape), &self.1.strides(&shape))?,
                    };
                    scratch.insert(key, d);
                }
                let d = scratch.get(&key).expect("inserted above");
                let (x, mut out) = (get_cuda_view(input), get_cuda_view_mut(&output));
                let n = out.len() / size_of::<f32>();
                // SAFETY: both tensors are f32 (checked by `cudnn_geometry` and
                // made so by `eval`), packed, and match the descriptors.
                unsafe {
                    let x = x
                        .transmute::<f32>(x.len() / size_of::<f32>())
                        .context("input not f32")?;
                    let mut y = out.transmute_mut::<f32>(n).context("output not f32")?;
                    PoolingForward {
                        pooling: &d.pool,
                        x: &d.x,
                        y: &d.y,
                    }
                    .launch((1.0f32, 0.0f32), &x, &mut y)
                    .map_err(|e| anyhow!("cudnnPoolingForward: {e:?}"))
                }
            })
        })?;
        Ok(tvec!(output.into_tensor().into_tvalue()))
    }

    fn drop_session(&self, session: SessionId, node_id: usize) {
        SCRATCH.with_borrow_mut(|s| s.remove(&(session, node_id)));
    }
}
