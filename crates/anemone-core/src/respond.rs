//! Decoupled models: a model that answers a request with any number of
//! responses (none, one, many), when it likes, even after its call has
//! returned (Triton's `model_transaction_policy { decoupled: true }`). Its
//! engine is handed a [`Responder`] per request and sends each response
//! through it; the last carries the final flag.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::Arc;

/// One response of a decoupled model to one request.
#[derive(Debug)]
pub struct Response {
    /// Its outputs by name (any of the model's outputs, possibly none), or
    /// the model's error for the request.
    pub outputs: Result<Vec<(String, Tensor)>>,
    /// The response's parameters (a Python model's
    /// `InferenceResponse(parameters=...)`), sent to the client with it.
    pub parameters: Vec<(String, crate::Parameter)>,
}

/// Where a decoupled model's responses to one request go: the runtime
/// implements it, an engine calls it from any thread.
pub trait ResponseSink: Send + Sync {
    /// Sends a response (`None`: the final flag alone); `last` ends the
    /// request's responses. Returns `false` when nobody listens any more
    /// (the client has gone, or the request already had its last response):
    /// the engine may stop working on it.
    fn send(&self, response: Option<Response>, last: bool) -> bool;

    /// Whether the client has gone (Triton's `is_cancelled()`).
    fn cancelled(&self) -> bool {
        false
    }
}

/// A shared [`ResponseSink`], as a [`crate::RequestView`] holds it.
#[derive(Clone)]
pub struct Responder(pub Arc<dyn ResponseSink>);

impl Responder {
    /// Sends a response; see [`ResponseSink::send`].
    pub fn send(&self, response: Option<Response>, last: bool) -> bool {
        self.0.send(response, last)
    }

    /// Whether the client has gone.
    pub fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder(..)")
    }
}

/// The refusal of a request that wants one answer from a decoupled model
/// (`Manager::infer`, HTTP `/infer`, gRPC `ModelInfer`, an engine's `infer`).
pub fn one_answer_refused(model: &str) -> Error {
    Error::Unsupported {
        what: format!(
            "model '{model}' is decoupled (model_transaction_policy {{ decoupled: true }}): it \
             answers a request with any number of responses, not one"
        ),
        fix: "send its requests on a stream: gRPC ModelStreamInfer (tritonclient's \
              start_stream and async_stream_infer), or Manager::infer_decoupled in the library"
            .into(),
    }
}
