//! What to load and how: [`ModelSpec`] and the typed per-model settings of
//! the scheduler (queue, dynamic batching, instance groups).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What to load and how.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Name requests use.
    pub name: String,
    /// Version number. By default, 1.
    pub version: u64,
    /// The model file.
    pub path: PathBuf,
    /// Backends to try, in order, by name (aliases such as `coreml-ane`
    /// allowed). `["auto"]` times a warm-up on every candidate and keeps the
    /// fastest. By default, the manager's preference.
    pub backends: Option<Vec<String>>,
    /// Strict mode: only the first candidate, no fallback. By default, the manager's setting.
    pub strict: Option<bool>,
    /// Requests in flight on this model. By default, the manager's per-model limit.
    pub max_concurrency: Option<usize>,
    /// Engine threads per inference. By default, the manager's setting.
    pub threads: Option<usize>,
    /// Backend-specific settings passed to [`anemone_core::LoadOptions::settings`].
    pub settings: Vec<(String, String)>,
    /// Triton's `max_batch_size`: `Some(n)` with n > 0 means the first dimension
    /// of every input (and output) is the batch dimension, and a request's batch
    /// must be at most n. `None`: the model declares no batch dimension.
    pub max_batch_size: Option<usize>,
    /// Input shapes declared by the model's configuration. They may narrow the
    /// engine's own (a fixed size where the engine has a dynamic dimension);
    /// validation then checks against the narrower shape. `None`: the engine's.
    pub declared_inputs: Option<Vec<anemone_core::TensorSpec>>,
    /// Inputs the configuration marks optional (Triton's `optional: true`).
    /// The engines anemone runs need every input they list, so a request that
    /// leaves one of these out is still refused, with an error that says so.
    pub optional_inputs: Vec<String>,
    /// The outputs served, in the configuration's order (a Triton `output`
    /// list may name a subset of the model's). A request may ask only for
    /// these, and one that names no output gets these. `None`: every output.
    pub declared_outputs: Option<Vec<String>>,
    /// Output shapes declared by the model's configuration, which narrow the
    /// engine's in the model's metadata as `declared_inputs` narrow inputs
    /// (Triton shows the configuration's dims). `None`: the engine's.
    pub declared_output_shapes: Option<Vec<anemone_core::TensorSpec>>,
    /// Inputs and outputs whose shape in requests and answers differs from
    /// the model's (Triton's `reshape`): requests are checked against the
    /// served shape, and the model sees its own. Empty: none.
    pub reshapes: crate::reshape::Reshapes,
    /// Triton's ragged batching: inputs whose shapes may differ within a
    /// batch, inputs the server makes for each batch, and outputs cut back
    /// by an input's shape ([`crate::ragged`]). By default, none.
    pub ragged: crate::ragged::Ragged,
    /// Dynamic batching: `Some` concatenates queued requests along the batch
    /// dimension into one engine call (implies a queue with the default
    /// [`QueueSettings`] when `queue` is `None`). A model without
    /// `max_batch_size` has no batch dimension: its requests queue and run one
    /// an engine call, in order when `preserve_ordering` asks (Triton's
    /// dynamic batcher on a model with `max_batch_size: 0`), and the load logs
    /// a warning saying so. By default, off.
    pub batching: Option<Batching>,
    /// A per-model request queue with priorities and timeouts. By default,
    /// none: a request goes straight to a worker, as if the queue were empty.
    pub queue: Option<QueueSettings>,
    /// Triton's sequence batcher: requests name a sequence, which must be
    /// started; a sequence's requests run one at a time, in order, and the
    /// model gets the configured control inputs (which are then not part of
    /// the served metadata). By default, none.
    pub sequence: Option<crate::sequence::SequenceSettings>,
    /// Engine instances of this model. Empty (the default): one instance.
    pub instance_groups: Vec<InstanceGroup>,
    /// Answers may come from the manager's response cache (Triton's
    /// `response_cache { enable: true }`): an identical request (same
    /// inputs, same outputs asked for) is answered without the engine. Needs
    /// [`crate::ManagerBuilder::response_cache`]. By default, off.
    pub response_cache: bool,
    /// Never evicted to make room for another model (see
    /// [`crate::ManagerBuilder::eviction`]). By default, false.
    pub pinned: bool,
    /// Warm-up requests (Triton's `model_warmup`), run on every engine
    /// instance after it loads and before the model is published (so it is
    /// not ready, and takes no request, until they pass). A sample that fails
    /// fails the load, naming the sample. When there are samples, the CPU
    /// engines (and `auto` candidates) are compared on them rather than on
    /// inputs whose dynamic dimensions are 1. By default, none.
    pub warmup: Vec<WarmupSample>,
    /// Keeps the first standby backend that loads loaded too ("hot
    /// standby"), charged to the memory budget, so a run-time fallback moves
    /// the model at once instead of loading it then. By default, false: a
    /// standby backend is loaded on the first fallback.
    pub hot_standby: bool,
    /// Whether its CPU engines may be re-timed on its first real requests
    /// and the model moved to a clearly faster one (only when it declares no
    /// [`ModelSpec::warmup`]; see [`crate::monitor::RetimePolicy`]). By default, true.
    pub retime: bool,
}

