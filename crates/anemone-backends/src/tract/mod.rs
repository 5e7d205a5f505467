//! The tract backends: tract's CPU runtime (always present), and later its
//! `cuda` and `metal` runtimes behind cargo features.

pub mod convert;

use crate::onnx;
use anemone_core::{
    Backend, Error, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource, Probe, Result, Support, Tensor,
};
use std::collections::BTreeSet;
use std::path::Path;
use tract_onnx::pb::GraphProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::{runtime_for_name, RunOptions, Runnable};
use tract_onnx::tract_core::ops::konst::Const;

/// The version of tract anemone is built with.
pub const TRACT_VERSION: &str = "0.23.9";

/// tract's CPU runtime: pure Rust, always available.
///
/// Each loaded model gets its own pool of `threads` threads for matrix
/// products (tract-linalg `multithread-mm`); by default, one per CPU core.
#[derive(Debug, Clone, Copy, Default)]
pub struct TractCpu;

impl Backend for TractCpu {
    fn name(&self) -> &'static str {
        "tract-cpu"
    }

    fn probe(&self) -> Probe {
        Probe::Available { detail: format!("tract {TRACT_VERSION} on {} CPU threads", default_threads()) }
    }

    fn supports(&self, source: &ModelSource) -> Support {
        match source.format {
            ModelFormat::Onnx => Support::Yes,
            other => Support::No(format!("tract-cpu runs ONNX models, not {other} models")),
        }
    }

    fn load(&self, source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
        load(self.name(), "cpu", &source.path, options).map(|m| Box::new(m) as Box<dyn LoadedModel>)
    }
}

/// Threads used by default: one per CPU core available to the process.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A model prepared by one of tract's runtimes.
pub struct TractModel {
    backend: &'static str,
    metadata: ModelMetadata,
    runnable: Box<dyn Runnable>,
    footprint: u64,
}

fn load(backend: &'static str, runtime: &str, path: &Path, options: &LoadOptions) -> Result<TractModel> {
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
    let mut proto = file.proto;
    onnx::canonicalize_symbols(&mut proto);
    let model = onnx::to_tract(path, &proto).map_err(|e| cannot("parse", e))?;
    let typed = model.into_typed().and_then(|m| m.into_decluttered()).map_err(|e| cannot("analyse", e))?;
    let rt = runtime_for_name(runtime)
        .ok()
        .flatten()
        .ok_or_else(|| Error::Unavailable { what: format!("tract runtime '{runtime}'"), reason: "not linked into this build".into() })?;
    let threads = options.threads.unwrap_or_else(default_threads).max(1);
    let executor = if threads > 1 {
        Some(tract_linalg::multithread::Executor::multithread_with_name(threads, "tract"))
    } else {
        None
    };
    let run_options = RunOptions { executor, ..Default::default() };
    let runnable = rt.prepare_with_options(typed, &run_options).map_err(|e| cannot("prepare", e))?;
    let footprint = plan_bytes(&*runnable).max(file.metadata.weight_bytes);
    Ok(TractModel { backend, metadata: file.metadata, runnable, footprint })
}

/// Operator types in the graph (and its subgraphs) that tract has no builder for.
fn unsupported_ops(graph: Option<&GraphProto>) -> BTreeSet<String> {
    let registry = &tract_onnx::onnx().op_register.0;
    let mut missing = BTreeSet::new();
    let mut stack: Vec<&GraphProto> = graph.into_iter().collect();
    while let Some(g) = stack.pop() {
        for node in &g.node {
            if !registry.contains_key(&node.op_type) {
                let domain = if node.domain.is_empty() { String::new() } else { format!("{}:", node.domain) };
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
    let Some(model) = runnable.typed_model() else { return 0 };
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

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let fail = |what: &str, e: TractError| Error::Backend {
            backend: self.backend.into(),
            message: format!("{what}: {}", tract_message(&e)),
            retryable: false,
            source: Some(e.into()),
        };
        let values = inputs
            .iter()
            .map(|t| convert::to_tract(t).map(IntoTValue::into_tvalue))
            .collect::<TractResult<TVec<TValue>>>()
            .map_err(|e| fail("cannot convert inputs", e))?;
        let outputs = self.runnable.run(values).map_err(|e| fail("inference failed", e))?;
        outputs.iter().map(|v| convert::from_tract(v)).collect::<TractResult<Vec<_>>>().map_err(|e| fail("cannot convert outputs", e))
    }
}
