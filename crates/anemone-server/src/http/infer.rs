//! The HTTP inference codec: the JSON request and response of KServe v2,
//! and Triton's binary tensor data extension.
//!
//! With the `Inference-Header-Content-Length: N` header, the first N bytes
//! of a body are the JSON header and the rest is the binary data of the
//! tensors that carry `"parameters": {"binary_data_size": K}`, concatenated
//! in tensor order. BYTES elements in binary form are each a 4-byte
//! little-endian length followed by the bytes.

use super::body::Encoding;
use super::json::Parameters;
use crate::errors::ApiError;
use crate::limits::{check_name, BoundedSeq, MAX_TENSORS};
use crate::shared_memory::{SharedInputs, SharedMemory};
use crate::tensor_json::{self, JsonData};
use crate::v2::{self, RequestedOutput};
use anemone_core::{Tensor, TensorData};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// The header that splits a body into its JSON and binary parts.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

const BINARY_DATA_SIZE: &str = "binary_data_size";
const BINARY_DATA: &str = "binary_data";
const BINARY_DATA_OUTPUT: &str = "binary_data_output";

/// The JSON header, with every list and map bounded (see [`crate::limits`])
/// and each input's `data` left as the raw JSON text it is in the body, to
/// be decoded straight into the tensor's type once its datatype and shape
/// are known.
#[derive(Deserialize)]
struct RequestHeader<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow, deserialize_with = "inputs")]
    inputs: Vec<InputHeader<'a>>,
    #[serde(default, deserialize_with = "outputs")]
    outputs: Option<Vec<OutputHeader>>,
}

#[derive(Deserialize)]
struct InputHeader<'a> {
    name: String,
    #[serde(deserialize_with = "crate::limits::dims")]
    shape: Vec<i64>,
    /// Borrowed from the body unless it holds escapes.
    #[serde(borrow)]
    datatype: Cow<'a, str>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputHeader {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

fn inputs<'de, 'a, D>(d: D) -> Result<Vec<InputHeader<'a>>, D::Error>
where
    D: serde::Deserializer<'de>,
    InputHeader<'a>: Deserialize<'de>,
{
    d.deserialize_seq(BoundedSeq::<InputHeader<'a>, MAX_TENSORS>::new("inputs"))
}

fn outputs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<OutputHeader>>, D::Error> {
    Option::<OutputList>::deserialize(d).map(|o| o.map(|l| l.0))
}

/// The `outputs` list: at most [`MAX_TENSORS`].
struct OutputList(Vec<OutputHeader>);

impl<'de> Deserialize<'de> for OutputList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(BoundedSeq::<OutputHeader, MAX_TENSORS>::new("outputs"))
            .map(OutputList)
    }
}