/// One warm-up request of a model (Triton's `model_warmup` sample).
#[derive(Debug, Clone)]
pub struct WarmupSample {
    /// Named in errors and logs.
    pub name: String,
    /// Every input of the model, by name, with its full shape (batch
    /// dimension included when the model has one).
    pub inputs: Vec<(String, anemone_core::Tensor)>,
    /// Runs of this sample; 0 counts as 1, as in Triton.
    pub count: usize,
}

impl ModelSpec {
    /// Version 1 of the model at `path`, named `name`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            version: 1,
            path: path.into(),
            backends: None,
            strict: None,
            max_concurrency: None,
            threads: None,
            settings: Vec::new(),
            max_batch_size: None,
            declared_inputs: None,
            optional_inputs: Vec::new(),
            declared_outputs: None,
            declared_output_shapes: None,
            reshapes: crate::reshape::Reshapes::default(),
            ragged: crate::ragged::Ragged::default(),
            batching: None,
            queue: None,
            sequence: None,
            instance_groups: Vec::new(),
            response_cache: false,
            pinned: false,
            warmup: Vec::new(),
            hot_standby: false,
            retime: true,
        }
    }

    /// Sets the version.
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Sets the backend preference, by name.
    pub fn backends(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.backends = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Sets this model's concurrency limit.
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = Some(limit);
        self
    }

    /// Sets the engine threads for this model.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Sets Triton's `max_batch_size` (0 means no batch dimension).
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.max_batch_size = (n > 0).then_some(n);
        self
    }

    /// Turns dynamic batching on with these settings.
    pub fn batching(mut self, batching: Batching) -> Self {
        self.batching = Some(batching);
        self
    }

    /// Makes it a sequence model (see [`ModelSpec::sequence`]).
    pub fn sequence(mut self, settings: crate::sequence::SequenceSettings) -> Self {
        self.sequence = Some(settings);
        self
    }

    /// Gives the model a request queue with these settings.
    pub fn queue(mut self, queue: QueueSettings) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Keeps the model resident: eviction never unloads it.
    pub fn pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
        self
    }

    /// Adds a warm-up request (see [`ModelSpec::warmup`]).
    pub fn warmup(mut self, sample: WarmupSample) -> Self {
        self.warmup.push(sample);
        self
    }

    /// Adds an instance group.
    pub fn instance_group(mut self, group: InstanceGroup) -> Self {
        self.instance_groups.push(group);
        self
    }

    /// Lets answers come from the manager's response cache (see the field).
    pub fn response_cache(mut self, on: bool) -> Self {
        self.response_cache = on;
        self
    }
}

/// Triton's `dynamic_batching` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batching {
    /// Batch sizes (rows) the batcher dispatches as soon as it has them,
    /// without waiting out `max_queue_delay`; the largest one it can form wins.
    /// Empty (the default): dispatch at `max_batch_size` or when the delay ends.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest request may wait for others to join its batch.
    /// By default, zero: a batch holds what is queued when an instance is free.
    pub max_queue_delay: Duration,
    /// Answers in the order requests arrived (Triton's `preserve_ordering`):
    /// an answer that is ready early (a batch that finished first on another
    /// instance, or a request that overtook others by priority) is held until
    /// every earlier request of the model is answered, refused or dropped.
    /// Refusals on arrival (a full queue) are not held. By default, false.
    pub preserve_ordering: bool,
}

