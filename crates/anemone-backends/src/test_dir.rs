//! A temporary folder for one test, removed when the test ends, also
//! when it fails or panics (the guard is dropped while unwinding).
//!
//! The one copy: the server's unit tests and the CLI's test binaries
//! include this file with `#[path]` (nothing test-side crosses crates).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `<temp>/anemone-<tag>-<pid>-<n>`, created empty; removed with everything
/// in it when dropped. Derefs to its path.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("anemone-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Canonical, so that tests comparing resolved paths agree (a
        // symbolic link such as macOS's /tmp).
        TempDir(dir.canonicalize().unwrap())
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
