//! A model's version folders: which hold a model file (its own, named by
//! `default_model_filename`, or the first of [`MODEL_FILES`]), each file
//! checked against the repository's bounds, and the refusal that says what
//! to move when none does.

use super::paths::{self, Kind};
use super::prepare::MODEL_FILES;
use crate::proto::ModelConfig;
use std::path::{Path, PathBuf};

/// The version folders of model directory `dir` (named `name`) that hold a
/// model file, with it, in version order; and every version folder, sorted.
/// Refuses a missing file that `file_name` names (`default_model_filename`,
/// or a Python model's model.py), and a configuration left inside a
/// version folder where the model directory has none.
pub(super) fn list(
    root: &Path,
    dir: &Path,
    name: &str,
    file_name: Option<&str>,
    config: Option<&ModelConfig>,
) -> Result<(Vec<(u64, PathBuf)>, Vec<u64>), String> {
    let mut available = Vec::new();
    let mut version_dirs = Vec::new();
    for entry in std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the model directory '{name}': {e}"))?
        .filter_map(|e| e.ok())
    {
        let folder = entry.file_name();
        let Some((text, version)) = folder
            .to_str()
            .and_then(|s| Some((s, s.parse::<u64>().ok()?)))
        else {
            continue;
        };
        // `01` beside `1` would be version 1 twice: a version folder's name
        // is the number as written plainly, as Triton reads it.
        if text != version.to_string() {
            tracing::warn!(
                model = %name,
                "version folder '{text}' is ignored: name it '{version}' (a version folder's name is \
                 its number, without leading zeros or a sign)"
            );
            continue;
        }
        if paths::model_path_kind(root, &dir.join(version.to_string())) != Some(Kind::Directory) {
            continue;
        }
        version_dirs.push(version);
        if let Some(file) = model_file(root, dir, version, file_name)? {
            available.push((version, file));
        }
    }
    available.sort_unstable();
    version_dirs.sort_unstable();
    if available.is_empty() {
        if let Some(misplaced) = config_in_version_folder(root, dir, config, &version_dirs) {
            return Err(format!(
                "its config.pbtxt is in the version folder {misplaced}/, and the model directory has \
                 none: move it up to {name}/config.pbtxt (beside the version folders), as Triton \
                 reads it there"
            ));
        }
        if let (Some(f), false) = (file_name, version_dirs.is_empty()) {
            let looked: Vec<String> = version_dirs.iter().map(|v| format!("{v}/")).collect();
            let named = config.is_some_and(|c| !c.default_model_filename.is_empty());
            let (by, fix) = match named {
                true => (
                    "named by default_model_filename",
                    "or fix default_model_filename",
                ),
                false => (
                    "of a Python model (backend: \"python\")",
                    "or name it with default_model_filename",
                ),
            };
            return Err(format!(
                "the model file '{f}' {by} is missing (looked in {}); put it there \
                 (a symbolic link must not lead outside the model repository), {fix}",
                looked.join(", ")
            ));
        }
    }
    Ok((available, version_dirs))
}

/// The first version folder holding a `config.pbtxt` when the model
/// directory has no configuration (`config` is `None`).
fn config_in_version_folder(
    root: &Path,
    dir: &Path,
    config: Option<&ModelConfig>,
    version_dirs: &[u64],
) -> Option<u64> {
    if config.is_some() {
        return None;
    }
    version_dirs.iter().copied().find(|v| {
        let file = dir.join(v.to_string()).join("config.pbtxt");
        paths::model_path_kind(root, &file) == Some(Kind::File)
    })
}

/// The model file of version directory `<dir>/<version>/`: `file_name`
/// (from `default_model_filename`) or the first of [`MODEL_FILES`] there.
/// `Ok(None)` when there is none; an error when there is one that cannot be
/// used (it leads outside the repository, or is not a regular file or a
/// Core ML package directory).
fn model_file(
    root: &Path,
    dir: &Path,
    version: u64,
    file_name: Option<&str>,
) -> Result<Option<PathBuf>, String> {
    let version_dir = dir.join(version.to_string());
    if paths::model_path_kind(root, &version_dir) != Some(Kind::Directory) {
        return Ok(None);
    }
    let candidate = match file_name {
        Some(f) => {
            // Every directory on the way must stay inside before the file is
            // even looked at, so nothing outside is probed.
            if !paths::writable_inside(root, &version_dir, f) {
                return Ok(None);
            }
            version_dir.join(f)
        }
        None => match MODEL_FILES
            .iter()
            .map(|f| version_dir.join(f))
            .find(|p| std::fs::symlink_metadata(p).is_ok())
        {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    if std::fs::symlink_metadata(&candidate).is_err() {
        return Ok(None);
    }
    let shown = candidate
        .strip_prefix(dir)
        .unwrap_or(&candidate)
        .display()
        .to_string();
    match paths::model_path_kind(root, &candidate) {
        Some(Kind::File) => Ok(Some(candidate)),
        Some(Kind::Directory) if is_coreml_package(&candidate) => Ok(Some(candidate)),
        _ => Err(format!(
            "version {version}: {shown} is not a usable model file; it must be a regular file (or a Core ML \
             package directory) inside the model repository, and a symbolic link must not lead outside it"
        )),
    }
}

fn is_coreml_package(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("mlpackage" | "mlmodelc")
    )
}

/// Refuses a model file larger than the memory budget leaves free (or than
/// the process-wide bound on model files), before anything reads it.
pub(super) fn check_size(
    version: u64,
    file: &Path,
    memory_available: Option<u64>,
) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(());
    };
    if !meta.is_file() {
        return Ok(());
    }
    let size = meta.len();
    let max = anemone_backends::file::max_model_file_bytes();
    if size > max {
        return Err(format!(
            "version {version}: the model file is {size} bytes, more than the {max}-byte limit on a model file; \
             keep large weights in ONNX external data files, or raise the limit with {}=<bytes>",
            anemone_backends::file::MAX_MODEL_FILE_BYTES_ENV
        ));
    }
    if let Some(available) = memory_available.filter(|a| size > *a) {
        return Err(format!(
            "version {version}: the model file is {size} bytes, more than the memory budget has free \
             ({available} bytes); raise --memory-budget or unload other models"
        ));
    }
    Ok(())
}
