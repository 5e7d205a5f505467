//! The anemone runtime: the [`Manager`] that loads models onto backends and
//! serves inference requests on them.
//!
//! A request goes through, in order: admission (a global and a per-model
//! concurrency permit, failing fast with `Overloaded`), lookup in the
//! lock-free registry, validation against the model's declared inputs, then
//! the model's queue when it has one (priority levels, queue timeouts,
//! dynamic batching: [`ModelSpec::batching`], [`ModelSpec::queue`]), then the
//! engine on a worker thread (never on the async executor, except for tiny
//! models: [`INLINE_BELOW`]) on the least-loaded of the model's engine
//! instances ([`ModelSpec::instance_groups`]), and finally metrics. Permits are released by `Drop` on every path. A panic in an
//! engine becomes a `Backend` error for that one request.
//!
//! Under a memory budget with [`EvictionPolicy::Lru`] ([`ManagerBuilder::eviction`]),
//! a load that does not fit unloads the least recently used idle models, and a
//! request for an evicted model waits while it is loaded again (one load for
//! every request waiting on it).
//!
//! ```
//! use anemone_runtime::{InferRequest, Manager, ModelSpec};
//! use anemone_core::Tensor;
//! # fn fixture() -> std::path::PathBuf {
//! #     std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/add/1/model.onnx")
//! # }
//!
//! # async fn demo() -> anemone_core::Result<()> {
//! let manager = Manager::builder()
//!     .backend(anemone_backends::TractCpu::default())
//!     .max_concurrency(Some(64))
//!     .build()?;
//! manager.load_model(ModelSpec::new("add", fixture())).await?;
//!
//! let x = Tensor::from_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
//! let y = Tensor::from_vec(vec![1, 4], vec![10.0f32, 20.0, 30.0, 40.0]).unwrap();
//! let response = manager.infer(InferRequest::new("add").input("x", x).input("y", y)).await?;
//! let sum = response.output("sum").unwrap().to_vec::<f32>().unwrap();
//! assert_eq!(sum, vec![11.0, 22.0, 33.0, 44.0]);
//!
//! assert!(manager.health().ready);
//! assert_eq!(manager.metrics().model("add").unwrap().metrics.success, 1);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
#![deny(missing_docs)]

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// docs/ENSEMBLES.md's Rust example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ENSEMBLES.md")]
struct EnsemblesDoctests;

pub mod admission;
pub mod agreement;
pub mod cache;
mod caller;
pub mod compare;
pub mod decoupled;
pub mod ensemble;
pub mod eviction;
mod failover;
pub mod fallback;
pub mod gates;
mod groups;
pub mod health;
pub mod instance;
mod load_select;
mod loader;
pub mod manager;
pub mod metrics;
pub mod monitor;
mod observe;
pub mod on_demand;
mod pipeline;
pub mod pressure;
pub mod ragged;
pub mod rate_limit;
pub mod registry;
pub mod request;
pub mod reshape;
pub mod responses;
mod scheduler;
pub mod selection;
pub mod sequence;
pub mod spec;
pub mod trace;
mod trim;
pub mod tuning;
pub mod validation;
mod warmup;
pub mod worker;

pub use cache::CacheSnapshot;
pub use caller::RepositoryControl;
pub use compare::{ComparisonCounts, EngineComparer, ProcessComparer};
pub use eviction::{EvictionPolicy, EvictionSnapshot};
pub use fallback::{FallbackPolicy, RetryPolicy};
pub use groups::MAX_INSTANCES;
pub use health::{HealthReport, ModelHealth, ModelState};
pub use instance::{EngineStats, ModelInstance};
pub use manager::{default_parallelism, Manager, ManagerBuilder};
pub use metrics::{ModelMetricsSnapshot, Timings};
pub use monitor::{HealthPolicy, ModelWatch, MonitorSnapshot, RecoveryPolicy, RetimePolicy};
pub use observe::{BackendStatus, MetricsSnapshot, ModelMetricsEntry};
pub use on_demand::EvictedModel;
pub use pressure::ThermalState;
pub use ragged::{BatchInput, BatchInputKind, BatchOutput, Ragged};
pub use rate_limit::RateLimit;
pub use registry::VersionRequest;
pub use request::{InferRequest, InferResponse};
pub use responses::{Responses, Streamed};
pub use scheduler::{INLINE_AFTER_RUNS, INLINE_BELOW};
pub use selection::{Attempt, Mode, Move, Outcome, Selection};
pub use sequence::{
    ControlKind, CorrelationId, FalseTrue, SequenceControl, SequenceFlags, SequenceSettings,
    SequenceState, MAX_OPEN_SEQUENCES, MAX_STATE_BYTES,
};
pub use spec::{
    Batching, InstanceGroup, InstanceKind, ModelSpec, QueuePolicy, QueueSettings, TimeoutAction,
    WarmupSample,
};
pub use trim::{limit_allocator_arenas, loading, map_large_allocations_while_loading, LoadPhase};
