//! The KServe v2 data model, independent of HTTP and gRPC: datatype names,
//! shapes, and tensor data as raw bytes or JSON lists.

use crate::errors::ApiError;
use anemone_core::{Bytes, DataType, Element, Tensor};
use anemone_runtime::request::input_error;
use half::f16;
use serde_json::Value;

/// A decoded inference request.
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    /// Model name.
    pub model: String,
    /// Version; `None` for the server's choice (the latest ready).
    pub version: Option<u64>,
    /// Request id, echoed back.
    pub id: Option<String>,
    /// Request parameters (the response does not repeat them, as in Triton).
    pub parameters: serde_json::Map<String, Value>,
    /// Named inputs.
    pub inputs: Vec<(String, Tensor)>,
    /// Outputs asked for, with whether each wants binary data (HTTP only); `None` for all.
    pub outputs: Option<Vec<RequestedOutput>>,
    /// The transport's deadline (gRPC's `grpc-timeout`), if any. The request
    /// times out at the earlier of this and its `timeout` parameter.
    pub deadline: Option<std::time::Duration>,
    /// Its `priority` and `timeout` parameters, parsed at the edge.
    pub scheduling: Scheduling,
    /// Its other parameters, typed, for the engines that read them (a
    /// Python model's `request.parameters()`): see [`custom_parameters`].
    pub custom: Vec<(String, anemone_core::Parameter)>,
    /// Inputs still to copy out of shared memory (not yet in `inputs`):
    /// see [`crate::shared_memory::read_inputs`].
    pub shared_inputs: crate::shared_memory::SharedInputs,
}

/// Triton's scheduling parameters of a request, typed once where the request
/// enters (HTTP `parameters`, gRPC `parameters`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scheduling {
    /// `priority`: the level, 1 the highest; 0 or absent: the model's default.
    pub priority: Option<u32>,
    /// `timeout`, in microseconds on the wire: the request's deadline (and its
    /// queue timeout where the model's queue policy allows overrides).
    pub timeout: Option<std::time::Duration>,
    /// `sequence_id` (a whole number or a string), `sequence_start` and
    /// `sequence_end`: the request's place in a sequence; `None` when
    /// `sequence_id` is absent, 0 or empty (what Triton's clients send for
    /// "no sequence").
    pub sequence: Option<Box<anemone_runtime::SequenceFlags>>,
}

impl Scheduling {
    /// Reads `priority` (a whole number; 0 means the model's default) and
    /// `timeout` (a whole number of microseconds; 0 means none), refusing anything else
    /// with a 400 that says what to send.
    pub fn from_parameters(
        parameters: &serde_json::Map<String, Value>,
    ) -> Result<Scheduling, ApiError> {
        let priority = match parameters.get("priority") {
            None => None,
            // A level beyond the model's (and beyond any, past u32) is the
            // default level, as in Triton (whose field is a uint64): 0 says so.
            Some(v) => Some(v.as_u64().map(|p| u32::try_from(p).unwrap_or(0)).ok_or_else(|| {
                ApiError::invalid(format!(
                    "parameter 'priority' must be a priority level (1 is the highest; 0 for the model's default), got {v}"
                ))
            })?),
        };
        // 0 is no timeout, as in Triton (tritonclient's `timeout=0`).
        let timeout = match parameters.get("timeout") {
            None => None,
            Some(v) => v
                .as_u64()
                .map(|us| (us > 0).then(|| std::time::Duration::from_micros(us)))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "parameter 'timeout' must be a whole number of microseconds (0: none), got {v}"
                    ))
                })?,
        };
        Ok(Scheduling {
            priority,
            timeout,
            sequence: sequence(parameters)?,
        })
    }
}

/// The gRPC stream parameter that asks for an empty final response.
pub const EMPTY_FINAL_RESPONSE: &str = "triton_enable_empty_final_response";

/// The request parameters the server acts on itself, which engines do not
/// see (as in Triton).
const RESERVED: [&str; 7] = [
    "sequence_id",
    "sequence_start",
    "sequence_end",
    "priority",
    "timeout",
    "binary_data_output",
    EMPTY_FINAL_RESPONSE,
];

/// A request's parameters beyond the ones the server acts on (the
/// scheduling and sequence parameters, `binary_data_output`), typed, in the map's order (by name), for the engines
/// that read them. As Triton: a name starting with `triton_` is reserved
/// and refused, and a value must be a boolean, a number or a string.
pub fn custom_parameters(
    parameters: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, anemone_core::Parameter)>, ApiError> {
    use anemone_core::Parameter;
    let mut custom = Vec::new();
    for (key, value) in parameters {
        if RESERVED.contains(&key.as_str()) {
            continue;
        }
        if key.starts_with("triton_") {
            return Err(ApiError::invalid(format!(
                "parameter '{key}': names starting with 'triton_' are reserved for the server; \
                 rename the parameter"
            )));
        }
        let typed = Parameter::from_json(value).ok_or_else(|| {
            ApiError::invalid(format!(
                "parameter '{key}' is {value}; a request parameter is a boolean, a number or a string"
            ))
        })?;
        custom.push((key.clone(), typed));
    }
    Ok(custom)
}

