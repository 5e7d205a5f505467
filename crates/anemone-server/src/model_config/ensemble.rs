//! Triton ensembles in the configuration: `platform: "ensemble"` with
//! `ensemble_scheduling { step [ { model_name, model_version, input_map,
//! output_map } ] }` and the ensemble's own `input`, `output` and
//! `max_batch_size`, translated into the runtime's [`EnsembleSpec`] (the type
//! the Rust API uses too). The graph itself (producers, cycles, types and
//! shapes against the composing models) is checked by the runtime at load.

use anemone_core::Dim;
use anemone_runtime::ensemble::{EnsembleSpec, EnsembleStep};

use super::dtypes::core_dtype;
use crate::proto::model_config::SchedulingChoice;
use crate::proto::{DataType as ProtoType, ModelConfig, ModelEnsembling};

/// The platform name of an ensemble.
pub const ENSEMBLE_PLATFORM: &str = "ensemble";

/// Whether a configuration describes an ensemble (`platform: "ensemble"`
/// or an `ensemble_scheduling` section).
pub fn is_ensemble(config: &ModelConfig) -> bool {
    config.platform == ENSEMBLE_PLATFORM || scheduling(config).is_some()
}

fn scheduling(config: &ModelConfig) -> Option<&ModelEnsembling> {
    match &config.scheduling_choice {
        Some(SchedulingChoice::EnsembleScheduling(e)) => Some(e),
        _ => None,
    }
}

/// The composing models' names, each once, in step order (empty when the
/// configuration is not an ensemble).
pub fn composing_models(config: &ModelConfig) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for step in scheduling(config)
        .map(|e| e.step.as_slice())
        .unwrap_or_default()
    {
        if !names.contains(&step.model_name) {
            names.push(step.model_name.clone());
        }
    }
    names
}

/// The ensemble `name` (served as `version`) that `config` describes. Every
/// problem is listed, each naming the field.
pub fn ensemble_spec(
    config: &ModelConfig,
    name: &str,
    version: u64,
) -> Result<EnsembleSpec, String> {
    let mut errs = Vec::new();
    if !config.name.is_empty() && config.name != name {
        errs.push(format!(
            "config name '{}' does not match the model directory '{name}'; Triton requires them to match: \
             set name: \"{name}\" or rename the directory",
            config.name
        ));
    }
    if config.platform != ENSEMBLE_PLATFORM {
        errs.push(format!(
            "'ensemble_scheduling' is set but platform is \"{}\"; set platform: \"ensemble\"",
            config.platform
        ));
    }
    if !config.backend.is_empty() {
        errs.push("an ensemble runs no engine of its own; remove 'backend'".to_string());
    }
    for (set, field) in [
        (!config.instance_group.is_empty(), "instance_group"),
        (!config.model_warmup.is_empty(), "model_warmup"),
        (
            !config.default_model_filename.is_empty(),
            "default_model_filename",
        ),
    ] {
        if set {
            errs.push(format!(
                "an ensemble runs no engine of its own; remove '{field}' (set it on the composing models)"
            ));
        }
    }
    let Some(scheduling) = scheduling(config) else {
        errs.push(
            "platform is \"ensemble\" but there is no 'ensemble_scheduling'; add ensemble_scheduling { step [ ... ] }"
                .to_string(),
        );
        return Err(super::refusals("the ensemble's configuration", &errs));
    };
    let max_batch_size = usize::try_from(config.max_batch_size).unwrap_or(0);
    let mut spec = EnsembleSpec::new(name)
        .version(version)
        .max_batch_size(max_batch_size);
    spec.response_cache = config.response_cache.as_ref().is_some_and(|c| c.enable);
    let batch = max_batch_size > 0;
    for (i, input) in config.input.iter().enumerate() {
        match tensor(&input.name, input.data_type, &input.dims, batch) {
            Ok((dtype, shape)) => {
                spec.inputs
                    .push(anemone_core::TensorSpec::new(&input.name, dtype, shape));
                if input.optional {
                    spec.optional_inputs.push(input.name.clone());
                }
            }
            Err(why) => errs.push(format!("input[{i}] ('{}'): {why}", input.name)),
        }
    }
    for (i, output) in config.output.iter().enumerate() {
        match tensor(&output.name, output.data_type, &output.dims, batch) {
            Ok((dtype, shape)) => {
                spec.outputs
                    .push(anemone_core::TensorSpec::new(&output.name, dtype, shape))
            }
            Err(why) => errs.push(format!("output[{i}] ('{}'): {why}", output.name)),
        }
    }
    // An ensemble hands its tensors to its steps as they are.
    let inputs = config.input.iter().map(|t| ("input", &t.name, &t.reshape));
    let outputs = config
        .output
        .iter()
        .map(|t| ("output", &t.name, &t.reshape));
    for (role, name, _) in inputs.chain(outputs).filter(|(_, _, r)| r.is_some()) {
        errs.push(format!(
            "{role} '{name}': an ensemble passes its tensors to its steps as they are; remove 'reshape' \
             (set it on the composing model whose shape differs)"
        ));
    }
    if spec.inputs.is_empty() && config.input.is_empty() {
        errs.push("an ensemble must declare its inputs; add 'input' entries".to_string());
    }
    if spec.outputs.is_empty() && config.output.is_empty() {
        errs.push("an ensemble must declare its outputs; add 'output' entries".to_string());
    }
    for (i, step) in scheduling.step.iter().enumerate() {
        let at = format!("ensemble_scheduling.step[{i}]");
        if step.model_name.is_empty() {
            errs.push(format!(
                "{at}: model_name is empty; name the composing model"
            ));
            continue;
        }
        if !step.model_namespace.is_empty() {
            errs.push(format!("{at}: model_namespace is not supported; remove it"));
        }
        let version = match step.model_version {
            -1 => None,
            v if v > 0 => Some(v as u64),
            v => {
                errs.push(format!(
                    "{at} (model '{}'): model_version is {v}; use -1 (the latest) or a version number",
                    step.model_name
                ));
                None
            }
        };
        // Protobuf maps have no order: sort them so errors and runs are stable.
        let mut inputs: Vec<(String, String)> = step.input_map.clone().into_iter().collect();
        let mut outputs: Vec<(String, String)> = step.output_map.clone().into_iter().collect();
        inputs.sort();
        outputs.sort();
        if outputs.is_empty() {
            errs.push(format!(
                "{at} (model '{}'): output_map is empty; map at least one of the model's outputs",
                step.model_name
            ));
        }
        spec.steps.push(EnsembleStep {
            model: step.model_name.clone(),
            version,
            input_map: inputs,
            output_map: outputs,
        });
    }
    if errs.is_empty() {
        Ok(spec)
    } else {
        Err(super::refusals("the ensemble's configuration", &errs))
    }
}

