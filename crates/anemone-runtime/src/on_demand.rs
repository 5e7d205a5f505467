//! Models that come back on demand. An evicted model is remembered with its
//! spec and counters; the first request for it starts one load (on a thread of
//! its own), and every request for it, then or while it runs, waits for that
//! same load (single flight) and is answered on the model it loaded.
//!
//! [`Manager::unload_model`] forgets an evicted model: after an explicit
//! unload, requests for it are refused as for any unknown model.

use crate::instance::ModelInstance;
use crate::manager::Manager;
use crate::metrics::ModelMetrics;
use crate::spec::ModelSpec;
use anemone_core::{Error, ModelMetadata, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// What an on-demand load answers its waiters: the model, or why not.
type Answer = std::result::Result<Arc<ModelInstance>, String>;

/// An evicted model version, kept so a request can load it again.
pub(crate) struct Gone {
    spec: ModelSpec,
    /// Its counters, carried over to the next load so nothing is forgotten.
    pub(crate) metrics: Arc<ModelMetrics>,
    reason: String,
    since: SystemTime,
    memory_bytes: u64,
    /// What it declared when it was resident (metadata is answered from it).
    metadata: ModelMetadata,
    /// The backend it ran on.
    backend: &'static str,
    /// Set while an on-demand load runs: where its answer will appear.
    loading: Option<watch::Receiver<Option<Answer>>>,
}

/// A model version that was evicted and is not resident now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EvictedModel {
    /// The model's name.
    pub name: String,
    /// The version.
    pub version: u64,
    /// Why it is not resident, e.g. `evicted (LRU) to make room for 'resnet'`.
    pub reason: String,
    /// When it was evicted, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Bytes it was charged before it was evicted.
    pub memory_bytes: u64,
    /// Whether a request is loading it again now.
    pub loading: bool,
    /// The backend it ran on before it was evicted.
    pub backend: &'static str,
}

impl Manager {
    /// Remembers an evicted model so a request can load it again.
    pub(crate) fn remember_evicted(&self, victim: &ModelInstance, reason: String) {
        let mut spec = victim.spec.clone();
        if spec.backends.is_none() && spec.instance_groups.iter().all(|g| g.backends.is_none()) {
            // Loaded again on the backend it ran on, the others standing by in
            // order: the CPU engines are not loaded and timed again each time.
            let chosen = victim.selection().chosen().map(str::to_string);
            let order: Vec<String> = chosen
                .into_iter()
                .chain(victim.standby.iter().map(|c| c.label.clone()))
                .collect();
            spec.backends = (!order.is_empty()).then_some(order);
        }
        let mut gone = self.lock_gone();
        gone.insert(
            (victim.name().to_string(), victim.version()),
            Gone {
                spec,
                metrics: Arc::clone(&victim.metrics),
                reason,
                since: SystemTime::now(),
                memory_bytes: victim.memory_footprint(),
                metadata: victim.metadata().clone(),
                backend: victim.backend(),
                loading: None,
            },
        );
        self.publish_gone(gone.len());
    }

    /// Evicted models (not resident now; a request loads them again), sorted
    /// by name and version.
    pub fn evicted(&self) -> Vec<EvictedModel> {
        self.lock_gone()
            .iter()
            .map(|((name, version), g)| EvictedModel {
                name: name.clone(),
                version: *version,
                reason: g.reason.clone(),
                since_ms: g
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                memory_bytes: g.memory_bytes,
                loading: g.loading.is_some(),
                backend: g.backend,
            })
            .collect()
    }

