//! The [`ModelCaller`] the runtime gives every engine it loads, so that a
//! model whose own code calls other models (a Python model's
//! `InferenceRequest.exec`, Triton's business-logic scripting) sends them
//! requests as a client would: admission, validation, queues, statistics.

use crate::manager::{Inner, Manager};
use crate::request::InferRequest;
use anemone_core::{CallRequest, Caller, Error, ModelCaller, Result, Tensor};
use std::sync::{Arc, Weak};

/// Calls through the manager while it lives (a weak reference: an engine
/// must not keep its manager alive).
struct ManagerCaller(Weak<Inner>);

impl ModelCaller for ManagerCaller {
    fn call(&self, request: CallRequest) -> Result<Vec<(String, Tensor)>> {
        let inner = self.0.upgrade().ok_or_else(|| Error::Unavailable {
            what: format!("model '{}'", request.model),
            reason: "the server is shutting down".into(),
        })?;
        let manager = Manager { inner };
        let response = manager.infer_blocking(InferRequest {
            model: request.model,
            version: request.version,
            inputs: request.inputs,
            outputs: request.outputs,
            timeout: request.timeout,
            parameters: request.parameters,
            ..Default::default()
        })?;
        Ok(response.outputs)
    }
}

impl Manager {
    /// A caller into this manager, for [`anemone_core::LoadOptions::caller`].
    pub(crate) fn caller(&self) -> Caller {
        Caller(Arc::new(ManagerCaller(Arc::downgrade(&self.inner))))
    }
}
