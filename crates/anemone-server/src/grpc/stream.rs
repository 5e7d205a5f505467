//! `ModelStreamInfer`: a bidirectional stream of inference requests.
//!
//! Each request is answered by one `ModelStreamInferResponse`, in request
//! order: its `infer_response`, or its `error_message` together with an
//! `infer_response` carrying only the request's model and `id` (as Triton
//! does, so a client can tell which request failed). A failed request never
//! ends the stream; only a broken transport does.

use super::infer;
use crate::errors::ApiError;
use crate::proto::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use crate::state::AppState;
use futures_util::StreamExt;
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Code, Status, Streaming};

/// Requests of one stream running at once. Responses still leave in request
/// order; a client that stops reading stops the stream's progress, so the
/// work buffered per stream is bounded.
const CONCURRENCY: usize = 4;

/// The response stream of `ModelStreamInfer`.
pub type Responses = Pin<
    Box<dyn futures_util::Stream<Item = Result<ModelStreamInferResponse, Status>> + Send + 'static>,
>;

/// Answers every request of `incoming`. The work is driven by the response
/// stream: dropping it (the client went away) drops the requests in flight.
/// Each traced request's span is a child of the trace context in the
/// stream's `metadata`.
pub(super) fn responses(
    state: Arc<AppState>,
    incoming: Streaming<ModelInferRequest>,
    metadata: Arc<tonic::metadata::MetadataMap>,
    max_bytes: usize,
) -> Responses {
    let answers = incoming
        .map(move |next| {
            let state = Arc::clone(&state);
            let metadata = Arc::clone(&metadata);
            async move {
                match next {
                    Ok(request) => {
                        let span = crate::telemetry::grpc_span(
                            &state.trace,
                            &request.model_name,
                            &metadata,
                        );
                        let answer = answer(&state, request, max_bytes);
                        Ok(crate::telemetry::traced(span, answer).await.response)
                    }
                    Err(status) => Err(transport_error(status, max_bytes)),
                }
            }
        })
        .buffered(CONCURRENCY);
    Box::pin(answers)
}

async fn answer(state: &AppState, request: ModelInferRequest, max_bytes: usize) -> Answered {
    let echo = ModelInferResponse {
        model_name: request.model_name.clone(),
        model_version: request.model_version.clone(),
        id: request.id.clone(),
        ..Default::default()
    };
    let failed = |e: ApiError| Answered {
        response: ModelStreamInferResponse {
            error_message: e.message.clone(),
            infer_response: Some(echo.clone()),
        },
        error: Some(e),
    };
    let response = match infer::run(state, request, None, max_bytes).await {
        Ok(response) => ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(response),
        },
        Err(e) => return failed(e),
    };
    // The stream envelope adds a few bytes to what `infer::run` checked.
    match infer::check_size("response", response.encoded_len(), max_bytes) {
        Ok(()) => Answered {
            response,
            error: None,
        },
        Err(e) => failed(e),
    }
}

/// One request's answer on the stream, and its error (for its span).
struct Answered {
    response: ModelStreamInferResponse,
    error: Option<ApiError>,
}

impl crate::telemetry::context::Outcome for Answered {
    fn status(&self) -> Result<String, (String, String)> {
        match &self.error {
            None => Ok(format!("{:?}", Code::Ok)),
            Some(e) => Err((format!("{:?}", e.grpc_code()), e.message.clone())),
        }
    }
}

/// A request that could not be read ends the stream with a status; an
/// oversized one gets RESOURCE_EXHAUSTED, as for unary calls.
fn transport_error(status: Status, max_bytes: usize) -> Status {
    if status.code() == Code::OutOfRange {
        let mut e = ApiError::too_large(max_bytes);
        e.message = format!("{} ({})", e.message, status.message());
        return e.into();
    }
    status
}
