//! The tract backends: tract's CPU runtime (always present), its `cuda`
//! runtime behind the `cuda` cargo feature (Linux), and its `metal` runtime
//! ([`metal::TractMetal`], feature `metal`, Apple systems). They share the
//! model reading, conversion and planning here; a `Target` says what differs.

pub mod captures;
pub mod conv_algo;
pub mod conv_fuse;
pub mod convert;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_conv;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_graph;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_host;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_pool;
#[cfg(all(feature = "cuda", target_os = "linux"))]
mod cuda_probe;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_readback;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_relayout;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_runtime;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_staging;
#[cfg(all(feature = "cuda", target_os = "linux"))]
pub mod cuda_workspace;
pub mod gpu_wait;
pub mod host_blocks;
pub mod kernel_cache;
pub mod layout;
pub mod metal;
pub mod ops;
pub mod pool_fuse;
pub mod rewrite;

mod inputs;
mod per_shape;
#[cfg(test)]
mod plan_cache_tests;
mod run;
mod thread_pools;

use crate::onnx;
use anemone_core::{
    Backend, DataType, Error, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource,
    Probe, Result, Support, Tensor,
};
use per_shape::{has_dynamic_dims, PlanKey};
use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use tract_onnx::pb::GraphProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::runtime::{runtime_for_name, RunOptions, Runnable, State};

/// The version of tract anemone is built with.
pub const TRACT_VERSION: &str = "0.23.9";

/// tract's CPU runtime: pure Rust, always available.
///
/// Matrix products run on a pool of `threads` threads (tract-linalg
/// `multithread-mm`), by default one per CPU core; models asking for the
/// same count share one pool (`thread_pools.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TractCpu;

impl Backend for TractCpu {
    fn name(&self) -> &'static str {
        "tract-cpu"
    }

    fn probe(&self) -> Probe {
        Probe::Available {
            detail: format!("tract {TRACT_VERSION} on {} CPU threads", default_threads()),
        }
    }

    fn supports(&self, source: &ModelSource) -> Support {
        match source.format {
            ModelFormat::Onnx => Support::Yes,
            other => Support::No(format!("tract-cpu runs ONNX models, not {other} models")),
        }
    }

    fn load(&self, source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
        load(&CPU, &source.path, options, Default::default())
            .map(|m| Box::new(m) as Box<dyn LoadedModel>)
    }
}

/// The tract CPU runtime as a [`Target`].
const CPU: Target = Target {
    backend: "tract-cpu",
    runtime: "cpu",
    rewrite: |model, _| Ok(model),
    runtime_impl: None,
    reuse_states: false,
    upload: None,
    run_state: None,
};

/// What one of tract's runtimes needs from the shared loading code.
#[derive(Debug)]
pub(crate) struct Target {
    /// The anemone backend name, e.g. `tract-cpu`.
    pub backend: &'static str,
    /// The name in tract's runtime registry, e.g. `cpu` or `cuda`.
    pub runtime: &'static str,
    /// Applied to the decluttered model just before the runtime prepares it
    /// (for instance, to express operators the runtime lacks with ones it
    /// has), with the model's precision setting.
    pub rewrite: Rewrite,
    /// The runtime itself when it is not in tract's registry (anemone's own);
    /// `runtime` is then only its name.
    pub runtime_impl: Option<fn() -> &'static dyn tract_onnx::tract_core::runtime::Runtime>,
    /// Keep one spawned plan state per calling thread and reuse it across
    /// calls, instead of a fresh state each call. Pays off where a state
    /// caches per-call setup (tract-cuda keeps its cuDNN descriptors per
    /// state and thread); only for runtimes whose states carry nothing from
    /// one call into the next.
    pub reuse_states: bool,
    /// Moves an input to the runtime's device itself, where it does better
    /// than tract's own upload (tract-cuda: through page-locked memory,
    /// `cuda_staging`); `None` from it, or no function, means tract's path.
    pub upload: Option<Upload>,
    /// Runs a reused state (see `reuse_states`) where the target does
    /// better than `State::run` (tract-cuda: CUDA graphs, `cuda_graph`).
    pub run_state: Option<RunState>,
}

/// A [`Target`]'s own run of a reused plan state.
pub(crate) type RunState = fn(&mut Box<dyn State>, TVec<TValue>) -> TractResult<TVec<TValue>>;

/// A [`Target`]'s own upload of input `ix` of a plan: a tensor of `dtype`
/// and `shape` whose bytes are `parts` one after another (one part, or one
/// per stacked request).
pub(crate) type Upload =
    fn(&dyn Runnable, usize, DataType, &[usize], &[&[u8]]) -> TractResult<Option<TValue>>;

