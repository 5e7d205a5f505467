//! The options of Triton's ONNX Runtime backend, as a Triton config writes
//! them, read into anemone's settings: the `parameters` keys
//! `intra_op_thread_count`, `inter_op_thread_count`, `execution_mode`,
//! `enable_mem_arena` and `enable_mem_pattern`, and `optimization { graph {
//! level } }`. Values mean what they mean to Triton's backend (its
//! README, "Other Optimization Options with ONNX Runtime").

use super::settings::{max_threads, Settings};
use crate::proto::model_optimization_policy::execution_accelerators::Accelerator;
use crate::proto::ModelConfig;
use anemone_backends::ort_options::{
    INTER_THREADS_KEY, MEM_ARENA_KEY, MEM_PATTERN_KEY, OPTIMIZATION_KEY, PARALLEL_KEY,
    TRT_ENGINE_CACHE_KEY, TRT_FP16_KEY, TRT_WORKSPACE_KEY,
};

/// The Triton keys read here, for error messages.
pub const KEYS: [&str; 5] = [
    "intra_op_thread_count",
    "inter_op_thread_count",
    "execution_mode",
    "enable_mem_arena",
    "enable_mem_pattern",
];

/// Reads `parameters` entry `key` when it is one of Triton's ONNX Runtime
/// options; `None` when it is not.
pub fn read(key: &str, value: &str, out: &mut Settings) -> Option<Result<(), String>> {
    let v = value.trim();
    Some(match key {
        // 0 leaves ONNX Runtime's default, as in Triton.
        "intra_op_thread_count" => count(key, v).and_then(|n| match n {
            0 => Ok(()),
            n => out.set_threads(n, key),
        }),
        "inter_op_thread_count" => count(key, v).and_then(|n| match n {
            0 => Ok(()),
            n => out.set_backend(INTER_THREADS_KEY, &n.to_string(), key),
        }),
        "execution_mode" => match v {
            "0" => out.set_backend(PARALLEL_KEY, "off", key),
            "1" => out.set_backend(PARALLEL_KEY, "on", key),
            _ => Err(format!(
                "parameter 'execution_mode' is \"{value}\"; set \"0\" (sequential, the default) or \"1\" \
                 (parallel: independent nodes at once, with inter_op_thread_count threads)"
            )),
        },
        "enable_mem_arena" => flag(key, v).and_then(|on| out.set_backend(MEM_ARENA_KEY, on, key)),
        "enable_mem_pattern" => flag(key, v).and_then(|on| out.set_backend(MEM_PATTERN_KEY, on, key)),
        _ => return None,
    })
}

/// `optimization { graph { level } }` as ONNX Runtime's optimization level,
/// with Triton's numbers: -1 basic, 1 extended, 2 none, anything else (0,
/// the default) all. `None` when the config gives no level.
pub fn graph_level(level: Option<i32>, out: &mut Settings) -> Result<(), String> {
    let Some(level) = level else { return Ok(()) };
    let name = match level {
        -1 => "basic",
        1 => "extended",
        2 => "off",
        0 => "all",
        other => {
            return Err(format!(
                "'optimization.graph.level' is {other}; set -1 (basic), 1 (extended), 2 (no graph \
                 optimization) or 0 (all, the default), as Triton's ONNX Runtime backend reads it"
            ))
        }
    };
    out.set_backend(OPTIMIZATION_KEY, name, "optimization.graph.level")
}

/// `optimization { execution_accelerators { ... } }` as Triton's ONNX
/// Runtime backend reads it: a GPU accelerator `tensorrt` turns ONNX
/// Runtime's TensorRT provider on (`onnxruntime.tensorrt`, with its
/// `precision_mode`, `max_workspace_size_bytes` and engine cache), `cuda`
/// its CUDA provider; where the library has no such provider the model
/// runs on the ones it has, as a Triton CPU instance ignores GPU
/// accelerators. CPU accelerators (OpenVINO) are refused: anemone's ONNX
/// Runtime has none. Every refusal is returned, naming its path.
pub fn accelerators(config: &ModelConfig, out: &mut Settings) -> Vec<String> {
    let Some(eas) = config
        .optimization
        .as_ref()
        .and_then(|o| o.execution_accelerators.as_ref())
    else {
        return Vec::new();
    };
    let path = "optimization.execution_accelerators";
    let mut errs = Vec::new();
    for (i, ea) in eas.gpu_execution_accelerator.iter().enumerate() {
        let at = format!("'{path}.gpu_execution_accelerator[{i}]'");
        let read = match ea.name.as_str() {
            "tensorrt" => tensorrt(ea, &at, out),
            "cuda" => cuda(ea, &at, out),
            other => Err(format!(
                "{at} is \"{other}\"; Triton's ONNX Runtime backend takes \"tensorrt\" or \"cuda\" here"
            )),
        };
        errs.extend(read.err());
    }
    for (i, ea) in eas.cpu_execution_accelerator.iter().enumerate() {
        errs.push(format!(
            "'{path}.cpu_execution_accelerator[{i}]' is \"{}\", which anemone's ONNX Runtime does not \
             have; remove it (the model runs on ONNX Runtime's CPU provider, or on tract)",
            ea.name
        ));
    }
    errs
}

