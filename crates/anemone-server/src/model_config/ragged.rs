//! Triton's ragged batching fields of a config (an input's
//! `allow_ragged_batch`, `batch_input`, `batch_output`) as the runtime's
//! [`Ragged`] settings, checked as Triton checks them (`ValidateBatchIO` in
//! its `model_config_utils.cc`; its ONNX Runtime backend for the rest).

use crate::proto::batch_input::Kind as InputKind;
use crate::proto::batch_output::Kind as OutputKind;
use crate::proto::{DataType as ProtoType, ModelConfig};
use anemone_core::DataType;
use anemone_runtime::{BatchInput, BatchInputKind, BatchOutput, Ragged};

/// The config's ragged batching settings (empty when it has none). A
/// Python model gets each request's own tensors, so its inputs may be
/// ragged (requests of different shapes share an `execute`) but batch
/// inputs and outputs, which describe a joined batch, are refused there.
pub fn ragged(config: &ModelConfig, python: bool) -> Result<Ragged, String> {
    let inputs: Vec<String> = (config.input.iter())
        .filter(|i| i.allow_ragged_batch)
        .map(|i| i.name.clone())
        .collect();
    if inputs.is_empty() && config.batch_input.is_empty() && config.batch_output.is_empty() {
        return Ok(Ragged::default());
    }
    if config.max_batch_size <= 0 {
        return Err(
            "ragged batching (allow_ragged_batch, batch_input, batch_output) needs a batch dimension: \
             set max_batch_size (and dynamic_batching to batch requests of different shapes)"
                .into(),
        );
    }
    if let Some(optional) = config
        .input
        .iter()
        .find(|i| i.allow_ragged_batch && i.optional)
    {
        return Err(format!(
            "input '{}' is both optional and allow_ragged_batch; a ragged input cannot be optional \
             (as Triton's ONNX Runtime backend refuses it): drop one of them",
            optional.name
        ));
    }
    if python && !(config.batch_input.is_empty() && config.batch_output.is_empty()) {
        return Err(
            "batch_input and batch_output describe a batch joined into one tensor, and a Python model \
             gets each request's own tensors (with allow_ragged_batch, requests of different shapes \
             share an execute): read each request's shapes in execute, and remove them"
                .into(),
        );
    }
    let input_names = || config.input.iter().map(|i| i.name.as_str());
    let source = |sources: &[String], what: &str| -> Result<String, String> {
        let [source] = sources else {
            return Err(format!(
                "{what} expects 1 source input, got {} (as in Triton)",
                sources.len()
            ));
        };
        match input_names().any(|n| n == source) {
            true => Ok(source.clone()),
            false => Err(format!(
                "{what} has source input '{source}', which is not an input of the config ({}); name one of them",
                input_names().collect::<Vec<_>>().join(", ")
            )),
        }
    };
    let mut batch_inputs = Vec::with_capacity(config.batch_input.len());
    for (i, b) in config.batch_input.iter().enumerate() {
        let kind = InputKind::try_from(b.kind)
            .map_err(|_| format!("batch_input[{i}] has an unknown kind {}", b.kind))?;
        let what = format!("batch_input[{i}] (kind {})", kind.as_str_name());
        let dtype = match ProtoType::try_from(b.data_type) {
            Ok(ProtoType::TypeFp32) => DataType::F32,
            Ok(ProtoType::TypeInt32) => DataType::I32,
            _ => {
                return Err(format!(
                "{what}: data_type must be TYPE_INT32 or TYPE_FP32 (as in Triton); set one of them"
            ))
            }
        };
        if b.target_name.is_empty() || b.target_name.iter().any(String::is_empty) {
            return Err(format!(
                "{what} has no target_name; name the model input it fills"
            ));
        }
        if let Some(listed) = b
            .target_name
            .iter()
            .find(|t| input_names().any(|n| n == t.as_str()))
        {
            return Err(format!(
                "{what}: target '{listed}' is also in the config's 'input' list; the server makes it for \
                 each batch, so requests do not send it: remove it from 'input'"
            ));
        }
        batch_inputs.push(BatchInput {
            kind: match kind {
                InputKind::BatchElementCount => BatchInputKind::ElementCount,
                InputKind::BatchAccumulatedElementCount => BatchInputKind::AccumulatedElementCount,
                InputKind::BatchAccumulatedElementCountWithZero => {
                    BatchInputKind::AccumulatedElementCountWithZero
                }
                InputKind::BatchMaxElementCountAsShape => BatchInputKind::MaxElementCountAsShape,
                InputKind::BatchItemShape => BatchInputKind::ItemShape,
                InputKind::BatchItemShapeFlatten => BatchInputKind::ItemShapeFlatten,
            },
            targets: b.target_name.clone(),
            dtype,
            source: source(&b.source_input, &what)?,
        });
    }
    let mut batch_outputs = Vec::with_capacity(config.batch_output.len());
    for (i, b) in config.batch_output.iter().enumerate() {
        let what = format!("batch_output[{i}]");
        OutputKind::try_from(b.kind)
            .map_err(|_| format!("{what} has an unknown kind {}", b.kind))?;
        let source = source(&b.source_input, &what)?;
        let Some(first) = b.target_name.first() else {
            return Err(format!(
                "{what} has no target_name; name the output it cuts"
            ));
        };
        // Triton's backends take the first target's dims (its reshape's when
        // it has one), after the batch dimension.
        let Some(output) = config.output.iter().find(|o| &o.name == first) else {
            return Err(format!(
                "{what}: target '{first}' is not an output of the config; name one of its outputs"
            ));
        };
        let dims = output.reshape.as_ref().map_or(&output.dims, |r| &r.shape);
        batch_outputs.push(BatchOutput {
            targets: b.target_name.clone(),
            source,
            dims: std::iter::once(-1).chain(dims.iter().copied()).collect(),
        });
    }
    Ok(Ragged {
        inputs,
        batch_inputs,
        batch_outputs,
    })
}

