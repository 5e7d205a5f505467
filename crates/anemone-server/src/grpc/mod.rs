//! KServe v2 over gRPC (tonic): `inference.GRPCInferenceService`, with the
//! same messages as Triton's `grpc_service.proto`.
//!
//! Every RPC decodes its request, asks the shared [`AppState`] and encodes
//! the answer; errors become statuses through the one table in
//! [`crate::errors`]. Inference requests and responses are converted in
//! `infer`, the bidirectional stream lives in `stream`, and `limit`
//! holds the message-size policy.

mod compress;
mod connections;
pub mod deadline;
mod infer;
mod infer_frames;
mod limit;
mod logging;
pub mod metadata_limit;
pub mod restrict;
mod stream;
mod trace;

pub use compress::ResponseCompression;
pub use connections::GrpcConnections;
pub use limit::InferenceService;

/// Decodes a `ModelInferRequest` into the protocol-neutral request, checking
/// its raw contents against shapes and datatypes (for [`crate::fuzzing`]);
/// inputs in shared memory are left unread.
pub(crate) fn decode_infer(
    request: crate::proto::ModelInferRequest,
    shm: &crate::shared_memory::SharedMemory,
) -> Result<crate::v2::InferRequest, crate::errors::ApiError> {
    infer::decode(request, shm, usize::MAX)
}

use crate::errors::ApiError;
use crate::limits::check_model_name;
use crate::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use crate::proto::model_repository_parameter::ParameterChoice;
use crate::proto::{self, ModelRepositoryParameter};
use crate::state::AppState;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The gRPC inference service: `inference.GRPCInferenceService`.
///
/// Requests and responses larger than `max_message_bytes` are refused with
/// RESOURCE_EXHAUSTED (tonic itself would answer OUT_OF_RANGE); for a
/// compressed request, the limit holds for the message decompressed.
/// Requests may be compressed with gzip or deflate, as Triton accepts them
/// (tritonclient's `compression_algorithm`); answers are not compressed,
/// as Triton's are not by default, unless
/// [`InferenceService::response_compression`] says so.
pub fn service(state: Arc<AppState>, max_message_bytes: usize) -> InferenceService {
    let inference = Arc::new(Inference {
        state,
        max_message_bytes,
    });
    let server = GrpcInferenceServiceServer::from_arc(Arc::clone(&inference))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Deflate)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    InferenceService::new(server, inference, max_message_bytes)
}

/// Answers every RPC from the shared state.
pub struct Inference {
    state: Arc<AppState>,
    /// The largest message accepted or sent; a response over it becomes an error.
    max_message_bytes: usize,
}

type Answer<T> = Result<Response<T>, Status>;

