//! Tensors in and out of `MLMultiArray`.
//!
//! Inputs are not copied: the tensor's buffer is handed to
//! `initWithDataPointer:shape:dataType:strides:deallocator:error:`, and the
//! deallocator block frees it when Core ML lets go of the array. (A buffer
//! not aligned to its element size is copied first.) Outputs are copied
//! once out of Core ML's buffer, honouring its strides, which may be padded.

use crate::coreml::layout;
use anemone_core::{DataType, Tensor};
use block2::RcBlock;
use objc2::rc::Retained;
use objc2::AnyThread;
use objc2_core_ml::{MLMultiArray, MLMultiArrayDataType};
use objc2_foundation::{NSArray, NSNumber};
use std::ffi::c_void;
use std::ptr::NonNull;

fn numbers(values: &[usize]) -> Retained<NSArray<NSNumber>> {
    let items: Vec<Retained<NSNumber>> = values
        .iter()
        .map(|&v| NSNumber::new_isize(v as isize))
        .collect();
    NSArray::from_retained_slice(&items)
}

fn usizes(values: &NSArray<NSNumber>) -> Vec<usize> {
    values
        .iter()
        .map(|n| n.as_isize().max(0) as usize)
        .collect()
}

/// Wraps a tensor as an `MLMultiArray` without copying its data.
pub fn to_multi_array(tensor: Tensor) -> Result<Retained<MLMultiArray>, String> {
    let dtype = tensor.dtype();
    let kind = layout::multi_array_type(dtype).ok_or_else(|| {
        format!(
            "Core ML arrays hold FP16, FP32, FP64, INT32 or INT8 elements, not {}",
            dtype.kserve_name()
        )
    })?;
    let shape = tensor.shape().to_vec();
    let strides = layout::contiguous_strides(&shape);
    let elem = dtype
        .size()
        .expect("numeric dtype, checked above; this is a bug");
    let anemone_core::TensorData::Numeric(bytes) = tensor.into_data() else {
        return Err("string tensors cannot go into a Core ML array".into());
    };
    // Owned without a copy where the bytes are a whole buffer of their own;
    // a view (of a decoded request, of a batch) is copied out.
    let bytes = Vec::<u8>::from(bytes).into_boxed_slice();
    if bytes.is_empty() || (bytes.as_ptr() as usize) % elem != 0 {
        // Core ML needs element alignment (and a non-null pointer): copy into
        // a buffer of u64, which is aligned for every element type.
        let mut aligned = vec![0u64; bytes.len().div_ceil(8).max(1)];
        // SAFETY: `aligned` has at least `bytes.len()` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                aligned.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            )
        };
        return wrap(aligned.into_boxed_slice(), &shape, &strides, kind);
    }
    wrap(bytes, &shape, &strides, kind)
}

/// Hands `buffer` to Core ML; the deallocator block drops it.
fn wrap<T: 'static>(
    buffer: Box<[T]>,
    shape: &[usize],
    strides: &[usize],
    kind: isize,
) -> Result<Retained<MLMultiArray>, String> {
    let raw: *mut [T] = Box::into_raw(buffer);
    let data =
        NonNull::new(raw.cast::<c_void>()).expect("Box pointers are never null; this is a bug");
    // The block owns the buffer's ownership token: Core ML calls it once,
    // when the array is deallocated. The pointer is carried as an address
    // so the block is Send-agnostic.
    let (address, count) = (raw.cast::<T>() as usize, raw.len());
    let deallocator = RcBlock::new(move |_bytes: NonNull<c_void>| {
        // SAFETY: `address`/`count` come from Box::into_raw above, and Core
        // ML calls the deallocator exactly once.
        drop(unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(address as *mut T, count))
        });
    });
    // SAFETY: `data` points to a live buffer of `span(shape, strides)`
    // elements of the declared type, freed only by the deallocator.
    let array = unsafe {
        MLMultiArray::initWithDataPointer_shape_dataType_strides_deallocator_error(
            MLMultiArray::alloc(),
            data,
            &numbers(shape),
            MLMultiArrayDataType(kind),
            &numbers(strides),
            Some(&deallocator),
        )
    };
    array.map_err(|e| {
        format!(
            "Core ML refused the input array: {}",
            e.localizedDescription()
        )
    })
}

/// Copies an `MLMultiArray` into a tensor, in C order.
pub fn from_multi_array(array: &MLMultiArray) -> Result<Tensor, String> {
    // SAFETY: plain property reads.
    let (kind, shape, strides) = unsafe {
        (
            array.dataType().0,
            usizes(&array.shape()),
            usizes(&array.strides()),
        )
    };
    let dtype: DataType = layout::dtype_of_multi_array(kind)
        .ok_or_else(|| format!("Core ML returned an array of unknown data type {kind}"))?;
    let elem = dtype.size().expect("numeric dtype; this is a bug");
    let span = layout::span(&shape, &strides);
    let out = std::cell::RefCell::new(Vec::new());
    let handler = RcBlock::new(|bytes: NonNull<c_void>, size: isize| {
        let size = (size.max(0) as usize).min(span * elem);
        // SAFETY: Core ML guarantees `size` readable bytes at `bytes` inside the handler.
        let src = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u8>(), size) };
        if src.len() < span * elem {
            return;
        }
        *out.borrow_mut() = if layout::is_contiguous(&shape, &strides) {
            src[..shape.iter().product::<usize>() * elem].to_vec()
        } else {
            layout::gather(src, elem, &shape, &strides)
        };
    });
    // SAFETY: the handler only reads within the bytes Core ML passes.
    unsafe { array.getBytesWithHandler(&handler) };
    drop(handler);
    let bytes = out.into_inner();
    Tensor::from_bytes(dtype, shape.clone(), bytes)
        .map_err(|e| format!("Core ML returned an array shorter than its shape {shape:?}: {e}"))
}
