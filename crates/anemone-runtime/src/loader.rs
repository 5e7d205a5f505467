//! Loading, reloading and unloading models: candidates → select → install.

use crate::admission::Limiter;
use crate::instance::ModelInstance;
use crate::manager::Manager;
use crate::scheduler::panic_message;
use crate::selection::{self, Attempt, BackendSet, Candidate, Mode, Outcome, Selection};
use crate::spec::{InstanceKind, ModelSpec};
use crate::trim::{LoadPhase, LoadStep};
use anemone_core::{Error, LoadOptions, LoadedModel, ModelSource, Result, Support};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the loader owns: the backends, the defaults models inherit, and the
/// models whose last load failed.
pub(crate) struct Loader {
    /// Every backend, in the order added.
    pub(crate) backends: BackendSet,
    /// The preference list of models that name none; `None`: every backend in order.
    pub(crate) preference: Option<Vec<String>>,
    /// Strict mode for models that do not set their own.
    pub(crate) strict: bool,
    /// Engine threads for models that do not set their own.
    pub(crate) threads: Option<usize>,
    /// The per-model concurrency limit for models that do not set their own.
    pub(crate) model_max_concurrency: Option<usize>,
    /// Models whose last load failed, with the reason; cleared by a successful
    /// load or an unload. Read by health.
    pub(crate) failed: Mutex<BTreeMap<String, String>>,
    /// Compares the default order's CPU engines in another process (`compare/`).
    pub(crate) comparer: Option<Arc<dyn crate::compare::EngineComparer>>,
    /// Comparisons answered by the comparer, and those it failed.
    pub(crate) comparisons: [std::sync::atomic::AtomicU64; 2],
    /// Versions unloaded so far: the monitor gives memory back after them too.
    pub(crate) unloads: std::sync::atomic::AtomicU64,
    /// The quantiles of Triton's latency summaries that new models keep;
    /// `None`: none kept.
    pub(crate) summaries: Option<Arc<[f64]>>,
}

/// What a selection hands to `install`.
pub(crate) struct Picked {
    /// The engine instances loaded so far (the selection loads the first).
    pub(crate) engines: Vec<Box<dyn LoadedModel>>,
    /// The candidate the first engine runs on.
    pub(crate) chosen: Candidate,
    pub(crate) selection: Selection,
    /// Candidates for a run-time fallback, in order.
    pub(crate) standby: Vec<Candidate>,
    /// The standby engine loaded up front ([`ModelSpec::hot_standby`]).
    pub(crate) hot: Option<HotStandby>,
}

/// A standby backend's engine, loaded before any fallback needs it.
pub(crate) struct HotStandby {
    /// The candidate's label.
    pub(crate) label: String,
    pub(crate) model: Box<dyn LoadedModel>,
}

/// The error when no candidate loaded: the one backend's own error when only
/// one was tried, else every candidate with its reason.
pub(crate) fn no_backend(
    source: &ModelSource,
    attempts: Vec<Attempt>,
    mut errors: Vec<Error>,
) -> Error {
    if attempts.len() == 1 && errors.len() == 1 {
        return errors.pop().expect("one error; this is a bug");
    }
    let attempts = attempts
        .into_iter()
        .map(|a| {
            let reason = match a.outcome {
                Outcome::Skipped { reason } => reason,
                other => format!("{other:?}"),
            };
            (a.backend, reason)
        })
        .collect();
    Error::NoBackend {
        path: source.path.clone(),
        attempts,
    }
}

