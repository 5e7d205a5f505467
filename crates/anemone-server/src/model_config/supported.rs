//! The subset of `inference.ModelConfig` anemone supports: every other field
//! that is set is refused by its path.

use prost_reflect::{DynamicMessage, Value};

use super::dtypes::core_dtype;
use super::Source;
use crate::proto::model_instance_group::Kind as GroupKind;
use crate::proto::DataType as ProtoType;

/// Platforms anemone accepts in `platform`.
const PLATFORMS: [&str; 3] = ["", "onnxruntime_onnx", "anemone"];

/// Backends anemone accepts in `backend`.
const BACKENDS: [&str; 4] = ["", "onnxruntime", "tract", "anemone"];

/// Checks that a parsed `inference.ModelConfig` sets only fields anemone
/// supports, and that the supported ones hold values anemone can honour.
///
/// Only fields that are present (set to a non-default value, or a message
/// that is set at all) are looked at; each refusal names the field's path.
pub(super) fn check_supported_in(msg: &DynamicMessage, source: Source) -> Result<(), String> {
    let src = source.label();
    for (field, value) in msg.fields() {
        let name = field.name();
        match name {
            "name" | "default_model_filename" | "parameters" | "version_policy" => {}
            "platform" => {
                let v = value.as_str().unwrap_or_default();
                if !PLATFORMS.contains(&v) {
                    return Err(format!(
                        "{src} field 'platform' is \"{v}\", which anemone cannot run: anemone runs ONNX models; \
                         set platform: \"onnxruntime_onnx\" or remove 'platform'"
                    ));
                }
            }
            "backend" => {
                let v = value.as_str().unwrap_or_default();
                if !BACKENDS.contains(&v) {
                    return Err(format!(
                        "{src} field 'backend' is \"{v}\", which anemone cannot run: anemone runs ONNX models; \
                         set backend: \"onnxruntime\" or remove 'backend' (pick anemone's backends with parameter 'backends')"
                    ));
                }
            }
            "max_batch_size" => {
                let v = value.as_i32().unwrap_or_default();
                if v < 0 {
                    return Err(format!(
                        "{src} field 'max_batch_size' is {v}; set it to 0 (no batch dimension) or a positive batch size"
                    ));
                }
            }
            "input" => check_tensors(
                value,
                "input",
                &["name", "data_type", "dims", "optional"],
                src,
            )?,
            "output" => check_tensors(value, "output", &["name", "data_type", "dims"], src)?,
            "instance_group" => check_instance_groups(value, src)?,
            other => return Err(unsupported(src, other, top_level_hint(other))),
        }
    }
    Ok(())
}

fn unsupported(src: &str, path: &str, hint: &str) -> String {
    format!("{src} field '{path}' is not supported by anemone yet; {hint}")
}

fn top_level_hint(field: &str) -> &'static str {
    match field {
        "dynamic_batching" => "remove it (anemone runs each request as it comes)",
        "sequence_batching" => "remove it (stateful sequence models are not supported yet)",
        "ensemble_scheduling" => "remove it: ensembles are not supported yet",
        "model_warmup" => "remove it (anemone does not run warm-up requests yet)",
        "optimization" => {
            "remove it (anemone picks execution providers through its backend list, see parameter 'backends')"
        }
        "response_cache" => "remove it (anemone does not cache responses)",
        "batch_input" | "batch_output" => {
            "remove it (ragged batching needs dynamic batching, which anemone does not do)"
        }
        "cc_model_filenames" => "remove it and name the file with 'default_model_filename'",
        "runtime" => "remove it (anemone runs ONNX models with its own backends, see parameter 'backends')",
        "model_transaction_policy" => "remove it (decoupled models are not supported yet)",
        _ => "remove it",
    }
}

fn tensor_hint(field: &str) -> &'static str {
    match field {
        "reshape" => "remove it and give 'dims' as the model declares them",
        "format" => "remove it (anemone passes tensors in the layout the model declares)",
        "is_shape_tensor" => "remove it (shape tensors are a TensorRT feature)",
        "allow_ragged_batch" => {
            "remove it (ragged batching needs dynamic batching, which anemone does not do)"
        }
        "is_non_linear_format_io" => "remove it (non-linear formats are a TensorRT feature)",
        "label_filename" => "remove it (classification labels are not supported yet)",
        "optional" => "remove it (only inputs can be optional)",
        _ => "remove it",
    }
}

