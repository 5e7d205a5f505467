//! Between admission and the engine: typed [`Job`]s and the [`Scheduler`]
//! that hands them to the worker threads.
//!
//! Work that crosses threads is data, not a closure, so a scheduler can see,
//! reorder, batch and expire it. A job carries its inputs, the channel its
//! answer goes back on (closed when the client has gone: the job is then
//! dropped, never run), its deadline, its priority and the caller's tracing span.

mod direct;
mod execute;

pub(crate) use direct::Direct;
pub(crate) use execute::{execute, panic_message};

use crate::admission::Permit;
use crate::fallback::RetryPolicy;
use crate::instance::ModelInstance;
use crate::request::InferResponse;
use anemone_core::{Result, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request that passed admission and validation, ready for an engine.
pub(crate) struct Admitted {
    /// The model version it runs on.
    pub(crate) instance: Arc<ModelInstance>,
    /// Inputs in the model's order.
    pub(crate) inputs: Vec<Tensor>,
    /// Indices of the outputs wanted, in the order asked; `None`: all.
    pub(crate) outputs: Option<Vec<usize>>,
    /// The request's identifier, echoed in the response.
    pub(crate) id: Option<String>,
    /// When the request arrived.
    pub(crate) start: Instant,
    /// Time from arrival to the end of validation.
    pub(crate) validated: Duration,
    /// How retryable backend errors are retried.
    pub(crate) retry_policy: RetryPolicy,
    /// The global and per-model permits, released when the job ends.
    pub(crate) permits: (Permit, Permit),
}

/// What an engine call hands back to the waiting client.
pub(crate) type Done = Result<InferResponse>;

/// The sending half of a job's answer. Closed when the client's future was
/// dropped (HTTP connection closed, gRPC call cancelled).
pub(crate) type Reply = tokio::sync::oneshot::Sender<Done>;

/// One unit of scheduled work: an admitted request and where its answer goes.
#[allow(dead_code)] // priority and deadline: read by the per-model queue
pub(crate) struct Job {
    /// The request.
    pub(crate) admitted: Admitted,
    /// Where the answer goes.
    pub(crate) reply: Reply,
    /// The request's priority level (1 is the highest); 0: the model's default.
    pub(crate) priority: u32,
    /// When the job must have left the queue; `None`: no queue timeout.
    pub(crate) deadline: Option<Instant>,
    /// The caller's tracing span, entered while the job runs on a worker.
    pub(crate) span: tracing::Span,
}

impl Job {
    /// Whether the client stopped waiting: such a job is dropped, never run.
    pub(crate) fn cancelled(&self) -> bool {
        self.reply.is_closed()
    }

    /// Runs the job on this thread and sends the answer back.
    pub(crate) fn run(self) {
        if self.cancelled() {
            return;
        }
        let _entered = self.span.enter();
        let _ = self.reply.send(execute(self.admitted));
    }
}

/// What the worker threads run.
pub(crate) enum Work {
    /// One job, alone on the engine.
    One(Job),
}

impl Work {
    /// Runs the work on the calling (worker) thread.
    pub(crate) fn run(self) {
        match self {
            Work::One(job) => job.run(),
        }
    }
}

/// Hands admitted requests to engines.
pub(crate) trait Scheduler: Send + Sync {
    /// Schedules a request; its answer arrives on the returned channel.
    /// Dropping the receiver cancels the request if it has not started.
    fn submit(&self, admitted: Admitted) -> tokio::sync::oneshot::Receiver<Done>;

    /// Worker threads running engine calls.
    fn workers(&self) -> usize;
}
