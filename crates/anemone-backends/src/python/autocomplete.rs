//! Triton's `auto_complete_config`: a model.py's static method that fills
//! in its configuration (inputs, outputs, `max_batch_size`, dynamic
//! batching) before the model loads, so that its `config.pbtxt` may leave
//! them out.

use super::advice::traceback_hint;
use super::process::{Launch, Process};
use super::wire;
use super::NAME;
use anemone_core::{Error, Result};
use std::path::{Path, PathBuf};

/// Whether a model.py's source names `auto_complete_config`: only then is
/// a process started to call it (a model without one keeps its
/// configuration as written, and its load starts no extra interpreter).
pub fn defines_auto_complete(source: &str) -> bool {
    source.contains("auto_complete_config")
}

/// Runs the model.py's `TritonPythonModel.auto_complete_config` on
/// `config` (the configuration as `GET .../config` shows it) with the
/// interpreter `python` (and its environment's `lib`), in a process of its
/// own that ends when it answers. `None`: the class has no such method.
/// An exception in it (Triton's `ValueError` for a conflicting input, say)
/// is the error, with its message; the traceback goes to the log.
pub fn auto_complete(
    python: &Path,
    lib: Option<&Path>,
    model_py: &Path,
    model: &str,
    config: &serde_json::Value,
) -> Result<Option<serde_json::Value>> {
    let version_dir = model_py.parent().unwrap_or(Path::new("."));
    let launch = Launch {
        python: python.to_path_buf(),
        lib: lib.map(PathBuf::from),
        model_py: model_py.to_path_buf(),
        model_dir: version_dir.parent().unwrap_or(version_dir).to_path_buf(),
        model: model.to_string(),
        args: serde_json::Value::Null,
        decoupled: false,
        metrics: None,
    };
    let mut process = Process::spawn(&launch, None)?;
    let ask = serde_json::json!({ "op": "auto_complete", "config": config });
    let (reply, _) = process.exchange_bounded(&wire::frame(&ask, &[])?, &launch, None)?;
    // Never initialized: nothing to finalize; the process is ended.
    drop(process);
    if !reply.ok {
        return Err(Error::Backend {
            backend: NAME.into(),
            message: {
                let error = reply
                    .error
                    .unwrap_or_else(|| "auto_complete_config failed".into());
                let advice = super::advice::what_to_fix(
                    &error,
                    python,
                    "fix model.py, or complete the config.pbtxt and start anemone with \
                     --disable-auto-complete-config",
                );
                format!(
                    "{error}; {advice}{}",
                    traceback_hint(model, reply.traceback.as_deref())
                )
            },
            retryable: false,
            source: None,
        });
    }
    Ok(reply.config)
}