impl Manager {
    /// Loads a model on a background thread, so the caller's executor is not blocked.
    ///
    /// Loading a version that is already loaded replaces it; requests in
    /// flight on the old one finish on it.
    pub async fn load_model(&self, spec: ModelSpec) -> Result<Arc<ModelInstance>> {
        let this = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("anemone-load-{}", spec.name))
            .spawn(move || {
                let _ = tx.send(this.load_model_blocking(spec));
            })
            .map_err(|e| Error::Internal(format!("cannot start a loader thread: {e}")))?;
        rx.await
            .map_err(|_| Error::Internal("the loader thread ended without an answer".into()))?
    }

    /// Loads a model on the calling thread. See [`Manager::load_model`].
    pub fn load_model_blocking(&self, spec: ModelSpec) -> Result<Arc<ModelInstance>> {
        let name = spec.name.clone();
        let began = std::time::SystemTime::now();
        let loading = LoadPhase::start(LoadStep::Load);
        let result = self.load_inner(spec);
        drop(loading);
        // The engines the selection dropped (the slower CPU engine, failed
        // candidates) are freed: give their pages back to the system.
        crate::trim::release_freed_memory();
        let mut failed = self
            .inner
            .loader
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(instance) => {
                failed.remove(&name);
                self.inner.eviction.load_time.observe(instance.load_time());
                // Loaded again (explicitly or on demand): no longer evicted,
                // unless another load evicted it since it was installed.
                self.forget_evicted_before(&name, Some(instance.version()), true, Some(began));
                tracing::info!(model = %name, version = instance.version(), backend = instance.backend(), "model loaded");
                let mut running: Vec<&str> =
                    instance.instances().iter().map(|e| e.backend).collect();
                running.sort_unstable();
                running.dedup();
                let idle = settings_for_other_backends(&instance.spec().settings, &running);
                if !idle.is_empty() {
                    tracing::warn!(
                        model = %name,
                        backend = instance.backend(),
                        "settings {} do not apply: the model runs on {}; name their backend first in \
                         parameter 'backends' (or the server's --backends) to run it there",
                        idle.join(", "),
                        running.join(", ")
                    );
                }
            }
            Err(e) => {
                failed.insert(name.clone(), e.chain_string());
                tracing::debug!(model = %name, error = %e.chain_string(), "model failed to load");
            }
        }
        result
    }

    fn load_inner(&self, spec: ModelSpec) -> Result<Arc<ModelInstance>> {
        if spec.name.is_empty() {
            return Err(Error::Config("a model needs a non-empty name".into()));
        }
        if !spec.path.exists() {
            return Err(Error::FileNotFound { path: spec.path });
        }
        let file_size = std::fs::metadata(&spec.path).map(|m| m.len()).unwrap_or(0);
        // With eviction, room is made at install, for the engines' measured
        // charge: the file is a poor estimate of it (it holds more than the
        // weights), and evicting on an estimate would unload models for nothing.
        if !self.inner.eviction.on() && file_size > self.inner.memory.available() {
            // Weights alone would not fit: refuse before spending time loading.
            return Err(Error::MemoryBudget {
                model: spec.name,
                needed: file_size,
                available: self.inner.memory.available(),
                budget: self.inner.memory.budget().unwrap_or(u64::MAX),
            });
        }
        let started = Instant::now();
        let first_group = crate::groups::groups(&spec)?.remove(0);
        let source = ModelSource::from_path(&spec.path);
        crate::ragged::check(&spec, source.format)?;
        // The server's list orders the engines of model files; a Python
        // model has one engine, whatever that list says.
        let server_list = match source.format {
            anemone_core::ModelFormat::Python => None,
            _ => self.inner.loader.preference.as_deref(),
        };
        let preference = first_group
            .backends
            .as_deref()
            .or(spec.backends.as_deref())
            .or(server_list);
        let auto = preference.is_some_and(|p| p.iter().any(|n| n == selection::AUTO));
        let strict = spec.strict.unwrap_or(self.inner.loader.strict);
        if auto && strict {
            return Err(Error::Config(format!(
                "model '{}' asks for both backends = auto and strict mode; strict runs exactly the first backend \
                 of its list, auto picks the fastest: choose one",
                spec.name
            )));
        }
        let names: Option<Vec<String>> = preference.map(|p| {
            p.iter()
                .filter(|n| *n != selection::AUTO)
                .cloned()
                .collect()
        });
        let names = names.filter(|n| !n.is_empty());
        let mut candidates = self.inner.loader.backends.resolve(names.as_deref())?;
        if names.is_none() {
            // The default order holds every backend; those that do not take this
            // format are not candidates for it (a Core ML backend for an ONNX file).
            let takes = |c: &Candidate| {
                c.index.is_none_or(|i| {
                    self.inner.loader.backends.all()[i].supports(&source) == Support::Yes
                })
            };
            if candidates.iter().any(takes) {
                candidates.retain(takes);
            }
        }
        if first_group.kind != InstanceKind::Auto {
            let all = candidates
                .iter()
                .map(|c| c.label.clone())
                .collect::<Vec<_>>();
            candidates.retain(|c| self.kind_fits(c, first_group.kind));
            if candidates.is_empty() {
                return Err(Error::Config(format!(
                    "model '{}': its instance group of kind {} has no backend of that kind among {}; \
                     use KIND_AUTO, or name backends that fit",
                    spec.name,
                    first_group.kind.as_str(),
                    all.join(", ")
                )));
            }
        }
        let mode = if auto {
            Mode::Auto
        } else if strict {
            Mode::Strict
        } else {
            Mode::Ordered
        };
        let picked = match mode {
            Mode::Auto => self.select_fastest(&spec, &source, candidates),
            Mode::Ordered | Mode::Strict => {
                // With no list given, CPU engines are compared rather than ranked.
                let time_cpu = mode == Mode::Ordered && names.is_none();
                self.select_first(&spec, &source, candidates, mode, time_cpu)
            }
        }?;
        self.install(spec, picked, started.elapsed(), None)
    }

    /// Loads one candidate as the model's first engine instance: skip
    /// checks, then the backend's `load` with panics caught.
    pub(crate) fn try_candidate(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        candidate: &Candidate,
    ) -> std::result::Result<Box<dyn LoadedModel>, (String, Option<Error>)> {
        self.try_instance(spec, source, candidate, 0)
    }

    /// [`Manager::try_candidate`] for engine instance `instance` of the
    /// model ([`LoadOptions::instance`]).
    pub(crate) fn try_instance(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        candidate: &Candidate,
        instance: usize,
    ) -> std::result::Result<Box<dyn LoadedModel>, (String, Option<Error>)> {
        if let Some(reason) = &candidate.unbuilt {
            return Err((reason.clone(), None));
        }
        let index = candidate
            .index
            .expect("a built candidate has an index; this is a bug");
        if let Some(reason) = selection::unavailable(self.inner.loader.backends.probe(index)) {
            return Err((reason.to_string(), None));
        }
        let backend = &self.inner.loader.backends.all()[index];
        if let Support::No(reason) = backend.supports(source) {
            return Err((reason, None));
        }
        let mut settings = spec.settings.clone();
        settings.extend(candidate.settings.iter().cloned());
        // Batches of one row (Triton's one request at a time per instance)
        // come back to back like direct calls: not batched in this sense.
        if spec.batching.is_some() && spec.max_batch_size.is_some_and(|rows| rows > 1) {
            settings.push((anemone_core::BATCHED_SETTING.into(), "1".into()));
        }
        let options = LoadOptions {
            threads: spec.threads.or(self.inner.loader.threads),
            settings,
            caller: Some(self.caller()),
            custom_metrics: Some(self.inner.custom_metrics.clone()),
            instance,
        };
        // Nested in `load_model_blocking`'s phase on a plain load; on its own
        // for the engines loaded outside it (re-timing moves, recovery, fallback).
        let loading = LoadPhase::start(LoadStep::Load);
        let loaded = catch_unwind(AssertUnwindSafe(|| backend.load(source, &options)));
        drop(loading);
        match loaded {
            Ok(Ok(model)) => Ok(model),
            Ok(Err(e)) => Err((e.chain_string(), Some(e))),
            Err(panic) => {
                let message = format!("panicked while loading: {}", panic_message(&*panic));
                let e = Error::Backend {
                    backend: backend.name().into(),
                    message: message.clone(),
                    retryable: false,
                    source: None,
                };
                Err((message, Some(e)))
            }
        }
    }

    /// Charges memory, builds the instance and publishes it.
    ///
    /// Loads the engine instances beyond the first, runs the model's warm-up
    /// samples on each engine, and starts the model's queue first. A fallback (`replacing`) keeps the old instance's limiter
    /// and counters, so limits hold and nothing is forgotten across the move.
    pub(crate) fn install(
        &self,
        spec: ModelSpec,
        mut picked: Picked,
        load_time: Duration,
        replacing: Option<&Arc<ModelInstance>>,
    ) -> Result<Arc<ModelInstance>> {
        self.load_instances(&spec, &mut picked, replacing.is_some())?;
        // Not yet published: the model is not ready while its warm-up runs.
        for engine in &picked.engines {
            crate::warmup::run(&spec, &**engine)?;
        }
        if spec.hot_standby && picked.hot.is_none() {
            picked.hot = self.load_hot_standby(&spec, &picked.standby);
        }
        let footprint = picked
            .engines
            .iter()
            .map(|m| m.memory_footprint())
            .sum::<u64>()
            + picked
                .hot
                .as_ref()
                .map_or(0, |h| h.model.memory_footprint());
        // Held until the model is published, so no other load counts its bytes as free.
        let _room = self.inner.eviction.hold_room();
        self.make_room(&spec.name, spec.version, footprint, "what its engines hold")?;
        let reservation = self.inner.memory.try_reserve(&spec.name, footprint)?;
        let queue = self.start_queue(&spec, &*picked.engines[0], picked.engines.len())?;
        if spec.response_cache && self.inner.cache.is_none() && replacing.is_none() {
            tracing::warn!(
                model = %spec.name,
                "the model enables the response cache, but the server has none, so nothing \
                 is cached; start it with --cache-config local,size=BYTES"
            );
        }
        let metrics = match replacing {
            Some(old) => Arc::clone(&old.metrics),
            // A model loaded again after an eviction keeps its counters.
            None => self
                .evicted_metrics(&spec.name, spec.version)
                .unwrap_or_else(|| {
                    Arc::new(crate::metrics::ModelMetrics::with_summaries(
                        self.inner.loader.summaries.clone(),
                    ))
                }),
        };
        let limiter = match replacing {
            // A fallback keeps the model's limiter, so its limit holds across the move.
            Some(old) => Arc::clone(&old.limiter),
            None => Limiter::new(
                format!("concurrency limit of model '{}'", spec.name),
                spec.max_concurrency
                    .or(self.inner.loader.model_max_concurrency),
            ),
        };
        let sampler = self.retime_sampler(&spec, &picked.selection);
        let sequences = match (&spec.sequence, replacing) {
            (None, _) => None,
            // A fallback keeps the open sequences.
            (Some(_), Some(old)) => old.sequences.clone(),
            (Some(settings), None)
                if !settings.states.is_empty() && picked.engines[0].decoupled() =>
            {
                return Err(Error::Unsupported {
                    what: format!(
                        "model '{}' is decoupled and keeps implicit state (sequence_batching.state), \
                         which anemone cannot take from a stream of responses",
                        spec.name
                    ),
                    fix: "remove sequence_batching.state and keep the state in the model, keyed \
                          by the request's correlation_id()"
                        .into(),
                });
            }
            (Some(settings), None) => Some(Arc::new(
                crate::sequence::Sequences::new(
                    &spec.name,
                    settings.clone(),
                    picked.engines[0].metadata(),
                    crate::reshape::batched(&spec),
                )?
                .with_lanes(picked.engines.len()),
            )),
        };
        let instance = Arc::new(ModelInstance::new(
            spec,
            picked,
            limiter,
            metrics,
            reservation,
            load_time,
            queue,
            sampler,
            sequences,
        ));
        instance.touch(self.inner.eviction.stamp(Instant::now()));
        match replacing {
            None => {
                self.inner.registry.insert(Arc::clone(&instance));
            }
            Some(old) => {
                if !self.inner.registry.replace(old, Arc::clone(&instance)) {
                    return Err(Error::Unavailable {
                        what: format!("model '{}'", instance.name()),
                        reason: "it was unloaded or reloaded while falling back".into(),
                    });
                }
            }
        }
        Ok(instance)
    }

    /// Puts back `old`, a version that a load replaced, when that load is
    /// undone (a later version of the same model failed to load): the model
    /// serves what it served before, its queue, sequences and counters
    /// with it. What replaced it goes, once its requests in flight end.
    pub fn reinstate(&self, old: Arc<ModelInstance>) {
        tracing::info!(model = %old.name(), version = old.version(), "previous load serving again");
        self.inner.registry.insert(old);
    }

    /// Unloads one version of a model, or all of its versions when `version` is
    /// `None`. Requests in flight finish first; the memory is given back when
    /// the last one ends. Returns the versions unloaded. An evicted version is
    /// forgotten: a request for it is no longer loaded on demand.
    pub fn unload_model(&self, name: &str, version: Option<u64>) -> Result<Vec<u64>> {
        let removed = self.inner.registry.remove(name, version);
        // An evicted model is forgotten too: requests no longer load it on demand.
        let was_evicted = self.forget_evicted(name, version, false);
        let had_failure = self
            .inner
            .loader
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some();
        if removed.is_empty() && !had_failure && !was_evicted {
            return Err(self.not_found(name, version));
        }
        // One type per field for log pipelines: `version` is a number,
        // absent when every version went (it was the text "None").
        match version {
            Some(version) => tracing::info!(model = %name, version, "model unloaded"),
            None => tracing::info!(model = %name, "model unloaded"),
        }
        let versions = removed.iter().map(|m| m.version()).collect();
        // Freed here unless a request still runs on it (then when it ends,
        // and the monitor's next idle look gives it back).
        drop(removed);
        crate::trim::release_freed_memory();
        self.inner
            .loader
            .unloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(versions)
    }
}

