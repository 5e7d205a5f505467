//! The `coreml` backend on Apple systems: Core ML through `objc2-core-ml`.
//!
//! This layer is kept thin: what to compile, where to cache it, which
//! compute units, which shapes run as one prediction or as a batch, and how
//! tensors are laid out are all decided by the portable modules next to it
//! (tested on every system). Here is only the talking to Core ML.
//!
//! Status: type-checked against the real bindings on Linux by
//! `scripts/check-apple.sh`, tests included; it has not yet run on Apple
//! hardware. Its tests (`tests.rs`) are what a first run on a Mac checks:
//! `cargo test -p anemone-backends --features coreml,metal --lib apple`.

mod array;
pub mod device;
pub mod plan;
#[cfg(test)]
mod tests;

use super::batch::{self, Declared, Plan};
use super::describe::{Feature, FeatureKind};
use super::file::Container;
use super::options::{default_cache_dir_from_env, CoreMlOptions};
use super::shape::{Flexibility, SizeRange};
use super::{cache, NAME};
use anemone_core::{
    Error, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource, Probe, Result, Tensor,
};
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::{AnyObject, ProtocolObject};
use objc2::AnyThread;
use objc2_core_ml::{
    MLArrayBatchProvider, MLBatchProvider, MLComputeUnits, MLDictionaryFeatureProvider,
    MLFeatureProvider, MLFeatureType, MLFeatureValue, MLModel, MLModelConfiguration,
};
use objc2_foundation::{NSArray, NSDictionary, NSError, NSString, NSURL};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use device::thermal_state;

/// Whether Core ML can run here, with what it offers.
pub fn probe() -> Probe {
    let devices = match device::compute_devices() {
        Some(d) => d.join(", "),
        None => "compute devices not listed before macOS 14".into(),
    };
    Probe::Available {
        detail: format!(
            "Core ML on {}; {devices}; thermal state {}",
            device::os_version(),
            device::thermal_state().as_str()
        ),
    }
}

fn backend_error(message: String) -> Error {
    Error::Backend {
        backend: NAME.into(),
        message,
        retryable: false,
        source: None,
    }
}

fn ns_error(what: &str, e: &NSError) -> Error {
    backend_error(format!("{what}: {}", e.localizedDescription()))
}

fn url(path: &Path) -> Retained<NSURL> {
    NSURL::fileURLWithPath(&NSString::from_str(&path.to_string_lossy()))
}

/// Compiles `.mlmodel`/`.mlpackage` with Core ML into its temporary directory.
fn compile(path: &Path) -> Result<PathBuf> {
    // The synchronous call blocks this loader thread, which is what a load
    // does anyway; the asynchronous one would only add a channel.
    #[allow(deprecated)]
    // SAFETY: a file URL to an existing model.
    let compiled = unsafe { MLModel::compileModelAtURL_error(&url(path)) }
        .map_err(|e| ns_error(&format!("Core ML could not compile {}", path.display()), &e))?;
    let out = compiled
        .path()
        .ok_or_else(|| backend_error("Core ML compiled the model to a URL with no path".into()))?;
    Ok(PathBuf::from(out.to_string()))
}

/// Loads a Core ML model: compiles it once (cached), then loads the
/// compiled model with the configured compute units.
pub fn load(source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
    autoreleasepool(|_| load_inner(source, options))
}

