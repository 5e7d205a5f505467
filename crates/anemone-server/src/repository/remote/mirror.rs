//! Keeping a local directory (the view) in step with one or several
//! repository sources, model by model.
//!
//! The view is what the local repository code serves. A model's changed files
//! are first fetched into a staging directory and moved into the view only
//! when all of them arrived, so a broken download never leaves a half-updated
//! model behind. A manifest (`.anemone-manifest.json` in the cache) remembers
//! what each view file was fetched from, so a restart fetches nothing that
//! has not changed.

use super::store::{Listed, Source};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The file in a synced model directory whose time changes whenever the
/// sync changed the model (poll mode compares modification times).
pub const MARKER: &str = ".anemone-synced";

/// Which models a sync fetches.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every model of every source.
    All,
    /// Only these; the others get an empty directory so that they are listed.
    Models(&'a [String]),
}

impl Scope<'_> {
    fn wants(&self, model: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Models(names) => names.iter().any(|n| n == model || n == "*"),
        }
    }
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct Report {
    /// Models whose files changed in the view.
    pub changed: Vec<String>,
    /// Models removed from the view (gone from every source).
    pub removed: Vec<String>,
    /// Files fetched, and their bytes.
    pub fetched: (usize, u64),
    /// Models left as they were, with why (a failed download, a name in two sources).
    pub errors: Vec<(String, String)>,
}

/// What the view holds, by view path: `(source index, size, tag)`.
type Manifest = BTreeMap<String, (usize, u64, String)>;