/// Decodes an inference request body (JSON, or JSON plus binary data) for
/// `model`/`version`; inputs and outputs may name regions of `shm`. Inputs
/// in shared memory (at most `limit` bytes together) are left in the
/// request's `shared_inputs`, to be read with
/// [`crate::shared_memory::read_inputs`].
pub fn decode(
    model: String,
    version: Option<u64>,
    headers: &HeaderMap,
    body: &Bytes,
    shm: &SharedMemory,
    limit: usize,
) -> Result<v2::InferRequest, ApiError> {
    let (json, mut binary) = split(headers, body)?;
    let had_binary_header = headers.contains_key(HEADER_LENGTH);
    // A byte order mark before the JSON is taken, as Triton takes it.
    let json = json.strip_prefix(b"\xef\xbb\xbf").unwrap_or(json);
    let quoted: Vec<u8>;
    let header: RequestHeader = match serde_json::from_slice(json) {
        Ok(header) => header,
        Err(e) => match super::json::quote_non_finite(json) {
            // Bare NaN and Infinity, as Triton reads them.
            Some(q) => {
                quoted = q;
                serde_json::from_slice(&quoted).map_err(|e| {
                    ApiError::invalid(format!("malformed inference request JSON: {e}"))
                })?
            }
            None => {
                return Err(ApiError::invalid(format!(
                    "malformed inference request JSON: {e}"
                )))
            }
        },
    };
    let parameters = header.parameters.unwrap_or_default().0;
    if let Some(v) = parameters.get(BINARY_DATA_OUTPUT) {
        if !v.is_boolean() {
            return Err(ApiError::invalid(format!(
                "request parameter '{BINARY_DATA_OUTPUT}' must be true or false, got {v}"
            )));
        }
    }

    let binary_total = binary.len();
    let mut inputs = Vec::with_capacity(header.inputs.len());
    let mut shared_inputs = SharedInputs::default();
    for (index, input) in header.inputs.into_iter().enumerate() {
        let name = input.name;
        check_name("input", &name)?;
        let dtype = v2::datatype(&input.datatype)
            .map_err(|e| ApiError::invalid(format!("input '{name}': {}", e.message)))?;
        let shape = v2::shape(&name, input.shape)?;
        let params = input.parameters.unwrap_or_default().0;
        let shared = shm.slice("input", &name, &params)?;
        let binary_size = params
            .get(BINARY_DATA_SIZE)
            .map(|v| {
                v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                    ApiError::invalid(format!("input '{name}': parameter '{BINARY_DATA_SIZE}' must be a byte count, got {v}"))
                })
            })
            .transpose()?;
        let tensor = match (input.data, binary_size, shared) {
            (None, None, None) => {
                return Err(ApiError::invalid(format!(
                    "input '{name}' has no data: give one of 'data', parameter '{BINARY_DATA_SIZE}' (binary data after the JSON) and parameter 'shared_memory_region'"
                )))
            }
            (Some(data), None, None) => {
                // At least two bytes a value ("0,"), so the text bounds the first allocation.
                let text = data.get();
                let mut json = serde_json::Deserializer::from_str(text);
                tensor_json::decode(&name, dtype, shape, &mut json, text.len() / 2 + 1)?
            }
            (None, Some(size), None) => {
                if size > binary.len() {
                    let why = if had_binary_header {
                        format!(
                            "only {} of the {binary_total} bytes after the JSON header remain",
                            binary.len()
                        )
                    } else {
                        format!("the request has no binary part (no {HEADER_LENGTH} header)")
                    };
                    return Err(ApiError::invalid(format!(
                        "input '{name}' has {BINARY_DATA_SIZE} {size}, but {why}"
                    )));
                }
                let (data, rest) = binary.split_at(size);
                binary = rest;
                // A view of the body: the bytes are not copied.
                v2::tensor_from_raw(&name, dtype, shape, body.slice_ref(data))?
            }
            (None, None, Some(slice)) => {
                shared_inputs.push(index, name, dtype, shape, slice, limit)?;
                continue;
            }
            (data, size, slice) => {
                let given = [
                    data.map(|_| "'data'"),
                    size.map(|_| "parameter 'binary_data_size'"),
                    slice.map(|_| "parameter 'shared_memory_region'"),
                ];
                let given: Vec<&str> = given.into_iter().flatten().collect();
                return Err(ApiError::invalid(format!(
                    "input '{name}' has {}; give only one of 'data', parameter '{BINARY_DATA_SIZE}' and parameter 'shared_memory_region'",
                    given.join(" and ")
                )));
            }
        };
        inputs.push((name, tensor));
    }
    if !binary.is_empty() {
        return Err(ApiError::invalid(format!(
            "the binary part has {binary_total} bytes, but the inputs' {BINARY_DATA_SIZE} values add up to {}",
            binary_total - binary.len()
        )));
    }

    let outputs = match header.outputs {
        None => None,
        Some(list) if list.is_empty() => None,
        Some(list) => Some(
            list.into_iter()
                .map(|o| requested_output(o, shm))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    // gRPC streams' own switch; over HTTP a `triton_` name like any other,
    // refused as Triton's HTTP endpoint refuses it.
    if parameters.contains_key(v2::EMPTY_FINAL_RESPONSE) {
        return Err(ApiError::invalid(format!(
            "parameter '{}': names starting with 'triton_' are reserved for the server (this one \
             is for gRPC streams); remove it",
            v2::EMPTY_FINAL_RESPONSE
        )));
    }
    Ok(v2::InferRequest {
        model,
        version,
        id: header.id,
        scheduling: v2::Scheduling::from_parameters(&parameters)?,
        custom: v2::custom_parameters(&parameters)?,
        parameters,
        inputs,
        outputs,
        deadline: None,
        shared_inputs,
    })
}

/// The JSON header's length that `Inference-Header-Content-Length` gives
/// (where the binary part starts), if the request has the header.
pub(super) fn header_length(headers: &HeaderMap) -> Option<Result<usize, ApiError>> {
    let value = headers.get(HEADER_LENGTH)?;
    Some(value.to_str().unwrap_or("").trim().parse().map_err(|_| {
        ApiError::invalid(format!(
            "header Inference-Header-Content-Length must be a byte count, got '{}'",
            String::from_utf8_lossy(value.as_bytes())
        ))
    }))
}

/// Splits a body into its JSON header and binary part, following
/// `Inference-Header-Content-Length`.
fn split<'a>(headers: &HeaderMap, body: &'a Bytes) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(length) = header_length(headers) else {
        return Ok((body, &[]));
    };
    let length = length?;
    if length > body.len() {
        return Err(ApiError::invalid(format!(
            "header Inference-Header-Content-Length is {length}, but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(length))
}

fn requested_output(output: OutputHeader, shm: &SharedMemory) -> Result<RequestedOutput, ApiError> {
    check_name("output", &output.name)?;
    let params = output.parameters.unwrap_or_default().0;
    let shared_memory = shm.slice("output", &output.name, &params)?;
    let classification = match params.get(crate::classification::PARAMETER) {
        None => None,
        Some(v) => crate::classification::requested(
            &output.name,
            // A count past i64 (Triton's type) asks for every class.
            Some(
                v.as_i64()
                    .or_else(|| v.as_u64().map(|_| i64::MAX))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "output '{}': parameter '{}' must be a number of classes, got {v}",
                            output.name,
                            crate::classification::PARAMETER
                        ))
                    })?,
            ),
        )?,
    };
    let binary = params
        .get(BINARY_DATA)
        .map(|v| {
            v.as_bool().ok_or_else(|| {
                ApiError::invalid(format!(
                    "output '{}': parameter '{BINARY_DATA}' must be true or false, got {v}",
                    output.name
                ))
            })
        })
        .transpose()?;
    // Written into the region, an output is neither in the answer's binary
    // part nor classified: Triton refuses both.
    if shared_memory.is_some() {
        let both = match (binary, &classification) {
            (Some(true), _) => Some(BINARY_DATA),
            (_, Some(_)) => Some(crate::classification::PARAMETER),
            _ => None,
        };
        if let Some(other) = both {
            return Err(ApiError::invalid(format!(
                "output '{}' can't set both 'shared_memory_region' and '{other}': an output in \
                 shared memory is written to the region; remove one of them",
                output.name
            )));
        }
    }
    Ok(RequestedOutput {
        name: output.name,
        binary,
        shared_memory,
        classification,
    })
}

