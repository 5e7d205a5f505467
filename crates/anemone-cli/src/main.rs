//! The `anemone` command-line tool: argument definitions and dispatch.
//!
//! Each subcommand lives in its own module and returns `anyhow::Result`;
//! `main` prints any error once, as `error: <message and causes>`, and exits
//! with status 1. Usage errors found by clap exit with status 2.

mod backend_args;
mod backend_config;
mod bench;
mod bytes;
mod cache_config;
mod compare_child;
mod config_file;
mod config_show;
mod doctor;
mod env_names;
mod exit;
mod grpc_args;
mod health_args;
mod infer;
mod init;
mod inspect;
mod log_file;
mod log_lines;
mod logging;
mod models;
mod npy_input;
mod ops_args;
mod otlp_http;
mod otlp_watch;
mod output;
mod rate_limit_args;
mod repository_args;
mod runtime;
mod serve;
mod serve_args;
mod startup;
mod telemetry;
mod tls_args;
mod trace_config;
mod trace_file_layer;
mod triton_flags;
mod write_file;

use clap::builder::BoolishValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// anemone runs machine-learning models. It loads ONNX models onto a
/// backend: ONNX Runtime where its library is installed
/// (scripts/install-onnxruntime.sh or ORT_DYLIB_PATH), tract's pure-Rust CPU
/// runtime always, tract's CUDA runtime in builds with the `cuda` feature,
/// and on Apple systems Core ML and Metal (written, not yet run on a Mac;
/// Core ML files are read everywhere). It runs them with admission control,
/// validation and metrics. From this command line,
/// `inspect` describes a model file without loading it, and `infer` runs a
/// model on NumPy `.npy` inputs and writes its outputs as `.npy` files, and
/// `serve` serves a Triton-style model repository over the KServe v2 / Open
/// Inference Protocol (HTTP and gRPC), so tritonclient and KServe clients
/// work unchanged.
#[derive(Debug, Parser)]
#[command(name = "anemone", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// Log filter for messages on stderr: a level (error, warn, info, debug,
    /// trace) or a tracing directive such as `anemone_runtime=debug`.
    #[arg(
        long,
        global = true,
        env = "ANEMONE_LOG",
        default_value = "warn",
        value_name = "FILTER",
        value_parser = logging::checked_filter
    )]
    log_level: String,

    /// Triton's verbose level, for its users' command lines: 1 logs at `debug`, 2 or more at
    /// `trace` (either overrides --log-level); 0 leaves --log-level as it is.
    #[arg(long, global = true, env = "ANEMONE_LOG_VERBOSE", value_name = "N")]
    log_verbose: Option<u32>,

    /// How log lines are written: `text`, or `json` (one object per line, with the
    /// fields of the span it was logged in, such as a request's trace_id).
    #[arg(
        long,
        global = true,
        env = "ANEMONE_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    log_format: logging::LogFormat,

    /// Append log lines to this file instead of writing them on stderr, as Triton's flag
    /// (the file is created if missing; a file that cannot be opened stops the command).
    #[arg(long, global = true, env = "ANEMONE_LOG_FILE", value_name = "FILE")]
    log_file: Option<PathBuf>,

    /// Triton's switch for INFO lines: true logs them (the level becomes at least `info`),
    /// false drops them. Unset leaves --log-level as it is.
    #[arg(long, global = true, env = "ANEMONE_LOG_INFO", value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    log_info: Option<bool>,

    /// Triton's switch for WARN lines, as --log-info.
    #[arg(long, global = true, env = "ANEMONE_LOG_WARNING", value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    log_warning: Option<bool>,

    /// Triton's switch for ERROR lines, as --log-info.
    #[arg(long, global = true, env = "ANEMONE_LOG_ERROR", value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    log_error: Option<bool>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Describes a model file: inputs, outputs, size, parameters, which
    /// backends can run it, and which one the selection picks (and why).
    Inspect(InspectArgs),
    /// Runs a model once on `.npy` inputs and writes each output to
    /// `<output-dir>/<output name>.npy`.
    Infer(InferArgs),
    /// Serves a model repository over KServe v2 HTTP and gRPC until SIGINT/SIGTERM.
    // Boxed: its flags outgrow every other command's (clippy::large_enum_variant).
    Serve(Box<serve::ServeArgs>),
    /// Sends inference requests to a running KServe v2 server (anemone or
    /// Triton) over HTTP or gRPC from concurrent workers, and reports
    /// throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Loads a model repository as `serve` would, without serving it, and
    /// shows the backend each model landed on, the candidates skipped and why,
    /// and (with --backends auto) the warm-up timings.
    Models(models::ModelsArgs),
    /// Reports this machine: CPU, memory, GPUs, the Neural Engine, every
    /// backend (available, or why not), the libraries found and the caches.
    Doctor(doctor::DoctorArgs),
    /// Shows `serve`'s settings: each value and where it came from (default, file,
    /// env, flag, api).
    Config(config_show::ConfigArgs),
    /// Internal: compares the CPU engines for `serve` in a child process
    /// (a job on stdin, a JSON report on stdout).
    #[command(name = "compare-engines", hide = true)]
    CompareEngines(compare_child::CompareArgs),
}

