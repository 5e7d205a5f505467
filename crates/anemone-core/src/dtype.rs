//! Element types of tensors, with their names in every format anemone speaks.

use std::fmt;

/// The element type of a tensor.
///
/// The set is the union of what the KServe v2 protocol and ONNX models use:
/// booleans, unsigned and signed integers of 8 to 64 bits, IEEE floats of
/// 16, 32 and 64 bits, and variable-length byte strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    /// One byte per element, 0 or 1.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE 754 half precision.
    F16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// Variable-length byte strings (KServe `BYTES`, ONNX `STRING`).
    Bytes,
}

impl DataType {
    /// Every data type, in a stable order.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// Size of one element in bytes, or `None` for variable-length [`DataType::Bytes`].
    pub const fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }

    /// The KServe v2 / Triton name: `BOOL`, `UINT8`, …, `FP32`, `BYTES`.
    pub const fn kserve_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a KServe v2 / Triton name (as returned by [`DataType::kserve_name`]).
    pub fn from_kserve_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.kserve_name() == name)
    }

    /// The short lowercase name used in anemone's own output: `f32`, `i64`, `bool`, `bytes`.
    pub const fn short_name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U8 => "u8",
            DataType::U16 => "u16",
            DataType::U32 => "u32",
            DataType::U64 => "u64",
            DataType::I8 => "i8",
            DataType::I16 => "i16",
            DataType::I32 => "i32",
            DataType::I64 => "i64",
            DataType::F16 => "f16",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::Bytes => "bytes",
        }
    }

    /// Whether this is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DataType::F16 | DataType::F32 | DataType::F64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

impl serde::Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.short_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kserve_names_round_trip() {
        for dt in DataType::ALL {
            assert_eq!(DataType::from_kserve_name(dt.kserve_name()), Some(dt));
        }
        assert_eq!(DataType::from_kserve_name("FP8"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(DataType::F16.size(), Some(2));
        assert_eq!(DataType::I64.size(), Some(8));
        assert_eq!(DataType::Bool.size(), Some(1));
        assert_eq!(DataType::Bytes.size(), None);
    }
}