fn load_inner(source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
    let path = &source.path;
    let opts = CoreMlOptions::from_settings(options, default_cache_dir_from_env())?;
    let (compiled, described) = match Container::of(path) {
        Some(Container::MlModelC) => (path.clone(), None),
        _ => {
            let description = super::describe_file(path)?;
            refuse_unsupported(
                path,
                &description.inputs,
                &description.outputs,
                &description.states,
            )?;
            let key = cache::key(path, &device::os_version())?;
            let outcome = cache::compile_once(path, &opts.cache_dir, &key, || compile(path))?;
            (outcome.path().to_path_buf(), Some(description))
        }
    };
    // SAFETY: plain object creation and property setters.
    let config = unsafe {
        let config = MLModelConfiguration::new();
        config.setComputeUnits(MLComputeUnits(opts.compute_units.apple_value()));
        config.setAllowLowPrecisionAccumulationOnGPU(opts.allow_low_precision_gpu);
        config
    };
    // SAFETY: a file URL to a compiled model and a configuration.
    let model =
        unsafe { MLModel::modelWithContentsOfURL_configuration_error(&url(&compiled), &config) }
            .map_err(|e| {
                ns_error(
                    &format!("Core ML could not load {}", compiled.display()),
                    &e,
                )
            })?;
    let (inputs, outputs, metadata) = match described {
        Some(d) => (d.inputs, d.outputs, d.metadata),
        None => describe_compiled(path, &model)?,
    };
    tracing::info!(model = %path.display(), compute_units = opts.compute_units.apple_name(), "Core ML: model loaded");
    let footprint = metadata.weight_bytes.max(metadata.file_size);
    Ok(Box::new(CoreMlModel {
        model: Mutex::new(SharedModel(model)),
        inputs,
        outputs,
        metadata,
        footprint,
    }))
}

/// Refuses what this backend does not run yet, saying so.
fn refuse_unsupported(
    path: &Path,
    inputs: &[Feature],
    outputs: &[Feature],
    states: &[Feature],
) -> Result<()> {
    let refuse = |reason: String| Error::InvalidModel {
        path: path.to_path_buf(),
        reason,
        source: None,
    };
    if let Some(s) = states.first() {
        return Err(refuse(format!(
            "the model is stateful (state '{}'); the coreml backend does not run stateful models yet",
            s.name
        )));
    }
    for (role, f) in inputs
        .iter()
        .map(|f| ("input", f))
        .chain(outputs.iter().map(|f| ("output", f)))
    {
        if !matches!(f.kind, FeatureKind::Array { .. }) {
            return Err(refuse(format!(
                "{role} '{}' is {}; the coreml backend runs models whose inputs and outputs are \
                 multi-arrays (convert with ct.TensorType instead of ct.ImageType)",
                f.name,
                f.type_text()
            )));
        }
    }
    Ok(())
}

/// Describes a compiled `.mlmodelc` through Core ML (loaded on the CPU only,
/// which is quickest), for `anemone inspect` and the model repository.
pub fn describe_compiled_file(path: &Path) -> Result<super::Description> {
    autoreleasepool(|_| {
        if !path.is_dir() {
            return Err(Error::FileNotFound {
                path: path.to_path_buf(),
            });
        }
        // SAFETY: plain object creation and a property setter.
        let config = unsafe {
            let config = MLModelConfiguration::new();
            config.setComputeUnits(MLComputeUnits::CPUOnly);
            config
        };
        // SAFETY: a file URL to a compiled model and a configuration.
        let model =
            unsafe { MLModel::modelWithContentsOfURL_configuration_error(&url(path), &config) }
                .map_err(|e| Error::InvalidModel {
                    path: path.to_path_buf(),
                    reason: format!(
                        "Core ML cannot load this compiled model: {}",
                        e.localizedDescription()
                    ),
                    source: None,
                })?;
        let (inputs, outputs, metadata) = describe_compiled(path, &model)?;
        Ok(super::Description {
            metadata,
            model_type: "compiled",
            specification_version: 0,
            inputs,
            outputs,
            states: Vec::new(),
        })
    })
}