/// Arguments of `anemone inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The model file: .onnx, or Core ML .mlmodel or .mlpackage (described on any system).
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,

    /// Print one JSON object instead of text (off by default).
    #[arg(long, env = "ANEMONE_JSON", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub json: bool,

    /// Skip loading the model to show which backend the selection picks
    /// (loading a large model takes a while).
    #[arg(long, env = "ANEMONE_NO_SELECT", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub no_select: bool,

    #[command(flatten)]
    pub backend: backend_args::BackendArgs,

    /// Also show Core ML's compute plan: the device each operation would run
    /// on, and its estimated cost. Core ML models, on macOS 14.4 or newer
    /// only (off by default).
    #[arg(long, env = "ANEMONE_COMPUTE_PLAN", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub compute_plan: bool,

    /// The compute units the plan is made for: ane, gpu, cpu or all.
    #[arg(long, env = "ANEMONE_COMPUTE_UNITS", default_value = "all")]
    pub compute_units: String,
}

/// Arguments of `anemone infer`.
#[derive(Debug, clap::Args)]
pub struct InferArgs {
    /// The model file (.onnx).
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,

    /// An input, as NAME=FILE.npy; repeat for each input. A model with one
    /// input also takes a bare FILE.npy. From the environment, one input.
    #[arg(short, long = "input", value_name = "NAME=FILE", env = "ANEMONE_INPUT")]
    pub inputs: Vec<String>,

    /// Directory the outputs are written to, created if missing.
    #[arg(
        short = 'd',
        long,
        value_name = "DIR",
        env = "ANEMONE_OUTPUT_DIR",
        default_value = "."
    )]
    pub output_dir: PathBuf,

    /// Return only this output; repeat for more. By default, every output.
    /// From the environment, one output.
    #[arg(short, long = "output", value_name = "NAME", env = "ANEMONE_OUTPUT")]
    pub outputs: Vec<String>,

    /// Engine threads for the inference [default: the backend's choice;
    /// tract uses one per CPU core].
    #[arg(short, long, value_name = "N", env = "ANEMONE_THREADS",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: Option<u32>,

    /// Print one JSON object instead of text (off by default).
    #[arg(long, env = "ANEMONE_JSON", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub json: bool,

    #[command(flatten)]
    pub backend: backend_args::BackendArgs,
}

