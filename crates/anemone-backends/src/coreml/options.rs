//! The `coreml` backend's settings, read from [`LoadOptions::settings`]
//! (a model's config `parameters`): which compute units Core ML may use,
//! where compiled models are cached, and GPU precision.
//!
//! | key | values | default |
//! |---|---|---|
//! | `coreml.compute_units` | `ane` (CPU and Neural Engine), `gpu` (CPU and GPU), `cpu` (CPU only), `all` | `all` |
//! | `coreml.cache_dir` | a directory for compiled `.mlmodelc` | `$ANEMONE_CACHE_DIR/coreml`, else `~/Library/Caches/anemone/coreml` |
//! | `coreml.allow_low_precision_gpu` | `true`, `false` | `false` |
//!
//! Any other `coreml.*` key is refused, so a misspelt setting is never ignored.

use anemone_core::{Error, LoadOptions, Result, Tier};
use std::path::{Path, PathBuf};

/// The hardware Core ML may run a model on: Apple's `MLComputeUnits`.
///
/// The discriminants are Apple's values (`MLComputeUnits.h`): CPUOnly = 0,
/// CPUAndGPU = 1, All = 2, CPUAndNeuralEngine = 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(isize)]
pub enum ComputeUnits {
    /// `MLComputeUnitsCPUOnly`: the CPU only (setting `cpu`).
    CpuOnly = 0,
    /// `MLComputeUnitsCPUAndGPU`: CPU and GPU, through Metal Performance
    /// Shaders (setting `gpu`).
    CpuAndGpu = 1,
    /// `MLComputeUnitsAll`: CPU, GPU and Neural Engine, as Core ML sees fit
    /// (setting `all`, the default).
    #[default]
    All = 2,
    /// `MLComputeUnitsCPUAndNeuralEngine`: CPU and Neural Engine, no GPU
    /// (setting `ane`; macOS 13+).
    CpuAndNeuralEngine = 3,
}

impl ComputeUnits {
    /// Every value, in Apple's order.
    pub const ALL: [ComputeUnits; 4] = [
        ComputeUnits::CpuOnly,
        ComputeUnits::CpuAndGpu,
        ComputeUnits::All,
        ComputeUnits::CpuAndNeuralEngine,
    ];

    /// Apple's `MLComputeUnits` value.
    pub const fn apple_value(self) -> isize {
        self as isize
    }

    /// anemone's setting name: `cpu`, `gpu`, `all`, `ane`.
    pub const fn setting(self) -> &'static str {
        match self {
            ComputeUnits::CpuOnly => "cpu",
            ComputeUnits::CpuAndGpu => "gpu",
            ComputeUnits::All => "all",
            ComputeUnits::CpuAndNeuralEngine => "ane",
        }
    }

    /// Apple's name, e.g. `cpuAndNeuralEngine`.
    pub const fn apple_name(self) -> &'static str {
        match self {
            ComputeUnits::CpuOnly => "cpuOnly",
            ComputeUnits::CpuAndGpu => "cpuAndGPU",
            ComputeUnits::All => "all",
            ComputeUnits::CpuAndNeuralEngine => "cpuAndNeuralEngine",
        }
    }

    /// Parses a setting: anemone's short names or Apple's names, any case.
    pub fn parse(value: &str) -> Option<ComputeUnits> {
        let v = value.trim().to_ascii_lowercase();
        ComputeUnits::ALL
            .into_iter()
            .find(|u| v == u.setting() || v == u.apple_name().to_ascii_lowercase())
    }

    /// The hardware class a model loaded with these units runs on, at best.
    pub const fn tier(self) -> Tier {
        match self {
            ComputeUnits::CpuOnly => Tier::OptimisedCpu,
            ComputeUnits::CpuAndGpu => Tier::Gpu,
            ComputeUnits::All | ComputeUnits::CpuAndNeuralEngine => Tier::NeuralEngine,
        }
    }
}

/// The setting key for compute units.
pub const COMPUTE_UNITS: &str = "coreml.compute_units";
/// The setting key for the compiled-model cache directory.
pub const CACHE_DIR: &str = "coreml.cache_dir";
/// The setting key for `allowLowPrecisionAccumulationOnGPU`.
pub const LOW_PRECISION_GPU: &str = "coreml.allow_low_precision_gpu";
/// Every key the backend reads.
pub const KEYS: [&str; 3] = [COMPUTE_UNITS, CACHE_DIR, LOW_PRECISION_GPU];

/// The `coreml` backend's options for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMlOptions {
    /// Compute units. By default, [`ComputeUnits::All`].
    pub compute_units: ComputeUnits,
    /// Where compiled models are cached. By default, [`default_cache_dir`].
    pub cache_dir: PathBuf,
    /// Whether GPU accumulation may use float16. By default, `false`.
    pub allow_low_precision_gpu: bool,
}

