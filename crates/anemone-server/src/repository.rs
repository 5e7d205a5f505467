//! A Triton-style model repository: `<root>/<model>/[config.pbtxt]` and
//! `<root>/<model>/<version>/model.onnx` (or a Core ML `model.mlpackage`,
//! `model.mlmodel` or `model.mlmodelc`), loaded into the [`Manager`].
//!
//! A model that fails to load is recorded as UNAVAILABLE with its reason; it
//! never stops the server or the other models. Loads of different models run
//! concurrently.

mod checksum;
mod ensemble;
mod entry;
mod fingerprint;
mod index;
mod load_failure;
mod load_versions;
mod model_dirs;
pub(crate) mod paths;
mod poll;
mod prepare;
mod python;
pub mod remote;
mod startup;
mod version_folders;
mod warmup;

pub use ensemble::ensemble_config;
pub use model_dirs::model_dirs;
pub use prepare::{
    check_config_name, model_dir, prepare_model, ConfigRules, Prepared, MAX_CONFIG_BYTES,
    MODEL_FILES,
};
pub use warmup::{MAX_WARMUP_COUNT, MAX_WARMUP_INPUT_BYTES};

use crate::errors::ApiError;
use crate::proto::ModelConfig;
use anemone_runtime::Manager;
use entry::Kept;
pub use entry::{Entry, State};
use fingerprint::Fingerprint;
use load_failure::{load_refusal, LoadFailure};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Which models are loaded, and who may load and unload them (Triton's
/// `--model-control-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMode {
    /// Load every model at start-up; the load and unload API is refused.
    #[default]
    None,
    /// Load only `--load-model` models at start-up; the API loads and unloads.
    Explicit,
    /// Load every model at start-up and follow changes on disk; the API is refused.
    Poll,
}

impl std::str::FromStr for ControlMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(ControlMode::None),
            "explicit" => Ok(ControlMode::Explicit),
            "poll" => Ok(ControlMode::Poll),
            other => Err(format!(
                "unknown model control mode '{other}'; use none, explicit or poll"
            )),
        }
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    /// Model name.
    pub name: String,
    /// Highest loaded version, or empty.
    pub version: String,
    /// State name (`READY`, `UNAVAILABLE`, ...), empty when never loaded.
    pub state: String,
    /// Why it is unavailable.
    pub reason: String,
}

/// Model loads that run at once by default (Triton's
/// `--model-load-thread-count` default).
pub const MODEL_LOADS: usize = 4;

/// A model repository served through a [`Manager`].
pub struct Repository {
    root: PathBuf,
    /// The real path of `root` (links resolved) as last seen: nothing
    /// outside it is opened. Read again at each load and poll
    /// ([`Repository::real_root`]), so that a repository reached through a
    /// link that is repointed (a deploy's `current -> release-N`) is followed.
    real_root: Mutex<PathBuf>,
    manager: Manager,
    mode: ControlMode,
    /// Known models by name. Held only briefly, never across a load.
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Set once the start-up loads have all finished (successfully or not).
    startup_done: AtomicBool,
    /// The models start-up loads, once it begins.
    startup_models: std::sync::OnceLock<Vec<String>>,
    /// Why start-up could not list the repository, if it could not.
    startup_scan_error: std::sync::OnceLock<String>,
    /// How configurations are read: complete or completed from the model
    /// file (Triton's `--strict-model-config`), from `config.pbtxt` or a
    /// custom one (Triton's `--model-config-name`).
    rules: ConfigRules,
    /// Bounds the model loads that run at once, from start-up, the API or
    /// polling (Triton's `--model-load-thread-count`); by default
    /// [`MODEL_LOADS`] permits.
    loads: tokio::sync::Semaphore,
    /// Told when a load ends: a load of a model that was loading goes on.
    load_ended: tokio::sync::Notify,
    /// How many times a failed load is tried again (Triton's
    /// `--model-load-retry-count`); by default 0.
    load_retries: u32,
    // --- deploy ---
    /// Keeps `root` in step with a bucket or several repositories (see [`remote`]).
    mirror: std::sync::OnceLock<std::sync::Arc<remote::Mirror>>,
}

