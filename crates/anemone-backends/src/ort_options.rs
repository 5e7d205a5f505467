//! ONNX Runtime's session options, read from a model's settings: the graph
//! optimization level, sequential or parallel execution and its inter-op
//! threads, the memory pattern and the CPU arena. Triton's ONNX Runtime
//! backend reads the same options from a config's `parameters` and
//! `optimization { graph { level } }`; the server translates those into
//! these settings (docs/SERVING.md).
//!
//! The parsing is here, outside the `onnxruntime` feature, so a server
//! without ONNX Runtime still refuses a bad value by name.

use anemone_core::LoadOptions;

/// `onnxruntime.optimization`: how far ONNX Runtime rewrites the graph.
pub const OPTIMIZATION_KEY: &str = "onnxruntime.optimization";
/// `onnxruntime.parallel`: `on` runs independent nodes at once.
pub const PARALLEL_KEY: &str = "onnxruntime.parallel";
/// `onnxruntime.inter_threads`: the threads that run nodes at once.
pub const INTER_THREADS_KEY: &str = "onnxruntime.inter_threads";
/// `onnxruntime.mem_pattern`: plan the model's buffers from the first run.
pub const MEM_PATTERN_KEY: &str = "onnxruntime.mem_pattern";
/// `onnxruntime.mem_arena`: keep freed CPU buffers in an arena for reuse.
pub const MEM_ARENA_KEY: &str = "onnxruntime.mem_arena";
/// `onnxruntime.x64_quant_precision`: exact 8-bit matrix products on x86
/// CPUs without VNNI (ONNX Runtime's `session.x64quantprecision`).
pub const X64_QUANT_PRECISION_KEY: &str = "onnxruntime.x64_quant_precision";

/// `onnxruntime.tensorrt.fp16`: TensorRT may build its engines in half precision.
pub const TRT_FP16_KEY: &str = "onnxruntime.tensorrt.fp16";
/// `onnxruntime.tensorrt.workspace_bytes`: the GPU memory TensorRT may use
/// while it builds and runs an engine.
pub const TRT_WORKSPACE_KEY: &str = "onnxruntime.tensorrt.workspace_bytes";
/// `onnxruntime.tensorrt.engine_cache`: a directory, inside the model's,
/// where TensorRT keeps the engines it built, so the next load skips the
/// build.
pub const TRT_ENGINE_CACHE_KEY: &str = "onnxruntime.tensorrt.engine_cache";

/// ONNX Runtime's TensorRT provider's options (used where the library has
/// the provider and `onnxruntime.tensorrt` is on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TensorRtOptions {
    /// Half precision engines (default off).
    pub fp16: bool,
    /// The workspace, in bytes; `None`: ONNX Runtime's default (1 GiB).
    pub workspace_bytes: Option<usize>,
    /// Where built engines are kept; `None`: not kept.
    pub engine_cache: Option<String>,
}

impl TensorRtOptions {
    /// The options `options`' settings give; a bad value is refused by key.
    pub fn from_settings(options: &LoadOptions) -> Result<TensorRtOptions, String> {
        let fp16 = options
            .setting(TRT_FP16_KEY)
            .map_or(Ok(false), |v| crate::settings::on_off(TRT_FP16_KEY, v))?;
        let workspace_bytes = match options.setting(TRT_WORKSPACE_KEY) {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "{TRT_WORKSPACE_KEY} is \"{v}\"; set a number of bytes, e.g. 1073741824 for 1 GiB"
                    ))
                }
            },
        };
        let engine_cache = options.setting(TRT_ENGINE_CACHE_KEY).map(str::to_string);
        Ok(TensorRtOptions {
            fp16,
            workspace_bytes,
            engine_cache,
        })
    }

    /// ONNX Runtime's TensorRT provider with these options.
    #[cfg(feature = "onnxruntime")]
    pub(crate) fn provider(&self) -> ort::ep::ExecutionProviderDispatch {
        let mut trt = ort::ep::TensorRT::default().with_fp16(self.fp16);
        if let Some(n) = self.workspace_bytes {
            trt = trt.with_max_workspace_size(n);
        }
        if let Some(dir) = &self.engine_cache {
            trt = trt.with_engine_cache(true).with_engine_cache_path(dir);
        }
        trt.build()
    }
}