fn main() -> ExitCode {
    // ONNX Runtime's usage telemetry (it records each process in a store
    // under $HOME/.cache/Microsoft/DeveloperTools): off, unless the user
    // set the variable. Before any thread starts, so that nothing reads
    // the environment while it changes.
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
    // A container's first process waits for the container's orphans: as
    // PID 1, anemone forks and stays behind as a small init (init.rs).
    // Before any thread starts.
    init::supervise_when_pid_1();
    let (cli, ignored_triton_flags) = parse_cli();
    let exporting = match &cli.command {
        Command::Serve(args) => telemetry::layer(&args.tracing),
        _ => Ok(None),
    };
    let logging = exporting.and_then(|layer| {
        let level = effective_log_level(&cli.log_level, cli.log_verbose);
        logging::init(
            level,
            cli.log_format,
            cli.log_file.as_deref(),
            layer.into_iter().collect(),
        )
    });
    // Triton's severity switches, as its logging API takes them.
    let logging = logging.and_then(|()| {
        let switches = anemone_server::settings::LogUpdate {
            log_info: cli.log_info,
            log_warning: cli.log_warning,
            log_error: cli.log_error,
            ..Default::default()
        };
        use anemone_server::settings::LogControl;
        match logging::control() {
            Some(control) if switches != Default::default() => control
                .update(&switches)
                .map(drop)
                .map_err(|e| anyhow::anyhow!("--log-info/--log-warning/--log-error: {e}")),
            _ => Ok(()),
        }
    });
    if let Err(e) = logging {
        return ExitCode::from(failed(&e));
    }
    triton_flags::warn(&ignored_triton_flags);
    output::quiet_panics();
    let result = std::panic::catch_unwind(|| match &cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Models(args) => models::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Config(args) => config_show::run(args),
        Command::CompareEngines(args) => compare_child::run(args),
    });
    let result = result.unwrap_or_else(|panic| {
        let model = match &cli.command {
            Command::Inspect(args) => &args.model,
            Command::Infer(args) => &args.model,
            Command::Serve(args) => &args.repository_label(),
            Command::Bench(args) => &args.model_name_path(),
            Command::Models(args) => &args.repository_label(),
            Command::Doctor(_) => std::path::Path::new("doctor"),
            Command::Config(_) => std::path::Path::new("config"),
            Command::CompareEngines(_) => std::path::Path::new(compare_child::SUBCOMMAND),
        };
        Err(anyhow::anyhow!(
            "internal error (this is a bug) on {}: {}",
            model.display(),
            output::panic_message(&*panic)
        ))
    });
    let code = match result {
        Ok(()) => 0,
        Err(e)
            if cli.log_format == logging::LogFormat::Json
                && tracing::enabled!(tracing::Level::ERROR) =>
        {
            // A JSON log's reader gets the reason as one of its lines
            // (level ERROR); stderr keeps the plain line only when the log
            // goes to a file.
            tracing::error!("{}", output::error_chain(&e));
            match cli.log_file {
                Some(_) => failed(&e),
                None => exit_status(&e),
            }
        }
        Err(e) => failed(&e),
    };
    if let Command::Serve(_) = cli.command {
        exit::without_teardown(code)
    }
    ExitCode::from(code)
}

/// Prints the error; exit status 2 for a flag mistake (as clap's), else 1.
fn failed(e: &anyhow::Error) -> u8 {
    eprintln!("error: {}", output::error_chain(e));
    exit_status(e)
}

/// Exit status 2 for a flag mistake (as clap's), else 1.
fn exit_status(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<output::FlagMistake>() {
        Some(_) => 2,
        None => 1,
    }
}

/// Prints clap's message (the help, the version, or the flag mistake) and
/// exits with its status, as `clap::Error::exit` does, except that help
/// that cannot be written (`anemone --help > /dev/full`) is an error
/// (status 1) rather than lost silently; a reader that stopped early
/// (`| head`) is none.
fn clap_exit(e: clap::Error) -> ! {
    if let Err(written) = e.print() {
        if written.kind() != std::io::ErrorKind::BrokenPipe {
            use std::io::Write as _;
            let to = if e.use_stderr() { "stderr" } else { "stdout" };
            let _ = writeln!(std::io::stderr(), "error: cannot write to {to}: {written}");
            std::process::exit(1);
        }
    }
    std::process::exit(e.exit_code())
}

