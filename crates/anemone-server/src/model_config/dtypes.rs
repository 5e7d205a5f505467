//! Data types and dims between anemone's tensors and the config's.

use anemone_core::{DataType as CoreType, Dim, TensorSpec};

use crate::proto::DataType as ProtoType;

/// The config `data_type` of an anemone element type.
pub fn proto_dtype(dt: CoreType) -> ProtoType {
    match dt {
        CoreType::Bool => ProtoType::TypeBool,
        CoreType::U8 => ProtoType::TypeUint8,
        CoreType::U16 => ProtoType::TypeUint16,
        CoreType::U32 => ProtoType::TypeUint32,
        CoreType::U64 => ProtoType::TypeUint64,
        CoreType::I8 => ProtoType::TypeInt8,
        CoreType::I16 => ProtoType::TypeInt16,
        CoreType::I32 => ProtoType::TypeInt32,
        CoreType::I64 => ProtoType::TypeInt64,
        CoreType::F16 => ProtoType::TypeFp16,
        CoreType::F32 => ProtoType::TypeFp32,
        CoreType::F64 => ProtoType::TypeFp64,
        CoreType::Bytes => ProtoType::TypeString,
    }
}

/// The anemone element type of a config `data_type`; `None` for
/// `TYPE_INVALID` and `TYPE_BF16`, which anemone has no type for.
pub fn core_dtype(dt: ProtoType) -> Option<CoreType> {
    Some(match dt {
        ProtoType::TypeBool => CoreType::Bool,
        ProtoType::TypeUint8 => CoreType::U8,
        ProtoType::TypeUint16 => CoreType::U16,
        ProtoType::TypeUint32 => CoreType::U32,
        ProtoType::TypeUint64 => CoreType::U64,
        ProtoType::TypeInt8 => CoreType::I8,
        ProtoType::TypeInt16 => CoreType::I16,
        ProtoType::TypeInt32 => CoreType::I32,
        ProtoType::TypeInt64 => CoreType::I64,
        ProtoType::TypeFp16 => CoreType::F16,
        ProtoType::TypeFp32 => CoreType::F32,
        ProtoType::TypeFp64 => CoreType::F64,
        ProtoType::TypeString => CoreType::Bytes,
        ProtoType::TypeInvalid | ProtoType::TypeBf16 => return None,
    })
}

/// A tensor's full declared shape as Triton dims: fixed sizes as they are,
/// dynamic ones (named or not) as -1; `[-1]` when the model declares no shape.
/// No batch dimension is removed.
pub fn dims_of(spec: &TensorSpec) -> Vec<i64> {
    match &spec.shape {
        Some(shape) => shape.iter().map(dim_i64).collect(),
        None => vec![-1],
    }
}

pub(super) fn dim_i64(d: &Dim) -> i64 {
    match d {
        Dim::Fixed(n) => i64::try_from(*n).unwrap_or(-1),
        Dim::Named(_) | Dim::Any => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::fixtures::*;

    #[test]
    fn data_type_names() {
        for dt in CoreType::ALL {
            let p = proto_dtype(dt);
            assert_eq!(core_dtype(p), Some(dt));
        }
        assert_eq!(proto_dtype(CoreType::F16), ProtoType::TypeFp16);
        assert_eq!(core_dtype(ProtoType::TypeBf16), None);
        let s = spec(
            "x",
            CoreType::F32,
            vec![Dim::Named("b".into()), Dim::Fixed(3), Dim::Any],
        );
        assert_eq!(dims_of(&s), vec![-1, 3, -1]);
        assert_eq!(
            dims_of(&TensorSpec {
                name: "u".into(),
                dtype: CoreType::U8,
                shape: None
            }),
            vec![-1]
        );
    }
}
