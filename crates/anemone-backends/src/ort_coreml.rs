//! ONNX Runtime's CoreML execution provider, for ONNX models on Apple
//! systems: which compute units it may use, which Core ML model format it
//! converts to, and where it caches the converted models.
//!
//! | key | values | default |
//! |---|---|---|
//! | `onnxruntime.coreml` | `on`, `off` | `on` (Apple systems only; elsewhere there is no CoreML provider) |
//! | `onnxruntime.coreml.compute_units` | `ane`, `gpu`, `cpu`, `all` (as for the `coreml` backend) | `all` |
//! | `onnxruntime.coreml.model_format` | `mlprogram`, `neuralnetwork` | `mlprogram` |
//! | `onnxruntime.coreml.cache_dir` | a directory | `<anemone cache>/onnxruntime-coreml` |
//!
//! The settings are read and checked on every system, so a wrong value is
//! refused everywhere; the provider itself is registered only on Apple
//! systems. It is registered without `error_on_failure`: a library without
//! the CoreML provider, or a model it cannot take, runs on ONNX Runtime's CPU
//! provider instead (ONNX Runtime also splits a graph, running on CoreML the
//! parts Core ML supports).

use crate::coreml::options::ComputeUnits;
use anemone_core::{Error, LoadOptions, Result};
use std::path::PathBuf;

/// The setting key that turns the provider on or off.
pub const ENABLED: &str = "onnxruntime.coreml";
/// The setting key for compute units.
pub const COMPUTE_UNITS: &str = "onnxruntime.coreml.compute_units";
/// The setting key for the Core ML model format.
pub const MODEL_FORMAT: &str = "onnxruntime.coreml.model_format";
/// The setting key for the converted-model cache.
pub const CACHE_DIR: &str = "onnxruntime.coreml.cache_dir";
const KEYS: [&str; 4] = [ENABLED, COMPUTE_UNITS, MODEL_FORMAT, CACHE_DIR];

/// The Core ML model format the provider converts ONNX graphs into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelFormat {
    /// ML Program (macOS 12+): more operators, float16 on the GPU and ANE.
    #[default]
    MlProgram,
    /// The older NeuralNetwork format.
    NeuralNetwork,
}

impl ModelFormat {
    /// ONNX Runtime's option value (`ModelFormat`).
    pub const fn ort_value(self) -> &'static str {
        match self {
            ModelFormat::MlProgram => "MLProgram",
            ModelFormat::NeuralNetwork => "NeuralNetwork",
        }
    }
}

/// ONNX Runtime's option value (`MLComputeUnits`) for compute units.
pub const fn ort_compute_units(units: ComputeUnits) -> &'static str {
    match units {
        ComputeUnits::All => "ALL",
        ComputeUnits::CpuAndNeuralEngine => "CPUAndNeuralEngine",
        ComputeUnits::CpuAndGpu => "CPUAndGPU",
        ComputeUnits::CpuOnly => "CPUOnly",
    }
}

/// The CoreML provider's options for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtCoreMlOptions {
    /// Whether to register the provider. By default, `true`.
    pub enabled: bool,
    /// Compute units. By default, [`ComputeUnits::All`].
    pub compute_units: ComputeUnits,
    /// Model format. By default, [`ModelFormat::MlProgram`].
    pub model_format: ModelFormat,
    /// Where converted models are cached. By default, `default_cache`.
    pub cache_dir: PathBuf,
}

impl OrtCoreMlOptions {
    /// Reads the options from load settings.
    pub fn from_settings(
        options: &LoadOptions,
        default_cache: PathBuf,
    ) -> Result<OrtCoreMlOptions> {
        let mut out = OrtCoreMlOptions {
            enabled: true,
            compute_units: ComputeUnits::default(),
            model_format: ModelFormat::default(),
            cache_dir: default_cache,
        };
        let bad = |key: &str, value: &str, allowed: &str| {
            Error::Config(format!("{key} is \"{value}\"; use {allowed}"))
        };
        for (key, value) in options
            .settings
            .iter()
            .filter(|(k, _)| k == ENABLED || k.starts_with("onnxruntime.coreml."))
        {
            let v = value.trim().to_ascii_lowercase();
            match key.as_str() {
                ENABLED => {
                    out.enabled = match v.as_str() {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        _ => return Err(bad(key, value, "on or off")),
                    }
                }
                COMPUTE_UNITS => {
                    out.compute_units = ComputeUnits::parse(&v)
                        .ok_or_else(|| bad(key, value, "ane, gpu, cpu or all"))?
                }
                MODEL_FORMAT => {
                    out.model_format = match v.as_str() {
                        "mlprogram" => ModelFormat::MlProgram,
                        "neuralnetwork" => ModelFormat::NeuralNetwork,
                        _ => return Err(bad(key, value, "mlprogram or neuralnetwork")),
                    }
                }
                CACHE_DIR if v.is_empty() => return Err(bad(key, value, "a directory")),
                CACHE_DIR => out.cache_dir = PathBuf::from(value),
                other => {
                    return Err(Error::Config(format!(
                        "unknown setting '{other}'; ONNX Runtime's CoreML provider reads {}",
                        KEYS.join(", ")
                    )))
                }
            }
        }
        Ok(out)
    }