/// ONNX Runtime's graph optimization levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimization {
    /// No rewrite.
    Off,
    /// Rewrites that keep every operator's semantics (constant folding,
    /// redundant nodes).
    Basic,
    /// And fusions of several nodes into one.
    Extended,
    /// And layout changes (the default).
    All,
}

impl Optimization {
    /// The level named `value` (`off`, `basic`, `extended`, `all`).
    pub fn parse(value: &str) -> Result<Optimization, String> {
        match value.trim() {
            "off" | "disable" => Ok(Optimization::Off),
            "basic" => Ok(Optimization::Basic),
            "extended" => Ok(Optimization::Extended),
            "all" => Ok(Optimization::All),
            other => Err(format!(
                "{OPTIMIZATION_KEY} is \"{other}\"; set off, basic, extended or all"
            )),
        }
    }

    /// The level's name, as `parse` reads it.
    pub fn name(self) -> &'static str {
        match self {
            Optimization::Off => "off",
            Optimization::Basic => "basic",
            Optimization::Extended => "extended",
            Optimization::All => "all",
        }
    }
}

/// The session options a model's settings ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrtOptions {
    /// The graph optimization level (default `all`).
    pub optimization: Optimization,
    /// Parallel execution (default off: one node at a time, each with the
    /// intra-op threads).
    pub parallel: bool,
    /// Inter-op threads when parallel; `None`: ONNX Runtime's default.
    pub inter_threads: Option<usize>,
    /// The memory pattern (default on, as in ONNX Runtime).
    pub mem_pattern: bool,
    /// The CPU arena allocator (default off: freed buffers go back to the
    /// system, so a model's peak does not stay resident).
    pub mem_arena: bool,
    /// Exact products of 8-bit activations and weights on x86 CPUs without
    /// VNNI (default on). There ONNX Runtime's kernels for unsigned
    /// activations and signed weights (what its own quantization tool
    /// writes) add pairs of products in 16 bits, which saturate: a
    /// dynamically quantized MLP answered 0.57 off, a `QLinearConv` 75
    /// quanta off, where the ONNX reference and tract-cpu agree. On, ONNX
    /// Runtime turns such weights unsigned at load on those CPUs alone
    /// (slower kernels there; nothing changes on other CPUs).
    pub x64_quant_precision: bool,
}

impl Default for OrtOptions {
    fn default() -> Self {
        OrtOptions {
            optimization: Optimization::All,
            parallel: false,
            inter_threads: None,
            mem_pattern: true,
            mem_arena: false,
            x64_quant_precision: true,
        }
    }
}

