//! The [`ModelCaller`] the runtime gives every engine it loads, so that a
//! model whose own code calls other models (a Python model's
//! `InferenceRequest.exec`, Triton's business-logic scripting) sends them
//! requests as a client would: admission, validation, queues, statistics.

use crate::manager::{Inner, Manager};
use crate::request::{InferRequest, InferResponse};
use anemone_core::{CallAnswer, CallRequest, CallResponse, Caller, Error, ModelCaller, Result};
use std::sync::{Arc, Weak};

/// Calls through the manager while it lives (a weak reference: an engine
/// must not keep its manager alive).
struct ManagerCaller(Weak<Inner>);

impl ManagerCaller {
    fn manager(&self, model: &str) -> Result<Manager> {
        let inner = self.0.upgrade().ok_or_else(|| Error::Unavailable {
            what: format!("model '{model}'"),
            reason: "the server is shutting down".into(),
        })?;
        Ok(Manager { inner })
    }
}

fn infer_request(request: CallRequest) -> InferRequest {
    use crate::sequence::{CorrelationId, SequenceFlags};
    let sequence = request.sequence.map(|s| {
        Box::new(SequenceFlags {
            id: match s.id {
                anemone_core::SequenceId::Number(n) => CorrelationId::Number(n),
                anemone_core::SequenceId::Text(t) => CorrelationId::Text(t),
            },
            start: s.start,
            end: s.end,
        })
    });
    InferRequest {
        model: request.model,
        version: request.version,
        inputs: request.inputs,
        outputs: request.outputs,
        timeout: request.timeout,
        parameters: request.parameters,
        sequence,
        ..Default::default()
    }
}

/// A response as a caller's answer: its outputs and parameters.
fn answer(response: InferResponse) -> CallAnswer {
    CallAnswer {
        outputs: response.outputs,
        parameters: response.parameters,
    }
}

impl ModelCaller for ManagerCaller {
    fn call(&self, request: CallRequest) -> Result<CallAnswer> {
        let manager = self.manager(&request.model)?;
        Ok(answer(manager.infer_blocking(infer_request(request))?))
    }

    /// Reads the responses on this thread; stopping drops them, which
    /// cancels the request ([`crate::Responses`]).
    fn call_stream(&self, request: CallRequest, each: &mut dyn FnMut(CallResponse) -> bool) {
        let started = self
            .manager(&request.model)
            .and_then(|manager| manager.infer_decoupled_blocking(infer_request(request)));
        let mut responses = match started {
            Ok(responses) => responses,
            Err(e) => {
                each(CallResponse {
                    response: Some(Err(e)),
                    last: true,
                });
                return;
            }
        };
        while let Some(streamed) = responses.blocking_next() {
            let last = streamed.last;
            let response = streamed.response.map(|r| r.map(answer));
            if !each(CallResponse { response, last }) || last {
                return;
            }
        }
    }

    fn load_model(&self, name: &str, config: Option<&str>) -> Result<()> {
        match self.manager(name)?.repository_control() {
            Some(control) => control.load(name, config),
            None => ModelCaller::load_model(&Unsupported, name, config),
        }
    }

    fn unload_model(&self, name: &str, dependents: bool) -> Result<()> {
        match self.manager(name)?.repository_control() {
            Some(control) => control.unload(name, dependents),
            None => ModelCaller::unload_model(&Unsupported, name, dependents),
        }
    }

    fn is_model_ready(&self, name: &str, version: Option<u64>) -> bool {
        let Ok(manager) = self.manager(name) else {
            return false;
        };
        match manager.model(name, version) {
            Ok(_) => true,
            Err(_) => {
                version.is_none_or(|v| v == 1)
                    && manager.ensemble_state(name) == Some(crate::ModelState::Ready)
            }
        }
    }
}

/// The trait's defaults: what a caller without a repository answers.
struct Unsupported;

impl ModelCaller for Unsupported {
    fn call(&self, request: CallRequest) -> Result<CallAnswer> {
        Err(Error::Internal(format!(
            "no call to '{}' here",
            request.model
        )))
    }
}

/// Loads and unloads models from the server's model repository, for
/// models whose code asks to (Triton's model loading API,
/// `pb_utils.load_model`); the server sets it with
/// [`Manager::set_repository_control`]. Blocking: called on an engine's thread.
pub trait RepositoryControl: Send + Sync {
    /// Loads (or reloads) `name`, with `config` (JSON) in place of its own.
    fn load(&self, name: &str, config: Option<&str>) -> Result<()>;
    /// Unloads `name`; with `dependents`, an ensemble's composing models too.
    fn unload(&self, name: &str, dependents: bool) -> Result<()>;
}

impl Manager {
    /// Lets models whose code loads and unloads other models (a Python
    /// model's `pb_utils.load_model`) do so through `control`. Without it,
    /// they are refused, saying so.
    pub fn set_repository_control(&self, control: Arc<dyn RepositoryControl>) {
        *self
            .inner
            .repository_control
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(control);
    }

    fn repository_control(&self) -> Option<Arc<dyn RepositoryControl>> {
        self.inner
            .repository_control
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A caller into this manager, for [`anemone_core::LoadOptions::caller`].
    pub(crate) fn caller(&self) -> Caller {
        Caller(Arc::new(ManagerCaller(Arc::downgrade(&self.inner))))
    }
}