/// Features and metadata of a compiled `.mlmodelc`, from Core ML itself.
fn describe_compiled(
    path: &Path,
    model: &MLModel,
) -> Result<(Vec<Feature>, Vec<Feature>, ModelMetadata)> {
    // SAFETY: property reads on a loaded model.
    let description = unsafe { model.modelDescription() };
    let read = |by_name: Retained<NSDictionary<NSString, objc2_core_ml::MLFeatureDescription>>| -> Result<Vec<Feature>> {
        let (names, descriptions) = by_name.to_vecs();
        let mut features: Vec<Feature> = Vec::new();
        for (name, d) in names.iter().zip(descriptions) {
            // SAFETY: property reads.
            let (ty, constraint) = unsafe { (d.r#type(), d.multiArrayConstraint()) };
            let (Some(c), true) = (constraint, ty == MLFeatureType::MultiArray) else {
                return Err(Error::InvalidModel {
                    path: path.to_path_buf(),
                    reason: format!(
                        "feature '{name}' is not a multi-array; the coreml backend runs compiled models \
                         whose inputs and outputs are multi-arrays (give the .mlpackage for more)"
                    ),
                    source: None,
                });
            };
            // SAFETY: property reads.
            let (shape, kind) = unsafe { (c.shape(), c.dataType()) };
            let shape: Vec<u64> = shape.iter().map(|n| n.as_isize().max(0) as u64).collect();
            let dtype = super::layout::dtype_of_multi_array(kind.0).ok_or_else(|| Error::InvalidModel {
                path: path.to_path_buf(),
                reason: format!("feature '{name}' has an array type anemone cannot carry ({})", kind.0),
                source: None,
            })?;
            // Flexible shapes of compiled models are left to Core ML to check.
            let flexibility = Flexibility::Ranges(vec![SizeRange { lower: 0, upper: None }; shape.len()]);
            features.push(Feature {
                name: name.to_string(),
                kind: FeatureKind::Array { dtype, shape, flexibility },
                optional: unsafe { d.isOptional() },
                description: String::new(),
            });
        }
        // Core ML gives a dictionary: sort for a stable order.
        features.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(features)
    };
    // SAFETY: property reads.
    let (inputs, outputs) = unsafe {
        (
            read(description.inputDescriptionsByName())?,
            read(description.outputDescriptionsByName())?,
        )
    };
    let mut metadata = ModelMetadata::new(
        ModelFormat::CoreMl,
        inputs.iter().filter_map(Feature::tensor).collect(),
        outputs.iter().filter_map(Feature::tensor).collect(),
    );
    metadata
        .properties
        .push(("coreml.compiled".into(), "true".into()));
    Ok((inputs, outputs, metadata))
}

/// `MLModel` is neither `Send` nor `Sync` in the bindings, which cannot
/// know an Objective-C class's threading rules.
///
/// `Send` is sound: an `MLModel` is not tied to the thread that loaded it
/// (no run loop, no thread-local state), and Objective-C retain/release is
/// atomic. `Sync` is *not* claimed: Apple presents only the asynchronous
/// prediction API (macOS 14) as safe to call concurrently, and this backend
/// uses the synchronous one, so each loaded model runs one prediction at a
/// time behind a mutex (`CoreMlModel::model`). Concurrency comes from
/// batches (one `MLArrayBatchProvider` call) and from several instances of a
/// model.
struct SharedModel(Retained<MLModel>);

// SAFETY: see the type's documentation; all use goes through a Mutex.
unsafe impl Send for SharedModel {}

/// A Core ML model ready to run.
struct CoreMlModel {
    /// One prediction at a time; see [`SharedModel`].
    model: Mutex<SharedModel>,
    inputs: Vec<Feature>,
    outputs: Vec<Feature>,
    metadata: ModelMetadata,
    footprint: u64,
}

impl LoadedModel for CoreMlModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn backend(&self) -> &'static str {
        NAME
    }

    fn memory_footprint(&self) -> u64 {
        self.footprint
    }

    fn infer(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        autoreleasepool(|_| self.infer_inner(inputs))
    }
}

