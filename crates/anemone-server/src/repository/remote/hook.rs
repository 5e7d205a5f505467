//! Where the repository asks its mirror (if any) to sync: before a poll scan
//! and before a load through the repository API.

use super::{log_report, Mirror, Scope};
use crate::errors::ApiError;
use crate::repository::Repository;
use std::sync::Arc;

impl Repository {
    /// Makes `mirror` keep this repository's directory in step with its
    /// sources. Called once, after [`Repository::open`] on the mirror's view.
    pub fn attach_mirror(&self, mirror: Mirror) {
        let _ = self.mirror.set(Arc::new(mirror));
    }

    /// Before a poll scan: syncs every model. A source that cannot be listed
    /// changes nothing (what is loaded keeps serving); the error is logged.
    pub(crate) async fn sync_mirror(&self) {
        let Some(mirror) = self.mirror.get() else {
            return;
        };
        match mirror.sync(Scope::All).await {
            Ok(report) => log_report(mirror, Scope::All, &report),
            // Said once until it changes, as each model's errors are.
            Err(e) => {
                let failed = [(String::new(), e)];
                for (_, e) in mirror.unsaid(Scope::Models(&[]), &failed) {
                    tracing::error!("model repository sync failed, nothing changed: {e}");
                }
            }
        }
    }

    /// Before a load through the repository API: syncs that model, and says
    /// why when it cannot (503: the store may come back).
    pub async fn sync_before_load(&self, name: &str) -> Result<(), ApiError> {
        let Some(mirror) = self.mirror.get() else {
            return Ok(());
        };
        let names = [name.to_string()];
        let report = mirror
            .sync(Scope::Models(&names))
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot load model '{name}': {e}")))?;
        log_report(mirror, Scope::Models(&names), &report);
        match report.errors.into_iter().find(|(m, _)| m == name) {
            Some((_, e)) => Err(ApiError::unavailable(format!(
                "cannot load model '{name}': {e}"
            ))),
            None => Ok(()),
        }
    }
}
