//! Triton's `--backend-config BACKEND,SETTING=VALUE` (and the global
//! `--backend-config SETTING=VALUE`), as anemone takes them: ONNX Runtime's
//! `intra_op_thread_count` sizes the engine threads (as `--threads`),
//! `enable-global-threadpool=1` makes its sessions share one pool of them,
//! the settings that change nothing here are named in one start-up warning,
//! and any other is refused, so a Triton command line starts and says what
//! was not used.

/// What `--backend-config` values said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackendConfig {
    /// `onnxruntime,intra_op_thread_count=N` (N > 0): engine threads per
    /// inference, where `--threads` is not given.
    pub intra_op_threads: Option<usize>,
    /// `onnxruntime,enable-global-threadpool=1`: every ONNX Runtime session
    /// shares one pool of engine threads (`--threads` of them).
    pub shared_onnxruntime_threads: bool,
    /// The values taken without effect, each with why.
    pub unused: Vec<String>,
}

/// Triton's backends other than ONNX Runtime: their settings size or locate
/// only their own internals, and anemone runs none of their models.
const OTHER_BACKENDS: &[&str] = &[
    "python",
    "tensorflow",
    "pytorch",
    "tensorrt",
    "openvino",
    "fil",
    "dali",
    "vllm",
    "tensorrtllm",
];

/// Reads `--backend-config` values.
pub fn parse(values: &[String]) -> Result<BackendConfig, String> {
    let mut config = BackendConfig::default();
    for value in values {
        let (backend, setting) = match value.split_once(',') {
            Some((backend, setting)) => (Some(backend), setting),
            None => (None, value.as_str()),
        };
        let (key, v) = setting.split_once('=').ok_or_else(|| {
            format!("--backend-config '{value}': expected BACKEND,SETTING=VALUE or SETTING=VALUE")
        })?;
        match (backend, key) {
            (None, "default-max-batch-size") => match v.parse::<u64>() {
                // Triton's 0 is anemone's behaviour: nothing to say.
                Ok(0) => {}
                Ok(_) => config.unused.push(format!(
                    "{value} (anemone does not fill max_batch_size in where a config leaves it \
                     out: give max_batch_size and dynamic_batching in the config)"
                )),
                Err(_) => return Err(format!("--backend-config {value}: expected a number")),
            },
            (Some("onnxruntime"), "intra_op_thread_count") => match v.parse::<usize>() {
                Ok(0) => {}
                Ok(_) => {
                    let n = crate::bytes::parse_threads(v)
                        .map_err(|e| format!("--backend-config {value}: {e}"))?;
                    config.intra_op_threads = Some(n);
                }
                Err(_) => return Err(format!("--backend-config {value}: expected a number")),
            },
            (Some("onnxruntime"), "enable-global-threadpool") => match v {
                "1" | "true" => config.shared_onnxruntime_threads = true,
                "0" | "false" => config.shared_onnxruntime_threads = false,
                _ => return Err(format!("--backend-config {value}: expected 1 or 0")),
            },
            (Some("onnxruntime"), "inter_op_thread_count") => config.unused.push(format!(
                "{value} (anemone runs one engine call per worker thread; --workers and \
                     --threads size them)"
            )),
            (Some(other), _) if OTHER_BACKENDS.contains(&other) => config.unused.push(format!(
                "{value} (anemone has no {other} backend: its models are UNAVAILABLE, saying so)"
            )),
            _ => {
                return Err(format!(
                    "--backend-config '{value}': not a setting anemone takes; it takes \
                     onnxruntime,intra_op_thread_count=N (as --threads), \
                     onnxruntime,enable-global-threadpool=1 (one pool for every session), \
                     onnxruntime,inter_op_thread_count, \
                     default-max-batch-size, and any setting of Triton's other backends ({})",
                    OTHER_BACKENDS.join(", ")
                ))
            }
        }
    }
    Ok(config)
}

impl BackendConfig {
    /// With `onnxruntime,enable-global-threadpool=1`: starts ONNX Runtime's
    /// one pool of `threads` (one per core if `None`) and returns its size.
    /// Called before the engines start.
    pub fn share_onnxruntime_threads(
        &self,
        threads: Option<usize>,
    ) -> Result<Option<usize>, String> {
        let shared = self.shared_onnxruntime_threads.then(|| {
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        });
        #[cfg(feature = "onnxruntime")]
        if let Some(n) = shared {
            anemone_backends::onnxruntime::share_threads(n)?;
        }
        Ok(shared)
    }

    /// Logs, once, the values taken without effect.
    pub fn warn(&self) {
        if !self.unused.is_empty() {
            tracing::warn!(
                "--backend-config values not used by anemone: {}",
                self.unused.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tritons_backend_settings_are_taken_or_named() {
        let config = parse(&values(&[
            "onnxruntime,intra_op_thread_count=3",
            "onnxruntime,enable-global-threadpool=1",
            "python,shm-default-byte-size=16777216",
            "tensorflow,version=2",
            "default-max-batch-size=0",
        ]))
        .unwrap();
        assert_eq!(config.intra_op_threads, Some(3));
        assert!(config.shared_onnxruntime_threads);
        assert_eq!(config.unused.len(), 2, "{:?}", config.unused);
        assert!(config.unused[0].contains("no python backend"));
        let off = parse(&values(&["onnxruntime,enable-global-threadpool=0"])).unwrap();
        assert_eq!(off, BackendConfig::default());
        let config = parse(&values(&["default-max-batch-size=4"])).unwrap();
        assert!(config.unused[0].contains("does not fill max_batch_size in"));
        assert_eq!(parse(&[]).unwrap(), BackendConfig::default());
    }

    #[test]
    fn other_settings_are_refused_saying_what_is_taken() {
        for bad in [
            "onnxruntime,arena_extend_strategy=1",
            "unknown-global=1",
            "mybackend,x=1",
            "onnxruntime",
        ] {
            let e = parse(&values(&[bad])).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        let e = parse(&values(&["onnxruntime,intra_op_thread_count=many"])).unwrap_err();
        assert!(e.contains("expected a number"), "{e}");
        let e = parse(&values(&["onnxruntime,enable-global-threadpool=yes"])).unwrap_err();
        assert!(e.contains("expected 1 or 0"), "{e}");
    }
}
