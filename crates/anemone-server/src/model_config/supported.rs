//! The subset of `inference.ModelConfig` anemone supports: every other field
//! that is set is refused by its path.

use prost_reflect::{DynamicMessage, Value};

use super::dtypes::core_dtype;
use super::Source;
use crate::proto::model_instance_group::Kind as GroupKind;
use crate::proto::DataType as ProtoType;

/// Platforms anemone accepts in `platform` (`ensemble`: see `ensemble.rs`).
const PLATFORMS: [&str; 4] = ["", "onnxruntime_onnx", "anemone", "ensemble"];

/// Backends anemone accepts in `backend`.
const BACKENDS: [&str; 5] = ["", "onnxruntime", "tract", "anemone", "python"];

/// Checks that a parsed `inference.ModelConfig` sets only fields anemone
/// supports, and that the supported ones hold values anemone can honour.
///
/// Only fields that are present (set to a non-default value, or a message
/// that is set at all) are looked at. Every refusal is collected, each
/// naming the field's path, so one run reports them all. Settings that
/// change nothing are accepted (see [`is_noop`]).
pub(super) fn check_supported_in(msg: &DynamicMessage, source: Source) -> Vec<String> {
    let src = source.label();
    let mut errs = Vec::new();
    // A Python model's fields pass for a config that names no backend,
    // platform or file: the model may be found to be Python by its
    // model.py (as Triton's auto-complete finds it); one that is not is
    // refused once its files say so ([`python_only_refusals`]).
    let named = |field: &str| {
        msg.get_field_by_name(field)
            .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    };
    // A backend anemone cannot run (Triton's "vllm") is refused on its own,
    // advising "python": the fields a Python model may set are not refused
    // beside it as well.
    let backend = msg.get_field_by_name("backend");
    let backend = backend
        .as_deref()
        .and_then(|b| b.as_str())
        .unwrap_or_default();
    let python = backend == "python"
        || !BACKENDS.contains(&backend)
        || !(named("backend") || named("platform") || named("default_model_filename"));
    let decoupled = msg
        .get_field_by_name("model_transaction_policy")
        .is_some_and(|p| {
            p.as_message()
                .and_then(|m| m.get_field_by_name("decoupled"))
                .is_some_and(|d| d.as_bool() == Some(true))
        });
    let cached = msg.get_field_by_name("response_cache").is_some_and(|c| {
        c.as_message()
            .and_then(|m| m.get_field_by_name("enable"))
            .is_some_and(|e| e.as_bool() == Some(true))
    });
    if decoupled && cached {
        errs.push(format!(
            "{src} field 'response_cache' is enabled on a decoupled model, whose many responses the \
             cache cannot hold (Triton refuses it too); disable the response cache"
        ));
    }
    let state = msg
        .get_field_by_name("sequence_batching")
        .is_some_and(|s| s.as_message().is_some_and(|m| m.has_field_by_name("state")));
    if decoupled && state {
        errs.push(format!(
            "{src} field 'sequence_batching.state' (implicit state) is not supported by anemone \
             on a decoupled model, whose state would come from a stream of responses; keep the \
             state in the model, keyed by the request's correlation_id()"
        ));
    }
    for (field, value) in msg.fields() {
        if let Err(e) = check_field(field.name(), value, src, python, &mut errs) {
            errs.push(e);
        }
    }
    errs
}