/// The longest string correlation ID, in bytes, as Triton's.
const MAX_TEXT_SEQUENCE_ID: usize = 128;

/// Reads `sequence_id`, `sequence_start` and `sequence_end`.
fn sequence(
    parameters: &serde_json::Map<String, Value>,
) -> Result<Option<Box<anemone_runtime::SequenceFlags>>, ApiError> {
    use anemone_runtime::CorrelationId;
    let flag = |name: &str| match parameters.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ApiError::invalid(format!(
            "parameter '{name}' must be true or false, got {v}"
        ))),
    };
    let (start, end) = (flag("sequence_start")?, flag("sequence_end")?);
    let id = match parameters.get("sequence_id") {
        // Flags without an ID still reach the model (a Python model's
        // flags(), as in Triton); a sequence model refuses them.
        None if start || end => CorrelationId::default(),
        None => return Ok(None),
        // Triton's bound (its C API refuses a longer one as UNSUPPORTED, 501).
        Some(Value::String(s)) if s.len() > MAX_TEXT_SEQUENCE_ID => {
            return Err(ApiError::invalid(format!(
                "parameter 'sequence_id' is a string of {} bytes: a string correlation ID cannot be \
                 longer than {MAX_TEXT_SEQUENCE_ID} characters (as in Triton); use a shorter one",
                s.len()
            )))
        }
        Some(Value::String(s)) => CorrelationId::Text(s.clone()),
        Some(v) => CorrelationId::Number(v.as_u64().ok_or_else(|| {
            ApiError::invalid(format!(
                "parameter 'sequence_id' must be a whole number from 0 to {} or a string, got {v}",
                u64::MAX
            ))
        })?),
    };
    Ok((id.is_set() || start || end)
        .then(|| Box::new(anemone_runtime::SequenceFlags { id, start, end })))
}

/// An output named in a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedOutput {
    /// Its name.
    pub name: String,
    /// The per-output `binary_data` parameter, if given.
    pub binary: Option<bool>,
    /// Where in a registered shared memory region to write it, if the
    /// request says (its `shared_memory_*` parameters).
    pub shared_memory: Option<crate::shared_memory::Slice>,
    /// Its top classes instead of its values (the classification
    /// extension's `classification` parameter), if asked.
    pub classification: Option<usize>,
}

/// A computed inference response.
#[derive(Debug, Clone)]
pub struct InferResponse {
    /// Model name.
    pub model: String,
    /// The version that ran, as a string (the protocol's type).
    pub version: String,
    /// The request's id.
    pub id: Option<String>,
    /// Named outputs, in the order asked for.
    pub outputs: Vec<(String, Tensor)>,
    /// The response's parameters, as the model gave them (most give none).
    pub parameters: Vec<(String, anemone_core::Parameter)>,
    /// Which outputs were written into shared memory, and so are answered
    /// without data (one flag an output; empty when none were).
    pub in_shared_memory: Vec<bool>,
}

impl InferResponse {
    /// Whether output `i` was written into shared memory.
    pub fn is_in_shared_memory(&self, i: usize) -> bool {
        is_set(&self.in_shared_memory, i)
    }
}

/// Flag `i` of `flags`, where a missing flag is unset (as in
/// [`InferResponse::in_shared_memory`], empty when none is set).
pub fn is_set(flags: &[bool], i: usize) -> bool {
    flags.get(i).copied().unwrap_or(false)
}

/// Parses a datatype name, with a clear error for an unknown one.
pub fn datatype(name: &str) -> Result<DataType, ApiError> {
    DataType::from_kserve_name(name).ok_or_else(|| {
        let known: Vec<&str> = DataType::ALL.iter().map(|d| d.kserve_name()).collect();
        ApiError::invalid(format!(
            "unknown datatype '{name}'; KServe v2 datatypes are {}",
            known.join(", ")
        ))
    })
}

