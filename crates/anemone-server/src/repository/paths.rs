//! Keeping every path the repository opens inside the repository.
//!
//! A model's name comes from a request, and a configuration (from disk or
//! from a load request) may name a model file (`default_model_filename`) or a
//! directory a backend writes into (`coreml.cache_dir`). None of them may
//! lead out of the repository: not by an absolute path, not by `..`, and not
//! through a symbolic link. When a path is refused, the message never says
//! whether something exists outside, or what it is.

use std::path::{Component, Path, PathBuf};

/// Whether `value` is a relative path of plain components (no root, no
/// drive, no `.` or `..`, not empty): the only form a configuration may give.
pub fn is_plain_relative(value: &str) -> bool {
    !value.is_empty()
        && !value.contains('\0')
        && Path::new(value)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// `value` without its `.` parts when what is left is plain (see
/// [`is_plain_relative`]): `./model.onnx` is `model.onnx`, the file Triton
/// opens for it. `None` for anything else.
pub fn plain_form(value: &str) -> Option<String> {
    let parts: Vec<&str> = Path::new(value)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_str().unwrap_or("\0"))
        .collect();
    let plain = parts.join("/");
    is_plain_relative(&plain).then_some(plain)
}

/// `text` with each of `roots` left out of the paths it names: `root/x`
/// becomes `x`, and `root` itself `.` (the filesystem's root is left as is).
pub fn without_roots(text: &str, roots: &[&Path]) -> String {
    let mut text = text.to_string();
    for root in roots {
        let root = root.display().to_string();
        if root.is_empty() || root == "/" {
            continue;
        }
        text = text.replace(&format!("{root}/"), "").replace(&root, ".");
    }
    text
}

/// The real path of `path` when it exists and its real path (links
/// followed) lies under `root` (the repository's real path); `None`
/// otherwise, whatever the reason.
pub fn real_inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    real.starts_with(root).then_some(real)
}

/// Whether the path `base/relative` may be created or written by a backend:
/// `relative` is plain (see [`is_plain_relative`]) and every part of it that
/// exists already resolves (links followed) under `root`.
pub fn writable_inside(root: &Path, base: &Path, relative: &str) -> bool {
    if !is_plain_relative(relative) {
        return false;
    }
    let mut path = base.to_path_buf();
    if real_inside(root, &path).is_none() {
        return false;
    }
    for part in Path::new(relative).components() {
        path.push(part);
        if std::fs::symlink_metadata(&path).is_err() {
            // Neither it nor anything below exists yet: created inside.
            return true;
        }
        if real_inside(root, &path).is_none() {
            return false;
        }
    }
    true
}

/// What a model path is, once it is known to lie inside the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (an ONNX model, a Core ML `.mlmodel`).
    File,
    /// A directory (a Core ML `.mlpackage` or `.mlmodelc`).
    Directory,
}

/// The kind of the model path `path` when it is a regular file or a
/// directory whose real path lies under `root`; `None` for anything else (it
/// does not exist, it leads outside, it is a device, FIFO or socket).
pub fn model_path_kind(root: &Path, path: &Path) -> Option<Kind> {
    let real = real_inside(root, path)?;
    let meta = std::fs::metadata(real).ok()?;
    if meta.is_file() {
        Some(Kind::File)
    } else if meta.is_dir() {
        Some(Kind::Directory)
    } else {
        None
    }
}

