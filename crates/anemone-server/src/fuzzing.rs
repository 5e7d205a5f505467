//! Entry points for the fuzz targets (`fuzz/`) and their corpus replay test:
//! each feeds bytes a stranger controls to one decoder of the server, exactly
//! as a request or repository would, and ignores the verdict. They promise
//! nothing but to return; a panic, a hang or an allocation out of proportion
//! to the input is a bug in the decoder. Not a stable API.

use crate::shared_memory::SharedMemory;
use crate::{grpc, http, model_config, proto};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};

/// An HTTP inference body, JSON only (no binary extension).
pub fn http_json(body: &[u8]) {
    let _ = http::infer::decode(
        "m".into(),
        None,
        &HeaderMap::new(),
        &Bytes::copy_from_slice(body),
        &SharedMemory::default(),
        usize::MAX,
    );
}

/// An HTTP inference body with Triton's binary tensor extension: the first
/// two bytes (little-endian) choose the `Inference-Header-Content-Length`
/// value (with the top bit set, a value near `u64::MAX`), the rest is the body.
pub fn http_binary(data: &[u8]) {
    let Some((head, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let n = u16::from_le_bytes(*head);
    let value = if n & 0x8000 != 0 {
        u64::MAX - u64::from(n & 0x7fff)
    } else {
        u64::from(n)
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::infer::HEADER_LENGTH, HeaderValue::from(value));
    let _ = http::infer::decode(
        "m".into(),
        None,
        &headers,
        &Bytes::copy_from_slice(body),
        &SharedMemory::default(),
        usize::MAX,
    );
}

/// A gRPC `ModelInferRequest` as it arrives on the wire (protobuf bytes),
/// decoded and then checked (raw contents against shapes and datatypes).
pub fn grpc_infer(data: &[u8]) {
    if let Ok(request) = <proto::ModelInferRequest as prost::Message>::decode(data) {
        let _ = grpc::decode_infer(request, &SharedMemory::default());
    }
}

/// A model configuration: `config.pbtxt` text when the first byte is even,
/// the JSON of a load request's config override when it is odd; then the
/// typed settings read from it, as loading does.
pub fn model_config(data: &[u8]) {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let parsed = if selector % 2 == 0 {
        model_config::parse_pbtxt(&text)
    } else {
        model_config::parse_json(&text)
    };
    if let Ok(config) = parsed {
        let _ = model_config::scheduler_config(&config, &model_config::no_state_files);
        let _ = model_config::settings(&config);
    }
}
