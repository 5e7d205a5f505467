//! The request span: made at the edge for a request the settings choose to
//! trace, a child of the W3C trace context (`traceparent`, `tracestate`) the
//! client sent in HTTP headers or gRPC metadata, and closed with the
//! request's status.

use super::TraceSettings;
use crate::errors::ApiError;
use anemone_runtime::trace::TARGET;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::future::Future;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The protocol a request came in on, recorded as the span's `protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// KServe v2 over HTTP.
    Http,
    /// KServe v2 over gRPC.
    Grpc,
}

impl Protocol {
    /// `http` or `grpc`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// HTTP headers as the propagator reads them.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// gRPC metadata as the propagator reads it.
struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The request span of an HTTP inference on `model` (and `version`, as the
/// path gave it), or a disabled span when the request is not traced.
pub fn http_span(settings: &TraceSettings, model: &str, headers: &axum::http::HeaderMap) -> Span {
    if !chosen(settings, model, &Headers(headers)) {
        return Span::none();
    }
    request_span(Protocol::Http, model, &Headers(headers))
}

/// Whether a request for `model` is traced: by the rate and the count, or,
/// under Triton's OpenTelemetry rule, because it carries a sampled trace
/// context (the headers are read only then).
fn chosen(settings: &TraceSettings, model: &str, carrier: &dyn Extractor) -> bool {
    if settings.follows_context() && settings.sample_context(model) {
        let parent = TraceContextPropagator::new().extract(carrier);
        let context = parent.span().span_context().clone();
        if context.is_valid() && context.is_sampled() {
            return true;
        }
    }
    settings.sample(model)
}

/// As [`http_span`], for a gRPC `ModelInfer` with its metadata.
pub fn grpc_span(
    settings: &TraceSettings,
    model: &str,
    metadata: &tonic::metadata::MetadataMap,
) -> Span {
    if !chosen(settings, model, &Metadata(metadata)) {
        return Span::none();
    }
    request_span(Protocol::Grpc, model, &Metadata(metadata))
}

/// The span `infer` names, with the attributes the runtime and [`traced`]
/// fill in: `version` and `batch_size` (the runtime), `status`; `trace_id` is
/// the W3C trace id, so that log lines in the span carry it.
fn request_span(protocol: Protocol, model: &str, carrier: &dyn Extractor) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "infer",
        otel.kind = "server",
        model = %model,
        version = Empty,
        request_id = Empty,
        protocol = protocol.name(),
        batch_size = Empty,
        status = Empty,
        trace_id = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let parent = TraceContextPropagator::new().extract(carrier);
    let from_client = parent.span().span_context().trace_id();
    // Fails only when no OpenTelemetry layer sees the span; it is then
    // exported nowhere, and the client's trace id is still logged.
    let _ = span.set_parent(parent);
    let trace_id = match span.context().span().span_context().trace_id() {
        TraceId::INVALID => from_client,
        id => id,
    };
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// What a request's outcome looks like on its span.
pub trait Outcome {
    /// `Ok(status)` or `Err(status, message)`: the `status` attribute
    /// (the HTTP status code, or the gRPC code's name) and, on failure, the
    /// span's error description.
    fn status(&self) -> Result<String, (String, String)>;
}

impl<T> Outcome for Result<T, ApiError> {
    fn status(&self) -> Result<String, (String, String)> {
        match self {
            Ok(_) => Ok(format!("{:?}", tonic::Code::Ok)),
            Err(e) => Err((format!("{:?}", e.grpc_code()), e.message.clone())),
        }
    }
}

impl Outcome for Result<axum::response::Response, axum::response::Response> {
    fn status(&self) -> Result<String, (String, String)> {
        let response = match self {
            Ok(r) | Err(r) => r,
        };
        let code = response.status();
        if code.is_success() {
            Ok(code.as_u16().to_string())
        } else {
            let reason = code.canonical_reason().unwrap_or("error").to_string();
            Err((code.as_u16().to_string(), reason))
        }
    }
}

/// Runs `request` inside `span` (when it is traced) and records its status.
pub async fn traced<R: Outcome>(span: Span, request: impl Future<Output = R>) -> R {
    if span.is_disabled() {
        return request.await;
    }
    use tracing::Instrument;
    let result = request.instrument(span.clone()).await;
    match result.status() {
        Ok(status) => {
            span.record("status", status);
            span.record("otel.status_code", "OK");
        }
        Err((status, message)) => {
            span.record("status", status);
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", message);
        }
    }
    result
}
