//! Triton's model loading API for models' own code (a Python model's
//! `pb_utils.load_model`, `unload_model`): the same loads and unloads as
//! the repository API's, with its rules (`--model-control-mode explicit`
//! only, a configuration override as JSON, no file overrides).

use crate::errors::ApiError;
use crate::state::AppState;
use anemone_core::{Error, ErrorKind, Result};
use anemone_runtime::RepositoryControl;
use std::sync::{Arc, Weak};

/// Loads and unloads through the server's state while it lives.
pub struct ServerControl {
    state: Weak<AppState>,
    runtime: tokio::runtime::Handle,
}

impl ServerControl {
    /// Gives `state`'s manager this control; loads run on `runtime`.
    pub fn install(state: &Arc<AppState>, runtime: tokio::runtime::Handle) {
        let control = ServerControl {
            state: Arc::downgrade(state),
            runtime,
        };
        state.manager.set_repository_control(Arc::new(control));
    }

    fn state(&self, name: &str) -> Result<Arc<AppState>> {
        self.state.upgrade().ok_or_else(|| Error::Unavailable {
            what: format!("model '{name}'"),
            reason: "the server is shutting down".into(),
        })
    }
}

/// A repository API error as the calling model sees it.
fn to_error(name: &str, e: ApiError) -> Error {
    match e.kind {
        ErrorKind::Unavailable | ErrorKind::NotFound => Error::Unavailable {
            what: format!("model '{name}'"),
            reason: e.message,
        },
        ErrorKind::Internal => Error::Internal(e.message),
        _ => Error::Config(e.message),
    }
}

impl RepositoryControl for ServerControl {
    fn load(&self, name: &str, config: Option<&str>) -> Result<()> {
        let state = self.state(name)?;
        let (name, config) = (name.to_string(), config.map(str::to_string));
        let runtime = self.runtime.clone();
        // The load is async; the calling engine thread may or may not be in
        // a runtime's context, so it runs on a thread of its own.
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(state.load_model_for_model(&name, config.as_deref())))
                .join()
                .unwrap_or_else(|_| {
                    Err(ApiError::unavailable(format!(
                        "the load of model '{name}' panicked"
                    )))
                })
        })
        .map_err(|e| to_error(&name, e))
    }

    fn unload(&self, name: &str, dependents: bool) -> Result<()> {
        let state = self.state(name)?;
        state
            .unload_model(name, dependents)
            .map_err(|e| to_error(name, e))
    }
}
