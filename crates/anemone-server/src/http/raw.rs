//! Triton's raw binary request (the binary tensor extension's "Raw Binary
//! Request"): with `Inference-Header-Content-Length: 0` the whole body is
//! the data of the model's only input, its data type and shape read from
//! the model (a shape's one dynamic dimension from the byte count), and
//! every output is answered as binary data.

use super::infer::HEADER_LENGTH;
use crate::errors::ApiError;
use crate::state::AppState;
use crate::v2;
use axum::body::Bytes;
use axum::http::HeaderMap;

/// Whether the request is a raw binary one (its JSON header is empty).
pub(super) fn is_raw(headers: &HeaderMap) -> bool {
    headers
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0")
}

/// The request a raw binary body makes for `model` (`version`).
pub(super) fn decode(
    state: &AppState,
    model: String,
    version: Option<u64>,
    body: Bytes,
) -> Result<v2::InferRequest, ApiError> {
    let shown_version = version.map(|v| v.to_string()).unwrap_or_default();
    let meta = state.model_metadata(&model, &shown_version)?;
    let [input] = meta.inputs.as_slice() else {
        return Err(ApiError::invalid(format!(
            "a raw binary request (Inference-Header-Content-Length: 0) is for a model with one input; \
             model '{model}' has {}: send the JSON header naming each input",
            meta.inputs.len()
        )));
    };
    let dtype = v2::datatype(&input.datatype)?;
    // As Triton: a model with a batch dimension gets a batch of one.
    let batched = state.repository.classes(&model).0;
    let dims = match batched {
        true => input.shape.get(1..).unwrap_or_default(),
        false => &input.shape[..],
    };
    let tensor = match dtype.size() {
        Some(size) => {
            let mut shape = shape_of(&input.name, dims, size, body.len())?;
            if batched {
                shape.insert(0, 1);
            }
            v2::tensor_from_raw(&input.name, dtype, shape, body)?
        }
        // BYTES: the body is the one element (as Triton reads it), for an
        // input that holds one.
        None => {
            let mut shape = one_element(&input.name, dims)?;
            if batched {
                shape.insert(0, 1);
            }
            anemone_core::Tensor::from_strings(shape, vec![body.to_vec()])
                .map_err(|e| ApiError::invalid(format!("input '{}': {e}", input.name)))?
        }
    };
    let mut parameters = serde_json::Map::new();
    parameters.insert("binary_data_output".into(), serde_json::Value::Bool(true));
    Ok(v2::InferRequest {
        model,
        version,
        id: None,
        parameters,
        inputs: vec![(input.name.clone(), tensor)],
        outputs: None,
        deadline: None,
        scheduling: Default::default(),
        custom: Vec::new(),
        shared_inputs: Default::default(),
    })
}

/// The input's shape for `bytes` bytes of `size`-byte elements: the
/// model's dims, its one dynamic dimension (if any) from the byte count.
fn shape_of(name: &str, dims: &[i64], size: usize, bytes: usize) -> Result<Vec<usize>, ApiError> {
    let fixed: usize = dims
        .iter()
        .filter(|d| **d >= 0)
        .map(|d| *d as usize)
        .product();
    let dynamic = dims.iter().filter(|d| **d < 0).count();
    let element_bytes = fixed.saturating_mul(size);
    let mismatch = |expected: String| {
        ApiError::invalid(format!(
            "input byte size mismatch for input '{name}' of a raw binary request: expected {expected}, got {bytes}"
        ))
    };
    match dynamic {
        0 if element_bytes == bytes => Ok(dims.iter().map(|d| *d as usize).collect()),
        0 => Err(mismatch(element_bytes.to_string())),
        1 if element_bytes > 0 && bytes.is_multiple_of(element_bytes) => Ok(dims
            .iter()
            .map(|d| if *d < 0 { bytes / element_bytes } else { *d as usize })
            .collect()),
        1 => Err(mismatch(format!("a multiple of {element_bytes}"))),
        _ => Err(ApiError::invalid(format!(
            "input '{name}' has {dynamic} dynamic dimensions {dims:?}; a raw binary request's shape \
             is read from its byte count, which fixes one: send the JSON header with the shape"
        ))),
    }
}

/// The shape of a BYTES input of one element (each dynamic dimension 1),
/// or why a raw binary body cannot fill it.
fn one_element(name: &str, dims: &[i64]) -> Result<Vec<usize>, ApiError> {
    match dims.iter().all(|&d| d == 1) {
        true => Ok(vec![1; dims.len()]),
        false => Err(ApiError::invalid(format!(
            "input '{name}' is BYTES of shape {dims:?}; a raw binary request carries one string, \
             for an input of shape [1] (as Triton): send the JSON header with binary_data_size"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_string_fills_an_input_of_one_element() {
        assert_eq!(one_element("s", &[1]).unwrap(), [1]);
        assert_eq!(one_element("s", &[1, 1]).unwrap(), [1, 1]);
        let e = one_element("s", &[2]).unwrap_err().message;
        assert!(e.contains("BYTES of shape [2]"), "{e}");
        assert!(one_element("s", &[-1]).is_err());
    }

    #[test]
    fn the_shape_comes_from_the_dims_and_the_byte_count() {
        assert_eq!(shape_of("x", &[2], 4, 8).unwrap(), [2]);
        assert_eq!(shape_of("x", &[-1], 4, 12).unwrap(), [3]);
        assert_eq!(shape_of("x", &[-1, 2], 4, 16).unwrap(), [2, 2]);
        let e = shape_of("x", &[2], 4, 12).unwrap_err().message;
        assert!(e.contains("expected 8, got 12"), "{e}");
        assert!(shape_of("x", &[-1, 3], 4, 16).is_err());
        assert!(shape_of("x", &[-1, -1], 4, 16)
            .unwrap_err()
            .message
            .contains("2 dynamic"));
    }
}
