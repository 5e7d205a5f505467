//! Ensembles in the repository: load order and dependencies.
//!
//! - An ensemble loads after its composing models: at start-up (every
//!   control mode) plain models load first, then ensembles one at a time;
//!   loading an ensemble (start-up or the load API) first loads each
//!   composing model that is not loaded, as Triton does.
//! - An ensemble is READY only while every composing model is loaded; the
//!   index shows it UNAVAILABLE, naming the missing model, otherwise.
//! - Unloading with `unload_dependents` also unloads the ensemble's
//!   composing models that no other loaded ensemble uses (Triton's meaning:
//!   the models loaded along with the requested one go with it).

use super::{model_dir, prepare, IndexRow, Repository, State};
use crate::errors::ApiError;
use crate::model_config;
use crate::proto::ModelConfig;
use anemone_runtime::ModelState;
use std::time::Duration;

/// The configuration of model `name` of the repository whose real path is
/// `root` when it describes an ensemble; `None` for anything else (a
/// configuration that cannot be read included: preparing the model reports
/// why), read from `configs/<custom>.pbtxt` where the model has it (Triton's
/// `--model-config-name`), else from `config.pbtxt`. For `anemone doctor`.
pub fn ensemble_config(
    root: &std::path::Path,
    name: &str,
    custom: Option<&str>,
) -> Option<ModelConfig> {
    let dir = model_dir(root, name)?;
    prepare::read_config(root, &dir, custom)
        .ok()
        .flatten()
        .filter(model_config::is_ensemble)
}

impl Repository {
    /// The configuration of `name` (or `config_override`) when it describes an ensemble.
    pub(super) fn ensemble_config(
        &self,
        name: &str,
        config_override: Option<&ModelConfig>,
    ) -> Result<Option<ModelConfig>, String> {
        let config = match config_override {
            Some(c) => Some(c.clone()),
            None => match model_dir(&self.real_root(), name) {
                Some(dir) => prepare::read_config(
                    &self.real_root(),
                    &dir,
                    self.rules.custom_name.as_deref(),
                )?,
                None => None,
            },
        };
        Ok(config.filter(model_config::is_ensemble))
    }

    /// Splits the models to load at start-up into plain models and ensembles
    /// (loaded after them, in this order). A configuration that cannot be
    /// read counts as a plain model: its load reports why.
    pub(super) fn ensembles_last(&self, names: Vec<String>) -> (Vec<String>, Vec<String>) {
        names
            .into_iter()
            .partition(|n| !matches!(self.ensemble_config(n, None), Ok(Some(_))))
    }

    /// Loads ensemble `name` described by `config`: its composing models
    /// first (those not loaded), then the ensemble, checked against them.
    pub(super) async fn load_ensemble(
        &self,
        name: &str,
        config: ModelConfig,
        from_request: bool,
    ) -> Result<(ModelConfig, Vec<u64>), String> {
        let version = self.ensemble_version(name);
        let spec = model_config::ensemble_spec(&config, name, version)?;
        // Triton's hints, said as for any model (Triton refuses `optimization`
        // on an ensemble; anemone loads it, the hint changing nothing).
        let dir = model_dir(&self.real_root(), name).unwrap_or_default();
        let source = prepare::config_source(&dir, self.rules.custom_name.as_deref(), from_request);
        prepare::warn_ignored_hints(name, &config, &source);
        // As `complete` does for a model: the effective config names it.
        let mut config = config;
        config.name = name.to_string();
        for model in spec.composing_models() {
            if model == name {
                return Err(format!(
                    "a step names the ensemble '{name}' itself; an ensemble cannot contain itself"
                ));
            }
            self.ensure_loaded(&model).await.map_err(|why| {
                format!("composing model '{model}' could not be loaded, so the ensemble cannot be: {why}")
            })?;
        }
        self.manager
            .load_ensemble(spec)
            .map_err(|e| e.chain_string())?;
        Ok((config, vec![version]))
    }