/// What happens to a queued request whose queue timeout has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeoutAction {
    /// Fail it with a timeout error without running it (the default).
    #[default]
    Reject,
    /// Keep it, behind every request that has not timed out.
    Delay,
}

/// Triton's `ModelQueuePolicy`: the limits of one priority level's queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePolicy {
    /// Requests this level may hold waiting; a request beyond it is refused at
    /// once with `Unavailable` (HTTP 503, gRPC UNAVAILABLE). By default, unbounded
    /// (admission's concurrency limits still bound it).
    pub max_queue_size: Option<usize>,
    /// How long a request may wait in the queue. By default, without limit.
    pub default_timeout: Option<Duration>,
    /// Whether a request's own `timeout` replaces `default_timeout`. By default, false.
    pub allow_timeout_override: bool,
    /// What a timed-out request gets. By default, [`TimeoutAction::Reject`].
    pub timeout_action: TimeoutAction,
}

/// A per-model queue: priority levels and their policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Priority levels; 1 is the highest. By default, 1.
    pub priority_levels: u32,
    /// The level of a request that names none (or names 0). By default, 1.
    pub default_priority: u32,
    /// The policy of every level without one of its own. By default, [`QueuePolicy::default`].
    pub default_policy: QueuePolicy,
    /// Per-level policies, by level.
    pub priority_policies: BTreeMap<u32, QueuePolicy>,
}

impl Default for QueueSettings {
    /// One level, unbounded, no timeout.
    fn default() -> Self {
        QueueSettings {
            priority_levels: 1,
            default_priority: 1,
            default_policy: QueuePolicy::default(),
            priority_policies: BTreeMap::new(),
        }
    }
}

impl QueueSettings {
    /// The policy of `level`.
    pub fn policy(&self, level: u32) -> &QueuePolicy {
        self.priority_policies
            .get(&level)
            .unwrap_or(&self.default_policy)
    }

    /// The level a request asking for `priority` goes to: as in Triton, 0 or
    /// a level beyond the model's levels means the default level.
    pub fn level(&self, priority: u32) -> u32 {
        let levels = self.priority_levels.max(1);
        if priority == 0 || priority > levels {
            self.default_priority.clamp(1, levels)
        } else {
            priority
        }
    }

    /// Whether a request at `priority` that runs out of its own timeout is
    /// delayed in the queue rather than failed: its level takes the
    /// request's timeout (`allow_timeout_override`) and delays on a timeout
    /// (`timeout_action: DELAY`), as Triton does.
    pub fn delays_timed_out(&self, priority: u32) -> bool {
        let policy = self.policy(self.level(priority));
        policy.allow_timeout_override && policy.timeout_action == TimeoutAction::Delay
    }
}

/// Where an instance group's engines run (Triton's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceKind {
    /// Wherever the model's backend selection puts them (the default).
    #[default]
    Auto,
    /// On a CPU backend.
    Cpu,
    /// On a GPU backend.
    Gpu,
}

/// Triton's `instance_group`: `count` engine instances of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceGroup {
    /// Engine instances, each with its own loaded engine. At least 1.
    pub count: usize,
    /// Where they run. By default, [`InstanceKind::Auto`].
    pub kind: InstanceKind,
    /// Backends for this group, by name, in order. By default, the model's.
    pub backends: Option<Vec<String>>,
    /// Triton's `rate_limiter`: the resources each instance holds while it
    /// runs, and its priority. Used when the manager has a rate limiter
    /// ([`crate::ManagerBuilder::rate_limit`]); ignored otherwise.
    pub rate_limit: Option<crate::rate_limit::RateLimit>,
}

impl InstanceGroup {
    /// `count` instances wherever the model's selection puts them.
    pub fn new(count: usize) -> InstanceGroup {
        InstanceGroup {
            count,
            kind: InstanceKind::Auto,
            backends: None,
            rate_limit: None,
        }
    }

    /// The same group, its instances held by the manager's rate limiter.
    pub fn rate_limit(mut self, limit: crate::rate_limit::RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }
}
