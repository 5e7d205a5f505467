//! Checks of a sequence model's settings against the engine's inputs and
//! outputs, at load: each control and state names a tensor of the model, of
//! the type and shape the server will give it.

use super::{ControlKind, SequenceControl, SequenceState};
use anemone_core::{Dim, Error, ModelMetadata, Result, TensorSpec};

/// A control input: an input of the model, of its values' type, one value a request.
pub(super) fn control(
    model: &str,
    control: &SequenceControl,
    engine: &ModelMetadata,
    batched: bool,
) -> Result<()> {
    let input = find(
        model,
        "control input",
        &control.input,
        &engine.inputs,
        "inputs",
    )?;
    let expected = match control.kind {
        ControlKind::Start(v) | ControlKind::End(v) | ControlKind::Ready(v) => v.dtype(),
        ControlKind::CorrelationId(dtype) => dtype,
    };
    let rank = if batched { 2 } else { 1 };
    let fits = match &input.shape {
        None => true,
        Some(shape) => {
            shape.len() == rank
                && matches!(shape.last(), Some(Dim::Fixed(1) | Dim::Any | Dim::Named(_)))
        }
    };
    if !fits {
        return Err(Error::Config(format!(
            "model '{model}': sequence control input '{}' has shape {} in the model; a \
                 control input takes one value a request: shape [1]{}",
            control.input,
            input.shape_string(),
            if batched {
                " after the batch dimension"
            } else {
                ""
            }
        )));
    }
    if input.dtype != expected {
        return Err(Error::Config(format!(
            "model '{model}': sequence control input '{}' is {} in the model, but its \
                 control gives {} values; change the control's values to the input's type",
            control.input,
            input.dtype.kserve_name(),
            expected.kserve_name()
        )));
    }
    Ok(())
}

/// A state: its input and output are the model's, of the initial state's
/// type, and the input takes the initial state's shape.
pub(super) fn state(model: &str, state: &SequenceState, engine: &ModelMetadata) -> Result<()> {
    let initial = &state.initial;
    let input = find(model, "state input", &state.input, &engine.inputs, "inputs")?;
    let output = find(
        model,
        "state output",
        &state.output,
        &engine.outputs,
        "outputs",
    )?;
    for (what, spec) in [("input", input), ("output", output)] {
        if spec.dtype != initial.dtype() {
            return Err(Error::Config(format!(
                "model '{model}': sequence state {what} '{}' is {} in the model, but the state's \
                 data_type is {}; give the state the model's type",
                spec.name,
                spec.dtype.kserve_name(),
                initial.dtype().kserve_name()
            )));
        }
    }
    let fits = match &input.shape {
        None => true,
        Some(shape) => {
            shape.len() == initial.shape().len()
                && shape.iter().zip(initial.shape()).all(|(d, n)| match d {
                    Dim::Fixed(f) => *f == *n as u64,
                    Dim::Any | Dim::Named(_) => true,
                })
        }
    };
    if !fits {
        return Err(Error::Config(format!(
            "model '{model}': sequence state input '{}' has shape {} in the model, which cannot \
             take the state's {:?}; give the state dims the model's input takes",
            input.name,
            input.shape_string(),
            initial.shape()
        )));
    }
    Ok(())
}

/// The tensor named `name` among the model's `specs`, or an error listing them.
fn find<'a>(
    model: &str,
    what: &str,
    name: &str,
    specs: &'a [TensorSpec],
    kind: &str,
) -> Result<&'a TensorSpec> {
    specs.iter().find(|s| s.name == name).ok_or_else(|| {
        Error::Config(format!(
            "model '{model}': sequence {what} '{name}' is not one of the model's {kind} ({})",
            specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}