    /// The options in words, for the model's properties.
    pub fn describe(&self) -> String {
        format!(
            "CoreML (compute units {}, {}, cache {})",
            ort_compute_units(self.compute_units),
            self.model_format.ort_value(),
            self.cache_dir.display()
        )
    }

    /// The execution provider, configured.
    #[cfg(target_vendor = "apple")]
    pub fn provider(&self) -> ort::ep::ExecutionProviderDispatch {
        use ort::ep::coreml::{ComputeUnits as Units, ModelFormat as Format};
        let units = match self.compute_units {
            ComputeUnits::All => Units::All,
            ComputeUnits::CpuAndNeuralEngine => Units::CPUAndNeuralEngine,
            ComputeUnits::CpuAndGpu => Units::CPUAndGPU,
            ComputeUnits::CpuOnly => Units::CPUOnly,
        };
        let format = match self.model_format {
            ModelFormat::MlProgram => Format::MLProgram,
            ModelFormat::NeuralNetwork => Format::NeuralNetwork,
        };
        ort::ep::CoreML::default()
            .with_compute_units(units)
            .with_model_format(format)
            .with_model_cache_dir(self.cache_dir.display())
            .build()
    }
}

/// The default cache of models converted by the provider.
pub fn default_cache_dir() -> PathBuf {
    crate::coreml::options::default_cache_dir_from_env().with_file_name("onnxruntime-coreml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(settings: &[(&str, &str)]) -> Result<OrtCoreMlOptions> {
        let load = LoadOptions {
            threads: None,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        OrtCoreMlOptions::from_settings(&load, PathBuf::from("/c"))
    }

    /// ONNX Runtime's option strings, from its CoreML provider documentation
    /// (`MLComputeUnits`: `CPUOnly`, `CPUAndNeuralEngine`, `CPUAndGPU`, `ALL`;
    /// `ModelFormat`: `MLProgram`, `NeuralNetwork`).
    #[test]
    fn values_are_onnxruntimes() {
        let o = opts(&[
            ("onnxruntime.coreml.compute_units", "ane"),
            ("onnxruntime.coreml.model_format", "NeuralNetwork"),
            ("onnxruntime.coreml.cache_dir", "/x"),
            ("coreml.compute_units", "gpu"),
        ])
        .unwrap();
        assert!(o.enabled);
        assert_eq!(ort_compute_units(o.compute_units), "CPUAndNeuralEngine");
        assert_eq!(o.model_format.ort_value(), "NeuralNetwork");
        assert_eq!(o.cache_dir, PathBuf::from("/x"));
        let d = opts(&[]).unwrap();
        assert_eq!(ort_compute_units(d.compute_units), "ALL");
        assert_eq!(d.model_format.ort_value(), "MLProgram");
        assert_eq!(ort_compute_units(ComputeUnits::CpuAndGpu), "CPUAndGPU");
        assert_eq!(ort_compute_units(ComputeUnits::CpuOnly), "CPUOnly");
        assert!(!opts(&[("onnxruntime.coreml", "off")]).unwrap().enabled);
    }

    #[test]
    fn wrong_values_are_refused() {
        for (k, v, says) in [
            ("onnxruntime.coreml", "maybe", "on or off"),
            ("onnxruntime.coreml.compute_units", "npu", "ane, gpu"),
            ("onnxruntime.coreml.model_format", "onnx", "mlprogram"),
            ("onnxruntime.coreml.cache", "/x", "unknown setting"),
        ] {
            let err = opts(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(says), "{k}: {err}");
        }
    }
}
