//! The ONNX Runtime backend (cargo feature `onnxruntime`).
//!
//! ONNX Runtime is not linked at build time: the `ort` crate (`load-dynamic`)
//! opens `libonnxruntime` at run time. The library comes from the PyPI wheel
//! `onnxruntime==1.31.1` (`scripts/install-onnxruntime.sh` puts it in
//! `third_party/onnxruntime/lib/`), or from wherever `ORT_DYLIB_PATH` points.
//! Without it, [`OnnxRuntime::probe`] says so and how to fix it; nothing panics.
//!
//! Concurrency: `ort` 2.0.0-rc.15's `Session::run` takes `&mut self` (some
//! ONNX Runtime internals are not thread-safe), so a loaded model holds a pool
//! of sessions, each behind a mutex: the setting `onnxruntime.sessions` (default
//! 1; Triton's `instance_group { count }` means the same). A request takes the
//! first free session, starting from a rotating index, and waits on one only
//! when all are busy. One session's intra-op pool already uses every core it
//! was given, so more sessions help small models under concurrent load, at
//! the cost of one copy of the weights each.

use crate::onnx;
use anemone_core::{
    Backend, Error, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, ModelSource, Probe,
    Result, Support, Tensor, Tier,
};
use ort::session::{Session, SessionInputValue};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The ONNX Runtime release anemone is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// The library's file name.
#[cfg(target_vendor = "apple")]
pub const LIBRARY_NAME: &str = "libonnxruntime.1.31.1.dylib";
/// The library's file name.
#[cfg(not(target_vendor = "apple"))]
pub const LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

use crate::ort_tensors::{check_strings, to_ort_input};
pub use crate::ort_tensors::{from_ort, to_ort};

pub(crate) const NAME: &str = "onnxruntime";

/// What to do about a library that is there but unusable.
const FIX: &str = "anemone needs ONNX Runtime 1.31.1: run scripts/install-onnxruntime.sh, \
                   or point ORT_DYLIB_PATH at a libonnxruntime 1.31.x (from the onnxruntime==1.31.1 wheel)";

/// ONNX Runtime with its CPU execution provider, and on Apple systems its
/// CoreML execution provider first (see [`crate::ort_coreml`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnnxRuntime;

/// Where the library is looked for, in order: `ORT_DYLIB_PATH` if set (and
/// then only there); else the repository's `third_party/onnxruntime/lib/`,
/// and next to the executable (and in its `lib/`).
pub fn library_candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest.ancestors().nth(2).unwrap_or(manifest);
    let mut paths = vec![repo.join("third_party/onnxruntime/lib").join(LIBRARY_NAME)];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        paths.push(dir.join(LIBRARY_NAME));
        paths.push(dir.join("lib").join(LIBRARY_NAME));
    }
    paths
}

/// The loaded library: where from, and the environment every session shares.
struct Runtime {
    path: PathBuf,
    env: ort::environment::Environment,
}

/// ONNX Runtime can be loaded once per process; the first library found wins.
static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// Intra-op threads of the one pool every session shares, when chosen
/// ([`share_threads`]); each session has a pool of its own otherwise.
static SHARED_THREADS: OnceLock<usize> = OnceLock::new();

/// Makes every ONNX Runtime session of this process run on one shared pool
/// of `threads` intra-op threads (Triton's `--backend-config
/// onnxruntime,enable-global-threadpool=1`), instead of a pool each
/// (`threads - 1` threads per session): for hosts serving many models. A
/// model's own `threads` and `onnxruntime.spinning` settings then change
/// nothing. Call it before the first model loads: it fails once ONNX
/// Runtime has started with another choice.
pub fn share_threads(threads: usize) -> std::result::Result<(), String> {
    let threads = threads.max(1);
    let started_alone = RUNTIME.get().is_some() && shared_threads().is_none();
    if started_alone || *SHARED_THREADS.get_or_init(|| threads) != threads {
        return Err(
            "ONNX Runtime's shared thread pool must be chosen once, before ONNX Runtime starts"
                .into(),
        );
    }
    Ok(())
}

/// The shared pool's threads, if sessions share one ([`share_threads`]).
pub fn shared_threads() -> Option<usize> {
    SHARED_THREADS.get().copied()
}

