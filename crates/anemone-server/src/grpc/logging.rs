//! Triton's `LogSettings` RPC: the same settings as `/v2/logging`, as a map of
//! typed values (see [`crate::settings`]).

use crate::errors::ApiError;
use crate::proto::log_settings_request::setting_value::ParameterChoice as In;
use crate::proto::log_settings_response::setting_value::ParameterChoice as Out;
use crate::proto::{log_settings_response, LogSettingsRequest, LogSettingsResponse};
use crate::settings::{LogSettings, LogUpdate, Settings};

/// Applies the settings a request carries (none: only reads them) and
/// answers the settings in force.
pub(super) fn log_settings(
    settings: &Settings,
    request: LogSettingsRequest,
) -> Result<LogSettingsResponse, ApiError> {
    let current = if request.settings.is_empty() {
        settings.log_settings()?
    } else {
        settings.update_log(&update(request)?)?
    };
    Ok(response(current))
}

fn update(request: LogSettingsRequest) -> Result<LogUpdate, ApiError> {
    let mut update = LogUpdate::default();
    for (key, value) in request.settings {
        let value = value.parameter_choice;
        let wrong = |kind: &str| {
            ApiError::invalid(format!(
                "log setting '{}' must be a {kind}",
                crate::limits::shown(&key)
            ))
        };
        let boolean = |v: &Option<In>| match v {
            Some(In::BoolParam(b)) => Ok(*b),
            _ => Err(wrong("bool_param")),
        };
        let string = |v: &Option<In>| match v {
            Some(In::StringParam(s)) => Ok(s.clone()),
            _ => Err(wrong("string_param")),
        };
        match key.as_str() {
            "log_info" => update.log_info = Some(boolean(&value)?),
            "log_warning" => update.log_warning = Some(boolean(&value)?),
            "log_error" => update.log_error = Some(boolean(&value)?),
            "log_file" => update.log_file = Some(string(&value)?),
            "log_format" => update.log_format = Some(string(&value)?),
            "log_verbose_level" => {
                update.log_verbose_level = Some(match value {
                    Some(In::Uint32Param(n)) => n,
                    _ => return Err(wrong("uint32_param")),
                })
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown log setting '{}'; the settings are log_file, log_info, log_warning, \
                     log_error, log_verbose_level, log_format",
                    crate::limits::shown(other)
                )))
            }
        }
    }
    Ok(update)
}

fn response(s: LogSettings) -> LogSettingsResponse {
    let value = |v: Out| log_settings_response::SettingValue {
        parameter_choice: Some(v),
    };
    let settings = [
        ("log_file", value(Out::StringParam(s.log_file))),
        ("log_info", value(Out::BoolParam(s.log_info))),
        ("log_warning", value(Out::BoolParam(s.log_warning))),
        ("log_error", value(Out::BoolParam(s.log_error))),
        (
            "log_verbose_level",
            value(Out::Uint32Param(s.log_verbose_level)),
        ),
        ("log_format", value(Out::StringParam(s.log_format))),
    ];
    LogSettingsResponse {
        settings: settings
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}
