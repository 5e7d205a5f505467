//! `ModelInfer`: from a `ModelInferRequest` to a [`v2::InferRequest`], and
//! from a [`v2::InferResponse`] to a `ModelInferResponse` with its outputs in
//! `raw_output_contents`, as Triton answers.

use crate::errors::ApiError;
use crate::limits;
use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::model_infer_request::InferInputTensor;
use crate::proto::model_infer_response::InferOutputTensor;
use crate::proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::shared_memory::{SharedInputs, SharedMemory, Slice};
use crate::state::AppState;
use crate::v2;
use anemone_core::{Bytes, DataType, ErrorKind, Tensor, TensorData};
use anemone_runtime::request::input_error;
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;

/// Decodes, runs and encodes one inference. A response over `max_bytes`
/// becomes RESOURCE_EXHAUSTED with a message, not a transport error.
pub(super) async fn run(
    state: &AppState,
    request: ModelInferRequest,
    forwarded: Forwarded,
    deadline: Option<std::time::Duration>,
    max_bytes: usize,
) -> Result<ModelInferResponse, ApiError> {
    let mut decoded = decode(request, &state.shared_memory, max_bytes)?;
    add_forwarded(&mut decoded, forwarded)?;
    decoded.deadline = deadline;
    let response = encode(state.infer(decoded).await?);
    check_size(
        &response.model_name,
        "response",
        response.encoded_len(),
        max_bytes,
    )?;
    Ok(response)
}

/// The call's metadata that the models are to see
/// (`--grpc-header-forward-pattern`): `None` when none is, or why it
/// cannot be forwarded.
pub(super) type Forwarded = Result<Option<Vec<(String, anemone_core::Parameter)>>, ApiError>;

/// Adds the forwarded metadata after the request's own parameters (so a
/// header wins over a parameter of its name, as in Triton), or fails the
/// request, once its message is found good.
pub(super) fn add_forwarded(
    request: &mut v2::InferRequest,
    forwarded: Forwarded,
) -> Result<(), ApiError> {
    request.custom.extend(forwarded?.into_iter().flatten());
    Ok(())
}

/// Refuses a message of `model` (empty for none) over the size limit,
/// naming its size.
pub(super) fn check_size(
    model: &str,
    what: &str,
    len: usize,
    max_bytes: usize,
) -> Result<(), ApiError> {
    if len <= max_bytes {
        return Ok(());
    }
    let of = match model {
        "" => String::new(),
        m => format!(" of model '{m}'"),
    };
    Err(ApiError {
        kind: ErrorKind::Overloaded,
        message: format!(
            "the {what}{of} would be {len} bytes, over the {max_bytes}-byte message limit (--max-request-bytes); ask for fewer outputs or smaller inputs"
        ),
        too_large: true,
    })
}

