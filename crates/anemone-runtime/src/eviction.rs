//! LRU eviction over the memory budget: when a load would exceed the budget,
//! idle models are unloaded, least recently used first, to make room.
//!
//! A model is *evictable* when it is not pinned ([`ModelSpec::pinned`]), has
//! no request admitted (queued or running), has no sequence open (a
//! sequence model's state lives in the loaded model: unloading it would make
//! every open sequence's next request fail; a sequence idle for longer than
//! its `max_idle` is closed), and is not the version being loaded. An
//! evicted model is remembered ([`crate::on_demand`]): a request
//! for it loads it again. Everything here is off unless the manager was built
//! with [`EvictionPolicy::Lru`]; with [`EvictionPolicy::Off`] (the default) a
//! load that does not fit is refused, as before.
//!
//! [`ModelSpec::pinned`]: crate::ModelSpec::pinned

use crate::instance::ModelInstance;
use crate::manager::Manager;
use crate::metrics::{Histogram, HistogramSnapshot};
use crate::on_demand::Gone;
use anemone_core::{Error, Result};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What happens when a load would exceed the memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EvictionPolicy {
    /// The load is refused with [`Error::MemoryBudget`] (the default).
    #[default]
    Off,
    /// Idle, unpinned models are unloaded, least recently used first, until
    /// the load fits; a request for an evicted model loads it again on demand.
    Lru,
}

impl EvictionPolicy {
    /// `off` or `lru`.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::Off => "off",
            EvictionPolicy::Lru => "lru",
        }
    }
}

impl std::str::FromStr for EvictionPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(EvictionPolicy::Off),
            "lru" => Ok(EvictionPolicy::Lru),
            other => Err(format!(
                "unknown eviction policy '{other}'; use lru (unload the least recently used idle models to \
                 make room) or off"
            )),
        }
    }
}

/// How long making room waits for an evicted model's last reference (a
/// request that looked it up just before it was removed) to go.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The eviction state of a manager.
pub(crate) struct Eviction {
    pub(crate) policy: EvictionPolicy,
    /// The origin of `ModelInstance::last_used` stamps.
    epoch: Instant,
    /// Serialises making room with reserving and publishing a load, so two
    /// loads never count the same free bytes, and a model being installed is
    /// never half visible to the one choosing victims.
    room: Mutex<()>,
    /// Evicted models not unloaded since, by name and version: what reloads them.
    pub(crate) gone: Mutex<BTreeMap<(String, u64), Gone>>,
    /// `gone.len()`, read by every request without the lock.
    pub(crate) gone_count: AtomicUsize,
    /// Evictions and on-demand loads, per model name.
    counts: Mutex<BTreeMap<String, Counts>>,
    /// Time each successful load took (start-up, explicit and on-demand).
    pub(crate) load_time: Histogram,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    evictions: u64,
    on_demand: u64,
}

/// Eviction counters at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvictionSnapshot {
    /// The policy.
    pub policy: EvictionPolicy,
    /// Evictions so far, per model name.
    pub evictions: Vec<(String, u64)>,
    /// Loads started by a request for an evicted model, per model name.
    pub on_demand_loads: Vec<(String, u64)>,
    /// Time each successful load took.
    pub load_time: HistogramSnapshot,
    /// Models evicted now (not resident; a request loads them again).
    pub evicted: Vec<crate::on_demand::EvictedModel>,
}

impl Eviction {
    pub(crate) fn new(policy: EvictionPolicy) -> Eviction {
        Eviction {
            policy,
            epoch: Instant::now(),
            room: Mutex::default(),
            gone: Mutex::default(),
            gone_count: AtomicUsize::new(0),
            counts: Mutex::default(),
            load_time: Histogram::default(),
        }
    }

