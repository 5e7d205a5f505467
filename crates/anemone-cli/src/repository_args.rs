//! `anemone serve`'s flags for the model repository, with Triton's names and
//! meanings: who loads models, how configurations are read, how loads run,
//! and what a failed load does to the server.

use anemone_server::ControlMode;

/// The repository flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RepositoryArgs {
    /// Who loads models, as Triton's flag: `none` loads every model at start-up and refuses
    /// the load/unload API; `explicit` loads only --load-model models and allows the API;
    /// `poll` loads every model and follows changes on disk.
    #[arg(
        long,
        value_name = "MODE",
        env = "ANEMONE_MODEL_CONTROL_MODE",
        default_value = "none"
    )]
    pub model_control_mode: ControlMode,

    /// Whether every model's config must be complete, as Triton's flag: true refuses a model
    /// whose config.pbtxt is missing or leaves out its platform, inputs, outputs or their dims;
    /// false (the default) fills them in from the model file.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_STRICT_MODEL_CONFIG", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub strict_model_config: bool,

    /// Reads each model's configuration from `<model>/configs/NAME.pbtxt` where the model has
    /// that file, and from its config.pbtxt where not, as Triton's flag (e.g. `h100`, for
    /// configurations kept per kind of machine). By default, config.pbtxt.
    #[arg(long, value_name = "NAME", env = "ANEMONE_MODEL_CONFIG_NAME",
          value_parser = parse_config_name)]
    pub model_config_name: Option<String>,

    /// Triton's flag: only false (its default) is taken; anemone serves one model per name.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_MODEL_NAMESPACING", default_value = "false", action = clap::ArgAction::Set,
          value_parser = parse_namespacing)]
    pub model_namespacing: bool,

    /// The same as --strict-model-config true, as Triton's flag.
    #[arg(long, env = "ANEMONE_DISABLE_AUTO_COMPLETE_CONFIG",
          value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub disable_auto_complete_config: bool,

    /// Whether readiness (`/v2/health/ready`, gRPC ServerReady and the gRPC health service)
    /// waits for every model, as Triton's flag: true (the default) is ready once start-up
    /// loading is over and every model that should be loaded is ready; false is ready once
    /// start-up loading is over, with models UNAVAILABLE or not (each model's own readiness
    /// still says).
    #[arg(long, value_name = "BOOL", env = "ANEMONE_STRICT_READINESS", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub strict_readiness: bool,

    /// How many models load at once, as Triton's flag: at start-up, through the load API and
    /// by polling (each load reads, builds and compares its engines; fewer at once use less
    /// memory and fewer cores). The others wait as LOADING.
    #[arg(long, value_name = "N", env = "ANEMONE_MODEL_LOAD_THREAD_COUNT",
          default_value_t = anemone_server::repository::MODEL_LOADS,
          value_parser = |s: &str| crate::bytes::parse_count_up_to(s, crate::bytes::MAX_MODEL_LOADS, "the most loads at once"))]
    pub model_load_thread_count: usize,

    /// How many times a model whose load fails is tried again before it is UNAVAILABLE, as
    /// Triton's flag (each failed try is logged with its reason).
    #[arg(
        long,
        value_name = "N",
        env = "ANEMONE_MODEL_LOAD_RETRY_COUNT",
        default_value_t = 0
    )]
    pub model_load_retry_count: u32,

    /// Whether a model that fails to load at start-up stops the server, as Triton's flag:
    /// true prints the model table with each failure's reason and exits with status 1. The
    /// default, false, differs from Triton's: the server stays up, serving the models that
    /// loaded, not ready (unless --strict-readiness false), and the repository index says why
    /// each failed.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_EXIT_ON_ERROR", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub exit_on_error: bool,

    /// A model to load at start-up in explicit mode (it needs --model-control-mode explicit,
    /// as Triton's); repeat for more, `*` for all. The variable takes several separated by
    /// commas (ANEMONE_LOAD_MODEL=a,b); a flag's value is one name, as Triton's.
    #[arg(long = "load-model", value_name = "NAME", env = "ANEMONE_LOAD_MODEL")]
    pub load_models: Vec<String>,

    /// Seconds between repository scans in poll mode; 0 reads the repository once, at
    /// start-up (as Triton's 0).
    #[arg(
        long,
        value_name = "SECS",
        env = "ANEMONE_REPOSITORY_POLL_SECS",
        default_value_t = 15
    )]
    pub repository_poll_secs: u64,
}

/// `--model-config-name`: a plain file name.
pub fn parse_config_name(text: &str) -> Result<String, String> {
    anemone_server::repository::check_config_name(text).map(|()| text.to_string())
}

/// `--model-namespacing`: false only.
fn parse_namespacing(text: &str) -> Result<bool, String> {
    crate::triton_flags::false_only(
        text,
        "anemone has no model namespaces: a model name is one model across all repositories \
         (two repositories with the same name are refused at start-up)",
    )
}

impl RepositoryArgs {
    /// `--load-model` chooses the models of explicit mode; in modes none and
    /// poll every model loads, so it is refused there, as Triton refuses it.
    pub fn check_load_models(&self) -> anyhow::Result<()> {
        use anemone_server::ControlMode;
        if self.load_models.iter().any(|m| m == "*") && self.load_models.len() > 1 {
            return Err(crate::output::mistake(
                "--load-model '*' loads every model, so it must be the only --load-model (as Triton's: \
                 \"Wildcard model name '*' must be the ONLY startup model if specified at all\"); \
                 give '*' alone, or name the models"
                    .into(),
            ));
        }
        if self.load_models.is_empty() || self.model_control_mode == ControlMode::Explicit {
            return Ok(());
        }
        Err(anyhow::Error::new(crate::output::FlagMistake(
            "--load-model needs --model-control-mode explicit (as Triton's: \"Use of '--load-model' \
             requires setting '--model-control-mode=explicit' as well\"); in modes none and poll every \
             model of the repository loads, so leave --load-model out"
                .into(),
        )))
    }
}
