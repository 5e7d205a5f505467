//! Completing a configuration against the model file it describes.

use std::collections::HashSet;

use anemone_core::{Dim, ModelFormat, ModelMetadata, TensorSpec};

use super::dtypes::{dim_i64, proto_dtype};
use crate::proto::model_config::SchedulingChoice;
use crate::proto::model_optimization_policy::PinnedMemoryBuffer;
use crate::proto::model_version_policy::{Latest, PolicyChoice};
use crate::proto::{
    DataType as ProtoType, ModelConfig, ModelInput, ModelOptimizationPolicy, ModelOutput,
    ModelVersionPolicy,
};

/// The effective configuration of a model: the given config (or an empty
/// one) completed and checked against what the model file declares.
///
/// - `name` empty → `name`; a different name is an error (Triton requires
///   the config name to match the model directory).
/// - `platform` empty → `onnxruntime_onnx` for ONNX files, `anemone` for
///   Core ML files. `backend` empty → `onnxruntime` for ONNX files (as
///   Triton names the backend of `onnxruntime_onnx`, whichever of anemone's
///   engines runs it: the metadata's `platform` says which), `anemone` for
///   Core ML files.
/// - `optimization` unset → Triton's default (input and output pinned
///   memory on), which anemone accepts and which changes nothing.
/// - `version_policy` unset → `latest { num_versions: 1 }`, as Triton does.
/// - `instance_group` entries get a name (`{model}_{index}`) where they have
///   none and a count of at least 1, as Triton shows them (a group left
///   out is not added: anemone's default is one instance).
/// - `input` empty → every model input; `output` empty → every model output.
///   Dims are the model's (fixed size, or -1 when dynamic); a tensor whose
///   model declares no shape at all gets `[-1]` (an ONNX output the file
///   leaves without a shape gets the one tract's analysis finds, when it
///   finds one: `anemone_backends::onnx`). With `max_batch_size > 0`
///   the model's first dimension is the batch dimension: it must be dynamic,
///   and dims leave it out (Triton semantics).
/// - Inputs/outputs the config gives are checked against the model: the name
///   must exist, `data_type` must match (filled if unset), dims must have the
///   same rank and agree where both are fixed (-1 in the config matches
///   anything; empty dims are filled). Every model input must be listed;
///   outputs may be a subset, as in Triton.
pub fn complete(
    config: Option<ModelConfig>,
    name: &str,
    meta: &ModelMetadata,
) -> Result<ModelConfig, String> {
    let mut cfg = config.unwrap_or_default();
    if cfg.name.is_empty() {
        cfg.name = name.to_string();
    } else if cfg.name != name {
        return Err(format!(
            "config name '{}' does not match the model directory '{name}'; Triton requires them to match: \
             set name: \"{name}\" or rename the directory",
            cfg.name
        ));
    }
    if cfg.platform.is_empty() {
        cfg.platform = match meta.format {
            ModelFormat::Onnx => "onnxruntime_onnx",
            ModelFormat::CoreMl => "anemone",
            // Triton shows a Python model's platform empty.
            ModelFormat::Python => "",
        }
        .to_string();
    }
    if cfg.backend.is_empty() && !super::is_ensemble(&cfg) {
        cfg.backend = match meta.format {
            ModelFormat::Onnx => "onnxruntime",
            ModelFormat::CoreMl => "anemone",
            ModelFormat::Python => "python",
        }
        .to_string();
    }
    // Triton's defaults, as it shows them (they change nothing here), also
    // where the config gives other optimization fields.
    if !super::is_ensemble(&cfg) {
        let pinned = || Some(PinnedMemoryBuffer { enable: true });
        let optimization = cfg
            .optimization
            .get_or_insert_with(ModelOptimizationPolicy::default);
        if optimization.input_pinned_memory.is_none() {
            optimization.input_pinned_memory = pinned();
        }
        if optimization.output_pinned_memory.is_none() {
            optimization.output_pinned_memory = pinned();
        }
    }
    if cfg.max_batch_size < 0 {
        return Err(format!(
            "max_batch_size is {}; set it to 0 (no batch dimension) or a positive batch size",
            cfg.max_batch_size
        ));
    }
    if cfg.version_policy.is_none() {
        cfg.version_policy = Some(ModelVersionPolicy {
            policy_choice: Some(PolicyChoice::Latest(Latest { num_versions: 1 })),
        });
    }
    // As Triton normalizes them: each group named `{model}_{index}` when it
    // has no name, and a count under 1 (the proto's default 0) is 1.
    for (i, group) in cfg.instance_group.iter_mut().enumerate() {
        if group.name.is_empty() {
            group.name = format!("{name}_{i}");
        }
        group.count = group.count.max(1);
    }
    let batching = cfg.max_batch_size > 0;
    // A sequence model's control and state inputs come from the server: the
    // config does not list them (as in Triton), nor its state outputs when
    // it leaves the outputs to be filled in.
    let (controls, state_outputs): (HashSet<String>, HashSet<String>) = match &cfg.scheduling_choice
    {
        Some(SchedulingChoice::SequenceBatching(sb)) => (
            (sb.control_input.iter().map(|c| c.name.clone()))
                .chain(sb.state.iter().map(|s| s.input_name.clone()))
                .collect(),
            sb.state.iter().map(|s| s.output_name.clone()).collect(),
        ),
        _ => Default::default(),
    };
    // As Triton shows it: the default idle time written out.
    if let Some(SchedulingChoice::SequenceBatching(sb)) = &mut cfg.scheduling_choice {
        if sb.max_sequence_idle_microseconds == 0 {
            sb.max_sequence_idle_microseconds = 1_000_000;
        }
    }
    // Inputs a batch_input fills come from the server too (ragged.rs).
    let controls: HashSet<String> = (controls.into_iter())
        .chain(super::batch_input_targets(&cfg).map(str::to_string))
        .collect();
    if let Some(listed) = cfg.input.iter().find(|i| controls.contains(&i.name)) {
        return Err(format!(
            "input '{}' is a sequence_batching control or state input, or a batch_input target, \
             which the server gives the model; remove it from the config's 'input' list",
            listed.name
        ));
    }

    if cfg.input.is_empty() {
        for spec in meta.inputs.iter().filter(|s| !controls.contains(&s.name)) {
            cfg.input.push(ModelInput {
                name: spec.name.clone(),
                data_type: proto_dtype(spec.dtype) as i32,
                dims: fill_dims(spec, batching, "input")?,
                ..Default::default()
            });
        }
    } else {
        let mut seen = HashSet::new();
        for (i, io) in cfg.input.iter_mut().enumerate() {
            scalar_as_one(&mut io.reshape, &io.dims, &io.name, &meta.inputs, batching);
            if io.allow_ragged_batch && meta.format != ModelFormat::Python {
                ragged_entry(i, &io.name, &mut io.data_type, &io.dims, &meta.inputs)?;
            } else {
                check_entry(
                    ("input", i),
                    &io.name,
                    &mut io.data_type,
                    &mut io.dims,
                    io.reshape.as_ref().map(|r| r.shape.as_slice()),
                    &meta.inputs,
                    batching,
                )?;
            }
            if !seen.insert(io.name.clone()) {
                return Err(format!(
                    "input '{}' is listed twice in the config; list each input once",
                    io.name
                ));
            }
        }
        let missing = meta
            .inputs
            .iter()
            .find(|s| !seen.contains(&s.name) && !controls.contains(&s.name));
        if let Some(missing) = missing {
            return Err(format!(
                "model input '{}' is missing from the config's 'input' list; list every input of the model ({}) \
                 or leave 'input' out so anemone fills it in",
                missing.name,
                names(&meta.inputs)
            ));
        }
    }

    if cfg.output.is_empty() {
        for spec in meta
            .outputs
            .iter()
            .filter(|s| !state_outputs.contains(&s.name))
        {
            cfg.output.push(ModelOutput {
                name: spec.name.clone(),
                data_type: proto_dtype(spec.dtype) as i32,
                dims: fill_dims(spec, batching, "output")?,
                ..Default::default()
            });
        }
    } else {
        let mut seen = HashSet::new();
        let cut: HashSet<String> = (cfg.batch_output.iter())
            .flat_map(|b| b.target_name.iter().cloned())
            .collect();
        for (i, io) in cfg.output.iter_mut().enumerate() {
            scalar_as_one(&mut io.reshape, &io.dims, &io.name, &meta.outputs, batching);
            // A batch output's shape in the model is its batch's, cut by
            // the requests' shapes (as Triton's ONNX Runtime backend does,
            // its dims are not compared with the model's).
            if cut.contains(&io.name) && meta.format != ModelFormat::Python {
                let mut unshaped = meta.outputs.clone();
                unshaped.iter_mut().for_each(|o| o.shape = None);
                let dims = &mut io.dims;
                check_entry(
                    ("output", i),
                    &io.name,
                    &mut io.data_type,
                    dims,
                    None,
                    &unshaped,
                    false,
                )?;
            } else {
                check_entry(
                    ("output", i),
                    &io.name,
                    &mut io.data_type,
                    &mut io.dims,
                    io.reshape.as_ref().map(|r| r.shape.as_slice()),
                    &meta.outputs,
                    batching,
                )?;
            }
            if !seen.insert(io.name.clone()) {
                return Err(format!(
                    "output '{}' is listed twice in the config; list each output once",
                    io.name
                ));
            }
        }
    }
    Ok(cfg)
}

