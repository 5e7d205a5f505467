//! The cache of compiled Core ML models: `<cache>/<key>.mlmodelc`, where the
//! key is a SHA-256 of the model's content (every file of a package) and of
//! the compiler's environment (OS version), so a changed model or a new
//! Core ML compiles again, and the same model is compiled once.
//!
//! The compiler itself is Core ML's (`MLModel.compileModelAtURL`, macOS);
//! this module is the portable part: the key, the lookup, progress and
//! timing, and the atomic move of a fresh compilation into place.

use anemone_core::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often a long compilation logs that it is still running.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The cache key of a model file or package: hex SHA-256 of a format tag,
/// `environment` (e.g. the OS version, whose Core ML compiles), and every
/// file's relative path, size and bytes, in sorted order.
pub fn key(model: &Path, environment: &str) -> Result<String> {
    let mut hash = Sha256::new();
    hash.update(b"anemone-coreml-cache-v1\0");
    hash.update(environment.as_bytes());
    hash.update([0]);
    hash_tree(&mut hash, model, Path::new("")).map_err(|e| Error::InvalidModel {
        path: model.to_path_buf(),
        reason: format!("cannot read the model to compute its cache key: {e}"),
        source: Some(e.into()),
    })?;
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn hash_tree(hash: &mut Sha256, path: &Path, relative: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?
            .collect::<std::io::Result<Vec<_>>>()?
            .into_iter()
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        for name in entries {
            hash_tree(hash, &path.join(&name), &relative.join(&name))?;
        }
        return Ok(());
    }
    hash.update(relative.to_string_lossy().as_bytes());
    hash.update([0]);
    hash.update(meta.len().to_le_bytes());
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hash.update(&buf[..n]);
    }
}

/// Where a compiled model with this key lives in `cache_dir`.
pub fn compiled_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("{key}.mlmodelc"))
}

/// Whether [`compile_once`] found the model compiled or compiled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Found in the cache.
    Cached(PathBuf),
    /// Compiled now, in this long.
    Compiled(PathBuf, Duration),
}

impl Outcome {
    /// The compiled model.
    pub fn path(&self) -> &Path {
        match self {
            Outcome::Cached(p) | Outcome::Compiled(p, _) => p,
        }
    }
}

/// Returns the cached compilation of `model` (key `key`) or compiles it with
/// `compile`, which returns a compiled `.mlmodelc` somewhere (Core ML writes
/// it to a temporary directory). The result is moved into the cache
/// atomically, so concurrent loads never see half a model. Logs the start,
/// progress every [`PROGRESS_EVERY`], and the compile time.
pub fn compile_once(
    model: &Path,
    cache_dir: &Path,
    key: &str,
    compile: impl FnOnce() -> Result<PathBuf>,
) -> Result<Outcome> {
    let target = compiled_path(cache_dir, key);
    if target.is_dir() {
        tracing::info!(model = %model.display(), compiled = %target.display(), "Core ML: using the cached compilation");
        return Ok(Outcome::Cached(target));
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| {
        Error::Config(format!(
            "cannot create the Core ML cache directory {}: {e}; set coreml.cache_dir or ANEMONE_CACHE_DIR \
             to a writable directory",
            cache_dir.display()
        ))
    })?;
    tracing::info!(model = %model.display(), "Core ML: compiling (once; the result is cached)");
    let started = Instant::now();
    let (done, ticks) = mpsc::channel::<()>();
    let shown = model.display().to_string();
    let progress = std::thread::spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = ticks.recv_timeout(PROGRESS_EVERY) {
            tracing::info!(model = %shown, elapsed_s = started.elapsed().as_secs(), "Core ML: still compiling");
        }
    });
    let compiled = compile();
    drop(done);
    let _ = progress.join();
    let compiled = compiled?;
    let elapsed = started.elapsed();
    place(&compiled, &target)?;
    tracing::info!(model = %model.display(), compiled = %target.display(), seconds = elapsed.as_secs_f64(), "Core ML: compiled");
    Ok(Outcome::Compiled(target, elapsed))
}

/// Moves `compiled` to `target` through a temporary name next to it.
fn place(compiled: &Path, target: &Path) -> Result<()> {
    let staging = target.with_extension(format!("mlmodelc.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let fail = |what: &str, e: std::io::Error| {
        Error::Internal(format!(
            "cannot {what} the compiled model into the cache {}: {e}",
            target.display()
        ))
    };
    // rename fails across file systems (the compiler's temp dir may be elsewhere): copy then.
    if std::fs::rename(compiled, &staging).is_err() {
        copy_tree(compiled, &staging).map_err(|e| fail("copy", e))?;
        let _ = std::fs::remove_dir_all(compiled);
    }
    match std::fs::rename(&staging, target) {
        Ok(()) => Ok(()),
        // Another load placed it first: theirs is as good as ours.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => Err(fail("move", e)),
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::metadata(from)?.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> crate::test_dir::TempDir {
        crate::test_dir::TempDir::new(&format!("coreml-cache-{name}"))
    }

    #[test]
    fn key_follows_content_and_environment() {
        let dir = temp("key");
        let pkg = dir.join("m.mlpackage");
        std::fs::create_dir_all(pkg.join("Data")).unwrap();
        std::fs::write(pkg.join("Manifest.json"), "{}").unwrap();
        std::fs::write(pkg.join("Data/w.bin"), [1, 2, 3]).unwrap();
        let k1 = key(&pkg, "macOS 15.1").unwrap();
        assert_eq!(k1.len(), 64);
        assert_eq!(k1, key(&pkg, "macOS 15.1").unwrap());
        assert_ne!(k1, key(&pkg, "macOS 15.2").unwrap());
        std::fs::write(pkg.join("Data/w.bin"), [1, 2, 4]).unwrap();
        assert_ne!(k1, key(&pkg, "macOS 15.1").unwrap());
        // A renamed file changes the key even with the same bytes.
        std::fs::rename(pkg.join("Data/w.bin"), pkg.join("Data/v.bin")).unwrap();
        let k2 = key(&pkg, "macOS 15.1").unwrap();
        std::fs::write(pkg.join("Data/v.bin"), [1, 2, 4]).unwrap();
        assert_eq!(k2, key(&pkg, "macOS 15.1").unwrap());
        assert!(key(&dir.join("missing"), "x").is_err());
    }

    #[test]
    fn compiles_once_then_uses_the_cache() {
        let dir = temp("once");
        let cache = dir.join("cache");
        let model = dir.join("m.mlmodel");
        std::fs::write(&model, b"spec").unwrap();
        let fake_compile = |out: &Path| {
            let c = out.join("tmp").join("m.mlmodelc");
            std::fs::create_dir_all(&c).unwrap();
            std::fs::write(c.join("coremldata.bin"), b"compiled").unwrap();
            c
        };
        let first = compile_once(&model, &cache, "abc", || Ok(fake_compile(&dir))).unwrap();
        assert!(matches!(first, Outcome::Compiled(..)));
        assert_eq!(first.path(), cache.join("abc.mlmodelc"));
        assert_eq!(
            std::fs::read(cache.join("abc.mlmodelc/coremldata.bin")).unwrap(),
            b"compiled"
        );
        let second = compile_once(&model, &cache, "abc", || {
            panic!("must not compile a cached model")
        })
        .unwrap();
        assert_eq!(second, Outcome::Cached(cache.join("abc.mlmodelc")));
        // A failed compilation leaves nothing in the cache.
        let err = compile_once(&model, &cache, "def", || {
            Err(Error::Internal("boom".into()))
        });
        assert!(err.is_err());
        assert!(!cache.join("def.mlmodelc").exists());
    }
}
