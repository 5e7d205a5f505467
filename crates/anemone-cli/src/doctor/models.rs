//! `anemone doctor --model-repository`: each model of a repository checked
//! as `serve` would prepare it, and loaded on each backend here that takes
//! its format, to say which could run it and why the others cannot.

use super::ModelRow;
use anemone_core::Probe;
use std::path::Path;

/// One row per model folder of `dir`, configurations read by `rules`.
pub(super) fn check(dir: &Path, rules: &anemone_server::repository::ConfigRules) -> Vec<ModelRow> {
    let real_root = dir.canonicalize().ok();
    let backends = anemone_backends::default_backends();
    let probes: Vec<Probe> = backends.iter().map(|b| b.probe()).collect();
    // Each ensemble's composing models, by its row.
    let mut steps: Vec<(usize, Vec<String>)> = Vec::new();
    let mut rows: Vec<ModelRow> = anemone_server::repository::model_dirs(dir)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(at, name)| {
            if let Some((row, models)) = real_root
                .as_deref()
                .and_then(|root| ensemble_row(root, &name, rules))
            {
                steps.push((at, models));
                return row;
            }
            // The same preparation `serve` runs (config, model file, checks),
            // so doctor approves exactly what serve loads.
            let prepared = real_root
                .as_deref()
                .ok_or_else(|| format!("cannot open the model repository {}", dir.display()))
                .and_then(|root| {
                    anemone_server::repository::prepare_model(root, &name, None, None, rules)
                });
            let settings = (prepared.as_ref().ok())
                .and_then(|p| p.specs.last())
                .map(|s| s.settings.clone())
                .unwrap_or_default();
            let newest = prepared
                .as_ref()
                .ok()
                .and_then(|p| p.specs.last())
                .map(|s| s.path.clone());
            let mut row = ModelRow {
                name,
                file: newest.clone(),
                format: None,
                runnable_on: Vec::new(),
                not_here: Vec::new(),
            };
            let file = match (prepared, newest) {
                (Ok(_), Some(file)) => file,
                (Err(reason), _) => {
                    row.not_here.push(("repository".into(), reason));
                    return row;
                }
                (Ok(_), None) => {
                    row.not_here
                        .push(("repository".into(), "no version to load".into()));
                    return row;
                }
            };
            let source = anemone_core::ModelSource::from_path(&file);
            row.format = Some(source.format.to_string());
            for (b, probe) in backends.iter().zip(&probes) {
                match (probe, b.supports(&source)) {
                    (_, anemone_core::Support::No(_)) => {}
                    (Probe::Unavailable { reason }, _) => {
                        row.not_here.push((b.name().into(), reason.clone()))
                    }
                    // Loaded, as `serve` would: a file in a format the
                    // backend takes may still hold what it cannot run.
                    (Probe::Available { .. }, anemone_core::Support::Yes) => {
                        match try_load(&**b, &source, &settings) {
                            Ok(()) => row.runnable_on.push(b.name()),
                            Err(why) => row.not_here.push((b.name().into(), why)),
                        }
                    }
                }
            }
            if row.runnable_on.is_empty() && row.not_here.is_empty() {
                row.not_here.push((
                    "any".into(),
                    format!("no backend in this build takes {} models", source.format),
                ));
            }
            row
        })
        .collect();
    unrunnable_ensembles(&mut rows, &steps);
    rows
}

/// An ensemble whose composing model cannot run (or is not in the
/// repository) cannot run either, as `serve` leaves it UNAVAILABLE: its
/// row says which, until nothing changes (ensembles of ensembles).
fn unrunnable_ensembles(rows: &mut [ModelRow], steps: &[(usize, Vec<String>)]) {
    loop {
        let mut changed = false;
        for (at, models) in steps {
            if rows[*at].runnable_on.is_empty() {
                continue;
            }
            let broken = models
                .iter()
                .find_map(|m| match rows.iter().find(|r| &r.name == m) {
                    None => Some(format!(
                        "composing model '{m}' is not in the model repository"
                    )),
                    Some(r) if r.runnable_on.is_empty() => Some(format!(
                        "composing model '{m}' could not be loaded{}",
                        r.not_here
                            .first()
                            .map(|(_, why)| format!(": {why}"))
                            .unwrap_or_default()
                    )),
                    Some(_) => None,
                });
            if let Some(reason) = broken {
                rows[*at].runnable_on.clear();
                rows[*at].not_here.push(("repository".into(), reason));
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// Loads the model on `backend` (one thread, the model's settings) and
/// drops it; why not, when it cannot.
fn try_load(
    backend: &dyn anemone_core::Backend,
    source: &anemone_core::ModelSource,
    settings: &[(String, String)],
) -> Result<(), String> {
    let options = anemone_core::LoadOptions {
        threads: Some(1),
        settings: settings.to_vec(),
        ..Default::default()
    };
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        backend.load(source, &options)
    }));
    match loaded {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot load it: {}", e.chain_string())),
        Err(_) => Err("cannot load it: the backend panicked".into()),
    }
}

/// The row of an ensemble (`platform: "ensemble"`), with its composing
/// models: runnable when its configuration reads and (see
/// [`unrunnable_ensembles`]) its composing models can run (its graph is
/// checked against them when `serve` loads it), else the problem.
fn ensemble_row(
    root: &std::path::Path,
    name: &str,
    rules: &anemone_server::repository::ConfigRules,
) -> Option<(ModelRow, Vec<String>)> {
    let config =
        anemone_server::repository::ensemble_config(root, name, rules.custom_name.as_deref())?;
    let mut row = ModelRow {
        name: name.to_string(),
        file: None,
        format: Some("ensemble".into()),
        runnable_on: Vec::new(),
        not_here: Vec::new(),
    };
    let mut models = Vec::new();
    match anemone_server::model_config::ensemble_spec(&config, name, 1) {
        Ok(spec) => {
            row.runnable_on.push("ensemble");
            models = spec.steps.into_iter().map(|s| s.model).collect();
        }
        Err(reason) => row.not_here.push(("repository".into(), reason)),
    }
    Some((row, models))
}
