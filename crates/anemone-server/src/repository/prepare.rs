//! Preparing one model of a repository for loading, without loading it: the
//! configuration read (or the one a load request gives), the model file of
//! each version found (honouring `default_model_filename`), the file checked
//! against the repository's bounds, the configuration completed against the
//! model, and the [`ModelSpec`] of each version built.
//!
//! `serve` (through [`super::Repository`]) and `anemone doctor
//! --model-repository` both use [`prepare_model`], so they approve exactly the
//! same models.

use super::paths::{self, Kind};
use crate::model_config::{self, Settings};
use crate::proto::{ModelConfig, ModelTensorReshape};
use anemone_core::{Dim, TensorSpec};
use anemone_runtime::reshape::{Reshape, Reshapes};
use anemone_runtime::ModelSpec;
use std::path::{Path, PathBuf};

/// The model files looked for in a version directory, in this order, when
/// the config names none (`default_model_filename`): ONNX, then Core ML
/// (package, specification, compiled). A Core ML model that no backend here
/// can run (no Core ML off macOS) is listed UNAVAILABLE with the reason.
pub const MODEL_FILES: [&str; 4] = [
    "model.onnx",
    "model.mlpackage",
    "model.mlmodel",
    "model.mlmodelc",
];

use super::python::{execution_env, EXECUTION_ENV_PATH, PYTHON, PYTHON_FILE};

/// The largest `config.pbtxt` read: 4 MiB (a real one is a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// How a model's configuration is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRules {
    /// The configuration must be complete (Triton's `--strict-model-config`):
    /// nothing is filled in from the model file.
    pub strict: bool,
    /// A configuration of this name is read from `<model>/configs/<name>.pbtxt`
    /// where the model has one, and `config.pbtxt` where not (Triton's
    /// `--model-config-name`). Checked by [`check_config_name`].
    pub custom_name: Option<String>,
    /// The interpreter that runs a Python model's `auto_complete_config`
    /// (`--python`); `None`: `ANEMONE_PYTHON`'s, or `python3`. A model with
    /// its own `EXECUTION_ENV_PATH` uses that environment's.
    pub python: Option<PathBuf>,
}

/// Refuses a `--model-config-name` that is not a plain file name (it is
/// joined to a path): letters, digits, `_`, `-` and `.`, not first.
pub fn check_config_name(name: &str) -> Result<(), String> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.starts_with('.') || !plain {
        return Err(format!(
            "'{}' is not a config name: give the file name under each model's configs/ \
             without .pbtxt, of letters, digits, '_', '-' and '.' (e.g. h100 for configs/h100.pbtxt)",
            crate::limits::printable(name)
        ));
    }
    Ok(())
}

/// A model ready to load: its effective configuration and one spec per version.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The configuration, completed against the model file.
    pub config: ModelConfig,
    /// Its outputs' classification labels (`label_filename`).
    pub labels: crate::classification::Labels,
    /// One spec per version to load, in ascending version order.
    pub specs: Vec<ModelSpec>,
}

/// The directory of model `name` in the repository whose real path is
/// `root`: `None` unless `name` is one plain path component (no `/`, `\`,
/// `..`, leading `.`) naming a directory whose real path lies inside `root`.
/// A name that leads out (through a link, say) is answered like a missing
/// one, so a request cannot probe the filesystem.
pub fn model_dir(root: &Path, name: &str) -> Option<PathBuf> {
    if name.starts_with('.') || name.contains(['/', '\\']) || !paths::is_plain_relative(name) {
        return None;
    }
    let dir = root.join(name);
    (paths::model_path_kind(root, &dir) == Some(Kind::Directory)).then_some(dir)
}

/// Whether a config leaves the backend to the model's files: no backend,
/// platform or model file named.
fn names_nothing_to_run(c: &ModelConfig) -> bool {
    c.backend.is_empty() && c.platform.is_empty() && c.default_model_filename.is_empty()
}

/// Whether a version directory of `dir` holds a `model.py` and no ONNX
/// model beside it.
fn holds_model_py(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let version = e.path();
        let numbered = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.parse::<u64>().is_ok());
        numbered && version.join(PYTHON_FILE).is_file() && !version.join("model.onnx").exists()
    })
}