/// Threads used by default: one per CPU core available to the process.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many shape-specialised plans a model keeps by default (see
/// `Plan::PerShape`); the setting `<backend>.plan_cache` changes it.
pub const SHAPE_PLAN_CACHE: usize = 8;

/// The setting key (after `<backend>.`) for the per-shape plan cache size.
pub const PLAN_CACHE_KEY: &str = "plan_cache";

/// The most plans a model may be told to keep.
pub const MAX_PLAN_CACHE: usize = 64;

/// The per-shape plan cache size `options` give `backend`, or the default.
pub(crate) fn plan_cache(backend: &str, options: &LoadOptions) -> Result<usize> {
    let key = format!("{backend}.{PLAN_CACHE_KEY}");
    let Some(value) = options.setting(&key) else {
        return Ok(SHAPE_PLAN_CACHE);
    };
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PLAN_CACHE).contains(&n) => Ok(n),
        _ => Err(Error::Config(format!(
            "{key} = '{value}': expected a number of plans from 1 to {MAX_PLAN_CACHE} \
             (default {SHAPE_PLAN_CACHE}); fewer plans use less memory for models planned \
             per input shape, at the cost of re-planning when more shapes alternate"
        ))),
    }
}

/// A model prepared by one of tract's runtimes.
pub struct TractModel {
    backend: &'static str,
    metadata: ModelMetadata,
    plan: Plan,
    footprint: u64,
    /// Spawned states of a [`Plan::Static`] plan, one per thread that ran it,
    /// when the target reuses states. A thread takes its own out for the call
    /// and puts it back after, so the lock is held only for the take and the
    /// put; states of a thread that stopped calling stay until the model goes.
    states: Option<Mutex<Vec<(ThreadId, Box<dyn State>)>>>,
    /// The target's own input upload, if it has one.
    upload: Option<Upload>,
    /// The target's own run of a reused state, if it has one.
    run_state: Option<RunState>,
}

/// How a model's computation is prepared.
// One `Plan` per loaded model: boxing the larger variant would save nothing.
#[allow(clippy::large_enum_variant)]
enum Plan {
    /// One plan for every input shape: tract proved the model over symbolic dimensions.
    Static(Box<dyn Runnable>),
    /// tract could not reason over the symbolic dimensions (common with exported
    /// detection and OCR nets), so a plan is prepared for each concrete set of
    /// input shapes on first use and kept in a small most-recently-used cache.
    PerShape {
        model: InferenceModel,
        runtime: &'static dyn tract_onnx::tract_core::runtime::Runtime,
        rewrite: Rewrite,
        precision: conv_fuse::Precision,
        options: RunOptions,
        /// Most recently used last. Plans are built outside the lock.
        cache: Mutex<VecDeque<(Vec<PlanKey>, Arc<dyn Runnable>)>>,
        /// How many plans `cache` keeps.
        capacity: usize,
    },
}

/// A [`Target`]'s model rewrite.
pub(crate) type Rewrite = fn(TypedModel, conv_fuse::Precision) -> TractResult<TypedModel>;