fn ok<T>(message: T) -> Answer<T> {
    Ok(Response::new(message))
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Answer<proto::ServerLiveResponse> {
        ok(proto::ServerLiveResponse {
            live: self.state.live(),
        })
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Answer<proto::ServerReadyResponse> {
        ok(proto::ServerReadyResponse {
            ready: self.state.ready(),
        })
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Answer<proto::ModelReadyResponse> {
        let r = request.into_inner();
        check_model_name(&r.name)?;
        // As Triton's: a model the server does not know is not ready (an
        // answer, not an error), so tritonclient's is_model_ready says
        // False where HTTP's 404 also reads as not ready.
        let ready = match self.state.model_ready(&r.name, &r.version) {
            Err(e) if e.kind == anemone_core::ErrorKind::NotFound => false,
            answer => answer?,
        };
        ok(proto::ModelReadyResponse { ready })
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Answer<proto::ServerMetadataResponse> {
        ok(self.state.server_metadata())
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Answer<proto::ModelMetadataResponse> {
        let r = request.into_inner();
        check_model_name(&r.name)?;
        ok(self.state.model_metadata(&r.name, &r.version)?)
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Answer<proto::ModelInferResponse> {
        // The client's deadline, less a little time to send the answer, so
        // that the client gets anemone's DEADLINE_EXCEEDED (and the failure
        // is counted) rather than tonic's own cancellation at the same instant.
        let deadline =
            deadline::grpc_timeout(request.metadata().as_ref()).map(deadline::answer_before);
        let span = crate::telemetry::grpc_span(
            &self.state.trace,
            &request.get_ref().model_name,
            request.metadata(),
        );
        let forwarded = (self.state.forward_headers.grpc.as_ref())
            .map(|p| p.grpc(request.metadata()))
            .transpose();
        let run = infer::run(
            &self.state,
            request.into_inner(),
            forwarded,
            deadline,
            self.max_message_bytes,
        );
        ok(crate::telemetry::traced(span, run).await?)
    }

    type ModelStreamInferStream = stream::Responses;

    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<proto::ModelInferRequest>>,
    ) -> Answer<Self::ModelStreamInferStream> {
        let metadata = Arc::new(request.metadata().clone());
        ok(stream::responses(
            Arc::clone(&self.state),
            request.into_inner(),
            metadata,
            self.max_message_bytes,
        ))
    }

    async fn model_config(
        &self,
        request: Request<proto::ModelConfigRequest>,
    ) -> Answer<proto::ModelConfigResponse> {
        let r = request.into_inner();
        check_model_name(&r.name)?;
        ok(proto::ModelConfigResponse {
            config: Some(self.state.model_config(&r.name, &r.version)?),
        })
    }

    async fn model_statistics(
        &self,
        request: Request<proto::ModelStatisticsRequest>,
    ) -> Answer<proto::ModelStatisticsResponse> {
        let r = request.into_inner();
        check_model_name(&r.name)?;
        ok(self.state.statistics(&r.name, &r.version)?)
    }

    async fn repository_index(
        &self,
        request: Request<proto::RepositoryIndexRequest>,
    ) -> Answer<proto::RepositoryIndexResponse> {
        let r = request.into_inner();
        single_repository(&r.repository_name)?;
        ok(self.state.repository_index(r.ready))
    }

    async fn repository_model_load(
        &self,
        request: Request<proto::RepositoryModelLoadRequest>,
    ) -> Answer<proto::RepositoryModelLoadResponse> {
        let r = request.into_inner();
        single_repository(&r.repository_name)?;
        let refused = |e| ApiError::load_refused(&r.model_name, e);
        check_model_name(&r.model_name).map_err(refused)?;
        let config = config_override(&r.parameters).map_err(refused)?;
        self.state.load_model(&r.model_name, config).await?;
        ok(proto::RepositoryModelLoadResponse {})
    }

    async fn repository_model_unload(
        &self,
        request: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Answer<proto::RepositoryModelUnloadResponse> {
        let r = request.into_inner();
        single_repository(&r.repository_name)?;
        // As Triton: unloading what cannot be a model's name ('../etc')
        // does nothing, as for any model that is not loaded.
        if !r.model_name.is_empty() && check_model_name(&r.model_name).is_err() {
            return ok(proto::RepositoryModelUnloadResponse {});
        }
        let dependents = unload_dependents(&r.parameters)?;
        self.state
            .unload_model_after_load(&r.model_name, dependents)
            .await?;
        ok(proto::RepositoryModelUnloadResponse {})
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<proto::SystemSharedMemoryStatusRequest>,
    ) -> Answer<proto::SystemSharedMemoryStatusResponse> {
        use proto::system_shared_memory_status_response::RegionStatus;
        let regions = self
            .state
            .shared_memory
            .status(&request.into_inner().name)?
            .into_iter()
            .map(|r| {
                let status = RegionStatus {
                    name: r.name.clone(),
                    key: r.key,
                    offset: r.offset,
                    byte_size: r.byte_size,
                };
                (r.name, status)
            })
            .collect();
        ok(proto::SystemSharedMemoryStatusResponse { regions })
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<proto::SystemSharedMemoryRegisterRequest>,
    ) -> Answer<proto::SystemSharedMemoryRegisterResponse> {
        let r = request.into_inner();
        let state = Arc::clone(&self.state);
        crate::shared_memory::register_blocking(move || {
            state
                .shared_memory
                .register(&r.name, &r.key, r.offset, r.byte_size)
        })
        .await?;
        ok(proto::SystemSharedMemoryRegisterResponse {})
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<proto::SystemSharedMemoryUnregisterRequest>,
    ) -> Answer<proto::SystemSharedMemoryUnregisterResponse> {
        self.state
            .shared_memory
            .unregister(&request.into_inner().name);
        ok(proto::SystemSharedMemoryUnregisterResponse {})
    }

    async fn cuda_shared_memory_status(
        &self,
        request: Request<proto::CudaSharedMemoryStatusRequest>,
    ) -> Answer<proto::CudaSharedMemoryStatusResponse> {
        use proto::cuda_shared_memory_status_response::RegionStatus;
        let regions = self
            .state
            .shared_memory
            .cuda_status(&request.into_inner().name)?
            .into_iter()
            .map(|r| {
                let status = RegionStatus {
                    name: r.name.clone(),
                    device_id: r.device_id,
                    byte_size: r.byte_size,
                };
                (r.name, status)
            })
            .collect();
        ok(proto::CudaSharedMemoryStatusResponse { regions })
    }

    async fn cuda_shared_memory_register(
        &self,
        request: Request<proto::CudaSharedMemoryRegisterRequest>,
    ) -> Answer<proto::CudaSharedMemoryRegisterResponse> {
        let r = request.into_inner();
        let state = Arc::clone(&self.state);
        crate::shared_memory::register_blocking(move || {
            state
                .shared_memory
                .register_cuda(&r.name, &r.raw_handle, r.device_id, r.byte_size)
        })
        .await?;
        ok(proto::CudaSharedMemoryRegisterResponse {})
    }

    async fn cuda_shared_memory_unregister(
        &self,
        request: Request<proto::CudaSharedMemoryUnregisterRequest>,
    ) -> Answer<proto::CudaSharedMemoryUnregisterResponse> {
        self.state
            .shared_memory
            .unregister_cuda(&request.into_inner().name);
        ok(proto::CudaSharedMemoryUnregisterResponse {})
    }

    async fn trace_setting(
        &self,
        request: Request<proto::TraceSettingRequest>,
    ) -> Answer<proto::TraceSettingResponse> {
        ok(trace::setting(&self.state, request.into_inner())?)
    }

    async fn log_settings(
        &self,
        request: Request<proto::LogSettingsRequest>,
    ) -> Answer<proto::LogSettingsResponse> {
        ok(logging::log_settings(
            &self.state.settings,
            request.into_inner(),
        )?)
    }
}

/// anemone serves one repository; Triton's `repository_name` may only name none.
fn single_repository(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "anemone serves a single model repository; leave repository_name empty (got '{name}')"
    )))
}

/// The `config` load parameter: a JSON model configuration in `string_param`.
fn config_override(
    parameters: &HashMap<String, ModelRepositoryParameter>,
) -> Result<Option<&str>, ApiError> {
    let mut config = None;
    for (key, value) in parameters {
        match (key.as_str(), &value.parameter_choice) {
            ("config", Some(ParameterChoice::StringParam(json))) => config = Some(json.as_str()),
            ("config", _) => {
                return Err(ApiError::invalid("load parameter 'config' must be a string_param holding the model configuration as JSON"))
            }
            (k, _) if k.starts_with("file:") => return Err(crate::limits::refuse_file_override(k)),
            (k, _) => return Err(ApiError::invalid(format!("unknown load parameter '{}'; anemone knows only 'config'", crate::limits::shown(k)))),
        }
    }
    Ok(config)
}

/// Triton's unload parameter `unload_dependents` (a bool_param; false when
/// absent); any other parameter is refused.
fn unload_dependents(
    parameters: &HashMap<String, ModelRepositoryParameter>,
) -> Result<bool, ApiError> {
    let mut dependents = false;
    for (key, value) in parameters {
        match (key.as_str(), &value.parameter_choice) {
            ("unload_dependents", Some(ParameterChoice::BoolParam(b))) => dependents = *b,
            ("unload_dependents", _) => {
                return Err(ApiError::invalid(
                    "unload parameter 'unload_dependents' must be a bool_param",
                ))
            }
            (k, _) => {
                return Err(ApiError::invalid(format!(
                    "unknown unload parameter '{}'; anemone knows only 'unload_dependents'",
                    crate::limits::shown(k)
                )))
            }
        }
    }
    Ok(dependents)
}