/// Prepares model `name` of the repository whose real path is `root`
/// (see [`model_dir`]), with its `config.pbtxt` or `config_override`.
///
/// `memory_available`: bytes the memory budget has free; a model file larger
/// than that is refused before it is read. Every refusal is a message that
/// says what to change.
pub fn prepare_model(
    root: &Path,
    name: &str,
    config_override: Option<ModelConfig>,
    memory_available: Option<u64>,
    rules: &ConfigRules,
) -> Result<Prepared, String> {
    let dir = model_dir(root, name)
        .ok_or_else(|| format!("model '{name}' is not in the model repository"))?;
    let source = config_source(
        &dir,
        rules.custom_name.as_deref(),
        config_override.is_some(),
    );
    let config = match config_override {
        Some(c) => Some(c),
        None => read_config(root, &dir, rules.custom_name.as_deref())?,
    };
    if rules.strict {
        check_strict(config.as_ref())?;
    }
    // Before anything of the model is read or run.
    if let Some(c) = &config {
        super::checksum::verify(root, &dir, c)?;
    }
    // A config that names no backend, platform or file (or none at all),
    // of a model whose versions hold a model.py: a Python model, as
    // Triton's auto-complete finds it.
    let config = match config {
        c if c.as_ref().is_none_or(names_nothing_to_run) && holds_model_py(&dir) => {
            let mut c = c.unwrap_or_default();
            c.backend = PYTHON.to_string();
            Some(c)
        }
        c => c,
    };
    // A Python model's file is model.py unless the config names another.
    let python = config.as_ref().is_some_and(|c| c.backend == PYTHON);
    if let (Some(c), false) = (&config, python) {
        let refused = model_config::python_only_refusals(c);
        if !refused.is_empty() {
            return Err(refused.join("; "));
        }
    }
    let file_name = config
        .as_ref()
        .map(|c| c.default_model_filename.clone())
        .filter(|f| !f.is_empty())
        .or_else(|| python.then(|| PYTHON_FILE.to_string()));
    let file_name = match file_name {
        Some(f) => Some(paths::plain_form(&f).ok_or_else(|| {
            format!(
                "default_model_filename is \"{f}\"; name a file inside the version directory, e.g. \"model.onnx\" \
                 (absolute paths and '..' are refused)"
            )
        })?),
        None => None,
    };
    let (available, version_dirs) =
        super::version_folders::list(root, &dir, name, file_name.as_deref(), config.as_ref())?;
    let policy_config = config.clone().unwrap_or_default();
    // The policy chooses among the version folders, as Triton's does: a
    // chosen folder without a model file fails the load, rather than an
    // older version serving in its place.
    let numbers = match available.is_empty() {
        true => Vec::new(),
        false => version_dirs,
    };
    let versions = model_config::versions_to_load(&policy_config, &numbers)?;
    let empty: Vec<String> = versions
        .iter()
        .filter(|v| !available.iter().any(|(a, _)| a == *v))
        .map(|v| format!("{v}/"))
        .collect();
    if !empty.is_empty() {
        let file = file_name
            .clone()
            .unwrap_or_else(|| MODEL_FILES.join(" or "));
        return Err(format!(
            "the version policy chooses version folder(s) {} with no model file ({file}); put the \
             model file there, or remove the folder",
            empty.join(", ")
        ));
    }
    let files: Vec<(u64, PathBuf)> = available
        .into_iter()
        .filter(|(v, _)| versions.contains(v))
        .collect();
    for (version, file) in &files {
        super::version_folders::check_size(*version, file, memory_available)?;
    }
    let (_, newest) = files
        .last()
        .expect("versions_to_load returns available versions; this is a bug");
    // A Python model's auto_complete_config fills in its config (unless
    // configs must be complete, as Triton's --disable-auto-complete-config).
    let config = match config {
        Some(c) if python && !rules.strict => Some(super::python::auto_complete(
            root, &dir, name, newest, c, rules,
        )?),
        other => other,
    };
    // A Python model declares nothing itself: its config is its metadata.
    let meta = match (&config, python) {
        (Some(c), true) => anemone_backends::python::config::metadata(&model_config::to_json(c)),
        _ => anemone_backends::describe_file(newest),
    }
    .map_err(|e| e.chain_string())?;
    let mut config = model_config::complete(config, name, &meta)?;
    // The file each version is read from, as Triton shows it.
    if config.default_model_filename.is_empty() {
        if let Some(file) = newest.file_name().and_then(|f| f.to_str()) {
            config.default_model_filename = file.to_string();
        }
    }
    let mut settings = model_config::settings(&config)?;
    if python {
        super::python::resolve_groups(&mut config, super::python::gpus_visible())?;
        // Triton gives initialize() the completed config as JSON.
        let json = model_config::to_json(&config).to_string();
        let key = anemone_backends::python::config::MODEL_CONFIG_KEY;
        settings.backend_settings.push((key.to_string(), json));
        if let Some(env) = config.parameters.get(EXECUTION_ENV_PATH) {
            let env = execution_env(root, &dir, &env.string_value)?;
            let key = anemone_backends::python::config::ENV_KEY;
            settings
                .backend_settings
                .push((key.to_string(), env.display().to_string()));
        }
        // A Python model reads its own parameters from that config.
        settings.ignored.clear();
    }
    if !settings.ignored.is_empty() {
        tracing::warn!(
            model = %name,
            "{source} parameters {} are read by no part of anemone (another backend's?) \
             and are ignored, as Triton's backends ignore keys they do not read",
            settings.ignored.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
        );
    }
    warn_ignored_hints(name, &config, &source);
    confine_path_settings(root, &dir, &mut settings)?;
    let inputs = config.input.iter();
    let inputs = inputs.map(|i| (i.name.as_str(), i.dims.as_slice(), i.reshape.as_ref()));
    let mut declared_inputs = declared(&config, &meta.inputs, inputs);
    let ragged = model_config::ragged(&config, python)?;
    // A ragged input is flat in the model: requests send the config's dims
    // after the batch dimension.
    let ragged_dims = config.input.iter().filter(|i| i.allow_ragged_batch);
    served_as_declared(
        &mut declared_inputs,
        ragged_dims.map(|i| (i.name.as_str(), &i.dims[..])),
    );
    let outputs = config.output.iter();
    let outputs = outputs.map(|o| (o.name.as_str(), o.dims.as_slice(), o.reshape.as_ref()));
    let mut declared_outputs = declared(&config, &meta.outputs, outputs);
    // So is a batch output: answers carry the config's dims.
    let cut =
        |name: &str| (config.batch_output.iter()).any(|b| b.target_name.iter().any(|t| t == name));
    let cut_dims = config.output.iter().filter(|o| cut(&o.name));
    served_as_declared(
        &mut declared_outputs,
        cut_dims.map(|o| (o.name.as_str(), &o.dims[..])),
    );
    let reshapes = reshapes(&config)?;
    let optional: Vec<String> = config
        .input
        .iter()
        .filter(|i| i.optional)
        .map(|i| i.name.clone())
        .collect();
    // Completed against the model: every output when the config lists none.
    let served: Vec<String> = config.output.iter().map(|o| o.name.clone()).collect();
    let state_file = |file: &str, bytes: usize| {
        paths::read_in_folder(root, &dir, "initial_state", file, bytes as u64)
            .map_err(|e| format!("cannot read data_file \"{file}\": {e}"))?
            .ok_or_else(|| {
                format!(
                    "data_file \"{file}\" must name a regular file in the model's 'initial_state' \
                     folder (a relative path without '..'; a symbolic link must not lead outside \
                     the model directory)"
                )
            })
    };
    let scheduler = model_config::scheduler_config(&config, &state_file)?;
    let warmup = super::warmup::warmup_samples(root, &dir, &config)?;
    let labels = crate::classification::Labels::read(root, &dir, &config)?;
    let specs = files
        .into_iter()
        .map(|(version, path)| {
            let mut spec = ModelSpec::new(name, path).version(version);
            spec.backends = settings.backends.clone();
            spec.strict = settings.strict;
            spec.settings = settings.backend_settings.clone();
            spec.threads = settings.threads;
            spec.max_concurrency = settings.max_concurrency;
            spec.pinned = settings.pinned;
            spec.hot_standby = settings.hot_standby;
            spec.retime = settings.retime.unwrap_or(true);
            spec.max_batch_size = usize::try_from(config.max_batch_size)
                .ok()
                .filter(|n| *n > 0);
            spec.declared_inputs = Some(declared_inputs.clone());
            spec.declared_output_shapes = Some(declared_outputs.clone());
            spec.optional_inputs = optional.clone();
            spec.declared_outputs = Some(served.clone());
            spec.reshapes = reshapes.clone();
            spec.ragged = ragged.clone();
            spec.batching = scheduler.batching.clone();
            spec.queue = scheduler.queue.clone();
            spec.sequence = scheduler.sequence.clone();
            spec.instance_groups = scheduler.instance_groups.clone();
            spec.response_cache = config.response_cache.as_ref().is_some_and(|c| c.enable);
            spec.warmup = warmup.clone();
            spec
        })
        .collect();
    Ok(Prepared {
        config,
        labels,
        specs,
    })
}

