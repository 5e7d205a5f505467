//! Checking an ensemble against the models it composes, and the order its
//! steps may run in: every tensor has exactly one producer, the steps form
//! no cycle, every tensor is read, every mapped tensor agrees in type and shape with the model
//! input or output it is mapped to, every required model input is fed and
//! every ensemble output is produced. Every problem is reported (one run
//! shows them all), each naming its step, model and tensor.

use super::adapt::{without_batch, Adapt};
use super::spec::{EnsembleSpec, EnsembleStep};
use crate::instance::ModelInstance;
use anemone_core::{Dim, TensorSpec};
use std::collections::{BTreeMap, HashMap};

/// What validation needs of a composing model.
#[derive(Debug, Clone)]
pub(crate) struct ModelView {
    /// Its inputs as requests must give them (the configuration's narrower shapes).
    pub(crate) inputs: Vec<TensorSpec>,
    /// The outputs it serves.
    pub(crate) outputs: Vec<TensorSpec>,
    /// Inputs it may go without.
    pub(crate) optional: Vec<String>,
    /// Its `max_batch_size`.
    pub(crate) max_batch_size: Option<usize>,
}

impl ModelView {
    /// The view of a loaded model.
    pub(crate) fn of(m: &ModelInstance) -> ModelView {
        let spec = m.spec();
        let meta = m.metadata();
        let outputs = match &spec.declared_outputs {
            Some(served) => served
                .iter()
                .filter_map(|n| meta.outputs.iter().find(|o| &o.name == n).cloned())
                .collect(),
            None => meta.outputs.clone(),
        };
        ModelView {
            // As requests see them: declared, and reshaped where configured.
            inputs: meta.inputs.clone(),
            outputs,
            optional: spec.optional_inputs.clone(),
            max_batch_size: spec.max_batch_size,
        }
    }
}

/// Where an ensemble tensor comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The request (an ensemble input).
    Request,
    /// Output `output` of step `step`.
    Step { step: usize, output: String },
}

/// A validated ensemble: the steps in an order that runs every step after
/// its producers, and how many times each tensor is read.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Step indices, producers before consumers.
    pub(crate) order: Vec<usize>,
    /// For each step, the steps it waits for.
    pub(crate) waits_for: Vec<Vec<usize>>,
    /// Where each tensor comes from.
    pub(crate) origin: HashMap<String, Origin>,
    /// How many readers each tensor has (step inputs and ensemble outputs):
    /// the last reader takes the tensor, earlier ones get a copy.
    pub(crate) readers: HashMap<String, usize>,
    /// For each step, how each tensor of its `input_map` (in order) reaches
    /// it: as a batch of one, without its batch dimension, or as it is.
    pub(crate) step_inputs: Vec<Vec<Adapt>>,
    /// How each ensemble output reaches the client, the same way.
    pub(crate) outputs: HashMap<String, Adapt>,
}

/// `step 1 (model 'det')`.
pub(crate) fn step_label(i: usize, step: &EnsembleStep) -> String {
    format!("step {i} (model '{}')", step.model)
}

