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
//!
//! On a thread that called [`on_thread_park`] (tokio's worker threads in
//! `anemone serve`), the snapshot load itself costs no atomic
//! read-modify-write: the thread keeps the snapshot it last used in a
//! thread-local cache until a writer changes the registry, and empties that
//! cache each time it goes idle. What that cache keeps alive, and why it is
//! never stale, is in the `thread_cache` module's docs (below, in the
//! source).

mod key;
mod thread_cache;

pub use thread_cache::on_thread_park;

use crate::instance::ModelInstance;
use arc_swap::ArcSwap;
use key::{Key, Name};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
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

type Snapshot = FxHashMap<Key, Versions>;

/// The set of loaded models.
#[derive(Default)]
pub struct Registry {
    models: ArcSwap<Snapshot>,
    /// Serialises writers; readers never touch it.
    write: Mutex<()>,
    /// Bumped by every writer after it stores a new snapshot; the
    /// per-thread caches compare it with the generation they cached at, and
    /// name this registry by its address (`thread_cache`).
    generation: Arc<AtomicU64>,
}

/// The model `version` of `name` in `snapshot`.
#[inline(always)]
fn find<'a>(
    snapshot: &'a Snapshot,
    name: &str,
    version: VersionRequest,
) -> Option<&'a Arc<ModelInstance>> {
    let versions = snapshot.get(Name::new(name))?;
    match version {
        VersionRequest::Latest => versions.latest.as_ref(),
        VersionRequest::Specific(v) => versions.all.get(&v),
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Other threads' caches of it go at their next lookup or park.
        self.release_own_thread();
    }
}

impl Registry {
    /// Finds a loaded model and hands out an owned handle to it. Takes no
    /// lock; the handle costs two atomic operations (taken here, dropped by
    /// the caller) that [`Registry::with`] does without. Sees what
    /// [`Registry::with`] sees, through the same per-thread cache.
    #[inline]
    pub fn get(&self, name: &str, version: VersionRequest) -> Option<Arc<ModelInstance>> {
        self.with(name, version, Arc::clone)
    }

    /// Adds a model version, replacing (and returning) one with the same version.
    pub fn insert(&self, instance: Arc<ModelInstance>) -> Option<Arc<ModelInstance>> {
        let guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Snapshot = (**self.models.load()).clone();
        let versions = next.entry(Key(instance.name().to_string())).or_default();
        let old = versions.all.insert(instance.version(), instance);
        versions.refresh_latest();
        self.models.store(Arc::new(next));
        self.bump_generation();
        drop(guard);
        self.release_own_thread();
        old
    }

    /// Replaces `old` by `new` (same name and version) only if `old` is still
    /// the one registered; says whether it did.
    pub fn replace(&self, old: &Arc<ModelInstance>, new: Arc<ModelInstance>) -> bool {
        let guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.models.load();
        let still = current
            .get(Name::new(old.name()))
            .and_then(|v| v.all.get(&old.version()))
            .is_some_and(|m| Arc::ptr_eq(m, old));
        if !still {
            return false;
        }
        let mut next: Snapshot = (**current).clone();
        let versions = next.entry(Key(new.name().to_string())).or_default();
        versions.all.insert(new.version(), new);
        versions.refresh_latest();
        self.models.store(Arc::new(next));
        self.bump_generation();
        drop(guard);
        self.release_own_thread();
        true
    }

    /// Removes one version, or every version when `version` is `None`. Returns what was removed.
    pub fn remove(&self, name: &str, version: Option<u64>) -> Vec<Arc<ModelInstance>> {
        let guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Snapshot = (**self.models.load()).clone();
        let removed = match (next.get_mut(Name::new(name)), version) {
            (None, _) => Vec::new(),
            (Some(versions), Some(v)) => {
                let removed = versions.all.remove(&v).into_iter().collect();
                versions.refresh_latest();
                removed
            }
            (Some(versions), None) => std::mem::take(versions).all.into_values().collect(),
        };
        if next.get(Name::new(name)).is_some_and(|v| v.all.is_empty()) {
            next.remove(Name::new(name));
        }
        self.models.store(Arc::new(next));
        self.bump_generation();
        drop(guard);
        self.release_own_thread();
        removed
    }

    /// Every loaded model version, sorted by name then version.
    pub fn all(&self) -> Vec<Arc<ModelInstance>> {
        let snapshot = self.models.load();
        let mut names: Vec<&Key> = snapshot.keys().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        names
            .into_iter()
            .flat_map(|n| snapshot[n].all.values().cloned())
            .collect()
    }

    /// Versions loaded under `name`, ascending.
    pub fn versions(&self, name: &str) -> Vec<u64> {
        self.models
            .load()
            .get(Name::new(name))
            .map(|v| v.all.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Names of loaded models, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.models.load().keys().map(|k| k.0.clone()).collect();
        names.sort();
        names
    }
}
