//! Triton-style model configuration: `config.pbtxt` and its JSON form.
//!
//! A model directory in the repository may hold a `config.pbtxt`, Triton's
//! `inference.ModelConfig` message in protobuf text format. The same message
//! travels as JSON in `POST /v2/repository/models/{m}/load` (parameter
//! `config`) and comes back from `GET /v2/models/{m}/config`.
//!
//! anemone reads a subset of ModelConfig: `name`, `platform`, `backend`,
//! `max_batch_size`, `input`/`output` (`name`, `data_type`, `dims`, and
//! `optional` for inputs), `version_policy`, `instance_group` (`name`,
//! `count`, `kind` KIND_AUTO or KIND_CPU), `parameters` and
//! `default_model_filename`. Every other field that is set is refused with a
//! message naming its path: nothing is ignored silently.
//!
//! anemone's own per-model settings live in `parameters` (see [`settings`]).
//! What the config leaves out is filled in from the model file by
//! [`complete`]. The parsers use prost-reflect's real protobuf text-format and
//! JSON implementations over the descriptors that `build.rs` compiles from
//! `proto/model_config.proto`, so the accepted syntax is protobuf's own.

use std::collections::HashSet;
use std::sync::OnceLock;

use anemone_core::{DataType as CoreType, Dim, ModelFormat, ModelMetadata, TensorSpec};
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions, Value,
};

use crate::proto::model_instance_group::Kind as GroupKind;
use crate::proto::model_version_policy::{Latest, PolicyChoice};
use crate::proto::{
    DataType as ProtoType, ModelConfig, ModelInput, ModelOutput, ModelVersionPolicy,
};

/// Full protobuf name of the configuration message.
const CONFIG_MESSAGE: &str = "inference.ModelConfig";

/// The `parameters` keys anemone reads, in the order error messages list them.
pub const PARAMETER_KEYS: [&str; 4] = ["backends", "strict", "threads", "max_concurrency"];

/// Platforms anemone accepts in `platform`.
const PLATFORMS: [&str; 3] = ["", "onnxruntime_onnx", "anemone"];

/// Backends anemone accepts in `backend`.
const BACKENDS: [&str; 4] = ["", "onnxruntime", "tract", "anemone"];

/// Where a configuration came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A `config.pbtxt` file.
    Pbtxt,
    /// The JSON form (load request or API).
    Json,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Pbtxt => "config.pbtxt",
            Source::Json => "model config JSON",
        }
    }
}

/// The descriptor pool of `proto/*.proto`, decoded once.
fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(
            include_bytes!(concat!(env!("OUT_DIR"), "/inference_descriptor.bin")).as_ref(),
        )
        .map_err(|e| {
            format!("the built-in protobuf descriptors are damaged ({e}); rebuild anemone-server")
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The descriptor of `inference.ModelConfig`.
fn config_descriptor() -> Result<MessageDescriptor, String> {
    pool()?.get_message_by_name(CONFIG_MESSAGE).ok_or_else(|| {
        format!("the built-in protobuf descriptors lack '{CONFIG_MESSAGE}'; rebuild anemone-server with proto/model_config.proto")
    })
}

/// Parses Triton's `config.pbtxt` (protobuf text format) into a [`ModelConfig`].
///
/// The text is parsed with prost-reflect's text-format parser against the
/// `inference.ModelConfig` descriptor, so field names, enum names (e.g.
/// `TYPE_FP32`, `KIND_CPU`), comments (`#`), lists (`dims: [ 3, 224 ]`,
/// `input [ { ... } ]`) and map entries (`parameters { key: "k" value: {
/// string_value: "v" } }`) follow protobuf's rules. Syntax errors carry the
/// line and column. The parsed message is then checked against the subset
/// anemone supports (fields outside it are refused by path, e.g.
/// `'input[0].reshape'`) and its `parameters` are validated by [`settings`].
pub fn parse_pbtxt(text: &str) -> Result<ModelConfig, String> {
    let desc = config_descriptor()?;
    let (fixed, inserted) = add_list_colons(text);
    let msg = DynamicMessage::parse_text_format(desc, &fixed)
        .map_err(|e| text_format_error(text, &inserted, &e))?;
    check_supported_in(&msg, Source::Pbtxt)?;
    finish(&msg, Source::Pbtxt)
}

/// Parses the JSON form of a [`ModelConfig`], as Triton sends it in
/// `POST /v2/repository/models/{m}/load` (`{"parameters": {"config": "<json>"}}`).
///
/// Follows protobuf's JSON mapping: fields by proto name (`max_batch_size`)
/// or JSON name (`maxBatchSize`), 64-bit integers as numbers or strings
/// (`"dims": [3, 224]` or `["3", "224"]`), enums by name or number, `null`
/// for a default. Like Triton, enum names are also accepted in any letter
/// case (`"type_fp32"`). Unknown fields are refused. The result is checked
/// like [`parse_pbtxt`]'s.
pub fn parse_json(text: &str) -> Result<ModelConfig, String> {
    let desc = config_descriptor()?;
    let msg = match deserialize_json(desc.clone(), text) {
        Ok(msg) => msg,
        Err(first) => {
            // Triton parses enum names case-insensitively; prost-reflect does
            // not. Retry with enum names normalised; on failure keep the first
            // error, which carries the line and column.
            let mut value: serde_json::Value =
                serde_json::from_str(text).map_err(|_| first.clone())?;
            normalize_enums(&desc, &mut value);
            DynamicMessage::deserialize(desc, value).map_err(|_| first)?
        }
    };
    check_supported_in(&msg, Source::Json)?;
    finish(&msg, Source::Json)
}

/// Deserializes JSON text straight from the string, so errors keep positions.
fn deserialize_json(desc: MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let msg = DynamicMessage::deserialize(desc, &mut de).map_err(|e| json_error(&e))?;
    de.end().map_err(|e| json_error(&e))?;
    Ok(msg)
}

fn json_error(e: &serde_json::Error) -> String {
    format!(
        "model config JSON is not a valid inference.ModelConfig: {e}; fix it to follow Triton's model_config.proto \
         (field names like \"max_batch_size\", enums like \"TYPE_FP32\")"
    )
}

/// Rewrites enum names that match only case-insensitively to their exact
/// spelling, guided by the descriptor.
fn normalize_enums(desc: &MessageDescriptor, value: &mut serde_json::Value) {
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (key, v) in map.iter_mut() {
        let Some(field) = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key))
        else {
            continue;
        };
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let value_kind = entry.map_entry_value_field().kind();
            if let serde_json::Value::Object(m) = v {
                for x in m.values_mut() {
                    normalize_value(&value_kind, x);
                }
            }
        } else if field.is_list() {
            if let serde_json::Value::Array(a) = v {
                let kind = field.kind();
                for x in a {
                    normalize_value(&kind, x);
                }
            }
        } else {
            normalize_value(&field.kind(), v);
        }
    }
}

