//! The frames anemone and its Python process exchange (the stub's docstring,
//! `stub/anemone_python_stub.py`, is the other half): a frame is its length
//! (u32, little-endian), the length of a JSON header (u32), the header, and
//! the tensors' bytes in the order the header lists them. Numbers are
//! little-endian in C order; a BYTES tensor is each element's length (u32)
//! and bytes, Triton's serialization.

use anemone_core::{
    Bytes, CallAnswer, DataType, Error, Parameter, RequestView, Result, SequenceId, Tensor,
    TensorData,
};
use serde::{Deserialize, Serialize};

/// The largest frame either side sends: 4 GiB less one byte (the length is a u32).
const MAX_FRAME: usize = u32::MAX as usize;

/// A tensor as a header lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TensorHeader {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<usize>,
    pub byte_size: usize,
}

/// One request of an `execute` frame.
#[derive(Debug, Serialize)]
struct RequestHeader<'a> {
    inputs: Vec<TensorHeader>,
    request_id: &'a str,
    /// A number or a string; 0 without a sequence.
    correlation_id: serde_json::Value,
    /// The outputs the request asked for (all when it named none).
    requested_output_names: Vec<&'a str>,
    parameters: String,
    flags: u32,
    model_name: &'a str,
    /// The request's `timeout` in microseconds; 0 without one (as Triton's
    /// `request.timeout()`).
    timeout_us: u64,
    /// A decoupled model's request: the key its responses come back with.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<u64>,
}

/// One answer of the process to one request.
#[derive(Debug, Deserialize)]
pub(crate) struct ResponseHeader {
    pub error: Option<String>,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub outputs: Vec<TensorHeader>,
    /// `InferenceResponse(parameters=...)`: bool, int and str values.
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// The request runs again (`set_release_flags(RESCHEDULE)`): no
    /// response this time.
    #[serde(default)]
    pub rescheduled: bool,
}

impl ResponseHeader {
    /// The response's parameters, those of a type a parameter holds.
    pub(crate) fn parameters(&self) -> Vec<(String, Parameter)> {
        self.parameters
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), Parameter::from_json(v)?)))
            .collect()
    }
}

/// What the process answers to every frame, or a request of its own to
/// another model (`op: "bls"`, from `InferenceRequest.exec`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Reply {
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub model_name: String,
    #[serde(default)]
    pub model_version: i64,
    #[serde(default)]
    pub inputs: Vec<TensorHeader>,
    #[serde(default)]
    pub requested_output_names: Vec<String>,
    #[serde(default)]
    pub timeout_us: u64,
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub traceback: Option<String>,
    #[serde(default)]
    pub responses: Vec<ResponseHeader>,
    /// `auto_complete_config`'s configuration; `None` when the model has none.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// A request to another model's correlation ID (`op: "bls"`): a
    /// number or a string; 0 or empty: none.
    #[serde(default)]
    pub correlation_id: Option<serde_json::Value>,
    /// Its flags: `TRITONSERVER_REQUEST_FLAG_SEQUENCE_START` (1) and `_END` (2).
    #[serde(default)]
    pub flags: u32,
    /// A request of the model loading API (`op: "bls"`): `load`,
    /// `unload` or `ready` of `model_name`.
    #[serde(default)]
    pub control: Option<String>,
    /// `load`'s configuration (JSON) in place of the model's own.
    #[serde(default)]
    pub control_config: Option<String>,
    /// `unload`'s `unload_dependents`.
    #[serde(default)]
    pub unload_dependents: bool,
    /// The key of the request a decoupled model's response (`op:
    /// "response"`) answers.
    #[serde(default)]
    pub key: Option<u64>,
    /// Whether that response is the request's last.
    #[serde(default, rename = "final")]
    pub last: bool,
    /// The response; `None` for the final flag alone.
    #[serde(default)]
    pub response: Option<ResponseHeader>,
    /// A request to another model sent from a decoupled model's process:
    /// its number, which the answer carries back.
    #[serde(default)]
    pub call: Option<u64>,
    /// Whether that request asks for a stream of responses
    /// (`exec(decoupled=True)`).
    #[serde(default)]
    pub decoupled: bool,
    /// A decoupled model's `execute`: the requests (their indices) that run
    /// again (`set_release_flags(RESCHEDULE)`).
    #[serde(default)]
    pub rescheduled: Vec<usize>,
}

