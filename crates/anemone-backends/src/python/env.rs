//! A model's own Python environment (Triton's `EXECUTION_ENV_PATH`): a
//! directory holding `bin/python3`, or a conda-pack archive (`.tar.gz`,
//! `.tgz`) of one, unpacked once into a cache folder named by the archive's
//! path, size and modification time.

use anemone_core::{Error, Result};
use std::path::{Path, PathBuf};

/// The interpreter of environment `path`, and its `lib` folder (put on the
/// process's library path, as Triton does).
pub(crate) fn interpreter(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let root = if path.is_dir() {
        path.to_path_buf()
    } else if path.is_file() && is_archive(path) {
        unpacked(path)?
    } else {
        return Err(Error::Config(format!(
            "EXECUTION_ENV_PATH {} is neither a directory holding bin/python3 nor a conda-pack archive \
             (.tar.gz); point it at one (e.g. \"$$TRITON_MODEL_DIRECTORY/env.tar.gz\")",
            path.display()
        )));
    };
    let python = ["bin/python3", "bin/python"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::Config(format!(
                "the environment of EXECUTION_ENV_PATH {} has no bin/python3; pack a whole Python \
                 environment (conda-pack) or give a virtual environment's directory",
                path.display()
            ))
        })?;
    Ok((python, root.join("lib")))
}

fn is_archive(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// The folder `archive` is unpacked in, unpacking it first when no earlier
/// load did (into a temporary folder renamed into place, so a load that
/// stops half-way leaves nothing that looks unpacked).
fn unpacked(archive: &Path) -> Result<PathBuf> {
    use sha2::Digest;
    let meta = std::fs::metadata(archive)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", archive.display())))?;
    let mut hash = sha2::Sha256::new();
    hash.update(archive.as_os_str().as_encoded_bytes());
    hash.update(meta.len().to_le_bytes());
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    hash.update(modified.map_or(0, |d| d.as_nanos()).to_le_bytes());
    let tag: String = hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let envs = std::env::temp_dir().join("anemone-python-envs");
    let dir = envs.join(&tag);
    if dir.is_dir() {
        return Ok(dir);
    }
    let cannot = |why: String| {
        Error::Config(format!(
            "cannot unpack EXECUTION_ENV_PATH {} into {}: {why}",
            archive.display(),
            dir.display()
        ))
    };
    let partial = envs.join(format!("{tag}.{}.partial", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| cannot(e.to_string()))?;
    tracing::info!(archive = %archive.display(), into = %dir.display(), "unpacking a Python environment (once)");
    let out = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(&partial)
        .output()
        .map_err(|e| cannot(format!("cannot run tar: {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(cannot(format!("tar says: {}", err.trim())));
    }
    match std::fs::rename(&partial, &dir) {
        Ok(()) => Ok(dir),
        // Another load unpacked it first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&partial);
            Ok(dir)
        }
        Err(e) => Err(cannot(e.to_string())),
    }
}
