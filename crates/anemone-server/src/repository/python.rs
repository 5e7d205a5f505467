//! What preparing a Triton Python model (`backend: "python"`) adds: its
//! file (`model.py`), its own environment (`EXECUTION_ENV_PATH`), and its
//! `auto_complete_config`, run before the configuration is completed.

use super::paths;
use super::prepare::ConfigRules;
use crate::model_config;
use crate::proto::ModelConfig;
use std::path::{Path, PathBuf};

/// The `backend` of Triton's Python models.
pub(super) const PYTHON: &str = anemone_backends::python::NAME;

/// A Python model's file when the config names none, as in Triton.
pub(super) const PYTHON_FILE: &str = "model.py";

/// Triton's parameter naming a Python model's own environment.
pub(super) const EXECUTION_ENV_PATH: &str = "EXECUTION_ENV_PATH";

/// The real path `EXECUTION_ENV_PATH` names: Triton's
/// `$$TRITON_MODEL_DIRECTORY/` or a relative path, inside the model's
/// directory (as everything a configuration names; the message never says
/// what lies outside).
pub(super) fn execution_env(root: &Path, model_dir: &Path, value: &str) -> Result<PathBuf, String> {
    let value = value.trim();
    let relative = value
        .strip_prefix("$$TRITON_MODEL_DIRECTORY")
        .map_or(value, |rest| rest.trim_start_matches('/'));
    let path = model_dir.join(relative);
    match paths::is_plain_relative(relative) {
        true => paths::model_path_kind(root, &path).and_then(|_| paths::real_inside(root, &path)),
        false => None,
    }
    .ok_or_else(|| {
        format!(
            "parameter EXECUTION_ENV_PATH is \"{value}\"; name a conda-pack archive (.tar.gz) or a Python \
             environment's directory inside the model's directory, e.g. \"$$TRITON_MODEL_DIRECTORY/env.tar.gz\" \
             (what a configuration names stays inside the repository; for one interpreter for every \
             model, start anemone with --python)"
        )
    })
}

/// The largest model.py read to see whether it defines
/// `auto_complete_config` (a real one is a few KiB).
const MAX_MODEL_PY_BYTES: u64 = 16 << 20;

/// `config` after the model.py's `auto_complete_config` (Triton's): run by
/// the model's interpreter when its source names one, on the configuration
/// as JSON, read back as the model's configuration. `model_py` is the file
/// of the newest version. Unchanged when the model.py defines none.
pub(super) fn auto_complete(
    root: &Path,
    dir: &Path,
    name: &str,
    model_py: &Path,
    config: ModelConfig,
    rules: &ConfigRules,
) -> Result<ModelConfig, String> {
    use std::io::Read;
    let mut source = String::new();
    let read = std::fs::File::open(model_py)
        .and_then(|f| f.take(MAX_MODEL_PY_BYTES).read_to_string(&mut source));
    if read.is_err() || !anemone_backends::python::defines_auto_complete(&source) {
        return Ok(config);
    }
    let (python, lib) = match config.parameters.get(EXECUTION_ENV_PATH) {
        Some(env) => {
            let env = execution_env(root, dir, &env.string_value)?;
            let (python, lib) = anemone_backends::python::environment_interpreter(&env)
                .map_err(|e| e.chain_string())?;
            (python, Some(lib))
        }
        None => (
            rules
                .python
                .clone()
                .unwrap_or_else(anemone_backends::python::interpreter),
            None,
        ),
    };
    let mut json = model_config::to_json(&config);
    if config.name.is_empty() {
        json["name"] = serde_json::Value::String(name.to_string());
    }
    let completed =
        anemone_backends::python::auto_complete(&python, lib.as_deref(), model_py, name, &json)
            .map_err(|e| e.chain_string())?;
    match completed {
        None => Ok(config),
        Some(json) => model_config::parse_json(&json.to_string()).map_err(|e| {
            format!("auto_complete_config gave a configuration that cannot be read: {e}")
        }),
    }
}