/// One request's answer: its outputs by name, or the model's error.
#[derive(Debug)]
pub(crate) enum Answer {
    Outputs(Vec<(String, Tensor)>, Vec<(String, Parameter)>),
    Failed {
        message: String,
        code: i64,
    },
    /// The request runs again (`set_release_flags(RESCHEDULE)`).
    Rescheduled,
}

/// Triton's `TritonError.INVALID_ARG`: the model blames the request.
pub(crate) const INVALID_ARG: i64 = 3;
/// Triton's `TritonError.UNAVAILABLE`.
pub(crate) const UNAVAILABLE: i64 = 4;
/// Triton's `TritonError.NOT_FOUND`.
pub(crate) const NOT_FOUND: i64 = 2;
/// Triton's `TritonError.UNKNOWN`, `UNSUPPORTED`, `ALREADY_EXISTS` and
/// `CANCELLED`.
pub(crate) const UNKNOWN: i64 = 0;
pub(crate) const UNSUPPORTED: i64 = 5;
pub(crate) const ALREADY_EXISTS: i64 = 6;
pub(crate) const CANCELLED: i64 = 7;

/// A frame: header then blobs, with both lengths in front.
pub(crate) fn frame(header: &serde_json::Value, blobs: &[&[u8]]) -> Result<Vec<u8>> {
    let head = serde_json::to_vec(header)
        .map_err(|e| Error::Internal(format!("cannot write a frame header: {e}")))?;
    let body = 4 + head.len() + blobs.iter().map(|b| b.len()).sum::<usize>();
    if body > MAX_FRAME {
        return Err(Error::Backend {
            backend: super::NAME.into(),
            message: format!(
                "a request of {body} bytes is larger than the 4 GiB a frame to the Python process can carry"
            ),
            retryable: false,
            source: None,
        });
    }
    let mut out = Vec::with_capacity(4 + body);
    out.extend_from_slice(&(body as u32).to_le_bytes());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    for blob in blobs {
        out.extend_from_slice(blob);
    }
    Ok(out)
}

/// Splits a frame's body (what follows its length) into its header and
/// blobs; what is wrong with it, else ([`bad_frame`] makes the error).
pub(crate) fn split_body(body: Bytes) -> std::result::Result<(Reply, Bytes), String> {
    if body.len() < 4 {
        return Err("shorter than its header length".into());
    }
    let hlen = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if body.len() < 4 + hlen {
        return Err("shorter than its header".into());
    }
    let reply: Reply = serde_json::from_slice(&body[4..4 + hlen])
        .map_err(|e| format!("its header is not the JSON expected: {e}"))?;
    Ok((reply, body.slice(4 + hlen..)))
}

/// The error for a frame of model `model`'s process that cannot be read:
/// the model's doing (a model.py that replaced the `json` module's
/// functions, or wrote on the process's pipes), not anemone's bug.
pub(crate) fn bad_frame(model: &str, why: &str) -> Error {
    Error::Backend {
        backend: super::NAME.into(),
        message: format!(
            "the Python process of model '{model}' sent a frame anemone cannot read ({why}); \
             check that model.py leaves the json module and the process's file descriptors 3 and up as they were"
        ),
        retryable: false,
        source: None,
    }
}