fn names(specs: &[TensorSpec]) -> String {
    if specs.is_empty() {
        return "none".to_string();
    }
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The model's dims as the config sees them: without the batch dimension
/// when batching (which must then be dynamic). `None` when the model does
/// not declare a shape.
fn model_dims(spec: &TensorSpec, batching: bool, role: &str) -> Result<Option<Vec<i64>>, String> {
    let Some(shape) = &spec.shape else {
        return Ok(None);
    };
    if !batching {
        return Ok(Some(shape.iter().map(dim_i64).collect()));
    }
    match shape.split_first() {
        None => Err(format!(
            "max_batch_size is set but {role} '{}' is a scalar, with no batch dimension; set max_batch_size: 0",
            spec.name
        )),
        Some((Dim::Fixed(n), _)) => Err(format!(
            "max_batch_size is set but {role} '{}' has a fixed first dimension {n} (shape {}); set max_batch_size: 0 \
             and give the full shape in dims, or export the model with a dynamic batch dimension",
            spec.name,
            spec.shape_string()
        )),
        Some((_, rest)) => Ok(Some(rest.iter().map(dim_i64).collect())),
    }
}

/// A scalar of the model (rank 0) given `dims: [ 1 ]` and no reshape is
/// served as one element, as Triton's ONNX Runtime backend serves it:
/// requests and answers carry `[1]` (after the batch dimension), the model
/// sees a scalar (a reshape to `[]`).
fn scalar_as_one(
    reshape: &mut Option<crate::proto::ModelTensorReshape>,
    dims: &[i64],
    name: &str,
    model: &[TensorSpec],
    batching: bool,
) {
    let scalar = model
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| model_dims(s, batching, "").ok().flatten())
        .is_some_and(|d| d.is_empty());
    if reshape.is_none() && dims == [1] && scalar {
        *reshape = Some(crate::proto::ModelTensorReshape { shape: Vec::new() });
    }
}

