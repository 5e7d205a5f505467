//! anemone's own per-model settings, read from a config's `parameters`.

use crate::proto::ModelConfig;

/// The `parameters` keys anemone reads, in the order error messages list them.
pub const PARAMETER_KEYS: [&str; 7] = [
    "backends",
    "strict",
    "threads",
    "max_concurrency",
    "eviction",
    "standby",
    "retime",
];

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
    /// Never evicted under `--eviction lru` (parameter `eviction`: `never`;
    /// `lru`, the default, lets it be evicted).
    pub pinned: bool,
    /// Keep the first standby backend loaded (parameter `standby`: `hot`;
    /// `lazy`, the default, loads it on the first fallback).
    pub hot_standby: bool,
    /// Whether the CPU engines may be re-timed on the first real requests
    /// (parameter `retime`: `true`, the default, or `false`).
    pub retime: Option<bool>,
    /// Parameters no part of anemone reads, and which are not near the
    /// spelling of one it does: other Triton backends' keys (Triton's own
    /// example `simple_dyna_sequence` has `execute_delay_ms`). Triton's
    /// backends ignore keys they do not read; anemone ignores these too, and
    /// the loader logs a warning naming them.
    pub ignored: Vec<String>,
}

impl Settings {
    /// `threads`, unless the config already gives it another value (`from`
    /// is the parameter that asks, for the error).
    pub(super) fn set_threads(&mut self, n: usize, from: &str) -> Result<(), String> {
        match self.threads {
            Some(t) if t != n => Err(format!(
                "'{from}' asks for {n} threads but the config also asks for {t} (parameters \
                 'intra_op_thread_count' and 'threads' mean the same); give one of them"
            )),
            _ => {
                self.threads = Some(n);
                Ok(())
            }
        }
    }

    /// Backend setting `key`, unless the config already gives it another value.
    pub(super) fn set_backend(&mut self, key: &str, value: &str, from: &str) -> Result<(), String> {
        let given = self.backend_settings.iter().find(|(k, _)| k == key);
        match given {
            Some((_, v)) if v != value => Err(format!(
                "'{from}' sets {key} to \"{value}\" but the config also sets it to \"{v}\"; give one of them"
            )),
            Some(_) => Ok(()),
            None => {
                self.backend_settings.push((key.into(), value.into()));
                Ok(())
            }
        }
    }
}

/// The most engine threads one model may ask for (`threads`): four per
/// logical core of this machine.
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 4
}

/// The most requests one model may run at once (`max_concurrency`).
pub const MAX_CONCURRENCY: usize = 4096;

/// The most engine instances (Triton's `instance_group` counts, summed) or
/// ONNX Runtime sessions (`onnxruntime.sessions`) one model may have: each
/// holds its own copy of the weights.
pub const MAX_INSTANCES: usize = 64;

/// Reads anemone's settings from `parameters` entries (their `string_value`).
///
/// - `backends`: comma-separated backend names, e.g. `"tract-cpu,ort-cpu"`;
///   each name is trimmed and must be non-empty.
/// - `backends` may be `auto`: time a warm-up on every candidate, keep the fastest;
/// - `strict`: `true` or `false`;
/// - `threads`: 1 to `max_threads`; `max_concurrency`: 1 to `MAX_CONCURRENCY`;
/// - `eviction`: `never` keeps the model resident under `--eviction lru`;
///   `lru` (the default) lets it be evicted when room is needed;
/// - `standby`: `hot` keeps the first standby backend loaded (charged to
///   the budget) so a fallback is immediate; `lazy` (the default) loads it
///   on the first fallback;
/// - `retime`: `false` keeps the engine chosen at load; `true` (the
///   default) lets the health monitor re-time the CPU engines on the first
///   real requests and move the model to one clearly faster;
/// - `<backend>.<key>` (e.g. `coreml.compute_units`, `onnxruntime.coreml.compute_units`):
///   a key that backend reads (see [`anemone_backends::settings::known_settings`]),
///   passed to it, which checks the value when it loads the model;
///   `onnxruntime.sessions` and the `instance_group` counts (summed) at most
///   `MAX_INSTANCES`; a path (`coreml.cache_dir`) relative to the model's
///   directory, without `..`.
///
/// Any other key is refused, so a misspelt setting is never ignored. Every
/// refusal is reported, not only the first (joined by `super::refusals`).
pub fn settings(config: &ModelConfig) -> Result<Settings, String> {
    let (out, errs) = read_settings(config);
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(super::refusals("the settings", &errs))
    }
}

