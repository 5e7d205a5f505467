//! Decoupled models ([`anemone_core::LoadedModel::decoupled`]): a request is
//! answered by any number of responses, sent by the model when it likes,
//! through a responder ([`anemone_core::Responder`]) the request carries to
//! its engine; the caller reads them from [`Responses`]. Admission,
//! validation, queueing and batching are those of every request; the
//! request's concurrency permits are held until its last response went out
//! (or nobody listens any more), so `--max-concurrency` bounds the requests
//! still streaming, not only those in their engine call.
//!
//! The request counts as a success or a failure when its engine call
//! returns (Triton counts executions, not responses). An engine call that
//! fails before the model sent its last response ends the responses with
//! that error; a model that drops a request without its last response ends
//! them with an error that says so.

use crate::admission::Permit;
use crate::instance::ModelInstance;
use crate::manager::Manager;
use crate::pipeline::finish;
use crate::request::{InferRequest, InferResponse};
use crate::scheduler::Done;
use crate::Timings;
use anemone_core::{Error, Responder, Response, ResponseSink, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

/// One response of a decoupled model, as [`Responses`] gives it.
#[derive(Debug)]
pub struct Streamed {
    /// The response (its outputs, those the request asked for, or the
    /// model's error); `None` when the model sent the final flag alone.
    pub response: Option<Result<InferResponse>>,
    /// Whether this is the request's last response.
    pub last: bool,
}

/// The responses to one request on a decoupled model, in the order the
/// model sent them. Dropping it before the request reached its engine
/// cancels the request (it is dropped from its queue, never run); after,
/// the model is told (`is_cancelled()`), and its further responses are
/// dropped.
pub struct Responses {
    rx: mpsc::UnboundedReceiver<(Streamed, u64)>,
    /// Bytes sent and not read yet (see [`Sink`]).
    waiting: Arc<AtomicU64>,
}

impl Responses {
    /// The next response; `None` after the last.
    pub async fn next(&mut self) -> Option<Streamed> {
        let next = self.rx.recv().await;
        self.read(next)
    }

    /// The next response, waiting on this thread (not an async executor's).
    pub fn blocking_next(&mut self) -> Option<Streamed> {
        let next = self.rx.blocking_recv();
        self.read(next)
    }

    fn read(&self, next: Option<(Streamed, u64)>) -> Option<Streamed> {
        let (streamed, weight) = next?;
        self.waiting.fetch_sub(weight, Ordering::Relaxed);
        Some(streamed)
    }

    /// Responses that are the one answer of a model that is not decoupled.
    fn one(answer: Result<InferResponse>) -> Responses {
        let (tx, rx) = mpsc::unbounded_channel();
        let streamed = Streamed {
            response: Some(answer),
            last: true,
        };
        let _ = tx.send((streamed, 0));
        Responses {
            rx,
            waiting: Arc::default(),
        }
    }
}

/// What one response weighs against the buffer: its outputs' bytes, and at
/// least [`MIN_WEIGHT`] (a response without outputs still takes memory).
fn weight(response: &Option<Result<InferResponse>>) -> u64 {
    let bytes = match response {
        Some(Ok(r)) => r.outputs.iter().map(|(_, t)| t.byte_len() as u64).sum(),
        _ => 0,
    };
    bytes.max(MIN_WEIGHT)
}

/// The least a response weighs against a request's response buffer.
const MIN_WEIGHT: u64 = 256;

/// An open request's channel, and the permits it holds while open.
struct Open {
    tx: mpsc::UnboundedSender<(Streamed, u64)>,
    _permits: Option<(Permit, Permit)>,
}

/// Where a decoupled model's responses to one request go: each becomes an
/// [`InferResponse`] with the outputs the request asked for.
pub(crate) struct Sink {
    /// Where the responses go, and the request's permits; `None` once the
    /// last went out (or nobody listened any more).
    to: Mutex<Option<Open>>,
    instance: Arc<ModelInstance>,
    id: Option<String>,
    /// The names of the outputs asked for; `None`: all.
    wanted: Option<Vec<String>>,
    start: Instant,
    /// Bytes sent and not read yet, shared with [`Responses`], and their
    /// limit: a caller that reads slower than the model sends cannot make
    /// the server hold its responses without end.
    waiting: Arc<AtomicU64>,
    limit: u64,
}

impl Sink {
    /// A sink for a request on `instance` asking for outputs `wanted`
    /// (indices into its metadata's outputs), and where its responses go.
    pub(crate) fn new(
        instance: &Arc<ModelInstance>,
        id: Option<String>,
        wanted: Option<&[usize]>,
        start: Instant,
        permits: Option<(Permit, Permit)>,
        limit: u64,
    ) -> (Arc<Sink>, Responses) {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicU64::new(0));
        let outputs = &instance.metadata().outputs;
        let sink = Sink {
            waiting: Arc::clone(&waiting),
            limit,
            to: Mutex::new(Some(Open {
                tx,
                _permits: permits,
            })),
            instance: Arc::clone(instance),
            id,
            wanted: wanted.map(|w| w.iter().map(|&i| outputs[i].name.clone()).collect()),
            start,
        };
        (Arc::new(sink), Responses { rx, waiting })
    }

    /// The sink as the engine holds it.
    pub(crate) fn responder(self: &Arc<Self>) -> Responder {
        Responder(Arc::clone(self) as Arc<dyn ResponseSink>)
    }

    /// Whether the caller stopped reading the responses.
    pub(crate) fn is_closed(&self) -> bool {
        let mut to = self.lock();
        let closed = to.as_ref().is_none_or(|open| open.tx.is_closed());
        if closed {
            // Nobody listens: the permits go back now.
            *to = None;
        }
        closed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.to.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request's engine call returned: counted as a success or a
    /// failure; a failure ends the responses with its error unless the last
    /// one already went out.
    pub(crate) fn executed(&self, done: Done) {
        if let Err(e) = finish(Ok::<_, ()>(done), &self.instance, self.start) {
            self.fail(e);
        }
    }

    /// Ends the responses with `error`, unless the last one already went out.
    pub(crate) fn fail(&self, error: Error) {
        self.deliver(Some(Err(error)), true);
    }

    /// Sends a response unless the last one already went out; `false` when
    /// it was not sent.
    fn deliver(&self, response: Option<Result<InferResponse>>, last: bool) -> bool {
        let mut to = self.lock();
        let weight = weight(&response);
        let waiting = self.waiting.fetch_add(weight, Ordering::Relaxed) + weight;
        if last || waiting > self.limit {
            // The permits go back before the caller sees the last response.
            let Some(Open { tx, _permits }) = to.take() else {
                return false;
            };
            drop(_permits);
            let (response, end) = match last {
                true => (response, true),
                // Too much waits for the caller: the request ends here with
                // an error, and the model is told its client has gone.
                false => (Some(Err(self.overflow(waiting - weight))), false),
            };
            let sent = tx
                .send((
                    Streamed {
                        response,
                        last: true,
                    },
                    weight,
                ))
                .is_ok();
            return sent && end;
        }
        let Some(open) = to.as_ref() else {
            return false;
        };
        let sent = open.tx.send((Streamed { response, last }, weight)).is_ok();
        if !sent {
            // Nobody listens: the permits go back.
            *to = None;
        }
        sent
    }

    /// The error that ends a request whose caller reads its responses
    /// slower than the model sends them.
    fn overflow(&self, waiting: u64) -> Error {
        Error::Overloaded {
            limit: format!(
                "response buffer of a request to model '{}' (responses sent and not read by the \
                 client: read faster, or raise --max-stream-buffer-bytes)",
                self.instance.name()
            ),
            in_use: usize::try_from(waiting).unwrap_or(usize::MAX),
            capacity: usize::try_from(self.limit).unwrap_or(usize::MAX),
        }
    }

    /// A model's response as the caller gets it: the outputs asked for, in
    /// the order asked (those the response has).
    fn response(&self, outputs: Vec<(String, anemone_core::Tensor)>) -> InferResponse {
        let outputs = match &self.wanted {
            None => outputs,
            Some(wanted) => {
                let mut outputs = outputs;
                wanted
                    .iter()
                    .filter_map(|name| {
                        let at = outputs.iter().position(|(n, _)| n == name)?;
                        Some(outputs.swap_remove(at))
                    })
                    .collect()
            }
        };
        InferResponse {
            model: self.instance.name().to_string(),
            version: self.instance.version(),
            backend: self.instance.backend(),
            id: self.id.clone(),
            outputs,
            timings: Timings {
                total: self.start.elapsed(),
                ..Timings::default()
            },
        }
    }
}

impl ResponseSink for Sink {
    fn send(&self, response: Option<Response>, last: bool) -> bool {
        let response = response.map(|r| r.outputs.map(|outputs| self.response(outputs)));
        self.deliver(response, last)
    }

    fn cancelled(&self) -> bool {
        self.is_closed()
    }
}

impl Drop for Sink {
    /// A request the model dropped without its last response: the caller
    /// is told, rather than left waiting.
    fn drop(&mut self) {
        let name = self.instance.name().to_string();
        self.fail(Error::Backend {
            backend: self.instance.backend().into(),
            message: format!(
                "model '{name}' dropped the request without sending its final response; send \
                 the last response with the final flag (TRITONSERVER_RESPONSE_COMPLETE_FINAL)"
            ),
            retryable: false,
            source: None,
        });
    }
}

impl Manager {
    /// Runs one inference on a decoupled model, whose responses (any number,
    /// the last flagged) arrive on the returned [`Responses`] as the model
    /// sends them. On a model that is not decoupled, its one answer is the
    /// only response. Admission, validation, queueing, batching and
    /// statistics are those of [`Manager::infer`], which refuses a
    /// decoupled model with [`Error::Unsupported`].
    ///
    /// Not for ensembles, sequence models or the response cache; a request
    /// `timeout` bounds only the wait before the engine call.
    pub async fn infer_decoupled(&self, request: InferRequest) -> Result<Responses> {
        let start = Instant::now();
        let instance = match self.resident(&request.model, request.version) {
            Some(instance) => instance,
            None if self.ensemble_for(&request).is_some() => {
                return Ok(Responses::one(self.infer(request).await));
            }
            None => {
                self.load_on_demand(&request.model, request.version, request.timeout, start)
                    .await?
            }
        };
        if !instance.decoupled() {
            return Ok(Responses::one(self.infer(request).await));
        }
        self.start_decoupled(instance, request, start)
    }

    /// [`Manager::infer_decoupled`] waiting on this thread (not an async
    /// executor's): for a model's own calls to other models.
    pub fn infer_decoupled_blocking(&self, request: InferRequest) -> Result<Responses> {
        let start = Instant::now();
        let instance = match self.resident(&request.model, request.version) {
            Some(instance) => instance,
            None if self.ensemble_for(&request).is_some() => {
                return Ok(Responses::one(self.infer_blocking(request)));
            }
            None => self.load_on_demand_blocking(
                &request.model,
                request.version,
                request.timeout,
                start,
            )?,
        };
        if !instance.decoupled() {
            return Ok(Responses::one(self.infer_blocking(request)));
        }
        self.start_decoupled(instance, request, start)
    }

    /// Admits and schedules a request on a decoupled instance.
    fn start_decoupled(
        &self,
        instance: Arc<ModelInstance>,
        request: InferRequest,
        start: Instant,
    ) -> Result<Responses> {
        if instance.sequences.is_some() {
            return Err(Error::Unsupported {
                what: format!(
                    "model '{}' is a decoupled sequence model, which anemone does not run yet",
                    instance.name()
                ),
                fix: "remove sequence_batching, or make the model answer once per request".into(),
            });
        }
        let (timeout, priority) = (request.timeout, request.priority);
        let global = self.global_permit()?;
        let mut admitted = self.admit_on(instance, request, global, start, None)?;
        let (sink, responses) = Sink::new(
            &admitted.instance,
            admitted.id.clone(),
            admitted.outputs.as_deref(),
            start,
            admitted.permits.take(),
            self.inner.stream_buffer_bytes,
        );
        admitted.responder = Some(sink.responder());
        self.schedule_stream(admitted, sink, priority, timeout, start)?;
        Ok(responses)
    }
}

/// A responder whose responses go nowhere (a decoupled model's warm-up).
pub(crate) fn discarding() -> Responder {
    struct Discard;
    impl ResponseSink for Discard {
        fn send(&self, _: Option<Response>, _: bool) -> bool {
            true
        }
    }
    Responder(Arc::new(Discard))
}
