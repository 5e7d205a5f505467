//! The backend-specific setting keys (`<backend>.<key>`) each backend reads,
//! known whether or not the backend is built in, so a configuration can be
//! checked for misspelt keys on every machine.

/// The `<backend>.<key>` settings `backend` reads; `None` for a name that is
/// not one of anemone's backends. An empty list: the backend reads none.
pub fn known_settings(backend: &str) -> Option<&'static [&'static str]> {
    Some(match backend {
        "coreml" => &crate::coreml::options::KEYS,
        "onnxruntime" => &ONNXRUNTIME,
        "tract-cuda" => &[
            crate::tract::conv_fuse::PRECISION_KEY,
            "tract-cuda.plan_cache",
        ],
        "tract-cpu" => &["tract-cpu.plan_cache"],
        "tract-metal" => &["tract-metal.plan_cache"],
        "python" => &[],
        _ => return None,
    })
}

/// Every key ONNX Runtime's backend reads (its own, and its CoreML provider's).
const ONNXRUNTIME: [&str; 17] = [
    "onnxruntime.sessions",
    "onnxruntime.cuda",
    "onnxruntime.tensorrt",
    "onnxruntime.spinning",
    crate::ort_options::OPTIMIZATION_KEY,
    crate::ort_options::PARALLEL_KEY,
    crate::ort_options::INTER_THREADS_KEY,
    crate::ort_options::MEM_PATTERN_KEY,
    crate::ort_options::MEM_ARENA_KEY,
    crate::ort_options::X64_QUANT_PRECISION_KEY,
    crate::ort_options::TRT_FP16_KEY,
    crate::ort_options::TRT_WORKSPACE_KEY,
    crate::ort_options::TRT_ENGINE_CACHE_KEY,
    "onnxruntime.coreml",
    "onnxruntime.coreml.compute_units",
    "onnxruntime.coreml.model_format",
    "onnxruntime.coreml.cache_dir",
];

/// The settings whose value is `on` or `off` ([`on_off`]).
pub const ON_OFF_SETTINGS: [&str; 8] = [
    "onnxruntime.cuda",
    "onnxruntime.tensorrt",
    "onnxruntime.spinning",
    crate::ort_options::PARALLEL_KEY,
    crate::ort_options::MEM_PATTERN_KEY,
    crate::ort_options::MEM_ARENA_KEY,
    crate::ort_options::X64_QUANT_PRECISION_KEY,
    crate::ort_options::TRT_FP16_KEY,
];

/// The value of `on`/`off` setting `key` (`true` and `false` also read), or
/// the message that refuses it.
pub fn on_off(key: &str, value: &str) -> Result<bool, String> {
    match value.trim() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(format!("{key} is \"{other}\"; set on or off")),
    }
}

/// Checks the value of a setting `known_settings` lists, with the parser
/// and the message of the backend that reads it, without loading anything
/// and whether or not that backend is built in: a server can then refuse a
/// configuration with a bad value, rather than the one backend refusing it
/// at load while another engine takes the model. Keys with no fixed form
/// (directories, and settings of ONNX Runtime's CoreML provider, which it
/// checks itself) pass.
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    let options = anemone_core::LoadOptions {
        threads: None,
        settings: vec![(key.to_string(), value.to_string())],
        ..Default::default()
    };
    if ON_OFF_SETTINGS.contains(&key) {
        return on_off(key, value).map(drop);
    }
    if [
        crate::ort_options::OPTIMIZATION_KEY,
        crate::ort_options::INTER_THREADS_KEY,
    ]
    .contains(&key)
    {
        return crate::ort_options::OrtOptions::from_settings(&options).map(drop);
    }
    if key == crate::ort_options::TRT_WORKSPACE_KEY {
        return crate::ort_options::TensorRtOptions::from_settings(&options).map(drop);
    }
    if key == crate::tract::conv_fuse::PRECISION_KEY {
        return crate::tract::conv_fuse::Precision::parse(value).map(drop);
    }
    if let Some(backend) = key.strip_suffix(&format!(".{}", crate::tract::PLAN_CACHE_KEY)) {
        return crate::tract::plan_cache(backend, &options)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    if key.starts_with("coreml.") && !PATH_SETTINGS.contains(&key) {
        return crate::coreml::options::CoreMlOptions::from_settings(&options, Default::default())
            .map(drop)
            .map_err(|e| e.to_string());
    }
    Ok(())
}

/// The settings whose value is a filesystem path (a directory the backend
/// writes into). A server must not let a client choose such a path freely.
pub const PATH_SETTINGS: [&str; 3] = [
    crate::coreml::options::CACHE_DIR,
    "onnxruntime.coreml.cache_dir",
    crate::ort_options::TRT_ENGINE_CACHE_KEY,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_with_the_backends_own_parsers() {
        let good = [
            ("onnxruntime.spinning", "off"),
            ("onnxruntime.cuda", " on "),
            ("tract-cuda.precision", "tf32"),
            ("tract-cpu.plan_cache", "16"),
            ("coreml.compute_units", "ane"),
            ("coreml.cache_dir", "cache"),
            ("onnxruntime.sessions", "4"),
        ];
        for (k, v) in good {
            assert_eq!(check_value(k, v), Ok(()), "{k} = {v}");
        }
        let bad = [
            ("onnxruntime.spinning", "sometimes", "set on or off"),
            ("onnxruntime.tensorrt", "yes please", "set on or off"),
            ("tract-cuda.precision", "fp64", "fp32, tf32, fp16"),
            ("tract-metal.plan_cache", "0", "from 1 to 64"),
            ("coreml.compute_units", "npu", "ane (CPU and Neural Engine)"),
            ("coreml.allow_low_precision_gpu", "maybe", "true or false"),
        ];
        for (k, v, says) in bad {
            let e = check_value(k, v).unwrap_err();
            assert!(e.contains(k) && e.contains(says), "{k} = {v}: {e}");
        }
    }

    #[test]
    fn every_backend_has_a_list_and_paths_are_known_keys() {
        for b in [
            "coreml",
            "onnxruntime",
            "tract-cpu",
            "tract-cuda",
            "tract-metal",
            "python",
        ] {
            assert!(known_settings(b).is_some(), "{b}");
        }
        assert_eq!(known_settings("python"), Some(&[][..]), "python reads none");
        assert!(known_settings("pytorch").is_none());
        assert_eq!(
            known_settings("tract-cuda"),
            Some(
                &[
                    crate::tract::conv_fuse::PRECISION_KEY,
                    "tract-cuda.plan_cache"
                ][..]
            )
        );
        // Every tract runtime reads its own plan cache size.
        for b in ["tract-cpu", "tract-cuda", "tract-metal"] {
            let key = format!("{b}.{}", crate::tract::PLAN_CACHE_KEY);
            assert!(known_settings(b).unwrap().contains(&key.as_str()), "{key}");
        }
        for key in PATH_SETTINGS {
            let backend = key.split('.').next().unwrap();
            assert!(known_settings(backend).unwrap().contains(&key), "{key}");
        }
    }

    #[cfg(feature = "onnxruntime")]
    #[test]
    fn the_onnxruntime_list_matches_what_it_reads() {
        use crate::ort_coreml::{CACHE_DIR, COMPUTE_UNITS, ENABLED, MODEL_FORMAT};
        for key in [ENABLED, COMPUTE_UNITS, MODEL_FORMAT, CACHE_DIR] {
            assert!(ONNXRUNTIME.contains(&key), "{key}");
        }
    }
}