/// Checks one top-level field (of a Python model's config when `python`);
/// list fields push their entries' refusals into `errs` themselves.
fn check_field(
    name: &str,
    value: &Value,
    src: &str,
    python: bool,
    errs: &mut Vec<String>,
) -> Result<(), String> {
    match name {
        "name" | "parameters" | "version_policy" => {}
        "default_model_filename" => {
            let v = value.as_str().unwrap_or_default();
            if crate::repository::paths::plain_form(v).is_none() {
                return Err(format!(
                    "{src} field 'default_model_filename' is \"{v}\"; name a file inside the version directory, \
                     e.g. \"model.onnx\" (absolute paths and '..' are refused)"
                ));
            }
        }
        "platform" => {
            let v = value.as_str().unwrap_or_default();
            if !PLATFORMS.contains(&v) {
                return Err(format!(
                    "{src} field 'platform' is \"{v}\", which anemone cannot run: anemone runs ONNX models \
                     and ensembles of them; set platform: \"onnxruntime_onnx\" (or \"ensemble\") or remove 'platform'"
                ));
            }
        }
        "backend" => {
            let v = value.as_str().unwrap_or_default();
            if !BACKENDS.contains(&v) {
                return Err(format!(
                    "{src} field 'backend' is \"{v}\", which anemone cannot run: anemone runs ONNX models and \
                     Python models; set backend: \"onnxruntime\" (or \"python\") or remove 'backend' (pick \
                     anemone's backends with parameter 'backends')"
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
            &[
                "name",
                "data_type",
                "dims",
                "reshape",
                "optional",
                "format",
                "allow_ragged_batch",
            ],
            src,
            errs,
        ),
        "output" => check_tensors(
            value,
            "output",
            &["name", "data_type", "dims", "reshape", "label_filename"],
            src,
            errs,
        ),
        "instance_group" => check_instance_groups(value, src, python, errs),
        // Their values are checked when read, by `scheduling` and `sequence`.
        "dynamic_batching" | "sequence_batching" => {}
        // Triton's defaults, written out: they change nothing.
        "optimization" => check_optimization(value, src, errs),
        // Metric labels Triton does not use yet, and its latency
        // histograms' buckets: hints here ([`ignored_hints`]).
        "metric_tags" | "model_metrics" => {}
        "model_transaction_policy" if is_noop(value) => {}
        // A decoupled model.py sends its responses through its requests'
        // response senders (`crates/anemone-backends/src/python`).
        "model_transaction_policy" if python => {}
        // `enable` is its only field; read when the model's spec is built.
        "response_cache" => {}
        // Checked and built with the model's spec (`repository::warmup`).
        "model_warmup" => {}
        // Read, and checked, by `ensemble.rs`.
        "ensemble_scheduling" => {}
        // Ragged batching: read, and checked, by `ragged.rs`.
        "batch_input" | "batch_output" => {}
        // Triton's checksum agent: run before the load (`repository/checksum.rs`).
        "model_repository_agents" => {}
        "model_transaction_policy" => {
            return Err(unsupported(
                src,
                "model_transaction_policy.decoupled",
                top_level_hint(name),
            ))
        }
        other => return Err(unsupported(src, other, top_level_hint(other))),
    }
    Ok(())
}

/// Whether a value changes nothing: a message none of whose fields is set,
/// or whose set fields are all such messages (`optimization { graph { } }`,
/// `model_transaction_policy { decoupled: false }`).
fn is_noop(value: &Value) -> bool {
    value
        .as_message()
        .is_some_and(|m| m.fields().all(|(_, v)| is_noop(v)))
}

/// Triton's scheduling and GPU hints in `optimization` that anemone does
/// not use: the model's `priority` (Triton applies it to TensorRT models
/// only), `cuda` (TensorRT's CUDA graphs and streams), the input gather
/// kernel's threshold and `eager_batching`. They change no answer: a config
/// with them loads, and the load logs a warning naming them
/// ([`ignored_hints`]).
const HINTS: [&str; 4] = [
    "priority",
    "cuda",
    "gather_kernel_buffer_threshold",
    "eager_batching",
];

/// The Triton fields a config sets that change no answer and that anemone
/// does not use, for the load's warning: the `optimization` hints
/// (`priority`, `cuda`, `gather_kernel_buffer_threshold`,
/// `eager_batching`), `metric_tags`, `model_metrics` (Triton's latency
/// histogram buckets). An instance group's `rate_limiter` is used with
/// `--rate-limit execution_count` and ignored, as Triton ignores it, without.
pub fn ignored_hints(config: &crate::proto::ModelConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(o) = &config.optimization {
        let set = [
            o.priority != 0,
            o.cuda.as_ref().is_some_and(|c| *c != Default::default()),
            o.gather_kernel_buffer_threshold != 0,
            o.eager_batching,
        ];
        let names = HINTS.iter().zip(set).filter(|(_, set)| *set);
        out.extend(names.map(|(name, _)| format!("optimization.{name}")));
    }
    if !config.metric_tags.is_empty() {
        out.push("metric_tags".into());
    }
    if config.model_metrics.is_some() {
        out.push("model_metrics".into());
    }
    out
}

/// `optimization`: pinned memory (a GPU transfer detail, no effect on what
/// anemone computes), ONNX Runtime's level and providers, Triton's
/// [`HINTS`] and empty messages are accepted; anything else is refused by
/// its path.
fn check_optimization(value: &Value, src: &str, errs: &mut Vec<String>) {
    let Some(m) = value.as_message() else { return };
    for (field, v) in m.fields() {
        let name = field.name();
        // `graph { level }` is ONNX Runtime's optimization level (`ort_parameters`).
        // `execution_accelerators` are ONNX Runtime's providers (the same).
        let known = [
            "input_pinned_memory",
            "output_pinned_memory",
            "graph",
            "execution_accelerators",
        ];
        if known.contains(&name) || HINTS.contains(&name) || is_noop(v) {
            continue;
        }
        errs.push(unsupported(
            src,
            &format!("optimization.{name}"),
            top_level_hint("optimization"),
        ));
    }
}

/// The refusals of the fields only a Python model may set (a decoupled
/// transaction policy, `KIND_MODEL` groups), for a config that named no
/// backend and whose model turned out not to be Python.
pub fn python_only_refusals(config: &crate::proto::ModelConfig) -> Vec<String> {
    let src = "config.pbtxt";
    let mut errs = Vec::new();
    if config
        .model_transaction_policy
        .as_ref()
        .is_some_and(|p| p.decoupled)
    {
        errs.push(unsupported(
            src,
            "model_transaction_policy.decoupled",
            top_level_hint("model_transaction_policy"),
        ));
    }
    for (i, group) in config.instance_group.iter().enumerate() {
        if group.kind == GroupKind::Model as i32 {
            errs.push(format!(
                "{src} field 'instance_group[{i}].kind' is KIND_MODEL, which anemone supports for \
                 Python models only: use kind: KIND_AUTO, KIND_CPU or KIND_GPU, or remove 'kind'"
            ));
        }
    }
    errs
}

fn unsupported(src: &str, path: &str, hint: &str) -> String {
    format!("{src} field '{path}' is not supported by anemone yet; {hint}")
}

fn top_level_hint(field: &str) -> &'static str {
    match field {
        "optimization" => {
            "remove it (anemone picks execution providers through its backend list, see parameter 'backends')"
        }
        "cc_model_filenames" => "remove it and name the file with 'default_model_filename'",
        "runtime" => "remove it (anemone runs ONNX models with its own backends, see parameter 'backends')",
        "model_transaction_policy" => {
            "remove it or set decoupled: false (anemone runs decoupled models with backend: \"python\" \
             only: a model.py that sends its responses through request.get_response_sender())"
        }
        _ => "remove it",
    }
}

fn tensor_hint(field: &str) -> &'static str {
    match field {
        "is_shape_tensor" => "remove it (shape tensors are a TensorRT feature)",
        "is_non_linear_format_io" => "remove it (non-linear formats are a TensorRT feature)",
        "optional" => "remove it (only inputs can be optional)",
        _ => "remove it",
    }
}

/// Checks each entry of `input` or `output`, pushing every refusal.
/// (`format`, allowed for inputs, only documents the layout: it changes
/// nothing, so any value is accepted.)
fn check_tensors(value: &Value, list: &str, allowed: &[&str], src: &str, errs: &mut Vec<String>) {
    let Some(items) = value.as_list() else { return };
    for (i, item) in items.iter().enumerate() {
        let Some(m) = item.as_message() else { continue };
        for (field, v) in m.fields() {
            if let Err(e) =
                check_tensor_field(field.name(), v, &format!("{list}[{i}]"), allowed, src)
            {
                errs.push(e);
            }
        }
    }
}

/// Checks one field of an `input` or `output` entry (`at` is the entry's path).
fn check_tensor_field(
    name: &str,
    v: &Value,
    at: &str,
    allowed: &[&str],
    src: &str,
) -> Result<(), String> {
    let path = format!("{at}.{name}");
    if !allowed.contains(&name) {
        return Err(unsupported(src, &path, tensor_hint(name)));
    }
    match name {
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
    Ok(())
}

/// Checks each entry of `instance_group`, pushing every refusal.
fn check_instance_groups(value: &Value, src: &str, python: bool, errs: &mut Vec<String>) {
    let Some(items) = value.as_list() else { return };
    for (i, item) in items.iter().enumerate() {
        let Some(m) = item.as_message() else { continue };
        for (field, v) in m.fields() {
            let path = format!("instance_group[{i}].{}", field.name());
            if let Err(e) = check_group_field(field.name(), v, &path, src, python) {
                errs.push(e);
            }
        }
    }
}

/// Checks one field of an `instance_group` entry.
fn check_group_field(
    name: &str,
    v: &Value,
    path: &str,
    src: &str,
    python: bool,
) -> Result<(), String> {
    match name {
        // The rate limiter's settings (`--rate-limit execution_count`).
        "name" | "rate_limiter" => {}
        // A count under 1 (unset, 0, or negative) means one instance, as
        // Triton reads it (`resolve_instance_groups` shows it as 1).
        "count" => {}
        "kind" => {
            let n = v.as_enum_number().unwrap_or_default();
            let kind = GroupKind::try_from(n).ok();
            // KIND_MODEL: the model places itself, which a Python model
            // does (told "MODEL", as Triton tells it).
            let taken = matches!(
                kind,
                Some(GroupKind::Auto | GroupKind::Cpu | GroupKind::Gpu)
            ) || (python && kind == Some(GroupKind::Model));
            if !taken {
                let shown = kind
                    .map(|k| k.as_str_name().to_string())
                    .unwrap_or_else(|| n.to_string());
                return Err(format!(
                    "{src} field '{path}' is {shown}, which anemone does not support: anemone picks devices \
                     through its backend list, see parameter 'backends'; use kind: KIND_AUTO, KIND_CPU or KIND_GPU, or remove 'kind'"
                ));
            }
        }
        // Device 0 is the one GPU device anemone's GPU backend runs on (the
        // first that CUDA_VISIBLE_DEVICES leaves visible), so Triton's
        // common `gpus: [ 0 ]` loads; another device is chosen by the
        // environment, not the config.
        "gpus" => {
            let ids: Vec<i32> = (v.as_list().unwrap_or_default().iter())
                .map(|id| id.as_i32().unwrap_or(-1))
                .collect();
            if ids != [0] {
                return Err(format!(
                    "{src} field '{path}' is {ids:?}; anemone runs a model's GPU instances on the first visible GPU, \
                     so only gpus: [ 0 ] is accepted: to use another GPU, start the server with CUDA_VISIBLE_DEVICES \
                     set to it (CUDA_VISIBLE_DEVICES=1 makes GPU 1 device 0), or remove 'gpus'"
                ));
            }
        }
        "secondary_devices" => return Err(unsupported(
            src,
            path,
            "remove it (anemone picks devices through its backend list, see parameter 'backends')",
        )),
        "profile" => {
            return Err(unsupported(
                src,
                path,
                "remove it (TensorRT profiles do not apply to anemone)",
            ))
        }
        other => return Err(unsupported(src, path, tensor_hint(other))),
    }
    Ok(())
}

#[cfg(test)]
#[path = "supported_tests.rs"]
mod tests;