/// Checks a shape: at most [`MAX_DIMS`](crate::limits::MAX_DIMS)
/// dimensions, none negative, and an element count whose bytes (16 an
/// element, the widest) can be addressed. Whether the request carries that
/// many elements is checked against its data, before anything is allocated.
/// The shape is converted in place: `dims`' allocation becomes the result's.
pub fn shape(input: &str, dims: Vec<i64>) -> Result<Vec<usize>, ApiError> {
    if dims.len() > crate::limits::MAX_DIMS {
        return Err(ApiError::invalid(format!(
            "input '{input}' has {} dimensions, over the limit of {}",
            dims.len(),
            crate::limits::MAX_DIMS
        )));
    }
    if let Some(d) = dims.iter().find(|&&d| d < 0) {
        return Err(ApiError::invalid(format!(
            "input '{input}' has a negative dimension {d} in shape {dims:?}"
        )));
    }
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize));
    if count.and_then(|n| n.checked_mul(16)).is_none() {
        return Err(ApiError::invalid(format!(
            "input '{input}' shape {dims:?} has more elements than can be addressed"
        )));
    }
    // Same size and alignment: collected in place, without a new allocation.
    Ok(dims.into_iter().map(|d| d as usize).collect())
}

/// Parses a version string: empty means the server's choice.
pub fn version(v: &str) -> Result<Option<u64>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        ApiError::invalid(format!("model version '{v}' is not a non-negative integer"))
    })
}

/// Refuses `len` bytes of binary data for a fixed-size `dtype` when the
/// shape needs another count. BYTES data, whose elements have their own
/// lengths, is checked as it is read.
pub fn check_raw_len(
    input: &str,
    dtype: DataType,
    shape: &[usize],
    len: usize,
) -> Result<(), ApiError> {
    let Some(size) = dtype.size() else {
        return Ok(());
    };
    let expected = anemone_core::tensor::element_count(shape).unwrap_or(usize::MAX);
    if expected.checked_mul(size) != Some(len) {
        return Err(ApiError::invalid(format!(
            "input '{input}' has {len} bytes of data, but {} {shape:?} needs {}",
            dtype.kserve_name(),
            expected.saturating_mul(size)
        )));
    }
    Ok(())
}

/// Builds a tensor from binary data: little-endian elements, or for BYTES
/// each element as a 4-byte little-endian length followed by its bytes.
pub fn tensor_from_raw(
    input: &str,
    dtype: DataType,
    shape: Vec<usize>,
    bytes: Bytes,
) -> Result<Tensor, ApiError> {
    check_raw_len(input, dtype, &shape, bytes.len())?;
    let expected = anemone_core::tensor::element_count(&shape).unwrap_or(usize::MAX);
    if dtype.size().is_some() {
        // Numeric data stays where it arrived: no copy.
        return Tensor::from_bytes(dtype, shape, bytes).map_err(|e| input_error(input, e).into());
    }
    // Each element takes at least its 4-byte prefix: reserve no more than that.
    let mut strings = Vec::with_capacity(expected.min(bytes.len() / 4));
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        if strings.len() == expected {
            return Err(ApiError::invalid(format!(
                "input '{input}': the BYTES data holds more than the {expected} elements of shape {shape:?}"
            )));
        }
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| {
            ApiError::invalid(format!(
                "input '{input}': BYTES data ends inside a 4-byte length prefix"
            ))
        })?;
        let len = u32::from_le_bytes(*len) as usize;
        let item = tail.get(..len).ok_or_else(|| {
            ApiError::invalid(format!(
                "input '{input}': a BYTES element claims {len} bytes but only {} remain",
                tail.len()
            ))
        })?;
        strings.push(item.to_vec());
        rest = &tail[len..];
    }
    Tensor::from_strings(shape, strings)
        .map_err(|e| ApiError::invalid(format!("input '{input}': {e}")))
}

