//! A model's own Python environment (Triton's `EXECUTION_ENV_PATH`): a
//! directory holding `bin/python3`, or a conda-pack archive (`.tar.gz`,
//! `.tgz`) of one, unpacked once into a folder named by the archive's path,
//! size and modification time, in a cache folder private to the user
//! (`cache_root`: anemone runs the interpreters it finds there).

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
    let envs = cache_root()?;
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
    remove_abandoned_unpacks(&envs);
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

/// Removes the `<tag>.<pid>.partial` folders of unpacks whose process is
/// gone (killed half-way: a server stopped during its first load of a
/// large environment), which would otherwise stay, each as large as the
/// environment, for good. A folder of a process still running is left to it.
fn remove_abandoned_unpacks(envs: &Path) {
    let Ok(entries) = std::fs::read_dir(envs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".partial"))
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            tracing::info!(folder = %entry.path().display(), "removing an unpack its process left half-way");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether process `pid` runs (or may: anything but "no such process").
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// [`cache_root`]'s folder, neither made nor checked.
pub(super) fn cache_root_path() -> PathBuf {
    anemone_core::private_dir::cache_folder("python-envs", "anemone-python-envs")
}

/// The folder environments are unpacked in: `$XDG_CACHE_HOME` (or
/// `~/.cache`) `/anemone/python-envs`, else the temporary folder's
/// `anemone-python-envs-<user>`; made private to this user (mode 0700) and
/// refused when another user owns it or can write it, since anemone runs
/// the interpreters it finds there.
fn cache_root() -> Result<PathBuf> {
    let root = cache_root_path();
    let refuse = |why: String| {
        Error::Config(format!(
            "cannot use {} for Python environments: {why}; set XDG_CACHE_HOME to a folder of your own",
            root.display()
        ))
    };
    anemone_core::private_dir::ensure(&root).map_err(refuse)?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    #[cfg(unix)]
    #[test]
    fn unpacks_left_by_processes_that_are_gone_are_removed_and_no_others() {
        let dir = TempDir::new("python-env-partials");
        // pid_max is at most 2^22 on Linux: this process cannot exist.
        let gone = dir.join("0123abcd.4999999.partial");
        let ours = dir.join(format!("0123abcd.{}.partial", std::process::id()));
        let running = dir.join("0123abcd.1.partial"); // init runs
        let unpacked = dir.join("0123abcd");
        for d in [&gone, &ours, &running, &unpacked] {
            std::fs::create_dir_all(d.join("bin")).unwrap();
        }
        remove_abandoned_unpacks(&dir);
        assert!(!gone.exists(), "the dead process's unpack stayed");
        for kept in [&ours, &running, &unpacked] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }

    #[test]
    fn an_environment_without_python_or_of_another_kind_is_explained() {
        let dir = TempDir::new("python-env-kinds");
        let e = interpreter(&dir).unwrap_err().to_string();
        assert!(e.contains("has no bin/python3"), "{e}");
        let zip = dir.join("env.zip");
        std::fs::write(&zip, b"PK").unwrap();
        let e = interpreter(&zip).unwrap_err().to_string();
        assert!(
            e.contains("neither a directory holding bin/python3 nor a conda-pack archive"),
            "{e}"
        );
    }
}