impl CoreMlModel {
    fn infer_inner(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let declared: Vec<Declared<'_>> = self
            .inputs
            .iter()
            .map(|f| match &f.kind {
                FeatureKind::Array {
                    shape, flexibility, ..
                } => Declared {
                    name: &f.name,
                    shape,
                    flexibility,
                },
                _ => unreachable!("non-array features are refused at load; this is a bug"),
            })
            .collect();
        let shapes: Vec<&[usize]> = inputs.iter().map(Tensor::shape).collect();
        let plan = batch::plan(&declared, &shapes).map_err(|reason| {
            Error::Input(anemone_core::InputError::Malformed {
                name: declared.first().map_or("", |d| d.name).to_string(),
                reason,
            })
        })?;
        match plan {
            Plan::Single => {
                // The runtime lends the inputs (so it can retry); Core ML's
                // arrays own their buffers, so this is one copy per input.
                // A borrowed buffer with a no-op deallocator would avoid it
                // once verified on a Mac that Core ML keeps no reference.
                let provider = self.provider(inputs.to_vec())?;
                let model = self.model.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: a prediction with a provider of the model's inputs.
                let out = unsafe { model.0.predictionFromFeatures_error(&provider) }
                    .map_err(|e| ns_error("Core ML prediction failed", &e))?;
                self.read_outputs(&out)
            }
            Plan::Split(n) => {
                let mut providers = Vec::with_capacity(n);
                for i in 0..n {
                    let slices = inputs
                        .iter()
                        .map(|t| batch::slice(t, n, i))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| Error::Internal(format!("slicing a batch: {e}")))?;
                    providers.push(self.provider(slices)?);
                }
                let array = NSArray::from_retained_slice(&providers);
                // SAFETY: a batch of providers of the model's inputs.
                let batch = unsafe {
                    MLArrayBatchProvider::initWithFeatureProviderArray(
                        MLArrayBatchProvider::alloc(),
                        &array,
                    )
                };
                let batch: &ProtocolObject<dyn MLBatchProvider> = ProtocolObject::from_ref(&*batch);
                let model = self.model.lock().unwrap_or_else(|e| e.into_inner());
                // SAFETY: as above.
                let results = unsafe { model.0.predictionsFromBatch_error(batch) }
                    .map_err(|e| ns_error("Core ML batch prediction failed", &e))?;
                let mut per_output: Vec<Vec<Tensor>> =
                    vec![Vec::with_capacity(n); self.outputs.len()];
                // SAFETY: indices below the batch's count.
                for i in 0..unsafe { results.count() } {
                    let features = unsafe { results.featuresAtIndex(i) };
                    for (slot, t) in per_output.iter_mut().zip(self.read_outputs(&features)?) {
                        slot.push(t);
                    }
                }
                per_output
                    .into_iter()
                    .map(|parts| {
                        batch::join(parts)
                            .map_err(|e| Error::Internal(format!("joining a batch: {e}")))
                    })
                    .collect()
            }
        }
    }

    /// One feature provider holding `inputs`, named as the model's inputs.
    fn provider(
        &self,
        inputs: Vec<Tensor>,
    ) -> Result<Retained<ProtocolObject<dyn MLFeatureProvider>>> {
        let mut names: Vec<Retained<NSString>> = Vec::with_capacity(inputs.len());
        let mut values: Vec<Retained<AnyObject>> = Vec::with_capacity(inputs.len());
        for (f, t) in self.inputs.iter().zip(inputs) {
            let array = array::to_multi_array(t).map_err(|reason| {
                Error::Input(anemone_core::InputError::Malformed {
                    name: f.name.clone(),
                    reason,
                })
            })?;
            // SAFETY: wrapping an array in a feature value.
            let value = unsafe { MLFeatureValue::featureValueWithMultiArray(&array) };
            names.push(NSString::from_str(&f.name));
            values.push(value.into());
        }
        let keys: Vec<&NSString> = names.iter().map(|n| &**n).collect();
        let objects: Vec<&AnyObject> = values.iter().map(|v| &**v).collect();
        let dict = NSDictionary::from_slices(&keys, &objects);
        // SAFETY: every value is an MLFeatureValue.
        let provider = unsafe {
            MLDictionaryFeatureProvider::initWithDictionary_error(
                MLDictionaryFeatureProvider::alloc(),
                &dict,
            )
        }
        .map_err(|e| ns_error("Core ML refused the inputs", &e))?;
        Ok(ProtocolObject::from_retained(provider))
    }

    fn read_outputs(&self, out: &ProtocolObject<dyn MLFeatureProvider>) -> Result<Vec<Tensor>> {
        self.outputs
            .iter()
            .map(|f| {
                // SAFETY: reading a named feature of a prediction's result.
                let value = unsafe { out.featureValueForName(&NSString::from_str(&f.name)) }
                    .ok_or_else(|| {
                        backend_error(format!("Core ML returned no output '{}'", f.name))
                    })?;
                // SAFETY: property read.
                let array = unsafe { value.multiArrayValue() }.ok_or_else(|| {
                    backend_error(format!("Core ML output '{}' is not a multi-array", f.name))
                })?;
                array::from_multi_array(&array).map_err(backend_error)
            })
            .collect()
    }
}