    /// What an evicted version of `name` (`version`, or the highest evicted)
    /// declared when it was resident, with that version: metadata requests are
    /// answered from it without loading the model again.
    pub fn evicted_metadata(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Option<(u64, ModelMetadata)> {
        if self.inner.eviction.gone_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let gone = self.lock_gone();
        let ((_, v), g) = match version {
            Some(v) => gone.get_key_value(&(name.to_string(), v))?,
            None => gone.iter().rfind(|((n, _), _)| n == name)?,
        };
        Some((*v, g.metadata.clone()))
    }

    /// Forgets evicted versions of `name` (one, or all when `version` is
    /// `None`); `keep_loading` spares one whose on-demand load runs. Says
    /// whether any was forgotten.
    pub(crate) fn forget_evicted(
        &self,
        name: &str,
        version: Option<u64>,
        keep_loading: bool,
    ) -> bool {
        self.forget_evicted_before(name, version, keep_loading, None)
    }

    /// [`Manager::forget_evicted`], sparing those evicted at or after
    /// `loaded_from`: a load that ends forgets the evictions it undoes, not one of
    /// the very instance it installed (another load's room, made between the
    /// install and this call).
    pub(crate) fn forget_evicted_before(
        &self,
        name: &str,
        version: Option<u64>,
        keep_loading: bool,
        loaded_from: Option<SystemTime>,
    ) -> bool {
        if self.inner.eviction.gone_count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut gone = self.lock_gone();
        let before = gone.len();
        gone.retain(|(n, v), g| {
            n != name
                || version.is_some_and(|want| want != *v)
                || (keep_loading && g.loading.is_some())
                || loaded_from.is_some_and(|t| g.since >= t)
        });
        let forgot = gone.len() != before;
        self.publish_gone(gone.len());
        forgot
    }

    /// The counters of an evicted version, for the load that brings it back.
    pub(crate) fn evicted_metrics(&self, name: &str, version: u64) -> Option<Arc<ModelMetrics>> {
        if self.inner.eviction.gone_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.lock_gone()
            .get(&(name.to_string(), version))
            .map(|g| Arc::clone(&g.metrics))
    }

    /// The resident model a request for `name` (`version`, or the latest)
    /// runs on. A request for the latest version is not served by an older
    /// resident one while a newer version is evicted.
    #[inline]
    pub(crate) fn resident(&self, name: &str, version: Option<u64>) -> Option<Arc<ModelInstance>> {
        self.with_model(name, version, Arc::clone)
    }

    /// Calls `f` with a loaded model version (`None`: the latest), borrowed
    /// from the registry's snapshot, and returns its result. It takes no
    /// lock and no handle, so it is the cheapest lookup; use
    /// [`Manager::model`] to keep the model. `None` when that version is not
    /// resident, or, for the latest, while a newer version is evicted (a
    /// request for it would load that one again).
    ///
    /// It sees every load and unload that returned before it started. On a
    /// thread that has called [`crate::registry::on_thread_park`] (tokio's
    /// workers in `anemone serve`), the lookup costs no atomic
    /// read-modify-write, but the thread keeps the registry snapshot it
    /// looked up in, so an unloaded model (and its engine memory) stays
    /// alive until that thread's next lookup or next `on_thread_park`: call
    /// it from such a thread each time it goes idle. Other threads keep
    /// nothing once `f` returns.
    #[inline]
    pub fn with_model<R>(
        &self,
        name: &str,
        version: Option<u64>,
        f: impl FnOnce(&Arc<ModelInstance>) -> R,
    ) -> Option<R> {
        if self.inner.eviction.gone_count.load(Ordering::Relaxed) == 0 {
            return self.inner.registry.with(name, version.into(), f);
        }
        let found = self.inner.registry.with(name, version.into(), |m| {
            (version.is_some() || !self.newer_evicted(name, m.version())).then(|| f(m))
        });
        found.flatten()
    }

    fn newer_evicted(&self, name: &str, than: u64) -> bool {
        self.lock_gone().keys().any(|(n, v)| n == name && *v > than)
    }

    /// Waits for `name` (`version`, or the latest) to be loaded again, starting
    /// the load unless one runs. `NotFound` when it is not an evicted model;
    /// a `timeout` counts from `start`.
    pub(crate) async fn load_on_demand(
        &self,
        name: &str,
        version: Option<u64>,
        timeout: Option<Duration>,
        start: Instant,
    ) -> Result<Arc<ModelInstance>> {
        let Some(mut rx) = self.start_on_demand(name, version) else {
            return self.loaded_meanwhile(name, version);
        };
        let wait = async move { rx.wait_for(Option::is_some).await.map(|a| a.clone()) };
        let answer = match timeout {
            None => wait.await,
            Some(limit) => {
                match tokio::time::timeout(limit.saturating_sub(start.elapsed()), wait).await {
                    Ok(answer) => answer,
                    Err(_) => return Err(self.reject(Error::Timeout(limit))),
                }
            }
        };
        self.on_demand_answer(name, answer.ok().flatten())
    }

    /// [`Manager::load_on_demand`] for a thread that may block.
    pub(crate) fn load_on_demand_blocking(
        &self,
        name: &str,
        version: Option<u64>,
        timeout: Option<Duration>,
        start: Instant,
    ) -> Result<Arc<ModelInstance>> {
        let Some(rx) = self.start_on_demand(name, version) else {
            return self.loaded_meanwhile(name, version);
        };
        loop {
            if let Some(answer) = rx.borrow().clone() {
                return self.on_demand_answer(name, Some(answer));
            }
            if rx.has_changed().is_err() {
                return self.on_demand_answer(name, None);
            }
            if let Some(limit) = timeout.filter(|l| start.elapsed() > *l) {
                return Err(self.reject(Error::Timeout(limit)));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The model, when no evicted entry is left to load: an on-demand load
    /// that ended between the caller's lookup and its search for the load
    /// has installed it (the load removes its entry only after installing
    /// the model). Otherwise it is not loaded.
    fn loaded_meanwhile(&self, name: &str, version: Option<u64>) -> Result<Arc<ModelInstance>> {
        match self.resident(name, version) {
            Some(model) => Ok(model),
            None => Err(self.reject(self.not_found(name, version))),
        }
    }

    fn on_demand_answer(&self, name: &str, answer: Option<Answer>) -> Result<Arc<ModelInstance>> {
        match answer {
            Some(Ok(model)) => Ok(model),
            Some(Err(reason)) => Err(self.reject(Error::Unavailable {
                what: format!("model '{name}'"),
                reason: format!("it was evicted, and loading it again failed: {reason}"),
            })),
            None => Err(self.reject(Error::Internal(format!(
                "the on-demand load of model '{name}' ended without an answer"
            )))),
        }
    }

    /// Where the answer of the on-demand load of `name` (`version`, or the
    /// highest evicted one) will appear; starts that load unless one runs.
    /// `None` when no such version is evicted.
    fn start_on_demand(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Option<watch::Receiver<Option<Answer>>> {
        let mut gone = self.lock_gone();
        let key = match version {
            Some(v) => (name.to_string(), v),
            None => gone.keys().rfind(|(n, _)| n == name)?.clone(),
        };
        let entry = gone.get_mut(&key)?;
        if let Some(rx) = &entry.loading {
            return Some(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        entry.loading = Some(rx.clone());
        let spec = entry.spec.clone();
        drop(gone);
        let key_here = key.clone();
        self.inner.eviction.count_on_demand(name);
        tracing::info!(model = %name, version = key.1, "loading an evicted model on demand");
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("anemone-on-demand-{name}"))
            .spawn(move || {
                let answer = this.load_model_blocking(spec).map_err(|e| e.chain_string());
                let mut gone = this.lock_gone();
                match &answer {
                    Ok(_) => {
                        gone.remove(&key);
                    }
                    Err(reason) => {
                        if let Some(entry) = gone.get_mut(&key) {
                            entry.loading = None;
                            entry.reason =
                                format!("{}; loading it on demand failed: {reason}", entry.reason);
                        }
                    }
                }
                this.publish_gone(gone.len());
                drop(gone);
                let _ = tx.send(Some(answer));
            });
        if let Err(e) = spawned {
            tracing::warn!(model = %name, "cannot start an on-demand loader thread: {e}");
            if let Some(entry) = self.lock_gone().get_mut(&key_here) {
                entry.loading = None;
            }
        }
        Some(rx)
    }

    fn lock_gone(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(String, u64), Gone>> {
        self.inner
            .eviction
            .gone
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn publish_gone(&self, len: usize) {
        self.inner.eviction.gone_count.store(len, Ordering::Release);
    }
}
