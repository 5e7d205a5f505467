//! The anemone server: the KServe v2 / Open Inference Protocol over HTTP
//! (axum) and gRPC (tonic), with Triton's extensions, serving a Triton-style
//! model repository through the [`anemone_runtime::Manager`].
//!
//! Both front ends are thin: they decode requests into [`v2`] types and ask
//! the shared [`state::AppState`], so HTTP and gRPC answer identically. Errors
//! map to status codes in one table per protocol ([`errors::ApiError`]).
#![deny(missing_docs)]

mod accept;
pub mod bounded_read;
pub mod classification;
mod compression;
pub mod errors;
mod finalize;
pub mod forwarded_headers;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod host_metrics;
pub mod hosts;
pub mod http;
pub mod limits;
mod listeners;
pub mod model_config;
pub mod model_control;
pub mod origins;
pub mod prometheus;
pub mod repository;
pub mod restricted;
pub mod server;
pub mod settings;
pub mod shared_memory;
mod signals;
pub mod state;
pub mod telemetry;
mod tensor_json;
#[cfg(test)]
#[path = "../../anemone-backends/src/test_dir.rs"]
mod test_dir;
pub mod tls;
pub mod v2;

pub use repository::ControlMode;
pub use restricted::RestrictedApi;
pub use server::{Server, ServerOptions};
pub use signals::{second_interrupt, shutdown_signal};

pub mod proto {
    //! The KServe v2 / Triton gRPC messages and services, generated from `proto/`.
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("inference");
}
