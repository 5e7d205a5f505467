//! A Python model's inputs and outputs, from its configuration: a model.py
//! declares nothing itself, so the configuration (as JSON, the form Triton
//! gives `initialize` in `args["model_config"]`) is the model's metadata.

use anemone_core::{DataType, Dim, Error, ModelFormat, ModelMetadata, Result, TensorSpec};
use serde_json::Value;

/// The setting that carries the model's configuration as JSON: the server
/// fills it in from `config.pbtxt`; a library user writes it.
pub const MODEL_CONFIG_KEY: &str = "python.model_config";

/// The setting that gives one model its own Python environment: the
/// absolute path of Triton's `EXECUTION_ENV_PATH` (a directory holding
/// `bin/python3`, or a conda-pack `.tar.gz` of one); without it, the
/// backend's interpreter.
pub const ENV_KEY: &str = "python.execution_env";

/// The setting that gives the model's folder as `initialize` sees it
/// (`args["model_repository"]`): the server's repository path as given,
/// links unresolved, as Triton gives it, so that a model reading its own
/// files follows a repository link that is repointed (git-sync's
/// `current`); without it, the folder of the model file's version folder.
pub const MODEL_DIR_KEY: &str = "python.model_dir";

/// Who one engine instance of a model is, as Triton tells `initialize`
/// (`args["model_instance_name"]`, `_kind`, `_device_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// `<group name>_<index in the group>`; an unnamed group is
    /// `<model>_<group index>`, and a model without groups has one named
    /// after the model.
    pub name: String,
    /// `"GPU"` for a `KIND_GPU` group, else `"CPU"`.
    pub kind: &'static str,
    /// The GPU a `KIND_GPU` group lists first (else 0).
    pub device_id: String,
}

