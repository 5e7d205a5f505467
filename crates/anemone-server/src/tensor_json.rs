//! A tensor's JSON `data` decoded straight into typed values.
//!
//! The values stream from the JSON text into the tensor's own little-endian
//! buffer (a `Vec<Vec<u8>>` for BYTES): no
//! `serde_json::Value` tree (32 bytes a number) and no flattened copy stand
//! in between, the list stops being read as soon as it holds more values than
//! the shape needs, and it may nest no deeper than [`MAX_DIMS`] lists. So the
//! memory a decode takes is at most the tensor itself, which is bounded both
//! by the shape and by the bytes that arrived.

use crate::errors::ApiError;
use crate::limits::MAX_DIMS;
use anemone_core::{DataType, Element, Tensor};
use anemone_runtime::request::input_error;
use half::f16;
use serde::de::{DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use std::fmt;

/// Decodes `data` (a flat or nested list, or a bare scalar) as `shape`
/// elements of `dtype`. `capacity_hint` caps the first allocation: for JSON
/// text, `text.len() / 2 + 1` (each value takes at least two bytes), so a
/// shape that claims more than the text holds reserves nothing extra.
pub fn decode<'de, D: Deserializer<'de>>(
    input: &str,
    dtype: DataType,
    shape: Vec<usize>,
    data: D,
    capacity_hint: usize,
) -> Result<Tensor, ApiError> {
    // Numbers go straight into the tensor's little-endian buffer: one copy.
    macro_rules! collect {
        ($t:ty) => {{
            let bytes = collect::<Numeric<$t>, D>(input, dtype, &shape, data, capacity_hint)?;
            Tensor::from_bytes(dtype, shape, bytes.0).map_err(|e| input_error(input, e).into())
        }};
    }
    match dtype {
        DataType::Bool => collect!(bool),
        DataType::U8 => collect!(u8),
        DataType::U16 => collect!(u16),
        DataType::U32 => collect!(u32),
        DataType::U64 => collect!(u64),
        DataType::I8 => collect!(i8),
        DataType::I16 => collect!(i16),
        DataType::I32 => collect!(i32),
        DataType::I64 => collect!(i64),
        DataType::F16 => collect!(f16),
        DataType::F32 => collect!(f32),
        DataType::F64 => collect!(f64),
        DataType::Bytes => {
            let values = collect::<Strings, D>(input, dtype, &shape, data, capacity_hint)?;
            Tensor::from_strings(shape, values)
                .map_err(|e| ApiError::invalid(format!("input '{input}': {e}")))
        }
    }
}

/// Where decoded values are stored.
trait Target {
    type Item: FromScalar;
    fn with_capacity(values: usize) -> Self;
    fn push(&mut self, value: Self::Item);
}

/// Numeric values as the tensor's little-endian bytes.
struct Numeric<T>(Vec<u8>, std::marker::PhantomData<T>);

impl<T: Element + FromScalar> Target for Numeric<T> {
    type Item = T;
    fn with_capacity(values: usize) -> Self {
        Numeric(
            Vec::with_capacity(values * std::mem::size_of::<T>()),
            std::marker::PhantomData,
        )
    }
    fn push(&mut self, value: T) {
        value.write_le(&mut self.0);
    }
}

/// BYTES elements.
type Strings = Vec<Vec<u8>>;

impl Target for Strings {
    type Item = Vec<u8>;
    fn with_capacity(values: usize) -> Self {
        Vec::with_capacity(values)
    }
    fn push(&mut self, value: Vec<u8>) {
        Vec::push(self, value);
    }
}

fn collect<'de, X: Target, D: Deserializer<'de>>(
    input: &str,
    dtype: DataType,
    shape: &[usize],
    data: D,
    capacity_hint: usize,
) -> Result<X, ApiError> {
    let expected = anemone_core::tensor::element_count(shape).unwrap_or(usize::MAX);
    let mut sink = Sink {
        out: X::with_capacity(expected.min(capacity_hint)),
        count: 0,
        expected,
        input,
        dtype,
        shape,
        error: None,
    };
    let result = Level {
        sink: &mut sink,
        depth: 0,
    }
    .deserialize(data);
    if let Some(e) = sink.error {
        return Err(e);
    }
    result.map_err(|e| ApiError::invalid(format!("input '{input}': malformed 'data': {e}")))?;
    if sink.count != expected {
        return Err(ApiError::invalid(format!(
            "input '{input}' has {} values in 'data', but shape {shape:?} needs {expected}",
            sink.count
        )));
    }
    Ok(sink.out)
}

/// One JSON scalar as the parser hands it over.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::I64(n) => write!(f, "{n}"),
            Scalar::U64(n) => write!(f, "{n}"),
            Scalar::F64(x) => write!(f, "{x:?}"), // 5.0, not 5
            Scalar::Str(s) if s.len() > 64 => write!(f, "a {}-byte string", s.len()),
            Scalar::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// An element type a JSON scalar converts to, or not.
trait FromScalar: Sized {
    fn from_scalar(s: Scalar) -> Option<Self>;
}

impl FromScalar for bool {
    fn from_scalar(s: Scalar) -> Option<bool> {
        match s {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }
}

macro_rules! ints {
    ($($t:ty),*) => {$(
        impl FromScalar for $t {
            fn from_scalar(s: Scalar) -> Option<$t> {
                match s {
                    Scalar::I64(n) => <$t>::try_from(n).ok(),
                    Scalar::U64(n) => <$t>::try_from(n).ok(),
                    // JSON's `-0` is an integer (RFC 8259), which serde_json
                    // reads as the float -0.0 (as it reads `-0.0`).
                    Scalar::F64(x) if x == 0.0 && x.is_sign_negative() => Some(0),
                    _ => None,
                }
            }
        }
    )*};
}
ints!(u8, u16, u32, u64, i8, i16, i32, i64);

/// A JSON number, or one of the strings "nan", "inf", "-inf" that JSON cannot spell.
fn float(s: Scalar) -> Option<f64> {
    match s {
        Scalar::F64(x) => Some(x),
        Scalar::I64(n) => Some(n as f64),
        Scalar::U64(n) => Some(n as f64),
        Scalar::Str("nan" | "NaN") => Some(f64::NAN),
        Scalar::Str("inf" | "Infinity") => Some(f64::INFINITY),
        Scalar::Str("-inf" | "-Infinity") => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

impl FromScalar for f16 {
    fn from_scalar(s: Scalar) -> Option<f16> {
        float(s).map(f16::from_f64)
    }
}

impl FromScalar for f32 {
    fn from_scalar(s: Scalar) -> Option<f32> {
        float(s).map(|x| x as f32)
    }
}

impl FromScalar for f64 {
    fn from_scalar(s: Scalar) -> Option<f64> {
        float(s)
    }
}

impl FromScalar for Vec<u8> {
    fn from_scalar(s: Scalar) -> Option<Vec<u8>> {
        match s {
            Scalar::Str(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        }
    }
}

/// Where the values go; `error` holds the first refusal, with its message
/// for the client (serde's own error would add a line and column).
struct Sink<'a, X> {
    out: X,
    count: usize,
    expected: usize,
    input: &'a str,
    dtype: DataType,
    shape: &'a [usize],
    error: Option<ApiError>,
}

impl<X: Target> Sink<'_, X> {
    fn push(&mut self, s: Scalar) -> Result<(), ()> {
        if self.count == self.expected {
            return self.refuse(format!(
                "input '{}' has more values in 'data' than shape {:?} needs ({})",
                self.input, self.shape, self.expected
            ));
        }
        match X::Item::from_scalar(s) {
            Some(v) => {
                self.out.push(v);
                self.count += 1;
                Ok(())
            }
            None => {
                use anemone_core::DataType::{Bool, Bytes, F16, F32, F64};
                let integers = !matches!(self.dtype, F16 | F32 | F64 | Bool | Bytes);
                let hint = match s {
                    Scalar::F64(_) if integers => {
                        " (an integer type takes whole numbers written without a decimal point or exponent)"
                    }
                    _ => "",
                };
                self.refuse(format!(
                    "input '{}' value {} ({s}) is not a valid {}{hint}",
                    self.input,
                    self.count,
                    self.dtype.kserve_name()
                ))
            }
        }
    }

    fn refuse(&mut self, message: String) -> Result<(), ()> {
        self.error = Some(ApiError::invalid(message));
        Err(())
    }
}

/// One level of nesting of the `data` lists.
struct Level<'s, 'a, X> {
    sink: &'s mut Sink<'a, X>,
    depth: usize,
}

impl<'de, X: Target> DeserializeSeed<'de> for Level<'_, '_, X> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<X: Target> Level<'_, '_, X> {
    fn push<E: serde::de::Error>(self, s: Scalar) -> Result<(), E> {
        self.sink
            .push(s)
            .map_err(|()| E::custom("refused; see the sink's error"))
    }
}

impl<'de, X: Target> Visitor<'de> for Level<'_, '_, X> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of numbers, booleans or strings")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.push(Scalar::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.push(Scalar::I64(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.push(Scalar::U64(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.push(Scalar::F64(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.push(Scalar::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth == MAX_DIMS {
            let _ = self.sink.refuse(format!(
                "input '{}': 'data' is nested deeper than {MAX_DIMS} lists",
                self.sink.input
            ));
            return Err(A::Error::custom("too deep"));
        }
        let depth = self.depth + 1;
        while seq
            .next_element_seed(Level {
                sink: &mut *self.sink,
                depth,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// A tensor's JSON `data`, written straight from its buffer: a flat list in
/// C order, non-finite floats as the strings "nan", "inf" and "-inf" (the
/// same text as [`crate::v2::tensor_to_json`], without building a `Value`
/// for every element first).
pub struct JsonData<'a>(pub &'a Tensor);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        if let Some(strings) = t.as_strings() {
            return s.collect_seq(strings.iter().map(|b| String::from_utf8_lossy(b)));
        }
        let bytes = t.as_bytes().unwrap_or_default();
        macro_rules! each {
            ($t:ty, $f:expr) => {
                s.collect_seq(
                    bytes
                        .chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| $f(<$t as Element>::read_le(c))),
                )
            };
        }
        match t.dtype() {
            DataType::Bool => s.collect_seq(bytes.iter().map(|&b| b != 0)),
            DataType::U8 => each!(u8, |x| x),
            DataType::U16 => each!(u16, |x| x),
            DataType::U32 => each!(u32, |x| x),
            DataType::U64 => each!(u64, |x| x),
            DataType::I8 => each!(i8, |x| x),
            DataType::I16 => each!(i16, |x| x),
            DataType::I32 => each!(i32, |x| x),
            DataType::I64 => each!(i64, |x| x),
            DataType::F16 => each!(f16, |x: f16| Float(x.to_f64())),
            DataType::F32 => each!(f32, |x: f32| Float(x as f64)),
            DataType::F64 => each!(f64, Float),
            DataType::Bytes => s.collect_seq(std::iter::empty::<u8>()),
        }
    }
}

