//! The model registry: `(name, version)` → loaded model, with a lock-free read path.
//!
//! Readers load an immutable snapshot through `arc-swap` and never take a
//! lock, so lookups do not contend with each other or with loads. Writers
//! (load, unload) serialise on a mutex, copy the snapshot, change it and
//! publish the new one.
//!
//! [`Registry::with`] borrows the model from the snapshot for the length of
//! a closure: no reference count is taken or dropped, so it costs the
//! snapshot load and one hash probe. [`Registry::get`] hands out an owned
//! handle, for a caller that keeps the model beyond the lookup (a request
//! that runs on it, possibly on another thread).

use crate::instance::ModelInstance;
use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Which version of a model a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionRequest {
    /// The highest loaded version.
    #[default]
    Latest,
    /// Exactly this version.
    Specific(u64),
}

impl From<Option<u64>> for VersionRequest {
    fn from(v: Option<u64>) -> Self {
        v.map_or(VersionRequest::Latest, VersionRequest::Specific)
    }
}

/// The loaded versions of one model name.
#[derive(Clone, Default)]
struct Versions {
    /// The highest version, kept apart so the common lookup is one hash probe.
    latest: Option<Arc<ModelInstance>>,
    all: BTreeMap<u64, Arc<ModelInstance>>,
}

impl Versions {
    fn refresh_latest(&mut self) {
        self.latest = self.all.values().next_back().cloned();
    }
}

type Snapshot = FxHashMap<String, Versions>;

/// The set of loaded models.
#[derive(Default)]
pub struct Registry {
    models: ArcSwap<Snapshot>,
    /// Serialises writers; readers never touch it.
    write: Mutex<()>,
}

impl Registry {
    /// Finds a loaded model and hands out an owned handle to it. Takes no
    /// lock; the handle costs two atomic operations (taken here, dropped by
    /// the caller) that [`Registry::with`] does without.
    #[inline]
    pub fn get(&self, name: &str, version: VersionRequest) -> Option<Arc<ModelInstance>> {
        self.with(name, version, Arc::clone)
    }

    /// Calls `f` with a loaded model, borrowed from the current snapshot, and
    /// returns its result; `None` when no such model is loaded. Takes no lock
    /// and no reference count: the snapshot stays alive (and the model with
    /// it, even if it is unloaded meanwhile) until `f` returns. Keep `f`
    /// short: a writer's old snapshot is freed only once no reader holds it.
    #[inline]
    pub fn with<R>(
        &self,
        name: &str,
        version: VersionRequest,
        f: impl FnOnce(&Arc<ModelInstance>) -> R,
    ) -> Option<R> {
        let snapshot = self.models.load();
        let versions = snapshot.get(name)?;
        let instance = match version {
            VersionRequest::Latest => versions.latest.as_ref()?,
            VersionRequest::Specific(v) => versions.all.get(&v)?,
        };
        Some(f(instance))
    }

    /// Adds a model version, replacing (and returning) one with the same version.
    pub fn insert(&self, instance: Arc<ModelInstance>) -> Option<Arc<ModelInstance>> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Snapshot = (**self.models.load()).clone();
        let versions = next.entry(instance.name().to_string()).or_default();
        let old = versions.all.insert(instance.version(), instance);
        versions.refresh_latest();
        self.models.store(Arc::new(next));
        old
    }

    /// Replaces `old` by `new` (same name and version) only if `old` is still
    /// the one registered; says whether it did.
    pub fn replace(&self, old: &Arc<ModelInstance>, new: Arc<ModelInstance>) -> bool {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.models.load();
        let still = current
            .get(old.name())
            .and_then(|v| v.all.get(&old.version()))
            .is_some_and(|m| Arc::ptr_eq(m, old));
        if !still {
            return false;
        }
        let mut next: Snapshot = (**current).clone();
        let versions = next.entry(new.name().to_string()).or_default();
        versions.all.insert(new.version(), new);
        versions.refresh_latest();
        self.models.store(Arc::new(next));
        true
    }

    /// Removes one version, or every version when `version` is `None`. Returns what was removed.
    pub fn remove(&self, name: &str, version: Option<u64>) -> Vec<Arc<ModelInstance>> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Snapshot = (**self.models.load()).clone();
        let removed = match (next.get_mut(name), version) {
            (None, _) => Vec::new(),
            (Some(versions), Some(v)) => {
                let removed = versions.all.remove(&v).into_iter().collect();
                versions.refresh_latest();
                removed
            }
            (Some(versions), None) => std::mem::take(versions).all.into_values().collect(),
        };
        if next.get(name).is_some_and(|v| v.all.is_empty()) {
            next.remove(name);
        }
        self.models.store(Arc::new(next));
        removed
    }

    /// Every loaded model version, sorted by name then version.
    pub fn all(&self) -> Vec<Arc<ModelInstance>> {
        let snapshot = self.models.load();
        let mut names: Vec<&String> = snapshot.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|n| snapshot[n].all.values().cloned())
            .collect()
    }

    /// Versions loaded under `name`, ascending.
    pub fn versions(&self, name: &str) -> Vec<u64> {
        self.models
            .load()
            .get(name)
            .map(|v| v.all.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Names of loaded models, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.models.load().keys().cloned().collect();
        names.sort();
        names
    }
}