/// [`settings`], with every refusal in a list, each naming its field
/// (`'instance_group'` or `'parameters'`).
pub(super) fn read_settings(config: &ModelConfig) -> (Settings, Vec<String>) {
    let mut entries: Vec<(&String, &str)> = config
        .parameters
        .iter()
        .map(|(k, v)| (k, v.string_value.as_str()))
        .collect();
    entries.sort();
    let mut out = Settings::default();
    let mut errs = Vec::new();
    // `instance_group` gives engine instances (see `scheduling`); the
    // `onnxruntime.sessions` parameter still gives sessions inside one.
    let instances: i64 = config
        .instance_group
        .iter()
        .map(|g| i64::from(g.count.max(1)))
        .sum();
    if instances > MAX_INSTANCES as i64 {
        errs.push(format!(
            "'instance_group' asks for {instances} instances in all; set counts that add up to 1..{MAX_INSTANCES} \
             (each instance holds its own copy of the weights)"
        ));
    }
    for (key, value) in entries {
        if let Err(e) = read_entry(key, value, &mut out) {
            errs.push(format!("'parameters': {e}"));
        }
    }
    let graph = config.optimization.as_ref().and_then(|o| o.graph.as_ref());
    if let Err(e) = super::ort_parameters::graph_level(graph.map(|g| g.level), &mut out) {
        errs.push(e);
    }
    errs.extend(super::ort_parameters::accelerators(config, &mut out));
    (out, errs)
}

/// The longest `parameters` value anemone reads, but a directory's: every
/// other is a word, a number or a short list of backend names.
const MAX_VALUE: usize = 256;