/// A `tensorrt` GPU accelerator and its parameters.
fn tensorrt(ea: &Accelerator, at: &str, out: &mut Settings) -> Result<(), String> {
    out.set_backend("onnxruntime.tensorrt", "on", at)?;
    let mut keys: Vec<&String> = ea.parameters.keys().collect();
    keys.sort();
    let cache_on = match ea.parameters.get("trt_engine_cache_enable") {
        Some(v) => flag("trt_engine_cache_enable", v.trim())? == "on",
        None => false,
    };
    for key in keys {
        let v = ea.parameters[key].trim();
        match key.as_str() {
            "precision_mode" => match v {
                "FP32" => out.set_backend(TRT_FP16_KEY, "off", at)?,
                "FP16" => out.set_backend(TRT_FP16_KEY, "on", at)?,
                _ => {
                    return Err(format!(
                        "{at}: precision_mode is \"{v}\"; set \"FP32\" or \"FP16\" (INT8, which needs a \
                         calibration table, is not supported yet)"
                    ))
                }
            },
            "max_workspace_size_bytes" => {
                anemone_backends::settings::check_value(TRT_WORKSPACE_KEY, v)
                    .map_err(|e| format!("{at}: max_workspace_size_bytes: {e}"))?;
                out.set_backend(TRT_WORKSPACE_KEY, v, at)?;
            }
            "trt_engine_cache_enable" => {}
            // Relative to the model's directory (made absolute when the
            // model is prepared), like every path setting.
            "trt_engine_cache_path" if cache_on => {
                if !crate::repository::paths::is_plain_relative(v) {
                    return Err(format!(
                        "{at}: trt_engine_cache_path is \"{v}\"; give a directory relative to the model's \
                         directory, without '..' (a configuration may not choose where the server writes \
                         outside its model)"
                    ));
                }
                out.set_backend(TRT_ENGINE_CACHE_KEY, v, at)?;
            }
            "trt_engine_cache_path" => {}
            other => {
                return Err(format!(
                    "{at}: parameter '{other}' is not supported by anemone yet; it reads precision_mode, \
                     max_workspace_size_bytes, trt_engine_cache_enable and trt_engine_cache_path"
                ))
            }
        }
    }
    if cache_on && !ea.parameters.contains_key("trt_engine_cache_path") {
        return Err(format!(
            "{at}: trt_engine_cache_enable is on without trt_engine_cache_path; give a directory \
             relative to the model's directory for the engines"
        ));
    }
    Ok(())
}

/// A `cuda` GPU accelerator: ONNX Runtime's CUDA provider, without options.
fn cuda(ea: &Accelerator, at: &str, out: &mut Settings) -> Result<(), String> {
    if let Some(key) = ea.parameters.keys().min() {
        return Err(format!(
            "{at}: parameter '{key}' of the CUDA provider is not supported by anemone yet; remove it"
        ));
    }
    out.set_backend("onnxruntime.cuda", "on", at)
}

/// A thread count, 0 allowed.
fn count(key: &str, v: &str) -> Result<usize, String> {
    let max = max_threads();
    match v.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "parameter '{key}' is \"{v}\"; set a number of threads from 1 to {max} (4 per logical \
             core of this machine), or 0 for ONNX Runtime's default"
        )),
    }
}

