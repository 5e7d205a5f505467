//! The end of a server that stops: its models unloaded once requests have
//! drained, and the Python models' `finalize()` waited for.

use crate::state::AppState;
use std::sync::Arc;

/// Unloads every model once the requests have drained, each on a thread of
/// its own, and waits (at most [`FINALIZE_LIMIT`] in all) for the Python
/// models' processes to end, so that what a model's `finalize` does, and
/// logs, is not cut short by the exit.
pub(crate) async fn unload_all(state: &Arc<AppState>) {
    let manager = state.manager.clone();
    let finished = tokio::task::spawn_blocking(move || {
        let mut names: Vec<String> = manager
            .models()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let manager = manager.clone();
            let _ = std::thread::Builder::new()
                .name("unload".into())
                .spawn(move || manager.unload_model(&name, None));
        }
        anemone_backends::python::wait_for_finalize(FINALIZE_LIMIT)
    })
    .await;
    if !matches!(finished, Ok(true)) {
        tracing::warn!(
            "a Python model's process had not ended {FINALIZE_LIMIT:?} after the models were unloaded; exiting anyway"
        );
    }
}

/// How long a server exiting waits for its Python models' `finalize`: a
/// process's own limit (5 s, then it is killed) and a second to spare.
const FINALIZE_LIMIT: std::time::Duration = std::time::Duration::from_secs(6);