fn fill_dims(spec: &TensorSpec, batching: bool, role: &str) -> Result<Vec<i64>, String> {
    Ok(model_dims(spec, batching, role)?.unwrap_or_else(|| vec![-1]))
}

/// Checks (and where empty, fills) one config input or output against the
/// model (`role` and `index` say which). With a `reshape`, the model's shape is compared with the
/// reshape's, and `dims` with the reshape (the same elements).
fn check_entry(
    (role, index): (&str, usize),
    name: &str,
    data_type: &mut i32,
    dims: &mut Vec<i64>,
    reshape: Option<&[i64]>,
    model: &[TensorSpec],
    batching: bool,
) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "config {role}[{index}] has no name; set name to one of the model's {role}s: {}",
            names(model)
        ));
    }
    let Some(spec) = model.iter().find(|s| s.name == name) else {
        return Err(format!(
            "config {role} '{name}' is not an {role} of the model; the model's {role}s are: {}",
            names(model)
        ));
    };
    let expected = proto_dtype(spec.dtype);
    if *data_type == ProtoType::TypeInvalid as i32 {
        *data_type = expected as i32;
    } else if *data_type != expected as i32 {
        let given = ProtoType::try_from(*data_type)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| data_type.to_string());
        return Err(format!(
            "{role} '{name}': data_type is {given} in the config but the model's {role} is {}; set data_type: {}",
            expected.as_str_name(),
            expected.as_str_name()
        ));
    }
    if let Some(shape) = reshape {
        if dims.is_empty() {
            return Err(format!(
                "{role} '{name}' has a reshape but no dims; give dims, the shape requests and answers carry"
            ));
        }
        let reshape = anemone_runtime::reshape::Reshape::new(name, dims.clone(), shape.to_vec());
        reshape.map_err(|e| format!("{role} {e}"))?;
    }
    let Some(model_dims) = model_dims(spec, batching, role)? else {
        return Ok(());
    };
    if dims.is_empty() && !model_dims.is_empty() {
        *dims = model_dims;
        return Ok(());
    }
    // With a reshape, the model sees the reshape's shape, not dims.
    let (what, given) = match reshape {
        Some(shape) => ("reshape", shape),
        None => ("dims", dims.as_slice()),
    };
    let batch_note = if batching {
        " after the batch dimension (with max_batch_size > 0, dims leave out the first, batch, dimension)"
    } else {
        ""
    };
    if given.len() != model_dims.len() {
        return Err(format!(
            "{role} '{name}': {what} {given:?} have {} dimension(s) but the model's shape {} has {}{batch_note}; \
             set {what} to {model_dims:?} or remove them",
            given.len(),
            spec.shape_string(),
            model_dims.len()
        ));
    }
    for (i, (&c, &m)) in given.iter().zip(&model_dims).enumerate() {
        if c != -1 && m != -1 && c != m {
            return Err(format!(
                "{role} '{name}': {what}[{i}] is {c} in the config but the model's shape {} fixes it to {m}{batch_note}; \
                 set it to {m} or -1",
                spec.shape_string()
            ));
        }
    }
    Ok(())
}

