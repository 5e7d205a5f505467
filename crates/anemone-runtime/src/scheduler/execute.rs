//! One engine call for one admitted request: panics caught, retryable
//! backend errors retried, outputs selected and timed.

use super::{Admitted, Done};
use crate::metrics::Timings;
use crate::request::InferResponse;
use anemone_core::{Error, ErrorKind, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

/// Runs an admitted request on the engine, retrying retryable backend
/// errors, and builds its response; called on a worker thread (or inline).
pub(crate) fn execute(admitted: Admitted) -> Done {
    let Admitted {
        instance,
        inputs,
        outputs,
        id,
        start,
        validated,
        retry_policy,
        permits,
    } = admitted;
    let picked = start.elapsed();
    let engine = instance.engine();
    let attempt = || match catch_unwind(AssertUnwindSafe(|| engine.infer(&inputs))) {
        Ok(r) => r,
        Err(panic) => Err(Error::Backend {
            backend: engine.backend().into(),
            message: format!("panicked: {}", panic_message(&*panic)),
            retryable: false,
            source: None,
        }),
    };
    let mut result = attempt();
    let mut retry = 1;
    while let Err(e) = &result {
        let Some(wait) = retry_policy
            .wait_before(retry)
            .filter(|_| e.kind() == ErrorKind::Backend && e.retryable())
        else {
            break;
        };
        tracing::debug!(model = %instance.name(), retry, error = %e, "retrying a retryable backend error");
        instance.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(wait);
        result = attempt();
        retry += 1;
    }
    let ran = start.elapsed();
    let response = result.and_then(|mut all| {
        let names = &instance.metadata().outputs;
        if all.len() != names.len() {
            return Err(Error::Internal(format!(
                "backend {} returned {} outputs for a model declaring {}",
                engine.backend(),
                all.len(),
                names.len()
            )));
        }
        let outputs = match outputs {
            None => names.iter().map(|s| s.name.clone()).zip(all).collect(),
            Some(indices) => indices
                .iter()
                .map(|&i| {
                    (
                        names[i].name.clone(),
                        std::mem::replace(&mut all[i], Tensor::scalar(0u8)),
                    )
                })
                .collect(),
        };
        let total = start.elapsed();
        Ok(InferResponse {
            model: instance.name().to_string(),
            version: instance.version(),
            backend: engine.backend(),
            id,
            outputs,
            timings: Timings {
                queue: picked - validated,
                compute_input: validated,
                compute_infer: ran - picked,
                compute_output: total - ran,
                total,
            },
        })
    });
    drop(permits);
    response
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}