/// Engine instance `ordinal` (counting through the groups in order, each
/// its `count`, 1 by default) of the model `model` whose configuration is
/// `config`. An ordinal past the groups is named as the model's first.
pub(crate) fn instance(config: &Value, model: &str, ordinal: usize) -> Instance {
    let groups = config["instance_group"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut first = 0usize;
    for (g, group) in groups.iter().enumerate() {
        let count = group["count"].as_u64().filter(|c| *c > 0).unwrap_or(1) as usize;
        if ordinal < first + count {
            let name = match group["name"].as_str() {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => format!("{model}_{g}"),
            };
            let gpu = group["kind"].as_str() == Some("KIND_GPU");
            let device = match gpu {
                true => group["gpus"].get(0).and_then(Value::as_i64).unwrap_or(0),
                false => 0,
            };
            let kind = match group["kind"].as_str() {
                Some("KIND_GPU") => "GPU",
                Some("KIND_MODEL") => "MODEL",
                _ => "CPU",
            };
            return Instance {
                name: format!("{name}_{}", ordinal - first),
                kind,
                device_id: device.to_string(),
            };
        }
        first += count;
    }
    Instance {
        name: format!("{model}_{}", if groups.is_empty() { ordinal } else { 0 }),
        kind: "CPU",
        device_id: "0".into(),
    }
}

/// Whether the configuration makes the model decoupled
/// (`model_transaction_policy { decoupled: true }`).
pub(crate) fn decoupled(config: &Value) -> bool {
    config["model_transaction_policy"]["decoupled"].as_bool() == Some(true)
}

/// Whether the model's requests may be rescheduled
/// (`sequence_batching { iterative_sequence: true }`).
pub(crate) fn iterative(config: &Value) -> bool {
    config["sequence_batching"]["iterative_sequence"].as_bool() == Some(true)
}

/// The metadata a configuration declares: each input and output with its
/// data type and dims (a batch dimension first when `max_batch_size > 0`;
/// a `reshape` gives the shape the model sees).
pub fn metadata(config: &Value) -> Result<ModelMetadata> {
    let batched = config["max_batch_size"].as_i64().unwrap_or(0) > 0;
    // A model may take no inputs (as Triton loads one); it answers outputs.
    let list = |role: &str| -> Result<Vec<TensorSpec>> {
        let entries = config[role]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if entries.is_empty() && role == "output" {
            return Err(Error::Config(format!(
                "a Python model's config.pbtxt must list its {role}s with name, data_type and dims, \
                 or its model.py declare them in auto_complete_config (add_{role})"
            )));
        }
        entries
            .iter()
            .map(|entry| spec(role, entry, batched))
            .collect()
    };
    let mut inputs = list("input")?;
    let mut outputs = list("output")?;
    let (controls, states) = sequence(config, batched)?;
    inputs.extend(controls);
    for (input, output) in states {
        inputs.push(input);
        outputs.push(output);
    }
    Ok(ModelMetadata::new(ModelFormat::Python, inputs, outputs))
}

/// A sequence model's control inputs and implicit state (`sequence_batching`):
/// the server gives them to the model as inputs (and takes the state back
/// as outputs), as Triton gives them to a Python model, though the config's
/// `input` and `output` lists leave them out.
#[allow(clippy::type_complexity)]
fn sequence(
    config: &Value,
    batched: bool,
) -> Result<(Vec<TensorSpec>, Vec<(TensorSpec, TensorSpec)>)> {
    // An iterative model's process gives its controls itself, each run
    // (`reschedule.rs`): they are not inputs the requests carry.
    if iterative(config) {
        return Ok((Vec::new(), Vec::new()));
    }
    let sb = &config["sequence_batching"];
    let with_batch = |dims: &[Value]| shape(dims, batched);
    let mut controls = Vec::new();
    for entry in sb["control_input"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = entry["name"].as_str().unwrap_or_default();
        let Some(control) = entry["control"].as_array().and_then(|c| c.first()) else {
            continue;
        };
        let given = |key: &str| control[key].as_array().is_some_and(|v| !v.is_empty());
        let dtype = if given("int32_false_true") {
            DataType::I32
        } else if given("fp32_false_true") {
            DataType::F32
        } else if given("bool_false_true") {
            DataType::Bool
        } else {
            let named = control["data_type"].as_str().unwrap_or_default();
            config_dtype(named).ok_or_else(|| {
                Error::Config(format!(
                    "sequence control input '{name}' has no data type the model can take"
                ))
            })?
        };
        let shape = with_batch(&[Value::from(1)]).expect("a fixed size");
        controls.push(TensorSpec::new(name, dtype, shape));
    }
    let mut states = Vec::new();
    for entry in sb["state"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let dtype_name = entry["data_type"].as_str().unwrap_or_default();
        let dims = entry["dims"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (Some(dtype), Some(shape)) = (config_dtype(dtype_name), with_batch(dims)) else {
            return Err(Error::Config(format!(
                "sequence state '{}' has a data type or dims the model cannot take",
                entry["input_name"].as_str().unwrap_or_default()
            )));
        };
        let name = |key: &str| entry[key].as_str().unwrap_or_default().to_string();
        states.push((
            TensorSpec::new(name("input_name"), dtype, shape.clone()),
            TensorSpec::new(name("output_name"), dtype, shape),
        ));
    }
    Ok((controls, states))
}

/// One tensor of the configuration.
fn spec(role: &str, entry: &Value, batched: bool) -> Result<TensorSpec> {
    let name = entry["name"].as_str().unwrap_or_default();
    let bad = |why: String| Error::Config(format!("{role} '{name}' of the configuration: {why}"));
    if name.is_empty() {
        return Err(bad("it has no name".into()));
    }
    let dtype_name = entry["data_type"].as_str().unwrap_or_default();
    let dtype = config_dtype(dtype_name).ok_or_else(|| {
        bad(format!(
            "data_type {dtype_name:?} is not one a Python model takes; use TYPE_BOOL, TYPE_UINT8..64, \
             TYPE_INT8..64, TYPE_FP16, TYPE_FP32, TYPE_FP64 or TYPE_STRING"
        ))
    })?;
    let reshaped = entry["reshape"]["shape"].as_array();
    let dims = reshaped
        .or_else(|| entry["dims"].as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    if dims.is_empty() && reshaped.is_none() {
        return Err(bad("it has no dims; give them (e.g. dims: [ -1 ])".into()));
    }
    let shape = shape(dims, batched).ok_or_else(|| {
        bad("dims hold a size that is neither above 0 nor -1; give sizes above 0, or -1".into())
    })?;
    Ok(TensorSpec::new(name, dtype, shape))
}

/// The shape of config `dims` (-1 dynamic), with a dynamic batch dimension
/// first when `batched`; `None` for a size that is neither above 0 nor -1.
fn shape(dims: &[Value], batched: bool) -> Option<Vec<Dim>> {
    let mut shape: Vec<Dim> = batched.then_some(Dim::Any).into_iter().collect();
    for d in dims {
        shape.push(match d.as_i64()? {
            -1 => Dim::Any,
            n if n > 0 => Dim::Fixed(n as u64),
            _ => return None,
        });
    }
    Some(shape)
}

/// The data type of a configuration's `data_type` name.
fn config_dtype(name: &str) -> Option<DataType> {
    match name.strip_prefix("TYPE_")? {
        "STRING" => Some(DataType::Bytes),
        other => DataType::from_kserve_name(other).filter(|d| *d != DataType::Bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_configuration_declares_the_tensors_with_the_batch_dimension_first() {
        let config = json!({
            "max_batch_size": 8,
            "input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": [4, -1]},
                      {"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}],
            "output": [{"name": "OUT", "data_type": "TYPE_INT64", "dims": [2],
                        "reshape": {"shape": []}}],
        });
        let meta = metadata(&config).unwrap();
        assert_eq!(meta.format, ModelFormat::Python);
        assert_eq!(meta.inputs[0].shape_string(), "[-1, 4, -1]");
        assert_eq!(meta.inputs[1].dtype, DataType::Bytes);
        assert_eq!(meta.outputs[0].dtype, DataType::I64);
        assert_eq!(meta.outputs[0].shape_string(), "[-1]");
        let unbatched = json!({"input": [{"name": "a", "data_type": "TYPE_UINT8", "dims": [3]}],
                               "output": [{"name": "b", "data_type": "TYPE_BOOL", "dims": [3]}]});
        assert_eq!(
            metadata(&unbatched).unwrap().inputs[0].shape_string(),
            "[3]"
        );
    }

    #[test]
    fn a_sequence_models_controls_and_state_are_its_tensors_too() {
        let config = json!({
            "max_batch_size": 4,
            "input": [{"name": "X", "data_type": "TYPE_INT32", "dims": [1]}],
            "output": [{"name": "Y", "data_type": "TYPE_INT32", "dims": [1]}],
            "sequence_batching": {
                "control_input": [
                    {"name": "START", "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1],
                                                    "fp32_false_true": [], "bool_false_true": [], "data_type": "TYPE_INVALID"}]},
                    {"name": "CORRID", "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "int32_false_true": [],
                                                     "fp32_false_true": [], "bool_false_true": [], "data_type": "TYPE_UINT64"}]},
                ],
                "state": [{"input_name": "S_IN", "output_name": "S_OUT", "data_type": "TYPE_FP32", "dims": [3]}],
            },
        });
        let meta = metadata(&config).unwrap();
        let inputs: Vec<String> = meta
            .inputs
            .iter()
            .map(|s| format!("{} {} {}", s.name, s.dtype.kserve_name(), s.shape_string()))
            .collect();
        assert_eq!(
            inputs,
            [
                "X INT32 [-1, 1]",
                "START INT32 [-1, 1]",
                "CORRID UINT64 [-1, 1]",
                "S_IN FP32 [-1, 3]"
            ]
        );
        let outputs: Vec<&str> = meta.outputs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(outputs, ["Y", "S_OUT"]);
    }

    #[test]
    fn what_the_configuration_lacks_is_named() {
        let cases = [
            (
                json!({"input": [{"name": "a", "data_type": "TYPE_FP32", "dims": [1]}]}),
                "list its outputs",
            ),
            (
                json!({"input": [{"name": "a", "data_type": "TYPE_BF16", "dims": [1]}],
                    "output": [{"name": "b", "data_type": "TYPE_FP32", "dims": [1]}]}),
                "data_type \"TYPE_BF16\"",
            ),
            (
                json!({"input": [{"name": "a", "data_type": "TYPE_FP32", "dims": []}],
                    "output": [{"name": "b", "data_type": "TYPE_FP32", "dims": [1]}]}),
                "input 'a' of the configuration: it has no dims",
            ),
            (
                json!({"input": [{"name": "a", "data_type": "TYPE_FP32", "dims": [0]}],
                    "output": [{"name": "b", "data_type": "TYPE_FP32", "dims": [1]}]}),
                "dims hold a size that is neither above 0 nor -1",
            ),
        ];
        for (config, needle) in cases {
            let e = metadata(&config).unwrap_err().to_string();
            assert!(e.contains(needle), "{config}: {e}");
        } // No inputs: a model may take none, as Triton loads one.
        let outputs_only =
            json!({"output": [{"name": "b", "data_type": "TYPE_FP32", "dims": [1]}]});
        assert!(metadata(&outputs_only).unwrap().inputs.is_empty());
    }

    #[test]
    fn instances_are_named_and_placed_as_triton_names_and_places_them() {
        let config = serde_json::json!({"instance_group": [
            {"count": 2, "kind": "KIND_CPU"},
            {"name": "named", "count": 1, "kind": "KIND_GPU", "gpus": [1]},
            {"kind": "KIND_AUTO"}
        ]});
        let seen: Vec<(String, &str, String)> = (0..5)
            .map(|i| {
                let at = instance(&config, "m", i);
                (at.name, at.kind, at.device_id)
            })
            .collect();
        let want = [
            ("m_0_0", "CPU", "0"),
            ("m_0_1", "CPU", "0"),
            ("named_0", "GPU", "1"),
            ("m_2_0", "CPU", "0"),
            ("m_0", "CPU", "0"),
        ];
        let want: Vec<(String, &str, String)> = want
            .iter()
            .map(|(n, k, d)| (n.to_string(), *k, d.to_string()))
            .collect();
        assert_eq!(seen, want);
        let plain = instance(&serde_json::json!({}), "m", 0);
        assert_eq!((plain.name.as_str(), plain.kind), ("m_0", "CPU"));
    }
}
