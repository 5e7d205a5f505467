//! Core types of anemone: element types, tensors, model metadata, the error
//! type and the backend contract.
//!
//! This crate has no async runtime and no engine in it. Every other anemone
//! crate builds on these types:
//!
//! - [`Tensor`] and [`DataType`]: dense host tensors in C order, joined and
//!   split along the batch dimension by [`Tensor::concat_batch`] and
//!   [`Tensor::split_batch`];
//! - [`ModelMetadata`], [`TensorSpec`] and [`Dim`]: what a model declares;
//! - [`Error`] and [`ErrorKind`]: one error type with a kind and `retryable()`;
//! - [`Backend`] and [`LoadedModel`]: the contract every engine implements;
//!   [`Responder`]: how a decoupled model sends its responses;
//! - [`custom_metrics`]: the metrics a model's own code reports;
//! - [`npy`]: reading and writing NumPy `.npy` files.
//!
//! ```
//! use anemone_core::{npy, Tensor};
//!
//! let t = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
//! let bytes = npy::to_bytes(&t);
//! assert_eq!(npy::from_bytes(&bytes).unwrap(), t);
//! ```
#![deny(missing_docs)]

pub mod backend;
pub mod custom_metrics;
pub mod dtype;
pub mod error;
pub mod gather;
pub mod input_error;
pub mod metadata;
pub mod npy;
pub mod private_dir;
pub mod respond;
pub mod tensor;
pub mod thermal;

pub use backend::{
    stack_inputs, Answer, Backend, CallAnswer, CallRequest, CallResponse, CallSequence, Caller,
    ClientGone, LoadOptions, LoadedModel, ModelCaller, ModelSource, Parameter, Probe, RequestView,
    SequenceId, Support, Tier, BATCHED_SETTING, RAN_ELSEWHERE_SETTING,
};
pub use bytes::Bytes;
pub use dtype::DataType;
pub use error::{BoxError, Error, ErrorKind, InputCount, InputError, Result};
pub use metadata::{Dim, ModelFormat, ModelMetadata, TensorSpec};
pub use respond::{Responder, Response, ResponseSink};
pub use tensor::{Element, Tensor, TensorData, TensorError};
pub use thermal::ThermalState;
