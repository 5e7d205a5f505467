//! The statuses tonic answers itself, before any handler runs:
//!
//! - an oversized request is RESOURCE_EXHAUSTED, as gRPC's C core answers
//!   (tonic enforces `max_decoding_message_size` but answers OUT_OF_RANGE);
//! - a request that is not a valid protobuf message, or a compressed one
//!   that does not decompress, is INVALID_ARGUMENT, the client's error
//!   (tonic answers INTERNAL, as if the server were at fault; so does
//!   Triton 2.51, "Unable to parse request", docs/SERVING.md "Errors");
//! - a compressed request larger than the limit once decompressed is
//!   RESOURCE_EXHAUSTED with the same message as any other over it (tonic
//!   stops decompressing at the limit).
//!
//! `ModelInfer` itself, uncompressed, skips tonic's request buffer
//! ([`super::infer_frames`]) and answers these statuses there.
//!
//! No handler of this service answers OUT_OF_RANGE (the table in
//! [`crate::errors`] has no such code), and a handler's INTERNAL never
//! starts with prost's decode-error text, so the rewrites cannot hide
//! another error.

use super::{infer_frames, Inference};
use crate::errors::ApiError;
use crate::proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::{Code, Status};

/// `inference.GRPCInferenceService`, ready for
/// `tonic::transport::Server::add_service`.
#[derive(Clone)]
pub struct InferenceService {
    inner: GrpcInferenceServiceServer<Inference>,
    /// The handlers, for the calls that `infer_frames` reads itself.
    inference: Arc<Inference>,
    max_message_bytes: usize,
    /// How long a `ModelInfer` message may stall between two frames.
    message_stall: Duration,
    /// Whether (and how hard) inference answers are compressed.
    compression: super::compress::ResponseCompression,
}

/// How long a `ModelInfer` message may stall between two frames unless
/// [`InferenceService::message_timeout`] says otherwise (the default of
/// `anemone serve --http-body-timeout-secs`).
pub const DEFAULT_MESSAGE_STALL: Duration = Duration::from_secs(60);

impl InferenceService {
    pub(super) fn new(
        inner: GrpcInferenceServiceServer<Inference>,
        inference: Arc<Inference>,
        max_message_bytes: usize,
    ) -> InferenceService {
        InferenceService {
            inner,
            inference,
            max_message_bytes,
            message_stall: DEFAULT_MESSAGE_STALL,
            compression: Default::default(),
        }
    }

    /// Compresses inference answers for clients that accept gzip or deflate
    /// (Triton's `--grpc-infer-response-compression-level`); by default
    /// none are. `ModelInfer` answers get `level`; the answers tonic
    /// writes itself (to compressed requests, and the other calls) its own
    /// default level.
    pub fn response_compression(
        mut self,
        level: super::compress::ResponseCompression,
    ) -> InferenceService {
        self.compression = level;
        if level != super::compress::ResponseCompression::None {
            use tonic::codec::CompressionEncoding::{Deflate, Gzip};
            self.inner = self.inner.send_compressed(Gzip).send_compressed(Deflate);
        }
        self
    }

    /// How long a `ModelInfer` request message may stall between two of
    /// its HTTP/2 frames (and before its stream ends) before the call is
    /// answered DEADLINE_EXCEEDED; the server gives it its HTTP body timeout.
    pub fn message_timeout(mut self, stall: Duration) -> InferenceService {
        self.message_stall = stall;
        self
    }
}

impl NamedService for InferenceService {
    const NAME: &'static str = <GrpcInferenceServiceServer<Inference> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for InferenceService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if infer_frames::applies(&request) {
            let inference = Arc::clone(&self.inference);
            let (limit, stall) = (self.max_message_bytes, self.message_stall);
            let compression = self.compression;
            return Box::pin(async move {
                Ok(infer_frames::serve(inference, request, limit, stall, compression).await)
            });
        }
        let answer = self.inner.call(request);
        let limit = self.max_message_bytes;
        Box::pin(async move {
            let response = answer.await?;
            // An early refusal travels in the headers (a trailers-only response).
            match Status::from_header_map(response.headers()) {
                Some(status) if status.code() == Code::OutOfRange => {
                    Ok(too_large(limit, status.message()).into_http())
                }
                Some(status) if is_decompressed_too_large(&status) => Ok(too_large(
                    limit,
                    "the message is larger than that once decompressed",
                )
                .into_http()),
                Some(status) if is_decode_error(&status) => Ok(Status::from(ApiError::invalid(
                    format!("malformed request: {}", status.message()),
                ))
                .into_http()),
                _ => Ok(response),
            }
        })
    }
}

/// RESOURCE_EXHAUSTED for a message over `limit`, saying what was over it.
pub(super) fn too_large(limit: usize, detail: &str) -> Status {
    let mut e = ApiError::too_large(limit);
    e.message = format!("{} ({detail})", e.message);
    Status::from(e)
}

/// Whether `status` is tonic-prost's answer to bytes that do not decode as
/// the request message, or tonic's to a compressed message that does not
/// decompress.
fn is_decode_error(status: &Status) -> bool {
    let message = status.message();
    status.code() == Code::Internal
        && (message.starts_with("failed to decode Protobuf message")
            || message.starts_with("Error decompressing"))
}

/// Whether `status` is tonic's answer to a compressed message that would
/// decompress past the size limit (it stops decompressing there).
fn is_decompressed_too_large(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted
        && status
            .message()
            .starts_with("Error decompressing: size limit")
}
