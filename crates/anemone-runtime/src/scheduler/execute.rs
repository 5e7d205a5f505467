//! Engine calls: one admitted request alone, or a batch of them
//! stacked along the batch dimension (by the engine) and split back. Panics are
//! caught, retryable backend errors retried, outputs selected and timed.

use super::panics::panicked;
use super::{Admitted, Done, Job, Slot};
use crate::fallback::RetryPolicy;
use crate::instance::{Engine, ModelInstance};
use crate::metrics::Timings;
use crate::request::InferResponse;
use crate::trace::Stage;
use anemone_core::{Answer, Error, ErrorKind, RequestView, Result, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What one engine call runs.
#[derive(Clone, Copy)]
pub(super) enum Call<'a> {
    /// One request's inputs.
    One(&'a [Tensor]),
    /// Several requests' inputs, stacked along dimension 0 by the engine.
    Stacked(&'a [&'a [Tensor]]),
}

/// Runs `call` on `engine`, retrying retryable backend errors per the
/// policy, and checks the number of outputs.
fn run_engine(
    instance: &ModelInstance,
    engine: &Engine,
    call: Call<'_>,
    retry_policy: RetryPolicy,
) -> Result<Vec<Tensor>> {
    let model = &*engine.model;
    let run = || match call {
        Call::One(inputs) => model.infer(inputs),
        Call::Stacked(requests) => model.infer_stacked(requests),
    };
    let attempt = || match catch_unwind(AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(panic) => Err(panicked(instance, model.backend(), &*panic, call)),
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
    declared_outputs(instance, model.backend(), result?)
}

/// A ragged model's call ([`crate::ragged`]): the engine's inputs made from
/// the requests' (flat ragged inputs, batch inputs), and its outputs cut
/// back into each request's.
fn run_ragged(
    instance: &ModelInstance,
    engine: &Engine,
    requests: &[&[Tensor]],
    rows: &[usize],
    retry_policy: RetryPolicy,
) -> Result<Vec<Vec<Tensor>>> {
    let ragged = &instance.spec.ragged;
    let inputs = ragged.assemble(engine.model.metadata(), instance.metadata(), requests)?;
    let outputs = run_engine(instance, engine, Call::One(&inputs), retry_policy)?;
    ragged.scatter(instance.metadata(), outputs, requests, rows)
}

/// An engine's outputs, checked against the number the model declares.
fn declared_outputs(
    instance: &ModelInstance,
    backend: &str,
    all: Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    let declared = instance.metadata().outputs.len();
    if all.len() != declared {
        return Err(Error::Internal(format!(
            "backend {backend} returned {} outputs for a model declaring {declared}",
            all.len(),
        )));
    }
    Ok(all)
}

/// Runs requests on an engine that answers each on its own
/// ([`anemone_core::LoadedModel::infer_each_answered`]), one answer per
/// request, with its response's parameters. A
/// panic fails every request of the call; an answer with the wrong number
/// of outputs fails its request. Not retried: such an engine decides its
/// answers itself.
fn run_each(
    instance: &ModelInstance,
    engine: &Engine,
    requests: &[RequestView<'_>],
) -> Vec<Result<Answer>> {
    let model = &*engine.model;
    let failed = |error: &dyn Fn() -> Error| requests.iter().map(|_| Err(error())).collect();
    match catch_unwind(AssertUnwindSafe(|| model.infer_each_answered(requests))) {
        // A decoupled model's outputs come through each request's
        // responder; its call answers with none.
        Ok(answers) if answers.len() == requests.len() && model.decoupled() => answers,
        Ok(answers) if answers.len() == requests.len() => answers
            .into_iter()
            .map(|answer| {
                // A rescheduled request has no outputs yet.
                answer.and_then(|answer| match answer.rescheduled {
                    true => Ok(answer),
                    false => Ok(Answer {
                        outputs: declared_outputs(instance, model.backend(), answer.outputs)?,
                        ..answer
                    }),
                })
            })
            .collect(),
        Ok(answers) => failed(&|| {
            Error::Internal(format!(
                "backend {} answered {} of {} requests",
                model.backend(),
                answers.len(),
                requests.len()
            ))
        }),
        Err(panic) => failed(&|| panicked(instance, model.backend(), &*panic, Call::One(&[]))),
    }
}

/// The outputs a request asked for, named, in its order; those the engine
/// left out ([`Tensor::absent`]) are left out of the answer, as Triton
/// leaves them.
fn select(
    instance: &ModelInstance,
    mut all: Vec<Tensor>,
    wanted: Option<Vec<usize>>,
) -> Vec<(String, Tensor)> {
    let names = &instance.metadata().outputs;
    if all.is_empty() {
        // A decoupled model's call: its outputs went through the responder.
        return Vec::new();
    }
    match wanted {
        None => (names.iter().map(|s| s.name.clone()).zip(all))
            .filter(|(_, t)| !t.is_absent())
            .collect(),
        Some(indices) => indices
            .iter()
            .map(|&i| {
                (
                    names[i].name.clone(),
                    std::mem::replace(&mut all[i], Tensor::scalar(0u8)),
                )
            })
            .filter(|(_, t)| !t.is_absent())
            .collect(),
    }
}

/// Runs an admitted request alone on the least-loaded engine instance and
/// builds its response; called on a worker thread (or inline).
pub(crate) fn execute(admitted: Admitted) -> Done {
    execute_on(admitted, None, None)
}

/// Runs an admitted request alone on engine instance `lane` (from a model
/// queue, whose instances each run on their own thread), or on the
/// least-loaded one when `None`, and builds its response.
///
/// `gone` says whether its client has stopped waiting, for an engine that
/// tells the model ([`RequestView::gone`]); `None` where nobody else waits
/// (the request runs on its client's own task).
pub(crate) fn execute_on(
    admitted: Admitted,
    lane: Option<usize>,
    gone: Option<&(dyn Fn() -> bool + Sync)>,
) -> Done {
    let Admitted {
        instance,
        inputs,
        outputs,
        id,
        parameters,
        start,
        validated,
        retry_policy,
        permits,
        mut trace,
        responder,
        absent,
        sequence,
        lane: pinned,
        timeout,
    } = admitted;
    let lane = lane.or(pinned);
    trace.dequeued();
    // Triton counts the rows of the batch dimension, when the model has one.
    let rows = match instance.spec.max_batch_size {
        Some(_) => given_rows(&inputs, &absent),
        None => None,
    };
    let picked = start.elapsed();
    let engine = match lane {
        Some(lane) => instance.lane_engine(lane),
        None => instance.pick_engine(),
    };
    let busy = engine.claim();
    let infer_span = trace.stage(Stage::ComputeInfer);
    let result = match engine.model.answers_each() {
        false if instance.spec.ragged.reshapes_batches() => {
            let rows = [rows.unwrap_or(1)];
            run_ragged(&instance, engine, &[&inputs], &rows, retry_policy)
                .map(|mut each| unnamed(each.remove(0)))
        }
        false => run_engine(&instance, engine, Call::One(&inputs), retry_policy).map(unnamed),
        true => {
            let view = RequestView {
                inputs: &inputs,
                id: id.as_deref(),
                parameters: &parameters,
                responder: responder.as_ref(),
                absent: &absent,
                sequence: sequence.as_ref(),
                outputs: outputs.as_deref(),
                timeout,
                gone: gone.map(anemone_core::ClientGone),
            };
            let answer = run_each(&instance, engine, &[view]).pop();
            answer.unwrap_or_else(|| Err(Error::Internal("no answer for a request".into())))
        }
    };
    // Only a model's queue runs a request again (`execute_batch`), and it
    // never sends an iterative model's requests here.
    let result = result.and_then(|answer| match answer.rescheduled {
        false => Ok(answer),
        true => Err(Error::Internal(format!(
            "model '{}' rescheduled a request outside its queue",
            instance.name()
        ))),
    });
    drop(infer_span);
    drop(busy);
    let ran = start.elapsed();
    engine.record(ran - picked);
    let _output_span = trace.stage(Stage::ComputeOutput);
    trace.record("batch_size", rows.unwrap_or(1) as u64);
    let response = result.map(|answer| {
        let outputs = select(&instance, answer.outputs, outputs);
        let total = start.elapsed();
        let timings = Timings {
            queue: picked - validated,
            compute_input: validated,
            compute_infer: ran - picked,
            compute_output: total - ran,
            total,
        };
        instance.metrics.record_execution(
            rows.unwrap_or(1),
            timings.compute_input,
            timings.compute_infer,
            timings.compute_output,
        );
        InferResponse {
            model: instance.name().to_string(),
            version: instance.version(),
            backend: engine.model.backend(),
            id,
            outputs,
            parameters: answer.parameters,
            timings,
        }
    });
    drop(permits);
    response
}

/// Runs jobs of one model as one engine call on its engine instance `lane`:
/// their inputs stacked along dimension 0, the outputs split back so that
/// each client gets exactly its own rows. Jobs whose client has gone are
/// dropped first. When the batched call fails, or an output has no batch
/// dimension to split, each job runs alone instead (on the same instance),
/// so that one request's bad input fails only that request. An engine that
/// answers each request on its own (a Python model) gets the jobs as a list
/// and gives each its answer, error or outputs: nothing runs twice. A job
/// the engine rescheduled goes back to the slot's queue (`reschedule.rs`).
pub(crate) fn execute_batch(jobs: Vec<Job>, slot: &Slot) {
    let lane = slot.lane();
    let mut jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.cancelled()).collect();
    let Some(first) = jobs.first() else {
        return;
    };
    // An iterative model's request may be rescheduled: it always takes the
    // path below, which can put it back in the queue.
    if jobs.len() == 1 && first.admitted.instance.own_sequences.is_none() {
        jobs.into_iter().for_each(|j| j.run_on(Some(lane)));
        return;
    }
    let instance = std::sync::Arc::clone(&first.admitted.instance);
    if let Some(own) = &instance.own_sequences {
        own.enter(&mut jobs);
    }
    let began = Instant::now();
    // Triton counts the rows of the batch dimension, when the model has
    // one (an iterative model's request comes here alone too).
    let rows: Vec<usize> = match instance.spec.max_batch_size {
        Some(_) => (jobs.iter())
            .map(|j| given_rows(&j.admitted.inputs, &j.admitted.absent).unwrap_or(0))
            .collect(),
        None => vec![1; jobs.len()],
    };
    let total_rows: usize = rows.iter().sum();
    let traced = jobs.iter().any(|j| j.admitted.trace.is_on());
    // Each traced request gets its own stage spans (see `crate::trace`).
    let stage = |jobs: &[Job], stage: Stage| -> Vec<Option<tracing::Span>> {
        if !traced {
            return Vec::new();
        }
        let n = jobs.len();
        jobs.iter()
            .map(|j| j.admitted.trace.stage_in_batch(stage, total_rows, n))
            .collect()
    };
    if traced {
        for (job, rows) in jobs.iter_mut().zip(&rows) {
            job.admitted.trace.dequeued();
            job.admitted.trace.record("batch_size", *rows as u64);
        }
    }
    // The engine stacks the requests' inputs itself (`infer_stacked`): one
    // that uploads them can place each request's rows where it reads them,
    // without a concatenated copy first. What is timed here is gathering
    // them; the stacking is part of the engine call. An engine that answers
    // each request on its own (`infer_each`) gets them as a list.
    let assembly_spans = stage(&jobs, Stage::BatchAssembly);
    let engine = instance.lane_engine(lane);
    // Each request's "has its client gone?", for an engine that tells the
    // model (no allocation for one that stacks).
    let gone: Vec<_> = match engine.model.answers_each() {
        true => jobs.iter().map(|j| move || j.reply.is_closed()).collect(),
        false => Vec::new(),
    };
    let gathered_requests = match engine.model.answers_each() {
        true => Gathered::Each(
            jobs.iter()
                .zip(&gone)
                .map(|(j, gone)| RequestView {
                    inputs: &j.admitted.inputs,
                    id: j.admitted.id.as_deref(),
                    parameters: &j.admitted.parameters,
                    responder: j.admitted.responder.as_ref(),
                    absent: &j.admitted.absent,
                    sequence: j.admitted.sequence.as_ref(),
                    outputs: j.admitted.outputs.as_deref(),
                    timeout: j.admitted.timeout,
                    gone: Some(anemone_core::ClientGone(gone)),
                })
                .collect(),
        ),
        false => Gathered::Stacked(jobs.iter().map(|j| &j.admitted.inputs[..]).collect()),
    };
    let gathered = began.elapsed();
    drop(assembly_spans);
    let busy = engine.claim();
    let picked = Instant::now();
    let infer_spans = stage(&jobs, Stage::ComputeInfer);
    let outcome = match &gathered_requests {
        Gathered::Each(views) => Outcome::Each(run_each(&instance, engine, views)),
        Gathered::Stacked(requests) if instance.spec.ragged.reshapes_batches() => {
            let retry = jobs[0].admitted.retry_policy;
            Outcome::Each(
                match run_ragged(&instance, engine, requests, &rows, retry) {
                    Ok(each) => each
                        .into_iter()
                        .map(|outputs| Ok(unnamed(outputs)))
                        .collect(),
                    // Run one by one below, so that a bad request fails alone.
                    Err(_) => Vec::new(),
                },
            )
        }
        Gathered::Stacked(requests) => Outcome::Stacked(run_engine(
            &instance,
            engine,
            Call::Stacked(requests),
            jobs[0].admitted.retry_policy,
        )),
    };
    drop(gathered_requests);
    drop(infer_spans);
    drop(busy);
    let engine_time = picked.elapsed();
    engine.record(engine_time);
    let mut output_spans = stage(&jobs, Stage::ComputeOutput).into_iter();
    // One answer per job: the engine's own, or its rows of the outputs.
    let answers: Option<Vec<Result<Answer>>> = match outcome {
        Outcome::Each(answers) if answers.len() != jobs.len() => None,
        Outcome::Each(answers) => Some(answers),
        Outcome::Stacked(result) => result.ok().and_then(|all| {
            all.iter()
                .map(|t| t.split_batch(&rows).ok())
                .collect::<Option<Vec<Vec<Tensor>>>>()
                .map(|split| per_job(split, jobs.len()))
        }),
    };
    let Some(answers) = answers else {
        tracing::debug!(model = %instance.name(), "a batched call failed; running its requests one by one");
        drop(output_spans);
        jobs.into_iter().for_each(|j| j.run_on(Some(lane)));
        return;
    };
    let split_time = picked.elapsed() - engine_time;
    // Triton counts the rows of the requests that were answered: one
    // answered with an error (a Python model's) adds none, and a call
    // that answered none is no execution.
    let answered: usize = (rows.iter().zip(&answers))
        .filter(|(_, answer)| answer.is_ok())
        .map(|(rows, _)| rows)
        .sum();
    if answered > 0 {
        (instance.metrics).record_execution_of(
            total_rows,
            answered,
            gathered,
            engine_time,
            split_time,
        );
    }
    let mut again = Vec::new();
    for (job, answer) in jobs.into_iter().zip(answers) {
        let output_span = output_spans.next();
        let start = job.admitted.start;
        let validated = job.admitted.validated;
        let queue = began.saturating_duration_since(start + validated);
        let total = start.elapsed();
        let timings = Timings {
            queue,
            compute_input: validated + gathered,
            compute_infer: engine_time,
            compute_output: total.saturating_sub(validated + gathered + queue + engine_time),
            total,
        };
        // Each run of a rescheduled request counts as a success, with its
        // own times, as Triton counts it (`reschedule.rs`).
        if answer.as_ref().is_ok_and(|a| a.rescheduled) {
            instance.metrics.record_success(&timings);
            again.push(job);
            continue;
        }
        let Job {
            admitted,
            reply,
            span,
            ..
        } = job;
        let _entered = span.enter();
        let _output_span = output_span;
        let response = answer.map(|answer| InferResponse {
            model: instance.name().to_string(),
            version: instance.version(),
            backend: engine.model.backend(),
            id: admitted.id,
            outputs: select(&instance, answer.outputs, admitted.outputs),
            parameters: answer.parameters,
            timings,
        });
        drop(admitted.permits);
        // The stage, then the request's span (its trace), end before the
        // answer goes, so that a client holding its answer finds its trace
        // complete.
        drop(_output_span);
        drop(_entered);
        drop(span);
        reply.send(response);
    }
    slot.requeue(again);
}

/// A batch's requests as its engine takes them.
enum Gathered<'a> {
    /// Each request with its id and parameters, for an engine that answers
    /// each on its own.
    Each(Vec<RequestView<'a>>),
    /// Each request's inputs, for the engine to stack.
    Stacked(Vec<&'a [Tensor]>),
}

/// What the engine call of a batch gave.
enum Outcome {
    /// An answer per request (an engine that answers each on its own).
    Each(Vec<Result<Answer>>),
    /// The requests' outputs stacked, or the call's error.
    Stacked(Result<Vec<Tensor>>),
}

/// Outputs split per job (`split[o][j]`: output `o`'s rows of job `j`)
/// turned into each job's outputs (`[j][o]`).
fn per_job(split: Vec<Vec<Tensor>>, jobs: usize) -> Vec<Result<Answer>> {
    let mut pieces: Vec<std::vec::IntoIter<Tensor>> =
        split.into_iter().map(Vec::into_iter).collect();
    (0..jobs)
        .map(|_| {
            Ok(unnamed(
                pieces
                    .iter_mut()
                    .map(|p| p.next().expect("one piece per job; this is a bug"))
                    .collect(),
            ))
        })
        .collect()
}

/// An engine's outputs as an answer without parameters.
fn unnamed(outputs: Vec<Tensor>) -> Answer {
    Answer {
        outputs,
        ..Answer::default()
    }
}

/// The rows of a request along the batch dimension: those of its first
/// input it gave (an optional input left out is an empty placeholder).
fn given_rows(inputs: &[Tensor], absent: &[usize]) -> Option<usize> {
    (inputs.iter().enumerate())
        .find(|(ix, _)| !absent.contains(ix))
        .and_then(|(_, t)| t.shape().first().copied())
}
