//! Poll mode's pass over the repository (`--model-control-mode poll`):
//! models new or changed on disk load, removed ones unload.

use super::fingerprint::Fingerprint;
use super::{model_dir, Repository, State};

impl Repository {
    /// One polling pass: loads new models, reloads changed ones, unloads removed ones.
    pub async fn poll_once(&self) {
        self.sync_mirror().await;
        // A repository that cannot be listed now is not an empty one: its
        // models stay as they are until it can be.
        let on_disk = match self.try_scan() {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!("{e}; the models stay as they are until it can be listed");
                return;
            }
        };
        let known: Vec<(String, Option<Fingerprint>, State)> = self
            .lock()
            .iter()
            .map(|(n, e)| (n.clone(), e.fingerprint.clone(), e.state))
            .collect();
        for (name, _, state) in &known {
            if !on_disk.contains(name) && *state != State::Loading {
                tracing::info!(model = %name, "model removed from the repository; unloading");
                let _ = self.manager.unload_model(name, None);
                self.manager.unload_ensemble(name);
                self.lock().remove(name);
            }
        }
        let mut changed_names = Vec::new();
        for name in on_disk {
            // Read where a load reads it (the real path): the fingerprints
            // of a repository reached through a link or a relative path
            // compare as the same files.
            let dir = model_dir(&self.real_root(), &name).unwrap_or_else(|| self.root.join(&name));
            let current = Fingerprint::take(&dir);
            let changed = match known.iter().find(|(n, ..)| *n == name) {
                None => true,
                Some((_, _, State::Loading)) => false,
                Some((_, seen, _)) => {
                    let same = seen
                        .as_ref()
                        .is_some_and(|seen| current.unchanged_since(seen));
                    if same && seen.as_ref().is_some_and(Fingerprint::hashes) {
                        // Verified the same: kept, so that the next pass
                        // reads no files that have since settled.
                        if let Some(entry) = self.lock().get_mut(&name) {
                            if entry.state != State::Loading {
                                entry.fingerprint = Some(current);
                            }
                        }
                    }
                    !same
                }
            };
            if changed {
                tracing::info!(model = %name, "model new or changed on disk; loading");
                changed_names.push(name);
            }
        }
        // As at start-up: the models at once (`--model-load-thread-count`
        // of them build at a time), then the ensembles, one at a time,
        // after the models they compose.
        let (models, ensembles) = self.ensembles_last(changed_names);
        let loads = futures_util::future::join_all(models.iter().map(|n| self.load(n, None))).await;
        for (name, result) in models.iter().zip(loads) {
            if let Err(e) = result {
                tracing::warn!(model = %name, "reload after a change on disk failed: {}", e.message);
            }
        }
        for name in &ensembles {
            if let Err(e) = self.load(name, None).await {
                tracing::warn!(model = %name, "reload after a change on disk failed: {}", e.message);
            }
        }
    }
}
