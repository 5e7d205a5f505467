//! Loading a model's versions: an ensemble, or each version's engines in
//! its turn among the loads, tried again as `--model-load-retry-count`
//! allows, keeping the versions that nothing changed.

use super::entry::Kept;
use super::load_failure::LoadFailure;
use super::{model_dir, prepare_model, Prepared, Repository};
use crate::proto::ModelConfig;

impl Repository {
    /// Loads an ensemble, or, in its turn among the loads, the model (tried
    /// again on failure as `load_retries` allows).
    pub(super) async fn load_versions(
        &self,
        name: &str,
        config_override: Option<ModelConfig>,
        take_turn: bool,
        keep: Option<Kept>,
    ) -> Result<(ModelConfig, crate::classification::Labels, Vec<u64>), LoadFailure> {
        if let Some(config) = self.ensemble_config(name, config_override.as_ref())? {
            // Its outputs' labels, for the classification extension.
            let real_root = self.real_root();
            let labels = match model_dir(&real_root, name) {
                Some(dir) => crate::classification::Labels::read(&real_root, &dir, &config)?,
                None => Default::default(),
            };
            let from_request = config_override.is_some();
            let (config, versions) = self.load_ensemble(name, config, from_request).await?;
            return Ok((config, labels, versions));
        }
        // Its turn among the loads (`--model-load-thread-count`); never
        // closed, so this waits and cannot fail.
        let _turn = match take_turn {
            true => Some(self.loads.acquire().await),
            false => None,
        };
        let tries = self.load_retries + 1;
        let mut tried = 1;
        loop {
            match (self.load_engines(name, config_override.clone(), keep.as_ref())).await {
                Err(reason) if tried < tries => {
                    tracing::warn!(model = %name, "load try {tried} of {tries} failed, trying again: {}", reason.reason);
                    tried += 1;
                }
                Err(failed) if tries > 1 => {
                    return Err(LoadFailure {
                        reason: format!("{} (tried {tries} times)", failed.reason),
                        ..failed
                    })
                }
                done => return done,
            }
        }
    }

    /// One try at loading a model that is not an ensemble: reads and checks
    /// its files, then loads each version's engines; on a failure unloads
    /// what this try loaded and says why.
    async fn load_engines(
        &self,
        name: &str,
        config_override: Option<ModelConfig>,
        keep: Option<&Kept>,
    ) -> Result<(ModelConfig, crate::classification::Labels, Vec<u64>), LoadFailure> {
        // Not `metrics()`: its snapshot of every model made loading n models
        // cost n², and ran every backend's probe (a Python interpreter
        // started for a repository without a Python model).
        let (used, budget) = self.manager.memory();
        // With eviction, room is made at load time, against what the engines
        // are measured to hold (a file is only an estimate of it).
        let evicting = self.manager.eviction_policy() == anemone_runtime::EvictionPolicy::Lru;
        let available = budget.filter(|_| !evicting).map(|b| b.saturating_sub(used));
        let Prepared {
            config,
            labels,
            specs,
        } = {
            let (name, root) = (name.to_string(), self.real_root());
            let rules = self.rules.clone();
            tokio::task::spawn_blocking(move || {
                // Reads and parses the model's files: part of its load.
                let _loading = anemone_runtime::loading();
                prepare_model(&root, &name, config_override, available, &rules)
            })
            .await
            .map_err(|e| format!("internal error while reading the model: {e}"))??
        };
        // A Python model's folder as Triton gives it: through the
        // repository's path as given, so that it follows a repointed link.
        let specs = specs.into_iter().map(|mut spec| {
            let python = anemone_backends::python::config::MODEL_CONFIG_KEY;
            if spec.settings.iter().any(|(k, _)| k == python) {
                let dir = std::path::absolute(self.root.join(name)).unwrap_or(self.root.join(name));
                let key = anemone_backends::python::config::MODEL_DIR_KEY;
                spec.settings
                    .push((key.to_string(), dir.display().to_string()));
            }
            spec
        });
        let specs: Vec<_> = specs.collect();
        let wanted: Vec<u64> = specs.iter().map(|s| s.version).collect();
        let mut loaded = Vec::new();
        // The versions this try replaced, to put back if a later one fails:
        // a failed reload leaves every version that served serving.
        let mut replaced = Vec::new();
        // Versions that serve as they are: the same config (its version
        // policy aside), and nothing changed in their folder or outside the
        // version folders (as Triton loads again only the versions whose
        // files changed).
        let mut kept = Vec::new();
        for spec in specs {
            let version = spec.version;
            let serving = self.manager.model(name, Some(version)).ok();
            let unchanged = keep.is_some_and(|k| {
                same_but_versions(&k.config, &config)
                    && k.now.unchanged_for_version(&k.seen, version)
            });
            if serving.is_some() && unchanged {
                tracing::info!(model = %name, version, "version unchanged on disk: it keeps serving, not loaded again");
                kept.push(version);
                continue;
            }
            if let Err(e) = self.manager.load_model(spec).await {
                for v in &loaded {
                    match replaced.iter().position(|(r, _)| r == v) {
                        Some(at) => self.manager.reinstate(replaced.swap_remove(at).1),
                        None => drop(self.manager.unload_model(name, Some(*v))),
                    }
                }
                return Err(LoadFailure {
                    reason: format!("version {version}: {}", e.chain_string()),
                    // Not enough room now (the models that hold it are busy
                    // or pinned): worth trying again later.
                    retry_later: e.kind() == anemone_core::ErrorKind::Unavailable,
                    version: Some(version),
                });
            }
            loaded.push(version);
            if let Some(old) = serving {
                replaced.push((version, old));
            }
        }
        // Versions no longer wanted by the policy go away.
        for instance in self
            .manager
            .models()
            .iter()
            .filter(|m| m.name() == name && !wanted.contains(&m.version()))
        {
            let _ = self.manager.unload_model(name, Some(instance.version()));
        }
        loaded.extend(kept);
        loaded.sort_unstable();
        Ok((config, labels, loaded))
    }
}

/// Whether two configs differ at most in `version_policy`: a policy that
/// keeps fewer versions, or more, leaves the versions both keep as they are
/// (as in Triton, which then loads and unloads only those that differ).
fn same_but_versions(a: &ModelConfig, b: &ModelConfig) -> bool {
    let policy_aside = |c: &ModelConfig| ModelConfig {
        version_policy: None,
        ..c.clone()
    };
    policy_aside(a) == policy_aside(b)
}