/// The binary form of a tensor (see [`tensor_from_raw`]).
pub fn tensor_to_raw(t: &Tensor) -> Vec<u8> {
    match t.as_strings() {
        None => t.as_bytes().unwrap_or_default().to_vec(),
        Some(strings) => {
            let mut out = Vec::with_capacity(strings.iter().map(|s| s.len() + 4).sum());
            for s in strings {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
            out
        }
    }
}

/// Builds a tensor from a JSON `data` value: a flat or nested list (or a
/// bare scalar for a 0-d tensor) of numbers, booleans or, for BYTES, strings.
/// See `crate::tensor_json`, which the HTTP codec uses on the raw text.
pub fn tensor_from_json(
    input: &str,
    dtype: DataType,
    shape: Vec<usize>,
    data: &Value,
) -> Result<Tensor, ApiError> {
    crate::tensor_json::decode(input, dtype, shape, data, 4096)
}

/// The JSON `data` of a tensor: a flat list in C order. Non-finite floats
/// are written as the strings "nan", "inf" and "-inf".
pub fn tensor_to_json(t: &Tensor) -> Value {
    if let Some(strings) = t.as_strings() {
        return strings
            .iter()
            .map(|s| Value::String(String::from_utf8_lossy(s).into_owned()))
            .collect();
    }
    let bytes = t.as_bytes().unwrap_or_default();
    macro_rules! each {
        ($t:ty, $f:expr) => {
            bytes
                .chunks_exact(std::mem::size_of::<$t>())
                .map(|c| $f(<$t as Element>::read_le(c)))
                .collect()
        };
    }
    let float_value = |x: f64| match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::String("nan".into()),
        None if x > 0.0 => Value::String("inf".into()),
        None => Value::String("-inf".into()),
    };
    match t.dtype() {
        DataType::Bool => bytes.iter().map(|&b| Value::Bool(b != 0)).collect(),
        DataType::U8 => each!(u8, Value::from),
        DataType::U16 => each!(u16, Value::from),
        DataType::U32 => each!(u32, Value::from),
        DataType::U64 => each!(u64, Value::from),
        DataType::I8 => each!(i8, Value::from),
        DataType::I16 => each!(i16, Value::from),
        DataType::I32 => each!(i32, Value::from),
        DataType::I64 => each!(i64, Value::from),
        DataType::F16 => each!(f16, |x: f16| float_value(x.to_f64())),
        DataType::F32 => each!(f32, |x: f32| float_value(x as f64)),
        DataType::F64 => each!(f64, float_value),
        DataType::Bytes => Value::Array(vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::ErrorKind;
    use serde_json::json;

    #[test]
    fn json_round_trips_every_numeric_type() {
        for dtype in DataType::ALL {
            let data = match dtype {
                DataType::Bool => json!([true, false, true, true]),
                DataType::Bytes => json!(["a", "bc", "", "d"]),
                d if d.is_float() => json!([1.5, -2.0, 0.25, 8.0]),
                DataType::U8 | DataType::U16 | DataType::U32 | DataType::U64 => {
                    json!([0, 1, 200, 7])
                }
                _ => json!([0, -1, 100, 7]),
            };
            let t = tensor_from_json("x", dtype, vec![2, 2], &data).unwrap();
            assert_eq!(tensor_to_json(&t), data, "{dtype}");
            assert_eq!(
                tensor_from_raw("x", dtype, vec![2, 2], tensor_to_raw(&t).into()).unwrap(),
                t,
                "{dtype}"
            );
        }
    }

    #[test]
    fn a_string_sequence_id_takes_128_bytes_at_most() {
        let id = |s: String| sequence(json!({"sequence_id": s}).as_object().unwrap());
        assert!(id("x".repeat(128)).unwrap().is_some());
        let e = id("x".repeat(129)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(
            e.message.contains("129 bytes") && e.message.contains("128"),
            "{}",
            e.message
        );
    }

    #[test]
    fn nested_lists_and_scalars_are_accepted() {
        let t = tensor_from_json("x", DataType::I64, vec![2, 2], &json!([[1, 2], [3, 4]])).unwrap();
        assert_eq!(t.to_vec::<i64>().unwrap(), vec![1, 2, 3, 4]);
        let s = tensor_from_json("k", DataType::I64, vec![], &json!(16000)).unwrap();
        assert_eq!(s.to_vec::<i64>().unwrap(), vec![16000]);
    }

    #[test]
    fn bad_data_gets_a_clear_400() {
        let e = tensor_from_json("x", DataType::U8, vec![2], &json!([1, 300])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(
            e.message
                .contains("input 'x' value 1 (300) is not a valid UINT8"),
            "{}",
            e.message
        );
        let e = tensor_from_json("x", DataType::F32, vec![3], &json!([1, 2])).unwrap_err();
        assert!(
            e.message
                .contains("has 2 values in 'data', but shape [3] needs 3"),
            "{}",
            e.message
        );
        let e = tensor_from_raw("x", DataType::F32, vec![2], vec![0; 7].into()).unwrap_err();
        assert!(e.message.contains("input 'x' has 7 bytes"), "{}", e.message);
        let e =
            tensor_from_raw("s", DataType::Bytes, vec![1], vec![9, 0, 0, 0, 1].into()).unwrap_err();
        assert!(e.message.contains("claims 9 bytes"), "{}", e.message);
        assert!(shape("x", vec![2, -1])
            .unwrap_err()
            .message
            .contains("negative dimension -1"));
        assert!(shape("x", vec![i64::MAX, i64::MAX])
            .unwrap_err()
            .message
            .contains("more elements"));
        assert!(datatype("FP8")
            .unwrap_err()
            .message
            .contains("unknown datatype 'FP8'"));
        assert!(version("abc").is_err());
        assert_eq!(version("").unwrap(), None);
    }

    #[test]
    fn non_finite_floats_survive_json() {
        let t = Tensor::from_vec(vec![3], vec![f32::NAN, f32::INFINITY, -1.0]).unwrap();
        let v = tensor_to_json(&t);
        assert_eq!(v, json!(["nan", "inf", -1.0]));
        let back = tensor_from_json("x", DataType::F32, vec![3], &v)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(back[0].is_nan() && back[1].is_infinite());
    }
}