impl Repository {
    /// Opens a repository directory.
    pub fn open(
        root: impl Into<PathBuf>,
        manager: Manager,
        mode: ControlMode,
    ) -> Result<Repository, String> {
        let root = root.into();
        let real_root = match root.canonicalize() {
            Ok(real) if real.is_dir() => real,
            _ => {
                return Err(format!(
                    "model repository {} is not a directory",
                    root.display()
                ))
            }
        };
        Ok(Repository {
            root,
            real_root: Mutex::new(real_root),
            manager,
            mode,
            entries: Mutex::default(),
            startup_done: AtomicBool::new(false),
            startup_models: std::sync::OnceLock::new(),
            startup_scan_error: std::sync::OnceLock::new(),
            rules: ConfigRules::default(),
            loads: tokio::sync::Semaphore::new(MODEL_LOADS),
            load_ended: tokio::sync::Notify::new(),
            load_retries: 0,
            mirror: std::sync::OnceLock::new(),
        })
    }

    /// At most `n` (at least 1) model loads at once, as Triton's
    /// `--model-load-thread-count`: a repository of many models, or a client
    /// that asks for many loads together, does not read, build and compare
    /// them all at the same time. The others wait their turn, in the state
    /// `LOADING`. An ensemble's own load (checking its steps) takes no turn.
    pub fn with_model_loads(mut self, n: usize) -> Repository {
        self.loads = tokio::sync::Semaphore::new(n.max(1));
        self
    }

    /// A failed model load is tried `n` more times before the model is
    /// UNAVAILABLE (or, for a reload, before the previous load keeps
    /// serving), as Triton's `--model-load-retry-count`. Each failed try is
    /// logged with its reason. By default 0: one try.
    pub fn with_load_retries(mut self, n: u32) -> Repository {
        self.load_retries = n;
        self
    }

    /// With `strict`, every model's config must be complete (Triton's
    /// `--strict-model-config`, `--disable-auto-complete-config`): a model
    /// whose config is missing, or leaves out its inputs, outputs, their
    /// dims, or its platform, fails to load, saying what is missing.
    pub fn with_strict_config(mut self, strict: bool) -> Repository {
        self.rules.strict = strict;
        self
    }

    /// Runs Python models' `auto_complete_config` with this interpreter
    /// (`--python`); `None`: `ANEMONE_PYTHON`'s, or `python3`.
    pub fn with_python(mut self, python: Option<PathBuf>) -> Repository {
        self.rules.python = python;
        self
    }