/// Loads the library once. A missing library is not remembered (it may be
/// installed later); a load failure is.
fn runtime() -> std::result::Result<&'static Runtime, String> {
    if RUNTIME.get().is_none() {
        let candidates = library_candidates();
        let Some(found) = candidates.iter().find(|p| p.is_file()) else {
            let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            return Err(format!(
                "libonnxruntime not found at {}; run scripts/install-onnxruntime.sh or set ORT_DYLIB_PATH",
                list.join(", ")
            ));
        };
        let path = found.canonicalize().unwrap_or_else(|_| found.clone());
        RUNTIME.get_or_init(|| init(path));
    }
    RUNTIME
        .get()
        .expect("initialised above")
        .as_ref()
        .map_err(Clone::clone)
}

fn init(path: PathBuf) -> std::result::Result<Runtime, String> {
    let attempt = std::panic::catch_unwind(
        || -> std::result::Result<ort::environment::Environment, String> {
            let mut builder = ort::init_from(&path).map_err(|e| e.to_string())?;
            if let Some(n) = shared_threads() {
                let pool = ort::environment::GlobalThreadPoolOptions::default()
                    .with_intra_threads(n)
                    .and_then(|o| o.with_inter_threads(1))
                    .map_err(|e| e.to_string())?;
                builder = builder.with_global_thread_pool(pool);
            }
            let env = builder
                .with_name("anemone")
                // ONNX Runtime's usage telemetry: off (it records each
                // process under $HOME/.cache/Microsoft/DeveloperTools).
                .with_telemetry(false)
                .with_logger(crate::ort_log::logger())
                .build()
                .map_err(|e| e.to_string())?;
            env.set_log_level(crate::ort_log::min_severity());
            Ok(env)
        },
    );
    match attempt {
        Ok(Ok(env)) => Ok(Runtime { path, env }),
        Ok(Err(e)) => Err(format!(
            "cannot load ONNX Runtime from {}: {e}; {FIX}",
            path.display()
        )),
        Err(_) => Err(format!(
            "cannot load ONNX Runtime from {}: it panicked while loading; {FIX}",
            path.display()
        )),
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Backend for OnnxRuntime {
    fn name(&self) -> &'static str {
        NAME
    }

    fn probe(&self) -> Probe {
        match runtime() {
            Ok(rt) => Probe::Available {
                detail: format!(
                    "ONNX Runtime from {} ({} threads; execution providers in this library: {})",
                    rt.path.display(),
                    default_threads(),
                    gpu_providers().describe()
                ),
            },
            Err(reason) => Probe::Unavailable { reason },
        }
    }

    /// On Apple systems, where the CoreML provider is on by default,
    /// [`Tier::NeuralEngine`] (ONNX Runtime with CoreML comes before
    /// tract-metal and the CPU); elsewhere [`Tier::OptimisedCpu`].
    /// With a library that has the CUDA provider (an onnxruntime-gpu build),
    /// [`Tier::Gpu`].
    fn tier(&self) -> Tier {
        if cfg!(target_vendor = "apple") {
            Tier::NeuralEngine
        } else if runtime().is_ok() && gpu_providers().cuda {
            Tier::Gpu
        } else {
            Tier::OptimisedCpu
        }
    }

    fn supports(&self, source: &ModelSource) -> Support {
        match source.format {
            ModelFormat::Onnx => Support::Yes,
            other => Support::No(format!("{NAME} runs ONNX models, not {other} models")),
        }
    }

    fn load(&self, source: &ModelSource, options: &LoadOptions) -> Result<Box<dyn LoadedModel>> {
        let rt = runtime().map_err(|reason| Error::Unavailable {
            what: NAME.into(),
            reason,
        })?;
        let path = &source.path;
        let file = onnx::read(path)?;
        let threads = options.threads.unwrap_or_else(default_threads).max(1);
        // Read (and checked) everywhere; the CoreML provider exists only on Apple systems.
        let coreml = crate::ort_coreml::OrtCoreMlOptions::from_settings(
            options,
            crate::ort_coreml::default_cache_dir(),
        )?;
        let mut providers = Vec::new();
        let mut provider_names = Vec::new();
        #[cfg(target_vendor = "apple")]
        if coreml.enabled {
            if let Err(e) = std::fs::create_dir_all(&coreml.cache_dir) {
                tracing::warn!(dir = %coreml.cache_dir.display(), "cannot create the CoreML provider's cache: {e}");
            }
            providers.push(coreml.provider());
            provider_names.push(coreml.describe());
        }
        #[cfg(not(target_vendor = "apple"))]
        let _ = &coreml;
        let (gpu_providers, gpu_names) =
            crate::ort_options::gpu_execution_providers(options, path, gpu_providers())?;
        providers.extend(gpu_providers);
        provider_names.extend(gpu_names);
        provider_names.push("CPU".to_string());
        let count = session_count(options)?;
        let spinning = spinning(options)?;
        let mut session_options =
            crate::ort_options::OrtOptions::from_settings(options).map_err(Error::Config)?;
        let build = |o: &crate::ort_options::OrtOptions| {
            crate::ort_options::build_session(
                &rt.env,
                path,
                threads,
                spinning,
                o,
                providers.clone(),
            )
        };
        // Exact 8-bit products turn int8 weights into uint8 ones on the
        // CPUs that need it, which some kernels of int8 activations do not
        // take (QGemm of an S8S8 QOperator model, S8S8 QDQ models): such a
        // model loads with ONNX Runtime's default, whose S8S8 products do
        // not saturate.
        let invalid = |reason: String| Error::InvalidModel {
            path: path.to_path_buf(),
            reason: format!("{NAME} cannot load it: {reason}"),
            source: None,
        };
        let mut precise_refused = None;
        let first = match build(&session_options) {
            Err(e) if session_options.x64_quant_precision => {
                let plain = crate::ort_options::OrtOptions {
                    x64_quant_precision: false,
                    ..session_options
                };
                let session = build(&plain).map_err(invalid)?;
                // The option changes a model only on x86 CPUs without VNNI,
                // so only there can it fail to load.
                tracing::warn!(
                    model = %path.display(),
                    "ONNX Runtime cannot load the model with exact 8-bit products \
                     (onnxruntime.x64_quant_precision): {e}; it runs with ONNX Runtime's default, \
                     whose products of uint8 activations and int8 weights saturate on this CPU \
                     (x86 without VNNI; docs/BACKENDS.md, \"Quantized models on x86 CPUs without VNNI\")"
                );
                precise_refused = Some(e);
                session_options = plain;
                Ok(session)
            }
            other => other,
        };
        let sessions = std::iter::once(first)
            .chain((1..count).map(|_| build(&session_options)))
            .map(|s| s.map(Mutex::new).map_err(invalid))
            .collect::<Result<Vec<_>>>()?;
        let mut metadata = file.metadata;
        let threads_shown = match shared_threads() {
            Some(n) => format!("{n}, shared by every session"),
            None => threads.to_string(),
        };
        metadata
            .properties
            .push(("anemone.onnxruntime.threads".into(), threads_shown));
        metadata.properties.push((
            "anemone.onnxruntime.providers".into(),
            provider_names.join(", "),
        ));
        metadata
            .properties
            .push(("anemone.onnxruntime.sessions".into(), count.to_string()));
        metadata.properties.push((
            "anemone.onnxruntime.spinning".into(),
            match (shared_threads(), spinning) {
                (Some(_), _) => "on (the shared pool's)",
                (None, true) => "on",
                (None, false) => "off",
            }
            .into(),
        ));
        metadata.properties.extend(session_options.properties());
        if precise_refused.is_some() {
            for (key, value) in &mut metadata.properties {
                if key == "anemone.onnxruntime.x64_quant_precision" {
                    *value = "off (ONNX Runtime cannot load the model with it on)".into();
                }
            }
        }
        let footprint = metadata.weight_bytes * count as u64;
        let fatal_on_empty = crate::ort_empty_inputs::fatal_on_empty(&file.proto);
        Ok(Box::new(OrtModel {
            metadata,
            sessions,
            next: AtomicUsize::new(0),
            footprint,
            fatal_on_empty,
        }))
    }
}

/// The GPU execution providers the loaded library has (ONNX Runtime's own
/// `GetAvailableProviders`): the PyPI `onnxruntime` wheel has none, an
/// `onnxruntime-gpu` build has CUDA and TensorRT.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GpuProviders {
    pub(crate) cuda: bool,
    pub(crate) tensorrt: bool,
}

