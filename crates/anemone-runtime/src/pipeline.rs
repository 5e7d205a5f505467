//! The request path, read top to bottom: admit (concurrency permits, lookup)
//! → a sequence model's turn (see [`crate::sequence`]: its earlier requests
//! done; waited for without a permit) → validate (inputs against the model;
//! a sequence model's control and state inputs added) → schedule (the engine adopts the inputs it wants
//! elsewhere, then a queue or a worker; or the calling thread) → await the
//! answer → finish (metrics, run-time fallback; a sequence's state kept).

use crate::admission::Permit;
use crate::cache::CacheKey;
use crate::instance::ModelInstance;
use crate::manager::Manager;
use crate::request::{InferRequest, InferResponse};
use crate::scheduler::{execute, Admitted, Done, Job, Reply, Scheduler};
use crate::validation::{
    check_batch_given, explain_optional, order_inputs, order_inputs_absent, select_outputs,
};
use anemone_core::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

mod sequence_turn;
use sequence_turn::keep_state;
pub(crate) use sequence_turn::{enter_sequence, take_turn};

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
        let resident = self.resident(&request.model, request.version);
        if resident.is_none() {
            if let Some(ensemble) = self.ensemble_for(&request) {
                // Its steps take their own permits.
                return self.infer_ensemble(ensemble, request).await;
            }
        }
        let global = self.global_permit()?;
        let instance = match resident {
            Some(instance) => instance,
            None => {
                self.load_on_demand(&request.model, request.version, timeout, start)
                    .await?
            }
        };
        if instance.decoupled() {
            let e = anemone_core::respond::one_answer_refused(instance.name());
            return Err(refuse(&instance, e));
        }
        // A sequence model's request waits for its turn holding no permit,
        // so that one client flooding a sequence cannot take the permits
        // other clients' requests need; it takes one again when its turn
        // comes. Boxed: the wait is a sequence model's alone, and a future
        // that held it in place would make every request's future larger.
        let (global, turn) = match instance.sequences {
            None => (global, None),
            Some(_) => {
                drop(global);
                let turn = Box::pin(take_turn(&instance, &request, timeout, start)).await?;
                (self.global_permit()?, turn)
            }
        };
        let admitted = self.admit_on(instance, request, global, start, turn.as_deref())?;
        let (admitted, cache_key) = match self.lookup(admitted) {
            Lookup::Hit(response) => return Ok(response),
            Lookup::Run(admitted, key) => (admitted, key),
        };
        let instance = Arc::clone(&admitted.instance);
        // Under a queue policy that delays a request past its own timeout
        // (DELAY with allow_timeout_override), the timeout only orders the
        // queue, as in Triton: the request still runs and is answered.
        let bound = timeout.filter(|_| {
            !(instance.spec.queue.as_ref())
                .is_some_and(|q| q.delays_timed_out(priority.unwrap_or(0)))
        });
        if let Some(limit) = expired(bound, start) {
            return Err(record_failure(&instance, Error::Timeout(limit), start));
        }
        if instance.runs_inline() {
            let done = Ok::<_, ()>(execute(admitted));
            let result = self.conclude(&instance, done, start, turn.as_deref());
            return self.remember(&instance, cache_key, result);
        }
        // Set when this waiter records the outcome itself and stops waiting
        // (a timeout); else, should this future be dropped (its client
        // gone), the worker records it.
        let settled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rx = self.schedule(
            admitted,
            priority,
            timeout,
            start,
            Some(Arc::clone(&settled)),
        )?;
        let done = match bound {
            None => rx.await,
            Some(limit) => {
                let mut rx = rx;
                let left = tokio::time::sleep(limit.saturating_sub(start.elapsed()));
                tokio::select! {
                    done = &mut rx => done,
                    () = left => {
                        // Settled before the receiver goes: a worker whose
                        // answer then finds no one records nothing, so the
                        // request counts once. An answer that came in the
                        // meantime is the answer.
                        settled.store(true, std::sync::atomic::Ordering::Release);
                        match rx.try_recv() {
                            Ok(done) => Ok(done),
                            Err(_) => {
                                let e = record_failure(&instance, Error::Timeout(limit), start);
                                return Err(e);
                            }
                        }
                    }
                }
            }
        };
        let result = self.conclude(&instance, done, start, turn.as_deref());
        self.remember(&instance, cache_key, result)
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
        let resident = self.resident(&request.model, request.version);
        if resident.is_none() {
            if let Some(ensemble) = self.ensemble_for(&request) {
                return self.infer_ensemble_blocking(ensemble, request);
            }
        }
        let global = self.global_permit()?;
        let instance = match resident {
            Some(instance) => instance,
            None => {
                self.load_on_demand_blocking(&request.model, request.version, timeout, start)?
            }
        };
        if instance.decoupled() {
            let e = anemone_core::respond::one_answer_refused(instance.name());
            return Err(refuse(&instance, e));
        }
        let outputs = request.outputs.as_deref();
        // As in `infer`: no permit held while waiting for the turn.
        let (global, turn) = match enter_sequence(&instance, &request)? {
            None => (global, None),
            Some(entered) => {
                drop(global);
                let turn = Box::new(entered.turn_blocking(outputs));
                (self.global_permit()?, Some(turn))
            }
        };
        let admitted = self.admit_on(instance, request, global, start, turn.as_deref())?;
        let (admitted, cache_key) = match self.lookup(admitted) {
            Lookup::Hit(response) => return Ok(response),
            Lookup::Run(admitted, key) => (admitted, key),
        };
        let instance = Arc::clone(&admitted.instance);
        if let Some(limit) = expired(timeout, start) {
            return Err(record_failure(&instance, Error::Timeout(limit), start));
        }
        if instance.queue.is_some() {
            let rx = self.schedule(admitted, priority, timeout, start, None)?;
            let result = self.conclude(&instance, rx.blocking_recv(), start, turn.as_deref());
            return self.remember(&instance, cache_key, result);
        }
        let done = Ok::<_, ()>(execute(admitted));
        let result = self.conclude(&instance, done, start, turn.as_deref());
        self.remember(&instance, cache_key, result)
    }

    /// Answers an admitted request from the response cache when its model
    /// uses the cache and the answer is there; otherwise hands it back with
    /// the key its answer will be stored under.
    fn lookup(&self, admitted: Admitted) -> Lookup {
        let Some(cache) = self
            .inner
            .cache
            .as_ref()
            // A sequence model's answers depend on the sequence, and an
            // answer to a request with its own parameters may depend on
            // them (a Python model reads them), not only on the inputs.
            .filter(|_| {
                admitted.instance.spec.response_cache
                    && admitted.instance.sequences.is_none()
                    && admitted.parameters.is_empty()
            })
        else {
            return Lookup::Run(admitted, None);
        };
        let looked = Instant::now();
        let instance = &admitted.instance;
        let key = cache.key(
            instance.name(),
            instance.version(),
            &[instance.load_id()],
            &admitted.inputs,
            admitted.outputs.as_deref(),
        );
        match cache.get(&key) {
            None => Lookup::Run(admitted, Some((key, looked.elapsed()))),
            Some(outputs) => {
                let total = admitted.start.elapsed();
                let queued = looked.saturating_duration_since(admitted.start);
                instance.metrics.record_cache_hit(total, queued);
                Lookup::Hit(InferResponse {
                    model: instance.name().to_string(),
                    version: instance.version(),
                    backend: instance.backend(),
                    id: admitted.id,
                    outputs,
                    parameters: Vec::new(),
                    timings: crate::Timings {
                        total,
                        ..Default::default()
                    },
                })
            }
        }
    }

    /// Stores a successful answer in the response cache, when the request
    /// was looked up there and missed.
    fn remember(
        &self,
        instance: &ModelInstance,
        key: Option<(CacheKey, Duration)>,
        result: Result<InferResponse>,
    ) -> Result<InferResponse> {
        if let (Some((key, looking)), Some(cache)) = (key, self.inner.cache.as_ref()) {
            let storing = Instant::now();
            // The cache keeps outputs only: a response with parameters is
            // not kept (a hit would answer without them).
            match &result {
                Ok(response) if response.parameters.is_empty() => {
                    cache.insert(key, &response.outputs)
                }
                _ => {}
            }
            instance
                .metrics
                .record_cache_miss(looking + storing.elapsed());
        }
        result
    }

    /// Hands an admitted request to the scheduler as a typed job (a full
    /// queue refuses it, and counts the refusal: see `ModelQueue::submit`).
    fn schedule(
        &self,
        admitted: Admitted,
        priority: Option<u32>,
        timeout: Option<Duration>,
        start: Instant,
        settled: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<oneshot::Receiver<Done>> {
        let (reply, rx) = oneshot::channel();
        let reply = match settled {
            Some(settled) => Reply::new(reply).recorded_if_unheard((
                Arc::clone(&admitted.instance),
                start,
                settled,
            )),
            None => Reply::new(reply),
        };
        self.submit(admitted, reply, priority, timeout, start)?;
        Ok(rx)
    }

    /// The engine adopts the inputs it wants elsewhere; then the request
    /// goes to the scheduler as a job whose answer goes to `reply`.
    fn submit(
        &self,
        mut admitted: Admitted,
        reply: Reply,
        priority: Option<u32>,
        timeout: Option<Duration>,
        start: Instant,
    ) -> Result<()> {
        adopt_inputs(&admitted.instance, &mut admitted.inputs);
        admitted.trace.queued();
        self.inner.scheduler.submit(Job {
            admitted,
            reply,
            priority: priority.unwrap_or(0),
            deadline: timeout.map(|t| start + t),
            span: tracing::Span::current(),
        })
    }

    /// Keeps a sequence's state from the answer (a state that cannot be
    /// kept fails the request), then records the outcome and lets failover
    /// see a failure.
    fn conclude<E>(
        &self,
        instance: &Arc<ModelInstance>,
        done: std::result::Result<Done, E>,
        start: Instant,
        turn: Option<&crate::sequence::Turn>,
    ) -> Result<InferResponse> {
        let done = done.map(|done| keep_state(turn, done));
        let result = finish(done, instance, start);
        if let Err(e) = &result {
            self.observe_failure(instance, e);
        }
        result
    }

    /// Hands an admitted request on a decoupled model to the scheduler; its
    /// responses go to `sink`.
    pub(crate) fn schedule_stream(
        &self,
        admitted: Admitted,
        sink: Arc<crate::decoupled::Sink>,
        priority: Option<u32>,
        timeout: Option<Duration>,
        start: Instant,
    ) -> Result<()> {
        if let Some(limit) = expired(timeout, start) {
            let e = Error::Timeout(limit);
            return Err(record_failure(&admitted.instance, e, start));
        }
        self.submit(admitted, Reply::stream(sink), priority, timeout, start)
    }

    /// The manager is live and a global permit is free.
    pub(crate) fn global_permit(&self) -> Result<Permit> {
        if !self.inner.live.load(Ordering::Relaxed) {
            return Err(self.reject(Error::Unavailable {
                what: "the manager".into(),
                reason: "it is shutting down".into(),
            }));
        }
        self.inner.global.try_acquire().map_err(|e| self.reject(e))
    }

    /// Admission and validation on a resident model: everything before the
    /// engine. A refused request in a sequence leaves it as it was.
    pub(crate) fn admit_on(
        &self,
        instance: Arc<ModelInstance>,
        request: InferRequest,
        global: Permit,
        start: Instant,
        sequence: Option<&crate::sequence::Turn>,
    ) -> Result<Admitted> {
        let admitted = self.admit_checked(instance, request, global, start, sequence);
        if let (Err(_), Some(turn)) = (&admitted, sequence) {
            turn.refused();
        }
        admitted
    }

    fn admit_checked(
        &self,
        instance: Arc<ModelInstance>,
        request: InferRequest,
        global: Permit,
        start: Instant,
        sequence: Option<&crate::sequence::Turn>,
    ) -> Result<Admitted> {
        if self.inner.eviction.on() {
            instance.touch(self.inner.eviction.stamp(start));
        }
        let trace = crate::trace::Trace::current();
        let input_span = trace.stage(crate::trace::Stage::ComputeInput);
        trace.record("version", instance.version());
        trace.record_request_id(request.id.as_deref());
        let local = match instance.limiter.try_acquire() {
            Ok(p) => p,
            Err(e) => return Err(refuse(&instance, e)),
        };
        let meta = instance.metadata();
        let spec = &instance.spec;
        let served = spec.declared_outputs.as_deref();
        // A model that reads its inputs by name (a Python model) may be
        // sent without its optional inputs; any other needs them all.
        let by_name = !spec.optional_inputs.is_empty() && instance.takes_absent_inputs();
        let checked =
            select_outputs(meta, served, request.outputs.as_deref()).and_then(|outputs| {
                let ordered = match by_name {
                    false => order_inputs(meta, request.inputs)
                        .map(|inputs| (inputs, Vec::new()))
                        .map_err(|e| explain_optional(e, &spec.optional_inputs)),
                    true => order_inputs_absent(meta, request.inputs, &spec.optional_inputs),
                };
                ordered
                    .and_then(|(inputs, absent)| {
                        check_batch_given(spec.max_batch_size, meta, inputs, &absent)
                            .map(|inputs| (inputs, absent))
                    })
                    .map(|(inputs, absent)| (inputs, absent, outputs))
            });
        let (inputs, absent, mut outputs) = match checked {
            Ok(v) => v,
            Err(e) => {
                let e = crate::validation::explain_server_given(e, |name| server_given(spec, name));
                return Err(refuse(&instance, e.for_model(instance.name()).into()));
            }
        };
        // A sequence model's state outputs are computed for every request.
        if let (Some(sequences), Some(wanted)) = (&instance.sequences, &mut outputs) {
            for state in &sequences.settings().states {
                let at = meta.outputs.iter().position(|o| o.name == state.output);
                if let Some(at) = at.filter(|at| !wanted.contains(at)) {
                    wanted.push(at);
                }
            }
        }
        // Reshaped inputs (Triton's `reshape`) take the model's shapes here,
        // before they are sampled, cached, queued or batched.
        let inputs = match spec.reshapes.inputs.is_empty() {
            true => inputs,
            false => {
                let names = meta.inputs.iter().map(|i| i.name.as_str());
                let batched = crate::reshape::batched(spec);
                match spec.reshapes.to_model(names, inputs, batched) {
                    Ok(inputs) => inputs,
                    Err(e) => return Err(refuse(&instance, e)),
                }
            }
        };
        // A sequence model's control inputs join the request's.
        let inputs = match (&instance.sequences, sequence) {
            (Some(sequences), Some(turn)) => {
                match sequences
                    .check_one_row(&inputs)
                    .and_then(|()| sequences.with_controls(turn.flags(), turn.state(), inputs))
                {
                    Ok(inputs) => inputs,
                    Err(e) => return Err(refuse(&instance, e)),
                }
            }
            _ => inputs,
        };
        if let Some(sampler) = &instance.sampler {
            sampler.offer(&inputs);
        }
        drop(input_span);
        Ok(Admitted {
            instance,
            inputs,
            outputs,
            id: request.id,
            parameters: request.parameters,
            start,
            validated: start.elapsed(),
            retry_policy: self.inner.retry,
            permits: Some((global, local)),
            trace,
            responder: None,
            absent,
            sequence: request
                .sequence
                .as_deref()
                .map(crate::sequence::SequenceFlags::to_call),
            lane: sequence.and_then(crate::sequence::Turn::lane),
            timeout: request.timeout,
        })
    }
}