/// A tensor's bytes on the wire, and its header.
fn encode_tensor(name: &str, tensor: &Tensor) -> (TensorHeader, Vec<u8>) {
    let bytes = match tensor.data() {
        TensorData::Strings(items) => {
            let mut out = Vec::with_capacity(items.iter().map(|s| 4 + s.len()).sum());
            for item in items {
                out.extend_from_slice(&(item.len() as u32).to_le_bytes());
                out.extend_from_slice(item);
            }
            out
        }
        TensorData::Numeric(_) => tensor.compact().as_bytes().unwrap_or_default().to_vec(),
    };
    let header = TensorHeader {
        name: name.to_string(),
        datatype: tensor.dtype().kserve_name().to_string(),
        shape: tensor.shape().to_vec(),
        byte_size: bytes.len(),
    };
    (header, bytes)
}

/// The `execute` frame of `requests`, each one request's inputs named by
/// `names`, with its id and parameters, and its key when `keys` gives
/// them (a decoupled model's requests).
pub(crate) fn execute_frame(
    model_name: &str,
    names: &[String],
    outputs: &[String],
    requests: &[RequestView<'_>],
    keys: Option<&[u64]>,
) -> Result<Vec<u8>> {
    let mut headers = Vec::with_capacity(requests.len());
    let mut blobs = Vec::new();
    for (r, request) in requests.iter().enumerate() {
        let mut tensors = Vec::with_capacity(request.inputs.len());
        let given = names.iter().zip(request.inputs.iter()).enumerate();
        for (_, (name, tensor)) in given.filter(|(i, _)| !request.absent.contains(i)) {
            let (header, bytes) = encode_tensor(name, tensor);
            tensors.push(header);
            blobs.push(bytes);
        }
        headers.push(RequestHeader {
            inputs: tensors,
            request_id: request.id.unwrap_or(""),
            correlation_id: match request.sequence.map(|s| &s.id) {
                None => 0.into(),
                Some(SequenceId::Number(n)) => (*n).into(),
                Some(SequenceId::Text(t)) => t.as_str().into(),
            },
            requested_output_names: match request.outputs {
                None => outputs.iter().map(String::as_str).collect(),
                Some(wanted) => wanted
                    .iter()
                    .filter_map(|&i| outputs.get(i).map(String::as_str))
                    .collect(),
            },
            parameters: parameters_json(request.parameters),
            // Triton's TRITONSERVER_REQUEST_FLAG_SEQUENCE_START (1) and _END (2).
            flags: request
                .sequence
                .map_or(0, |s| u32::from(s.start) | (u32::from(s.end) << 1)),
            model_name,
            timeout_us: request
                .timeout
                .map_or(0, |t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX)),
            key: keys.and_then(|k| k.get(r).copied()),
        });
    }
    let header = serde_json::json!({ "op": "execute", "requests": headers });
    let blobs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    frame(&header, &blobs)
}

/// A request's parameters as `request.parameters()` gives them: a compact
/// JSON object, `{}` when there are none (as Triton).
pub(crate) fn parameters_json(parameters: &[(String, Parameter)]) -> String {
    if parameters.is_empty() {
        return "{}".into();
    }
    let map: serde_json::Map<String, serde_json::Value> = parameters
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The parameters a model gave a request to another model
/// (`InferenceRequest(parameters=...)`), typed; a value that is not a
/// boolean, a number or a string is refused, as a client's would be.
pub(crate) fn parameters_from_json(
    parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, Parameter)>> {
    parameters
        .iter()
        .map(|(k, v)| {
            let typed = Parameter::from_json(v).ok_or_else(|| {
                Error::Input(anemone_core::InputError::Refused {
                    message: format!(
                        "parameter '{k}' of the request is {v}; a request parameter is a \
                         boolean, a number or a string"
                    ),
                })
            })?;
            Ok((k.clone(), typed))
        })
        .collect()
}

/// Reads a tensor the process sent.
fn decode_tensor(header: &TensorHeader, data: Bytes) -> Result<Tensor> {
    let bad = |why: String| Error::Backend {
        backend: super::NAME.into(),
        message: format!(
            "tensor '{}' from model.py cannot be read: {why}",
            header.name
        ),
        retryable: false,
        source: None,
    };
    let dtype = DataType::from_kserve_name(&header.datatype)
        .ok_or_else(|| bad(format!("unknown data type {}", header.datatype)))?;
    if dtype != DataType::Bytes {
        return Tensor::from_bytes(dtype, header.shape.clone(), data)
            .map_err(|e| bad(e.to_string()));
    }
    let mut items = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let Some(len) = data.get(at..at + 4) else {
            return Err(bad("a BYTES element's length is cut short".into()));
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        at += 4;
        let Some(item) = data.get(at..at + len) else {
            return Err(bad("a BYTES element is cut short".into()));
        };
        items.push(item.to_vec());
        at += len;
    }
    Tensor::from_strings(header.shape.clone(), items).map_err(|e| bad(e.to_string()))
}

/// Named tensors from their headers and the blobs that follow them.
pub(crate) fn tensors(headers: &[TensorHeader], mut blobs: Bytes) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::with_capacity(headers.len());
    for header in headers {
        if header.byte_size > blobs.len() {
            return Err(Error::Internal(format!(
                "the Python process sent {} bytes for tensor '{}' of which only {} arrived",
                header.byte_size,
                header.name,
                blobs.len()
            )));
        }
        let data = blobs.split_to(header.byte_size);
        out.push((header.name.clone(), decode_tensor(header, data)?));
    }
    Ok(out)
}