impl CoreMlOptions {
    /// Reads the options from load settings; `default_cache` is used when
    /// `coreml.cache_dir` is not set.
    pub fn from_settings(options: &LoadOptions, default_cache: PathBuf) -> Result<CoreMlOptions> {
        let mut out = CoreMlOptions {
            compute_units: ComputeUnits::default(),
            cache_dir: default_cache,
            allow_low_precision_gpu: false,
        };
        for (key, value) in options
            .settings
            .iter()
            .filter(|(k, _)| k.starts_with("coreml."))
        {
            match key.as_str() {
                COMPUTE_UNITS => {
                    out.compute_units = ComputeUnits::parse(value).ok_or_else(|| {
                        Error::Config(format!(
                            "{COMPUTE_UNITS} is \"{value}\"; use ane (CPU and Neural Engine), gpu (CPU and GPU), \
                             cpu (CPU only) or all"
                        ))
                    })?
                }
                CACHE_DIR if value.trim().is_empty() => {
                    return Err(Error::Config(format!(
                        "{CACHE_DIR} is empty; give a directory, or remove it to use the default"
                    )))
                }
                CACHE_DIR => out.cache_dir = PathBuf::from(value),
                LOW_PRECISION_GPU => {
                    out.allow_low_precision_gpu = match value.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => {
                            return Err(Error::Config(format!(
                                "{LOW_PRECISION_GPU} is \"{value}\"; use true or false"
                            )))
                        }
                    }
                }
                other => {
                    return Err(Error::Config(format!(
                        "unknown setting '{other}'; the coreml backend reads {}",
                        KEYS.join(", ")
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// The default cache of compiled models: `$ANEMONE_CACHE_DIR/coreml` when
/// that variable is set, else `<home>/Library/Caches/anemone/coreml` (the
/// macOS convention), else `anemone-cache/coreml` in the temporary directory.
pub fn default_cache_dir(anemone_cache_dir: Option<&Path>, home: Option<&Path>) -> PathBuf {
    match (anemone_cache_dir, home) {
        (Some(dir), _) if !dir.as_os_str().is_empty() => dir.join("coreml"),
        (_, Some(home)) if !home.as_os_str().is_empty() => {
            home.join("Library/Caches/anemone/coreml")
        }
        _ => std::env::temp_dir().join("anemone-cache/coreml"),
    }
}

/// [`default_cache_dir`] from the process environment (`ANEMONE_CACHE_DIR`, `HOME`).
pub fn default_cache_dir_from_env() -> PathBuf {
    let cache = std::env::var_os("ANEMONE_CACHE_DIR").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    default_cache_dir(cache.as_deref(), home.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apple's values, from `MLComputeUnits.h` (CoreML.framework):
    /// `MLComputeUnitsCPUOnly = 0, MLComputeUnitsCPUAndGPU = 1,
    /// MLComputeUnitsAll = 2, MLComputeUnitsCPUAndNeuralEngine = 3`.
    #[test]
    fn compute_units_use_apples_values() {
        let by_setting: Vec<(&str, isize)> = ["cpu", "gpu", "all", "ane"]
            .iter()
            .map(|s| (*s, ComputeUnits::parse(s).unwrap().apple_value()))
            .collect();
        assert_eq!(by_setting, [("cpu", 0), ("gpu", 1), ("all", 2), ("ane", 3)]);
        assert_eq!(
            ComputeUnits::parse("cpuAndNeuralEngine"),
            Some(ComputeUnits::CpuAndNeuralEngine)
        );
        assert_eq!(
            ComputeUnits::parse(" CPUANDGPU "),
            Some(ComputeUnits::CpuAndGpu)
        );
        assert_eq!(ComputeUnits::parse("npu"), None);
        assert_eq!(ComputeUnits::default(), ComputeUnits::All);
        assert_eq!(ComputeUnits::CpuAndGpu.tier(), Tier::Gpu);
    }

    fn opts(settings: &[(&str, &str)]) -> Result<CoreMlOptions> {
        let load = LoadOptions {
            threads: None,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        CoreMlOptions::from_settings(&load, PathBuf::from("/cache"))
    }

    #[test]
    fn settings_are_read_and_checked() {
        let o = opts(&[
            ("coreml.compute_units", "ane"),
            ("coreml.cache_dir", "/tmp/c"),
            ("coreml.allow_low_precision_gpu", "true"),
            ("onnxruntime.threads", "not ours"),
        ])
        .unwrap();
        assert_eq!(o.compute_units, ComputeUnits::CpuAndNeuralEngine);
        assert_eq!(o.cache_dir, PathBuf::from("/tmp/c"));
        assert!(o.allow_low_precision_gpu);
        assert_eq!(opts(&[]).unwrap().cache_dir, PathBuf::from("/cache"));
        let err = opts(&[("coreml.compute_units", "npu")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("use ane"), "{err}");
        let err = opts(&[("coreml.computeunits", "ane")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown setting 'coreml.computeunits'"),
            "{err}"
        );
        assert!(opts(&[("coreml.allow_low_precision_gpu", "maybe")]).is_err());
    }

    #[test]
    fn cache_dir_defaults() {
        assert_eq!(
            default_cache_dir(Some(Path::new("/c")), Some(Path::new("/Users/a"))),
            PathBuf::from("/c/coreml")
        );
        assert_eq!(
            default_cache_dir(None, Some(Path::new("/Users/a"))),
            PathBuf::from("/Users/a/Library/Caches/anemone/coreml")
        );
        assert!(default_cache_dir(None, None).ends_with("anemone-cache/coreml"));
    }
}
