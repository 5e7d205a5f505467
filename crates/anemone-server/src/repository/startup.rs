//! Start-up's loads, and what waits on loads: whether start-up has
//! finished, whether a model still waits for it, and a load's end.

use super::{ControlMode, Entry, Repository, State};
use std::sync::atomic::Ordering;

impl Repository {
    /// Whether the start-up loads have all finished, successfully or not.
    pub fn startup_finished(&self) -> bool {
        self.startup_done.load(Ordering::Acquire)
    }

    /// Whether `name` is a model start-up has yet to load (it waits its
    /// turn, not known to the manager yet): a request for it is 503, not
    /// 404, so that a proxy retries it elsewhere.
    pub fn waits_for_startup(&self, name: &str) -> bool {
        if self.startup_finished() {
            return false;
        }
        match self.startup_models.get() {
            Some(names) => names.iter().any(|n| n == name),
            None => self.mode != ControlMode::Explicit && self.scan().iter().any(|n| n == name),
        }
    }

    /// Loads the models start-up asks for: every model (modes none and poll),
    /// or those named (`*` for all) in explicit mode. Failures are recorded,
    /// never returned.
    pub async fn load_startup(&self, names: &[String]) {
        let wanted: Vec<String> = match self.mode {
            ControlMode::Explicit if !names.iter().any(|n| n == "*") => names.to_vec(),
            _ => self.try_scan().unwrap_or_else(|e| {
                tracing::error!(
                    "{e}; no model loads (in poll mode the next pass lists it again, in explicit \
                     mode a load request loads a model)"
                );
                let _ = self.startup_scan_error.set(e);
                Vec::new()
            }),
        };
        let _ = self.startup_models.set(wanted.clone());
        // Ensembles load after the models they compose, one at a time.
        let (wanted, ensembles) = self.ensembles_last(wanted);
        // All at once: `loads` lets `--model-load-thread-count` of them
        // build at a time, the others wait as LOADING.
        let loads = futures_util::future::join_all(wanted.iter().map(|n| self.load(n, None))).await;
        for (name, result) in wanted.iter().zip(loads) {
            if let Err(e) = result {
                tracing::warn!(model = %name, "model unavailable: {}", e.message);
                // A --load-model name the repository lacks is unavailable
                // too: the server is not ready, and the index says why.
                let mut entries = self.lock();
                let entry = entries.entry(name.clone()).or_insert_with(Entry::unloaded);
                if entry.state == State::Unloaded {
                    entry.state = State::Unavailable;
                    entry.reason = e.message;
                }
            }
        }
        for name in &ensembles {
            if let Err(e) = self.load(name, None).await {
                tracing::warn!(model = %name, "ensemble unavailable: {}", e.message);
            }
        }
        self.startup_done.store(true, Ordering::Release);
    }

    /// Waits until `name` is not loading (at once when it is not).
    pub async fn load_done(&self, name: &str) {
        loop {
            // Listening before looking, so that a load ending in between
            // is not missed.
            let ended = self.load_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !self.entry(name).is_some_and(|e| e.state == State::Loading) {
                return;
            }
            ended.await;
        }
    }
}
