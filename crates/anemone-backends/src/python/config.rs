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

/// The metadata a configuration declares: each input and output with its
/// data type and dims (a batch dimension first when `max_batch_size > 0`;
/// a `reshape` gives the shape the model sees).
pub fn metadata(config: &Value) -> Result<ModelMetadata> {
    let batched = config["max_batch_size"].as_i64().unwrap_or(0) > 0;
    let list = |role: &str| -> Result<Vec<TensorSpec>> {
        let entries = config[role]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if entries.is_empty() {
            return Err(Error::Config(format!(
                "a Python model's config.pbtxt must list its {role}s with name, data_type and dims \
                 (anemone does not call auto_complete_config)"
            )));
        }
        entries
            .iter()
            .map(|entry| spec(role, entry, batched))
            .collect()
    };
    let inputs = list("input")?;
    let outputs = list("output")?;
    Ok(ModelMetadata::new(ModelFormat::Python, inputs, outputs))
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
    let mut shape = Vec::with_capacity(dims.len() + 1);
    if batched {
        shape.push(Dim::Any);
    }
    for d in dims {
        shape.push(match d.as_i64() {
            Some(-1) => Dim::Any,
            Some(n) if n > 0 => Dim::Fixed(n as u64),
            _ => return Err(bad(format!("dims hold {d}; give sizes above 0, or -1"))),
        });
    }
    Ok(TensorSpec::new(name, dtype, shape))
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
    fn what_the_configuration_lacks_is_named() {
        let cases = [
            (
                json!({"output": [{"name": "b", "data_type": "TYPE_FP32", "dims": [1]}]}),
                "list its inputs",
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
                "dims hold 0",
            ),
        ];
        for (config, needle) in cases {
            let e = metadata(&config).unwrap_err().to_string();
            assert!(e.contains(needle), "{config}: {e}");
        }
    }
}