    /// Whether LRU eviction is on.
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.policy == EvictionPolicy::Lru
    }

    /// A `last_used` stamp for `at`: nanoseconds since the manager started.
    #[inline]
    pub(crate) fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Holds off other loads' room-making until dropped (`None` when eviction is off).
    pub(crate) fn hold_room(&self) -> Option<MutexGuard<'_, ()>> {
        self.on()
            .then(|| self.room.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn count(&self, model: &str, f: impl FnOnce(&mut Counts)) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        f(counts.entry(model.to_string()).or_default());
    }

    pub(crate) fn count_on_demand(&self, model: &str) {
        self.count(model, |c| c.on_demand += 1);
    }

    pub(crate) fn snapshot(
        &self,
        evicted: Vec<crate::on_demand::EvictedModel>,
    ) -> EvictionSnapshot {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let pick = |f: fn(&Counts) -> u64| {
            counts
                .iter()
                .map(|(m, c)| (m.clone(), f(c)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        EvictionSnapshot {
            policy: self.policy,
            evictions: pick(|c| c.evictions),
            on_demand_loads: pick(|c| c.on_demand),
            load_time: self.load_time.snapshot(),
            evicted,
        }
    }
}

impl Manager {
    /// The eviction policy this manager was built with.
    pub fn eviction_policy(&self) -> EvictionPolicy {
        self.inner.eviction.policy
    }

    /// Makes `needed` bytes free for version `version` of `name`, evicting
    /// idle models least recently used first. The caller holds the room
    /// ([`Eviction::hold_room`]). Without a budget, or with eviction off,
    /// does nothing (the reservation then refuses what does not fit).
    ///
    /// Fails when the model can never fit (more than the whole budget), or
    /// when what is left is held by models that cannot be evicted now.
    pub(crate) fn make_room(
        &self,
        name: &str,
        version: u64,
        needed: u64,
        what: &str,
    ) -> Result<()> {
        let memory = &self.inner.memory;
        let Some(budget) = memory.budget() else {
            return Ok(());
        };
        if !self.inner.eviction.on() {
            return Ok(());
        }
        if needed > budget {
            return Err(Error::Config(format!(
                "model '{name}' needs {needed} bytes ({what}), more than the whole memory budget of {budget} \
                 bytes, so it can never be loaded; raise --memory-budget to at least {needed} bytes"
            )));
        }
        while memory.available() < needed {
            let Some(victim) = self.lru_victim(name, version) else {
                return Err(self.no_room(name, needed, what));
            };
            self.evict(victim, name);
        }
        Ok(())
    }

    /// The least recently used evictable model.
    fn lru_victim(&self, name: &str, version: u64) -> Option<Arc<ModelInstance>> {
        self.inner
            .registry
            .all()
            .into_iter()
            .filter(|m| {
                !m.spec.pinned
                    && m.in_flight() == 0
                    // Unloading would lose the open sequences' state.
                    && m.open_sequences().unwrap_or(0) == 0
                    && !(m.name() == name && m.version() == version)
            })
            .min_by_key(|m| m.last_used())
    }

    /// Unloads `victim`, remembers it for an on-demand load, and waits (a
    /// bounded time) until its memory is given back.
    fn evict(&self, victim: Arc<ModelInstance>, for_model: &str) {
        let (name, version) = (victim.name().to_string(), victim.version());
        // The caller holds the room, so no load charges the budget meanwhile:
        // the charge only falls, and falls by the victim's once it is gone.
        let (bytes, used_before) = (victim.memory_footprint(), self.inner.memory.used());
        let removed = self.inner.registry.remove(&name, Some(version));
        let reason = format!("evicted (LRU) to make room for '{for_model}'");
        tracing::info!(model = %name, version, bytes = victim.memory_footprint(), for_model, "{reason}");
        self.remember_evicted(&victim, reason);
        self.inner.eviction.count(&name, |c| c.evictions += 1);
        let weak = Arc::downgrade(&victim);
        drop(victim);
        drop(removed);
        // Until the last reference is gone and the victim's charge given
        // back: the thread that drops the last reference drops the engines
        // before the charge (a few ms for ONNX Runtime's sessions), and a
        // load that looked meanwhile found no room and no model to evict.
        let released = || {
            weak.strong_count() == 0
                && self.inner.memory.used().saturating_add(bytes) <= used_before
        };
        let start = Instant::now();
        while !released() && start.elapsed() < RELEASE_WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        if weak.strong_count() > 0 {
            tracing::warn!(model = %name, version, "an evicted model is still referenced; its memory is given back later");
        }
    }

    /// Why no room could be made: who holds the budget.
    fn no_room(&self, name: &str, needed: u64, what: &str) -> Error {
        let memory = &self.inner.memory;
        let holders: Vec<String> = self
            .inner
            .registry
            .all()
            .iter()
            .map(|m| {
                let why = if m.spec.pinned {
                    "pinned".to_string()
                } else if m.in_flight() > 0 {
                    format!("{} requests in flight", m.in_flight())
                } else if let Some(open) = m.open_sequences().filter(|n| *n > 0) {
                    format!("{open} sequences open")
                } else {
                    "being replaced".to_string()
                };
                format!(
                    "'{}' version {} ({} bytes, {why})",
                    m.name(),
                    m.version(),
                    m.memory_footprint()
                )
            })
            .collect();
        Error::Unavailable {
            what: format!("model '{name}'"),
            reason: format!(
                "it needs {needed} bytes ({what}) but only {} of the {}-byte memory budget are free, and no \
                 model can be evicted now: {}; retry when they are idle, unpin a model, or raise --memory-budget",
                memory.available(),
                memory.budget().unwrap_or(u64::MAX),
                if holders.is_empty() { "loads in progress hold the rest".to_string() } else { holders.join(", ") }
            ),
        }
    }
}
