//! anemone's own per-model settings, read from a config's `parameters`.

use crate::proto::ModelConfig;

/// The `parameters` keys anemone reads, in the order error messages list them.
pub const PARAMETER_KEYS: [&str; 4] = ["backends", "strict", "threads", "max_concurrency"];

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ModelParameter;

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
}
