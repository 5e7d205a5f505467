//! Running an ensemble: the request is checked against the ensemble's own
//! inputs, answered from the response cache when the ensemble uses it, then
//! every step whose inputs are ready is sent, concurrently, as an ordinary
//! request through its model's [`Manager::infer`] path (so its queue,
//! dynamic batching, instance groups and statistics apply). A tensor read
//! by several steps is copied for all but the last; one read once is moved.
//! The first step that fails fails the request, naming the step and model;
//! steps not yet run are dropped.

use super::graph::Origin;
use super::Ensemble;
use crate::cache::CacheKey;
use crate::manager::Manager;
use crate::metrics::Timings;
use crate::request::{InferRequest, InferResponse};
use crate::validation::{check_batch_given, order_inputs_absent, select_outputs};
use anemone_core::{Error, ErrorKind, Result, Tensor};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A boxed future: ensembles nest (a step may be an ensemble), so the
/// request path is recursive and its futures must be boxed somewhere.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The state of one ensemble request.
pub(super) struct Run {
    pub(super) ensemble: Arc<Ensemble>,
    /// Tensors produced so far and not yet taken by their last reader.
    pub(super) tensors: HashMap<String, Tensor>,
    /// Readers left for each tensor.
    pub(super) readers: HashMap<String, usize>,
    /// The steps' own timings, summed.
    pub(super) timings: Timings,
    pub(super) start: Instant,
    pub(super) timeout: Option<Duration>,
    pub(super) priority: Option<u32>,
    /// The request's sequence, passed to every step (as Triton does).
    pub(super) sequence: Option<Box<crate::sequence::SequenceFlags>>,
    /// The request's parameters, passed to every step (as Triton does).
    pub(super) parameters: Vec<(String, anemone_core::Parameter)>,
    /// The ensemble outputs asked for, in order.
    pub(super) wanted: Vec<String>,
    /// For each step, whether an output asked for needs it: the others do
    /// not run, as Triton prunes them.
    pub(super) needed: Vec<bool>,
    /// The request's identifier, echoed, and passed to every step (as Triton does).
    pub(super) id: Option<String>,
    /// The response cache key and the time the lookup took, when the
    /// ensemble uses the cache and missed.
    pub(super) cache_key: Option<(CacheKey, Duration)>,
}

/// What [`Manager::begin`] made of a request.
pub(super) enum Begun {
    /// Answered from the response cache.
    Hit(InferResponse),
    /// To run.
    Run(Run),
}

impl Manager {
    /// The loaded ensemble a request names, if the registry has no model of
    /// that name (a model always wins; the two cannot share a name).
    pub(crate) fn ensemble_for(&self, request: &InferRequest) -> Option<Arc<Ensemble>> {
        self.ensemble(&request.model)
            .filter(|e| request.version.is_none_or(|v| v == e.spec.version))
    }