/// Validates `spec` against the composing models `models` finds (`None`:
/// not loaded). Every problem is listed in the error.
pub(crate) fn plan(
    spec: &EnsembleSpec,
    models: impl Fn(&str, Option<u64>) -> Option<ModelView>,
) -> Result<Plan, Vec<String>> {
    let mut errs = Vec::new();
    if spec.steps.is_empty() {
        errs.push("it has no steps; add at least one step to ensemble_scheduling".to_string());
    }
    // Producers: the ensemble's inputs, then every step's outputs.
    let mut origin: HashMap<String, Origin> = HashMap::new();
    // Each tensor's spec, and whether its producer batches.
    let mut specs: HashMap<String, (TensorSpec, bool)> = HashMap::new();
    let batches = spec.max_batch_size.is_some();
    for input in &spec.inputs {
        if origin.insert(input.name.clone(), Origin::Request).is_some() {
            errs.push(format!("ensemble input '{}' is declared twice", input.name));
        }
        specs.insert(input.name.clone(), (input.clone(), batches));
    }
    let views: Vec<Option<ModelView>> = spec
        .steps
        .iter()
        .map(|s| models(&s.model, s.version))
        .collect();
    for (i, (step, view)) in spec.steps.iter().zip(&views).enumerate() {
        let label = step_label(i, step);
        let Some(view) = view else {
            let version = step
                .version
                .map(|v| format!(" version {v}"))
                .unwrap_or_default();
            errs.push(format!(
                "{label}: model '{}'{version} is not loaded; put it in the model repository (or load it) before the ensemble",
                step.model
            ));
            // Its outputs still count as produced (of unknown type), so the
            // steps after it are not reported for this one cause.
            for (output, tensor) in &step.output_map {
                origin.entry(tensor.clone()).or_insert(Origin::Step {
                    step: i,
                    output: output.clone(),
                });
            }
            continue;
        };
        // As Triton: a batching step takes at least the ensemble's batches;
        // a step that does not batch may take them whole, where its full
        // shape (checked below) has room for the batch dimension.
        if let (Some(ours), Some(theirs)) = (spec.max_batch_size, view.max_batch_size) {
            if theirs < ours {
                errs.push(format!(
                    "{label}: the ensemble's max_batch_size is {ours} but the model's is {theirs}; \
                     lower the ensemble's max_batch_size to at most the model's"
                ));
            }
        }
        for (output, tensor) in &step.output_map {
            let Some(out) = view.outputs.iter().find(|o| &o.name == output) else {
                errs.push(format!(
                    "{label}: output_map names output '{output}', which the model does not have; its outputs are {}",
                    names(&view.outputs)
                ));
                continue;
            };
            let mine = Origin::Step {
                step: i,
                output: output.clone(),
            };
            if let Some(first) = origin.get(tensor) {
                errs.push(format!(
                    "tensor '{tensor}' has two producers: {} and {label} output '{output}'; \
                     every ensemble tensor must be produced exactly once, rename one of them",
                    describe(first, spec)
                ));
                continue;
            }
            origin.insert(tensor.clone(), mine);
            specs.insert(tensor.clone(), (out.clone(), view.max_batch_size.is_some()));
        }
    }
    // Consumers: every step input must be produced and agree with the model.
    let mut readers: HashMap<String, usize> = HashMap::new();
    let mut waits_for: Vec<Vec<usize>> = vec![Vec::new(); spec.steps.len()];
    let mut step_inputs: Vec<Vec<Adapt>> = Vec::with_capacity(spec.steps.len());
    for (i, (step, view)) in spec.steps.iter().zip(&views).enumerate() {
        let label = step_label(i, step);
        let mut adapts = vec![Adapt::Keep; step.input_map.len()];
        for (k, (input, tensor)) in step.input_map.iter().enumerate() {
            *readers.entry(tensor.clone()).or_default() += 1;
            let Some(from) = origin.get(tensor) else {
                errs.push(format!(
                    "{label}: input '{input}' is mapped from tensor '{tensor}', which is neither an ensemble input \
                     nor any step's output; map it from one of those"
                ));
                continue;
            };
            if let Origin::Step { step: producer, .. } = from {
                if !waits_for[i].contains(producer) {
                    waits_for[i].push(*producer);
                }
            }
            let Some(view) = view else { continue };
            let Some(want) = view.inputs.iter().find(|t| &t.name == input) else {
                errs.push(format!(
                    "{label}: input_map names input '{input}', which the model does not have; its inputs are {}",
                    names(&view.inputs)
                ));
                continue;
            };
            let reader_batches = view.max_batch_size.is_some();
            if let Some((have, have_batches)) = specs.get(tensor) {
                match disagree((have, *have_batches), (want, reader_batches)) {
                    Some(why) => errs.push(format!(
                        "{label}: tensor '{tensor}' ({}) cannot feed input '{input}' ({}): {why}",
                        shown(have),
                        shown(want)
                    )),
                    None => adapts[k] = Adapt::between(*have_batches, want, reader_batches),
                }
            }
        }
        step_inputs.push(adapts);
        if let Some(view) = view {
            for input in &view.inputs {
                let fed = step.input_map.iter().any(|(n, _)| n == &input.name);
                if !fed && !view.optional.contains(&input.name) {
                    errs.push(format!(
                        "{label}: the model's input '{}' is not mapped; add it to the step's input_map",
                        input.name
                    ));
                }
            }
        }
    }
    let mut outputs = HashMap::new();
    for output in &spec.outputs {
        *readers.entry(output.name.clone()).or_default() += 1;
        match specs.get(&output.name) {
            None if !origin.contains_key(&output.name) => errs.push(format!(
                "ensemble output '{}' is not produced by any step; map a step's output to it in output_map",
                output.name
            )),
            None => {}
            Some((have, have_batches)) => {
                match disagree((have, *have_batches), (output, batches)) {
                    Some(why) => errs.push(format!(
                        "ensemble output '{}' ({}) is produced as {} by {}: {why}",
                        output.name,
                        shown(output),
                        shown(have),
                        describe(&origin[&output.name], spec)
                    )),
                    None => {
                        let adapt = Adapt::between(*have_batches, output, batches);
                        outputs.insert(output.name.clone(), adapt);
                    }
                }
            }
        }
    }
    // Every tensor is read, as Triton requires ("ensemble tensor 'x' is
    // unused"): an input no step reads would be demanded of every request
    // for nothing, and a step output nothing reads is a mapping gone wrong
    // (an input_map key given twice keeps only its last tensor).
    for input in &spec.inputs {
        if !readers.contains_key(&input.name) {
            errs.push(format!(
                "ensemble input '{}' is not used by any step; map it to a step's input in input_map, \
                 or remove it from the ensemble's inputs",
                input.name
            ));
        }
    }
    for (i, step) in spec.steps.iter().enumerate() {
        for (output, tensor) in &step.output_map {
            let ours = matches!(origin.get(tensor), Some(Origin::Step { step, output: o }) if *step == i && o == output);
            if ours && !readers.contains_key(tensor) {
                errs.push(format!(
                    "{}: output '{output}' is mapped to tensor '{tensor}', which no step reads and \
                     which is not an ensemble output; remove it from the step's output_map, or use it",
                    step_label(i, step)
                ));
            }
        }
    }
    let order = match topological(&waits_for) {
        Ok(order) => order,
        Err(stuck) => {
            let steps: Vec<String> = stuck
                .iter()
                .map(|&i| step_label(i, &spec.steps[i]))
                .collect();
            errs.push(format!(
                "the steps form a cycle: {} each wait for another's output; an ensemble must be a DAG",
                steps.join(", ")
            ));
            Vec::new()
        }
    };
    if errs.is_empty() {
        Ok(Plan {
            order,
            waits_for,
            origin,
            readers,
            step_inputs,
            outputs,
        })
    } else {
        Err(errs)
    }
}

