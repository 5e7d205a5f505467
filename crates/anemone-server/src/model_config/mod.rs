//! Triton-style model configuration: `config.pbtxt` and its JSON form.
//!
//! A model directory in the repository may hold a `config.pbtxt`, Triton's
//! `inference.ModelConfig` message in protobuf text format. The same message
//! travels as JSON in `POST /v2/repository/models/{m}/load` (parameter
//! `config`) and comes back from `GET /v2/models/{m}/config`.
//!
//! anemone reads a subset of ModelConfig: `name`, `platform`, `backend`,
//! `max_batch_size`, `input`/`output` (`name`, `data_type`, `dims`, and
//! `optional` for inputs), `version_policy`, `instance_group` (`name`,
//! `count`, `kind` KIND_AUTO, KIND_CPU or KIND_GPU), `dynamic_batching`,
//! `sequence_batching` (control inputs; no implicit state),
//! `parameters`, `default_model_filename`, `response_cache`,
//! `platform: "ensemble"` with `ensemble_scheduling` (see [`ensemble_spec`]) and
//! `model_warmup` (built by `repository::warmup`). Every other field that is set is refused with a
//! message naming its path: nothing is ignored silently.
//!
//! anemone's own per-model settings live in `parameters` (see [`settings`]).
//! What the config leaves out is filled in from the model file by
//! [`complete`]. The parsers use prost-reflect's real protobuf text-format and
//! JSON implementations over the descriptors that `build.rs` compiles from
//! `proto/model_config.proto`, so the accepted syntax is protobuf's own.
//!
//! The module is cut by job: `parse` reads the two forms (with
//! `text_format`'s error positions), `supported` refuses what anemone cannot
//! honour, `settings` reads `parameters`, `scheduling` reads
//! `dynamic_batching` and `instance_group` (`sequence` reads
//! `sequence_batching`), `versions` applies the version
//! policy, `complete` fills the config in from the model, `dtypes` maps
//! data types.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

mod complete;
mod dtypes;
mod ensemble;
mod instances;
mod ort_parameters;
mod parse;
mod ragged;
mod scheduling;
mod sequence;
mod settings;
mod supported;
mod text_format;
mod versions;

#[cfg(test)]
mod fixtures;

pub use complete::complete;
pub use dtypes::{core_dtype, dims_of, proto_dtype};
pub use ensemble::{composing_models, ensemble_spec, is_ensemble, ENSEMBLE_PLATFORM};
pub use instances::resolve_instance_groups;
pub use parse::{parse_json, parse_pbtxt, to_json};
pub use ragged::{batch_input_targets, ragged};
pub use scheduling::{scheduler_config, show_tritons_batcher, SchedulerConfig};
pub use sequence::ITERATIVE_REFUSED;
pub use sequence::{no_state_files, StateFiles};
pub use settings::{max_threads, settings, Settings, PARAMETER_KEYS};
pub use supported::{ignored_hints, python_only_refusals};
pub use versions::versions_to_load;

/// Full protobuf name of the configuration message.
const CONFIG_MESSAGE: &str = "inference.ModelConfig";

/// Where a configuration came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A `config.pbtxt` file.
    Pbtxt,
    /// The JSON form (load request or API).
    Json,
}

impl Source {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Source::Pbtxt => "config.pbtxt",
            Source::Json => "model config JSON",
        }
    }
}

/// The descriptor pool of `proto/*.proto`, decoded once.
pub(crate) fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(
            include_bytes!(concat!(env!("OUT_DIR"), "/inference_descriptor.bin")).as_ref(),
        )
        .map_err(|e| {
            format!("the built-in protobuf descriptors are damaged ({e}); rebuild anemone-server")
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The descriptor of `inference.ModelConfig`.
pub(crate) fn config_descriptor() -> Result<MessageDescriptor, String> {
    pool()?.get_message_by_name(CONFIG_MESSAGE).ok_or_else(|| {
        format!("the built-in protobuf descriptors lack '{CONFIG_MESSAGE}'; rebuild anemone-server with proto/model_config.proto")
    })
}

/// One message for every refusal of `what` (e.g. `config.pbtxt`): the
/// refusal itself when there is one, else all of them, numbered, so a user
/// fixes them in one pass.
pub(crate) fn refusals(what: &str, errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        _ => {
            let listed: Vec<String> = errs
                .iter()
                .enumerate()
                .map(|(i, e)| format!("({}) {e}", i + 1))
                .collect();
            format!(
                "{} problems in {what}, fix them all: {}",
                errs.len(),
                listed.join("; ")
            )
        }
    }
}
