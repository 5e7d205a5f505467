//! Triton's generate extension: `POST .../generate` and `.../generate_stream`,
//! a flat JSON object in place of the KServe request, for text models.
//!
//! Each key of the request that names one of the model's inputs is that
//! input: a value, or a flat list of values, shaped by the input's `dims`
//! (a `-1` takes what the values leave; a batched model's batch of one
//! first). `id` is the request's id; `parameters` (an object) and every
//! other key are the request's parameters, each a boolean, a number or a
//! string. The answer is one object: `model_name`, `model_version`, `id`
//! when the request had one, and each output by name, a value when it has
//! one element, else a flat list. `generate` answers once (a model that
//! gives any other number of responses is refused, naming
//! `generate_stream`); `generate_stream` sends each response as it comes as
//! a Server-Sent Event (`data: {...}`), an error as `data: {"error": ...}`,
//! with the status of the first (as Triton).

use super::{infer, Http, ModelPath, RequestBody};
use crate::errors::ApiError;
use crate::state::StreamedAnswer;
use crate::tensor_json::JsonData;
use crate::v2;
use anemone_core::{ErrorKind, Tensor};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

/// `POST .../generate`: the one response, as a JSON object.
pub(super) async fn generate(
    State(http): State<Http>,
    p: ModelPath,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    let (model, request) = (p.name.clone(), request(&http, p, &body)?);
    let mut stream = Box::pin(http.state.infer_stream(request).await?);
    let mut responses = Vec::new();
    while let Some(answer) = stream.next().await {
        if let Some(response) = answer.response {
            responses.push(response?);
        }
    }
    if responses.len() != 1 {
        return Err(ApiError {
            kind: ErrorKind::Unsupported,
            message: format!(
                "generate answers with exactly one response, and model '{model}' gave {}; use \
                 generate_stream for a model that answers with any number of responses",
                responses.len()
            ),
            too_large: false,
        });
    }
    Ok(Json(answer_value(responses.pop().expect("one response"))))
}

/// `POST .../generate_stream`: each response as a Server-Sent Event. A
/// request refused before the model runs gets a JSON error; after, the
/// status is the first response's (an error's, or 200).
pub(super) async fn generate_stream(
    State(http): State<Http>,
    p: ModelPath,
    RequestBody(body): RequestBody,
) -> Result<Response, ApiError> {
    let request = request(&http, p, &body)?;
    let mut stream = Box::pin(http.state.infer_stream(request).await?);
    let first = stream.next().await;
    let status = match &first {
        Some(StreamedAnswer {
            response: Some(Err(e)),
            ..
        }) => StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        _ => StatusCode::OK,
    };
    let events = futures_util::stream::iter(first)
        .chain(stream)
        .filter_map(|answer| async move {
            let body = match answer.response? {
                Ok(response) => answer_value(response),
                Err(e) => json!({ "error": e.message }),
            };
            Some(Ok::<_, std::convert::Infallible>(Bytes::from(format!(
                "data: {body}\n\n"
            ))))
        });
    let mut response = Response::new(Body::from_stream(events));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response.into_response())
}

/// A generate request as the KServe request it stands for.
fn request(http: &Http, p: ModelPath, body: &[u8]) -> Result<v2::InferRequest, ApiError> {
    // A key given twice is refused, as Triton refuses an input given twice.
    let fields = match serde_json::from_slice::<super::json::UniqueObject>(body) {
        Ok(super::json::UniqueObject::Entries(fields)) => fields,
        Ok(super::json::UniqueObject::Not(kind)) => {
            return Err(ApiError::invalid(format!(
                "a generate request is a JSON object of inputs and parameters, e.g. \
                 {{\"text_input\": \"...\", \"parameters\": {{\"max_tokens\": 16}}}}, not {kind}"
            )))
        }
        Err(e) => {
            return Err(ApiError::invalid(format!(
                "malformed generate request JSON: {e}"
            )))
        }
    };
    let config = http.state.model_config(&p.name, &p.version)?;
    let batched = config.max_batch_size > 0;
    let (mut inputs, mut parameters, mut id) = (Vec::new(), Map::new(), None);
    for (key, value) in fields {
        if let Some(input) = config.input.iter().find(|i| i.name == key) {
            inputs.push(input_json(input, value, batched)?);
            continue;
        }
        match (key.as_str(), value) {
            // An empty id is no id, as Triton leaves it out of the answer.
            ("id", Value::String(s)) => id = Some(s).filter(|s| !s.is_empty()),
            ("id", other) => {
                return Err(ApiError::invalid(format!(
                    "'id' is the request's id, a string; got {other}"
                )))
            }
            ("parameters", Value::Object(given)) => {
                for (k, v) in given {
                    parameters.insert(k.clone(), scalar(&k, v)?);
                }
            }
            ("parameters", other) => {
                return Err(ApiError::invalid(format!(
                    "'parameters' is an object of the request's parameters, e.g. \
                     {{\"max_tokens\": 16}}; got {other}"
                )))
            }
            (_, value) => {
                let value = scalar(&key, value)?;
                parameters.insert(key, value);
            }
        }
    }
    let kserve = json!({ "id": id, "inputs": inputs, "parameters": parameters });
    let kserve = Bytes::from(serde_json::to_vec(&kserve).unwrap_or_default());
    infer::decode(
        p.name,
        p.number,
        &HeaderMap::new(),
        &kserve,
        &http.state.shared_memory,
        http.limit,
    )
}

