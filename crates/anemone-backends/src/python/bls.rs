//! Requests a Python model sends other models while it runs
//! (`InferenceRequest(...).exec()`, Triton's business-logic scripting),
//! run through the server's [`Caller`] as a client's would be; with
//! `exec(decoupled=True)`, a stream of responses, each sent to the process
//! as it comes, from a thread of its own.

use super::process::Launch;
use super::wire::{self, Reply};
use anemone_core::{
    Bytes, CallAnswer, CallRequest, CallResponse, CallSequence, Caller, Error, Result, SequenceId,
    Tensor,
};
use std::collections::HashSet;
use std::io::Write;
use std::process::ChildStdin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs one request of the process's model to another model.
pub(crate) fn call(
    launch: &Launch,
    caller: Option<&Caller>,
    request: Reply,
    blobs: Bytes,
) -> Result<CallAnswer> {
    if let Some(action) = request.control.as_deref() {
        return control(launch, caller, action, &request).map(|outputs| CallAnswer {
            outputs,
            parameters: Vec::new(),
        });
    }
    let (caller, request) = prepare(launch, caller, request, blobs)?;
    caller.0.call(request).map_err(|e| match e {
        // A decoupled model refuses one answer; from model.py the way in
        // is exec(decoupled=True), not a client's stream.
        Error::Unsupported { what, .. } if what.contains("is decoupled") => Error::Unsupported {
            what,
            fix:
                "call it with exec(decoupled=True) (or async_exec(decoupled=True)), which returns \
                  its responses as they come"
                    .into(),
        },
        e => e,
    })
}

/// The model loading API (`pb_utils.load_model`, `unload_model`,
/// `is_model_ready`): `ready` answers one BOOL tensor, `READY`; the others
/// no tensors, or their error.
fn control(
    launch: &Launch,
    caller: Option<&Caller>,
    action: &str,
    request: &Reply,
) -> Result<Vec<(String, Tensor)>> {
    let name = request.model_name.as_str();
    let Some(caller) = caller else {
        return match action {
            "ready" => Ok(vec![ready(false)]),
            _ => Err(Error::Unavailable {
                what: format!("model '{name}'"),
                reason: "loading and unloading models need a server to load them in".into(),
            }),
        };
    };
    match action {
        "ready" => {
            let version = u64::try_from(request.model_version).ok().filter(|v| *v > 0);
            Ok(vec![ready(caller.0.is_model_ready(name, version))])
        }
        "load" | "unload" if name == launch.model => Err(Error::Config(format!(
            "model '{name}' cannot {action} itself from its own code; load or unload it through \
             the repository API"
        ))),
        "load" => caller
            .0
            .load_model(name, request.control_config.as_deref())
            .map(|()| Vec::new()),
        "unload" => caller
            .0
            .unload_model(name, request.unload_dependents)
            .map(|()| Vec::new()),
        other => Err(Error::Internal(format!(
            "unknown model control request '{other}'"
        ))),
    }
}

fn ready(ready: bool) -> (String, Tensor) {
    let tensor = Tensor::from_vec(vec![1], vec![ready]).expect("one value, shape [1]");
    ("READY".to_string(), tensor)
}

/// What a request needs before it is sent: the caller, and the request.
fn prepare<'a>(
    launch: &Launch,
    caller: Option<&'a Caller>,
    request: Reply,
    blobs: Bytes,
) -> Result<(&'a Caller, CallRequest)> {
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
    let sequence = sequence(&request)?;
    Ok((
        caller,
        CallRequest {
            model: request.model_name,
            version: u64::try_from(request.model_version).ok().filter(|v| *v > 0),
            inputs,
            outputs: (!request.requested_output_names.is_empty())
                .then_some(request.requested_output_names),
            timeout: (request.timeout_us > 0).then(|| Duration::from_micros(request.timeout_us)),
            parameters,
            sequence,
        },
    ))
}

