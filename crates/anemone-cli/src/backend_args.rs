//! The backend-selection flags shared by `serve`, `infer`, `inspect` and `models`.

use anemone_runtime::ManagerBuilder;
use clap::builder::BoolishValueParser;

/// Which backends run models, and how they are chosen.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Backend preference for models whose config names none: comma-separated
    /// names in order (tract-cpu, onnxruntime, tract-cuda, tract-metal, coreml,
    /// coreml-ane, coreml-gpu, coreml-cpu, coreml-all), or `auto` to time a
    /// warm-up on every backend that can load the model and keep the fastest.
    /// [default: by capability: Neural Engine, GPU, ONNX Runtime CPU, tract CPU]
    #[arg(
        long,
        value_name = "LIST",
        env = "ANEMONE_BACKENDS",
        value_delimiter = ','
    )]
    pub backends: Option<Vec<String>>,

    /// Strict mode for models whose config does not set it: a model runs on the
    /// first backend of its list or fails to load; no fallback at load or run time.
    #[arg(long, env = "ANEMONE_STRICT", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub strict: bool,

    /// The Python interpreter that runs Triton's Python models (`backend:
    /// "python"`, a model.py), one process per instance; it needs numpy and
    /// whatever the models import (a model's own EXECUTION_ENV_PATH wins).
    /// [default: python3]
    #[arg(long, value_name = "PATH", env = "ANEMONE_PYTHON")]
    pub python: Option<std::path::PathBuf>,
}

/// Starts the manager `builder` describes. Its refusal of the settings
/// themselves (an unknown backend, `auto` with `--strict`, a backend named
/// twice) is a [`crate::output::FlagMistake`].
pub fn start(builder: ManagerBuilder) -> anyhow::Result<anemone_runtime::Manager> {
    builder.build().map_err(|e| match e {
        anemone_core::Error::Config(m) => anyhow::Error::new(crate::output::FlagMistake(m)),
        e => anyhow::Error::new(e).context("cannot start the runtime"),
    })
}

/// `--eviction` other than `off` needs `--memory-budget`: refused as a
/// [`crate::output::FlagMistake`] (`serve` and `models` alike).
pub fn check_eviction(
    eviction: anemone_runtime::EvictionPolicy,
    budget: Option<u64>,
) -> anyhow::Result<()> {
    if eviction != anemone_runtime::EvictionPolicy::Off && budget.is_none() {
        return Err(anyhow::Error::new(crate::output::FlagMistake(format!(
            "--eviction {} needs a budget to evict against; add --memory-budget (e.g. --memory-budget 2GiB)",
            eviction.as_str()
        ))));
    }
    Ok(())
}

impl BackendArgs {
    /// A manager builder with every built-in backend and these choices.
    pub fn builder(&self) -> ManagerBuilder {
        let preference = self
            .backends
            .as_ref()
            .map(|names| {
                names
                    .iter()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|names| !names.is_empty());
        let mut backends = anemone_backends::default_backends();
        if let Some(python) = &self.python {
            for backend in &mut backends {
                if backend.name() == anemone_backends::python::NAME {
                    *backend =
                        std::sync::Arc::new(anemone_backends::Python::with_interpreter(python));
                }
            }
        }
        anemone_runtime::Manager::builder()
            .backends(backends)
            .preference(preference)
            .strict(self.strict)
    }
}