/// Reads one `parameters` entry into `out`.
fn read_entry(key: &str, value: &str, out: &mut Settings) -> Result<(), String> {
    // Refused without echoing it: the messages below quote bad values, and
    // a config may be megabytes long.
    if value.len() > MAX_VALUE && !anemone_backends::settings::PATH_SETTINGS.contains(&key) {
        return Err(format!(
            "parameter '{key}' has a value of {} bytes; anemone's parameter values are at most {MAX_VALUE} bytes",
            value.len()
        ));
    }
    match key {
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
        "threads" => {
            let n = bounded(key, value, max_threads(), "4 per logical core of this machine")?;
            out.set_threads(n, key)?;
        }
        "max_concurrency" => {
            out.max_concurrency = Some(bounded(key, value, MAX_CONCURRENCY, "a fixed bound")?)
        }
        "standby" => {
            out.hot_standby = match value.trim() {
                "hot" => true,
                "lazy" => false,
                _ => {
                    return Err(format!(
                        "parameter 'standby' is \"{value}\"; set \"hot\" (keep the next backend loaded, \
                         at the cost of its memory, so a fallback is immediate) or \"lazy\" (the default: \
                         load it on the first fallback)"
                    ))
                }
            };
        }
        "eviction" => {
            out.pinned = match value.trim() {
                "never" => true,
                "lru" => false,
                _ => {
                    return Err(format!(
                        "parameter 'eviction' is \"{value}\"; set \"never\" (keep the model resident under \
                         --eviction lru) or \"lru\" (the default: it may be evicted when room is needed)"
                    ))
                }
            }
        }
        "retime" => {
            out.retime = Some(match value.trim() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(format!(
                        "parameter 'retime' is \"{value}\"; set \"false\" (keep the engine chosen at load) \
                         or \"true\" (the default: re-time the CPU engines on the first real requests)"
                    ))
                }
            })
        }
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
            let value = value.trim();
            check_backend_setting(dotted, value)?;
            out.set_backend(dotted, value, dotted)?;
        }
        other => {
            if let Some(read) = super::ort_parameters::read(other, value, out) {
                return read;
            }
            // A near miss of a key anemone reads is a typo: refused. Any
            // other key is another backend's, ignored as Triton does.
            let Some(meant) = near_miss(other) else {
                out.ignored.push(other.to_string());
                return Ok(());
            };
            return Err(format!(
                "unknown parameter '{other}' (did you mean '{meant}'?); anemone reads: {}, \
                 <backend>.<setting> keys (e.g. coreml.compute_units), and Triton's ONNX Runtime \
                 options ({}); fix its spelling or remove it",
                PARAMETER_KEYS.join(", "),
                super::ort_parameters::KEYS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Checks a `<backend>.<key>` setting: the backend must read that key; a
/// path must stay relative to the model's directory; a session count is bounded.
fn check_backend_setting(key: &str, value: &str) -> Result<(), String> {
    let backend = backend_setting_prefix(key).unwrap_or_default();
    let known = anemone_backends::settings::known_settings(backend).unwrap_or(&[]);
    if !known.contains(&key) {
        return Err(if known.is_empty() {
            format!("unknown parameter '{key}': backend {backend} reads no settings; remove it")
        } else {
            format!(
                "unknown parameter '{key}'; backend {backend} reads: {}; remove it or fix its spelling",
                known.join(", ")
            )
        });
    }
    if anemone_backends::settings::PATH_SETTINGS.contains(&key)
        && !crate::repository::paths::is_plain_relative(value)
    {
        return Err(format!(
            "parameter '{key}' is \"{value}\"; give a directory relative to the model's directory, without '..' \
             (a configuration may not choose where the server writes outside its model)"
        ));
    }
    // A bad value fails the load here: left to the backend, only that
    // candidate would refuse it and another engine would take the model.
    anemone_backends::settings::check_value(key, value)
        .map_err(|e| format!("parameter '{key}': {e}"))?;
    if key == "onnxruntime.sessions" {
        bounded(
            key,
            value,
            MAX_INSTANCES,
            "each session holds a copy of the weights",
        )?;
    }
    Ok(())
}

/// The backend a dotted parameter key belongs to, if its prefix names one.
/// The key anemone reads that `key` is probably a misspelling of: a plain
/// key within two edits, or a `<backend>.<setting>` key whose backend name is.
fn near_miss(key: &str) -> Option<String> {
    let key = key.to_ascii_lowercase();
    let near = |a: &str, b: &str| strsim::levenshtein(a, b) <= 2;
    if let Some((prefix, rest)) = key.split_once('.') {
        return anemone_runtime::selection::KNOWN_BACKENDS
            .iter()
            .find(|(name, _)| near(prefix, name))
            .map(|(name, _)| format!("{name}.{rest}"));
    }
    PARAMETER_KEYS
        .iter()
        .chain(super::ort_parameters::KEYS.iter())
        .map(|k| (strsim::levenshtein(&key, k), *k))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, k)| k.to_string())
}

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

/// An integer setting from 1 to `max` (`why` says where the bound comes from).
fn bounded(key: &str, value: &str, max: usize, why: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "parameter '{key}' is \"{value}\"; set an integer from 1 to {max} ({why}), \
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
        // Another backend's key (Triton's example simple_dyna_sequence has it).
        c.parameters.insert("execute_delay_ms".into(), p("0"));
        assert_eq!(
            settings(&c).unwrap(),
            Settings {
                backends: Some(vec!["tract-cpu".into(), "ort-cpu".into()]),
                threads: Some(4),
                max_concurrency: Some(2),
                strict: Some(true),
                backend_settings: vec![("coreml.compute_units".into(), "ane".into())],
                pinned: false,
                hot_standby: false,
                retime: None,
                ignored: vec!["execute_delay_ms".into()],
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
        // Triton's name for `threads`: read, but not with a different `threads`.
        let e = settings(&c).unwrap_err();
        assert!(
            e.contains("'intra_op_thread_count'") && e.contains("mean the same"),
            "{e}"
        );
        c.parameters.insert("intra_op_thread_count".into(), p("1"));
        assert_eq!(settings(&c).unwrap().threads, Some(1));
        assert_eq!(
            settings(&ModelConfig::default()).unwrap(),
            Settings::default()
        );
    }

    fn with(entries: &[(&str, &str)]) -> ModelConfig {
        let mut c = ModelConfig::default();
        for (k, v) in entries {
            c.parameters.insert(
                k.to_string(),
                ModelParameter {
                    string_value: v.to_string(),
                },
            );
        }
        c
    }

    #[test]
    fn absurd_values_are_refused_with_the_allowed_range() {
        let max = max_threads();
        assert!(settings(&with(&[("threads", &max.to_string())])).is_ok());
        let e = settings(&with(&[("threads", &(max + 1).to_string())])).unwrap_err();
        assert!(e.contains(&format!("from 1 to {max}")), "{e}");
        let e = settings(&with(&[("threads", "500000")])).unwrap_err();
        assert!(e.contains("per logical core"), "{e}");
        assert!(settings(&with(&[("max_concurrency", "4096")])).is_ok());
        let e = settings(&with(&[("max_concurrency", "4097")])).unwrap_err();
        assert!(e.contains("from 1 to 4096"), "{e}");
        assert!(settings(&with(&[("onnxruntime.sessions", "64")])).is_ok());
        let e = settings(&with(&[("onnxruntime.sessions", "65")])).unwrap_err();
        assert!(e.contains("from 1 to 64"), "{e}");
        let c = ModelConfig {
            instance_group: vec![
                crate::proto::ModelInstanceGroup {
                    count: 40,
                    ..Default::default()
                };
                2
            ],
            ..Default::default()
        };
        let e = settings(&c).unwrap_err();
        assert!(e.contains("80 instances") && e.contains("1..64"), "{e}");
        // Named by its own field, not as one of the `parameters`.
        assert!(e.starts_with("'instance_group' asks"), "{e}");
    }

    #[test]
    fn backend_keys_are_checked_against_what_the_backend_reads() {
        let e = settings(&with(&[("onnxruntime.bogus", "1")])).unwrap_err();
        assert!(
            e.contains("backend onnxruntime reads: onnxruntime.sessions, onnxruntime.cuda"),
            "{e}"
        );
        let e = settings(&with(&[("tract-cpu.bogus", "1")])).unwrap_err();
        assert!(
            e.contains("backend tract-cpu reads: tract-cpu.plan_cache"),
            "{e}"
        );
        let e = settings(&with(&[("coreml.bogus", "1")])).unwrap_err();
        assert!(e.contains("coreml.compute_units"), "{e}");
        let both = settings(&with(&[
            ("onnxruntime.bogus", "1"),
            ("tract-cpu.bogus", "1"),
        ]))
        .unwrap_err();
        assert!(both.starts_with("2 problems in the settings"), "{both}");
        assert!(both.contains("(1) 'parameters': "), "{both}");
        for (ok, value) in [
            ("onnxruntime.cuda", "on"),
            ("coreml.compute_units", "ane"),
            ("onnxruntime.coreml", "on"),
            ("onnxruntime.spinning", "off"),
        ] {
            assert!(settings(&with(&[(ok, value)])).is_ok(), "{ok}");
        }
        // `on` is not a compute unit: refused now that values are checked.
        let e = settings(&with(&[("coreml.compute_units", "on")])).unwrap_err();
        assert!(e.contains("use ane (CPU and Neural Engine)"), "{e}");
        // A value is checked here, so that a typo fails the load rather
        // than only one backend's candidate (the model then loaded on
        // another engine, the typo reported as a skipped backend's reason).
        for key in [
            "onnxruntime.spinning",
            "onnxruntime.cuda",
            "onnxruntime.tensorrt",
        ] {
            let e = settings(&with(&[(key, "sometimes")])).unwrap_err();
            assert!(
                e.contains(&format!(
                    "parameter '{key}': {key} is \"sometimes\"; set on or off"
                )),
                "{e}"
            );
            assert!(settings(&with(&[(key, "off")])).is_ok(), "{key}");
        }
        let huge = "x".repeat(1 << 20);
        for key in ["onnxruntime.spinning", "threads", "backends"] {
            let e = settings(&with(&[(key, &huge)])).unwrap_err();
            assert!(
                e.contains("a value of 1048576 bytes") && e.len() < 300,
                "{key}: {}",
                &e[..300.min(e.len())]
            );
        }
        let e = settings(&with(&[("tract-cpu.plan_cache", "lots")])).unwrap_err();
        assert!(e.contains("from 1 to 64"), "{e}");
        let e = settings(&with(&[("tract-cuda.precision", "fp64")])).unwrap_err();
        assert!(e.contains("fp32, tf32, fp16"), "{e}");
    }

    #[test]
    fn standby_hot_keeps_the_next_backend_loaded() {
        assert!(settings(&with(&[("standby", "hot")])).unwrap().hot_standby);
        assert!(!settings(&with(&[("standby", "lazy")])).unwrap().hot_standby);
        assert!(!settings(&ModelConfig::default()).unwrap().hot_standby);
        let e = settings(&with(&[("standby", "warm")])).unwrap_err();
        assert!(e.contains("parameter 'standby' is \"warm\""), "{e}");
    }

    #[test]
    fn retime_can_be_turned_off_per_model() {
        assert_eq!(
            settings(&with(&[("retime", "false")])).unwrap().retime,
            Some(false)
        );
        assert_eq!(
            settings(&with(&[("retime", "true")])).unwrap().retime,
            Some(true)
        );
        assert_eq!(settings(&ModelConfig::default()).unwrap().retime, None);
        let e = settings(&with(&[("retime", "no")])).unwrap_err();
        assert!(e.contains("parameter 'retime' is \"no\""), "{e}");
    }

    #[test]
    fn eviction_never_pins_the_model() {
        assert!(settings(&with(&[("eviction", "never")])).unwrap().pinned);
        assert!(!settings(&with(&[("eviction", "lru")])).unwrap().pinned);
        assert!(!settings(&ModelConfig::default()).unwrap().pinned);
        let e = settings(&with(&[("eviction", "always")])).unwrap_err();
        assert!(
            e.contains("parameter 'eviction' is \"always\"") && e.contains("\"never\""),
            "{e}"
        );
    }

    #[test]
    fn path_settings_stay_relative() {
        for key in ["coreml.cache_dir", "onnxruntime.coreml.cache_dir"] {
            assert!(settings(&with(&[(key, "cache")])).is_ok());
            for bad in ["/tmp/x", "../x", "a/../../x", ""] {
                let e = settings(&with(&[(key, bad)])).unwrap_err();
                assert!(
                    e.contains("relative to the model's directory"),
                    "{key}={bad}: {e}"
                );
            }
        }
    }
}
