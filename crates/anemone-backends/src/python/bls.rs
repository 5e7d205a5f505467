//! Requests a Python model sends other models while it runs
//! (`InferenceRequest(...).exec()`, Triton's business-logic scripting),
//! run through the server's [`Caller`] as a client's would be.

use super::process::Launch;
use super::wire::{self, Reply};
use anemone_core::{Bytes, CallRequest, Caller, Error, Result, Tensor};
use std::time::Duration;

/// Runs one request of the process's model to another model.
pub(crate) fn call(
    launch: &Launch,
    caller: Option<&Caller>,
    request: Reply,
    blobs: Bytes,
) -> Result<Vec<(String, Tensor)>> {
    let caller = caller.ok_or_else(|| Error::Unavailable {
        what: format!("model '{}'", request.model_name),
        reason: "InferenceRequest.exec needs a server (or a Manager) to send the request to".into(),
    })?;
    if request.model_name == launch.model {
        return Err(Error::Config(format!(
            "model '{}' calls itself through InferenceRequest.exec, which would wait for itself; call another model",
            launch.model
        )));
    }
    let inputs = wire::tensors(&request.inputs, blobs)?;
    let parameters = wire::parameters_from_json(&request.parameters)?;
    caller.0.call(CallRequest {
        model: request.model_name,
        version: u64::try_from(request.model_version).ok().filter(|v| *v > 0),
        inputs,
        outputs: (!request.requested_output_names.is_empty())
            .then_some(request.requested_output_names),
        timeout: (request.timeout_us > 0).then(|| Duration::from_micros(request.timeout_us)),
        parameters,
    })
}