/// Lets the engine copy each input to where it reads it faster
/// ([`anemone_core::LoadedModel::adopt_input`]: page-locked memory for
/// tract-cuda) now, on the request's own task, while the request is about
/// to wait, rather than in the run of its batch. An engine that panics
/// there leaves the request its own inputs (the panic is logged).
fn adopt_inputs(instance: &ModelInstance, inputs: &mut [anemone_core::Tensor]) {
    let engine = instance.first_engine();
    for (ix, input) in inputs.iter_mut().enumerate() {
        let adopted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.adopt_input(ix, input)
        }));
        match adopted {
            Ok(Some(adopted)) => *input = adopted,
            Ok(None) => {}
            Err(panic) => tracing::warn!(
                model = %instance.name(),
                input = ix,
                panic = %crate::scheduler::panic_message(&*panic),
                "the engine panicked while adopting an input; the request keeps its own"
            ),
        }
    }
}

/// What the response cache made of a request. Not boxed: it lives on the
/// stack for one match, and a box would cost every request an allocation.
#[allow(clippy::large_enum_variant)]
enum Lookup {
    /// Answered from the cache.
    Hit(InferResponse),
    /// To run; with a cache key (and the time the lookup took) when the
    /// model uses the cache.
    Run(Admitted, Option<(CacheKey, Duration)>),
}

