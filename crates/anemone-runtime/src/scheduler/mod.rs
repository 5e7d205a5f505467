//! Between admission and the engine: typed [`Job`]s, the direct path to the
//! worker threads, and per-model queues with dynamic batching.
//!
//! Work that crosses threads is data, not a closure, so a scheduler can see,
//! reorder, batch and expire it. A job carries its inputs, the channel its
//! answer goes back on (closed when the client has gone: the job is then
//! dropped, never run), its deadline, its priority and the caller's tracing span.
//!
//! A model without queue settings or batching takes the direct path
//! (`direct.rs`): each request goes to the worker threads at once, or runs
//! on the calling task when the model is tiny (see [`INLINE_BELOW`]). A model
//! with them has a queue thread (`batcher.rs`) that orders requests by
//! priority (`queue.rs`), expires them, and forms batches, and one thread per
//! engine instance that runs them.

mod batcher;
mod direct;
mod execute;
mod order;
mod panics;
mod queue;
mod reschedule;

pub(crate) use batcher::{BatchPlan, LaneLimits, ModelQueue, QueueStart, Slot};
pub(crate) use direct::Direct;
pub(crate) use execute::{execute, execute_batch, execute_on};
pub(crate) use order::Reply;
pub(crate) use panics::panic_message;
pub(crate) use reschedule::OwnSequences;

use crate::admission::Permit;
use crate::fallback::RetryPolicy;
use crate::instance::ModelInstance;
use crate::request::InferResponse;
use anemone_core::{Result, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A model whose engine calls average at most this long runs requests on
/// the calling task instead of a worker thread: the hop to a worker and back
/// costs more (about 20 µs each way on a virtual machine) than the work, and
/// blocking an executor thread this briefly is harmless. Only models without
/// a queue and with one engine instance qualify, after [`INLINE_AFTER_RUNS`]
/// engine calls; a model that slows down goes back to the workers. In that
/// average each call counts for at most twice this long, so one call stalled
/// by the machine (a preempted thread) does not send a tiny model to the
/// workers for the dozens of calls a plain average would take to recover.
///
/// 20 µs (10 µs before): ONNX Runtime's call on a model as small as `add`
/// takes 8–12 µs, and above the line it paid the hop, 40–55 µs a request on
/// the 2-core VM (docs/PERFORMANCE.md, "What an inference adds over the
/// server's floor"). Tokio's own guidance is 10 to 100 µs between awaits.
pub const INLINE_BELOW: Duration = Duration::from_micros(20);

/// Engine calls a model must have made on the workers before it may run
/// inline (see [`INLINE_BELOW`]).
pub const INLINE_AFTER_RUNS: u64 = 16;

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
    /// The request's parameters, for engines that read them.
    pub(crate) parameters: Vec<(String, anemone_core::Parameter)>,
    /// When the request arrived.
    pub(crate) start: Instant,
    /// Time from arrival to the end of validation.
    pub(crate) validated: Duration,
    /// How retryable backend errors are retried.
    pub(crate) retry_policy: RetryPolicy,
    /// The global and per-model permits, released when the job ends;
    /// `None` when something else holds them (a decoupled request's
    /// responses, until the last: [`crate::decoupled`]).
    pub(crate) permits: Option<(Permit, Permit)>,
    /// Its stage spans, when the request is traced (see [`crate::trace`]).
    pub(crate) trace: crate::trace::Trace,
    /// Where a decoupled model's responses go (see [`crate::decoupled`]).
    pub(crate) responder: Option<anemone_core::Responder>,
    /// Positions of the optional inputs the request left out, which stand
    /// in `inputs` as placeholders (see [`crate::validation::order_inputs_absent`]).
    pub(crate) absent: Vec<usize>,
    /// The request's place in a sequence, for engines that read it.
    pub(crate) sequence: Option<anemone_core::CallSequence>,
    /// The engine instance it must run on (a sequence model's request runs
    /// on its sequence's); `None`: any.
    pub(crate) lane: Option<usize>,
    /// The request's `timeout`, for engines that show it to the model.
    pub(crate) timeout: Option<Duration>,
}

/// What an engine call hands back to the waiting client.
pub(crate) type Done = Result<InferResponse>;

/// One unit of scheduled work: an admitted request and where its answer goes.
pub(crate) struct Job {
    /// The request.
    pub(crate) admitted: Admitted,
    /// Where the answer goes.
    pub(crate) reply: Reply,
    /// The request's priority level (1 is the highest); 0: the model's default.
    pub(crate) priority: u32,
    /// The request's own deadline, if it has one: a queue timeout where the
    /// model's queue policy allows overrides.
    pub(crate) deadline: Option<Instant>,
    /// The caller's tracing span, entered while the job runs on a worker.
    pub(crate) span: tracing::Span,
}

impl Job {
    /// Whether the client stopped waiting: such a job is dropped, never run.
    pub(crate) fn cancelled(&self) -> bool {
        self.reply.is_closed()
    }

    /// Runs the job alone on this thread and sends the answer back.
    pub(crate) fn run(self) {
        self.run_on(None)
    }

    /// Runs the job alone on this thread, on engine instance `lane` (or the
    /// least-loaded one), and sends the answer back.
    pub(crate) fn run_on(self, lane: Option<usize>) {
        if self.cancelled() {
            return;
        }
        let Job {
            admitted,
            reply,
            span,
            ..
        } = self;
        let done = {
            let _entered = span.enter();
            execute_on(admitted, lane, Some(&|| reply.is_closed()))
        };
        // The span (the request's trace) ends before the answer goes, so
        // that a client holding its answer finds its trace complete.
        drop(span);
        reply.send(done);
    }
}

/// What the worker threads and the instances' threads run.
// A job is moved once, into a worker's channel; boxing it to shrink the enum
// would cost an allocation per request on the direct path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    /// One job from the direct path.
    One(Job),
    /// Jobs a model's queue dispatched together to one of its engine
    /// instances, on that instance's own thread; the slot holds the instance
    /// until they are done.
    Batch(Vec<Job>, Slot),
}

impl Work {
    /// Runs the work on the calling (worker) thread.
    pub(crate) fn run(self) {
        match self {
            Work::One(job) => job.run(),
            Work::Batch(jobs, slot) => {
                execute_batch(jobs, &slot);
                drop(slot);
            }
        }
    }
}

/// Hands admitted requests to engines.
pub(crate) trait Scheduler: Send + Sync {
    /// Schedules a job; its answer arrives on the job's reply channel.
    /// A job refused at once (its model's queue is full) is dropped, with
    /// its permits and its place in any answer order, and the error says
    /// why.
    fn submit(&self, job: Job) -> Result<()>;

    /// Worker threads running engine calls.
    fn workers(&self) -> usize;
}