/// Checks each entry of `input` or `output`.
fn check_tensors(value: &Value, list: &str, allowed: &[&str], src: &str) -> Result<(), String> {
    let Some(items) = value.as_list() else {
        return Ok(());
    };
    for (i, item) in items.iter().enumerate() {
        let Some(m) = item.as_message() else { continue };
        for (field, v) in m.fields() {
            let path = format!("{list}[{i}].{}", field.name());
            if !allowed.contains(&field.name()) {
                return Err(unsupported(src, &path, tensor_hint(field.name())));
            }
            match field.name() {
                "data_type" => {
                    let n = v.as_enum_number().unwrap_or_default();
                    let known = ProtoType::try_from(n).ok();
                    if known.and_then(core_dtype).is_none() {
                        let shown = known
                            .map(|t| t.as_str_name().to_string())
                            .unwrap_or_else(|| n.to_string());
                        return Err(format!(
                            "{src} field '{path}' is {shown}, which anemone does not support; use one of \
                             TYPE_BOOL, TYPE_UINT8..TYPE_UINT64, TYPE_INT8..TYPE_INT64, TYPE_FP16, TYPE_FP32, TYPE_FP64, TYPE_STRING"
                        ));
                    }
                }
                "dims" => {
                    for (d, dv) in v.as_list().unwrap_or_default().iter().enumerate() {
                        let n = dv.as_i64().unwrap_or_default();
                        if n < 1 && n != -1 {
                            return Err(format!(
                                "{src} field '{path}' has {n} at position {d}; each dim must be a positive size, \
                                 or -1 for a variable size"
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Checks each entry of `instance_group`.
fn check_instance_groups(value: &Value, src: &str) -> Result<(), String> {
    let Some(items) = value.as_list() else {
        return Ok(());
    };
    for (i, item) in items.iter().enumerate() {
        let Some(m) = item.as_message() else { continue };
        for (field, v) in m.fields() {
            let path = format!("instance_group[{i}].{}", field.name());
            match field.name() {
                "name" => {}
                "count" => {
                    let n = v.as_i32().unwrap_or_default();
                    if n < 0 {
                        return Err(format!("{src} field '{path}' is {n}; set a positive instance count"));
                    }
                }
                "kind" => {
                    let n = v.as_enum_number().unwrap_or_default();
                    let kind = GroupKind::try_from(n).ok();
                    if !matches!(kind, Some(GroupKind::Auto | GroupKind::Cpu)) {
                        let shown = kind.map(|k| k.as_str_name().to_string()).unwrap_or_else(|| n.to_string());
                        return Err(format!(
                            "{src} field '{path}' is {shown}, which anemone does not support: anemone picks devices \
                             through its backend list, see parameter 'backends'; use kind: KIND_CPU or KIND_AUTO, or remove 'kind'"
                        ));
                    }
                }
                "gpus" | "secondary_devices" => {
                    return Err(unsupported(
                        src,
                        &path,
                        "remove it (anemone picks devices through its backend list, see parameter 'backends')",
                    ))
                }
                "profile" => {
                    return Err(unsupported(src, &path, "remove it (TensorRT profiles do not apply to anemone)"))
                }
                other => return Err(unsupported(src, &path, tensor_hint(other))),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::model_config::fixtures::*;

    #[test]
    fn refuses_unsupported_fields_by_path() {
        let cases: &[(&str, &str)] = &[
            ("dynamic_batching { max_queue_delay_microseconds: 100 }", "'dynamic_batching'"),
            ("dynamic_batching { }", "anemone runs each request as it comes"),
            ("sequence_batching { }", "'sequence_batching'"),
            (
                "platform: \"ensemble\"\nensemble_scheduling { step [ { model_name: \"a\" model_version: -1 } ] }",
                "'platform'",
            ),
            (
                "ensemble_scheduling { step [ { model_name: \"a\" model_version: -1 } ] }",
                "ensembles are not supported yet",
            ),
            ("model_warmup [ { name: \"w\" batch_size: 1 } ]", "'model_warmup'"),
            ("optimization { graph { level: 1 } }", "'optimization'"),
            ("response_cache { enable: true }", "'response_cache'"),
            (
                "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 2, 2 ] } } ]",
                "'input[0].reshape'",
            ),
            ("input [ { name: \"x\" }, { name: \"y\" format: FORMAT_NCHW } ]", "'input[1].format'"),
            ("input [ { name: \"x\" is_shape_tensor: true } ]", "'input[0].is_shape_tensor'"),
            ("input [ { name: \"x\" allow_ragged_batch: true } ]", "'input[0].allow_ragged_batch'"),
            ("output [ { name: \"y\" label_filename: \"labels.txt\" } ]", "'output[0].label_filename'"),
            ("output [ { name: \"y\" optional: true } ]", "field 'optional' not found"),
            ("input [ { name: \"x\" data_type: TYPE_BF16 } ]", "'input[0].data_type' is TYPE_BF16"),
            ("input [ { name: \"x\" dims: [ 3, 0 ] } ]", "'input[0].dims' has 0"),
            ("instance_group [ { kind: KIND_GPU } ]", "'instance_group[0].kind' is KIND_GPU"),
            ("instance_group [ { kind: KIND_MODEL } ]", "parameter 'backends'"),
            ("instance_group [ { count: 1 gpus: [ 0 ] } ]", "'instance_group[0].gpus'"),
            ("instance_group [ { profile: \"0\" } ]", "'instance_group[0].profile'"),
            ("instance_group [ { count: -1 } ]", "'instance_group[0].count'"),
            ("platform: \"tensorflow_savedmodel\"", "anemone runs ONNX models"),
            ("backend: \"python\"", "\"python\""),
            ("max_batch_size: -1", "'max_batch_size'"),
            ("runtime: \"model.py\"", "'runtime'"),
            (
                "parameters { key: \"foo\" value: { string_value: \"1\" } }",
                "unknown parameter 'foo'; anemone reads: backends, strict, threads, max_concurrency",
            ),
            ("parameters { key: \"threads\" value: { string_value: \"zero\" } }", "parameter 'threads'"),
        ];
        for (text, needle) in cases {
            let e = err_pbtxt(text);
            assert!(
                e.contains(needle),
                "config {text:?}: message {e:?} lacks {needle:?}"
            );
        }
        let e = err_pbtxt("instance_group [ { kind: KIND_GPU } ]");
        assert!(
            e.contains("anemone picks devices through its backend list"),
            "{e}"
        );
        let e = err_pbtxt("dynamic_batching { }");
        assert!(
            e.starts_with(
                "config.pbtxt field 'dynamic_batching' is not supported by anemone yet; remove it"
            ),
            "{e}"
        );
    }
}