/// A gRPC request as the protocol-neutral request; inputs and outputs may
/// name regions of `shm`. Inputs in shared memory (at most `limit` bytes
/// together) are left in the request's `shared_inputs`, to be read with
/// [`crate::shared_memory::read_inputs`].
pub(super) fn decode(
    request: ModelInferRequest,
    shm: &SharedMemory,
    limit: usize,
) -> Result<v2::InferRequest, ApiError> {
    let ModelInferRequest {
        model_name,
        model_version,
        id,
        parameters,
        inputs,
        outputs,
        raw_input_contents,
    } = request;
    limits::check_model_name(&model_name)?;
    limits::check_count("inputs", inputs.len(), limits::MAX_TENSORS)?;
    limits::check_count("outputs", outputs.len(), limits::MAX_TENSORS)?;
    limits::check_count("parameters", parameters.len(), limits::MAX_PARAMETERS)?;
    // Inputs in shared memory have no raw_input_contents entry (as Triton
    // reads them). Most requests have none: they skip the lookup (and its
    // vector).
    let mut shared: Vec<Option<Slice>> = Vec::new();
    if inputs
        .iter()
        .any(|i| i.parameters.keys().any(|k| k.starts_with("shared_memory_")))
    {
        shared = inputs
            .iter()
            .map(|i| shm.slice("input", &i.name, &shared_memory_parameters(&i.parameters)?))
            .collect::<Result<_, ApiError>>()?;
    }
    let in_request = inputs.len() - shared.iter().filter(|s| s.is_some()).count();
    let raw = !raw_input_contents.is_empty();
    if raw && raw_input_contents.len() != in_request {
        return Err(ApiError::invalid(format!(
            "the request has {in_request} inputs outside shared memory but {} raw_input_contents entries; with raw_input_contents, every such input needs exactly one entry, in input order",
            raw_input_contents.len()
        )));
    }
    let mut raw_data = raw_input_contents.into_iter();
    let mut shared = shared.into_iter();
    let mut shared_inputs = SharedInputs::default();
    let mut decoded = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        // Without raw_input_contents, `raw_data` is empty.
        let data = match shared.next().flatten() {
            Some(slice) => Data::Shared(slice),
            None => raw_data.next().map_or(Data::Contents, Data::Raw),
        };
        match decode_input(input, data)? {
            Decoded::Tensor(name, tensor) => decoded.push((name, tensor)),
            Decoded::Shared(name, dtype, shape, slice) => {
                shared_inputs.push(index, name, dtype, shape, slice, limit)?
            }
        }
    }
    let outputs = outputs
        .into_iter()
        .map(|o| {
            limits::check_name("output", &o.name)?;
            limits::check_count("parameters", o.parameters.len(), limits::MAX_PARAMETERS)?;
            let classification = match o.parameters.get(crate::classification::PARAMETER) {
                None => None,
                Some(p) => {
                    let count = match p.parameter_choice {
                        Some(ParameterChoice::Int64Param(n)) => Some(n),
                        Some(ParameterChoice::Uint64Param(n)) => i64::try_from(n).ok(),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "output '{}': parameter '{}' must be an int64_param, the number of classes",
                            o.name,
                            crate::classification::PARAMETER
                        ))
                    })?;
                    crate::classification::requested(&o.name, Some(count))?
                }
            };
            let shared_memory =
                shm.slice("output", &o.name, &shared_memory_parameters(&o.parameters)?)?;
            if shared_memory.is_some() && classification.is_some() {
                return Err(ApiError::invalid(format!(
                    "output '{}' can't set both 'shared_memory_region' and '{}': an output in \
                     shared memory is written to the region; remove one of them",
                    o.name,
                    crate::classification::PARAMETER
                )));
            }
            Ok(v2::RequestedOutput {
                name: o.name,
                binary: None,
                shared_memory,
                classification,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let parameters = parameters_to_json(&parameters)?;
    Ok(v2::InferRequest {
        model: model_name,
        version: v2::version(&model_version)?,
        id: Some(id).filter(|id| !id.is_empty()),
        scheduling: v2::Scheduling::from_parameters(&parameters)?,
        custom: v2::custom_parameters(&parameters)?,
        parameters,
        inputs: decoded,
        outputs: Some(outputs).filter(|o| !o.is_empty()),
        deadline: None,
        shared_inputs,
    })
}

/// Where an input's data is.
enum Data {
    /// Its `raw_input_contents` entry.
    Raw(Bytes),
    /// A slice of a registered shared memory region.
    Shared(Slice),
    /// Its typed `contents`.
    Contents,
}

/// An input decoded: its tensor, or what to read from shared memory.
enum Decoded {
    Tensor(String, Tensor),
    Shared(String, DataType, Vec<usize>, Slice),
}

/// One input, from where `data` says; typed contents beside raw or shared
/// data are refused.
fn decode_input(input: InferInputTensor, data: Data) -> Result<Decoded, ApiError> {
    let InferInputTensor {
        name,
        datatype,
        shape,
        contents,
        parameters,
    } = input;
    limits::check_name("input", &name)?;
    limits::check_count("parameters", parameters.len(), limits::MAX_PARAMETERS)?;
    let dtype = v2::datatype(&datatype)
        .map_err(|e| ApiError::invalid(format!("input '{name}': {}", e.message)))?;
    let shape = v2::shape(&name, shape)?;
    let has_contents = contents
        .as_ref()
        .is_some_and(|c| fields(c).iter().any(|(_, n)| *n > 0));
    let tensor = match data {
        Data::Raw(_) if has_contents => {
            return Err(ApiError::invalid(format!(
                "input '{name}' has typed contents, but the request uses raw_input_contents; when raw_input_contents is given, every input must be in it"
            )))
        }
        Data::Shared(_) if has_contents => {
            return Err(ApiError::invalid(format!(
                "input '{name}' is in shared memory (parameter 'shared_memory_region') and also has typed contents; give one of them"
            )))
        }
        Data::Raw(bytes) => match dtype {
            DataType::Bytes => v2::tensor_from_raw(&name, dtype, shape, bytes)?,
            // The bytes stay where the message was decoded (no copy);
            // BOOL bytes are normalised to 0 and 1 by `from_bytes`.
            _ => Tensor::from_bytes(dtype, shape, bytes).map_err(|e| input_error(&name, e))?,
        },
        Data::Shared(slice) => return Ok(Decoded::Shared(name, dtype, shape, slice)),
        Data::Contents => typed(&name, dtype, shape, contents.unwrap_or_default())?,
    };
    Ok(Decoded::Tensor(name, tensor))
}

/// The typed-contents field that carries each datatype; FP16 has none.
fn field_of(dtype: DataType) -> Option<&'static str> {
    Some(match dtype {
        DataType::Bool => "bool_contents",
        DataType::I8 | DataType::I16 | DataType::I32 => "int_contents",
        DataType::I64 => "int64_contents",
        DataType::U8 | DataType::U16 | DataType::U32 => "uint_contents",
        DataType::U64 => "uint64_contents",
        DataType::F32 => "fp32_contents",
        DataType::F64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::F16 => return None,
    })
}