    /// Runs one request on an ensemble; see the module's documentation.
    pub(crate) fn infer_ensemble(
        &self,
        ensemble: Arc<Ensemble>,
        request: InferRequest,
    ) -> BoxFuture<'_, Result<InferResponse>> {
        Box::pin(async move {
            // The request span (when traced) names the version that served.
            let trace = crate::trace::Trace::current();
            trace.record("version", ensemble.spec.version);
            trace.record_request_id(request.id.as_deref());
            if ensemble.stream.is_some() {
                return Err(record(
                    &ensemble,
                    streams_refused(&ensemble),
                    Instant::now(),
                ));
            }
            let mut run = match self.begin(&ensemble, request) {
                Ok(Begun::Run(run)) => run,
                Ok(Begun::Hit(response)) => return Ok(response),
                Err(e) => return Err(record(&ensemble, e, Instant::now())),
            };
            let skipped: Vec<bool> = run.needed.iter().map(|n| !n).collect();
            let (mut started, mut done) = (skipped.clone(), skipped);
            let mut running: FuturesUnordered<BoxFuture<'_, (usize, Result<InferResponse>)>> =
                FuturesUnordered::new();
            loop {
                for &i in &ensemble.plan.order {
                    if started[i] || !ensemble.plan.waits_for[i].iter().all(|&d| done[d]) {
                        continue;
                    }
                    started[i] = true;
                    let request = match run.request_for(i) {
                        Ok(r) => r,
                        Err(e) => return Err(record(&ensemble, e, run.start)),
                    };
                    // One span per step, under the request's span when the
                    // request is traced; the step's stage spans sit below it.
                    let span = crate::trace::step_span(&ensemble.spec.steps[i].model);
                    let step = async move { (i, self.infer(request).await) };
                    running.push(Box::pin(step.instrument(span)));
                }
                let Some((i, result)) = running.next().await else {
                    break;
                };
                match result {
                    Ok(response) => {
                        run.absorb(i, response);
                        done[i] = true;
                    }
                    Err(e) => {
                        return Err(record(&ensemble, step_error(&ensemble, i, e), run.start))
                    }
                }
            }
            self.conclude_ensemble(run)
        })
    }

    /// [`Manager::infer_ensemble`] on a thread that may block: the steps run
    /// one after another, in dependency order, through [`Manager::infer_blocking`].
    pub(crate) fn infer_ensemble_blocking(
        &self,
        ensemble: Arc<Ensemble>,
        request: InferRequest,
    ) -> Result<InferResponse> {
        let trace = crate::trace::Trace::current();
        trace.record("version", ensemble.spec.version);
        trace.record_request_id(request.id.as_deref());
        if ensemble.stream.is_some() {
            return Err(record(
                &ensemble,
                streams_refused(&ensemble),
                Instant::now(),
            ));
        }
        let mut run = match self.begin(&ensemble, request) {
            Ok(Begun::Run(run)) => run,
            Ok(Begun::Hit(response)) => return Ok(response),
            Err(e) => return Err(record(&ensemble, e, Instant::now())),
        };
        for &i in &ensemble.plan.order {
            if !run.needed[i] {
                continue;
            }
            let request = run
                .request_for(i)
                .map_err(|e| record(&ensemble, e, run.start))?;
            match self.infer_blocking(request) {
                Ok(response) => run.absorb(i, response),
                Err(e) => return Err(record(&ensemble, step_error(&ensemble, i, e), run.start)),
            }
        }
        self.conclude_ensemble(run)
    }

    /// Checks the request against the ensemble (live, composing models
    /// loaded, inputs, outputs, batch) and looks it up in the response cache.
    pub(super) fn begin(&self, ensemble: &Arc<Ensemble>, request: InferRequest) -> Result<Begun> {
        let start = Instant::now();
        let name = &ensemble.spec.name;
        if !self.inner.live.load(Ordering::Relaxed) {
            return Err(Error::Unavailable {
                what: "the manager".into(),
                reason: "it is shutting down".into(),
            });
        }
        if let Some(reason) = self.missing_step(ensemble, 0) {
            return Err(Error::Unavailable {
                what: format!("ensemble '{name}'"),
                reason,
            });
        }
        let meta = &ensemble.metadata;
        let outputs = select_outputs(meta, None, request.outputs.as_deref())?;
        // An optional input the request leaves out stays absent: the steps
        // it feeds get their requests without it.
        let (inputs, absent) =
            order_inputs_absent(meta, request.inputs, &ensemble.spec.optional_inputs)
                .map_err(|e| e.for_model(name))?;
        let inputs = check_batch_given(ensemble.spec.max_batch_size, meta, inputs, &absent)?;
        let wanted: Vec<String> = match &outputs {
            Some(indices) => indices
                .iter()
                .map(|&i| meta.outputs[i].name.clone())
                .collect(),
            None => meta.outputs.iter().map(|o| o.name.clone()).collect(),
        };
        // A request in a sequence is never answered from the cache: its
        // answer depends on the sequence's earlier requests (a step's state),
        // and its steps must run to move the sequence on (as a sequence
        // model's own requests never use the cache). Nor is a request with
        // parameters: they pass to the steps, whose answers may depend on
        // them (as a model's own such requests never use it).
        let mut loads = Vec::new();
        let cache = self.inner.cache.as_ref().filter(|_| {
            ensemble.spec.response_cache
                && ensemble.stream.is_none()
                && request.sequence.is_none()
                && request.parameters.is_empty()
                && absent.is_empty()
                && self.step_loads(ensemble, 0, &mut loads).is_some()
        });
        let mut cache_key = None;
        if let Some(cache) = cache {
            let version = ensemble.spec.version;
            let key = cache.key(name, version, &loads, &inputs, outputs.as_deref());
            match cache.get(&key) {
                None => cache_key = Some((key, start.elapsed())),
                Some(outputs) => {
                    let total = start.elapsed();
                    // Its wait: until the lookup (the key took the rest).
                    ensemble.metrics.record_cache_hit(total, Duration::ZERO);
                    return Ok(Begun::Hit(InferResponse {
                        model: name.clone(),
                        version: ensemble.spec.version,
                        backend: "ensemble",
                        id: request.id,
                        outputs,
                        parameters: Vec::new(),
                        timings: Timings {
                            total,
                            ..Default::default()
                        },
                    }));
                }
            }
        }
        // An output nobody asked for has one reader fewer: the last step
        // reading it may take it.
        let mut readers = ensemble.plan.readers.clone();
        for output in meta.outputs.iter().filter(|o| !wanted.contains(&o.name)) {
            if let Some(n) = readers.get_mut(&output.name) {
                *n = n.saturating_sub(1);
            }
        }
        // A streaming ensemble runs every step (each response of its
        // decoupled step goes through the steps after it).
        let needed = match ensemble.stream {
            Some(_) => vec![true; ensemble.spec.steps.len()],
            None => needed_steps(ensemble, &wanted),
        };
        // A step that does not run reads nothing either.
        for (step, _) in (ensemble.spec.steps.iter().zip(&needed)).filter(|(_, n)| !**n) {
            for (_, tensor) in &step.input_map {
                if let Some(n) = readers.get_mut(tensor) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        let tensors = meta
            .inputs
            .iter()
            .map(|s| s.name.clone())
            .zip(inputs)
            .enumerate()
            .filter(|(i, _)| !absent.contains(i))
            .map(|(_, named)| named)
            .collect();
        Ok(Begun::Run(Run {
            ensemble: Arc::clone(ensemble),
            tensors,
            readers,
            timings: Timings::default(),
            start,
            timeout: request.timeout,
            priority: request.priority,
            sequence: request.sequence,
            parameters: request.parameters,
            wanted,
            needed,
            id: request.id,
            cache_key,
        }))
    }
}

impl Manager {
    /// Answers a request whose steps all ran: the outputs asked for, its
    /// statistics recorded, and the answer stored in the response cache.
    fn conclude_ensemble(&self, mut run: Run) -> Result<InferResponse> {
        let ensemble = Arc::clone(&run.ensemble);
        let mut outputs = Vec::with_capacity(run.wanted.len());
        let mut missing = Vec::new();
        for name in std::mem::take(&mut run.wanted) {
            // An output no step gave (its step was not given an optional
            // input, or did not produce it) is left out, as Triton leaves it.
            let Some(tensor) = run.tensors.remove(&name) else {
                missing.push(name);
                continue;
            };
            let tensor = ensemble.output_adapted(&name, tensor);
            outputs.push((name, tensor));
        }
        if outputs.is_empty() && !missing.is_empty() {
            let e = Error::Internal(format!(
                "ensemble '{}' finished without any of its outputs ({}): no step produced them",
                ensemble.spec.name,
                missing.join(", ")
            ));
            return Err(record(&ensemble, e, run.start));
        }
        if let (Some((key, looking)), Some(cache)) = (run.cache_key, self.inner.cache.as_ref()) {
            let storing = Instant::now();
            cache.insert(key, &outputs);
            ensemble
                .metrics
                .record_cache_miss(looking + storing.elapsed());
        }
        let end = Instant::now();
        let mut timings = run.timings;
        timings.total = end - run.start;
        let batch = match ensemble.spec.max_batch_size {
            Some(_) => outputs
                .first()
                .and_then(|(_, t)| t.shape().first().copied()),
            None => None,
        };
        ensemble.metrics.record_success_at(&timings, end);
        ensemble.metrics.record_execution(
            batch.unwrap_or(1),
            timings.compute_input,
            timings.compute_infer,
            timings.compute_output,
        );
        Ok(InferResponse {
            model: ensemble.spec.name.clone(),
            version: ensemble.spec.version,
            backend: "ensemble",
            id: run.id,
            outputs,
            parameters: Vec::new(),
            timings,
        })
    }
}

impl Run {
    /// The request of step `i`: its mapped inputs (moved when this step is
    /// their last reader, copied otherwise) and mapped outputs, with what
    /// is left of the ensemble request's deadline and its priority.
    pub(super) fn request_for(&mut self, i: usize) -> Result<InferRequest> {
        let step = &self.ensemble.spec.steps[i];
        let mut inputs = Vec::with_capacity(step.input_map.len());
        for (input, tensor) in &step.input_map {
            let left = self.readers.get_mut(tensor).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            let value = if left == Some(0) {
                self.tensors.remove(tensor)
            } else {
                self.tensors.get(tensor).cloned()
            };
            // Absent: an optional input the request left out, or an output
            // a step did not give (fed by one). The step is asked without
            // it, and refuses the request if it needs it.
            let Some(value) = value else {
                continue;
            };
            inputs.push((input.clone(), value));
        }
        let timeout = match self.timeout {
            None => None,
            Some(limit) => {
                let left = limit.saturating_sub(self.start.elapsed());
                if left.is_zero() {
                    return Err(Error::Timeout(limit));
                }
                Some(left)
            }
        };
        Ok(self.step_request(i, inputs, timeout))
    }

    /// Step `i`'s request on `inputs`: what passes from the ensemble
    /// request to every step (priority, sequence, id, parameters), the
    /// step's mapped outputs asked for.
    pub(super) fn step_request(
        &self,
        i: usize,
        inputs: Vec<(String, Tensor)>,
        timeout: Option<Duration>,
    ) -> InferRequest {
        let step = &self.ensemble.spec.steps[i];
        // Each as the step takes it (a batch of one for a model that
        // batches, in an ensemble that does not, ...).
        let adapts = &self.ensemble.plan.step_inputs[i];
        let inputs = inputs
            .into_iter()
            .map(|(name, tensor)| {
                let k = step.input_map.iter().position(|(n, _)| *n == name);
                let tensor = match k.and_then(|k| adapts.get(k)) {
                    Some(adapt) => adapt.apply(tensor),
                    None => tensor,
                };
                (name, tensor)
            })
            .collect();
        InferRequest {
            model: step.model.clone(),
            version: step.version,
            inputs,
            outputs: Some(step.output_map.iter().map(|(o, _)| o.clone()).collect()),
            timeout,
            priority: self.priority,
            id: self.id.clone(),
            parameters: self.parameters.clone(),
            sequence: self.sequence.clone(),
        }
    }

    /// Keeps step `i`'s mapped outputs under their ensemble names.
    pub(super) fn absorb(&mut self, i: usize, response: InferResponse) {
        let step = &self.ensemble.spec.steps[i];
        let t = response.timings;
        self.timings.queue += t.queue;
        self.timings.compute_input += t.compute_input;
        self.timings.compute_infer += t.compute_infer;
        self.timings.compute_output += t.compute_output;
        for (output, tensor) in response.outputs {
            if let Some((_, name)) = step.output_map.iter().find(|(o, _)| *o == output) {
                self.tensors.insert(name.clone(), tensor);
            }
        }
    }
}

/// For each step, whether one of the `wanted` ensemble outputs needs it:
/// it produces one, or a tensor a needed step reads.
fn needed_steps(ensemble: &Ensemble, wanted: &[String]) -> Vec<bool> {
    let steps = &ensemble.spec.steps;
    let mut needed = vec![false; steps.len()];
    let mut tensors: Vec<&str> = wanted.iter().map(String::as_str).collect();
    while let Some(tensor) = tensors.pop() {
        if let Some(Origin::Step { step, .. }) = ensemble.plan.origin.get(tensor) {
            if !needed[*step] {
                needed[*step] = true;
                tensors.extend(steps[*step].input_map.iter().map(|(_, t)| t.as_str()));
            }
        }
    }
    needed
}

/// A failed step's error, naming the step and model. Its kind is the
/// step's, except that an input refused by a step fed by another step is
/// the ensemble's fault, not the client's (`Internal`), and a composing
/// model that vanished makes the ensemble `Unavailable`.
pub(super) fn step_error(ensemble: &Ensemble, i: usize, e: Error) -> Error {
    let step = &ensemble.spec.steps[i];
    let from_request = step
        .input_map
        .iter()
        .all(|(_, t)| ensemble.plan.origin.get(t) == Some(&Origin::Request));
    let kind = match e.kind() {
        ErrorKind::InvalidInput if !from_request => ErrorKind::Internal,
        ErrorKind::NotFound => ErrorKind::Unavailable,
        kind => kind,
    };
    // A decoupled step: the client's stream would fail the same, so the
    // advice is not the one-answer refusal's.
    let e = match e {
        Error::Unsupported { .. } if kind == ErrorKind::Unsupported => Error::Unsupported {
            what: format!(
                "model '{}' is decoupled (it answers a request with any number of responses), \
                 which an ensemble step cannot be yet",
                step.model
            ),
            fix: "call that model on its own, not through the ensemble (on a stream), or read its \
                  responses from a Python model with exec(decoupled=True)"
                .into(),
        },
        e => e,
    };
    Error::Step {
        ensemble: ensemble.spec.name.clone(),
        step: i,
        model: step.model.clone(),
        kind,
        source: Box::new(e),
    }
}

/// The refusal of one answer from an ensemble with a decoupled step.
fn streams_refused(ensemble: &Ensemble) -> Error {
    Error::Unsupported {
        what: format!(
            "ensemble '{}' has a decoupled step: it answers a request with any number of \
             responses, not one",
            ensemble.spec.name
        ),
        fix: "send its requests on a stream: gRPC ModelStreamInfer (tritonclient's \
              start_stream and async_stream_infer), HTTP generate_stream, or \
              Manager::infer_decoupled in the library"
            .into(),
    }
}

/// Counts a failed request on the ensemble and hands the error back.
pub(super) fn record(ensemble: &Ensemble, e: Error, start: Instant) -> Error {
    ensemble.metrics.record_failure(e.kind(), start.elapsed());
    e
}
