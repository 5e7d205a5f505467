//! Reading `MLComputePlan` (macOS 14.4+) into the portable [`ComputePlan`].

use super::{device, url};
use crate::coreml::cache;
use crate::coreml::file::Container;
use crate::coreml::options::{default_cache_dir_from_env, ComputeUnits};
use crate::coreml::plan::{ComputePlan, PlannedOp};
use anemone_core::{Error, Result};
use block2::RcBlock;
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::ProtocolObject;
use objc2_core_ml::{
    MLComputeDeviceProtocol, MLComputePlan, MLComputeUnits, MLModelConfiguration,
    MLModelStructureProgramBlock,
};
use objc2_foundation::{NSError, NSOperatingSystemVersion, NSProcessInfo};
use std::path::Path;
use std::sync::mpsc;

/// A plan handed from Core ML's completion queue to the waiting thread.
/// Ownership moves once; only one thread touches it at a time.
struct Handed(Retained<MLComputePlan>);
// SAFETY: see the type's documentation.
unsafe impl Send for Handed {}

/// The compute plan of a model for `units`.
pub fn compute_plan(path: &Path, units: ComputeUnits) -> Result<ComputePlan> {
    let version = NSOperatingSystemVersion {
        majorVersion: 14,
        minorVersion: 4,
        patchVersion: 0,
    };
    if !NSProcessInfo::processInfo().isOperatingSystemAtLeastVersion(version) {
        return Err(Error::Unavailable {
            what: "the Core ML compute plan".into(),
            reason: format!(
                "it needs macOS 14.4 or newer; this is {}",
                device::os_version()
            ),
        });
    }
    autoreleasepool(|_| {
        let compiled = match Container::of(path) {
            Some(Container::MlModelC) => path.to_path_buf(),
            _ => {
                let key = cache::key(path, &device::os_version())?;
                let dir = default_cache_dir_from_env();
                cache::compile_once(path, &dir, &key, || super::compile(path))?
                    .path()
                    .to_path_buf()
            }
        };
        let plan = load(&compiled, units)?;
        read(&plan, units)
    })
}

fn load(compiled: &Path, units: ComputeUnits) -> Result<Retained<MLComputePlan>> {
    // SAFETY: object creation and a property setter.
    let config = unsafe {
        let config = MLModelConfiguration::new();
        config.setComputeUnits(MLComputeUnits(units.apple_value()));
        config
    };
    let (tx, rx) = mpsc::channel::<std::result::Result<Handed, String>>();
    let handler = RcBlock::new(move |plan: *mut MLComputePlan, error: *mut NSError| {
        // SAFETY: Core ML passes a valid plan or a valid error (or null).
        let result = match unsafe { Retained::retain(plan) } {
            Some(plan) => Ok(Handed(plan)),
            None => Err(
                unsafe { Retained::retain(error) }.map_or("no reason given".into(), |e| {
                    e.localizedDescription().to_string()
                }),
            ),
        };
        let _ = tx.send(result);
    });
    // SAFETY: a file URL to a compiled model, a configuration and a handler
    // that only sends its result.
    unsafe {
        MLComputePlan::loadContentsOfURL_configuration_completionHandler(
            &url(compiled),
            &config,
            &handler,
        )
    };
    let backend = |message: String| Error::Backend {
        backend: crate::coreml::NAME.into(),
        message,
        retryable: false,
        source: None,
    };
    rx.recv()
        .map_err(|_| backend("Core ML never answered the compute plan request".into()))?
        .map(|h| h.0)
        .map_err(|e| backend(format!("Core ML could not make a compute plan: {e}")))
}

fn read(plan: &MLComputePlan, units: ComputeUnits) -> Result<ComputePlan> {
    let mut operations = Vec::new();
    // SAFETY: property reads on a loaded plan, on this thread only.
    unsafe {
        let structure = plan.modelStructure();
        if let Some(program) = structure.program() {
            let (names, functions) = program.functions().to_vecs();
            for (name, function) in names.iter().zip(functions) {
                walk(plan, &name.to_string(), &function.block(), &mut operations);
            }
        } else if let Some(network) = structure.neuralNetwork() {
            for layer in network.layers().iter() {
                let usage = plan.computeDeviceUsageForNeuralNetworkLayer(&layer);
                let (preferred, supported) = usage_of(usage.as_deref());
                operations.push(PlannedOp {
                    function: String::new(),
                    operator: layer.r#type().to_string(),
                    preferred,
                    supported,
                    cost: None,
                });
            }
        }
    }
    Ok(ComputePlan {
        compute_units: units.apple_name(),
        operations,
    })
}

/// Every operation of a block, nested blocks (control flow) included.
///
/// # Safety
///
/// Property reads on objects of a loaded plan, on one thread.
unsafe fn walk(
    plan: &MLComputePlan,
    function: &str,
    block: &MLModelStructureProgramBlock,
    out: &mut Vec<PlannedOp>,
) {
    for op in block.operations().iter() {
        let usage = plan.computeDeviceUsageForMLProgramOperation(&op);
        let (preferred, supported) = usage_of(usage.as_deref());
        let cost = plan
            .estimatedCostOfMLProgramOperation(&op)
            .map(|c| c.weight());
        out.push(PlannedOp {
            function: function.to_string(),
            operator: op.operatorName().to_string(),
            preferred,
            supported,
            cost,
        });
        for inner in op.blocks().iter() {
            walk(plan, function, &inner, out);
        }
    }
}

fn usage_of(
    usage: Option<&objc2_core_ml::MLComputePlanDeviceUsage>,
) -> (Option<String>, Vec<String>) {
    let Some(usage) = usage else {
        return (None, Vec::new());
    };
    let name = |d: &ProtocolObject<dyn MLComputeDeviceProtocol>| device::describe(d);
    // SAFETY: property reads.
    unsafe {
        (
            Some(name(&usage.preferredComputeDevice())),
            usage
                .supportedComputeDevices()
                .iter()
                .map(|d| name(&d))
                .collect(),
        )
    }
}