impl GpuProviders {
    pub(crate) fn describe(self) -> String {
        let mut have = vec!["CPU"];
        let mut lacks = Vec::new();
        for (name, present) in [("CUDA", self.cuda), ("TensorRT", self.tensorrt)] {
            if present {
                have.push(name)
            } else {
                lacks.push(name)
            }
        }
        if cfg!(target_vendor = "apple") {
            have.push("CoreML");
        }
        let mut out = have.join(", ");
        if !lacks.is_empty() {
            out.push_str(&format!(
                " (not {}: install an onnxruntime-gpu build for them)",
                lacks.join(" or ")
            ));
        }
        out
    }
}

fn gpu_providers() -> GpuProviders {
    use ort::ep::ExecutionProvider;
    static FOUND: OnceLock<GpuProviders> = OnceLock::new();
    if runtime().is_err() {
        return GpuProviders::default();
    }
    *FOUND.get_or_init(|| GpuProviders {
        cuda: ort::ep::CUDA::is_available().unwrap_or(false),
        tensorrt: ort::ep::TensorRT::is_available().unwrap_or(false),
    })
}

/// An `on`/`off` setting, `default` when absent.
pub(crate) fn setting_on(options: &LoadOptions, key: &str, default: bool) -> Result<bool> {
    options.setting(key).map_or(Ok(default), |value| {
        crate::settings::on_off(key, value).map_err(Error::Config)
    })
}

