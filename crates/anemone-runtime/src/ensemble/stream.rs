//! Ensembles with a decoupled step (Triton's decoupled ensembles: a
//! tokenizer, a model that streams tokens, a detokenizer): the steps before
//! it run once, it runs once, and the steps its responses feed run once per
//! response, each round answering the client with the ensemble's outputs,
//! as they come. Such an ensemble answers on a stream only
//! ([`Manager::infer_decoupled`]); one answer is refused as a decoupled
//! model's is.
//!
//! As in Triton, a step fed by the decoupled step's responses (or by steps
//! they feed) takes nothing from before it, and every ensemble output comes
//! from them; anemone runs one decoupled step per ensemble.

use super::graph::{step_label, Plan};
use super::run::{record, step_error, Begun, Run};
use super::spec::EnsembleSpec;
use super::Ensemble;
use crate::manager::Manager;
use crate::request::{InferRequest, InferResponse};
use crate::responses::{Feed, Responses, Sent};
use crate::Timings;
use anemone_core::{Error, Result, Tensor};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// How an ensemble with a decoupled step runs.
#[derive(Debug, Clone)]
pub(crate) struct StreamPlan {
    /// The decoupled step.
    step: usize,
    /// The steps that run once before it, in run order.
    before: Vec<usize>,
    /// The steps that run once per response of it, in run order.
    after: Vec<usize>,
}

