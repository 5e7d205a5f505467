//! The stub's compiled code, kept between model processes: each process
//! used to compile the stub and anemone's `triton_python_backend_utils`
//! (91 KB of source) as it started, 20–35 ms of CPU on a 2-core VM, where
//! reading the compiled code (`marshal`) takes 4–8 ms.
//!
//! The folder is `$XDG_CACHE_HOME` (or `~/.cache`) `/anemone/python-stub`,
//! private to the user as the unpacked environments' ([`private_dir`]):
//! the process runs what it reads there. Each file is named by the
//! sources' digest and the interpreter's bytecode tag, so another anemone
//! or another Python never reads it; a process that cannot read or write
//! there compiles, as before. The reading and writing is [`super::process`]'s
//! boot program (Python).
//!
//! [`private_dir`]: anemone_core::private_dir

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Every source the stub compiles ([`key`]'s digest covers them).
const SOURCES: [&str; 8] = [
    super::STUB,
    super::UTILS,
    super::UTILS_CONFIG,
    super::UTILS_METRICS,
    super::UTILS_MODELS,
    super::UTILS_RESPONSES,
    super::FRAMES,
    super::CALLS,
];

/// The environment variable that gives the stub the folder (unset: no
/// folder could be used; each process compiles).
pub(super) const FOLDER_ENV: &str = "ANEMONE_PYTHON_CODE_CACHE";

/// The environment variable that gives the stub the sources' digest.
pub(super) const KEY_ENV: &str = "ANEMONE_PYTHON_CODE_KEY";

/// The folder, made private to this user on first use, or `None` (logged
/// once at debug level) where it cannot be.
pub(super) fn folder() -> Option<&'static Path> {
    static FOLDER: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOLDER
        .get_or_init(|| {
            let dir = path()?;
            match anemone_core::private_dir::ensure(&dir) {
                Ok(()) => Some(dir),
                Err(why) => {
                    tracing::debug!(
                        "Python model processes compile anemone's stub each time: cannot use {}: {why}",
                        dir.display()
                    );
                    None
                }
            }
        })
        .as_deref()
}

/// [`folder`]'s path, neither made nor checked; `None` without a cache
/// folder (no `XDG_CACHE_HOME` or `HOME`).
pub(super) fn path() -> Option<PathBuf> {
    Some(
        anemone_core::private_dir::user_cache()?
            .join("anemone")
            .join("python-stub"),
    )
}

/// The digest of every source the stub compiles (the first 16 bytes of
/// their SHA-256, in hex): a changed stub never reads another's code.
pub(super) fn key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for source in SOURCES {
            hash.update(source.len().to_le_bytes());
            hash.update(source.as_bytes());
        }
        hash.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// The folders the Python backend keeps in the user's cache, named for
/// `anemone doctor`: unpacked `EXECUTION_ENV_PATH` archives, and the
/// stub's compiled code (absent without `XDG_CACHE_HOME` or `HOME`).
pub fn cache_folders() -> Vec<(&'static str, PathBuf)> {
    let mut out = vec![(
        "unpacked Python environments (EXECUTION_ENV_PATH)",
        super::env::cache_root_path(),
    )];
    if let Some(path) = path() {
        out.push(("the Python stub's compiled code", path));
    }
    out
}