/// The data type and full shape of an ensemble tensor (the batch dimension
/// first when `batch`).
fn tensor(
    name: &str,
    data_type: i32,
    dims: &[i64],
    batch: bool,
) -> Result<(anemone_core::DataType, Vec<Dim>), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    let dtype = ProtoType::try_from(data_type)
        .ok()
        .and_then(core_dtype)
        .ok_or_else(|| {
            "data_type is missing or not supported; set one such as TYPE_FP32".to_string()
        })?;
    let mut shape = Vec::with_capacity(dims.len() + 1);
    if batch {
        shape.push(Dim::Any);
    }
    shape.extend(anemone_runtime::ensemble::dims(dims));
    Ok((dtype, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_pbtxt;

    const OCR: &str = r#"
name: "ocr"
platform: "ensemble"
max_batch_size: 4
input [ { name: "image" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] } ]
output [ { name: "prob" data_type: TYPE_FP32 dims: [ 1, -1, -1 ] } ]
ensemble_scheduling {
  step [
    { model_name: "pre" model_version: -1 input_map { key: "image" value: "image" } output_map { key: "x" value: "norm" } },
    { model_name: "det" model_version: 2 input_map { key: "x" value: "norm" } output_map { key: "sigmoid_0.tmp_0" value: "prob" } }
  ]
}
response_cache { enable: true }
"#;

    #[test]
    fn triton_ensemble_config_is_read_exactly() {
        let config = parse_pbtxt(OCR).unwrap();
        assert!(is_ensemble(&config));
        assert_eq!(composing_models(&config), vec!["pre", "det"]);
        let spec = ensemble_spec(&config, "ocr", 1).unwrap();
        assert_eq!(spec.max_batch_size, Some(4));
        assert!(spec.response_cache);
        assert_eq!(spec.inputs[0].shape_string(), "[-1, -1, -1, 3]");
        assert_eq!(spec.inputs[0].dtype, anemone_core::DataType::U8);
        assert_eq!(spec.outputs[0].shape_string(), "[-1, 1, -1, -1]");
        assert_eq!(spec.steps[0].version, None);
        assert_eq!(spec.steps[1].version, Some(2));
        assert_eq!(
            spec.steps[1].input_map,
            vec![("x".to_string(), "norm".to_string())]
        );
        assert_eq!(
            spec.steps[1].output_map,
            vec![("sigmoid_0.tmp_0".to_string(), "prob".to_string())]
        );
    }

    #[test]
    fn ensemble_fields_that_cannot_apply_are_refused() {
        let config = parse_pbtxt(&OCR.replace("model_version: 2", "model_version: 0")).unwrap();
        let e = ensemble_spec(&config, "ocr", 1).unwrap_err();
        assert!(
            e.contains("ensemble_scheduling.step[1] (model 'det'): model_version is 0"),
            "{e}"
        );
        let config = parse_pbtxt(&OCR.replace("platform: \"ensemble\"", "")).unwrap();
        let e = ensemble_spec(&config, "ocr", 1).unwrap_err();
        assert!(e.contains("set platform: \"ensemble\""), "{e}");
        let e = ensemble_spec(&parse_pbtxt(OCR).unwrap(), "other", 1).unwrap_err();
        assert!(
            e.contains("config name 'ocr' does not match the model directory 'other'"),
            "{e}"
        );
        let config = parse_pbtxt(&format!("{OCR}\ninstance_group [ {{ count: 2 }} ]")).unwrap();
        let e = ensemble_spec(&config, "ocr", 1).unwrap_err();
        assert!(e.contains("remove 'instance_group'"), "{e}");
        let reshaped = OCR.replace(
            "dims: [ -1, -1, 3 ]",
            "dims: [ -1, -1, 3 ] reshape { shape: [ -1, -1, 3 ] }",
        );
        let e = ensemble_spec(&parse_pbtxt(&reshaped).unwrap(), "ocr", 1).unwrap_err();
        assert!(
            e.contains("input 'image'") && e.contains("remove 'reshape'"),
            "{e}"
        );
    }
}
