//! Finding and decoding the model specification of a Core ML file: an
//! `.mlmodel` (one protobuf), or an `.mlpackage` (a directory whose
//! `Manifest.json` names the root model item, normally
//! `Data/com.apple.CoreML/model.mlmodel`, next to its weights).
//!
//! A compiled `.mlmodelc` is Core ML's private format: only Core ML on macOS
//! reads it, so it is refused here with a message that says so.

use super::spec;
use anemone_core::{Error, Result};
use std::path::{Path, PathBuf};

/// The kind of Core ML file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// `.mlmodel`: the specification protobuf, weights inside.
    MlModel,
    /// `.mlpackage`: a directory with `Manifest.json` and `Data/`.
    MlPackage,
    /// `.mlmodelc`: a model compiled by Core ML (macOS only).
    MlModelC,
}

impl Container {
    /// The container of `path`, from its extension.
    pub fn of(path: &Path) -> Option<Container> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "mlmodel" => Some(Container::MlModel),
            "mlpackage" => Some(Container::MlPackage),
            "mlmodelc" => Some(Container::MlModelC),
            _ => None,
        }
    }
}

/// A Core ML model read from disk.
#[derive(Debug, Clone)]
pub struct CoreMlFile {
    /// The file or package as given.
    pub path: PathBuf,
    /// The specification protobuf inside it (`path` itself for `.mlmodel`).
    pub spec_path: PathBuf,
    /// The decoded specification.
    pub model: spec::Model,
    /// Bytes on disk, the whole package included.
    pub file_size: u64,
    /// Bytes of weight files stored next to the specification (an ML
    /// program's `weights/`); 0 for an `.mlmodel`, whose weights are inline.
    pub weight_bytes: u64,
}

/// Reads a `.mlmodel` or `.mlpackage`, with clear errors for a missing,
/// empty, corrupt, truncated or incomplete file.
pub fn read(path: &Path) -> Result<CoreMlFile> {
    if !path.exists() {
        return Err(Error::FileNotFound {
            path: path.to_path_buf(),
        });
    }
    match Container::of(path) {
        Some(Container::MlModel) => {
            if path.is_dir() {
                return Err(invalid(
                    path,
                    "an .mlmodel must be a file, but this is a directory".into(),
                ));
            }
            let (model, size) = decode(path, path)?;
            Ok(CoreMlFile {
                path: path.to_path_buf(),
                spec_path: path.to_path_buf(),
                model,
                file_size: size,
                weight_bytes: 0,
            })
        }
        Some(Container::MlPackage) => read_package(path),
        Some(Container::MlModelC) => Err(invalid(
            path,
            "this is a compiled Core ML model (.mlmodelc), a format only Core ML on macOS reads; \
             anemone describes .mlmodel and .mlpackage files on any system, so give the \
             .mlpackage or .mlmodel it was compiled from"
                .into(),
        )),
        None => Err(invalid(
            path,
            "not a Core ML model: the name must end in .mlmodel, .mlpackage or .mlmodelc".into(),
        )),
    }
}

fn read_package(path: &Path) -> Result<CoreMlFile> {
    if !path.is_dir() {
        return Err(invalid(
            path,
            "an .mlpackage must be a directory (with Manifest.json and Data/), but this is a file; \
             was it copied without its contents, or zipped?"
                .into(),
        ));
    }
    let spec_path = root_model_item(path)?;
    let (model, _) = decode(path, &spec_path)?;
    let file_size = tree_size(path);
    // Everything in the root item's directory apart from the specification is weights.
    let weight_bytes = spec_path
        .parent()
        .map(tree_size)
        .unwrap_or(0)
        .saturating_sub(std::fs::metadata(&spec_path).map_or(0, |m| m.len()));
    Ok(CoreMlFile {
        path: path.to_path_buf(),
        spec_path,
        model,
        file_size,
        weight_bytes,
    })
}

