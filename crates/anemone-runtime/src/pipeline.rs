//! The request path, read top to bottom: admit (concurrency permits, lookup)
//! → validate (inputs against the model) → schedule (a worker, or the calling
//! thread) → await the answer → finish (metrics, run-time fallback).

use crate::admission::Permit;
use crate::instance::ModelInstance;
use crate::manager::Manager;
use crate::request::{InferRequest, InferResponse};
use crate::scheduler::{execute, Admitted, Done, Job, Scheduler};
use crate::validation::{check_batch, order_inputs, select_outputs};
use anemone_core::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

impl Manager {
    /// Runs one inference. The engine runs on a worker thread (or, for a
    /// tiny model, on the calling task: see [`crate::INLINE_BELOW`]); this
    /// future only waits. Works on any executor; a request `timeout` needs a
    /// Tokio runtime.
    ///
    /// Dropping the future before the request reaches an engine cancels it:
    /// it is dropped from its queue, never run. Once running, it completes and
    /// its permits are released then.
    ///
    /// A request for a model that was evicted ([`crate::ManagerBuilder::eviction`])
    /// waits while it is loaded again, then runs.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse> {
        let (timeout, priority) = (request.timeout, request.priority);
        let start = Instant::now();
        let global = self.global_permit()?;
        let instance = match self.resident(&request.model, request.version) {
            Some(instance) => instance,
            None => {
                self.load_on_demand(&request.model, request.version, timeout, start)
                    .await?
            }
        };
        let admitted = self.admit_on(instance, request, global, start)?;
        let instance = Arc::clone(&admitted.instance);
        if instance.runs_inline() {
            return self.conclude(&instance, Ok::<_, ()>(execute(admitted)), start);
        }
        let rx = self.schedule(admitted, priority, timeout, start);
        let done = match timeout {
            None => rx.await,
            Some(limit) => {
                match tokio::time::timeout(limit.saturating_sub(start.elapsed()), rx).await {
                    Ok(done) => done,
                    Err(_) => {
                        let e = record_failure(&instance, Error::Timeout(limit), start);
                        return Err(e);
                    }
                }
            }
        };
        self.conclude(&instance, done, start)
    }

    /// Runs one inference on the calling thread, which must not be an async
    /// executor thread (use [`Manager::infer`] there). Skipping the hop to a
    /// worker saves two thread wake-ups, tens of microseconds on a VM.
    ///
    /// Admission, validation, panic isolation and metrics are the same as for
    /// `infer`. The engine run cannot be interrupted, so a request `timeout`
    /// only refuses a request whose deadline passed before its run began. A
    /// model with a queue (queue settings or dynamic batching) still takes
    /// its turn there; this thread waits for it.
    pub fn infer_blocking(&self, request: InferRequest) -> Result<InferResponse> {
        let (timeout, priority) = (request.timeout, request.priority);
        let start = Instant::now();
        let global = self.global_permit()?;
        let instance = match self.resident(&request.model, request.version) {
            Some(instance) => instance,
            None => {
                self.load_on_demand_blocking(&request.model, request.version, timeout, start)?
            }
        };
        let admitted = self.admit_on(instance, request, global, start)?;
        let instance = Arc::clone(&admitted.instance);
        if instance.queue.is_some() {
            let rx = self.schedule(admitted, priority, timeout, start);
            return self.conclude(&instance, rx.blocking_recv(), start);
        }
        if let Some(limit) = timeout.filter(|limit| start.elapsed() > *limit) {
            return Err(record_failure(&instance, Error::Timeout(limit), start));
        }
        self.conclude(&instance, Ok::<_, ()>(execute(admitted)), start)
    }

    /// Hands an admitted request to the scheduler as a typed job.
    fn schedule(
        &self,
        admitted: Admitted,
        priority: Option<u32>,
        timeout: Option<Duration>,
        start: Instant,
    ) -> oneshot::Receiver<Done> {
        let (reply, rx) = oneshot::channel();
        self.inner.scheduler.submit(Job {
            admitted,
            reply,
            priority: priority.unwrap_or(0),
            deadline: timeout.map(|t| start + t),
            span: tracing::Span::current(),
        });
        rx
    }

    /// Records the outcome and lets failover see a failure.
    fn conclude<E>(
        &self,
        instance: &Arc<ModelInstance>,
        done: std::result::Result<Done, E>,
        start: Instant,
    ) -> Result<InferResponse> {
        let result = finish(done, instance, start);
        if let Err(e) = &result {
            self.observe_failure(instance, e);
        }
        result
    }

    /// The manager is live and a global permit is free.
    fn global_permit(&self) -> Result<Permit> {
        if !self.inner.live.load(Ordering::Relaxed) {
            return Err(self.reject(Error::Unavailable {
                what: "the manager".into(),
                reason: "it is shutting down".into(),
            }));
        }
        self.inner.global.try_acquire().map_err(|e| self.reject(e))
    }

    /// Admission and validation on a resident model: everything before the engine.
    fn admit_on(
        &self,
        instance: Arc<ModelInstance>,
        request: InferRequest,
        global: Permit,
        start: Instant,
    ) -> Result<Admitted> {
        if self.inner.eviction.on() {
            instance.touch(self.inner.eviction.stamp(start));
        }
        let local = match instance.limiter.try_acquire() {
            Ok(p) => p,
            Err(e) => return Err(record_failure(&instance, e, start)),
        };
        let meta = instance.metadata();
        let checked = select_outputs(meta, request.outputs.as_deref()).and_then(|outputs| {
            order_inputs(meta, request.inputs)
                .and_then(|inputs| check_batch(instance.spec.max_batch_size, meta, inputs))
                .map(|inputs| (inputs, outputs))
        });
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
            Error::Internal("a worker or queue dropped a request".into()),
            start,
        )),
    }
}

/// Counts a failed request on its model and hands the error back.
pub(crate) fn record_failure(instance: &ModelInstance, e: Error, start: Instant) -> Error {
    instance.metrics.record_failure(e.kind(), start.elapsed());
    e
}
