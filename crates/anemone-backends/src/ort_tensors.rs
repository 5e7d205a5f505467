//! Tensors between anemone and ONNX Runtime: [`to_ort`] and [`from_ort`]
//! for every data type both have, and the string check ONNX Runtime needs
//! (its strings are NUL-terminated UTF-8).

use anemone_core::{DataType, Result, Tensor};
use half::f16;
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, TensorRef, ValueType};

/// ONNX Runtime carries strings as NUL-terminated UTF-8: refuse (as bad
/// input, not an engine failure) what it would corrupt.
pub(crate) fn check_strings(name: &str, t: &Tensor) -> Result<()> {
    let Some(strings) = t.as_strings() else {
        return Ok(());
    };
    for (i, s) in strings.iter().enumerate() {
        let reason = if std::str::from_utf8(s).is_err() {
            format!("element {i} is not UTF-8 text, which ONNX Runtime strings must be")
        } else if s.contains(&0) {
            format!(
                "element {i} contains a NUL byte, which ONNX Runtime cannot carry in a string; \
                 serve this model on tract-cpu (parameter backends) to pass arbitrary bytes"
            )
        } else {
            continue;
        };
        return Err(anemone_core::InputError::Malformed {
            name: name.into(),
            reason,
        }
        .into());
    }
    Ok(())
}

/// An input for a run: a view of the tensor's own bytes where they are
/// aligned for their element type (no copy: a request's bytes as decoded, a
/// batch as stacked), else a copy ([`to_ort`]).
pub(crate) fn to_ort_input(t: &Tensor) -> std::result::Result<SessionInputValue<'_>, String> {
    if t.is_empty() && t.dtype() != DataType::Bytes {
        return empty_input(t);
    }
    macro_rules! view {
        ($ty:ty) => {{
            let bytes = t.as_bytes().unwrap_or_default();
            if cfg!(target_endian = "little")
                && (bytes.as_ptr() as usize) % std::mem::align_of::<$ty>() == 0
            {
                // SAFETY: the pointer is aligned for `$ty` (checked above),
                // the tensor's bytes hold `len / size` elements of it, every
                // bit pattern is a `$ty` (a numeric type, not bool), and the
                // slice lives as long as the borrow of `t`.
                let values = unsafe {
                    std::slice::from_raw_parts(
                        bytes.as_ptr().cast::<$ty>(),
                        bytes.len() / std::mem::size_of::<$ty>(),
                    )
                };
                return TensorRef::<$ty>::from_array_view((t.shape().to_vec(), values))
                    .map(SessionInputValue::from)
                    .map_err(|e| e.to_string());
            }
        }};
    }
    match t.dtype() {
        DataType::U8 => view!(u8),
        DataType::U16 => view!(u16),
        DataType::U32 => view!(u32),
        DataType::U64 => view!(u64),
        DataType::I8 => view!(i8),
        DataType::I16 => view!(i16),
        DataType::I32 => view!(i32),
        DataType::I64 => view!(i64),
        DataType::F16 => view!(f16),
        DataType::F32 => view!(f32),
        DataType::F64 => view!(f64),
        DataType::Bool | DataType::Bytes => {}
    }
    to_ort(t).map(SessionInputValue::from)
}

/// An empty numeric or BOOL input, its data at [`empty`]'s address.
fn empty_input(t: &Tensor) -> std::result::Result<SessionInputValue<'static>, String> {
    macro_rules! empty {
        ($ty:ty) => {
            TensorRef::<$ty>::from_array_view((t.shape().to_vec(), empty::<$ty>()))
                .map(SessionInputValue::from)
                .map_err(|e| e.to_string())
        };
    }
    match t.dtype() {
        DataType::Bool => empty!(bool),
        DataType::U8 => empty!(u8),
        DataType::U16 => empty!(u16),
        DataType::U32 => empty!(u32),
        DataType::U64 => empty!(u64),
        DataType::I8 => empty!(i8),
        DataType::I16 => empty!(i16),
        DataType::I32 => empty!(i32),
        DataType::I64 => empty!(i64),
        DataType::F16 => empty!(f16),
        DataType::F32 => empty!(f32),
        DataType::F64 => empty!(f64),
        DataType::Bytes => to_ort(t).map(SessionInputValue::from),
    }
}

/// Zeros at an address aligned for every element type.
static ZEROS: [u64; 8] = [0; 8];

/// The data of an empty tensor: no elements, at a real, aligned, readable
/// address. An empty `Vec`'s is dangling (0x4 for f32), and an ONNX Runtime
/// kernel that reads an empty input's first element anyway
/// (`InstanceNormalization` of `[1, 4, 0]`) crashed the server on it; numpy,
/// through which ONNX Runtime's Python API is fed, never hands it such an
/// address.
fn empty<T>() -> &'static [T] {
    // SAFETY: a slice of no elements, at the address of a static that is
    // aligned for u64 (so for every numeric type and bool) and lives forever.
    unsafe { std::slice::from_raw_parts(ZEROS.as_ptr().cast::<T>(), 0) }
}