/// Parses the command line, with `serve`'s `--config` file layered under
/// the environment and the flags (see `config_file.rs`).
fn parse_cli() -> (Cli, Vec<String>) {
    let globals = Cli::command();
    let takes_value = |flag: &str| {
        globals
            .get_arguments()
            .any(|a| a.get_long() == Some(flag) && a.get_action().takes_values())
    };
    let (argv, ignored) = triton_flags::take_ignored(std::env::args_os().collect(), takes_value);
    let (matches, table) =
        config_file::parse(Cli::command(), "serve", &argv, false).unwrap_or_else(|e| clap_exit(e));
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| clap_exit(e));
    // ANEMONE_LOAD_MODEL lists names separated by commas (an environment
    // gives one value); the flag's value stays one name, as Triton's.
    if let (Command::Serve(args), Some(serve)) =
        (&mut cli.command, matches.subcommand_matches("serve"))
    {
        if serve.value_source("load_models") == Some(clap::parser::ValueSource::EnvVariable) {
            let names = std::mem::take(&mut args.repository.load_models);
            args.repository.load_models = (names.iter())
                .flat_map(|n| n.split(','))
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
        }
    }
    if let Some(mut table) = table {
        show_verbose_level(&mut table, &cli.log_level, cli.log_verbose);
        config_show::remember(table);
    }
    (cli, ignored)
}

/// The log filter: `--log-level`, unless Triton's `--log-verbose` is 1
/// (`debug`) or more (`trace`).
fn effective_log_level(log_level: &str, log_verbose: Option<u32>) -> &str {
    match log_verbose {
        None | Some(0) => log_level,
        Some(1) => "debug",
        Some(_) => "trace",
    }
}

/// Shows the level `--log-verbose` set in the settings table's `log-level`
/// row (with `--log-verbose`'s source), so `GET /v2/anemone/config` tells
/// the level the server logs at.
fn show_verbose_level(
    table: &mut [anemone_server::settings::Setting],
    level: &str,
    verbose: Option<u32>,
) {
    let effective = effective_log_level(level, verbose);
    if effective == level {
        return;
    }
    let source = table
        .iter()
        .find(|s| s.key == "log-verbose")
        .map(|s| s.source);
    if let Some(row) = table.iter_mut().find(|s| s.key == "log-level") {
        row.value = serde_json::Value::String(effective.to_string());
        row.source = source.unwrap_or(row.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn log_verbose_sets_the_level_and_the_table_shows_it() {
        let argv = [
            "anemone",
            "--log-verbose",
            "2",
            "serve",
            "--model-repository",
            "r",
        ];
        let argv: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
        let (matches, table) = config_file::parse(Cli::command(), "serve", &argv, true).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let mut table = table.unwrap();
        show_verbose_level(&mut table, &cli.log_level, cli.log_verbose);
        let row = table.iter().find(|s| s.key == "log-level").unwrap();
        assert_eq!(row.value, "trace");
        assert_eq!(serde_json::to_value(row.source).unwrap(), "flag");
        assert_eq!(effective_log_level("info", Some(0)), "info");
        assert_eq!(effective_log_level("info", None), "info");
        assert_eq!(effective_log_level("info", Some(1)), "debug");
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_env_var_and_shows_its_default() {
        let cmd = Cli::command();
        // The hidden `compare-engines` is run by `serve` with its flags.
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            for arg in sub.get_arguments().filter(|a| !a.is_positional()) {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("{} --{id} has no env var", sub.get_name()));
                assert!(
                    env.to_string_lossy().starts_with("ANEMONE_"),
                    "{id}: {env:?}"
                );
                // Repeatable flags have no default: without them, nothing is given;
                // required flags have none either.
                let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
                let documented = repeatable
                    || arg.is_required_set()
                    || !arg.get_default_values().is_empty()
                    || arg
                        .get_help()
                        .is_some_and(|h| h.to_string().contains("default"));
                assert!(documented, "{} --{id} shows no default", sub.get_name());
            }
        }
    }
}