/// The `<backend>.<key>` settings of `settings` whose backend runs none of
/// the model's engines (`running`): they were given, and apply nowhere.
fn settings_for_other_backends<'a>(
    settings: &'a [(String, String)],
    running: &[&str],
) -> Vec<&'a str> {
    let known = |prefix: &str| {
        crate::selection::KNOWN_BACKENDS
            .iter()
            .any(|(b, _)| *b == prefix)
    };
    settings
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| {
            let prefix = key.split_once('.').map_or("", |(p, _)| p);
            known(prefix) && !running.contains(&prefix)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::settings_for_other_backends;

    #[test]
    fn settings_of_a_backend_that_runs_nothing_are_named() {
        let settings: Vec<(String, String)> = [
            ("onnxruntime.parallel", "on"),
            ("tract-cpu.plan_cache", "4"),
            ("onnxruntime.coreml.compute_units", "ane"),
            ("bytes", "10"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            settings_for_other_backends(&settings, &["tract-cpu"]),
            ["onnxruntime.parallel", "onnxruntime.coreml.compute_units"]
        );
        assert_eq!(
            settings_for_other_backends(&settings, &["onnxruntime"]),
            ["tract-cpu.plan_cache"]
        );
        // Mixed instance groups: each backend's settings apply to its engines.
        let both = settings_for_other_backends(&settings, &["onnxruntime", "tract-cpu"]);
        assert!(both.is_empty(), "{both:?}");
    }
}