/// The largest manifest read (one line per file of the repositories: a
/// few hundred bytes each).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// A view directory over several sources.
pub struct Mirror {
    sources: Vec<Source>,
    view: PathBuf,
    staging: PathBuf,
    /// Held (`flock`) by the process syncing the cache: two servers on one
    /// `--model-cache-dir` sync one after the other.
    lock_path: PathBuf,
    manifest_path: PathBuf,
    /// The manifest file's time when this process last read or wrote it:
    /// another time is another server's sync, read again before the next.
    manifest_seen: std::sync::Mutex<Option<std::time::SystemTime>>,
    /// One sync at a time.
    manifest: tokio::sync::Mutex<Manifest>,
    /// The errors last logged, by model ("" for a failed sync), so that a
    /// poll logs an error once, not every few seconds.
    said: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Mirror {
    /// A mirror of `sources` in `cache_dir`, keyed by the sources' names so
    /// that the same `--model-repository` values find their files again.
    pub(crate) fn new(sources: Vec<Source>, cache_dir: &Path) -> Result<Mirror, String> {
        let labels: Vec<String> = sources.iter().map(Source::label).collect();
        let key = labels.join("\n");
        let name = format!(
            "{}-{:016x}",
            sanitize(labels.first().map(String::as_str).unwrap_or("repository")),
            fnv1a(key.as_bytes())
        );
        let base = cache_dir.join(name);
        let view = base.join("repository");
        std::fs::create_dir_all(&view).map_err(|e| {
            format!(
                "cannot create the model cache {}: {e}; choose another with --model-cache-dir",
                view.display()
            )
        })?;
        let manifest_path = base.join(".anemone-manifest.json");
        let manifest = read_manifest(&manifest_path);
        let manifest_seen = std::sync::Mutex::new(modified(&manifest_path));
        Ok(Mirror {
            manifest_seen,
            sources,
            lock_path: base.join(".anemone-lock"),
            staging: base.join("staging"),
            view,
            manifest_path,
            manifest: tokio::sync::Mutex::new(manifest),
            said: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Of the `errors` a sync of `scope` met (by model; "" for the whole
    /// sync), those not logged since they last changed. A sync of every
    /// model forgets the errors it no longer meets, so one that comes back
    /// is logged again.
    pub(crate) fn unsaid(
        &self,
        scope: Scope<'_>,
        errors: &[(String, String)],
    ) -> Vec<(String, String)> {
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(scope, Scope::All) {
            said.retain(|model, _| errors.iter().any(|(m, _)| m == model));
        }
        errors
            .iter()
            .filter(|(model, error)| {
                said.insert(model.clone(), error.clone()).as_ref() != Some(error)
            })
            .cloned()
            .collect()
    }

    /// The local directory the repository code serves.
    pub fn view(&self) -> &Path {
        &self.view
    }

    /// The sources' names, in order.
    pub fn labels(&self) -> Vec<String> {
        self.sources.iter().map(Source::label).collect()
    }

    /// Brings the view in step with the sources for the models in `scope`.
    /// A source that cannot be listed fails the whole sync and changes
    /// nothing; a model whose files cannot all be fetched is left as it was
    /// (see [`Report::errors`]).
    pub async fn sync(&self, scope: Scope<'_>) -> Result<Report, String> {
        let mut manifest = self.manifest.lock().await;
        // Another server on this cache may be syncing it (its staging
        // folders are the same): wait for it, then read what it wrote.
        let _held = cache_lock(&self.lock_path).await;
        let written = modified(&self.manifest_path);
        let theirs = {
            let mut seen = self.manifest_seen.lock().unwrap_or_else(|e| e.into_inner());
            let theirs = written.is_some() && written != *seen;
            *seen = written;
            theirs
        };
        if theirs {
            *manifest = read_manifest(&self.manifest_path);
        }
        let listings = futures_util::future::join_all(self.sources.iter().map(|s| s.list())).await;
        // model -> (source index, its files)
        let mut models: BTreeMap<String, (usize, Vec<Listed>)> = BTreeMap::new();
        let mut report = Report::default();
        let mut conflicts = BTreeSet::new();
        for (index, listing) in listings.into_iter().enumerate() {
            for file in listing? {
                let Some((model, _)) = file.relative.split_once('/') else {
                    continue; // a file at the root is no model
                };
                if !super::super::paths::is_plain_relative(&file.relative) || model.starts_with('.')
                {
                    continue;
                }
                let entry = models
                    .entry(model.to_string())
                    .or_insert_with(|| (index, Vec::new()));
                if entry.0 != index {
                    if conflicts.insert(model.to_string()) {
                        report.errors.push((
                            model.to_string(),
                            format!(
                                "model '{model}' is in two repositories, {} and {}; rename or remove one",
                                self.sources[entry.0].label(),
                                self.sources[index].label()
                            ),
                        ));
                    }
                    continue;
                }
                entry.1.push(file);
            }
        }
        for (model, (index, files)) in &models {
            if conflicts.contains(model) {
                continue;
            }
            let dir = self.view.join(model);
            if !scope.wants(model) {
                let _ = std::fs::create_dir_all(&dir);
                continue;
            }
            match self.sync_model(&mut manifest, model, *index, files).await {
                Ok((0, _, false)) => {}
                Ok((count, bytes, _)) => {
                    report.changed.push(model.clone());
                    report.fetched.0 += count;
                    report.fetched.1 += bytes;
                }
                Err(e) => report.errors.push((model.clone(), e)),
            }
        }
        // Models gone from every source leave the view.
        for name in crate::repository::model_dirs(&self.view).unwrap_or_default() {
            if !models.contains_key(&name) {
                let _ = std::fs::remove_dir_all(self.view.join(&name));
                manifest.retain(|path, _| !path.starts_with(&format!("{name}/")));
                report.removed.push(name);
            }
        }
        self.save(&manifest)?;
        Ok(report)
    }

    /// Fetches a model's changed files and removes its files that are gone;
    /// returns the files fetched, their bytes, and whether anything changed.
    async fn sync_model(
        &self,
        manifest: &mut Manifest,
        model: &str,
        index: usize,
        files: &[Listed],
    ) -> Result<(usize, u64, bool), String> {
        let source = &self.sources[index];
        let stale: Vec<&Listed> = files
            .iter()
            .filter(|f| {
                let held = manifest.get(&f.relative);
                held != Some(&(index, f.size, f.tag.clone()))
                    || std::fs::metadata(self.view.join(&f.relative))
                        .ok()
                        .map(|m| m.len())
                        != Some(f.size)
            })
            .collect();
        let staging = self.staging.join(model);
        let _ = std::fs::remove_dir_all(&staging);
        let mut bytes = 0;
        for file in &stale {
            if let Err(e) = source.fetch(file, &self.staging.join(&file.relative)).await {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(format!(
                    "{e}; model '{model}' keeps what it had in the cache"
                ));
            }
            bytes += file.size;
        }
        for file in &stale {
            let to = self.view.join(&file.relative);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::rename(self.staging.join(&file.relative), &to)
                .map_err(|e| format!("cannot move {} into the cache: {e}", to.display()))?;
            manifest.insert(file.relative.clone(), (index, file.size, file.tag.clone()));
        }
        let _ = std::fs::remove_dir_all(&staging);
        // Files of the model that are gone from the source.
        let listed: BTreeSet<&str> = files.iter().map(|f| f.relative.as_str()).collect();
        let prefix = format!("{model}/");
        // Those the manifest names, and those in the view it does not (a
        // sync killed before it saved the manifest moved them there).
        let mut gone: BTreeSet<String> = manifest
            .keys()
            .filter(|p| p.starts_with(&prefix) && !listed.contains(p.as_str()))
            .cloned()
            .collect();
        let marker = format!("{prefix}{MARKER}");
        let mut on_disk = Vec::new();
        files_below(&self.view.join(model), &prefix, &mut on_disk);
        gone.extend(
            on_disk
                .into_iter()
                .filter(|p| *p != marker && !listed.contains(p.as_str())),
        );
        for path in &gone {
            let _ = std::fs::remove_file(self.view.join(path));
            manifest.remove(path);
        }
        let dir = self.view.join(model);
        prune_empty_dirs(&dir);
        let changed = !stale.is_empty() || !gone.is_empty();
        if changed {
            if !stale.is_empty() {
                tracing::info!(
                    model = %model,
                    "fetched {} file(s), {} bytes, from {}",
                    stale.len(),
                    bytes,
                    source.label()
                );
            }
            std::fs::create_dir_all(&dir).ok();
            std::fs::write(
                dir.join(MARKER),
                format!("{:?}\n", std::time::SystemTime::now()),
            )
            .map_err(|e| format!("cannot write in the cache {}: {e}", dir.display()))?;
        }
        Ok((stale.len(), bytes, changed))
    }

    fn save(&self, manifest: &Manifest) -> Result<(), String> {
        let tmp = self.manifest_path.with_extension("tmp");
        let json = serde_json::to_vec(manifest).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &self.manifest_path))
            .map_err(|e| {
                format!(
                    "cannot write the cache manifest {}: {e}",
                    self.manifest_path.display()
                )
            })?;
        *self.manifest_seen.lock().unwrap_or_else(|e| e.into_inner()) =
            modified(&self.manifest_path);
        Ok(())
    }
}

/// The manifest at `path`: only a regular file of at most
/// [`MAX_MANIFEST_BYTES`]; anything else (none, a pipe, a link to a
/// device, another version's shape) is no manifest, and the cache is
/// fetched again.
fn read_manifest(path: &Path) -> Manifest {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file() && m.len() <= MAX_MANIFEST_BYTES)
        .and_then(|_| crate::bounded_read::read_bounded(path, MAX_MANIFEST_BYTES).ok())
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .unwrap_or_default()
}

/// A file's modification time, if it has one.
fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Waits for the cache's lock file (`flock`, held until the returned file
/// is dropped); `None` where it cannot be made, and the sync goes on
/// without it, as before.
async fn cache_lock(path: &Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mut said = false;
        // SAFETY: flock on a descriptor this function owns.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EWOULDBLOCK) {
                return None;
            }
            if !said {
                tracing::info!(
                    "another server is syncing the model cache ({}); waiting for it",
                    path.display()
                );
                said = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    Some(file)
}

/// The files below `dir` (links not followed), as `prefix` + their paths
/// relative to `dir`, joined by `/`.
fn files_below(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            files_below(&entry.path(), &format!("{prefix}{name}/"), out);
        } else {
            out.push(format!("{prefix}{name}"));
        }
    }
}