fn normalize_value(kind: &Kind, v: &mut serde_json::Value) {
    match kind {
        Kind::Enum(e) => {
            if let serde_json::Value::String(s) = v {
                if e.get_value_by_name(s).is_none() {
                    if let Some(ev) = e.values().find(|x| x.name().eq_ignore_ascii_case(s)) {
                        *s = ev.name().to_owned();
                    }
                }
            }
        }
        Kind::Message(m) => normalize_enums(m, v),
        _ => {}
    }
}

/// Inserts the optional `:` between a field name and a `[` list, which
/// prost-reflect's parser requires but protobuf's grammar (and Triton's
/// configs, `input [ { ... } ]`) leave out. Strings and `#` comments are
/// left alone. Returns the new text and the original byte offsets at which a
/// `:` was inserted, in order.
fn add_list_colons(text: &str) -> (String, Vec<usize>) {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut inserted = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    let skip_comment = |mut j: usize| {
        while j < b.len() && b[j] != b'\n' {
            j += 1;
        }
        j
    };
    while i < b.len() {
        match b[i] {
            b'#' => i = skip_comment(i),
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let end = i;
                let mut j = i;
                loop {
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < b.len() && b[j] == b'#' {
                        j = skip_comment(j);
                    } else {
                        break;
                    }
                }
                if j < b.len() && b[j] == b'[' {
                    out.push_str(&text[copied..end]);
                    out.push(':');
                    copied = end;
                    inserted.push(end);
                }
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    (out, inserted)
}

/// Turns a text-format parse error into a message with line and column.
///
/// prost-reflect's `ParseError` shows its location only through the optional
/// `miette` feature; its `Debug` form does carry the byte span
/// (`span: 12..15`), which is used here. `inserted` are the offsets where
/// [`add_list_colons`] added a `:`; positions are mapped back past them.
fn text_format_error(
    text: &str,
    inserted: &[usize],
    err: &prost_reflect::text_format::ParseError,
) -> String {
    let debug = format!("{err:?}");
    let offset = if debug.contains("UnexpectedEof") {
        Some(text.len())
    } else {
        span_start(&debug).map(|n| {
            let shift = inserted
                .iter()
                .enumerate()
                .filter(|&(k, &p)| p + k < n)
                .count();
            n - shift
        })
    };
    let place = match offset {
        Some(off) => {
            let (line, col) = line_col(text, off);
            format!("config.pbtxt line {line}, column {col}")
        }
        None => "config.pbtxt".to_string(),
    };
    format!(
        "{place}: {err}; fix the protobuf text format (fields and enums as in Triton's model_config.proto, \
         e.g. `max_batch_size: 8`, `dims: [ 3, 224, 224 ]`, `data_type: TYPE_FP32`)"
    )
}

/// The start of the last `span: A..B` in a `Debug` string.
fn span_start(debug: &str) -> Option<usize> {
    let at = debug.rfind("span: ")?;
    let rest = debug.get(at + "span: ".len()..)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let (mut line, mut col) = (1, 1);
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Transcodes a checked dynamic message into the prost type and validates
/// its `parameters`.
fn finish(msg: &DynamicMessage, source: Source) -> Result<ModelConfig, String> {
    let bytes = prost::Message::encode_to_vec(msg);
    let config = <ModelConfig as prost::Message>::decode(bytes.as_slice()).map_err(|e| {
        format!(
            "{}: could not convert the parsed config ({e}); report this as an anemone bug",
            source.label()
        )
    })?;
    settings(&config).map_err(|e| format!("{} 'parameters': {e}", source.label()))?;
    Ok(config)
}

/// Checks that a parsed `inference.ModelConfig` sets only fields anemone
/// supports, as `config.pbtxt` (see [`check_supported_in`]).
#[allow(dead_code)]
fn check_supported(msg: &DynamicMessage) -> Result<(), String> {
    check_supported_in(msg, Source::Pbtxt)
}

/// Checks that a parsed `inference.ModelConfig` sets only fields anemone
/// supports, and that the supported ones hold values anemone can honour.
///
/// Only fields that are present (set to a non-default value, or a message
/// that is set at all) are looked at; each refusal names the field's path.
fn check_supported_in(msg: &DynamicMessage, source: Source) -> Result<(), String> {
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

/// anemone's own per-model settings, read from the config's `parameters`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Backend names in order of preference (parameter `backends`, comma-separated).
    pub backends: Option<Vec<String>>,
    /// Threads per inference (parameter `threads`).
    pub threads: Option<usize>,
    /// Requests run at once for this model (parameter `max_concurrency`).
    pub max_concurrency: Option<usize>,
    /// Strict mode (parameter `strict`, `true` or `false`): the first backend or none.
    pub strict: Option<bool>,
    /// Backend-specific settings: parameters whose key starts with a backend
    /// name and a dot, e.g. `coreml.compute_units`.
    pub backend_settings: Vec<(String, String)>,
}

/// Reads anemone's settings from `parameters` entries (their `string_value`).
///
/// - `backends`: comma-separated backend names, e.g. `"tract-cpu,ort-cpu"`;
///   each name is trimmed and must be non-empty.
/// - `backends` may be `auto`: time a warm-up on every candidate, keep the fastest;
/// - `strict`: `true` or `false`;
/// - `threads`, `max_concurrency`: positive integers;
/// - `<backend>.<key>` (e.g. `coreml.compute_units`, `onnxruntime.coreml.compute_units`):
///   passed to that backend, which checks the value when it loads the model.
///
/// Any other key is refused, so a misspelt setting is never ignored.
pub fn settings(config: &ModelConfig) -> Result<Settings, String> {
    let mut entries: Vec<(&String, &str)> = config
        .parameters
        .iter()
        .map(|(k, v)| (k, v.string_value.as_str()))
        .collect();
    entries.sort();
    let mut out = Settings::default();
    // Triton's instance count: for ONNX Runtime, that many sessions per model
    // (an explicit `onnxruntime.sessions` parameter wins).
    let instances: i32 = config.instance_group.iter().map(|g| g.count.max(1)).sum();
    if instances > 1 {
        out.backend_settings
            .push(("onnxruntime.sessions".into(), instances.to_string()));
    }
    for (key, value) in entries {
        match key.as_str() {
            "backends" => {
                let names: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
                if names.iter().any(String::is_empty) {
                    return Err(format!(
                        "parameter 'backends' is \"{value}\"; list backend names separated by commas, \
                         e.g. parameters {{ key: \"backends\" value: {{ string_value: \"tract-cpu\" }} }}"
                    ));
                }
                out.backends = Some(names);
            }
            "threads" => out.threads = Some(positive(key, value)?),
            "max_concurrency" => out.max_concurrency = Some(positive(key, value)?),
            "strict" => {
                out.strict = Some(match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(format!(
                            "parameter 'strict' is \"{value}\"; set \"true\" (the first backend of the list or \
                             none, no fallback) or \"false\""
                        ))
                    }
                })
            }
            dotted if backend_setting_prefix(dotted).is_some() => {
                out.backend_settings.push((dotted.to_string(), value.trim().to_string()));
            }
            other => {
                let hint = if other == "intra_op_thread_count" {
                    "use 'threads' instead"
                } else {
                    "remove it or fix its spelling"
                };
                return Err(format!(
                    "unknown parameter '{other}'; anemone reads: {}, and <backend>.<setting> keys \
                     (e.g. coreml.compute_units); {hint}",
                    PARAMETER_KEYS.join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// The backend a dotted parameter key belongs to, if its prefix names one.
fn backend_setting_prefix(key: &str) -> Option<&'static str> {
    let (prefix, rest) = key.split_once('.')?;
    if rest.is_empty() {
        return None;
    }
    anemone_runtime::selection::KNOWN_BACKENDS
        .iter()
        .map(|(name, _)| *name)
        .find(|name| *name == prefix)
}

fn positive(key: &str, value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "parameter '{key}' is \"{value}\"; set a positive integer, \
             e.g. parameters {{ key: \"{key}\" value: {{ string_value: \"4\" }} }}"
        )),
    }
}

/// Chooses the versions to load by Triton's version policy.
///
/// `available` lists the numeric version directories that hold a model file.
/// No policy means the latest one; `latest { num_versions: N }` the N highest;
/// `all` every one; `specific { versions: [...] }` exactly those, each of
/// which must be available. The result is ascending, without duplicates.
pub fn versions_to_load(config: &ModelConfig, available: &[u64]) -> Result<Vec<u64>, String> {
    let mut found: Vec<u64> = available.to_vec();
    found.sort_unstable();
    found.dedup();
    if found.is_empty() {
        return Err(
            "no version directories (e.g. 1/) with a model file; put the model in <model>/1/"
                .to_string(),
        );
    }
    let policy = config
        .version_policy
        .as_ref()
        .and_then(|p| p.policy_choice.as_ref());
    match policy {
        None => Ok(latest(&found, 1)),
        Some(PolicyChoice::Latest(l)) => {
            if l.num_versions == 0 {
                return Err(
                    "version_policy.latest.num_versions is 0; set it to 1 or more".to_string(),
                );
            }
            Ok(latest(
                &found,
                usize::try_from(l.num_versions).unwrap_or(usize::MAX),
            ))
        }
        Some(PolicyChoice::All(_)) => Ok(found),
        Some(PolicyChoice::Specific(s)) => {
            if s.versions.is_empty() {
                return Err(
                    "version_policy.specific.versions is empty; list the versions to load, e.g. [ 1 ]".to_string()
                );
            }
            let mut out = Vec::with_capacity(s.versions.len());
            for &v in &s.versions {
                let shown: Vec<String> = found.iter().map(u64::to_string).collect();
                match u64::try_from(v) {
                    Ok(u) if found.binary_search(&u).is_ok() => out.push(u),
                    _ => return Err(format!(
                        "version_policy.specific.versions lists version {v}, but there is no version directory {v}/ \
                             with a model file (found: {}); add it or remove {v} from the list",
                        shown.join(", ")
                    )),
                }
            }
            out.sort_unstable();
            out.dedup();
            Ok(out)
        }
    }
}

fn latest(found: &[u64], n: usize) -> Vec<u64> {
    found[found.len().saturating_sub(n)..].to_vec()
}

/// The effective configuration of a model: the given config (or an empty
/// one) completed and checked against what the model file declares.
///
/// - `name` empty → `name`; a different name is an error (Triton requires
///   the config name to match the model directory).
/// - `platform` empty → `onnxruntime_onnx` for ONNX files, `anemone` for
///   Core ML files. `backend` is left as given.
/// - `version_policy` unset → `latest { num_versions: 1 }`, as Triton does.
/// - `input` empty → every model input; `output` empty → every model output.
///   Dims are the model's (fixed size, or -1 when dynamic); a tensor whose
///   model declares no shape at all gets `[-1]`. With `max_batch_size > 0`
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
        }
        .to_string();
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
    let batching = cfg.max_batch_size > 0;

    if cfg.input.is_empty() {
        for spec in &meta.inputs {
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
            check_entry(
                "input",
                i,
                &io.name,
                &mut io.data_type,
                &mut io.dims,
                &meta.inputs,
                batching,
            )?;
            if !seen.insert(io.name.clone()) {
                return Err(format!(
                    "input '{}' is listed twice in the config; list each input once",
                    io.name
                ));
            }
        }
        if let Some(missing) = meta.inputs.iter().find(|s| !seen.contains(&s.name)) {
            return Err(format!(
                "model input '{}' is missing from the config's 'input' list; list every input of the model ({}) \
                 or leave 'input' out so anemone fills it in",
                missing.name,
                names(&meta.inputs)
            ));
        }
    }

    if cfg.output.is_empty() {
        for spec in &meta.outputs {
            cfg.output.push(ModelOutput {
                name: spec.name.clone(),
                data_type: proto_dtype(spec.dtype) as i32,
                dims: fill_dims(spec, batching, "output")?,
                ..Default::default()
            });
        }
    } else {
        let mut seen = HashSet::new();
        for (i, io) in cfg.output.iter_mut().enumerate() {
            check_entry(
                "output",
                i,
                &io.name,
                &mut io.data_type,
                &mut io.dims,
                &meta.outputs,
                batching,
            )?;
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

fn dim_i64(d: &Dim) -> i64 {
    match d {
        Dim::Fixed(n) => i64::try_from(*n).unwrap_or(-1),
        Dim::Named(_) | Dim::Any => -1,
    }
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

fn fill_dims(spec: &TensorSpec, batching: bool, role: &str) -> Result<Vec<i64>, String> {
    Ok(model_dims(spec, batching, role)?.unwrap_or_else(|| vec![-1]))
}

/// Checks (and where empty, fills) one config input or output against the model.
fn check_entry(
    role: &str,
    index: usize,
    name: &str,
    data_type: &mut i32,
    dims: &mut Vec<i64>,
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
    let Some(model_dims) = model_dims(spec, batching, role)? else {
        return Ok(());
    };
    if dims.is_empty() && !model_dims.is_empty() {
        *dims = model_dims;
        return Ok(());
    }
    let batch_note = if batching {
        " after the batch dimension (with max_batch_size > 0, dims leave out the first, batch, dimension)"
    } else {
        ""
    };
    if dims.len() != model_dims.len() {
        return Err(format!(
            "{role} '{name}': dims {dims:?} have {} dimension(s) but the model's shape {} has {}{batch_note}; \
             set dims to {model_dims:?} or remove them",
            dims.len(),
            spec.shape_string(),
            model_dims.len()
        ));
    }
    for (i, (&c, &m)) in dims.iter().zip(&model_dims).enumerate() {
        if c != -1 && m != -1 && c != m {
            return Err(format!(
                "{role} '{name}': dims[{i}] is {c} in the config but the model's shape {} fixes it to {m}{batch_note}; \
                 set it to {m} or -1",
                spec.shape_string()
            ));
        }
    }
    Ok(())
}

/// The config as Triton-compatible JSON, as `GET /v2/models/{m}/config` returns it.
///
/// Proto field names (`max_batch_size`), enums by name (`"TYPE_FP32"`,
/// `"KIND_CPU"`), scalar, repeated and map fields included even at their
/// default (like Triton's `always_print_primitive_fields`); unset message
/// fields (e.g. `version_policy`) and oneofs are left out. 64-bit integers
/// (`dims`, `version_policy.specific.versions`) are JSON numbers, as Triton
/// prints them (Triton post-processes protobuf's strings into numbers).
pub fn to_json(config: &ModelConfig) -> serde_json::Value {
    match to_json_inner(config) {
        Ok(v) => v,
        Err(e) => serde_json::json!({ "name": config.name, "error": e }),
    }
}

fn to_json_inner(config: &ModelConfig) -> Result<serde_json::Value, String> {
    let desc = config_descriptor()?;
    let bytes = prost::Message::encode_to_vec(config);
    let msg = DynamicMessage::decode(desc, bytes.as_slice())
        .map_err(|e| format!("could not convert the config: {e}"))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| format!("could not write the config as JSON: {e}"))
}

/// The config `data_type` of an anemone element type.
pub fn proto_dtype(dt: CoreType) -> ProtoType {
    match dt {
        CoreType::Bool => ProtoType::TypeBool,
        CoreType::U8 => ProtoType::TypeUint8,
        CoreType::U16 => ProtoType::TypeUint16,
        CoreType::U32 => ProtoType::TypeUint32,
        CoreType::U64 => ProtoType::TypeUint64,
        CoreType::I8 => ProtoType::TypeInt8,
        CoreType::I16 => ProtoType::TypeInt16,
        CoreType::I32 => ProtoType::TypeInt32,
        CoreType::I64 => ProtoType::TypeInt64,
        CoreType::F16 => ProtoType::TypeFp16,
        CoreType::F32 => ProtoType::TypeFp32,
        CoreType::F64 => ProtoType::TypeFp64,
        CoreType::Bytes => ProtoType::TypeString,
    }
}

/// The anemone element type of a config `data_type`; `None` for
/// `TYPE_INVALID` and `TYPE_BF16`, which anemone has no type for.
pub fn core_dtype(dt: ProtoType) -> Option<CoreType> {
    Some(match dt {
        ProtoType::TypeBool => CoreType::Bool,
        ProtoType::TypeUint8 => CoreType::U8,
        ProtoType::TypeUint16 => CoreType::U16,
        ProtoType::TypeUint32 => CoreType::U32,
        ProtoType::TypeUint64 => CoreType::U64,
        ProtoType::TypeInt8 => CoreType::I8,
        ProtoType::TypeInt16 => CoreType::I16,
        ProtoType::TypeInt32 => CoreType::I32,
        ProtoType::TypeInt64 => CoreType::I64,
        ProtoType::TypeFp16 => CoreType::F16,
        ProtoType::TypeFp32 => CoreType::F32,
        ProtoType::TypeFp64 => CoreType::F64,
        ProtoType::TypeString => CoreType::Bytes,
        ProtoType::TypeInvalid | ProtoType::TypeBf16 => return None,
    })
}

/// The KServe v2 datatype name of a config `data_type`: `TYPE_FP32` →
/// `"FP32"`, `TYPE_STRING` → `"BYTES"`, `TYPE_INVALID` → `"INVALID"`.
pub fn v2_datatype_name(dt: ProtoType) -> &'static str {
    match dt {
        ProtoType::TypeInvalid => "INVALID",
        ProtoType::TypeBool => "BOOL",
        ProtoType::TypeUint8 => "UINT8",
        ProtoType::TypeUint16 => "UINT16",
        ProtoType::TypeUint32 => "UINT32",
        ProtoType::TypeUint64 => "UINT64",
        ProtoType::TypeInt8 => "INT8",
        ProtoType::TypeInt16 => "INT16",
        ProtoType::TypeInt32 => "INT32",
        ProtoType::TypeInt64 => "INT64",
        ProtoType::TypeFp16 => "FP16",
        ProtoType::TypeFp32 => "FP32",
        ProtoType::TypeFp64 => "FP64",
        ProtoType::TypeString => "BYTES",
        ProtoType::TypeBf16 => "BF16",
    }
}

/// A tensor's full declared shape as Triton dims: fixed sizes as they are,
/// dynamic ones (named or not) as -1; `[-1]` when the model declares no shape.
/// No batch dimension is removed.
pub fn dims_of(spec: &TensorSpec) -> Vec<i64> {
    match &spec.shape {
        Some(shape) => shape.iter().map(dim_i64).collect(),
        None => vec![-1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::model_version_policy::{All, Specific};
    use crate::proto::ModelParameter;

    const REALISTIC: &str = r#"
# ResNet-50 exported from PyTorch
name: "resnet50"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 1000 ]
  }
]
version_policy: { latest { num_versions: 2 } }
instance_group [ { count: 2 kind: KIND_CPU } ]
parameters { key: "backends" value: { string_value: "tract-cpu" } }
default_model_filename: "model.onnx"
"#;

    fn spec(name: &str, dtype: CoreType, shape: Vec<Dim>) -> TensorSpec {
        TensorSpec::new(name, dtype, shape)
    }

    fn meta(inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>) -> ModelMetadata {
        ModelMetadata {
            format: ModelFormat::Onnx,
            inputs,
            outputs,
            producer: Some("pytorch 2.4".into()),
            opsets: vec![(String::new(), 17)],
            parameter_count: 0,
            file_size: 0,
            weight_bytes: 0,
            properties: vec![],
        }
    }

    fn resnet_meta() -> ModelMetadata {
        let batch = || Dim::Named("batch".into());
        meta(
            vec![spec(
                "input",
                CoreType::F32,
                vec![batch(), Dim::Fixed(3), Dim::Fixed(224), Dim::Fixed(224)],
            )],
            vec![spec(
                "logits",
                CoreType::F32,
                vec![batch(), Dim::Fixed(1000)],
            )],
        )
    }

    fn err_pbtxt(text: &str) -> String {
        parse_pbtxt(text).expect_err("should be refused")
    }

    #[test]
    fn parses_realistic_pbtxt() {
        let c = parse_pbtxt(REALISTIC).unwrap();
        assert_eq!(c.name, "resnet50");
        assert_eq!(c.platform, "onnxruntime_onnx");
        assert_eq!(c.backend, "");
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.default_model_filename, "model.onnx");
        assert_eq!(c.input.len(), 1);
        assert_eq!(c.input[0].name, "input");
        assert_eq!(c.input[0].data_type, ProtoType::TypeFp32 as i32);
        assert_eq!(c.input[0].dims, vec![3, 224, 224]);
        assert!(!c.input[0].optional);
        assert_eq!(c.output.len(), 1);
        assert_eq!(c.output[0].name, "logits");
        assert_eq!(c.output[0].data_type, ProtoType::TypeFp32 as i32);
        assert_eq!(c.output[0].dims, vec![1000]);
        assert_eq!(
            c.version_policy,
            Some(ModelVersionPolicy {
                policy_choice: Some(PolicyChoice::Latest(Latest { num_versions: 2 }))
            })
        );
        assert_eq!(c.instance_group.len(), 1);
        assert_eq!(c.instance_group[0].count, 2);
        assert_eq!(c.instance_group[0].kind, GroupKind::Cpu as i32);
        assert_eq!(c.parameters.len(), 1);
        assert_eq!(c.parameters["backends"].string_value, "tract-cpu");
        let s = settings(&c).unwrap();
        assert_eq!(
            s,
            Settings {
                backends: Some(vec!["tract-cpu".into()]),
                backend_settings: vec![("onnxruntime.sessions".into(), "2".into())],
                ..Settings::default()
            },
            "two instances are two ONNX Runtime sessions"
        );
        // And it fits the model it describes.
        let done = complete(Some(c.clone()), "resnet50", &resnet_meta()).unwrap();
        assert_eq!(done.input, c.input);
        assert_eq!(done.output, c.output);
    }

    #[test]
    fn accepts_other_text_format_spellings() {
        let c = parse_pbtxt(
            "name: 'm' backend: \"onnxruntime\"\ninput { name: \"a\" data_type: TYPE_INT64 dims: -1 dims: 4 optional: true }\n\
             input: [{ name: \"b\", data_type: TYPE_STRING, dims: [1] }]\ninstance_group { kind: KIND_AUTO }\n\
             version_policy { all {} }",
        )
        .unwrap();
        assert_eq!(c.backend, "onnxruntime");
        assert_eq!(c.input[0].dims, vec![-1, 4]);
        assert!(c.input[0].optional);
        assert_eq!(c.input[1].data_type, ProtoType::TypeString as i32);
        assert_eq!(
            c.version_policy.unwrap().policy_choice,
            Some(PolicyChoice::All(All {}))
        );
        assert_eq!(parse_pbtxt("").unwrap(), ModelConfig::default());
    }

    #[test]
    fn list_colons_leave_strings_and_comments_alone() {
        let text = "name: \"a [b\" # input [ x\ninput # note\n [ { name: 'x[' } ] output: [ { name: \"y\" } ]";
        let (fixed, at) = add_list_colons(text);
        assert_eq!(fixed, "name: \"a [b\" # input [ x\ninput: # note\n [ { name: 'x[' } ] output: [ { name: \"y\" } ]");
        assert_eq!(at, vec![text.find("input #").unwrap() + 5]);
        let c = parse_pbtxt(text).unwrap();
        assert_eq!(
            (
                c.name.as_str(),
                c.input[0].name.as_str(),
                c.output[0].name.as_str()
            ),
            ("a [b", "x[", "y")
        );
        // Columns refer to the original text, before any insertion.
        let e = err_pbtxt("input [ { name: \"x\" } ] output [ { name: \"y\" dims: [ 3, ] } ]");
        assert!(e.contains("line 1, column 57"), "{e}");
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e =
            err_pbtxt("name: \"m\"\nmax_batch_size: 8\ninput [ { name: \"x\" dims: [ 3, ] } ]\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("column"), "{e}");
        let e = err_pbtxt("name: \"m\"\n  max_batchsize: 8\n");
        assert!(e.contains("line 2, column 3"), "{e}");
        assert!(e.contains("max_batchsize"), "{e}");
        let e = err_pbtxt("name: \"m\"\ninput [ { data_type: TYPE_FLOAT } ]");
        assert!(e.contains("line 2") && e.contains("TYPE_FLOAT"), "{e}");
        let e = err_pbtxt("name: \"m\"\ninput [ {");
        assert!(e.contains("line 2") && e.contains("end of input"), "{e}");
        let e = err_pbtxt("max_batch_size: 99999999999");
        assert!(e.contains("line 1"), "{e}");
    }

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

    #[test]
    fn settings_are_read_and_checked() {
        let mut c = ModelConfig::default();
        let p = |s: &str| ModelParameter {
            string_value: s.to_string(),
        };
        c.parameters
            .insert("backends".into(), p(" tract-cpu , ort-cpu "));
        c.parameters.insert("threads".into(), p("4"));
        c.parameters.insert("max_concurrency".into(), p("2"));
        c.parameters.insert("strict".into(), p("true"));
        c.parameters
            .insert("coreml.compute_units".into(), p(" ane "));
        assert_eq!(
            settings(&c).unwrap(),
            Settings {
                backends: Some(vec!["tract-cpu".into(), "ort-cpu".into()]),
                threads: Some(4),
                max_concurrency: Some(2),
                strict: Some(true),
                backend_settings: vec![("coreml.compute_units".into(), "ane".into())],
            }
        );
        c.parameters.insert("strict".into(), p("yes"));
        assert!(settings(&c).unwrap_err().contains("'strict'"));
        c.parameters.insert("strict".into(), p("false"));
        c.parameters.insert("cormel.compute_units".into(), p("ane"));
        let e = settings(&c).unwrap_err();
        assert!(
            e.contains("unknown parameter 'cormel.compute_units'"),
            "{e}"
        );
        c.parameters.remove("cormel.compute_units");
        c.parameters.insert("threads".into(), p("0"));
        assert!(settings(&c).unwrap_err().contains("'threads'"));
        c.parameters.insert("threads".into(), p("1"));
        c.parameters.insert("backends".into(), p("tract-cpu,,ort"));
        assert!(settings(&c).unwrap_err().contains("'backends'"));
        c.parameters.insert("backends".into(), p(""));
        assert!(settings(&c).unwrap_err().contains("'backends'"));
        c.parameters.insert("backends".into(), p("x"));
        c.parameters.insert("intra_op_thread_count".into(), p("4"));
        let e = settings(&c).unwrap_err();
        assert!(
            e.contains("unknown parameter 'intra_op_thread_count'") && e.contains("'threads'"),
            "{e}"
        );
        assert_eq!(
            settings(&ModelConfig::default()).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn json_round_trip() {
        let c = complete(
            Some(parse_pbtxt(REALISTIC).unwrap()),
            "resnet50",
            &resnet_meta(),
        )
        .unwrap();
        let json = to_json(&c);
        assert_eq!(json["name"], "resnet50");
        assert_eq!(json["platform"], "onnxruntime_onnx");
        assert_eq!(json["backend"], "");
        assert_eq!(json["max_batch_size"], 8);
        assert_eq!(json["input"][0]["name"], "input");
        assert_eq!(json["input"][0]["data_type"], "TYPE_FP32");
        assert_eq!(json["input"][0]["dims"], serde_json::json!([3, 224, 224]));
        assert_eq!(json["output"][0]["dims"], serde_json::json!([1000]));
        assert_eq!(
            json["version_policy"],
            serde_json::json!({ "latest": { "num_versions": 2 } })
        );
        assert_eq!(json["instance_group"][0]["kind"], "KIND_CPU");
        assert_eq!(json["instance_group"][0]["count"], 2);
        assert_eq!(json["parameters"]["backends"]["string_value"], "tract-cpu");
        assert_eq!(json["default_model_filename"], "model.onnx");
        let text = serde_json::to_string_pretty(&json).unwrap();
        assert_eq!(parse_json(&text).unwrap(), c);

        // A default config still prints the primitive fields Triton prints.
        let d = to_json(&ModelConfig::default());
        for key in [
            "name",
            "platform",
            "backend",
            "max_batch_size",
            "input",
            "output",
            "instance_group",
            "parameters",
        ] {
            assert!(d.get(key).is_some(), "{key} missing from {d}");
        }
        assert_eq!(parse_json(&d.to_string()).unwrap(), ModelConfig::default());

        let s = ModelConfig {
            version_policy: Some(ModelVersionPolicy {
                policy_choice: Some(PolicyChoice::Specific(Specific {
                    versions: vec![1, 3],
                })),
            }),
            ..Default::default()
        };
        let j = to_json(&s);
        assert_eq!(
            j["version_policy"]["specific"]["versions"],
            serde_json::json!([1, 3])
        );
        assert_eq!(parse_json(&j.to_string()).unwrap(), s);
    }

    #[test]
    fn json_accepts_triton_spellings_and_refuses_the_rest() {
        let c = parse_json(
            r#"{"name": "m", "maxBatchSize": 4,
                "input": [{"name": "x", "data_type": "type_fp32", "dims": ["3", -1]}],
                "instance_group": [{"kind": "KIND_CPU", "count": 1}],
                "version_policy": {"specific": {"versions": ["2"]}},
                "parameters": {"threads": {"string_value": "2"}}}"#,
        )
        .unwrap();
        assert_eq!(c.max_batch_size, 4);
        assert_eq!(c.input[0].data_type, ProtoType::TypeFp32 as i32);
        assert_eq!(c.input[0].dims, vec![3, -1]);
        assert_eq!(c.parameters["threads"].string_value, "2");
        let e = parse_json("{\"name\": \"m\",\n \"max_batch\": 4}").unwrap_err();
        assert!(e.contains("max_batch") && e.contains("line 2"), "{e}");
        let e = parse_json("{\"name\": \"m\",\n \"input\": [}").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_json(r#"{"dynamic_batching": {}}"#).unwrap_err();
        assert!(e.contains("'dynamic_batching'"), "{e}");
        let e = parse_json(r#"{"instance_group": [{"kind": "KIND_GPU"}]}"#).unwrap_err();
        assert!(e.contains("'instance_group[0].kind'"), "{e}");
        let e = parse_json(r#"{"input": [{"name": "x", "data_type": "TYPE_FLOAT"}]}"#).unwrap_err();
        assert!(e.contains("TYPE_FLOAT"), "{e}");
        assert!(parse_json("[1, 2]").is_err());
        assert!(parse_json("").is_err());
    }

    fn with_policy(choice: Option<PolicyChoice>) -> ModelConfig {
        ModelConfig {
            version_policy: Some(ModelVersionPolicy {
                policy_choice: choice,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn version_policies() {
        let avail = [3, 1, 7, 2];
        assert_eq!(
            versions_to_load(&ModelConfig::default(), &avail).unwrap(),
            vec![7]
        );
        assert_eq!(
            versions_to_load(&with_policy(None), &avail).unwrap(),
            vec![7]
        );
        let latest = |n| with_policy(Some(PolicyChoice::Latest(Latest { num_versions: n })));
        assert_eq!(versions_to_load(&latest(2), &avail).unwrap(), vec![3, 7]);
        assert_eq!(
            versions_to_load(&latest(10), &avail).unwrap(),
            vec![1, 2, 3, 7]
        );
        assert!(versions_to_load(&latest(0), &avail)
            .unwrap_err()
            .contains("num_versions"));
        let all = with_policy(Some(PolicyChoice::All(All {})));
        assert_eq!(versions_to_load(&all, &[2, 1, 2]).unwrap(), vec![1, 2]);
        let specific =
            |v: Vec<i64>| with_policy(Some(PolicyChoice::Specific(Specific { versions: v })));
        assert_eq!(
            versions_to_load(&specific(vec![3, 1]), &avail).unwrap(),
            vec![1, 3]
        );
        let e = versions_to_load(&specific(vec![1, 4]), &avail).unwrap_err();
        assert!(e.contains("version 4") && e.contains("4/"), "{e}");
        assert!(versions_to_load(&specific(vec![-1]), &avail)
            .unwrap_err()
            .contains("-1"));
        assert!(versions_to_load(&specific(vec![]), &avail).is_err());
        let e = versions_to_load(&ModelConfig::default(), &[]).unwrap_err();
        assert!(
            e.contains("no version directories (e.g. 1/) with a model file"),
            "{e}"
        );
        // Policies parsed from text behave the same.
        let c = parse_pbtxt("version_policy: { specific: { versions: [ 1, 2 ] } }").unwrap();
        assert_eq!(versions_to_load(&c, &avail).unwrap(), vec![1, 2]);
    }

    #[test]
    fn complete_fills_from_model_without_batching() {
        let m = meta(
            vec![
                spec(
                    "x",
                    CoreType::F32,
                    vec![Dim::Named("n".into()), Dim::Fixed(3), Dim::Any],
                ),
                spec("mask", CoreType::Bool, vec![]),
            ],
            vec![
                spec(
                    "y",
                    CoreType::I64,
                    vec![Dim::Named("n".into()), Dim::Fixed(10)],
                ),
                TensorSpec {
                    name: "z".into(),
                    dtype: CoreType::Bytes,
                    shape: None,
                },
            ],
        );
        let c = complete(None, "net", &m).unwrap();
        assert_eq!(c.name, "net");
        assert_eq!(c.platform, "onnxruntime_onnx");
        assert_eq!(c.backend, "");
        assert_eq!(c.max_batch_size, 0);
        assert_eq!(c.input.len(), 2);
        assert_eq!(
            (c.input[0].name.as_str(), c.input[0].data_type),
            ("x", ProtoType::TypeFp32 as i32)
        );
        assert_eq!(c.input[0].dims, vec![-1, 3, -1]);
        assert_eq!(c.input[1].data_type, ProtoType::TypeBool as i32);
        assert!(c.input[1].dims.is_empty());
        assert_eq!(c.output[0].data_type, ProtoType::TypeInt64 as i32);
        assert_eq!(c.output[0].dims, vec![-1, 10]);
        assert_eq!(c.output[1].data_type, ProtoType::TypeString as i32);
        assert_eq!(c.output[1].dims, vec![-1]);
        assert_eq!(versions_to_load(&c, &[1, 2]).unwrap(), vec![2]);
        // Given config values are kept.
        let given = ModelConfig {
            backend: "tract".into(),
            ..Default::default()
        };
        let c = complete(Some(given), "net", &m).unwrap();
        assert_eq!(
            (c.platform.as_str(), c.backend.as_str()),
            ("onnxruntime_onnx", "tract")
        );
    }

    #[test]
    fn complete_fills_from_model_with_batching() {
        let given = ModelConfig {
            max_batch_size: 8,
            ..Default::default()
        };
        let c = complete(Some(given), "resnet50", &resnet_meta()).unwrap();
        assert_eq!(c.input[0].dims, vec![3, 224, 224]);
        assert_eq!(c.output[0].dims, vec![1000]);
        assert_eq!(c.max_batch_size, 8);
        // Fixed first dimension cannot batch.
        let m = meta(
            vec![spec("x", CoreType::F32, vec![Dim::Fixed(1), Dim::Fixed(3)])],
            vec![],
        );
        let e = complete(
            Some(ModelConfig {
                max_batch_size: 4,
                ..Default::default()
            }),
            "m",
            &m,
        )
        .unwrap_err();
        assert!(
            e.contains("max_batch_size is set but input 'x' has a fixed first dimension 1"),
            "{e}"
        );
        let m = meta(
            vec![spec("x", CoreType::F32, vec![Dim::Any])],
            vec![spec("y", CoreType::F32, vec![])],
        );
        let e = complete(
            Some(ModelConfig {
                max_batch_size: 4,
                ..Default::default()
            }),
            "m",
            &m,
        )
        .unwrap_err();
        assert!(e.contains("output 'y' is a scalar"), "{e}");
    }

    fn input(name: &str, dt: ProtoType, dims: Vec<i64>) -> ModelInput {
        ModelInput {
            name: name.into(),
            data_type: dt as i32,
            dims,
            ..Default::default()
        }
    }

    #[test]
    fn complete_checks_given_tensors() {
        let m = resnet_meta();
        let cfg = |inputs: Vec<ModelInput>, mbs: i32| ModelConfig {
            max_batch_size: mbs,
            input: inputs,
            ..Default::default()
        };

        // -1 matches a fixed dim; empty data_type and dims are filled.
        let ok = complete(
            Some(cfg(
                vec![input("input", ProtoType::TypeFp32, vec![3, -1, -1])],
                2,
            )),
            "r",
            &m,
        )
        .unwrap();
        assert_eq!(ok.input[0].dims, vec![3, -1, -1]);
        assert_eq!(ok.output[0].dims, vec![1000]);
        let ok = complete(
            Some(cfg(vec![input("input", ProtoType::TypeInvalid, vec![])], 2)),
            "r",
            &m,
        )
        .unwrap();
        assert_eq!(ok.input[0].data_type, ProtoType::TypeFp32 as i32);
        assert_eq!(ok.input[0].dims, vec![3, 224, 224]);
        // Without batching the dims include the batch dimension.
        let ok = complete(
            Some(cfg(
                vec![input("input", ProtoType::TypeFp32, vec![-1, 3, 224, 224])],
                0,
            )),
            "r",
            &m,
        )
        .unwrap();
        assert_eq!(ok.input[0].dims, vec![-1, 3, 224, 224]);

        let e = complete(
            Some(cfg(
                vec![input("input", ProtoType::TypeFp16, vec![3, 224, 224])],
                2,
            )),
            "r",
            &m,
        )
        .unwrap_err();
        assert!(
            e.contains("input 'input'") && e.contains("TYPE_FP16") && e.contains("TYPE_FP32"),
            "{e}"
        );
        let e = complete(
            Some(cfg(
                vec![input("input", ProtoType::TypeFp32, vec![3, 256, 224])],
                2,
            )),
            "r",
            &m,
        )
        .unwrap_err();
        assert!(e.contains("dims[1] is 256") && e.contains("224"), "{e}");
        let e = complete(
            Some(cfg(
                vec![input("input", ProtoType::TypeFp32, vec![-1, 3, 224, 224])],
                2,
            )),
            "r",
            &m,
        )
        .unwrap_err();
        assert!(e.contains("4 dimension(s)") && e.contains("batch"), "{e}");
        let e = complete(
            Some(cfg(
                vec![input("image", ProtoType::TypeFp32, vec![3, 224, 224])],
                2,
            )),
            "r",
            &m,
        )
        .unwrap_err();
        assert!(
            e.contains("'image' is not an input of the model") && e.contains("input"),
            "{e}"
        );
        let e = complete(
            Some(cfg(vec![input("", ProtoType::TypeFp32, vec![])], 2)),
            "r",
            &m,
        )
        .unwrap_err();
        assert!(e.contains("input[0] has no name"), "{e}");

        let two = meta(
            vec![
                spec("a", CoreType::I64, vec![Dim::Any]),
                spec("b", CoreType::I64, vec![Dim::Any]),
            ],
            vec![
                spec("y", CoreType::F32, vec![Dim::Any]),
                spec("z", CoreType::F32, vec![Dim::Any]),
            ],
        );
        let e = complete(
            Some(cfg(vec![input("a", ProtoType::TypeInt64, vec![-1])], 0)),
            "t",
            &two,
        )
        .unwrap_err();
        assert!(e.contains("model input 'b' is missing"), "{e}");
        let dup = vec![
            input("a", ProtoType::TypeInt64, vec![-1]),
            input("a", ProtoType::TypeInt64, vec![-1]),
        ];
        assert!(complete(Some(cfg(dup, 0)), "t", &two)
            .unwrap_err()
            .contains("listed twice"));
        // Outputs may be a subset but must exist and match.
        let mut c = cfg(vec![], 0);
        c.output = vec![ModelOutput {
            name: "z".into(),
            data_type: ProtoType::TypeFp32 as i32,
            dims: vec![-1],
            ..Default::default()
        }];
        let done = complete(Some(c.clone()), "t", &two).unwrap();
        assert_eq!(done.output.len(), 1);
        assert_eq!(done.input.len(), 2);
        c.output[0].name = "w".into();
        assert!(complete(Some(c.clone()), "t", &two)
            .unwrap_err()
            .contains("'w' is not an output of the model; the model's outputs are: y, z"));
        c.output[0].name = "z".into();
        c.output[0].data_type = ProtoType::TypeInt32 as i32;
        assert!(complete(Some(c), "t", &two)
            .unwrap_err()
            .contains("output 'z'"));

        // Batching with given inputs still requires a dynamic first dim.
        let fixed = meta(
            vec![spec("x", CoreType::F32, vec![Dim::Fixed(1), Dim::Fixed(3)])],
            vec![],
        );
        let e = complete(
            Some(cfg(vec![input("x", ProtoType::TypeFp32, vec![3])], 4)),
            "m",
            &fixed,
        )
        .unwrap_err();
        assert!(
            e.contains("max_batch_size is set but input 'x' has a fixed first dimension 1"),
            "{e}"
        );
    }

    #[test]
    fn complete_checks_name_and_platform() {
        let m = resnet_meta();
        let e = complete(
            Some(ModelConfig {
                name: "other".into(),
                ..Default::default()
            }),
            "resnet50",
            &m,
        )
        .unwrap_err();
        assert!(e.contains("'other'") && e.contains("'resnet50'"), "{e}");
        let kept = complete(
            Some(ModelConfig {
                platform: "anemone".into(),
                ..Default::default()
            }),
            "r",
            &m,
        )
        .unwrap();
        assert_eq!(kept.platform, "anemone");
        let mut coreml = m.clone();
        coreml.format = ModelFormat::CoreMl;
        assert_eq!(complete(None, "r", &coreml).unwrap().platform, "anemone");
    }

    #[test]
    fn data_type_names() {
        for dt in CoreType::ALL {
            let p = proto_dtype(dt);
            assert_eq!(core_dtype(p), Some(dt));
            assert_eq!(
                format!("TYPE_{}", v2_datatype_name(p)).replace("TYPE_BYTES", "TYPE_STRING"),
                p.as_str_name()
            );
        }
        assert_eq!(v2_datatype_name(ProtoType::TypeFp32), "FP32");
        assert_eq!(v2_datatype_name(ProtoType::TypeString), "BYTES");
        assert_eq!(proto_dtype(CoreType::F16), ProtoType::TypeFp16);
        assert_eq!(core_dtype(ProtoType::TypeBf16), None);
        let s = spec(
            "x",
            CoreType::F32,
            vec![Dim::Named("b".into()), Dim::Fixed(3), Dim::Any],
        );
        assert_eq!(dims_of(&s), vec![-1, 3, -1]);
        assert_eq!(
            dims_of(&TensorSpec {
                name: "u".into(),
                dtype: CoreType::U8,
                shape: None
            }),
            vec![-1]
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        for text in [
            "\u{0}",
            "name: \"\\xff\"",
            "}}}}",
            "input [[[",
            "parameters { key: 1 }",
            "max_batch_size: -",
            "é: 1",
        ] {
            let _ = parse_pbtxt(text);
        }
        for text in [
            "null",
            "{\"input\": null}",
            "{\"input\": [null]}",
            "{\"parameters\": {\"x\": null}}",
            "\"str\"",
        ] {
            let _ = parse_json(text);
        }
    }
}
