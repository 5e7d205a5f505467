//! A model's engine instances (Triton's instance groups) and its request
//! queue, set up when it is installed.

use crate::loader::Picked;
use crate::manager::Manager;
use crate::scheduler::{BatchPlan, LaneLimits, ModelQueue, QueueStart};
use crate::selection::{self, Candidate};
use crate::spec::{InstanceGroup, InstanceKind, ModelSpec};
use anemone_core::{Dim, Error, LoadedModel, ModelSource, Result, Tier};
use std::sync::Arc;

/// The most engine instances one model version may have.
pub const MAX_INSTANCES: usize = 64;

impl InstanceKind {
    /// Triton's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Auto => "KIND_AUTO",
            InstanceKind::Cpu => "KIND_CPU",
            InstanceKind::Gpu => "KIND_GPU",
        }
    }

    /// Whether a backend of this tier runs instances of this kind.
    pub fn admits(self, tier: Tier) -> bool {
        match self {
            InstanceKind::Auto => true,
            InstanceKind::Cpu => matches!(tier, Tier::OptimisedCpu | Tier::PortableCpu),
            InstanceKind::Gpu => tier == Tier::Gpu,
        }
    }
}

/// The groups of a spec, or one instance when it names none; checked.
pub(crate) fn groups(spec: &ModelSpec) -> Result<Vec<InstanceGroup>> {
    if spec.instance_groups.is_empty() {
        return Ok(vec![InstanceGroup::new(1)]);
    }
    if let Some(i) = spec.instance_groups.iter().position(|g| g.count == 0) {
        return Err(Error::Config(format!(
            "model '{}': instance group {i} has count 0; give it at least 1 instance or remove it",
            spec.name
        )));
    }
    let total: usize = spec.instance_groups.iter().map(|g| g.count).sum();
    if total > MAX_INSTANCES {
        return Err(Error::Config(format!(
            "model '{}' asks for {total} engine instances; at most {MAX_INSTANCES} are allowed",
            spec.name
        )));
    }
    Ok(spec.instance_groups.clone())
}

impl Manager {
    /// Whether a candidate can hold instances of `kind`: its tier admits
    /// them, or the model's own code picks its device (a Python model,
    /// told the kind in `args`).
    pub(crate) fn kind_fits(&self, candidate: &Candidate, kind: InstanceKind) -> bool {
        candidate.index.is_some_and(|i| {
            let backend = &self.inner.loader.backends.all()[i];
            backend.model_picks_device() || kind.admits(backend.tier())
        })
    }

    /// Loads the engine instances the spec's groups ask for beyond the one
    /// the selection loaded. Groups that name no backends of their own (and
    /// whose kind the chosen backend fits) load on the chosen backend; the
    /// others on the first of their own candidates that loads. A fallback
    /// (`same_backend`) loads every instance on the new backend.
    pub(crate) fn load_instances(
        &self,
        spec: &ModelSpec,
        picked: &mut Picked,
        same_backend: bool,
    ) -> Result<()> {
        let source = ModelSource::from_path(&spec.path);
        let mut instance = 0;
        for (i, group) in groups(spec)?.iter().enumerate() {
            let have = usize::from(i == 0);
            // The selection already followed the first group's backends and kind.
            let on_chosen = same_backend
                || i == 0
                || (group.backends.is_none() && self.kind_fits(&picked.chosen, group.kind));
            instance += have;
            for _ in have..group.count {
                let engine = if on_chosen {
                    self.try_instance(spec, &source, &picked.chosen, instance)
                        .map_err(|(reason, e)| {
                            e.unwrap_or_else(|| Error::Unavailable {
                                what: format!("backend {}", picked.chosen.label),
                                reason,
                            })
                        })?
                } else {
                    self.load_on_group(spec, &source, group, instance)?
                };
                picked.engines.push(engine);
                instance += 1;
            }
        }
        Ok(())
    }