fn load(
    target: &Target,
    path: &Path,
    options: &LoadOptions,
    precision: conv_fuse::Precision,
) -> Result<TractModel> {
    let (backend, runtime) = (target.backend, target.runtime);
    let capacity = plan_cache(backend, options)?;
    let file = onnx::read(path)?;
    let cannot = |what: &str, e: TractError| Error::InvalidModel {
        path: path.to_path_buf(),
        reason: format!("{backend} cannot {what} it: {}", tract_message(&e)),
        source: Some(e.into()),
    };
    let unsupported = unsupported_ops(file.proto.graph.as_ref());
    if !unsupported.is_empty() {
        return Err(Error::InvalidModel {
            path: path.to_path_buf(),
            reason: format!(
                "{backend} does not support the operator(s) {}",
                unsupported.into_iter().collect::<Vec<_>>().join(", ")
            ),
            source: None,
        });
    }
    let layout = (file.proto.graph.iter())
        .flat_map(|g| &g.node)
        .find_map(ops::unsupported_tree_layout)
        .or_else(|| ops::wrong_answers(file.proto.graph.as_ref()))
        .or_else(|| ops::run_failures(&file.proto));
    if let Some(reason) = layout {
        return Err(Error::InvalidModel {
            path: path.to_path_buf(),
            reason: format!("{backend} does not support {reason}"),
            source: None,
        });
    }
    let mut proto = file.proto;
    onnx::canonicalize_symbols(&mut proto);
    ops::prepare_proto(&mut proto);
    let model = onnx::to_tract(path, &proto).map_err(|e| cannot("parse", e))?;
    let rt = target
        .runtime_impl
        .map(|f| f())
        .or_else(|| runtime_for_name(runtime).ok().flatten())
        .ok_or_else(|| Error::Unavailable {
            what: format!("tract runtime '{runtime}'"),
            reason: "not linked into this build".into(),
        })?;
    let threads = options.threads.unwrap_or_else(default_threads).max(1);
    let executor = thread_pools::executor_for(threads).map_err(|message| Error::Backend {
        backend: backend.to_string(),
        message,
        retryable: true,
        source: None,
    })?;
    let run_options = RunOptions {
        executor,
        ..Default::default()
    };
    // A panic in tract's analysis over symbolic shapes (a GRU over a
    // dynamic batch: `UndeterminedSymbol`) is one more way it cannot plan
    // them: the model is planned per input shape, as for an error.
    let symbolic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        typed(model.clone())
            .and_then(symbolic_resize_sizes)
            .and_then(|m| (target.rewrite)(m, precision))
            .and_then(|m| rt.prepare_with_options(m, &run_options))
    }))
    .unwrap_or_else(|panic| {
        let message = (panic.downcast_ref::<String>().cloned())
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "no message".into());
        Err(tract_onnx::tract_core::internal::format_err!(
            "tract panicked while analysing the model: {message}"
        ))
    });
    let mut metadata = file.metadata;
    let (plan, footprint) = match symbolic {
        Ok(runnable) => {
            let bytes = plan_bytes(&*runnable).max(metadata.weight_bytes);
            (Plan::Static(runnable), bytes)
        }
        Err(e) if !metadata.inputs.iter().any(has_dynamic_dims) => {
            return Err(cannot("prepare", e))
        }
        Err(e) => {
            tracing::info!(
                model = %path.display(),
                reason = %tract_message(&e),
                "tract cannot plan over symbolic shapes; planning per input shape instead"
            );
            let plan = Plan::PerShape {
                model,
                runtime: rt,
                rewrite: target.rewrite,
                precision,
                options: run_options,
                cache: Mutex::default(),
                capacity,
            };
            // Not when the model already ran on this engine in a comparison
            // process: the check leaves about 4 MiB behind (tract's tables
            // and caches, first touched by the analysis).
            let failure = (!options.ran_elsewhere())
                .then(|| plan.fails_at_sample_shapes(&metadata.inputs))
                .flatten();
            if let Some(failure) = failure {
                return Err(Error::InvalidModel {
                    path: path.to_path_buf(),
                    reason: format!(
                        "{backend} cannot plan it over symbolic shapes ({}) nor at {failure}",
                        tract_message(&e)
                    ),
                    source: Some(e.into()),
                });
            }
            (plan, metadata.weight_bytes)
        }
    };
    let mode = if matches!(plan, Plan::Static(_)) {
        "static"
    } else {
        "per-shape"
    };
    metadata
        .properties
        .push(("anemone.tract.plan".into(), mode.into()));
    let states = (target.reuse_states && matches!(plan, Plan::Static(_))).then(Mutex::default);
    Ok(TractModel {
        backend,
        metadata,
        plan,
        footprint,
        states,
        upload: target.upload,
        run_state: target.run_state,
    })
}

/// The decluttered typed model a runtime prepares (not an optimized one: GPU
/// runtimes need to see the plain operators).
fn typed(model: InferenceModel) -> TractResult<TypedModel> {
    let model = model.into_typed()?.into_decluttered()?;
    // tract 0.23.9 can leave Slice lengths bound to a dropped symbol scope.
    ops::onnx_loop::revive_slice_symbols(model)
}

/// Refuses a static plan whose `Resize` takes its sizes from the symbols
/// of the input dimensions (`Resize(x, sizes = Shape(skip))`, U-Net and
/// FPN's upsampling to a skip connection): tract 0.23.9 prepares it, then
/// answers every run "Resize: Undetermined symbol". Planned per input
/// shape, the sizes are numbers.
fn symbolic_resize_sizes(model: TypedModel) -> TractResult<TypedModel> {
    for node in &model.nodes {
        if node.op.name() != "Resize" {
            continue;
        }
        for input in node.inputs.iter().skip(1) {
            let fact = model.outlet_fact(*input)?;
            let symbolic = fact.datum_type == DatumType::TDim
                && fact.konst.as_ref().is_none_or(|k| {
                    k.to_plain_array_view::<TDim>()
                        .map_or(true, |v| v.iter().any(|d| d.to_i64().is_err()))
                });
            if symbolic {
                tract_onnx::tract_core::internal::bail!(
                    "Resize node \"{}\" takes its sizes from the input shapes, which tract \
                     evaluates only per shape",
                    node.name
                );
            }
        }
    }
    Ok(model)
}