/// Which outputs of a response go as binary data: the per-output
/// `binary_data` parameter, else the request's `binary_data_output`; and
/// whether the response is compressed (`Accept-Encoding`).
#[derive(Debug, Clone)]
pub struct OutputEncoding {
    default_binary: bool,
    outputs: Vec<RequestedOutput>,
    compression: Encoding,
}

impl OutputEncoding {
    /// Reads the choice from a decoded request (before it is consumed).
    pub fn of(request: &v2::InferRequest) -> OutputEncoding {
        OutputEncoding {
            default_binary: request
                .parameters
                .get(BINARY_DATA_OUTPUT)
                .and_then(Value::as_bool)
                .unwrap_or(false),
            outputs: request.outputs.clone().unwrap_or_default(),
            compression: Encoding::Identity,
        }
    }

    /// The same, compressed as `compression` (from the request's
    /// `Accept-Encoding`).
    pub(super) fn compressed(mut self, compression: Encoding) -> OutputEncoding {
        self.compression = compression;
        self
    }

    /// An output the request names is binary only with its own
    /// `binary_data: true`; `binary_data_output` is for the others, as in
    /// Triton.
    fn binary(&self, name: &str) -> bool {
        match self.outputs.iter().find(|o| o.name == name) {
            Some(output) => output.binary.unwrap_or(false),
            None => self.default_binary,
        }
    }
}

#[derive(Serialize)]
struct ResponseHeader<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    /// The response's parameters (a Python model's), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<serde_json::Map<String, serde_json::Value>>,
    outputs: Vec<OutputJson<'a>>,
}