/// Reads at most `limit` bytes of `<dir>/<folder>/<file>`, a file a model's
/// configuration names in one of its folders (`warmup`, `initial_state`):
/// `file` a plain relative path (see [`is_plain_relative`]) naming a regular
/// file whose real path lies inside both the model directory `dir` and the
/// repository `root`. `Ok(None)` when it is refused, whatever the reason
/// (the caller says what a good file looks like); an error only for a
/// failed read of a file that passed.
pub fn read_in_folder(
    root: &Path,
    dir: &Path,
    folder: &str,
    file: &str,
    limit: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    if !is_plain_relative(file) {
        return Ok(None);
    }
    let path = dir.join(folder).join(file);
    let real = dir
        .canonicalize()
        .ok()
        .and_then(|model| real_inside(&model, &path))
        .and_then(|_| real_inside(root, &path));
    // Looked at before it is opened: opening a FIFO would wait for a writer.
    let Some(real) = real.filter(|real| std::fs::metadata(real).is_ok_and(|m| m.is_file())) else {
        return Ok(None);
    };
    let Ok(opened) = std::fs::File::open(real) else {
        return Ok(None);
    };
    if !opened.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    opened.take(limit).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_leave_the_paths_a_text_names() {
        let (root, real) = (Path::new("/srv/models"), Path::new("/data/m"));
        assert_eq!(
            without_roots(
                "cannot load /srv/models/b/1/model.onnx (in /data/m)",
                &[root, real]
            ),
            "cannot load b/1/model.onnx (in .)"
        );
        assert_eq!(without_roots("/x/y", &[Path::new("/")]), "/x/y");
    }

    #[test]
    fn plain_relative_paths_only() {
        for ok in ["model.onnx", "sub/model.onnx", "a b.onnx"] {
            assert!(is_plain_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x.onnx",
            "a/../../x",
            "./model.onnx",
            "x\0y",
        ] {
            assert!(!is_plain_relative(bad), "{bad:?}");
        }
    }

    #[test]
    fn plain_forms_drop_only_the_current_folder() {
        for (given, plain) in [
            ("model.onnx", "model.onnx"),
            ("./model.onnx", "model.onnx"),
            ("././sub/./m.onnx", "sub/m.onnx"),
        ] {
            assert_eq!(plain_form(given).as_deref(), Some(plain), "{given}");
        }
        for bad in [
            "",
            ".",
            "./",
            "/etc/passwd",
            "./../x.onnx",
            "a/../x",
            "x\0y",
        ] {
            assert_eq!(plain_form(bad), None, "{bad:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_root_are_outside() {
        let base = crate::test_dir::TempDir::new("paths");
        let (root, outside) = (base.join("repo"), base.join("outside"));
        std::fs::create_dir_all(root.join("m/1")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("x.onnx"), b"x").unwrap();
        std::fs::write(root.join("m/1/model.onnx"), b"x").unwrap();
        let link =
            |target: &Path, at: &str| std::os::unix::fs::symlink(target, root.join(at)).unwrap();
        link(&outside.join("x.onnx"), "m/1/out.onnx");
        link(&outside, "m/1/outdir");
        link(Path::new("/dev/zero"), "m/1/zero.onnx");
        link(&root.join("m/1/model.onnx"), "m/1/in.onnx");
        let root = root.canonicalize().unwrap();
        let m1 = root.join("m/1");
        assert_eq!(
            model_path_kind(&root, &m1.join("model.onnx")),
            Some(Kind::File)
        );
        assert_eq!(
            model_path_kind(&root, &m1.join("in.onnx")),
            Some(Kind::File)
        );
        assert_eq!(model_path_kind(&root, &m1), Some(Kind::Directory));
        for out in ["out.onnx", "zero.onnx", "outdir", "missing.onnx"] {
            assert_eq!(model_path_kind(&root, &m1.join(out)), None, "{out}");
        }
        // Files a config names in a folder of the model: plain files inside only.
        std::fs::create_dir_all(root.join("m/warmup")).unwrap();
        std::fs::write(root.join("m/warmup/x.bin"), b"0123456789").unwrap();
        link(&outside.join("x.onnx"), "m/warmup/out.bin");
        std::os::unix::fs::symlink("/dev/zero", root.join("m/warmup/zero.bin")).unwrap();
        let fifo = root.join("m/warmup/fifo.bin");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let m = root.join("m");
        let read = |file: &str| read_in_folder(&root, &m, "warmup", file, 4).unwrap();
        assert_eq!(read("x.bin").as_deref(), Some(&b"0123"[..]));
        for refused in [
            "out.bin",
            "zero.bin",
            "missing.bin",
            "../warmup/x.bin",
            "/etc/passwd",
            "fifo.bin",
        ] {
            assert_eq!(read(refused), None, "{refused}");
        }
        assert!(
            made.is_ok_and(|s| s.success()),
            "mkfifo made no FIFO to test with"
        );
        assert!(writable_inside(&root, &m1, "cache"));
        assert!(writable_inside(&root, &m1, "cache/deeper"));
        assert!(!writable_inside(&root, &m1, "outdir/cache"));
        assert!(!writable_inside(&root, &m1, "../../../outside"));
        assert!(!writable_inside(&root, &m1, "/tmp"));
    }
}