/// Records the outcome of a request that reached a worker; a sequence
/// model's error is put in the request's terms (see
/// [`crate::sequence::SequenceSettings::in_request_terms`]).
pub(crate) fn finish<E>(
    done: std::result::Result<Done, E>,
    instance: &ModelInstance,
    start: Instant,
) -> Result<InferResponse> {
    let result = recorded(done, instance, start);
    match &instance.spec.sequence {
        Some(sequence) => result.map_err(|e| sequence.in_request_terms(e)),
        None => result,
    }
}

fn recorded<E>(
    done: std::result::Result<Done, E>,
    instance: &ModelInstance,
    start: Instant,
) -> Result<InferResponse> {
    match done {
        Ok(Ok(mut response)) => {
            // Reshaped outputs (Triton's `reshape`) get their served shapes.
            let reshapes = &instance.spec.reshapes;
            if !reshapes.outputs.is_empty() {
                let batched = crate::reshape::batched(&instance.spec);
                if let Err(e) = reshapes.to_served(&mut response.outputs, batched) {
                    return Err(record_failure(instance, e, start));
                }
            }
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

/// Counts a request refused before it was queued or run on its model (by
/// reason, not as a failed inference) and hands the error back.
fn refuse(instance: &ModelInstance, e: Error) -> Error {
    instance.metrics.record_refusal(e.kind());
    e
}

/// Counts a failed request on its model and hands the error back.
pub(crate) fn record_failure(instance: &ModelInstance, e: Error, start: Instant) -> Error {
    instance.metrics.record_failure(e.kind(), start.elapsed());
    e
}

/// The request's timeout when it has already run out: such a request is
/// refused before it is queued or run, on every path. (A wait of zero on
/// tokio's timer still lasts until its next 1 ms tick, and a request run
/// inline had no check at all: a `timeout` of a microsecond was answered.)
#[inline]
fn expired(timeout: Option<Duration>, start: Instant) -> Option<Duration> {
    timeout.filter(|limit| start.elapsed() >= *limit)
}

/// Which of the inputs the server gives a model `name` is, if it is one.
fn server_given(spec: &crate::ModelSpec, name: &str) -> Option<&'static str> {
    if spec.sequence.as_ref().is_some_and(|s| s.is_supplied(name)) {
        return Some("a sequence_batching control or state input");
    }
    spec.ragged
        .is_supplied(name)
        .then_some("a batch_input, made for each batch")
}
