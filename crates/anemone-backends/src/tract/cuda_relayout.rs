//! [`CudnnRelayout`]: a 4-D device tensor rewritten from one [`Layout`]
//! into the other, as one `cudnnTransformTensor`, on tract-cuda's
//! per-thread stream. `layout::insert_relayouts` puts one on every edge
//! between an NHWC cuDNN operator and anything else.
//!
//! cudarc keeps the cuDNN handle of tract-cuda's stream to itself and wraps
//! no `cudnnTransformTensor`, so each thread that runs a conversion has one
//! more cuDNN handle of its own, on the same stream: conversions and
//! convolutions stay in stream order.

use super::layout::Layout;
use cudarc::cudnn::result as cudnn;
use cudarc::cudnn::sys;
use cudarc::driver::{DevicePtr, DevicePtrMut};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use tract_cuda::kernels::{get_cuda_view, get_cuda_view_mut};
use tract_gpu::tensor::DeviceTensorExt;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Writes its 4-D input, whose bytes are in the other layout, in layout
/// `.0`; the fact (NCHW shape) does not change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CudnnRelayout(pub Layout);

impl Op for CudnnRelayout {
    fn name(&self) -> StaticName {
        "AnemoneCudnnRelayout".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("to {}", self.0.as_str())])
    }

    op_as_typed_op!();
}

impl TypedOp for CudnnRelayout {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }
}

static RUN: AtomicU64 = AtomicU64::new(0);

/// How many conversions ran, process-wide: lets a test on a GPU machine
/// tell that a model ran in NHWC.
pub fn relayouts() -> u64 {
    RUN.load(Ordering::Relaxed)
}

/// A cuDNN handle on the thread's stream, for the conversions.
struct Handle(sys::cudnnHandle_t);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by `cudnnCreate` and destroyed only here.
        let _ = unsafe { cudnn::destroy_handle(self.0) };
    }
}

/// A tensor descriptor, destroyed with it.
struct Desc(sys::cudnnTensorDescriptor_t);

impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created by `cudnnCreateTensorDescriptor`, destroyed only here.
        let _ = unsafe { cudnn::destroy_tensor_descriptor(self.0) };
    }
}

fn descriptor(dt: sys::cudnnDataType_t, shape: &[usize], layout: Layout) -> TractResult<Desc> {
    let desc = Desc(cudnn::create_tensor_descriptor()?);
    let dims: Vec<i32> = shape.iter().map(|d| *d as i32).collect();
    let strides = layout.strides(shape);
    // SAFETY: a live descriptor; dims and strides have the same length (4).
    unsafe {
        cudnn::set_tensornd_descriptor(
            desc.0,
            dt,
            dims.len() as i32,
            dims.as_ptr(),
            strides.as_ptr(),
        )
    }?;
    Ok(desc)
}

/// What one thread keeps for one node of one plan state.
struct Descriptors {
    shape: TVec<usize>,
    dt: DatumType,
    x: Desc,
    y: Desc,
}

thread_local! {
    static HANDLE: RefCell<Option<Handle>> = const { RefCell::new(None) };
    static SCRATCH: RefCell<HashMap<(SessionId, usize), Descriptors>> =
        RefCell::new(HashMap::new());
}

impl EvalOp for CudnnRelayout {
    not_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].to_device_tensor()?;
        let (dt, shape) = (input.datum_type(), input.shape());
        ensure!(shape.len() == 4, "AnemoneCudnnRelayout on {shape:?}");
        let cudnn_dt = if dt == f32::datum_type() {
            sys::cudnnDataType_t::CUDNN_DATA_FLOAT
        } else if dt == f16::datum_type() {
            sys::cudnnDataType_t::CUDNN_DATA_HALF
        } else {
            bail!("AnemoneCudnnRelayout on {dt:?} tensors")
        };
        let output = tract_gpu::turn_handler::make_tensor_for_node(ctx, dt, shape)?;
        if output.len() == 0 {
            return Ok(tvec!(output.into_tensor().into_tvalue()));
        }
        let from = match self.0 {
            Layout::Nhwc => Layout::Nchw,
            Layout::Nchw => Layout::Nhwc,
        };
        tract_cuda::with_cuda_stream(|stream| {
            HANDLE.with_borrow_mut(|handle| {
                if handle.is_none() {
                    stream.context().bind_to_thread()?;
                    let h = Handle(cudnn::create_handle()?);
                    // SAFETY: a live handle and the thread's live stream.
                    unsafe { cudnn::set_stream(h.0, stream.cu_stream() as _) }?;
                    *handle = Some(h);
                }
                let handle = handle.as_ref().expect("created above").0;
                SCRATCH.with_borrow_mut(|scratch| {
                    let key = (ctx.session, ctx.node_id);
                    if scratch
                        .get(&key)
                        .is_none_or(|d| &*d.shape != shape || d.dt != dt)
                    {
                        let d = Descriptors {
                            shape: shape.into(),
                            dt,
                            x: descriptor(cudnn_dt, shape, from)?,
                            y: descriptor(cudnn_dt, shape, self.0)?,
                        };
                        scratch.insert(key, d);
                    }
                    let d = scratch.get(&key).expect("inserted above");
                    let x = get_cuda_view(input);
                    let mut y = get_cuda_view_mut(&output);
                    let (x_ptr, _x_done) = x.device_ptr(stream);
                    let (y_ptr, _y_done) = y.device_ptr_mut(stream);
                    // Scaling factors are float for float and half tensors.
                    let (one, zero) = (1f32, 0f32);
                    // SAFETY: both tensors are packed, of the descriptors'
                    // shape and type, and live until the stream has run the
                    // call (tract keeps them for the node's readers).
                    unsafe {
                        sys::cudnnTransformTensor(
                            handle,
                            &one as *const f32 as *const _,
                            d.x.0,
                            x_ptr as *const _,
                            &zero as *const f32 as *const _,
                            d.y.0,
                            y_ptr as *mut _,
                        )
                    }
                    .result()
                    .map_err(|e| anyhow!("cudnnTransformTensor: {e:?}"))
                })
            })
        })?;
        RUN.fetch_add(1, Ordering::Relaxed);
        Ok(tvec!(output.into_tensor().into_tvalue()))
    }

    fn drop_session(&self, session: SessionId, node_id: usize) {
        SCRATCH.with_borrow_mut(|s| s.remove(&(session, node_id)));
    }
}