/// Removes the empty directories below `dir` (not `dir` itself).
fn prune_empty_dirs(dir: &Path) {
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let path = entry.path();
        if path.is_dir() {
            prune_empty_dirs(&path);
            let _ = std::fs::remove_dir(&path); // fails unless empty
        }
    }
}

/// A name safe as one path component.
fn sanitize(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.chars().take(60).collect()
}

/// FNV-1a: stable across builds and runs (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_logged_once_until_it_changes_or_comes_back() {
        let dir = std::env::temp_dir().join(format!("anemone-unsaid-{}", std::process::id()));
        let mirror = Mirror::new(Vec::new(), &dir).unwrap();
        let clash = |e: &str| vec![("m".to_string(), e.to_string())];
        assert_eq!(mirror.unsaid(Scope::All, &clash("in two")), clash("in two"));
        assert!(
            mirror.unsaid(Scope::All, &clash("in two")).is_empty(),
            "the next poll"
        );
        assert_eq!(
            mirror.unsaid(Scope::All, &clash("other")),
            clash("other"),
            "changed"
        );
        // One model's sync forgets nothing; a whole sync without it does.
        assert!(mirror.unsaid(Scope::Models(&[]), &[]).is_empty());
        assert!(mirror.unsaid(Scope::All, &clash("other")).is_empty());
        assert!(mirror.unsaid(Scope::All, &[]).is_empty());
        assert_eq!(
            mirror.unsaid(Scope::All, &clash("other")),
            clash("other"),
            "back again"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
