//! Listing a repository's model folders.

use super::Repository;
use std::path::Path;

impl Repository {
    /// Model directories on disk, sorted; none when the repository cannot
    /// be listed ([`Repository::try_scan`] says why).
    pub fn scan(&self) -> Vec<String> {
        self.try_scan().unwrap_or_default()
    }

    /// Whether the repository has a model folder named `name` (a name
    /// [`Repository::scan`] would list), with one look at that folder
    /// rather than a listing of the repository: a readiness probe asks it.
    pub fn has_folder(&self, name: &str) -> bool {
        !name.is_empty()
            && !name.starts_with('.')
            && !name.contains(['/', '\\', '\0'])
            && self.root.join(name).is_dir()
    }

    /// Model directories on disk, sorted, or why the repository cannot be
    /// listed.
    pub fn try_scan(&self) -> Result<Vec<String>, String> {
        model_dirs(&self.root).map_err(|e| {
            format!(
                "cannot list the model repository {}: {e}",
                self.root.display()
            )
        })
    }

    /// Why start-up could not list the repository, if it could not: it then
    /// loaded nothing.
    pub fn startup_scan_error(&self) -> Option<&str> {
        self.startup_scan_error.get().map(String::as_str)
    }
}

/// The model folders of the repository at `root`: its directories (links
/// followed) whose names are UTF-8 and not hidden, sorted. A folder whose
/// name is not UTF-8 (no model can have that name) is skipped with a
/// warning, once per folder. A repository that cannot be listed (out of
/// file descriptors, a network file system gone) is an error, not an
/// empty repository.
pub fn model_dirs(root: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| match e.file_name().into_string() {
            Ok(name) => Some(name),
            Err(_) => {
                warn_once_not_utf8(&e.path());
                None
            }
        })
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Warns that the folder `path` is skipped, the first time it is seen.
fn warn_once_not_utf8(path: &Path) {
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.insert(path.to_path_buf()) {
        tracing::warn!(
            "skipping the folder {}: its name is not UTF-8, and a model's name must be; rename it \
             to serve it",
            path.display()
        );
    }
}
