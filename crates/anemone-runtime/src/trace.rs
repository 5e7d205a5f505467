//! Spans for the stages of a traced request, on whichever thread runs them.
//!
//! The server decides per request whether it is traced (its sampling
//! settings) and, when it is, runs [`crate::Manager::infer`] inside a span
//! whose target is [`TARGET`]: the request span. The runtime then opens one
//! child span per stage:
//!
//! - `compute_input`: admission and validation, on the calling task;
//! - `queue`: from scheduling until a worker takes the job;
//! - `batch_assembly`: gathering a dynamic batch's requests (batched requests
//!   only; the engine stacks their rows inside `compute_infer`);
//! - `compute_infer`: the engine call, retries included;
//! - `compute_output`: selecting (and for a batch, splitting) the outputs.
//!
//! A request that shares an engine call with others gets its own stage spans,
//! each with the attributes `batch_size` (rows in the engine call) and
//! `batch_requests` (requests in it), rather than one batch span linked to
//! every request: each request's trace then shows its whole path on its own.
//! The request span gets `version` (the version that served it) and
//! `batch_size` (the request's own rows) recorded when it declares them.
//!
//! A request that is not traced costs one look at the current span's target.

use tracing::field::Empty;
use tracing::Span;

/// The target of the request span and of every stage span. A subscriber that
/// exports traces enables this target; nothing else needs it.
pub const TARGET: &str = "anemone::trace";

/// Whether `span` is a request span the server chose to trace.
pub fn is_traced(span: &Span) -> bool {
    !span.is_disabled() && span.metadata().is_some_and(|m| m.target() == TARGET)
}

/// A span for one step of a composite request (an ensemble step running
/// `model`), a child of the current request span; disabled when the current
/// request is not traced. Run the step's [`crate::Manager::infer`] inside it
/// (`.instrument(step)`): its stage spans then sit below the step, which gets
/// the step's `version` and `batch_size` recorded.
pub fn step_span(model: &str) -> Span {
    let current = Span::current();
    if !is_traced(&current) {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        parent: &current,
        "ensemble_step",
        model = %model,
        version = Empty,
        request_id = Empty,
        batch_size = Empty,
    )
}

/// A stage of a request on its way through the runtime.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    ComputeInput,
    Queue,
    BatchAssembly,
    ComputeInfer,
    ComputeOutput,
}

/// A request's trace: its request span when the request is traced, nothing
/// otherwise.
#[derive(Default)]
pub(crate) struct Trace {
    request: Option<Span>,
    /// The open `queue` span, from scheduling to a worker taking the job.
    queue: Option<Span>,
}

impl Trace {
    /// The trace of the request running in the current span.
    pub(crate) fn current() -> Trace {
        let span = Span::current();
        if is_traced(&span) {
            Trace {
                request: Some(span),
                queue: None,
            }
        } else {
            Trace::default()
        }
    }

    /// Whether the request is traced.
    pub(crate) fn is_on(&self) -> bool {
        self.request.is_some()
    }

    /// Opens a stage span, closed when dropped; `None` when not traced.
    pub(crate) fn stage(&self, stage: Stage) -> Option<Span> {
        self.request.as_ref().map(|parent| open(parent, stage))
    }

    /// As [`Trace::stage`], for a request sharing an engine call with others.
    pub(crate) fn stage_in_batch(
        &self,
        stage: Stage,
        batch_size: usize,
        batch_requests: usize,
    ) -> Option<Span> {
        let span = self.stage(stage)?;
        span.record("batch_size", batch_size);
        span.record("batch_requests", batch_requests);
        Some(span)
    }

    /// Records a field the request span declares (`version`, `batch_size`).
    pub(crate) fn record(&self, field: &str, value: u64) {
        if let Some(span) = &self.request {
            span.record(field, value);
        }
    }

    /// Records the request's own id (its `id` field), when it has one, as
    /// the span's `request_id` (Triton's trace files carry it).
    pub(crate) fn record_request_id(&self, id: Option<&str>) {
        if let (Some(span), Some(id)) = (&self.request, id) {
            span.record("request_id", id);
        }
    }

    /// The request enters a queue (or the worker pool's channel).
    pub(crate) fn queued(&mut self) {
        self.queue = self.stage(Stage::Queue);
    }

    /// A worker took the request: its `queue` span ends.
    pub(crate) fn dequeued(&mut self) {
        self.queue = None;
    }
}

fn open(parent: &Span, stage: Stage) -> Span {
    use tracing::info_span;
    let p = parent;
    match stage {
        Stage::ComputeInput => info_span!(target: TARGET, parent: p, "compute_input"),
        Stage::Queue => info_span!(target: TARGET, parent: p, "queue"),
        Stage::BatchAssembly => {
            info_span!(target: TARGET, parent: p, "batch_assembly", batch_size = Empty, batch_requests = Empty)
        }
        Stage::ComputeInfer => {
            info_span!(target: TARGET, parent: p, "compute_infer", batch_size = Empty, batch_requests = Empty)
        }
        Stage::ComputeOutput => {
            info_span!(target: TARGET, parent: p, "compute_output", batch_size = Empty, batch_requests = Empty)
        }
    }
}