/// A request's place in a sequence (`InferenceRequest(correlation_id=...,
/// flags=...)`, Triton's BLS with stateful models): none for a correlation
/// ID of 0 or "" without flags.
fn sequence(request: &Reply) -> Result<Option<CallSequence>> {
    use serde_json::Value;
    let id = match &request.correlation_id {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => None,
            Some(n) => Some(SequenceId::Number(n)),
            None => return Err(bad_correlation_id(n)),
        },
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(SequenceId::Text(s.clone())),
        Some(other) => return Err(bad_correlation_id(other)),
    };
    let (start, end) = (request.flags & 1 != 0, request.flags & 2 != 0);
    match id {
        Some(id) => Ok(Some(CallSequence { id, start, end })),
        None if start || end => Err(refused(format!(
            "the request to model '{}' has sequence flags but no correlation_id; give \
             InferenceRequest(correlation_id=...) the sequence's ID",
            request.model_name
        ))),
        None => Ok(None),
    }
}

fn bad_correlation_id(value: &dyn std::fmt::Display) -> Error {
    refused(format!(
        "correlation_id {value} is neither a whole number (0 to 2^64 - 1) nor a string"
    ))
}

/// A request the calling model got wrong, in its own words.
fn refused(message: String) -> Error {
    Error::Input(anemone_core::InputError::Refused { message })
}

/// The streams (`exec(decoupled=True)`) of one process that it cancelled
/// (`{"op": "bls_cancel", "call": N}`), by number, until their threads see it.
#[derive(Default)]
pub(crate) struct Cancels(Mutex<HashSet<u64>>);

impl Cancels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process cancelled stream `call`.
    pub(crate) fn cancel(&self, call: Option<u64>) {
        if let Some(call) = call {
            self.lock().insert(call);
        }
    }

    /// Whether stream `call` was cancelled (forgetting it when it was).
    fn take(&self, call: u64) -> bool {
        self.lock().remove(&call)
    }
}

/// Runs a stream the process asked for on a thread of its own, writing each
/// response to `stdin` as it comes (numbered `call`, `"more"` on all but
/// the last), until the last, the process cancels it, or it has gone.
pub(crate) fn stream(
    launch: &Launch,
    caller: Option<Caller>,
    request: Reply,
    blobs: Bytes,
    stdin: Arc<Mutex<ChildStdin>>,
    cancels: Arc<Cancels>,
) {
    let Some(call) = request.call else {
        tracing::warn!(model = %launch.model, "a stream asked for without a call number; dropped");
        return;
    };
    let (launch, failed) = (launch.clone(), Arc::clone(&stdin));
    let run = move || {
        let each = &mut |r: CallResponse| {
            if cancels.take(call) {
                return false;
            }
            let written =
                wire::stream_reply(r.response, call, r.last).map(|frame| write(&stdin, &frame));
            // A process that has gone cancels what it asked for.
            written.unwrap_or(true)
        };
        match prepare(&launch, caller.as_ref(), request, blobs) {
            Ok((caller, request)) => caller.0.call_stream(request, each),
            Err(e) => {
                each(CallResponse {
                    response: Some(Err(e)),
                    last: true,
                });
            }
        }
        cancels.take(call);
    };
    if let Err(e) = std::thread::Builder::new()
        .name("python-stream".into())
        .spawn(run)
    {
        // Answered all the same, so that the model does not wait forever.
        let why = format!("cannot start a thread for a stream from another model: {e}");
        tracing::error!("{why}");
        if let Ok(frame) = wire::stream_reply(Some(Err(Error::Internal(why))), call, true) {
            write(&failed, &frame);
        }
    }
}

/// Writes a frame to the process; `false` when it has gone.
pub(crate) fn write(stdin: &Mutex<ChildStdin>, frame: &[u8]) -> bool {
    let mut stdin = stdin.lock().unwrap_or_else(|e| e.into_inner());
    stdin.write_all(frame).and_then(|()| stdin.flush()).is_ok()
}
