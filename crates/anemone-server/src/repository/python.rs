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
    // What no auto-completion can make loadable is refused before model.py
    // runs (its imports may need packages this machine lacks), as Triton
    // checks instance groups before it loads the backend.
    let refused = refused_before_model_py(&config, name);
    if !refused.is_empty() {
        return Err(refused.join("; "));
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

/// The refusals of `config` that do not depend on what its model.py's
/// `auto_complete_config` adds: a `KIND_GPU` instance group without a GPU.
fn refused_before_model_py(config: &ModelConfig, name: &str) -> Vec<String> {
    let mut refused = Vec::new();
    let mut groups = config.clone();
    groups.name = name.to_string();
    for (i, group) in groups.instance_group.iter_mut().enumerate() {
        if group.name.is_empty() {
            group.name = format!("{name}_{i}");
        }
    }
    if let Err(e) = resolve_groups(&mut groups, gpus_visible()) {
        refused.push(e);
    }
    refused
}

/// A Python model's instance groups as Triton hands them to `initialize`
/// (`args["model_config"]`) and shows them: a count under 1 is one
/// instance, and `KIND_AUTO` is `KIND_CPU`, the kind the model is told.
/// A `KIND_GPU` group on a machine without a visible GPU (`gpus`) is
/// refused, as Triton refuses it.
pub(super) fn resolve_groups(config: &mut ModelConfig, gpus: bool) -> Result<(), String> {
    use crate::proto::model_instance_group::Kind;
    for group in &mut config.instance_group {
        group.count = group.count.max(1);
        if group.kind == Kind::Auto as i32 {
            group.kind = Kind::Cpu as i32;
        }
        if group.kind == Kind::Gpu as i32 && !gpus {
            return Err(format!(
                "instance group {} of model {} has kind KIND_GPU but no GPUs are available; use kind \
                 KIND_CPU (or KIND_MODEL, where the model's code places itself), or serve on a machine \
                 with an NVIDIA GPU that CUDA_VISIBLE_DEVICES leaves visible",
                group.name, config.name
            ));
        }
    }
    Ok(())
}

/// Whether this machine has a GPU a Python model may use: Apple Silicon's
/// (Metal), or an NVIDIA GPU the driver lists that `CUDA_VISIBLE_DEVICES`
/// does not hide.
pub(super) fn gpus_visible() -> bool {
    if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        return true;
    }
    let listed = std::fs::read_dir("/proc/driver/nvidia/gpus").map_or(0, |d| d.count());
    nvidia_visible(
        std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        listed,
    )
}

/// Whether `listed` NVIDIA GPUs leave one visible under
/// `CUDA_VISIBLE_DEVICES` (`""` and a list starting with `-1` hide all).
fn nvidia_visible(cuda_visible_devices: Option<&str>, listed: usize) -> bool {
    let hidden = cuda_visible_devices
        .map(str::trim)
        .is_some_and(|v| v.is_empty() || v.starts_with("-1"));
    listed > 0 && !hidden
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::model_instance_group::Kind;
    use crate::proto::ModelInstanceGroup;

    #[test]
    fn python_groups_resolve_as_triton_shows_them() {
        let group = |name: &str, count, kind: Kind| ModelInstanceGroup {
            name: name.into(),
            count,
            kind: kind as i32,
            ..Default::default()
        };
        let mut c = ModelConfig {
            name: "m".into(),
            instance_group: vec![
                group("a", -1, Kind::Auto),
                group("b", 2, Kind::Model),
                group("g", 1, Kind::Gpu),
            ],
            ..Default::default()
        };
        resolve_groups(&mut c, true).unwrap();
        let got: Vec<(i32, i32)> = c.instance_group.iter().map(|g| (g.count, g.kind)).collect();
        assert_eq!(
            got,
            [
                (1, Kind::Cpu as i32),
                (2, Kind::Model as i32),
                (1, Kind::Gpu as i32)
            ]
        );
        let e = resolve_groups(&mut c, false).unwrap_err();
        assert!(
            e.contains("instance group g of model m has kind KIND_GPU but no GPUs are available"),
            "{e}"
        );
    }

    #[test]
    fn cuda_visible_devices_can_hide_every_gpu() {
        assert!(nvidia_visible(None, 1));
        assert!(nvidia_visible(Some("0,1"), 2));
        assert!(nvidia_visible(Some("GPU-8f2c"), 1));
        assert!(!nvidia_visible(Some(""), 1));
        assert!(!nvidia_visible(Some("-1"), 1));
        assert!(!nvidia_visible(None, 0));
    }
}