/// A float as JSON: a number when finite, else "nan", "inf" or "-inf".
struct Float(f64);

impl Serialize for Float {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            x if x.is_finite() => s.serialize_f64(x),
            x if x.is_nan() => s.serialize_str("nan"),
            x if x > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_data_writes_what_tensor_to_json_builds() {
        let tensors = [
            Tensor::from_vec(vec![4], vec![f32::NAN, f32::INFINITY, -0.1, 2.5]).unwrap(),
            Tensor::from_vec(vec![2], vec![f64::NEG_INFINITY, 1e300]).unwrap(),
            Tensor::from_vec(vec![2], vec![f16::from_f32(0.5), f16::NAN]).unwrap(),
            Tensor::from_vec(vec![3], vec![i64::MIN, 0, i64::MAX]).unwrap(),
            Tensor::from_vec(vec![2], vec![u64::MAX, 1]).unwrap(),
            Tensor::from_vec(vec![2], vec![true, false]).unwrap(),
            Tensor::from_strings(vec![2], vec![b"a".to_vec(), vec![0xff]]).unwrap(),
        ];
        for t in &tensors {
            assert_eq!(
                serde_json::to_string(&JsonData(t)).unwrap(),
                crate::v2::tensor_to_json(t).to_string(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn data_longer_than_the_shape_stops_at_the_first_extra_value() {
        let text = format!("[1, 2, 3, {}]", "x".repeat(1000));
        let mut json = serde_json::Deserializer::from_str(&text);
        let e = decode("a", DataType::I32, vec![2], &mut json, 10).unwrap_err();
        assert!(
            e.message
                .contains("input 'a' has more values in 'data' than shape [2] needs (2)"),
            "{}",
            e.message
        );
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let mut json = serde_json::Deserializer::from_str(&deep);
        let e = decode("a", DataType::I32, vec![1], &mut json, 10).unwrap_err();
        assert!(e.message.contains("nested deeper than 64"), "{}", e.message);
        let e = decode("a", DataType::I32, vec![2], json!([1, {"k": 2}]), 10).unwrap_err();
        assert!(e.message.contains("malformed 'data'"), "{}", e.message);
    }

    #[test]
    fn minus_zero_is_a_whole_number_and_other_floats_are_not() {
        let mut json = serde_json::Deserializer::from_str("[-0, 0, -7]");
        let t = decode("a", DataType::I32, vec![3], &mut json, 10).unwrap();
        assert_eq!(t, Tensor::from_vec(vec![3], vec![0i32, 0, -7]).unwrap());
        for text in ["[1.0]", "[1e2]", "[-0.5]"] {
            let mut json = serde_json::Deserializer::from_str(text);
            assert!(
                decode("a", DataType::I32, vec![1], &mut json, 10).is_err(),
                "{text}"
            );
        }
    }
}