/// The frame answering a request of the process to another model: the
/// outputs, or the error with Triton's code for its kind; with the
/// request's number when it had one (`call`).
pub(crate) fn call_reply(result: Result<CallAnswer>, call: Option<u64>) -> Result<Vec<u8>> {
    reply_frame(Some(result), call, false)
}

/// One response of a stream the process asked for (`exec(decoupled=True)`):
/// as [`call_reply`]'s answer (`None`: the final flag alone, no outputs),
/// with `"more": true` on every response but the last.
pub(crate) fn stream_reply(
    response: Option<Result<CallAnswer>>,
    call: u64,
    last: bool,
) -> Result<Vec<u8>> {
    reply_frame(response, Some(call), !last)
}

fn reply_frame(
    result: Option<Result<CallAnswer>>,
    call: Option<u64>,
    more: bool,
) -> Result<Vec<u8>> {
    match result.unwrap_or(Ok(CallAnswer::default())) {
        Ok(CallAnswer {
            outputs,
            parameters,
        }) => {
            let (headers, blobs): (Vec<TensorHeader>, Vec<Vec<u8>>) =
                outputs.iter().map(|(n, t)| encode_tensor(n, t)).unzip();
            let parameters: serde_json::Map<String, serde_json::Value> = parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            let header = serde_json::json!({
                "ok": true, "outputs": headers, "parameters": parameters, "call": call, "more": more
            });
            let blobs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
            frame(&header, &blobs)
        }
        Err(e) => {
            use anemone_core::ErrorKind as K;
            let code = match e.kind() {
                K::InvalidInput => INVALID_ARG,
                K::NotFound => 2,
                K::Unavailable | K::Overloaded => UNAVAILABLE,
                K::Unsupported => 5,
                _ => 1,
            };
            let header = serde_json::json!({
                "ok": false, "error": e.to_string(), "code": code, "call": call, "more": more
            });
            frame(&header, &[])
        }
    }
}

/// Each request's answer from an `execute` reply and its blobs.
pub(crate) fn answers(reply: Reply, mut blobs: Bytes) -> Result<Vec<Answer>> {
    let mut out = Vec::with_capacity(reply.responses.len());
    for response in reply.responses {
        if response.rescheduled {
            out.push(Answer::Rescheduled);
            continue;
        }
        if let Some(message) = response.error {
            out.push(Answer::Failed {
                message,
                code: response.code.unwrap_or(1),
            });
            continue;
        }
        let size: usize = response.outputs.iter().map(|h| h.byte_size).sum();
        let mine = blobs.split_to(size.min(blobs.len()));
        let parameters = response.parameters();
        out.push(Answer::Outputs(
            tensors(&response.outputs, mine)?,
            parameters,
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