/// Each typed-contents field with its number of values.
fn fields(c: &InferTensorContents) -> [(&'static str, usize); 8] {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
}

/// A tensor from typed contents: the field must match the datatype, hold
/// exactly as many values as the shape needs, and each value must fit.
fn typed(
    name: &str,
    dtype: DataType,
    shape: Vec<usize>,
    c: InferTensorContents,
) -> Result<Tensor, ApiError> {
    let fp16 = || {
        ApiError::invalid(format!(
            "input '{name}' is FP16, which has no typed contents field; send its data in raw_input_contents (little-endian IEEE half floats)"
        ))
    };
    let field = field_of(dtype).ok_or_else(fp16)?;
    if let Some((other, _)) = fields(&c).into_iter().find(|(f, n)| *n > 0 && *f != field) {
        return Err(ApiError::invalid(format!(
            "input '{name}' is {datatype}, whose values go in contents.{field}, but contents.{other} is given",
            datatype = dtype.kserve_name()
        )));
    }
    let expected = anemone_core::tensor::element_count(&shape).unwrap_or(usize::MAX);
    let given = fields(&c)
        .into_iter()
        .find(|(f, _)| *f == field)
        .map_or(0, |(_, n)| n);
    if given != expected {
        let hint = if given == 0 {
            "; give its data in contents or in raw_input_contents"
        } else {
            ""
        };
        return Err(ApiError::invalid(format!(
            "input '{name}' has {given} values in contents.{field}, but shape {shape:?} needs {expected}{hint}"
        )));
    }
    macro_rules! narrow {
        ($values:expr, $t:ty) => {{
            let values = $values
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    <$t>::try_from(v).map_err(|_| {
                        ApiError::invalid(format!(
                            "input '{name}' value {i} ({v}) is out of range for {}",
                            dtype.kserve_name()
                        ))
                    })
                })
                .collect::<Result<Vec<$t>, _>>()?;
            Tensor::from_vec(shape, values)
        }};
    }
    let tensor = match dtype {
        DataType::Bool => Tensor::from_vec(shape, c.bool_contents),
        DataType::I8 => narrow!(c.int_contents, i8),
        DataType::I16 => narrow!(c.int_contents, i16),
        DataType::I32 => Tensor::from_vec(shape, c.int_contents),
        DataType::I64 => Tensor::from_vec(shape, c.int64_contents),
        DataType::U8 => narrow!(c.uint_contents, u8),
        DataType::U16 => narrow!(c.uint_contents, u16),
        DataType::U32 => Tensor::from_vec(shape, c.uint_contents),
        DataType::U64 => Tensor::from_vec(shape, c.uint64_contents),
        DataType::F32 => Tensor::from_vec(shape, c.fp32_contents),
        DataType::F64 => Tensor::from_vec(shape, c.fp64_contents),
        DataType::Bytes => Tensor::from_strings(shape, c.bytes_contents),
        DataType::F16 => return Err(fp16()),
    };
    tensor.map_err(|e| input_error(name, e).into())
}