/// The specification file of a package, from its `Manifest.json`.
fn root_model_item(package: &Path) -> Result<PathBuf> {
    let manifest_path = package.join("Manifest.json");
    // A manifest is a few hundred bytes; 1 MiB bounds a hostile one.
    let text = crate::file::read_bounded(&manifest_path, &manifest_path, 1 << 20).and_then(|b| {
        String::from_utf8(b).map_err(|_| Error::InvalidModel {
            path: manifest_path.clone(),
            reason: "not UTF-8 text".into(),
            source: None,
        })
    });
    let text = text.map_err(|e| {
        invalid(
            package,
            format!(
                "not a complete Core ML package: cannot read Manifest.json ({e}); an .mlpackage made by \
                 coremltools or Xcode has Manifest.json and Data/ — copy the whole directory"
            ),
        )
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        invalid(
            package,
            format!("Manifest.json is not valid JSON ({e}); the package is corrupt"),
        )
    })?;
    let root = manifest["rootModelIdentifier"].as_str().ok_or_else(|| {
        invalid(
            package,
            "Manifest.json has no rootModelIdentifier; the package is corrupt".into(),
        )
    })?;
    let item = &manifest["itemInfoEntries"][root];
    let relative = item["path"].as_str().ok_or_else(|| {
        invalid(
            package,
            format!(
                "Manifest.json names root model item {root}, but itemInfoEntries has no path for it; \
                 the package is corrupt"
            ),
        )
    })?;
    let relative = Path::new(relative);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(invalid(
            package,
            format!(
                "Manifest.json gives the root model item the path {}, which leaves the package",
                relative.display()
            ),
        ));
    }
    let data = package.join("Data");
    if !data.is_dir() {
        return Err(invalid(
            package,
            "the package has no Data directory, where the model lives; copy the whole .mlpackage \
             directory"
                .into(),
        ));
    }
    let spec_path = data.join(relative);
    if !spec_path.is_file() {
        return Err(invalid(
            package,
            format!(
                "the root model item Data/{} named by Manifest.json is missing; copy the whole \
                 .mlpackage directory",
                relative.display()
            ),
        ));
    }
    Ok(spec_path)
}

/// Decodes a specification protobuf and checks that it is a whole model.
fn decode(shown: &Path, spec_path: &Path) -> Result<(spec::Model, u64)> {
    let bytes = crate::file::read_bounded(spec_path, shown, crate::file::max_model_file_bytes())?;
    Ok((decode_spec(shown, &bytes)?, bytes.len() as u64))
}

/// Decodes the specification protobuf `bytes` (read from `shown`) and checks
/// the parts every model has: an error for anything else, never a panic.
pub(crate) fn decode_spec(shown: &Path, bytes: &[u8]) -> Result<spec::Model> {
    if bytes.is_empty() {
        return Err(invalid(
            shown,
            "the model specification is empty (0 bytes)".into(),
        ));
    }
    let model: spec::Model = prost::Message::decode(bytes).map_err(|e| Error::InvalidModel {
        path: shown.to_path_buf(),
        reason:
            "not a Core ML model: the specification is not a valid protobuf (corrupt or truncated?)"
                .into(),
        source: Some(e.into()),
    })?;
    // A cut at a field boundary still decodes: check that the parts every
    // model has are all there.
    if model.specification_version <= 0 {
        return Err(invalid(
            shown,
            "not a Core ML model: it has no specification version (corrupt, truncated, or another format?)"
                .into(),
        ));
    }
    if model.r#type.is_none() {
        return Err(invalid(
            shown,
            "not a Core ML model anemone knows: it declares no model type (truncated, or made by a \
             newer Core ML than this anemone knows?)"
                .into(),
        ));
    }
    let Some(description) = model.description.as_ref() else {
        return Err(invalid(
            shown,
            "the model has no description of its inputs and outputs (truncated?)".into(),
        ));
    };
    let has_outputs = !description.output.is_empty()
        || description.functions.iter().any(|f| !f.output.is_empty());
    if !has_outputs {
        return Err(invalid(
            shown,
            "the model declares no outputs (truncated?)".into(),
        ));
    }
    Ok(model)
}

/// Total size of the files under `dir` (or of `dir` itself, if a file).
fn tree_size(dir: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| tree_size(&e.path()))
        .fold(0u64, u64::saturating_add)
}

pub(super) fn invalid(path: &Path, reason: String) -> Error {
    Error::InvalidModel {
        path: path.to_path_buf(),
        reason,
        source: None,
    }
}