impl OrtOptions {
    /// The options `options`' settings give; a bad value is refused with
    /// the values the key takes.
    pub fn from_settings(options: &LoadOptions) -> Result<OrtOptions, String> {
        let mut out = OrtOptions::default();
        let on = |key: &str, default: bool| {
            options
                .setting(key)
                .map_or(Ok(default), |v| crate::settings::on_off(key, v))
        };
        if let Some(v) = options.setting(OPTIMIZATION_KEY) {
            out.optimization = Optimization::parse(v)?;
        }
        out.parallel = on(PARALLEL_KEY, out.parallel)?;
        out.mem_pattern = on(MEM_PATTERN_KEY, out.mem_pattern)?;
        out.mem_arena = on(MEM_ARENA_KEY, out.mem_arena)?;
        out.x64_quant_precision = on(X64_QUANT_PRECISION_KEY, out.x64_quant_precision)?;
        if let Some(v) = options.setting(INTER_THREADS_KEY) {
            let max = 4 * std::thread::available_parallelism().map_or(1, |n| n.get());
            match v.trim().parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => out.inter_threads = Some(n),
                _ => {
                    return Err(format!(
                        "{INTER_THREADS_KEY} is \"{v}\"; set a number of threads from 1 to {max} \
                         (4 per logical core of this machine)"
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The options as `(property, value)` pairs for the model's metadata.
    pub fn properties(&self) -> Vec<(String, String)> {
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        let inter = self
            .inter_threads
            .map_or("default".into(), |n| n.to_string());
        vec![
            (
                "anemone.onnxruntime.optimization".into(),
                self.optimization.name().into(),
            ),
            ("anemone.onnxruntime.parallel".into(), on_off(self.parallel)),
            ("anemone.onnxruntime.inter_threads".into(), inter),
            (
                "anemone.onnxruntime.mem_pattern".into(),
                on_off(self.mem_pattern),
            ),
            (
                "anemone.onnxruntime.mem_arena".into(),
                on_off(self.mem_arena),
            ),
            (
                "anemone.onnxruntime.x64_quant_precision".into(),
                on_off(self.x64_quant_precision),
            ),
        ]
    }
}

/// Builds one session of the model at `path` with these options, `threads`
/// intra-op threads (spinning or not) and `providers` (the CPU provider is
/// added last, with the arena as the options say).
#[cfg(feature = "onnxruntime")]
pub(crate) fn build_session(
    env: &ort::environment::Environment,
    path: &std::path::Path,
    threads: usize,
    spinning: bool,
    options: &OrtOptions,
    mut providers: Vec<ort::ep::ExecutionProviderDispatch>,
) -> Result<ort::session::Session, String> {
    use ort::session::builder::GraphOptimizationLevel as Level;
    let s = |e: ort::Error<ort::session::builder::SessionBuilder>| e.to_string();
    let level = match options.optimization {
        Optimization::Off => Level::Disable,
        Optimization::Basic => Level::Level1,
        Optimization::Extended => Level::Level2,
        // ORT_ENABLE_ALL (99), as ONNX Runtime's Python API and Triton's
        // backend run by default; ort's `Level3` is ORT_ENABLE_LAYOUT (3).
        Optimization::All => Level::All,
    };
    providers.push(
        ort::ep::CPU::default()
            .with_arena_allocator(options.mem_arena)
            .build(),
    );
    let mut builder = ort::session::Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_intra_threads(threads)
        .map_err(s)?
        .with_intra_op_spinning(spinning)
        .map_err(s)?
        .with_optimization_level(level)
        .map_err(s)?
        .with_parallel_execution(options.parallel)
        .map_err(s)?
        .with_memory_pattern(options.mem_pattern)
        .map_err(s)?;
    // Sequential execution has no inter-op pool worth a thread.
    let inter = match options.parallel {
        true => options.inter_threads,
        false => Some(1),
    };
    if let Some(n) = inter {
        builder = builder.with_inter_threads(n).map_err(s)?;
    }
    if options.x64_quant_precision {
        // ONNX Runtime applies it only where its 8-bit kernels saturate.
        builder = builder.with_precise_qmm().map_err(s)?;
    }
    builder
        .with_execution_providers(providers)
        .map_err(s)?
        .commit_from_file(path)
        .map_err(|e| e.to_string())
}

/// The GPU execution providers a model asks for (`onnxruntime.tensorrt`,
/// off by default; `onnxruntime.cuda`, on by default) that the library `gpu`
/// has, with their names. Their settings are checked even where the library
/// lacks them, so a typo is found on every machine; a provider asked for by
/// name (a Triton GPU accelerator sets these) that the library lacks is
/// logged as a warning, not passed over in silence.
#[cfg(feature = "onnxruntime")]
pub(crate) fn gpu_execution_providers(
    options: &LoadOptions,
    path: &std::path::Path,
    gpu: crate::onnxruntime::GpuProviders,
) -> anemone_core::Result<(Vec<ort::ep::ExecutionProviderDispatch>, Vec<String>)> {
    use crate::onnxruntime::setting_on;
    use anemone_core::Error;
    let (want_tensorrt, want_cuda) = (
        setting_on(options, "onnxruntime.tensorrt", false)?,
        setting_on(options, "onnxruntime.cuda", true)?,
    );
    let tensorrt = TensorRtOptions::from_settings(options).map_err(Error::Config)?;
    let (mut providers, mut names) = (Vec::new(), Vec::new());
    if gpu.tensorrt && want_tensorrt {
        providers.push(tensorrt.provider());
        names.push("TensorRT".to_string());
    }
    if gpu.cuda && want_cuda {
        providers.push(ort::ep::CUDA::default().build());
        names.push("CUDA".to_string());
    }
    for (asked, have, name) in [
        (want_tensorrt, gpu.tensorrt, "onnxruntime.tensorrt"),
        (
            want_cuda && options.setting("onnxruntime.cuda").is_some(),
            gpu.cuda,
            "onnxruntime.cuda",
        ),
    ] {
        if asked && !have {
            tracing::warn!(
                model = %path.display(),
                "{name} is on, but this ONNX Runtime library has no such provider ({}); the model runs without it",
                gpu.describe()
            );
        }
    }
    Ok((providers, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_options(settings: &[(&str, &str)]) -> LoadOptions {
        LoadOptions {
            threads: None,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn options(settings: &[(&str, &str)]) -> Result<OrtOptions, String> {
        OrtOptions::from_settings(&load_options(settings))
    }

    #[test]
    fn tensorrt_options_come_from_settings() {
        let load =
            |settings: &[(&str, &str)]| TensorRtOptions::from_settings(&load_options(settings));
        assert_eq!(load(&[]).unwrap(), TensorRtOptions::default());
        let o = load(&[
            (TRT_FP16_KEY, "on"),
            (TRT_WORKSPACE_KEY, "1073741824"),
            (TRT_ENGINE_CACHE_KEY, "/models/m/trt"),
        ])
        .unwrap();
        assert!(o.fp16);
        assert_eq!(o.workspace_bytes, Some(1 << 30));
        assert_eq!(o.engine_cache.as_deref(), Some("/models/m/trt"));
        let e = load(&[(TRT_WORKSPACE_KEY, "1GB")]).unwrap_err();
        assert!(
            e.contains(TRT_WORKSPACE_KEY) && e.contains("number of bytes"),
            "{e}"
        );
    }

    #[test]
    fn settings_give_the_options_and_bad_values_are_refused_by_key() {
        assert_eq!(options(&[]).unwrap(), OrtOptions::default());
        let o = options(&[
            (OPTIMIZATION_KEY, "basic"),
            (PARALLEL_KEY, "on"),
            (INTER_THREADS_KEY, "2"),
            (MEM_PATTERN_KEY, "off"),
            (MEM_ARENA_KEY, "true"),
            (X64_QUANT_PRECISION_KEY, "off"),
        ])
        .unwrap();
        assert_eq!(
            o,
            OrtOptions {
                optimization: Optimization::Basic,
                parallel: true,
                inter_threads: Some(2),
                mem_pattern: false,
                mem_arena: true,
                x64_quant_precision: false,
            }
        );
        for (key, bad, says) in [
            (OPTIMIZATION_KEY, "max", "off, basic, extended or all"),
            (PARALLEL_KEY, "2", "set on or off"),
            (INTER_THREADS_KEY, "0", "from 1 to"),
            (INTER_THREADS_KEY, "100000", "from 1 to"),
            (MEM_ARENA_KEY, "yes", "set on or off"),
            (X64_QUANT_PRECISION_KEY, "exact", "set on or off"),
        ] {
            let e = options(&[(key, bad)]).unwrap_err();
            assert!(e.contains(key) && e.contains(says), "{key}={bad}: {e}");
        }
    }
}
