//! Liveness and readiness, for the whole manager and for each model.

/// The state of a model as health reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelState {
    /// Loaded and serving.
    Ready,
    /// Loaded and serving, under a condition that lowers what it can do
    /// (thermal pressure); the reason says which.
    Degraded {
        /// Why.
        reason: String,
    },
    /// A load failed, or (an ensemble) a composing model is not loaded; the
    /// reason says why.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// Health of one model version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelHealth {
    /// The model's name.
    pub name: String,
    /// The version, if one was loaded.
    pub version: Option<u64>,
    /// Its state.
    #[serde(flatten)]
    pub state: ModelState,
    /// The backend serving it.
    pub backend: Option<String>,
    /// Requests running now.
    pub in_flight: usize,
}

impl ModelHealth {
    /// Whether it can serve requests.
    pub fn ready(&self) -> bool {
        matches!(self.state, ModelState::Ready | ModelState::Degraded { .. })
    }
}

/// Health of the manager and every model it knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthReport {
    /// The manager is running (false only after shutdown began).
    pub live: bool,
    /// Live, and every model it was asked to load is ready.
    pub ready: bool,
    /// The machine's thermal state (nominal where nothing reports one).
    pub thermal: crate::pressure::ThermalState,
    /// Per-model health, sorted by name and version.
    pub models: Vec<ModelHealth>,
}

impl HealthReport {
    /// Health of a model by name (its latest version).
    pub fn model(&self, name: &str) -> Option<&ModelHealth> {
        self.models.iter().rfind(|m| m.name == name)
    }
}
