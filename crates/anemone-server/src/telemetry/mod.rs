//! OpenTelemetry tracing at the server's edge.
//!
//! [`settings`] decides which requests are traced (Triton's trace settings:
//! level, rate and count, global and per model, changed at run time through
//! `/v2/trace/setting`, `/v2/models/{m}/trace/setting` and the gRPC
//! `TraceSetting` RPC). [`context`] makes the request span of a traced
//! request, a child of the W3C trace context the client sent, and records its
//! status. The runtime adds the stage spans below it ([`anemone_runtime::trace`]),
//! across the hop to its worker threads.
//!
//! Spans are plain `tracing` spans with target [`anemone_runtime::trace::TARGET`];
//! the `anemone serve` command installs the layer that exports them over
//! OTLP. Without `--otlp-endpoint`, no request is traced and the hot path
//! pays one atomic load.

pub mod context;
pub mod settings;
pub mod trace_file;

pub use context::{grpc_span, http_span, traced, Protocol};
pub use settings::{TraceLevel, TraceSettings, TracingOptions};
pub use trace_file::{TraceFile, TraceRecord};

/// Triton answers settings for a model only when it is ready.
pub(crate) fn known_model(
    state: &crate::state::AppState,
    model: &str,
) -> Result<(), crate::errors::ApiError> {
    crate::limits::check_model_name(model)?;
    match state.model_ready(model, "") {
        Ok(true) => Ok(()),
        _ => Err(crate::errors::ApiError::invalid(format!(
            "Request for unknown model : {} (trace settings apply to models that are loaded and ready)",
            crate::limits::shown(model)
        ))),
    }
}
