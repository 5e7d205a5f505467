//! The protocol answers about ensembles: readiness, metadata and
//! configuration, answered from the runtime's loaded ensemble.

use super::AppState;
use crate::errors::ApiError;
use crate::proto::{self, model_metadata_response::TensorMetadata};
use crate::{model_config, v2};
use anemone_runtime::ensemble::Ensemble;
use anemone_runtime::ModelState;
use std::sync::Arc;

impl AppState {
    /// The loaded ensemble `name` when `version` (empty: any) is its version;
    /// `None` when no ensemble of that name is loaded.
    pub(super) fn loaded_ensemble(
        &self,
        name: &str,
        version: &str,
    ) -> Option<Result<Arc<Ensemble>, ApiError>> {
        let ensemble = self.manager.ensemble(name)?;
        Some(match v2::version(version) {
            Err(e) => Err(e),
            Ok(Some(v)) if v != ensemble.spec().version => Err(ApiError::not_found(format!(
                "ensemble '{name}' has no version {v}; it is served as version {}",
                ensemble.spec().version
            ))),
            Ok(_) => Ok(ensemble),
        })
    }

    /// A loaded ensemble that can serve, or why not (UNAVAILABLE naming the
    /// composing model that is missing).
    pub(super) fn ready_ensemble(
        &self,
        name: &str,
        version: &str,
    ) -> Option<Result<Arc<Ensemble>, ApiError>> {
        Some(self.loaded_ensemble(name, version)?.and_then(|e| {
            match self.manager.ensemble_state(name) {
                Some(ModelState::Unavailable { reason }) => Err(ApiError::unavailable(format!(
                    "ensemble '{name}' is not ready: {}",
                    self.repository.relative_paths(&reason)
                ))),
                _ => Ok(e),
            }
        }))
    }

    /// `GET /v2/models/{ensemble}`: platform `ensemble`, its own inputs and outputs.
    pub(super) fn ensemble_metadata(ensemble: &Ensemble) -> proto::ModelMetadataResponse {
        let tensors = |specs: &[anemone_core::TensorSpec]| -> Vec<TensorMetadata> {
            specs
                .iter()
                .map(|s| TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.dtype.kserve_name().into(),
                    shape: model_config::dims_of(s),
                })
                .collect()
        };
        let spec = ensemble.spec();
        proto::ModelMetadataResponse {
            name: spec.name.clone(),
            versions: vec![spec.version.to_string()],
            platform: model_config::ENSEMBLE_PLATFORM.into(),
            inputs: tensors(&ensemble.metadata().inputs),
            outputs: tensors(&ensemble.metadata().outputs),
        }
    }
}
