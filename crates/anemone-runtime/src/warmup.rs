//! A model's warm-up requests (Triton's `model_warmup`): checked against
//! each engine and run before the model is published.

use crate::reshape::served_metadata;
use crate::scheduler::panic_message;
use crate::spec::{ModelSpec, WarmupSample};
use crate::validation::order_inputs;
use anemone_core::{Error, LoadedModel, Result, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The error of a sample that cannot run: names the model, the sample, and
/// what to do.
fn failed(spec: &ModelSpec, sample: &WarmupSample, backend: &str, why: String) -> Error {
    Error::Config(format!(
        "model '{}': warm-up sample '{}' failed on {backend}: {why}; fix the sample in model_warmup \
         (its inputs must be what a request to this model may send) or remove it",
        spec.name, sample.name
    ))
}

/// Every sample's inputs in `engine`'s input order, checked against the
/// model's declared inputs as a request's would be, then given the shapes
/// the model takes (see [`crate::reshape`]). A sequence model's sample runs
/// as a sequence of one request (START and END true, correlation ID 1):
/// control inputs it names are replaced by those.
pub(crate) fn ordered(spec: &ModelSpec, engine: &dyn LoadedModel) -> Result<Vec<Vec<Tensor>>> {
    let meta = served_metadata(spec, engine.metadata());
    let names = || meta.inputs.iter().map(|i| i.name.as_str());
    let batched = crate::reshape::batched(spec);
    let sequences = match &spec.sequence {
        None => None,
        Some(settings) => Some(crate::sequence::Sequences::new(
            &spec.name,
            settings.clone(),
            engine.metadata(),
            batched,
        )?),
    };
    spec.warmup
        .iter()
        .map(|sample| {
            let mut given = sample.inputs.clone();
            if let Some(s) = &sequences {
                given.retain(|(name, _)| !s.settings().is_supplied(name));
            }
            order_inputs(&meta, given)
                .map_err(|e| e.to_string())
                .and_then(|inputs| {
                    (spec.reshapes.to_model(names(), inputs, batched)).map_err(|e| e.to_string())
                })
                .and_then(|inputs| match &sequences {
                    None => Ok(inputs),
                    Some(s) => s
                        .with_controls(&crate::sequence::warmup_flags(s), None, inputs)
                        .map_err(|e| e.to_string()),
                })
                .and_then(|inputs| ragged(spec, engine, &meta, inputs).map_err(|e| e.to_string()))
                .map_err(|why| failed(spec, sample, engine.backend(), why))
        })
        .collect()
}

/// The synthetic warm-up of a sequence model (one with no samples of its
/// own): [`crate::tuning::warmup_inputs`] for the inputs a request sends,
/// with the control and state inputs a sequence of one request gets (as a
/// sample's, above). Random values in a control input would time a request
/// no client can send: a correlation ID of random text that the model reads
/// as a number fails the engine.
pub(crate) fn synthetic_sequence(
    spec: &ModelSpec,
    engine: &dyn LoadedModel,
) -> Result<Vec<Tensor>> {
    let Some(settings) = &spec.sequence else {
        if spec.ragged.reshapes_batches() {
            // The inputs a request sends, then the batch of one it makes.
            let meta = served_metadata(spec, engine.metadata());
            return ragged(spec, engine, &meta, crate::tuning::warmup_inputs(&meta));
        }
        return Ok(crate::tuning::warmup_inputs(engine.metadata()));
    };
    let batched = crate::reshape::batched(spec);
    let sequences =
        crate::sequence::Sequences::new(&spec.name, settings.clone(), engine.metadata(), batched)?;
    let mut meta = engine.metadata().clone();
    meta.inputs.retain(|i| !settings.is_supplied(&i.name));
    let inputs = crate::tuning::warmup_inputs(&meta);
    sequences.with_controls(&crate::sequence::warmup_flags(&sequences), None, inputs)
}

/// A ragged model's engine inputs for one request's (in `served`'s order):
/// its ragged inputs flat and its batch inputs made ([`crate::ragged`]).
fn ragged(
    spec: &ModelSpec,
    engine: &dyn LoadedModel,
    served: &anemone_core::ModelMetadata,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    match spec.ragged.reshapes_batches() && !engine.answers_each() {
        true => spec.ragged.assemble(engine.metadata(), served, &[&inputs]),
        false => Ok(inputs),
    }
}

/// One warm-up call: `infer`, or for a decoupled model one request whose
/// responses are dropped (Triton runs a decoupled model's warm-up too).
fn run_once(engine: &dyn LoadedModel, inputs: &[Tensor]) -> Result<()> {
    if !engine.decoupled() {
        return engine.infer(inputs).map(drop);
    }
    let responder = crate::decoupled::discarding();
    let view = anemone_core::RequestView {
        inputs,
        id: None,
        parameters: &[],
        responder: Some(&responder),
        absent: &[],
        sequence: None,
        outputs: None,
        timeout: None,
        gone: None,
    };
    let answer = engine.infer_each(&[view]).pop();
    answer.unwrap_or_else(|| Err(anemone_core::Error::Internal("no answer".into())))?;
    Ok(())
}

/// Runs every sample `count` times (at least once) on `engine`. The first
/// failure (an error or a panic) is returned, naming its sample.
pub(crate) fn run(spec: &ModelSpec, engine: &dyn LoadedModel) -> Result<()> {
    let inputs = ordered(spec, engine)?;
    for (sample, inputs) in spec.warmup.iter().zip(&inputs) {
        for _ in 0..sample.count.max(1) {
            match catch_unwind(AssertUnwindSafe(|| run_once(engine, inputs))) {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(failed(spec, sample, engine.backend(), e.chain_string())),
                Err(panic) => {
                    let why = format!("panicked: {}", panic_message(&*panic));
                    return Err(failed(spec, sample, engine.backend(), why));
                }
            }
        }
        tracing::debug!(model = %spec.name, sample = %sample.name, runs = sample.count.max(1), "warm-up sample ran");
    }
    Ok(())
}
