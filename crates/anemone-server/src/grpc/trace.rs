//! Triton's trace extension over gRPC: the `TraceSetting` RPC reads and
//! changes the global settings, or a model's when `model_name` is given. A
//! setting given with no value is cleared (it follows the global one again).

use crate::errors::ApiError;
use crate::proto::{trace_setting_request, trace_setting_response};
use crate::proto::{TraceSettingRequest, TraceSettingResponse};
use crate::state::AppState;
use crate::telemetry::settings::Update;

/// Applies the request's changes, then answers the settings now in force.
pub(super) fn setting(
    state: &AppState,
    request: TraceSettingRequest,
) -> Result<TraceSettingResponse, ApiError> {
    let model = Some(request.model_name.as_str()).filter(|m| !m.is_empty());
    if let Some(model) = model {
        crate::telemetry::known_model(state, model)?;
    }
    let updates: Vec<Update> = request
        .settings
        .into_iter()
        .map(|(name, trace_setting_request::SettingValue { value })| {
            (name, Some(value).filter(|v| !v.is_empty()))
        })
        .collect();
    if !updates.is_empty() {
        state.trace.update(model, &updates)?;
    }
    Ok(TraceSettingResponse {
        settings: state
            .trace
            .view(model)
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    trace_setting_response::SettingValue { value },
                )
            })
            .collect(),
    })
}