/// The `onnxruntime.sessions` setting: sessions per loaded model, 1 to 64.
fn session_count(options: &LoadOptions) -> Result<usize> {
    let Some(value) = options.setting("onnxruntime.sessions") else {
        return Ok(1);
    };
    match value.trim().parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(Error::Config(format!(
            "onnxruntime.sessions is \"{value}\"; set a number of sessions from 1 to 64 \
             (each holds a copy of the weights)"
        ))),
    }
}

/// The setting `onnxruntime.spinning`: whether ONNX Runtime's intra-op
/// threads spin for a while after a call, waiting for the next, instead of
/// sleeping. On by default, as in ONNX Runtime: a direct model's calls come
/// back to back and a spinning thread takes the next at once (on the 2-core
/// VM, 1.16-1.62x the unbatched requests per second). Off by default for a
/// model behind a dynamic batcher ([`LoadOptions::batched`]): between its
/// batches the spinning threads take the cores that decode the next
/// batch's requests (1.16-1.31x the batched requests per second without
/// them; docs/PERFORMANCE.md, "Spinning threads and the batcher").
fn spinning(options: &LoadOptions) -> Result<bool> {
    setting_on(options, "onnxruntime.spinning", !options.batched())
}

/// A model loaded into an ONNX Runtime session.
pub struct OrtModel {
    metadata: ModelMetadata,
    /// The session pool; see the module documentation for why each is locked.
    sessions: Vec<Mutex<Session>>,
    /// Where the next request starts looking for a free session.
    next: AtomicUsize,
    footprint: u64,
    /// The model's operators whose kernels end the process on an empty
    /// input: such inputs are refused ([`crate::ort_empty_inputs`]).
    fatal_on_empty: Vec<String>,
}

impl OrtModel {
    /// A free session if there is one, else the next one in turn, waited for.
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n)
            .find_map(|i| self.sessions[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.sessions[start]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
            })
    }
}

impl LoadedModel for OrtModel {
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
        let fail = |message: String| Error::Backend {
            backend: NAME.into(),
            message,
            retryable: false,
            source: None,
        };
        let specs = &self.metadata.inputs;
        if let Some(refused) =
            crate::ort_empty_inputs::refuse_empty(specs, inputs, &self.fatal_on_empty)
        {
            return Err(refused);
        }
        let mut values: Vec<(String, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (spec, t) in self.metadata.inputs.iter().zip(inputs) {
            check_strings(&spec.name, t)?;
            let v = to_ort_input(t)
                .map_err(|e| fail(format!("cannot convert input '{}': {e}", spec.name)))?;
            values.push((spec.name.clone(), v));
        }
        let mut session = self.session();
        let outputs = session.run(values).map_err(|e| {
            // ONNX Runtime checks the inputs against the graph itself
            // (INVALID_ARGUMENT); a kernel's complaint is read from its
            // words; a kernel that fails on an empty input fails on the
            // request's (see `input_blame`).
            let message = format!("inference failed: {e}");
            let known = crate::input_blame::Known {
                invalid_input: e.code() == ort::error::ErrorCode::InvalidArgument,
                empty_input: crate::input_blame::any_empty(inputs),
            };
            crate::input_blame::engine_error(NAME, &self.metadata.inputs, known, message, None)
        })?;
        self.metadata
            .outputs
            .iter()
            .map(|spec| {
                let v = outputs
                    .get(&spec.name)
                    .ok_or_else(|| fail(format!("the model produced no output '{}'", spec.name)))?;
                from_ort(v).map_err(|e| fail(format!("cannot convert output '{}': {e}", spec.name)))
            })
            .collect()
    }
}