    /// Reads each model's configuration from `configs/<name>.pbtxt` in its
    /// folder where there is one, and from `config.pbtxt` where not, as
    /// Triton's `--model-config-name` (e.g. `h100` for a configuration
    /// kept for one kind of machine). Refused unless the name is a plain
    /// file name ([`check_config_name`]).
    pub fn with_config_name(mut self, name: Option<String>) -> Result<Repository, String> {
        if let Some(name) = &name {
            check_config_name(name)?;
        }
        self.rules.custom_name = name;
        Ok(self)
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The control mode.
    pub fn mode(&self) -> ControlMode {
        self.mode
    }

    /// The real path of the repository now: `root` with its links resolved
    /// again (the last one seen if it cannot be, say while a link is
    /// being replaced).
    pub(crate) fn real_root(&self) -> PathBuf {
        let mut last = self.real_root.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(real) = self.root.canonicalize() {
            if real.is_dir() {
                *last = real;
            }
        }
        last.clone()
    }

    /// `text` with the repository's own path left out of the paths it
    /// names (`/srv/models/m/1/model.onnx` becomes `m/1/model.onnx`): what
    /// clients of a model's routes see of its load failure. The server's
    /// layout is the operator's, shown in the log and the repository index
    /// (an API that can be restricted), not to every client.
    pub fn relative_paths(&self, text: &str) -> String {
        let real = self
            .real_root
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        paths::without_roots(text, &[&self.root, &real])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the repository knows of `name`.
    pub fn entry(&self, name: &str) -> Option<Entry> {
        self.lock().get(name).cloned()
    }

    /// What the classification extension needs of model `name`: whether it
    /// has a batch dimension (`max_batch_size > 0`), and its outputs' labels.
    pub fn classes(&self, name: &str) -> (bool, std::sync::Arc<crate::classification::Labels>) {
        let entries = self.lock();
        let Some(entry) = entries.get(name) else {
            return (false, Default::default());
        };
        let batched = entry.config.as_ref().is_some_and(|c| c.max_batch_size > 0);
        (batched, std::sync::Arc::clone(&entry.labels))
    }

    /// Loads (or reloads) a model with its config, or `config_override`.
    pub async fn load(
        &self,
        name: &str,
        config_override: Option<ModelConfig>,
    ) -> Result<(), ApiError> {
        self.load_in_turn(name, config_override, true).await
    }

    /// [`Repository::load`], for a model's own code (Triton's model loading
    /// API): without a turn among the loads (`--model-load-thread-count`),
    /// since the calling model may be loading itself, holding one. Models
    /// loading the models they need in `initialize`, as many as there are
    /// turns, waited for each other until their init timeouts (600 s).
    pub async fn load_for_model(
        &self,
        name: &str,
        config_override: Option<ModelConfig>,
    ) -> Result<(), ApiError> {
        self.load_in_turn(name, config_override, false).await
    }

    async fn load_in_turn(
        &self,
        name: &str,
        config_override: Option<ModelConfig>,
        take_turn: bool,
    ) -> Result<(), ApiError> {
        // A name that is not a directory inside the repository (`..`, a
        // slash, a link that leads out) is answered like a missing one.
        let real_root = self.real_root();
        let Some(dir) = model_dir(&real_root, name) else {
            // A folder found by the scan whose name a model's cannot be (the
            // API refuses such names before they come here).
            if name.contains('\\') && real_root.join(name).is_dir() {
                let reason = "its folder's name has a '\\', which a model name must not have \
                              (a path separator on Windows); rename the folder";
                let mut entries = self.lock();
                let entry = entries
                    .entry(name.to_string())
                    .or_insert_with(Entry::unloaded);
                entry.state = State::Unavailable;
                entry.reason = reason.to_string();
                return Err(ApiError::invalid(format!(
                    "failed to load model '{}': {reason}",
                    crate::limits::printable(name)
                )));
            }
            // "failed to load" starts every load error, as in Triton's.
            return Err(ApiError::not_found(format!(
                "failed to load model '{name}': it is not in the repository {}",
                self.root.display()
            )));
        };
        // The files as they are, read once and outside the lock: what a load
        // of an unchanged model compares, and what this load records.
        let fingerprint = Fingerprint::take(&dir);
        let keep;
        // A load of a model that is loading waits for that load to end, then
        // goes on (as Triton's does: two clients, or two models' code,
        // loading one shared model both succeed). A load that never ends is
        // bounded by its own limits (a Python model's initialize, 600 s).
        loop {
            // Listening before looking, so that a load ending in between
            // is not missed.
            let ended = self.load_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            {
                let mut entries = self.lock();
                let entry = entries
                    .entry(name.to_string())
                    .or_insert_with(Entry::unloaded);
                if entry.state != State::Loading {
                    // As Triton: a load of a model that serves, unchanged on
                    // disk since it was loaded (and not from an override),
                    // does nothing. A client that loads to make sure a model
                    // is there keeps its open sequences, its cached answers
                    // and its statistics.
                    let unchanged = config_override.is_none()
                        && entry.state == State::Ready
                        && entry.reason.is_empty()
                        && !entry.overridden
                        && entry
                            .fingerprint
                            .as_ref()
                            .is_some_and(|seen| fingerprint.unchanged_since(seen))
                        && (self.manager.model(name, None).is_ok()
                            // An ensemble whose composing model was unloaded
                            // is loaded again, which loads that model.
                            || matches!(
                                self.manager.ensemble_state(name),
                                Some(anemone_runtime::ModelState::Ready)
                            ));
                    if unchanged {
                        // Verified the same: kept, so that files since settled
                        // are no longer read to compare.
                        entry.fingerprint = Some(fingerprint);
                        tracing::info!(model = %name, "load: the model is loaded and unchanged on disk; nothing to do");
                        return Ok(());
                    }
                    // What a version left unchanged on disk is compared with:
                    // the last load, when it loaded every version (after a
                    // failed reload the files seen are not those serving).
                    keep = match (&entry.fingerprint, &entry.config) {
                        (Some(seen), Some(config))
                            if config_override.is_none()
                                && entry.state == State::Ready
                                && entry.reason.is_empty()
                                && !entry.overridden =>
                        {
                            Some(Kept {
                                seen: seen.clone(),
                                now: fingerprint.clone(),
                                config: config.clone(),
                            })
                        }
                        _ => None,
                    };
                    entry.state_before_load = entry.state;
                    entry.state = State::Loading;
                    break;
                }
            }
            ended.await;
        }
        let overridden = config_override.is_some();
        let result = (self.load_versions(name, config_override, take_turn, keep)).await;
        let mut entries = self.lock();
        let entry = entries
            .get_mut(name)
            .expect("inserted above; this is a bug");
        entry.fingerprint = Some(fingerprint);
        entry.overridden = overridden;
        let answer = match result {
            Ok((config, labels, versions)) => {
                entry.failed_version = None;
                entry.state = State::Ready;
                entry.reason.clear();
                entry.config = Some(config);
                entry.labels = std::sync::Arc::new(labels);
                entry.versions = versions;
                Ok(())
            }
            // A failed reload leaves the previous load serving, as Triton does.
            Err(LoadFailure {
                reason,
                retry_later,
                ..
            }) if entry.state_before_load == State::Ready && !entry.versions.is_empty() => {
                entry.state = State::Ready;
                entry.reason = format!("reload failed, still serving the previous load: {reason}");
                Err(load_refusal(
                    retry_later,
                    format!(
                        "failed to load model '{name}' (the previous load keeps serving): {reason}"
                    ),
                ))
            }
            Err(LoadFailure {
                reason,
                retry_later,
                version,
            }) => {
                entry.state = State::Unavailable;
                entry.reason = reason.clone();
                entry.versions.clear();
                entry.failed_version = version;
                Err(load_refusal(
                    retry_later,
                    format!("failed to load model '{name}': {reason}"),
                ))
            }
        };
        drop(entries);
        // The loaded ensembles that use a model loaded again are checked
        // against it as it now is.
        if answer.is_ok() && self.manager.ensemble(name).is_none() {
            self.recheck_ensembles_using(name);
        }
        // The loads that waited for this one go on.
        self.load_ended.notify_waiters();
        answer
    }

    /// Unloads every version of a model.
    pub fn unload(&self, name: &str) -> Result<(), ApiError> {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            // As Triton: unloading what is not loaded (or not there) does
            // nothing, so a client's clean-up unload never fails.
            tracing::info!(model = %name, "unload: the model is not loaded; nothing to do");
            return Ok(());
        };
        if entry.state == State::Loading {
            return Err(ApiError::unavailable(format!(
                "model '{name}' is being loaded; unload it afterwards"
            )));
        }
        let _ = self.manager.unload_model(name, None);
        self.manager.unload_ensemble(name);
        entry.state = State::Unloaded;
        entry.reason.clear();
        entry.versions.clear();
        // A name the repository does not have (a --load-model typo) is
        // forgotten, not listed as unloaded.
        if model_dir(&self.real_root(), name).is_none() {
            entries.remove(name);
        }
        Ok(())
    }

    /// Whether start-up loading is over and every model that should be
    /// loaded is ready (Triton's strict readiness): an ensemble whose
    /// composing model was unloaded is not, as the index says.
    pub fn all_ready(&self) -> bool {
        use anemone_runtime::ModelState;
        self.startup_done.load(Ordering::Acquire)
            && self.lock().iter().all(|(name, e)| match e.state {
                State::Unloaded => true,
                State::Ready => !matches!(
                    self.manager.ensemble_state(name),
                    Some(ModelState::Unavailable { .. })
                ),
                // Loaded again, it serves its previous load meanwhile: ready,
                // as Triton's stays (a reload must not take a replica out
                // of its Service).
                State::Loading => e.state_before_load == State::Ready,
                State::Unavailable => false,
            })
    }
}
