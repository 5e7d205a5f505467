//! Moving tensors between anemone and tract.

use anemone_core::{DataType, Tensor};
use tract_onnx::prelude::{DatumType, Tensor as TractTensor, TractResult};

/// tract's datum type for an anemone data type.
pub fn datum_type(dtype: DataType) -> DatumType {
    match dtype {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F16 => DatumType::F16,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::Bytes => DatumType::String,
    }
}

/// anemone's data type for a tract datum type, if it has one.
pub fn data_type(dt: DatumType) -> Option<DataType> {
    Some(match dt.unquantized() {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 => DataType::I64,
        DatumType::F16 => DataType::F16,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        DatumType::String => DataType::Bytes,
        DatumType::TDim => DataType::I64,
        _ => return None,
    })
}

/// tract carries strings as UTF-8 text: refuse other bytes as bad input
/// rather than change them.
pub fn check_utf8(name: &str, t: &Tensor) -> anemone_core::Result<()> {
    let Some(strings) = t.as_strings() else {
        return Ok(());
    };
    match strings.iter().position(|s| std::str::from_utf8(s).is_err()) {
        None => Ok(()),
        Some(i) => Err(anemone_core::InputError::Malformed {
            name: name.into(),
            reason: format!("element {i} is not UTF-8 text, which tract strings must be"),
        }
        .into()),
    }
}

/// Copies an anemone tensor into a tract tensor.
pub fn to_tract(t: &Tensor) -> TractResult<TractTensor> {
    match t.as_strings() {
        Some(strings) => {
            let values: Vec<String> = strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            Ok(
                tract_onnx::prelude::tract_ndarray::ArrayD::from_shape_vec(t.shape(), values)?
                    .into(),
            )
        }
        // SAFETY: the bytes are exactly shape × element size of a plain
        // numeric type (checked when the Tensor was built), and every bit
        // pattern is a valid value for these types (bools were normalised to 0/1).
        None => unsafe {
            TractTensor::from_raw_dt(
                datum_type(t.dtype()),
                t.shape(),
                t.as_bytes().unwrap_or_default(),
            )
        },
    }
}

/// Copies a tract tensor into an anemone tensor.
pub fn from_tract(t: &TractTensor) -> TractResult<Tensor> {
    let dt = t.datum_type();
    let Some(dtype) = data_type(dt) else {
        tract_onnx::tract_core::internal::bail!(
            "the model produced a {dt:?} tensor, which anemone cannot carry"
        );
    };
    let shape = t.shape().to_vec();
    let tensor = match dt {
        DatumType::String => {
            let values = t
                .to_plain_array_view::<String>()?
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect();
            Tensor::from_strings(shape, values)
        }
        DatumType::TDim => {
            let t = t.cast_to::<i64>()?;
            Tensor::from_bytes(dtype, shape, t.as_bytes().to_vec())
        }
        _ => Tensor::from_bytes(dtype, shape, t.as_bytes().to_vec()),
    };
    Ok(tensor?)
}