    /// One engine for a group with its own backends or kind: the first of
    /// its candidates that loads.
    fn load_on_group(
        &self,
        spec: &ModelSpec,
        source: &ModelSource,
        group: &InstanceGroup,
        instance: usize,
    ) -> Result<Box<dyn LoadedModel>> {
        let names: Option<Vec<String>> = group
            .backends
            .as_ref()
            .or(spec.backends.as_ref())
            .or(self.inner.loader.preference.as_ref())
            .map(|n| {
                n.iter()
                    .filter(|n| *n != selection::AUTO)
                    .cloned()
                    .collect()
            });
        let names = names.filter(|n: &Vec<String>| !n.is_empty());
        let candidates = self.inner.loader.backends.resolve(names.as_deref())?;
        let mut reasons = Vec::new();
        for candidate in candidates.iter().filter(|c| self.kind_fits(c, group.kind)) {
            match self.try_instance(spec, source, candidate, instance) {
                Ok(model) => return Ok(model),
                Err((reason, _)) => reasons.push((candidate.label.clone(), reason)),
            }
        }
        if reasons.is_empty() {
            return Err(Error::Config(format!(
                "model '{}': an instance group of kind {} has no backend of that kind among {}; \
                 use KIND_AUTO or name backends that fit",
                spec.name,
                group.kind.as_str(),
                candidates
                    .iter()
                    .map(|c| c.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Err(Error::NoBackend {
            path: source.path.clone(),
            attempts: reasons,
        })
    }

    /// The model's request queue, when its spec asks for one (queue settings
    /// or dynamic batching), after checking that the model can be batched.
    /// An engine that answers each request itself (a Python model) always
    /// gets one, one request per call without batching: each instance then
    /// runs on a thread of its own, as in Triton, rather than on the shared
    /// workers, which a slow `execute` would keep from every other model.
    pub(crate) fn start_queue(
        &self,
        spec: &ModelSpec,
        first: &dyn LoadedModel,
        instances: usize,
    ) -> Result<Option<ModelQueue>> {
        let name = &spec.name;
        let limits = self.rate_limits(spec)?;
        let own_threads = first.answers_each();
        if spec.queue.is_none() && spec.batching.is_none() && limits.is_none() && !own_threads {
            return Ok(None);
        }
        let mut max_rows = 1;
        let batch_dimension = spec.max_batch_size.filter(|n| *n > 0);
        if let (Some(batching), None) = (&spec.batching, batch_dimension) {
            // Triton's dynamic batcher on a model with max_batch_size 0:
            // a queue (priorities, timeouts, its size), one request a call.
            if let Some(p) = batching.preferred_batch_sizes.first() {
                return Err(Error::Config(format!(
                    "model '{name}': preferred batch size {p} needs a batch dimension, and the model \
                     has none (max_batch_size 0); set max_batch_size, or remove preferred_batch_size"
                )));
            }
            tracing::warn!(
                "model '{name}' has dynamic batching but no batch dimension (max_batch_size 0): its \
                 requests queue (priorities, timeouts and the queue's size apply) and run one at a \
                 time, as in Triton; set max_batch_size to batch them"
            );
        }
        if let (Some(batching), Some(max)) = (&spec.batching, batch_dimension) {
            for input in &first.metadata().inputs {
                if let Some(Dim::Fixed(n)) = input.shape.as_deref().and_then(<[Dim]>::first) {
                    return Err(Error::Config(format!(
                        "model '{name}' asks for dynamic batching, but input '{}' has a fixed first \
                         dimension {n}, so batches cannot grow; export the model with a dynamic batch \
                         dimension, or remove dynamic_batching",
                        input.name
                    )));
                }
            }
            if let Some(p) = batching
                .preferred_batch_sizes
                .iter()
                .find(|p| **p == 0 || **p > max)
            {
                return Err(Error::Config(format!(
                    "model '{name}': preferred batch size {p} is outside 1..={max} (max_batch_size)"
                )));
            }
            max_rows = max;
        }
        let settings = spec.queue.clone().unwrap_or_default();
        let levels = settings.priority_levels.max(1);
        if settings.default_priority > levels {
            return Err(Error::Config(format!(
                "model '{name}': default priority level {} is outside 1..={levels} (priority_levels)",
                settings.default_priority
            )));
        }
        let plan = BatchPlan {
            batching: spec.batching.clone(),
            max_rows,
            gates: Arc::clone(&self.inner.gates),
        };
        ModelQueue::start(name, settings, plan, instances, limits)
            .map(Some)
            .map_err(|e| match e {
                QueueStart::Limits(reason) => Error::Config(reason),
                QueueStart::Threads(e) => Error::Internal(format!(
                    "cannot start the threads of model '{name}' (its queue thread and one thread \
                     for each of its {instances} instances): {e}; the process may be at its \
                     thread limit (ulimit -u), so unload a model or lower instance_group counts"
                )),
            })
    }

    /// The manager's rate limiter and each engine instance's rate limit,
    /// when the manager has one and a group of the model sets one. A model
    /// with them gets a queue, as each Triton instance takes its work from
    /// one; a sequence model without a queue of its own is not held, and
    /// the load says so.
    fn rate_limits(&self, spec: &ModelSpec) -> Result<Option<LaneLimits>> {
        let groups = groups(spec)?;
        if groups.iter().all(|g| g.rate_limit.is_none()) {
            return Ok(None);
        }
        let Some(limiter) = &self.inner.rate_limiter else {
            tracing::info!(
                model = %spec.name,
                "the model's rate_limiter is not used: the server runs without a rate limiter \
                 (start it with --rate-limit execution_count to use it), as Triton does"
            );
            return Ok(None);
        };
        if spec.sequence.is_some() && spec.queue.is_none() && spec.batching.is_none() {
            tracing::warn!(
                model = %spec.name,
                "the rate limiter does not hold this sequence model's instances: give it a \
                 queue (dynamic batching in its sequence_batching, or queue settings) to have them held"
            );
            return Ok(None);
        }
        let lanes = groups
            .iter()
            .flat_map(|g| std::iter::repeat_n(g.rate_limit.clone(), g.count))
            .collect();
        Ok(Some((Arc::clone(limiter), lanes)))
    }
}
