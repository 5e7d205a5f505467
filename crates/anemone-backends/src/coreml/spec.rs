//! The Core ML model specification (`CoreML.Specification`), generated at
//! build time by prost from the subset in `proto/coreml/Model.proto`.
//!
//! Only what describing a model needs is there; protobuf skips the rest of a
//! real file. The names follow Apple's `.proto` files (see that file's header).
#![allow(missing_docs, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/core_ml.specification.rs"));
