//! Reading a configuration: protobuf text format (`config.pbtxt`) and JSON,
//! and writing the JSON form back.

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, SerializeOptions};

use super::settings::read_settings;
use super::supported::check_supported_in;
use super::text_format::{add_list_colons, text_format_error};
use super::{config_descriptor, refusals, Source};
use crate::proto::ModelConfig;

/// Parses Triton's `config.pbtxt` (protobuf text format) into a [`ModelConfig`].
///
/// The text is parsed with prost-reflect's text-format parser against the
/// `inference.ModelConfig` descriptor, so field names, enum names (e.g.
/// `TYPE_FP32`, `KIND_CPU`), comments (`#`), lists (`dims: [ 3, 224 ]`,
/// `input [ { ... } ]`) and map entries (`parameters { key: "k" value: {
/// string_value: "v" } }`) follow protobuf's rules. Syntax errors carry the
/// line and column. The parsed message is then checked against the subset
/// anemone supports (fields outside it are refused by path, e.g.
/// `'input[0].reshape'`) and its `parameters` are validated by `settings`.
pub fn parse_pbtxt(text: &str) -> Result<ModelConfig, String> {
    let desc = config_descriptor()?;
    // A UTF-8 byte order mark, as some Windows editors save text, is no
    // token of the format: skipped, as CRLF line ends are whitespace.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (fixed, inserted) = add_list_colons(text);
    let msg = DynamicMessage::parse_text_format(desc, &fixed)
        .map_err(|e| text_format_error(text, &inserted, &e))?;
    let refused = check_supported_in(&msg, Source::Pbtxt);
    finish(&msg, Source::Pbtxt, refused)
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
    let refused = check_supported_in(&msg, Source::Json);
    finish(&msg, Source::Json, refused)
}

/// Deserializes JSON text straight from the string, so errors keep
/// positions, tracking the field being read, so errors name it and its
/// value (`at max_batch_size = 8.5: ...`).
fn deserialize_json(desc: MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let msg = DynamicMessage::deserialize(
        desc,
        serde_path_to_error::Deserializer::new(&mut de, &mut track),
    )
    .map_err(|e| json_error(&e, Some((text, track.path()))))?;
    de.end().map_err(|e| json_error(&e, None))?;
    Ok(msg)
}

fn json_error(e: &serde_json::Error, at: Option<(&str, serde_path_to_error::Path)>) -> String {
    let place = at
        .map(|(text, path)| field_and_value(text, &path))
        .unwrap_or_default();
    format!(
        "model config JSON is not a valid inference.ModelConfig: {place}{e}; fix it to follow Triton's model_config.proto \
         (field names like \"max_batch_size\", enums like \"TYPE_FP32\")"
    )
}

/// `at input[0].dims[0] = 9223372036854775808: `, the field an error was
/// met in and its value as the request wrote it (shortened past 80
/// characters); empty at the top level.
fn field_and_value(text: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut name = String::new();
    let mut value = serde_json::from_str::<serde_json::Value>(text).ok();
    for segment in path.iter() {
        match segment {
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(key);
                value = value.and_then(|v| v.get(key).cloned());
            }
            Segment::Seq { index } => {
                name.push_str(&format!("[{index}]"));
                value = value.and_then(|v| v.get(index).cloned());
            }
            Segment::Unknown => {
                name.push_str(".?");
                value = None;
            }
        }
    }
    if name.is_empty() {
        return String::new();
    }
    match value {
        Some(v) => {
            let mut v = v.to_string();
            if v.chars().count() > 80 {
                v = v.chars().take(77).collect::<String>() + "...";
            }
            format!("at {name} = {v}: ")
        }
        None => format!("at {name}: "),
    }
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

/// Transcodes a checked dynamic message into the prost type and validates
/// its `parameters`; `refused` are the refusals found so far, reported
/// together with the parameters' own.
fn finish(
    msg: &DynamicMessage,
    source: Source,
    mut refused: Vec<String>,
) -> Result<ModelConfig, String> {
    let bytes = prost::Message::encode_to_vec(msg);
    let config = <ModelConfig as prost::Message>::decode(bytes.as_slice()).map_err(|e| {
        format!(
            "{}: could not convert the parsed config ({e}); report this as an anemone bug",
            source.label()
        )
    })?;
    let (_, errs) = read_settings(&config);
    refused.extend(errs.into_iter().map(|e| format!("{} {e}", source.label())));
    if refused.is_empty() {
        Ok(config)
    } else {
        Err(refusals(source.label(), &refused))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::fixtures::*;
    use crate::model_config::{complete, settings, Settings};
    use crate::proto::model_instance_group::Kind as GroupKind;
    use crate::proto::model_version_policy::{All, Latest, PolicyChoice, Specific};
    use crate::proto::{DataType as ProtoType, ModelVersionPolicy};

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
                ..Settings::default()
            },
            "instances are engine instances now, not ONNX Runtime sessions"
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
        // As a Windows editor saves it: a byte order mark and CRLF line ends.
        let c = parse_pbtxt("\u{feff}name: \"m\"\r\nmax_batch_size: 8\r\n").unwrap();
        assert_eq!((c.name.as_str(), c.max_batch_size), ("m", 8));
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
        assert_eq!(json["backend"], "onnxruntime");
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
        let e = parse_json(r#"{"runtime": "model.so"}"#).unwrap_err();
        assert!(e.contains("'runtime'"), "{e}");
        // dynamic_batching and KIND_GPU are read (see `scheduling`); KIND_MODEL
        // only for a Python model (or one that may be found to be: no backend named).
        parse_json(r#"{"dynamic_batching": {}, "instance_group": [{"kind": "KIND_GPU"}]}"#)
            .unwrap();
        parse_json(r#"{"instance_group": [{"kind": "KIND_MODEL"}]}"#).unwrap();
        let e =
            parse_json(r#"{"backend": "onnxruntime", "instance_group": [{"kind": "KIND_MODEL"}]}"#)
                .unwrap_err();
        assert!(e.contains("'instance_group[0].kind'"), "{e}");
        let e = parse_json(r#"{"input": [{"name": "x", "data_type": "TYPE_FLOAT"}]}"#).unwrap_err();
        assert!(e.contains("TYPE_FLOAT"), "{e}");
        assert!(parse_json("[1, 2]").is_err());
        assert!(parse_json("").is_err());
        // A number out of its field's range names the field and the value.
        for (json, words) in [
            (r#"{"max_batch_size": 8.5}"#, "at max_batch_size = 8.5: "),
            (
                r#"{"input": [{"name": "x", "dims": [4, 9223372036854775808]}]}"#,
                "at input[0].dims[1] = 9223372036854775808: ",
            ),
            (
                r#"{"instance_group": [{"count": "2147483648"}]}"#,
                "at instance_group[0].count = \"2147483648\": ",
            ),
        ] {
            let e = parse_json(json).unwrap_err();
            assert!(e.contains(words), "{e}");
        }
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