/// Kahn's algorithm: an order with every step after the steps it waits
/// for, or the steps left in (or behind) a cycle.
fn topological(waits_for: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let mut pending: Vec<usize> = waits_for.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..waits_for.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(waits_for.len());
    let mut dependents: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, deps) in waits_for.iter().enumerate() {
        for &d in deps {
            dependents.entry(d).or_default().push(i);
        }
    }
    while let Some(i) = ready.pop() {
        order.push(i);
        for &j in dependents.get(&i).map(Vec::as_slice).unwrap_or_default() {
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.push(j);
            }
        }
    }
    if order.len() == waits_for.len() {
        Ok(order)
    } else {
        Err((0..waits_for.len())
            .filter(|i| !order.contains(i))
            .collect())
    }
}

/// Why a tensor `have` cannot stand for `want`, each with whether its
/// model batches, if it cannot: another data type, rank, or a fixed size
/// that differs (-1 and named dimensions match anything). As in Triton,
/// the shapes agree when either the full shapes or the shapes without the
/// batch dimension do (a tensor may pass between a model that batches and
/// one that does not: see [`Adapt`]).
fn disagree(
    (have, have_batches): (&TensorSpec, bool),
    (want, want_batches): (&TensorSpec, bool),
) -> Option<String> {
    let full = shape_disagrees(have, want)?;
    if have_batches != want_batches {
        let bare = (
            without_batch(have, have_batches),
            without_batch(want, want_batches),
        );
        shape_disagrees(&bare.0, &bare.1)?;
    }
    Some(full)
}

/// [`disagree`] on the full shapes.
fn shape_disagrees(have: &TensorSpec, want: &TensorSpec) -> Option<String> {
    if have.dtype != want.dtype {
        return Some(format!(
            "the data types differ ({} against {})",
            have.dtype.kserve_name(),
            want.dtype.kserve_name()
        ));
    }
    let (Some(a), Some(b)) = (&have.shape, &want.shape) else {
        return None;
    };
    if a.len() != b.len() {
        return Some(format!(
            "the ranks differ ({} against {}); with max_batch_size > 0 the batch dimension counts",
            a.len(),
            b.len()
        ));
    }
    a.iter()
        .zip(b)
        .enumerate()
        .find_map(|(k, pair)| match pair {
            (Dim::Fixed(x), Dim::Fixed(y)) if x != y => {
                Some(format!("dimension {k} differs ({x} against {y})"))
            }
            _ => None,
        })
}

fn shown(t: &TensorSpec) -> String {
    format!("{} {}", t.dtype.kserve_name(), t.shape_string())
}

fn names(ts: &[TensorSpec]) -> String {
    let names: Vec<String> = ts.iter().map(|t| format!("'{}'", t.name)).collect();
    names.join(", ")
}

fn describe(origin: &Origin, spec: &EnsembleSpec) -> String {
    match origin {
        Origin::Request => "the ensemble's input".to_string(),
        Origin::Step { step, output } => {
            format!(
                "{} output '{output}'",
                step_label(*step, &spec.steps[*step])
            )
        }
    }
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