/// The stream plan of `spec`, whose steps `decoupled` says are; `None`
/// when none is. Refused: more than one, and a step or an ensemble output
/// that mixes the decoupled step's responses with what came before it.
pub(crate) fn stream_plan(
    spec: &EnsembleSpec,
    plan: &Plan,
    decoupled: &[bool],
) -> std::result::Result<Option<StreamPlan>, Vec<String>> {
    let found: Vec<usize> = (0..spec.steps.len()).filter(|&i| decoupled[i]).collect();
    let step = match found.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => {
            let labels: Vec<String> = many
                .iter()
                .map(|&i| step_label(i, &spec.steps[i]))
                .collect();
            return Err(vec![format!(
                "it has {} decoupled steps ({}); anemone runs an ensemble with one",
                many.len(),
                labels.join(", ")
            )]);
        }
    };
    let label = step_label(step, &spec.steps[step]);
    let mut errs = Vec::new();
    // The tensors each response carries, and those computed from them.
    let mut streamed: HashSet<&str> = (spec.steps[step].output_map.iter())
        .map(|(_, t)| t.as_str())
        .collect();
    let mut after = Vec::new();
    for &i in plan.order.iter().filter(|&&i| i != step) {
        let s = &spec.steps[i];
        let fed = s
            .input_map
            .iter()
            .filter(|(_, t)| streamed.contains(t.as_str()));
        match fed.count() {
            0 => continue,
            n if n < s.input_map.len() => errs.push(format!(
                "{} takes tensors both from the responses of the decoupled {label} and from \
                 before it; a step after a decoupled step takes only what its responses carry \
                 (Triton refuses this too)",
                step_label(i, s)
            )),
            _ => {}
        }
        after.push(i);
        streamed.extend(s.output_map.iter().map(|(_, t)| t.as_str()));
    }
    for output in spec
        .outputs
        .iter()
        .filter(|o| !streamed.contains(o.name.as_str()))
    {
        errs.push(format!(
            "ensemble output '{}' does not come from the responses of the decoupled {label}; \
             with a decoupled step, every ensemble output does (Triton refuses this too)",
            output.name
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let before = (plan.order.iter())
        .filter(|&&i| i != step && !after.contains(&i))
        .copied()
        .collect();
    Ok(Some(StreamPlan {
        step,
        before,
        after,
    }))
}

impl Manager {
    /// Runs a request on an ensemble with a decoupled step; its responses
    /// come on the returned [`Responses`], one per response of the step.
    /// The request is checked here; the steps run as a task of the
    /// caller's Tokio runtime, or on a thread of their own without one.
    pub(crate) fn infer_ensemble_stream(
        &self,
        ensemble: Arc<Ensemble>,
        request: InferRequest,
    ) -> Result<Responses> {
        let trace = crate::trace::Trace::current();
        trace.record("version", ensemble.spec.version);
        trace.record_request_id(request.id.as_deref());
        let run = match self.begin(&ensemble, request) {
            Ok(Begun::Run(run)) => run,
            Ok(Begun::Hit(response)) => return Ok(Responses::one(Ok(response))),
            Err(e) => return Err(record(&ensemble, e, Instant::now())),
        };
        let (feed, responses) = Feed::new(&ensemble.spec.name, self.inner.stream_buffer_bytes);
        let manager = self.clone();
        // On the caller's Tokio runtime when there is one (the server's);
        // else (a model's own call, on a thread of its own) on a thread.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { manager.stream_steps(run, feed).await });
            return Ok(responses);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start an ensemble's stream: {e}")))?;
        std::thread::Builder::new()
            .name(format!("ensemble-{}", ensemble.spec.name))
            .spawn(move || runtime.block_on(manager.stream_steps(run, feed)))
            .map_err(|e| Error::Internal(format!("cannot start an ensemble's stream: {e}")))?;
        Ok(responses)
    }

    /// Runs the steps before the decoupled one, the decoupled one, and for
    /// each of its responses the steps after it, sending each round's
    /// outputs; counts the request once, when it ends.
    async fn stream_steps(&self, mut run: Run, feed: Feed) {
        let ensemble = Arc::clone(&run.ensemble);
        let plan = ensemble
            .stream
            .clone()
            .expect("a streaming ensemble has its plan");
        let start = run.start;
        // The request's batch, read before the steps take its inputs.
        let batch = (ensemble.spec.max_batch_size)
            .and_then(|_| run.tensors.values().next())
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(1);
        let fail = |e: Error| {
            let e = record(&ensemble, e, start);
            feed.send(Some(Err(e)), true);
        };
        for &i in &plan.before {
            let response = match run.request_for(i) {
                Ok(request) => self.infer(request).await,
                Err(e) => return fail(e),
            };
            match response {
                Ok(response) => run.absorb(i, response),
                Err(e) => return fail(step_error(&ensemble, i, e)),
            }
        }
        let started = match run.request_for(plan.step) {
            Ok(request) => self.infer_decoupled(request).await,
            Err(e) => return fail(e),
        };
        let mut responses = match started {
            Ok(responses) => responses,
            Err(e) => return fail(step_error(&ensemble, plan.step, e)),
        };
        let mut timings = Timings::default();
        while let Some(streamed) = responses.next().await {
            let response = match streamed.response {
                None => None,
                Some(Err(e)) => return fail(behind(&ensemble, &plan, e)),
                Some(Ok(response)) => match self.after_response(&run, &plan, response).await {
                    Ok(answer) => Some(answer),
                    Err(e) => return fail(e),
                },
            };
            if let Some(answer) = &response {
                timings.compute_infer += answer.timings.compute_infer;
            }
            match feed.send(response.map(Ok), streamed.last) {
                // The client has gone: dropping the responses cancels the step.
                Sent::Gone => return,
                Sent::Overflow => return feed.overflowed(),
                Sent::Delivered if streamed.last => {
                    timings.total = start.elapsed();
                    ensemble.metrics.record_success_at(&timings, Instant::now());
                    // One execution, as a one-answer ensemble counts it
                    // (and tritonserver 2.51 a streaming one).
                    ensemble.metrics.record_execution(
                        batch,
                        timings.compute_input,
                        timings.compute_infer,
                        timings.compute_output,
                    );
                    return;
                }
                Sent::Delivered => {}
            }
        }
    }

    /// One round: the steps after the decoupled one, on one of its
    /// responses; the ensemble's outputs asked for.
    async fn after_response(
        &self,
        run: &Run,
        plan: &StreamPlan,
        response: InferResponse,
    ) -> Result<InferResponse> {
        let ensemble = &run.ensemble;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let absorb =
            |tensors: &mut HashMap<String, Tensor>, i: usize, outputs: Vec<(String, Tensor)>| {
                let step = &ensemble.spec.steps[i];
                for (output, tensor) in outputs {
                    if let Some((_, name)) = step.output_map.iter().find(|(o, _)| *o == output) {
                        tensors.insert(name.clone(), tensor);
                    }
                }
            };
        let mut timings = response.timings;
        absorb(&mut tensors, plan.step, response.outputs);
        for &i in &plan.after {
            let step = &ensemble.spec.steps[i];
            let mut inputs = Vec::with_capacity(step.input_map.len());
            for (input, tensor) in &step.input_map {
                let value = tensors.get(tensor).cloned().ok_or_else(|| {
                    Error::Internal(format!(
                        "ensemble '{}' {}: tensor '{tensor}' is not in the response",
                        ensemble.spec.name,
                        step_label(i, step)
                    ))
                })?;
                inputs.push((input.clone(), value));
            }
            let request = run.step_request(i, inputs, None);
            let answer = self
                .infer(request)
                .await
                .map_err(|e| step_error(ensemble, i, e))?;
            timings.compute_infer += answer.timings.compute_infer;
            absorb(&mut tensors, i, answer.outputs);
        }
        let mut outputs = Vec::with_capacity(run.wanted.len());
        for name in &run.wanted {
            // A response may carry some of the outputs only (a decoupled
            // model's may): those it has.
            if let Some(tensor) = tensors.remove(name) {
                outputs.push((name.clone(), ensemble.output_adapted(name, tensor)));
            }
        }
        Ok(InferResponse {
            model: ensemble.spec.name.clone(),
            version: ensemble.spec.version,
            backend: "ensemble",
            id: run.id.clone(),
            outputs,
            parameters: Vec::new(),
            timings,
        })
    }
}

/// The decoupled step's error as the client sees it. A full response
/// buffer there means the steps after it take its responses slower than it
/// sends them (the client reads the ensemble's own, bounded apart): the
/// error says so, instead of the buffer's advice to a client.
fn behind(ensemble: &Ensemble, plan: &StreamPlan, e: Error) -> Error {
    match e {
        Error::Overloaded {
            limit,
            in_use,
            capacity,
        } if limit.starts_with(crate::responses::BUFFER_FULL) => Error::Overloaded {
            limit: format!(
                "buffer of ensemble '{}' for the responses of its {} waiting for the steps after \
                 it, which take them slower than it sends them (raise --max-stream-buffer-bytes, \
                 or have the model send fewer or smaller responses)",
                ensemble.spec.name,
                step_label(plan.step, &ensemble.spec.steps[plan.step])
            ),
            in_use,
            capacity,
        },
        e => step_error(ensemble, plan.step, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::graph::{plan, ModelView};
    use crate::ensemble::spec::{dims, EnsembleStep};
    use anemone_core::{DataType, TensorSpec};

    /// `a`: x -> y; `j`: x, z -> y (all F32 [-1, 4]).
    fn models(name: &str, _: Option<u64>) -> Option<ModelView> {
        let t = |n: &str| TensorSpec::new(n, DataType::F32, dims(&[-1, 4]));
        let inputs = match name {
            "a" => vec![t("x")],
            "j" => vec![t("x"), t("z")],
            _ => return None,
        };
        Some(ModelView {
            inputs,
            outputs: vec![t("y")],
            optional: vec![],
            max_batch_size: Some(8),
        })
    }

    fn step(model: &str, inputs: &[(&str, &str)], output: &str) -> EnsembleStep {
        let mut s = EnsembleStep::new(model).map_output("y", output);
        for (input, tensor) in inputs {
            s = s.map_input(*input, *tensor);
        }
        s
    }

    /// in -> pre -> a -> gen (decoupled) -> g -> post -> out, with a step
    /// making `side` (from `in`, before the decoupled step) when `side` is
    /// one of the outputs (every tensor must be read).
    fn spec(outputs: &[&str], post: EnsembleStep) -> EnsembleSpec {
        let mut spec = EnsembleSpec::new("e").input("in", DataType::F32, &[-1, 4]);
        for o in outputs {
            spec = spec.output(*o, DataType::F32, &[-1, 4]);
        }
        let spec = spec
            .step(step("a", &[("x", "in")], "a"))
            .step(post)
            .step(step("a", &[("x", "a")], "g"));
        match outputs.contains(&"side") {
            true => spec.step(step("a", &[("x", "in")], "side")),
            false => spec,
        }
    }

    fn stream(spec: &EnsembleSpec, decoupled: &[bool]) -> Result<Option<StreamPlan>, Vec<String>> {
        let p = plan(spec, models).expect("a valid graph");
        stream_plan(spec, &p, decoupled)
    }

    #[test]
    fn the_steps_split_into_before_the_decoupled_step_and_after_it() {
        let s = spec(&["out"], step("a", &[("x", "g")], "out"));
        assert!(stream(&s, &[false; 3]).unwrap().is_none());
        let p = stream(&s, &[false, false, true]).unwrap().unwrap();
        assert_eq!(p.step, 2);
        assert_eq!(p.after, [1]);
        assert_eq!(p.before, [0]);
    }

    #[test]
    fn mixing_the_responses_with_what_came_before_them_is_refused() {
        let mixed_step = spec(&["out"], step("j", &[("x", "g"), ("z", "a")], "out"));
        let e = stream(&mixed_step, &[false, false, true]).unwrap_err();
        assert!(
            e[0].contains("step 1 (model 'j') takes tensors both"),
            "{e:?}"
        );
        let mixed_output = spec(&["out", "side"], step("a", &[("x", "g")], "out"));
        let e = stream(&mixed_output, &[false, false, true, false]).unwrap_err();
        assert!(
            e[0].contains("ensemble output 'side' does not come from"),
            "{e:?}"
        );
        let two = spec(&["out"], step("a", &[("x", "g")], "out"));
        let e = stream(&two, &[false, true, true]).unwrap_err();
        assert!(e[0].contains("it has 2 decoupled steps"), "{e:?}");
    }
}