/// A Triton boolean (`1`/`0`, `true`/`false`) as `on`/`off`.
fn flag(key: &str, v: &str) -> Result<&'static str, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" => Ok("on"),
        "0" | "false" | "off" => Ok("off"),
        _ => Err(format!(
            "parameter '{key}' is \"{v}\"; set \"1\" (on) or \"0\" (off)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(entries: &[(&str, &str)]) -> Result<Settings, String> {
        let mut out = Settings::default();
        for (k, v) in entries {
            read(k, v, &mut out).expect("one of Triton's keys")?;
        }
        Ok(out)
    }

    #[test]
    fn tritons_keys_become_settings() {
        let s = read_all(&[
            ("intra_op_thread_count", "2"),
            ("inter_op_thread_count", "3"),
            ("execution_mode", "1"),
            ("enable_mem_arena", "1"),
            ("enable_mem_pattern", "false"),
        ])
        .unwrap();
        assert_eq!(s.threads, Some(2));
        let want: Vec<(String, String)> = [
            (INTER_THREADS_KEY, "3"),
            (PARALLEL_KEY, "on"),
            (MEM_ARENA_KEY, "on"),
            (MEM_PATTERN_KEY, "off"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(s.backend_settings, want);
        // 0 means ONNX Runtime's default: nothing set.
        let s = read_all(&[
            ("intra_op_thread_count", "0"),
            ("inter_op_thread_count", "0"),
        ])
        .unwrap();
        assert_eq!(s, Settings::default());
        assert!(read("threads", "2", &mut Settings::default()).is_none());
    }

    #[test]
    fn graph_levels_are_tritons() {
        for (level, name) in [(-1, "basic"), (1, "extended"), (2, "off"), (0, "all")] {
            let mut s = Settings::default();
            graph_level(Some(level), &mut s).unwrap();
            assert_eq!(
                s.backend_settings,
                [(OPTIMIZATION_KEY.to_string(), name.to_string())]
            );
        }
        let e = graph_level(Some(3), &mut Settings::default()).unwrap_err();
        assert!(e.contains("'optimization.graph.level' is 3"), "{e}");
    }

    fn accelerators_of(text: &str) -> (Settings, Vec<String>) {
        // The parser checks them too: its refusal is the one a user sees.
        match crate::model_config::parse_pbtxt(text) {
            Ok(config) => {
                let mut out = Settings::default();
                let errs = accelerators(&config, &mut out);
                (out, errs)
            }
            Err(e) => (Settings::default(), vec![e]),
        }
    }

    #[test]
    fn gpu_accelerators_become_onnx_runtime_providers() {
        let (s, errs) = accelerators_of(
            r#"optimization { execution_accelerators { gpu_execution_accelerator: [ {
                 name: "tensorrt"
                 parameters { key: "precision_mode" value: "FP16" }
                 parameters { key: "max_workspace_size_bytes" value: "1073741824" }
                 parameters { key: "trt_engine_cache_enable" value: "1" }
                 parameters { key: "trt_engine_cache_path" value: "trt" } }, { name: "cuda" } ] } }"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let got: Vec<(&str, &str)> = (s.backend_settings.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("onnxruntime.tensorrt", "on"),
                (TRT_WORKSPACE_KEY, "1073741824"),
                (TRT_FP16_KEY, "on"),
                (TRT_ENGINE_CACHE_KEY, "trt"),
                ("onnxruntime.cuda", "on"),
            ]
        );
    }

    #[test]
    fn accelerators_anemone_cannot_honour_are_refused_by_path() {
        let trt = |params: &str| {
            accelerators_of(&format!(
                "optimization {{ execution_accelerators {{ gpu_execution_accelerator: [ {{ name: \"tensorrt\" {params} }} ] }} }}"
            ))
            .1
            .join("; ")
        };
        for (params, says) in [
            (
                r#"parameters { key: "precision_mode" value: "INT8" }"#,
                "INT8",
            ),
            (
                r#"parameters { key: "trt_dla_enable" value: "1" }"#,
                "'trt_dla_enable' is not supported",
            ),
            (
                r#"parameters { key: "trt_engine_cache_enable" value: "1" }"#,
                "without trt_engine_cache_path",
            ),
            (
                r#"parameters { key: "trt_engine_cache_enable" value: "1" } parameters { key: "trt_engine_cache_path" value: "/tmp/x" }"#,
                "relative to the model's directory",
            ),
            (
                r#"parameters { key: "max_workspace_size_bytes" value: "lots" }"#,
                "number of bytes",
            ),
        ] {
            let e = trt(params);
            assert!(
                e.contains("'optimization.execution_accelerators.gpu_execution_accelerator[0]'")
                    && e.contains(says),
                "{params}: {e}"
            );
        }
        let (_, errs) = accelerators_of(
            r#"optimization { execution_accelerators { cpu_execution_accelerator: [ { name: "openvino" } ]
               gpu_execution_accelerator: [ { name: "migraphx" } ] } }"#,
        );
        // Both, in one message.
        let e = errs.join("; ");
        assert!(e.contains("2 problems"), "{e}");
        assert!(
            e.contains("\"migraphx\"") && e.contains("\"openvino\""),
            "{e}"
        );
    }

    #[test]
    fn bad_values_and_conflicts_are_refused_by_name() {
        for (key, bad, says) in [
            ("execution_mode", "2", "\"0\" (sequential"),
            (
                "intra_op_thread_count",
                "-1",
                "or 0 for ONNX Runtime's default",
            ),
            ("inter_op_thread_count", "lots", "from 1 to"),
            ("enable_mem_arena", "yes", "set \"1\" (on) or \"0\" (off)"),
        ] {
            let e = read_all(&[(key, bad)]).unwrap_err();
            assert!(e.contains(key) && e.contains(says), "{key}={bad}: {e}");
        }
        let mut s = Settings {
            threads: Some(4),
            ..Settings::default()
        };
        let e = read("intra_op_thread_count", "2", &mut s)
            .unwrap()
            .unwrap_err();
        assert!(e.contains("mean the same"), "{e}");
        let mut s = Settings::default();
        s.backend_settings.push((PARALLEL_KEY.into(), "off".into()));
        let e = read("execution_mode", "1", &mut s).unwrap().unwrap_err();
        assert!(e.contains("also sets it"), "{e}");
    }
}