/// An input of the generate request as a KServe input: its values flat,
/// shaped by the config's `dims` (a batched model's batch of one first).
fn input_json(
    input: &crate::proto::ModelInput,
    value: Value,
    batched: bool,
) -> Result<Value, ApiError> {
    let name = &input.name;
    let values = match value {
        Value::Array(items) if items.iter().any(|v| v.is_array() || v.is_object()) => {
            return Err(ApiError::invalid(format!(
                "input '{name}' is a nested list; a generate request gives an input as a value \
                 or a flat list (send nested data to /infer)"
            )))
        }
        Value::Array(items) => items,
        Value::Object(_) | Value::Null => {
            return Err(ApiError::invalid(format!(
                "input '{name}' is {}; give a value or a flat list of values",
                kind_of(&value)
            )))
        }
        scalar => vec![scalar],
    };
    let proto = crate::proto::DataType::try_from(input.data_type).ok();
    let dtype = proto
        .and_then(crate::model_config::core_dtype)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "input '{name}' has a data type generate cannot fill"
            ))
        })?;
    let shape = shape_of(name, &input.dims, values.len(), batched)?;
    Ok(json!({ "name": name, "datatype": dtype.kserve_name(), "shape": shape, "data": values }))
}

/// The shape `count` values take for `dims`: its fixed sizes as they are,
/// its first `-1` what the values leave (other `-1`s 1), a batched model's
/// batch of one first.
fn shape_of(name: &str, dims: &[i64], count: usize, batched: bool) -> Result<Vec<usize>, ApiError> {
    let fixed: usize = dims
        .iter()
        .filter(|d| **d >= 0)
        .map(|d| *d as usize)
        .product();
    let open = dims.iter().position(|d| *d < 0);
    let fits = match open {
        Some(_) => fixed > 0 && count.is_multiple_of(fixed),
        None => fixed == count,
    };
    if !fits {
        return Err(ApiError::invalid(format!(
            "input '{name}' has {count} value{}, which dims {dims:?} cannot hold; give {}",
            if count == 1 { "" } else { "s" },
            match open {
                Some(_) => format!("a multiple of {fixed} values"),
                None => format!("{fixed} value{}", if fixed == 1 { "" } else { "s" }),
            }
        )));
    }
    let mut shape: Vec<usize> = batched.then_some(1).into_iter().collect();
    for (i, d) in dims.iter().enumerate() {
        shape.push(match *d {
            d if d >= 0 => d as usize,
            _ if Some(i) == open => count / fixed.max(1),
            _ => 1,
        });
    }
    Ok(shape)
}

/// A parameter's value: a boolean, a number or a string.
fn scalar(key: &str, value: Value) -> Result<Value, ApiError> {
    match value {
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(value),
        other => Err(ApiError::invalid(format!(
            "'{key}' is {}, and it is not one of the model's inputs; a parameter is a boolean, \
             a number or a string",
            kind_of(&other)
        ))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A response as the generate extension's JSON object.
fn answer_value(response: v2::InferResponse) -> Value {
    let mut out = Map::new();
    out.insert("model_name".into(), Value::String(response.model));
    out.insert("model_version".into(), Value::String(response.version));
    if let Some(id) = response.id {
        out.insert("id".into(), Value::String(id));
    }
    for (name, tensor) in response.outputs {
        out.insert(name, output_value(&tensor));
    }
    Value::Object(out)
}

/// An output's values: the value alone when it has one, else a flat list.
fn output_value(tensor: &Tensor) -> Value {
    match serde_json::to_value(JsonData(tensor)) {
        Ok(Value::Array(mut items)) if items.len() == 1 => items.pop().unwrap_or(Value::Null),
        Ok(value) => value,
        Err(_) => Value::Null,
    }
}