    /// Checks each loaded ensemble with a step on `model` (just loaded)
    /// against the models as they are now, by loading it again from its
    /// spec; one that no longer fits (the model's outputs changed, say) is
    /// unloaded and left UNAVAILABLE saying why, as Triton leaves an
    /// ensemble whose reload fails. Nested ensembles are checked in turn.
    pub(super) fn recheck_ensembles_using(&self, model: &str) {
        let dependents: Vec<_> = (self.manager.ensembles().into_iter())
            .filter(|e| e.spec().steps.iter().any(|s| s.model == model))
            .collect();
        for ensemble in dependents {
            let name = ensemble.spec().name.clone();
            // One waiting for another composing model keeps waiting; it is
            // checked when that one loads.
            if !matches!(
                self.manager.ensemble_state(&name),
                Some(anemone_runtime::ModelState::Ready)
            ) {
                continue;
            }
            match self.manager.load_ensemble(ensemble.spec().clone()) {
                Ok(_) => self.recheck_ensembles_using(&name),
                Err(e) => {
                    let reason = format!(
                        "composing model '{model}' was loaded again and the ensemble no longer fits it: {}; \
                         fix the ensemble's config or the model, then load the ensemble again",
                        e.chain_string()
                    );
                    tracing::warn!(model = %name, "ensemble unavailable: {reason}");
                    self.manager.unload_ensemble(&name);
                    if let Some(entry) = self.lock().get_mut(&name) {
                        entry.state = State::Unavailable;
                        entry.reason = reason;
                        entry.versions.clear();
                    }
                }
            }
        }
    }

    /// The version an ensemble is served as: its highest version directory
    /// (Triton's ensembles have an empty `1/`), or 1 when it has none.
    fn ensemble_version(&self, name: &str) -> u64 {
        model_dir(&self.real_root(), name)
            .and_then(|dir| std::fs::read_dir(dir).ok())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .filter(|v| *v > 0)
            .max()
            .unwrap_or(1)
    }

    /// Loads composing model `model` unless it is loaded, waiting for a
    /// load of it already under way.
    async fn ensure_loaded(&self, model: &str) -> Result<(), String> {
        while self.entry(model).is_some_and(|e| e.state == State::Loading) {
            if matches!(self.ensemble_config(model, None), Ok(Some(_))) {
                return Err(format!(
                    "ensemble '{model}' is being loaded itself; ensembles must not contain each other in a cycle"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.manager.model(model, None).is_ok() || self.manager.ensemble(model).is_some() {
            return Ok(());
        }
        // Boxed: an ensemble's load loads models, which may be ensembles.
        Box::pin(self.load(model, None))
            .await
            .map_err(|e| e.message)
    }

    /// Unloads `name`; with `unload_dependents`, an ensemble's composing
    /// models go too, unless another loaded ensemble still uses them.
    pub fn unload_with(&self, name: &str, unload_dependents: bool) -> Result<(), ApiError> {
        let composing = self
            .manager
            .ensemble(name)
            .map(|e| e.spec().composing_models())
            .unwrap_or_default();
        self.unload(name)?;
        if !unload_dependents {
            return Ok(());
        }
        for model in composing {
            let used = self
                .manager
                .ensembles()
                .iter()
                .any(|e| e.spec().steps.iter().any(|s| s.model == model));
            if !used
                && self
                    .entry(&model)
                    .is_some_and(|e| e.state != State::Unloaded)
            {
                if let Err(e) = self.unload_with(&model, true) {
                    tracing::warn!(model = %model, ensemble = %name, "composing model not unloaded: {}", e.message);
                }
            }
        }
        Ok(())
    }

    /// The index row of a loaded ensemble: READY while every composing
    /// model is loaded, else UNAVAILABLE naming the one missing.
    pub(super) fn ensemble_row(&self, name: String, version: String) -> Option<IndexRow> {
        let ensemble = self.manager.ensemble(&name)?;
        let (state, reason) = match self.manager.ensemble_state(&name)? {
            ModelState::Unavailable { reason } => (State::Unavailable, reason),
            _ => (State::Ready, {
                let steps = ensemble.spec().steps.len();
                format!(
                    "ensemble of {steps} step{} over {}",
                    if steps == 1 { "" } else { "s" },
                    ensemble.spec().composing_models().join(", ")
                )
            }),
        };
        Some(IndexRow {
            name,
            version,
            state: state.as_str().into(),
            reason,
        })
    }
}