/// Request parameters as the JSON map the protocol-neutral layer passes
/// through (`timeout` and `priority` are then typed by [`v2::Scheduling`]).
fn parameters_to_json<'a>(
    parameters: impl IntoIterator<Item = (&'a String, &'a InferParameter)>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    parameters
        .into_iter()
        .map(|(key, p)| {
            let value = match &p.parameter_choice {
                Some(ParameterChoice::BoolParam(b)) => Value::Bool(*b),
                // A client with a correlation ID of 2^63 or more sends it
                // as a negative int64_param (tritonclient's C++ client
                // casts it); Triton reads it back as the uint64 it was.
                Some(ParameterChoice::Int64Param(i)) if key == "sequence_id" && *i < 0 => {
                    Value::from(*i as u64)
                }
                Some(ParameterChoice::Int64Param(i)) => Value::from(*i),
                Some(ParameterChoice::Uint64Param(u)) => Value::from(*u),
                Some(ParameterChoice::StringParam(s)) => Value::String(s.clone()),
                Some(ParameterChoice::DoubleParam(d)) => serde_json::Number::from_f64(*d)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        ApiError::invalid(format!("parameter '{key}' is {d}, not a finite number"))
                    })?,
                None => return Err(ApiError::invalid(format!("parameter '{key}' has no value"))),
            };
            Ok((key.clone(), value))
        })
        .collect()
}

/// A tensor's `shared_memory_*` parameters (its others are not read), as
/// [`SharedMemory::slice`] takes them.
fn shared_memory_parameters(
    parameters: &HashMap<String, InferParameter>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    parameters_to_json(
        parameters
            .iter()
            .filter(|(k, _)| k.starts_with("shared_memory_")),
    )
}

/// A protocol-neutral response as a gRPC one. The request's parameters are
/// not repeated, as Triton does not.
pub(super) fn encode(response: v2::InferResponse) -> ModelInferResponse {
    let mut outputs = Vec::with_capacity(response.outputs.len());
    let mut raw = Vec::with_capacity(response.outputs.len());
    let shared = response.in_shared_memory;
    for (i, (name, tensor)) in response.outputs.into_iter().enumerate() {
        outputs.push(InferOutputTensor {
            name,
            datatype: tensor.dtype().kserve_name().into(),
            shape: tensor
                .shape()
                .iter()
                .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                .collect(),
            parameters: HashMap::new(),
            contents: None,
        });
        // An output written into shared memory has an empty entry, as in Triton.
        if v2::is_set(&shared, i) {
            raw.push(Bytes::new());
            continue;
        }
        // Numeric data is already the little-endian wire form: move it, don't copy it.
        raw.push(match tensor.as_strings() {
            Some(_) => v2::tensor_to_raw(&tensor).into(),
            None => match tensor.into_data() {
                TensorData::Numeric(bytes) => bytes,
                TensorData::Strings(_) => Bytes::new(),
            },
        });
    }
    ModelInferResponse {
        model_name: response.model,
        model_version: response.version,
        id: response.id.unwrap_or_default(),
        parameters: (response.parameters.into_iter())
            .map(|(k, v)| (k, infer_parameter(v)))
            .collect(),
        outputs,
        raw_output_contents: raw,
    }
}

/// A response's parameter as gRPC's `InferParameter`.
fn infer_parameter(value: anemone_core::Parameter) -> InferParameter {
    use anemone_core::Parameter;
    let choice = match value {
        Parameter::Bool(b) => ParameterChoice::BoolParam(b),
        Parameter::Int(i) => ParameterChoice::Int64Param(i),
        Parameter::Uint(u) => ParameterChoice::Uint64Param(u),
        Parameter::Double(d) => ParameterChoice::DoubleParam(d),
        Parameter::String(s) => ParameterChoice::StringParam(s),
    };
    InferParameter {
        parameter_choice: Some(choice),
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    /// Raw input bytes stay in the buffer the message was decoded from:
    /// prost gives `raw_input_contents` as views (tonic decodes from one
    /// such buffer) and the tensor takes them as they are.
    #[test]
    fn raw_inputs_are_views_of_the_decoded_message() {
        let request = ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                ..Default::default()
            }],
            raw_input_contents: vec![[1.0f32, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into()],
            ..Default::default()
        };
        let wire = Bytes::from(request.encode_to_vec());
        let decoded = ModelInferRequest::decode(wire.clone()).unwrap();
        let r = decode(decoded, &SharedMemory::default(), usize::MAX).unwrap();
        let t = &r.inputs[0].1;
        assert_eq!(t.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0]);
        let at = t.as_bytes().unwrap().as_ptr() as usize;
        let wire_at = wire.as_ptr() as usize;
        assert!(
            (wire_at..wire_at + wire.len()).contains(&at),
            "the input's bytes were copied out of the message"
        );
    }
}
