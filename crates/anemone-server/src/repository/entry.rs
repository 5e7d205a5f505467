//! What the repository knows of each model, and where it stands.

use super::fingerprint::Fingerprint;
use crate::proto::ModelConfig;

/// Where a model of the repository stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Being loaded.
    Loading,
    /// Loaded and serving.
    Ready,
    /// A load failed (see the reason).
    Unavailable,
    /// Unloaded, or never loaded.
    Unloaded,
}

impl State {
    /// The name Triton's repository index uses (`UNLOADED` is anemone's
    /// own: the index shows such a model as Triton does, `UNAVAILABLE`,
    /// "unloaded").
    pub fn as_str(self) -> &'static str {
        match self {
            State::Loading => "LOADING",
            State::Ready => "READY",
            State::Unavailable => "UNAVAILABLE",
            State::Unloaded => "UNLOADED",
        }
    }
}

/// What the repository knows of one model.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its state.
    pub state: State,
    /// Why it is unavailable, or empty.
    pub reason: String,
    /// The effective configuration, once a load got that far.
    pub config: Option<ModelConfig>,
    /// The classification labels of its outputs, from the last load.
    pub labels: std::sync::Arc<crate::classification::Labels>,
    /// Versions loaded.
    pub versions: Vec<u64>,
    /// Its files as its last load saw them (what tells a load or a poll
    /// that they changed).
    pub(crate) fingerprint: Option<Fingerprint>,
    /// Whether its last load took a config override (a load request's
    /// `config`): the next load without one loads the files' config again.
    pub overridden: bool,
    /// The state when the current or last load began.
    pub state_before_load: State,
    /// The version whose load failed last, for the index's row (Triton's
    /// names it).
    pub failed_version: Option<u64>,
}

impl Entry {
    /// A model known by name, never loaded.
    pub(super) fn unloaded() -> Entry {
        Entry {
            state: State::Unloaded,
            reason: String::new(),
            config: None,
            labels: Default::default(),
            versions: vec![],
            fingerprint: None,
            overridden: false,
            state_before_load: State::Unloaded,
            failed_version: None,
        }
    }
}

/// What a load compares each serving version with, to keep the versions
/// that nothing changed (`Repository::load_engines`): the files as the last
/// load saw them and as this one does, and the last load's config.
pub(super) struct Kept {
    pub(super) seen: Fingerprint,
    pub(super) now: Fingerprint,
    pub(super) config: ModelConfig,
}