/// Copies an anemone tensor into an ONNX Runtime value. An empty tensor's
/// data sits at a real, readable address, not at an empty `Vec`'s dangling
/// one: some of ONNX Runtime's kernels read an empty input's first element.
pub fn to_ort(t: &Tensor) -> std::result::Result<DynValue, String> {
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    if let Some(strings) = t.as_strings() {
        let values: Vec<String> = strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        return OrtTensor::from_string_array((shape, values.as_slice()))
            .map(|v| v.into_dyn())
            .map_err(|e| e.to_string());
    }
    macro_rules! num {
        ($ty:ty) => {{
            let mut data: Vec<$ty> = t.to_vec::<$ty>().map_err(|e| e.to_string())?;
            if data.is_empty() {
                // An allocation of one zero beyond the length: ONNX Runtime
                // is handed the `Vec`'s pointer, kept with the value.
                data.reserve_exact(1);
                data.spare_capacity_mut()[0].write(<$ty>::default());
            }
            OrtTensor::from_array((shape, data))
                .map(|v| v.into_dyn())
                .map_err(|e| e.to_string())
        }};
    }
    match t.dtype() {
        DataType::Bool => num!(bool),
        DataType::U8 => num!(u8),
        DataType::U16 => num!(u16),
        DataType::U32 => num!(u32),
        DataType::U64 => num!(u64),
        DataType::I8 => num!(i8),
        DataType::I16 => num!(i16),
        DataType::I32 => num!(i32),
        DataType::I64 => num!(i64),
        DataType::F16 => num!(f16),
        DataType::F32 => num!(f32),
        DataType::F64 => num!(f64),
        DataType::Bytes => Err("a BYTES tensor without strings; this is a bug".into()),
    }
}

/// `data` copied, or an error where the memory for it cannot be had (an
/// output past the address-space limit): the request fails, where
/// `to_vec` would abort the server.
fn copied<T: Copy>(data: &[T]) -> std::result::Result<Vec<T>, String> {
    let mut out = Vec::new();
    out.try_reserve_exact(data.len()).map_err(|_| {
        format!(
            "no memory for the model's output of {} bytes; ask for a smaller output, or give the server more memory",
            std::mem::size_of_val(data)
        )
    })?;
    out.extend_from_slice(data);
    Ok(out)
}

/// Copies an ONNX Runtime tensor value into an anemone tensor.
pub fn from_ort(v: &DynValue) -> std::result::Result<Tensor, String> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err(format!(
            "the model produced a {} value, which anemone cannot carry",
            v.dtype()
        ));
    };
    let dims = |shape: &[i64]| {
        shape
            .iter()
            .map(|&d| d.max(0) as usize)
            .collect::<Vec<usize>>()
    };
    macro_rules! num {
        ($ty:ty) => {{
            let (shape, data) = v.try_extract_tensor::<$ty>().map_err(|e| e.to_string())?;
            Tensor::from_vec(dims(shape), copied(data)?)
        }};
    }
    let tensor = match ty {
        TensorElementType::Bool => num!(bool),
        TensorElementType::Uint8 => num!(u8),
        TensorElementType::Uint16 => num!(u16),
        TensorElementType::Uint32 => num!(u32),
        TensorElementType::Uint64 => num!(u64),
        TensorElementType::Int8 => num!(i8),
        TensorElementType::Int16 => num!(i16),
        TensorElementType::Int32 => num!(i32),
        TensorElementType::Int64 => num!(i64),
        TensorElementType::Float16 => num!(f16),
        TensorElementType::Float32 => num!(f32),
        TensorElementType::Float64 => num!(f64),
        TensorElementType::String => {
            let (shape, strings) = v.try_extract_strings().map_err(|e| e.to_string())?;
            Tensor::from_strings(
                dims(shape),
                strings.into_iter().map(String::into_bytes).collect(),
            )
        }
        other => {
            return Err(format!(
                "the model produced a {other:?} tensor, which anemone cannot carry"
            ))
        }
    };
    tensor.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::{Backend, Probe};

    /// Whether ONNX Runtime's library is here; its absence fails where
    /// scripts/test.sh requires it (`ANEMONE_REQUIRE_ORT`).
    fn ort_here() -> bool {
        match crate::onnxruntime::OnnxRuntime.probe() {
            Probe::Unavailable { reason } => {
                assert!(
                    std::env::var_os("ANEMONE_REQUIRE_ORT").is_none(),
                    "ANEMONE_REQUIRE_ORT is set but ONNX Runtime is unavailable: {reason}"
                );
                eprintln!("SKIPPED: ONNX Runtime is unavailable: {reason}");
                false
            }
            _ => true,
        }
    }

    /// An empty `Vec`'s pointer is its alignment (0x4 for f32): an ONNX
    /// Runtime kernel that reads an empty input's first element anyway
    /// (InstanceNormalization of [1, 4, 0]) crashed on it.
    #[test]
    fn an_empty_tensor_copied_for_onnx_runtime_is_at_a_real_address() {
        if !ort_here() {
            return;
        }
        macro_rules! check {
            ($ty:ty) => {{
                let t = Tensor::from_vec(vec![1, 4, 0], Vec::<$ty>::new()).unwrap();
                let v = to_ort(&t).unwrap();
                let (shape, data) = v.try_extract_tensor::<$ty>().unwrap();
                assert_eq!(shape.to_vec(), [1, 4, 0]);
                assert!(data.is_empty());
                assert!(
                    data.as_ptr() as usize >= 4096,
                    "{}: an empty tensor's data at {:p}",
                    stringify!($ty),
                    data.as_ptr()
                );
                assert_eq!(from_ort(&v).unwrap(), t);
            }};
        }
        check!(f32);
        check!(f64);
        check!(i64);
        check!(u8);
        check!(f16);
        check!(bool);
    }
}
