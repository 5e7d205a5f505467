//! `ModelStreamInfer`: a bidirectional stream of inference requests.
//!
//! A request to a model that is not decoupled is answered by one
//! `ModelStreamInferResponse`, and those answers leave in request order. A
//! request to a decoupled model is answered by each response its model
//! sends, as it sends them, between the others' (as Triton does). Every
//! response carries the parameter `triton_final_response`: `true` on a
//! request's last; a decoupled model's final flag sent alone is an empty
//! response (its model, id and that parameter) only when the request set
//! `triton_enable_empty_final_response`. A failed request is answered by
//! its `error_message` together with an `infer_response` carrying only the
//! request's model and `id` (as Triton does, so a client can tell which
//! request failed). A failed request never ends the stream; only a broken
//! transport does, unless the stream's metadata says `triton_grpc_error:
//! true` (Triton's switch): then the first failure ends the stream with its
//! gRPC status. At shutdown a stream reads no more requests, answers those
//! it took and ends.

use super::infer;
use crate::errors::ApiError;
use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::{
    InferParameter, ModelInferRequest, ModelInferResponse, ModelStreamInferResponse,
};
use crate::state::{AppState, StreamedAnswer};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Code, Status, Streaming};

/// Requests of one stream started at once. Answers of models that are not
/// decoupled still leave in request order; a client that stops reading
/// stops the stream's progress, so the work buffered per stream is bounded.
const CONCURRENCY: usize = 4;

/// The parameter that marks a request's last response.
const FINAL: &str = "triton_final_response";

/// The request parameter that asks for a decoupled model's final flag
/// alone to be sent as an empty response.
const EMPTY_FINAL: &str = crate::v2::EMPTY_FINAL_RESPONSE;

/// The stream metadata key that makes a failure end the stream.
const GRPC_ERROR: &str = "triton_grpc_error";

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
    // A request that could not be read ends the stream: nothing after it
    // is read (the transport may give the same error again at once).
    let end_on_error = metadata
        .get(GRPC_ERROR)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    // At shutdown the stream reads no more requests; those it took are
    // answered, then it ends (OK), so that it does not hold the shutdown.
    let readable = incoming
        .take_until(state.drain_begun())
        .scan(false, |failed, next| {
            let went_on = !std::mem::replace(failed, next.is_err());
            std::future::ready(went_on.then_some(next))
        });
    // The stream's metadata that the models are to see, for each request.
    let forwarded = (state.forward_headers.grpc.as_ref())
        .map(|p| p.grpc(&metadata))
        .transpose();
    let answers = readable
        .map(move |next| {
            let state = Arc::clone(&state);
            let metadata = Arc::clone(&metadata);
            let forwarded = forwarded.clone();
            async move {
                match next {
                    Ok(request) => {
                        let span = crate::telemetry::grpc_span(
                            &state.trace,
                            &request.model_name,
                            &metadata,
                        );
                        let answer = answer(&state, request, forwarded, max_bytes, end_on_error);
                        crate::telemetry::traced(span, answer).await.responses
                    }
                    Err(status) => futures_util::stream::once(async move {
                        Err(transport_error(status, max_bytes))
                    })
                    .boxed(),
                }
            }
        })
        .buffered(CONCURRENCY)
        // Each request's responses: one, ready, for a model that is not
        // decoupled (so these keep request order), or a decoupled model's
        // as they come.
        .flatten_unordered(None);
    match end_on_error {
        // The first failure (a status) is the stream's last item.
        true => Box::pin(answers.scan(false, |ended, item| {
            let next = (!*ended).then(|| {
                *ended = item.is_err();
                item
            });
            std::future::ready(next)
        })),
        false => Box::pin(answers),
    }
}

/// Runs one request; its responses.
/// With `end_on_error`, a failure is its gRPC status (which ends the
/// stream) rather than a response carrying its `error_message`.
async fn answer(
    state: &Arc<AppState>,
    request: ModelInferRequest,
    forwarded: infer::Forwarded,
    max_bytes: usize,
    end_on_error: bool,
) -> Answered {
    let echo = ModelInferResponse {
        model_name: request.model_name.clone(),
        model_version: request.model_version.clone(),
        id: request.id.clone(),
        ..Default::default()
    };
    let empty_final = matches!(
        request.parameters.get(EMPTY_FINAL),
        Some(InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(true))
        })
    );
    let decoded = infer::decode(request, &state.shared_memory, max_bytes)
        .and_then(|mut d| infer::add_forwarded(&mut d, forwarded).map(|()| d));
    let started = match decoded {
        Ok(decoded) => state.infer_stream(decoded).await,
        Err(e) => Err(e),
    };
    let stream = match started {
        Ok(stream) => stream,
        Err(e) => {
            let response = match end_on_error {
                true => Err(Status::from(e.clone())),
                false => Ok(failed(&echo, &e)),
            };
            return Answered {
                responses: futures_util::stream::once(async move { response }).boxed(),
                error: Some(e),
            };
        }
    };
    let responses = stream.filter_map(move |answer| {
        let response = match (&answer.response, end_on_error) {
            (Some(Err(e)), true) => Some(Err(Status::from(e.clone()))),
            _ => streamed(answer, &echo, empty_final, max_bytes).map(Ok),
        };
        async move { response }
    });
    Answered {
        responses: responses.boxed(),
        error: None,
    }
}

/// One response on the stream; `None` for a final flag sent alone that the
/// request did not ask to see.
fn streamed(
    answer: StreamedAnswer,
    echo: &ModelInferResponse,
    empty_final: bool,
    max_bytes: usize,
) -> Option<ModelStreamInferResponse> {
    let response = match answer.response {
        None if !empty_final => return None,
        // As Triton: the model and id, no version.
        None => ModelInferResponse {
            model_name: echo.model_name.clone(),
            id: echo.id.clone(),
            ..Default::default()
        },
        // An error from running the request says whether it ended, as
        // Triton's does (one refused before it ran, by `answer`, does not).
        Some(Err(e)) => return Some(failed_at(echo, &e, answer.last)),
        Some(Ok(response)) => infer::encode(response),
    };
    let mut response = ModelStreamInferResponse {
        error_message: String::new(),
        infer_response: Some(final_flag(response, answer.last)),
    };
    // The stream envelope adds a few bytes to the response's own.
    if let Err(e) = infer::check_size(
        &echo.model_name,
        "response",
        response.encoded_len(),
        max_bytes,
    ) {
        response = failed_at(echo, &e, answer.last);
    }
    Some(response)
}

/// [`failed`], with `triton_final_response` set to `last`.
fn failed_at(echo: &ModelInferResponse, e: &ApiError, last: bool) -> ModelStreamInferResponse {
    ModelStreamInferResponse {
        error_message: e.message.clone(),
        infer_response: Some(final_flag(echo.clone(), last)),
    }
}

/// A response with `triton_final_response` set to `last`.
fn final_flag(mut response: ModelInferResponse, last: bool) -> ModelInferResponse {
    response.parameters.insert(
        FINAL.to_string(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(last)),
        },
    );
    response
}

/// A failed request's answer: the error, with the request's model and id.
fn failed(echo: &ModelInferResponse, e: &ApiError) -> ModelStreamInferResponse {
    ModelStreamInferResponse {
        error_message: e.message.clone(),
        infer_response: Some(echo.clone()),
    }
}

/// One request's responses on the stream, and the error that failed it
/// before any (for its span).
struct Answered {
    responses: BoxStream<'static, Result<ModelStreamInferResponse, Status>>,
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
