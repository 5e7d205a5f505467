//! The [`ModelCaller`] the runtime gives every engine it loads, so that a
//! model whose own code calls other models (a Python model's
//! `InferenceRequest.exec`, Triton's business-logic scripting) sends them
//! requests as a client would: admission, validation, queues, statistics.

use crate::manager::{Inner, Manager};
use crate::request::InferRequest;
use anemone_core::{CallRequest, CallResponse, Caller, Error, ModelCaller, Result, Tensor};
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
    InferRequest {
        model: request.model,
        version: request.version,
        inputs: request.inputs,
        outputs: request.outputs,
        timeout: request.timeout,
        parameters: request.parameters,
        ..Default::default()
    }
}

impl ModelCaller for ManagerCaller {
    fn call(&self, request: CallRequest) -> Result<Vec<(String, Tensor)>> {
        let manager = self.manager(&request.model)?;
        Ok(manager.infer_blocking(infer_request(request))?.outputs)
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
            let response = streamed.response.map(|r| r.map(|r| r.outputs));
            if !each(CallResponse { response, last }) || last {
                return;
            }
        }
    }
}

impl Manager {
    /// A caller into this manager, for [`anemone_core::LoadOptions::caller`].
    pub(crate) fn caller(&self) -> Caller {
        Caller(Arc::new(ManagerCaller(Arc::downgrade(&self.inner))))
    }
}