/// A ragged input of a model file: the model takes every request's
/// elements as one flat tensor, so its shape must be `[-1]` (as Triton's
/// ONNX Runtime backend requires), whatever the config's dims.
fn ragged_entry(
    index: usize,
    name: &str,
    data_type: &mut i32,
    dims: &[i64],
    model: &[TensorSpec],
) -> Result<(), String> {
    let Some(spec) = model.iter().find(|s| s.name == name) else {
        return Err(format!(
            "config input '{name}' is not an input of the model; the model's inputs are: {}",
            names(model)
        ));
    };
    let mut unshaped = spec.clone();
    unshaped.shape = None;
    check_entry(
        ("input", index),
        name,
        data_type,
        &mut dims.to_vec(),
        None,
        &[unshaped],
        false,
    )?;
    if dims.is_empty() {
        return Err(format!(
            "input '{name}' is allow_ragged_batch but has no dims; give the dims requests send, after the \
             batch dimension (e.g. [ -1 ])"
        ));
    }
    match spec.shape.as_deref() {
        None | Some([Dim::Any | Dim::Named(_)]) => Ok(()),
        Some(_) => Err(format!(
            "input '{name}' is allow_ragged_batch, so the model takes every request's elements as one flat \
             tensor of shape [-1], but the model's shape is {}; export the model with a one-dimensional \
             input there, or remove allow_ragged_batch",
            spec.shape_string()
        )),
    }
}

#[cfg(test)]
#[path = "complete_tests.rs"]
mod tests;