/// Operator types in the graph (and its subgraphs) that tract has no builder for.
fn unsupported_ops(graph: Option<&GraphProto>) -> BTreeSet<String> {
    let onnx = ops::onnx();
    let registry = &onnx.op_register.0;
    let mut missing = BTreeSet::new();
    let mut stack: Vec<&GraphProto> = graph.into_iter().collect();
    while let Some(g) = stack.pop() {
        for node in &g.node {
            if !registry.contains_key(&node.op_type) || !ops::known_in_its_domain(node) {
                let domain = if node.domain.is_empty() {
                    String::new()
                } else {
                    format!("{}:", node.domain)
                };
                missing.insert(format!("{domain}{}", node.op_type));
            }
            for attr in &node.attribute {
                stack.extend(attr.g.iter());
                stack.extend(attr.graphs.iter());
            }
        }
    }
    missing
}

/// Bytes of constant tensors in the prepared plan: the weights as tract holds them.
fn plan_bytes(runnable: &dyn Runnable) -> u64 {
    let Some(model) = runnable.typed_model() else {
        return 0;
    };
    model
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<Const>())
        .map(|c| (c.val().len() * c.val().datum_type().size_of()) as u64)
        .sum()
}

/// tract's error chain on one line, innermost cause last.
fn tract_message(e: &TractError) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.join(": ")
}

impl LoadedModel for TractModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn backend(&self) -> &'static str {
        self.backend
    }

    fn memory_footprint(&self) -> u64 {
        self.footprint
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let empty = crate::input_blame::any_empty(inputs);
        let fail = |what: &str, e: TractError| self.failure(what, e, empty);
        for (spec, t) in self.metadata.inputs.iter().zip(inputs) {
            convert::check_utf8(&spec.name, t)?;
        }
        let shaped;
        let runnable: &dyn Runnable = match &self.plan {
            Plan::Static(runnable) => &**runnable,
            per_shape => {
                shaped = per_shape
                    .for_inputs(inputs)
                    .map_err(|e| fail("cannot plan for these input shapes", e))?;
                &*shaped
            }
        };
        let values = inputs
            .iter()
            .enumerate()
            .map(|(ix, t)| self.value(runnable, ix, t))
            .collect::<TractResult<TVec<TValue>>>()
            .map_err(|e| fail("cannot convert inputs", e))?;
        self.run(runnable, values, &fail)
    }

    /// With a target that uploads inputs itself (tract-cuda) and one plan
    /// for every shape, each request's rows go straight to where the upload
    /// reads them, with no concatenated copy first; otherwise as the default
    /// (concatenate, then [`LoadedModel::infer`]).
    fn infer_stacked(&self, requests: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        let count = requests.first().map_or(0, |r| r.len());
        let runnable = match &self.plan {
            Plan::Static(runnable)
                if self.upload.is_some()
                    && requests.len() > 1
                    && requests.iter().all(|r| r.len() == count) =>
            {
                &**runnable
            }
            _ => return self.infer(&anemone_core::stack_inputs(requests)?),
        };
        let empty = requests.iter().any(|r| crate::input_blame::any_empty(r));
        let fail = |what: &str, e: TractError| self.failure(what, e, empty);
        for request in requests {
            for (spec, t) in self.metadata.inputs.iter().zip(*request) {
                convert::check_utf8(&spec.name, t)?;
            }
        }
        let started = std::time::Instant::now();
        let mut values = TVec::with_capacity(count);
        for ix in 0..count {
            let staged = self
                .stacked_value(runnable, ix, requests)
                .map_err(|e| fail("cannot convert inputs", e))?;
            let value = match staged {
                Some(value) => value,
                None => {
                    let parts: Vec<&Tensor> = requests.iter().map(|r| &r[ix]).collect();
                    let stacked =
                        Tensor::concat_batch(&parts).map_err(|e| Error::Internal(e.to_string()))?;
                    convert::to_tract(&stacked)
                        .map(IntoTValue::into_tvalue)
                        .map_err(|e| fail("cannot convert inputs", e))?
                }
            };
            values.push(value);
        }
        let stacked = started.elapsed();
        let outputs = self.run(runnable, values, &fail);
        tracing::trace!(
            requests = requests.len(),
            stack_us = stacked.as_micros() as u64,
            run_us = (started.elapsed() - stacked).as_micros() as u64,
            "stacked batch"
        );
        outputs
    }
}

impl TractModel {
    /// The plan, where one plan runs every input shape.
    #[cfg_attr(not(all(feature = "cuda", target_os = "linux")), allow(dead_code))]
    pub(super) fn static_plan(&self) -> Option<&dyn Runnable> {
        match &self.plan {
            Plan::Static(runnable) => Some(&**runnable),
            _ => None,
        }
    }
}
