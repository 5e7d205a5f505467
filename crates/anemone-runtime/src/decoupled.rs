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
use crate::pipeline::{enter_sequence, finish, take_turn};
use crate::request::{InferRequest, InferResponse};
use crate::responses::{Feed, Responses, Sent};
use crate::scheduler::Done;
use crate::sequence::Turn;
use crate::Timings;
use anemone_core::{Error, Responder, Response, ResponseSink, Result};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An open request's responses, and the permits it holds while open.
struct Open {
    feed: Feed,
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
    /// A sequence model's turn in the request's sequence, held until its
    /// engine call returns: the sequence's next request runs then, while
    /// this one may still be sending responses (as in Triton, whose Python
    /// backend releases a decoupled request when `execute` returns).
    turn: Mutex<Option<Box<Turn>>>,
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
        turn: Option<Box<Turn>>,
    ) -> (Arc<Sink>, Responses) {
        let (feed, responses) = Feed::new(instance.name(), limit);
        let outputs = &instance.metadata().outputs;
        let sink = Sink {
            to: Mutex::new(Some(Open {
                feed,
                _permits: permits,
            })),
            instance: Arc::clone(instance),
            id,
            wanted: wanted.map(|w| w.iter().map(|&i| outputs[i].name.clone()).collect()),
            start,
            turn: Mutex::new(turn),
        };
        (Arc::new(sink), responses)
    }

    /// The sink as the engine holds it.
    pub(crate) fn responder(self: &Arc<Self>) -> Responder {
        Responder(Arc::clone(self) as Arc<dyn ResponseSink>)
    }

    /// Whether the caller stopped reading the responses.
    pub(crate) fn is_closed(&self) -> bool {
        let mut to = self.lock();
        let closed = to.as_ref().is_none_or(|open| open.feed.is_closed());
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
        // The sequence's next request may run now.
        drop(self.turn.lock().unwrap_or_else(|e| e.into_inner()).take());
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
        let sent = match (last, to.as_ref()) {
            (_, None) => return false,
            (false, Some(open)) => open.feed.send(response, false),
            (true, Some(_)) => {
                // The permits go back before the caller sees the last response.
                let Some(Open { feed, _permits }) = to.take() else {
                    return false;
                };
                drop(_permits);
                return feed.send(response, true) == Sent::Delivered;
            }
        };
        match sent {
            Sent::Delivered => true,
            // Nobody listens: the permits go back.
            Sent::Gone => {
                *to = None;
                false
            }
            // Too much waits for the caller: the request ends with an
            // error (its permits back first), and the model is told its
            // client has gone.
            Sent::Overflow => {
                if let Some(Open { feed, _permits }) = to.take() {
                    drop(_permits);
                    feed.overflowed();
                }
                false
            }
        }
    }

    /// A model's response as the caller gets it: the outputs asked for, in
    /// the order asked (those the response has).
    fn response(
        &self,
        outputs: Vec<(String, anemone_core::Tensor)>,
        parameters: Vec<(String, anemone_core::Parameter)>,
    ) -> InferResponse {
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
            parameters,
            timings: Timings {
                total: self.start.elapsed(),
                ..Timings::default()
            },
        }
    }
}

impl ResponseSink for Sink {
    fn send(&self, response: Option<Response>, last: bool) -> bool {
        let response = response.map(|r| {
            let parameters = r.parameters;
            r.outputs.map(|outputs| self.response(outputs, parameters))
        });
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
    /// An ensemble with a decoupled step answers here, one response per
    /// response of that step ([`crate::ensemble`]); another ensemble's one
    /// answer is the only response. A sequence model's requests run in
    /// their sequence's order, each once the one before returned from its
    /// engine call (its responses may still be coming). Not for the
    /// response cache; a request `timeout` bounds only the wait before the
    /// engine call.
    pub async fn infer_decoupled(&self, request: InferRequest) -> Result<Responses> {
        let start = Instant::now();
        let instance = match self.resident(&request.model, request.version) {
            Some(instance) => instance,
            None => match self.ensemble_for(&request) {
                Some(e) if e.streams() => return self.infer_ensemble_stream(e, request),
                Some(_) => return Ok(Responses::one(self.infer(request).await)),
                None => {
                    self.load_on_demand(&request.model, request.version, request.timeout, start)
                        .await?
                }
            },
        };
        if !instance.decoupled() {
            return Ok(Responses::one(self.infer(request).await));
        }
        // A sequence model's request waits for its turn holding no permit.
        let turn = take_turn(&instance, &request, request.timeout, start).await?;
        self.start_decoupled(instance, request, start, turn)
    }

    /// [`Manager::infer_decoupled`] waiting on this thread (not an async
    /// executor's): for a model's own calls to other models.
    pub fn infer_decoupled_blocking(&self, request: InferRequest) -> Result<Responses> {
        let start = Instant::now();
        let instance = match self.resident(&request.model, request.version) {
            Some(instance) => instance,
            None => match self.ensemble_for(&request) {
                Some(e) if e.streams() => return self.infer_ensemble_stream(e, request),
                Some(_) => return Ok(Responses::one(self.infer_blocking(request))),
                None => self.load_on_demand_blocking(
                    &request.model,
                    request.version,
                    request.timeout,
                    start,
                )?,
            },
        };
        if !instance.decoupled() {
            return Ok(Responses::one(self.infer_blocking(request)));
        }
        let turn = enter_sequence(&instance, &request)?
            .map(|entered| Box::new(entered.turn_blocking(request.outputs.as_deref())));
        self.start_decoupled(instance, request, start, turn)
    }

    /// Admits and schedules a request on a decoupled instance; a sequence
    /// model's request comes with its turn in its sequence.
    fn start_decoupled(
        &self,
        instance: Arc<ModelInstance>,
        request: InferRequest,
        start: Instant,
        turn: Option<Box<Turn>>,
    ) -> Result<Responses> {
        let (timeout, priority) = (request.timeout, request.priority);
        let global = self.global_permit()?;
        let mut admitted = self.admit_on(instance, request, global, start, turn.as_deref())?;
        let (sink, responses) = Sink::new(
            &admitted.instance,
            admitted.id.clone(),
            admitted.outputs.as_deref(),
            start,
            admitted.permits.take(),
            self.inner.stream_buffer_bytes,
            turn,
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