/// The model inputs a config's batch inputs fill (requests never send them).
pub fn batch_input_targets(config: &ModelConfig) -> impl Iterator<Item = &str> {
    (config.batch_input.iter()).flat_map(|b| b.target_name.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ModelConfig {
        crate::model_config::parse_pbtxt(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    const RAGGED: &str = "max_batch_size: 16 input [ { name: \"INPUT\" data_type: TYPE_FP32 dims: [ -1 ] \
                          allow_ragged_batch: true } ] output [ { name: \"OUT\" data_type: TYPE_FP32 dims: [ -1 ] } ] ";

    #[test]
    fn tritons_guide_example_becomes_ragged_settings() {
        let c = parse(&format!(
            "{RAGGED} batch_input [ {{ kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: \"INDEX\" \
             data_type: TYPE_FP32 source_input: \"INPUT\" }} ] batch_output [ {{ target_name: \"OUT\" \
             kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: \"INPUT\" }} ]"
        ));
        let r = ragged(&c, false).unwrap();
        assert_eq!(r.inputs, ["INPUT"]);
        assert_eq!(
            r.batch_inputs[0].kind,
            BatchInputKind::AccumulatedElementCount
        );
        assert_eq!(r.batch_inputs[0].dtype, DataType::F32);
        assert_eq!(r.batch_outputs[0].dims, [-1, -1]);
        assert!(ragged(&parse("max_batch_size: 4"), false).unwrap() == Ragged::default());
    }

    #[test]
    fn ragged_settings_that_cannot_work_are_refused_saying_what_to_change() {
        let bi = |body: &str| format!("{RAGGED} batch_input [ {{ {body} }} ]");
        for (text, want) in [
            (RAGGED.replace("max_batch_size: 16", ""), "needs a batch dimension".to_string()),
            (RAGGED.replace("allow_ragged_batch: true", "allow_ragged_batch: true optional: true"), "optional".into()),
            (bi("kind: BATCH_ELEMENT_COUNT target_name: \"B\" data_type: TYPE_INT64 source_input: \"INPUT\""), "TYPE_INT32 or TYPE_FP32".into()),
            (bi("kind: BATCH_ELEMENT_COUNT target_name: \"B\" data_type: TYPE_INT32"), "expects 1 source input, got 0".into()),
            (bi("kind: BATCH_ELEMENT_COUNT target_name: \"B\" data_type: TYPE_INT32 source_input: \"X\""), "source input 'X'".into()),
            (bi("kind: BATCH_ELEMENT_COUNT target_name: \"INPUT\" data_type: TYPE_INT32 source_input: \"INPUT\""), "remove it from 'input'".into()),
            (format!("{RAGGED} batch_output [ {{ target_name: \"NOPE\" source_input: \"INPUT\" }} ]"), "not an output".into()),
        ] {
            let e = ragged(&parse(&text), false).unwrap_err();
            assert!(e.contains(&want), "{text}: {e}");
        }
        let python = bi("kind: BATCH_ELEMENT_COUNT target_name: \"B\" data_type: TYPE_INT32 source_input: \"INPUT\"");
        assert!(ragged(&parse(&python), true)
            .unwrap_err()
            .contains("Python model"));
        assert_eq!(ragged(&parse(RAGGED), true).unwrap().inputs, ["INPUT"]);
    }
}