/// What a model's config came from, as its warnings name it: the load
/// request's, or the file read (`config.pbtxt`, or `configs/<name>.pbtxt`
/// with `--model-config-name`).
pub(super) fn config_source(dir: &Path, custom: Option<&str>, from_request: bool) -> String {
    match from_request {
        true => "the load request's config".to_string(),
        false => config_file(dir, custom),
    }
}

/// The config file of the model in `dir` relative to it (it may not exist).
fn config_file(dir: &Path, custom: Option<&str>) -> String {
    custom
        .map(|name| format!("configs/{name}.pbtxt"))
        .filter(|rel| std::fs::symlink_metadata(dir.join(rel)).is_ok())
        .unwrap_or_else(|| "config.pbtxt".to_string())
}

/// Logs the config's Triton hints that anemone does not use, if any;
/// `source` names where the config came from ([`config_source`]).
pub(super) fn warn_ignored_hints(name: &str, config: &ModelConfig, source: &str) {
    let hints = model_config::ignored_hints(config);
    if !hints.is_empty() {
        tracing::warn!(
            model = %name,
            "{source} fields {} are Triton hints that anemone does not use (performance \
             and metrics); they are ignored and change no answer",
            hints.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
        );
    }
}

/// With `--strict-model-config`: the config exists and gives its platform
/// (or backend), and every input and output with its dims, as Triton asks
/// with auto-completion off; nothing is then filled in from the model file
/// but what Triton fills in too (names of groups, the version policy).
fn check_strict(config: Option<&ModelConfig>) -> Result<(), String> {
    let without = "or start the server without --strict-model-config, and anemone fills it in from the model file";
    let Some(c) = config else {
        return Err(format!(
            "there is no config.pbtxt, and --strict-model-config asks for a complete one: write it with the platform, inputs and outputs, {without}"
        ));
    };
    let mut missing = Vec::new();
    if c.platform.is_empty() && c.backend.is_empty() {
        missing.push("'platform' (e.g. \"onnxruntime_onnx\") or 'backend'".to_string());
    }
    if c.input.is_empty() {
        missing.push("the 'input' list".into());
    }
    if c.output.is_empty() {
        missing.push("the 'output' list".into());
    }
    let tensors = (c
        .input
        .iter()
        .map(|i| ("input", &i.name, &i.dims, i.data_type)))
    .chain(
        c.output
            .iter()
            .map(|o| ("output", &o.name, &o.dims, o.data_type)),
    );
    for (role, name, dims, data_type) in tensors {
        // TYPE_INVALID (0): left out. Triton: "model input 'x' must specify 'data_type'".
        if data_type == 0 {
            missing.push(format!("{role} '{name}''s data_type"));
        }
        if dims.is_empty() {
            missing.push(format!("{role} '{name}''s dims"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "--strict-model-config asks for a complete config, and it lacks {}: give them, {without}",
        missing.join(", ")
    ))
}

/// Reads the model's configuration when there is one: `configs/<custom>.pbtxt`
/// where `custom` is given and the model has that file, else `config.pbtxt`;
/// a regular file inside the repository, at most [`MAX_CONFIG_BYTES`].
pub(super) fn read_config(
    root: &Path,
    dir: &Path,
    custom: Option<&str>,
) -> Result<Option<ModelConfig>, String> {
    let rel = &config_file(dir, custom);
    let path = dir.join(rel);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    if paths::model_path_kind(root, &path) != Some(Kind::File) {
        return Err(format!(
            "{rel} is not a regular file inside the model repository; replace it with the file itself"
        ));
    }
    let bytes = anemone_backends::file::read_bounded(&path, Path::new(rel), MAX_CONFIG_BYTES)
        .map_err(|e| e.chain_string())?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{rel} is not UTF-8 text; save it as UTF-8"))?;
    // The parser's messages name config.pbtxt.
    model_config::parse_pbtxt(&text)
        .map(Some)
        .map_err(|e| match e.strip_prefix("config.pbtxt") {
            Some(rest) if custom.is_some() => format!("{rel}{rest}"),
            _ => e,
        })
}

/// Turns each path-valued backend setting (e.g. `coreml.cache_dir`, relative
/// to the model's directory) into a path inside the model's directory, or
/// refuses it when a link on the way leads outside.
fn confine_path_settings(root: &Path, dir: &Path, settings: &mut Settings) -> Result<(), String> {
    for (key, value) in &mut settings.backend_settings {
        if !anemone_backends::settings::PATH_SETTINGS.contains(&key.as_str()) {
            continue;
        }
        if !paths::writable_inside(root, dir, value) {
            return Err(format!(
                "parameter '{key}' is \"{value}\", which does not stay inside the model's directory; give a \
                 directory relative to it, without '..' and not through a symbolic link that leads out"
            ));
        }
        *value = dir.join(&*value).display().to_string();
    }
    Ok(())
}

/// The inputs and outputs the configuration reshapes (Triton's `reshape`),
/// already checked against each other by `model_config::complete`.
fn reshapes(config: &ModelConfig) -> Result<Reshapes, String> {
    let one = |name: &str, dims: &[i64], reshape: &Option<ModelTensorReshape>| {
        let shape = reshape.as_ref()?.shape.clone();
        Some(Reshape::new(name, dims.to_vec(), shape))
    };
    let inputs = config
        .input
        .iter()
        .filter_map(|i| one(&i.name, &i.dims, &i.reshape));
    let outputs = config
        .output
        .iter()
        .filter_map(|o| one(&o.name, &o.dims, &o.reshape));
    Ok(Reshapes {
        inputs: inputs.collect::<Result<_, _>>()?,
        outputs: outputs.collect::<Result<_, _>>()?,
    })
}

/// Gives each of `specs` named in `given` the shape a batch dimension and
/// those dims make: a tensor flat in the model (ragged batching) that
/// requests and answers carry in the config's shape.
fn served_as_declared<'a>(
    specs: &mut [TensorSpec],
    given: impl Iterator<Item = (&'a str, &'a [i64])>,
) {
    for (name, dims) in given {
        if let Some(spec) = specs.iter_mut().find(|s| s.name == name) {
            let dims = dims
                .iter()
                .map(|&d| u64::try_from(d).map_or(Dim::Any, Dim::Fixed));
            spec.shape = Some(std::iter::once(Dim::Any).chain(dims).collect());
        }
    }
}

/// The model's tensors (`engine`: its inputs or outputs) as the
/// configuration declares them (`given`: name, dims, reshape), in the
/// model's order: the engine's shape, narrowed where the config fixes a
/// size the engine leaves dynamic (by the reshape's shape where there is
/// one: the model's side of it). With `max_batch_size > 0` the config's
/// dims leave out the first (batch) dimension, which keeps the engine's.
fn declared<'a>(
    config: &ModelConfig,
    engine: &[TensorSpec],
    given: impl Iterator<Item = (&'a str, &'a [i64], Option<&'a ModelTensorReshape>)> + Clone,
) -> Vec<TensorSpec> {
    let offset = usize::from(config.max_batch_size > 0);
    engine
        .iter()
        .map(|engine| {
            let mut spec = engine.clone();
            let Some((_, dims, reshape)) = given.clone().find(|(n, _, _)| *n == engine.name) else {
                return spec;
            };
            let dims = reshape.map_or(dims, |r| r.shape.as_slice());
            match &mut spec.shape {
                Some(shape) if shape.len() == dims.len() + offset => {
                    for (dim, &size) in shape[offset..].iter_mut().zip(dims) {
                        if let (false, Ok(n)) = (matches!(dim, Dim::Fixed(_)), u64::try_from(size))
                        {
                            *dim = Dim::Fixed(n);
                        }
                    }
                }
                Some(_) => {}
                None if !dims.is_empty() && *dims != [-1] => {
                    let mut shape: Vec<Dim> = Vec::with_capacity(dims.len() + offset);
                    if offset == 1 {
                        shape.push(Dim::Any);
                    }
                    shape.extend(
                        dims.iter()
                            .map(|&d| u64::try_from(d).map_or(Dim::Any, Dim::Fixed)),
                    );
                    spec.shape = Some(shape);
                }
                None => {}
            }
            spec
        })
        .collect()
}
