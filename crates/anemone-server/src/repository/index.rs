//! The repository index: every model on disk or known, with its state and
//! why (the backend chosen and how, an eviction, an ensemble's missing step).

use super::{Entry, IndexRow, Repository, State};

impl Repository {
    /// Every model on disk or known, with its state. A model that was
    /// evicted to make room (`--eviction lru`) is `UNAVAILABLE` with the
    /// reason, or `LOADING` while a request loads it again.
    pub fn index(&self) -> Vec<IndexRow> {
        let evicted = self.manager.evicted();
        let entries = self.lock();
        let mut names = self.scan();
        names.extend(entries.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| match entries.get(&name) {
                Some(e) if e.state == State::Ready && self.manager.ensemble(&name).is_some() => {
                    let version = e.versions.last().map(u64::to_string).unwrap_or_default();
                    self.ensemble_row(name.clone(), version.clone())
                        .unwrap_or(IndexRow {
                            name,
                            version,
                            state: "UNAVAILABLE".into(),
                            reason: "unloaded while the index was read".into(),
                        })
                }
                Some(e) if e.state == State::Ready && self.manager.model(&name, None).is_err() => {
                    evicted_row(name, e, &evicted)
                }
                // Loaded again: the previous load serves meanwhile, READY as
                // in Triton's index.
                Some(e) if e.state == State::Loading && e.state_before_load == State::Ready => {
                    IndexRow {
                        version: e.versions.last().map(u64::to_string).unwrap_or_default(),
                        state: State::Ready.as_str().into(),
                        reason: "being loaded again; the previous load serves meanwhile".into(),
                        name,
                    }
                }
                // Triton's index has no UNLOADED: an unloaded model is
                // UNAVAILABLE, "unloaded".
                Some(e) if e.state == State::Unloaded => IndexRow {
                    version: e.versions.last().map(u64::to_string).unwrap_or_default(),
                    state: "UNAVAILABLE".into(),
                    reason: match e.reason.is_empty() {
                        true => "unloaded".into(),
                        false => e.reason.clone(),
                    },
                    name,
                },
                Some(e) => IndexRow {
                    // A failed load's row names the version that failed, as Triton's.
                    version: (e.versions.last().or(e.failed_version.as_ref()))
                        .map(u64::to_string)
                        .unwrap_or_default(),
                    state: e.state.as_str().to_string(),
                    reason: self.reason_with_backend(&name, e),
                    name,
                },
                None => IndexRow {
                    name,
                    version: String::new(),
                    state: String::new(),
                    reason: String::new(),
                },
            })
            .flat_map(|row| self.each_version(row, &entries))
            .collect()
    }

    /// A ready model's row once per version it serves (`version_policy`
    /// with several), as Triton's index lists them; any other row as it is.
    fn each_version(
        &self,
        row: IndexRow,
        entries: &std::collections::BTreeMap<String, Entry>,
    ) -> Vec<IndexRow> {
        let versions = match entries.get(&row.name) {
            Some(e) if row.state == State::Ready.as_str() && e.versions.len() > 1 => &e.versions,
            _ => return vec![row],
        };
        versions
            .iter()
            .map(|v| IndexRow {
                version: v.to_string(),
                ..row.clone()
            })
            .collect()
    }

    /// The entry's reason; for a ready model, followed by how its backend was
    /// chosen (the backend, skipped candidates and why, fallbacks).
    fn reason_with_backend(&self, name: &str, e: &Entry) -> String {
        if e.state != State::Ready {
            return e.reason.clone();
        }
        let Ok(instance) = self.manager.model(name, None) else {
            return e.reason.clone();
        };
        let mut summary = instance.selection().summary();
        let thermal = self.manager.thermal_state();
        if thermal.is_degraded() {
            summary = format!("degraded: thermal state {}; {summary}", thermal.as_str());
        }
        if let Some(why) = self.manager.degraded(name, instance.version()) {
            summary = format!("degraded: {why}; {summary}");
        }
        if e.reason.is_empty() {
            summary
        } else {
            format!("{}; {summary}", e.reason)
        }
    }
}

/// The index row of a loaded model that is not resident: evicted, or being
/// loaded again on demand.
fn evicted_row(name: String, e: &Entry, evicted: &[anemone_runtime::EvictedModel]) -> IndexRow {
    let version = e.versions.last().map(u64::to_string).unwrap_or_default();
    let Some(gone) = evicted.iter().rfind(|g| g.name == name) else {
        return IndexRow {
            name,
            version,
            state: State::Unavailable.as_str().into(),
            reason: "not resident".into(),
        };
    };
    let (state, reason) = if gone.loading {
        (
            State::Loading,
            format!("{}; a request is loading it again", gone.reason),
        )
    } else {
        (
            State::Unavailable,
            format!("{}; the next request for it loads it again", gone.reason),
        )
    };
    IndexRow {
        name,
        version,
        state: state.as_str().into(),
        reason,
    }
}
