//! The request path, read top to bottom: admit (concurrency permits, lookup)
//! → validate (inputs against the model) → schedule (a worker, or the calling
//! thread) → await the answer → finish (metrics, run-time fallback).

use crate::instance::ModelInstance;
use crate::manager::Manager;
use crate::registry::VersionRequest;
use crate::request::{InferRequest, InferResponse};
use crate::scheduler::{execute, Admitted, Done, Scheduler};
use crate::validation::{order_inputs, select_outputs};
use anemone_core::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Manager {
    /// Runs one inference. The engine runs on a worker thread; this future
    /// only waits. Works on any executor; a request `timeout` needs a Tokio runtime.
    ///
    /// Dropping the future before a worker picks the request up cancels it;
    /// once running, it completes and its permits are released then.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse> {
        let timeout = request.timeout;
        let start = Instant::now();
        let admitted = self.admit(request, start)?;
        let instance = Arc::clone(&admitted.instance);
        let rx = self.inner.scheduler.submit(admitted);
        let done = match timeout {
            None => rx.await,
            Some(limit) => {
                match tokio::time::timeout(limit.saturating_sub(start.elapsed()), rx).await {
                    Ok(done) => done,
                    Err(_) => return Err(record_failure(&instance, Error::Timeout(limit), start)),
                }
            }
        };
        let result = finish(done, &instance, start);
        if let Err(e) = &result {
            self.observe_failure(&instance, e);
        }
        result
    }

    /// Runs one inference on the calling thread, which must not be an async
    /// executor thread (use [`Manager::infer`] there). Skipping the hop to a
    /// worker saves two thread wake-ups, tens of microseconds on a VM.
    ///
    /// Admission, validation, panic isolation and metrics are the same as for
    /// `infer`. The engine run cannot be interrupted, so a request `timeout`
    /// only refuses a request whose deadline passed before its run began.
    pub fn infer_blocking(&self, request: InferRequest) -> Result<InferResponse> {
        let timeout = request.timeout;
        let start = Instant::now();
        let admitted = self.admit(request, start)?;
        let instance = Arc::clone(&admitted.instance);
        if let Some(limit) = timeout.filter(|limit| start.elapsed() > *limit) {
            return Err(record_failure(&instance, Error::Timeout(limit), start));
        }
        let result = finish(Ok::<_, ()>(execute(admitted)), &instance, start);
        if let Err(e) = &result {
            self.observe_failure(&instance, e);
        }
        result
    }

    /// Admission, lookup and validation: everything before the engine.
    pub(crate) fn admit(&self, request: InferRequest, start: Instant) -> Result<Admitted> {
        if !self.inner.live.load(Ordering::Relaxed) {
            return Err(self.reject(Error::Unavailable {
                what: "the manager".into(),
                reason: "it is shutting down".into(),
            }));
        }
        let global = self
            .inner
            .global
            .try_acquire()
            .map_err(|e| self.reject(e))?;
        let Some(instance) = self
            .inner
            .registry
            .get(&request.model, VersionRequest::from(request.version))
        else {
            return Err(self.reject(self.not_found(&request.model, request.version)));
        };
        let local = match instance.limiter.try_acquire() {
            Ok(p) => p,
            Err(e) => return Err(record_failure(&instance, e, start)),
        };
        let meta = instance.metadata();
        let checked = select_outputs(meta, request.outputs.as_deref())
            .and_then(|outputs| order_inputs(meta, request.inputs).map(|inputs| (inputs, outputs)));
        let (inputs, outputs) = match checked {
            Ok(v) => v,
            Err(e) => return Err(record_failure(&instance, e.into(), start)),
        };
        Ok(Admitted {
            instance,
            inputs,
            outputs,
            id: request.id,
            start,
            validated: start.elapsed(),
            retry_policy: self.inner.retry,
            permits: (global, local),
        })
    }
}

/// Records the outcome of a request that reached a worker.
pub(crate) fn finish<E>(
    done: std::result::Result<Done, E>,
    instance: &ModelInstance,
    start: Instant,
) -> Result<InferResponse> {
    match done {
        Ok(Ok(response)) => {
            let mut timings = response.timings;
            let end = Instant::now();
            timings.total = end - start;
            instance.metrics.record_success_at(&timings, end);
            Ok(InferResponse {
                timings,
                ..response
            })
        }
        Ok(Err(e)) => Err(record_failure(instance, e, start)),
        Err(_) => Err(record_failure(
            instance,
            Error::Internal("a worker dropped a request".into()),
            start,
        )),
    }
}

/// Counts a failed request on its model and hands the error back.
pub(crate) fn record_failure(instance: &ModelInstance, e: Error, start: Instant) -> Error {
    instance.metrics.record_failure(e.kind(), start.elapsed());
    e
}
