//! Repositories outside the local disk (`--model-repository s3://bucket/prefix`),
//! and several repositories at once.
//!
//! The local repository code serves one directory. When the repository is in
//! a bucket, or when there are several, that directory is a view in the
//! model cache ([`RepositorySources::cache_dir`]) that a [`Mirror`] keeps in
//! step with the sources: at start-up, before each poll-mode scan, and before
//! each load through the repository API. A single local directory is served
//! as it is, with no copy.

mod hook;
pub mod location;
mod mirror;
mod store;

pub use location::{Location, S3Location};
pub use mirror::{Mirror, Report, Scope, MARKER};

use super::ControlMode;
use std::path::PathBuf;

/// The directory `--model-cache-dir` defaults to:
/// `$XDG_CACHE_HOME/anemone/models`, else `$HOME/.cache/anemone/models`, else
/// `anemone-model-cache-<uid>` in the system's temporary directory. The
/// server serves what it finds there, so [`prepare`] uses it only when it
/// is this user's alone ([`anemone_core::private_dir`]).
pub fn default_cache_dir() -> PathBuf {
    anemone_core::private_dir::cache_folder("models", "anemone-model-cache")
}

/// The `--model-repository` values and where remote models are cached.
#[derive(Debug, Clone, Default)]
pub struct RepositorySources {
    /// The values, in order: directories and `s3://` URLs. Empty means the
    /// server's `repository` directory alone.
    pub locations: Vec<String>,
    /// Where models from a bucket (and, with several repositories, the
    /// merged view) are kept. By default, [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
}

/// The directory the repository code should serve, and the mirror that
/// keeps it in step (none for a single local directory).
///
/// A bucket that cannot be listed at start-up is an error, unless the cache
/// holds a previous copy: that copy is then served, with a warning. A model
/// name in two repositories is an error naming both.
pub async fn prepare(
    sources: &RepositorySources,
    default_root: &std::path::Path,
    mode: ControlMode,
    load_models: &[String],
) -> Result<(PathBuf, Option<Mirror>), String> {
    let locations = sources
        .locations
        .iter()
        .map(|l| Location::parse(l))
        .collect::<Result<Vec<_>, _>>()?;
    match locations.as_slice() {
        [] => return Ok((default_root.to_path_buf(), None)),
        [Location::Local(dir)] => return Ok((dir.clone(), None)),
        _ => {}
    }
    let opened = locations
        .iter()
        .map(store::Source::open)
        .collect::<Result<Vec<_>, _>>()?;
    // A folder the operator chose may be shared on purpose (servers that
    // share one cache); the default one must be this user's alone.
    let cache = match &sources.cache_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = default_cache_dir();
            anemone_core::private_dir::ensure(&dir).map_err(|why| {
                format!(
                    "cannot use {} for the model cache: {why}; choose a folder of your own \
                     with --model-cache-dir (or set XDG_CACHE_HOME)",
                    dir.display()
                )
            })?;
            dir
        }
    };
    let mirror = Mirror::new(opened, &cache)?;
    let scope = match mode {
        ControlMode::Explicit => Scope::Models(load_models),
        ControlMode::None | ControlMode::Poll => Scope::All,
    };
    tracing::info!(
        "syncing the model repositories {} into {}",
        mirror.labels().join(", "),
        mirror.view().display()
    );
    match mirror.sync(scope).await {
        Ok(report) => {
            if let Some((_, first)) = report
                .errors
                .iter()
                .find(|(_, e)| e.contains("two repositories"))
            {
                return Err(first.clone());
            }
            log_report(&mirror, scope, &report);
        }
        Err(e) if has_models(mirror.view()) => {
            tracing::warn!(
                "{e}; serving the copy in the cache {}",
                mirror.view().display()
            );
        }
        Err(e) => return Err(e),
    }
    Ok((mirror.view().to_path_buf(), Some(mirror)))
}

/// Logs what a sync of `scope` did and what it could not do (each error
/// once, until it changes: see [`Mirror::unsaid`]).
pub(crate) fn log_report(mirror: &Mirror, scope: Scope<'_>, report: &Report) {
    for (model, error) in mirror.unsaid(scope, &report.errors) {
        tracing::error!(model = %model, "{error}");
    }
    if report.fetched.0 > 0 || !report.removed.is_empty() {
        tracing::info!(
            "model repository synced: {} file(s), {} bytes fetched; changed {:?}; removed {:?}",
            report.fetched.0,
            report.fetched.1,
            report.changed,
            report.removed
        );
    }
}

fn has_models(view: &std::path::Path) -> bool {
    std::fs::read_dir(view)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}