#[derive(Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// Encodes a response: plain JSON, or, when any output goes as binary data,
/// the JSON header followed by those outputs' bytes in output order.
pub fn encode(
    response: v2::InferResponse,
    encoding: &OutputEncoding,
) -> Result<Response, ApiError> {
    let header = ResponseHeader {
        model_name: &response.model,
        model_version: &response.version,
        // An empty id is left out, as Triton leaves it.
        id: response.id.as_deref().filter(|id| !id.is_empty()),
        parameters: (!response.parameters.is_empty()).then(|| {
            (response.parameters.iter())
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect()
        }),
        outputs: response
            .outputs
            .iter()
            .enumerate()
            .map(|(i, (name, t))| {
                // An output written into shared memory has neither, as in Triton.
                let shared = response.is_in_shared_memory(i);
                let binary = !shared && encoding.binary(name);
                OutputJson {
                    name,
                    datatype: t.dtype().kserve_name(),
                    shape: t.shape(),
                    parameters: binary.then(|| BinarySize {
                        binary_data_size: raw_len(t),
                    }),
                    data: (!binary && !shared).then_some(JsonData(t)),
                }
            })
            .collect(),
    };
    // Sized once for the whole text, so the buffer does not grow (and
    // reallocate) as the JSON is written.
    let mut json = Vec::with_capacity(json_size_hint(&header));
    serde_json::to_writer(&mut json, &header).map_err(|e| ApiError {
        kind: anemone_core::ErrorKind::Internal,
        message: format!("cannot encode the response: {e}"),
        too_large: false,
    })?;
    let any_binary = header.outputs.iter().any(|o| o.parameters.is_some());
    drop(header);
    if encoding.compression != Encoding::Identity {
        let parts = if any_binary {
            parts(json, response, encoding)
        } else {
            vec![Bytes::from(json)]
        };
        return compressed(encoding, &parts, any_binary);
    }
    if !any_binary {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response());
    }

    // The JSON header, then each binary output as its own chunk: the
    // tensors' buffers are handed to the body, not copied into one.
    let json_len = json.len();
    let chunks = parts(json, response, encoding);
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let body = Body::from_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(total)),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_len),
            ),
        ],
        body,
    )
        .into_response())
}

/// The JSON text, then each output that goes as binary data, in output
/// order (outputs in shared memory have none).
fn parts(json: Vec<u8>, response: v2::InferResponse, encoding: &OutputEncoding) -> Vec<Bytes> {
    let mut parts = vec![Bytes::from(json)];
    let shared = response.in_shared_memory;
    parts.extend(
        response
            .outputs
            .into_iter()
            .enumerate()
            .filter(|(i, (name, _))| !v2::is_set(&shared, *i) && encoding.binary(name))
            .map(|(_, (_, t))| into_raw(t)),
    );
    parts
}

/// The response compressed as `encoding` asks: `parts` (the JSON text and
/// then the binary outputs, when any) in one compressed body.
/// `Inference-Header-Content-Length` gives the JSON's length before
/// compression, as Triton's does: the client decompresses, then splits.
fn compressed(
    encoding: &OutputEncoding,
    parts: &[Bytes],
    any_binary: bool,
) -> Result<Response, ApiError> {
    let json_len = parts[0].len();
    let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    let body = encoding.compression.compress(&parts);
    let content_type = if any_binary {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding.compression.name()),
            ),
        ],
        body,
    )
        .into_response();
    if any_binary {
        response.headers_mut().insert(
            header::HeaderName::from_static(HEADER_LENGTH),
            HeaderValue::from(json_len),
        );
    }
    Ok(response)
}

/// About how long the response's JSON text is: its fixed parts, and for
/// each output its name and shape, and up to 24 bytes a value sent as JSON
/// (a float's shortest form, a comma). Larger than most texts, so the
/// buffer is allocated once; a longer text still grows it.
fn json_size_hint(header: &ResponseHeader) -> usize {
    let outputs: usize = header
        .outputs
        .iter()
        .map(|o| {
            let values = match &o.data {
                Some(JsonData(t)) => match t.as_strings() {
                    Some(strings) => strings.iter().map(|s| s.len() + 8).sum(),
                    None => t.len() * 24,
                },
                None => 0,
            };
            96 + o.name.len() + o.shape.len() * 21 + values
        })
        .sum();
    64 + header.model_name.len() + header.id.map_or(0, str::len) + outputs
}

/// The length of a tensor's binary form.
fn raw_len(t: &Tensor) -> usize {
    match t.as_strings() {
        Some(strings) => strings.iter().map(|s| 4 + s.len()).sum(),
        None => t.byte_len(),
    }
}

/// A tensor's binary form; numeric data is moved, not copied.
fn into_raw(t: Tensor) -> Bytes {
    if t.as_strings().is_some() {
        return Bytes::from(v2::tensor_to_raw(&t));
    }
    match t.into_data() {
        TensorData::Numeric(bytes) => bytes,
        TensorData::Strings(_) => unreachable!("strings were handled above; this is a bug"),
    }
}

#[cfg(test)]
#[path = "infer_tests.rs"]
mod tests;
