//! `anemone bench`: a closed-loop load generator for a KServe v2 server
//! (anemone or Triton) over HTTP with JSON tensor data, HTTP with Triton's
//! binary tensor data extension, or gRPC.
//!
//! Arguments are parsed in two steps: clap fills [`BenchArgs`], then
//! [`BenchArgs::plan`] checks them into a [`Plan`]. The run then fetches the
//! model's metadata, builds the request once (inputs from `.npy` files or
//! generated from the metadata), opens one connection per worker, sends the
//! warm-up requests, and measures. Each worker sends its next request when
//! the previous one has been answered, and records every latency.

mod client;
mod encode;
mod malloc;
mod metadata;
mod never_sent;
mod report;
mod sequence;
mod tls;
mod worker;
mod workload;

use crate::output::emit;
use anyhow::{bail, Context};
use client::{Client, Target};
use report::Outcome;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use worker::{stop_on_ctrl_c, worker, Shared};

/// How requests and tensors travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1 with tensor data as JSON arrays.
    Http,
    /// HTTP/1.1 with Triton's binary tensor data extension.
    HttpBinary,
    /// gRPC, with inputs in `raw_input_contents`.
    Grpc,
}

impl Protocol {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::HttpBinary => "http-binary",
            Protocol::Grpc => "grpc",
        }
    }

    /// Where `anemone serve` and Triton listen by default for this protocol.
    fn default_url(self) -> &'static str {
        match self {
            Protocol::Http | Protocol::HttpBinary => "http://127.0.0.1:8000",
            Protocol::Grpc => "http://127.0.0.1:8001",
        }
    }
}

/// Arguments of `anemone bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The server's base URL [default: http://127.0.0.1:8000 for http and
    /// http-binary, http://127.0.0.1:8001 for grpc].
    #[arg(long, value_name = "URL", env = "ANEMONE_BENCH_URL")]
    pub url: Option<String>,

    /// How requests travel: `grpc`, `http` (tensor data as JSON) or
    /// `http-binary` (Triton's binary tensor data extension).
    #[arg(
        long,
        value_enum,
        value_name = "PROTOCOL",
        env = "ANEMONE_BENCH_PROTOCOL",
        default_value = "grpc"
    )]
    pub protocol: Protocol,

    /// The model to send requests to, by its name on the server (required; no default).
    #[arg(short, long, value_name = "NAME", env = "ANEMONE_BENCH_MODEL")]
    pub model: String,

    /// The model version. By default, the server's choice.
    #[arg(long, value_name = "V", env = "ANEMONE_BENCH_MODEL_VERSION")]
    pub model_version: Option<String>,

    /// Workers, each sending one request at a time on a connection of its own.
    #[arg(short, long, value_name = "N", env = "ANEMONE_BENCH_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Seconds to send measured requests for; ignored when --requests is given.
    #[arg(short, long, value_name = "SECS", env = "ANEMONE_BENCH_DURATION", default_value_t = 10.0,
          value_parser = positive_seconds)]
    pub duration: f64,

    /// Measured requests to send in all, across workers; takes precedence
    /// over --duration. By default, --duration decides.
    #[arg(short = 'n', long, value_name = "N", env = "ANEMONE_BENCH_REQUESTS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Requests sent before measuring, to open connections and warm the model; not counted.
    #[arg(
        long,
        value_name = "N",
        env = "ANEMONE_BENCH_WARMUP",
        default_value_t = 10
    )]
    pub warmup: u64,

    /// An input read from a `.npy` file, as NAME=FILE.npy; repeat for each
    /// input. Inputs not given are generated from the model's metadata. From
    /// the environment, one input.
    #[arg(
        short,
        long = "input",
        value_name = "NAME=FILE",
        env = "ANEMONE_BENCH_INPUT"
    )]
    pub inputs: Vec<String>,

    /// The shape of a generated input, as NAME=D0,D1,...; repeat for more.
    /// By default, the declared shape with dynamic dimensions set to
    /// --dim-default. From the environment, one shape.
    #[arg(long = "shape", value_name = "NAME=DIMS", env = "ANEMONE_BENCH_SHAPE")]
    pub shapes: Vec<String>,

    /// The size of each dynamic (-1) dimension of generated inputs.
    #[arg(
        long,
        value_name = "N",
        env = "ANEMONE_BENCH_DIM_DEFAULT",
        default_value_t = 1
    )]
    pub dim_default: usize,

    /// Ask for only this output; repeat for more. By default, every output.
    /// From the environment, one output.
    #[arg(
        short,
        long = "output",
        value_name = "NAME",
        env = "ANEMONE_BENCH_OUTPUT"
    )]
    pub outputs: Vec<String>,

    /// Requests in each sequence sent to a sequence model (one whose config
    /// has `sequence_batching`): each worker sends sequences of N under an
    /// ID of its own (from --sequence-id-range, by default 1 to
    /// --concurrency; a string when the model's correlation ID is
    /// TYPE_STRING), the first with sequence_start, the last with
    /// sequence_end, as perf_analyzer's --sequence-length. Other models get
    /// no sequence parameters.
    #[arg(long, value_name = "N", env = "ANEMONE_BENCH_SEQUENCE_LENGTH", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub sequence_length: u64,

    /// The sequence IDs a sequence model's workers use, as perf_analyzer's flag:
    /// `START` or `START:END` (END excluded). Worker k sends all its sequences under
    /// START + k, so two runs at once against one model need ranges that do not
    /// overlap; a range with fewer IDs than --concurrency is refused.
    #[arg(long, value_name = "START[:END]", env = "ANEMONE_BENCH_SEQUENCE_ID_RANGE",
          default_value = "1", value_parser = sequence::parse_id_range)]
    pub sequence_id_range: sequence::IdRange,

    /// Seconds to wait for each answer (and for the model's metadata at the
    /// start); a request not answered by then counts as failed ("timeout")
    /// and its HTTP connection is reopened.
    #[arg(long, value_name = "SECS", env = "ANEMONE_BENCH_REQUEST_TIMEOUT", default_value_t = 60.0,
          value_parser = positive_seconds)]
    pub request_timeout: f64,

    /// Also write the report as one JSON object to FILE. By default, no file.
    #[arg(long, value_name = "FILE", env = "ANEMONE_BENCH_JSON_REPORT")]
    pub json_report: Option<PathBuf>,

    /// For an https:// URL: the PEM CA certificate(s) that signed the server's
    /// certificate. Required with https (by default none; the system's CAs are not used).
    #[arg(long, value_name = "FILE", env = "ANEMONE_BENCH_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// For a server that requires client certificates (mutual TLS): this PEM
    /// certificate chain, with --client-key. By default, none is presented.
    #[arg(long, value_name = "FILE", env = "ANEMONE_BENCH_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,

    /// The PEM private key of --client-cert. By default, none.
    #[arg(long, value_name = "FILE", env = "ANEMONE_BENCH_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(v),
        Ok(_) => Err("must be a positive number of seconds".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many requests in all.
    Requests(u64),
    /// When this much time has passed; requests in flight finish.
    After(Duration),
}

/// The checked arguments of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How requests travel.
    pub protocol: Protocol,
    /// The server's base URL, as given or defaulted.
    pub url: String,
    /// The model's name on the server.
    pub model: String,
    /// The version asked for; `None` for the server's choice.
    pub version: Option<String>,
    /// Workers, one connection each.
    pub concurrency: usize,
    /// When measuring ends.
    pub stop: Stop,
    /// Requests sent before measuring.
    pub warmup: u64,
    /// `--input` files by input name, in argument order.
    pub files: Vec<(String, PathBuf)>,
    /// `--shape` overrides by input name.
    pub shapes: Vec<(String, Vec<usize>)>,
    /// The size of dynamic dimensions of generated inputs.
    pub dim_default: usize,
    /// Outputs to ask for; empty for all.
    pub outputs: Vec<String>,
    /// Requests in a sequence, for a sequence model.
    pub sequence_length: u64,
    /// The first worker's sequence ID (the next worker's is one more).
    pub first_sequence_id: u64,
    /// Where the JSON report goes.
    pub json_report: Option<PathBuf>,
    /// How long each answer may take.
    pub request_timeout: Duration,
    /// TLS files, for an https:// URL.
    pub tls: tls::TlsPaths,
}

impl BenchArgs {
    /// The model name as a path, for `main`'s panic message.
    pub fn model_name_path(&self) -> PathBuf {
        PathBuf::from(&self.model)
    }

    /// Checks the arguments.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        if self.model.is_empty() {
            bail!("--model is empty; give the model's name on the server");
        }
        let files = self
            .inputs
            .iter()
            .map(|a| workload::parse_input(a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shapes = self
            .shapes
            .iter()
            .map(|a| workload::parse_shape(a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        workload::no_duplicates("--input", files.iter().map(|(n, _)| n.as_str()))?;
        workload::no_duplicates("--shape", shapes.iter().map(|(n, _)| n.as_str()))?;
        workload::no_duplicates("--output", self.outputs.iter().map(String::as_str))?;
        if let Some((name, _)) = shapes
            .iter()
            .find(|(n, _)| files.iter().any(|(f, _)| f == n))
        {
            bail!("input '{name}' has both --input and --shape; a file's tensor has its own shape");
        }
        self.sequence_id_range.check(u64::from(self.concurrency))?;
        Ok(Plan {
            protocol: self.protocol,
            url: self
                .url
                .clone()
                .unwrap_or_else(|| self.protocol.default_url().to_string()),
            model: self.model.clone(),
            version: self.model_version.clone().filter(|v| !v.is_empty()),
            concurrency: self.concurrency as usize,
            stop: match self.requests {
                Some(n) => Stop::Requests(n),
                None => Stop::After(Duration::from_secs_f64(self.duration)),
            },
            warmup: self.warmup,
            files,
            shapes,
            dim_default: self.dim_default,
            outputs: self.outputs.clone(),
            sequence_length: self.sequence_length,
            first_sequence_id: self.sequence_id_range.start,
            json_report: self.json_report.clone(),
            request_timeout: Duration::from_secs_f64(self.request_timeout),
            tls: tls::TlsPaths {
                ca: self.ca_cert.clone(),
                cert: self.client_cert.clone(),
                key: self.client_key.clone(),
            },
        })
    }
}

/// Runs the benchmark and prints its report.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    malloc::keep_large_buffers();
    let runtime = crate::runtime::build(tokio::runtime::Builder::new_multi_thread().enable_all())?;
    let outcome = runtime.block_on(bench(&plan))?;
    emit(&report::text(&plan, &outcome))?;
    if let Some(path) = &plan.json_report {
        let json = serde_json::to_string_pretty(&report::json(&plan, &outcome))
            .context("cannot encode the JSON report")?;
        crate::write_file::create(path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, (json + "\n").as_bytes()))
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
    }
    if outcome.latencies_ns.is_empty() {
        if let Some(first) = &outcome.first_error {
            bail!("every request failed; the first error: {first}");
        }
    }
    Ok(())
}

async fn bench(plan: &Plan) -> anyhow::Result<Outcome> {
    let https = plan.url.to_ascii_lowercase().starts_with("https://");
    let tls = match (https, plan.tls.any()) {
        (true, _) => Some(Arc::new(plan.tls.load()?)),
        (false, true) => bail!(
            "--ca-cert, --client-cert and --client-key are for TLS: give an https:// URL \
             instead of '{}'",
            plan.url
        ),
        (false, false) => None,
    };
    let target = Target::parse(plan.protocol, &plan.url, tls)?;
    let in_time = |what: &str| {
        format!(
            "the server at {} did not answer {what} within {} s (--request-timeout); \
             is it the server you meant, and is it serving?",
            target.describe(),
            plan.request_timeout.as_secs_f64()
        )
    };
    let metadata = tokio::time::timeout(
        plan.request_timeout,
        metadata::metadata(&target, &plan.model, plan.version.as_deref()),
    )
    .await
    .map_err(|_| anyhow::anyhow!(in_time("the model's metadata request")))??;
    let given = workload::read_inputs(&plan.files)?;
    let workload = workload::Workload::build(
        &metadata,
        given,
        &plan.shapes,
        plan.dim_default,
        &plan.outputs,
    )?;
    // A sequence model refuses a request without a correlation ID: each
    // worker then sends sequences under one of its own. The configuration
    // is Triton's extension of KServe v2: a server without it gets plain
    // requests.
    let asked = tokio::time::timeout(
        plan.request_timeout,
        sequence::id_kind(&target, &plan.model, plan.version.as_deref()),
    );
    let sequence_ids = match asked.await.unwrap_or_else(|_| {
        Err(anyhow::anyhow!(in_time(
            "the model's configuration request"
        )))
    }) {
        Ok(kind) => kind,
        Err(e) => {
            eprintln!("note: {e:#}; sending requests without sequence parameters");
            None
        }
    };
    let prepare = |step: Option<&sequence::Step>| {
        client::Prepared::new(
            plan.protocol,
            &target,
            &plan.model,
            plan.version.as_deref(),
            &workload,
            step,
        )
    };
    let shared_script = match sequence_ids {
        None => Some(Arc::new(client::Script::single(prepare(None)?))),
        Some(_) => None,
    };
    let mut clients = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        let script = match (&shared_script, sequence_ids) {
            (Some(script), _) => script.clone(),
            (None, Some(kind)) => {
                let id = sequence::SequenceId::for_worker(kind, plan.first_sequence_id, worker);
                Arc::new(client::Script::sequences(
                    &id,
                    plan.sequence_length,
                    |step| prepare(Some(step)),
                )?)
            }
            (None, None) => unreachable!("a script is shared unless the model takes sequences"),
        };
        clients.push(Client::connect(&target, script, plan.request_timeout).await?);
    }

    let shared = Arc::new(Shared {
        warmup_left: AtomicU64::new(plan.warmup),
        measured_left: AtomicU64::new(match plan.stop {
            Stop::Requests(n) => n,
            Stop::After(_) => u64::MAX,
        }),
        stop_after: match plan.stop {
            Stop::Requests(_) => None,
            Stop::After(d) => Some(d),
        },
        interrupted: AtomicBool::new(false),
        first_error: Mutex::new(None),
        measuring: tokio::sync::Barrier::new(plan.concurrency + 1),
        began: std::sync::OnceLock::new(),
    });
    let interrupt = tokio::spawn(stop_on_ctrl_c(shared.clone()));
    let workers: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(worker(c, shared.clone())))
        .collect();
    shared.measuring.wait().await;
    let start = *shared.began.get_or_init(Instant::now);

    let mut outcome = Outcome {
        workload: workload.summary(),
        sequence_ids,
        ..Outcome::default()
    };
    for w in workers {
        let r = w
            .await
            .context("a benchmark worker failed; this is a bug")?;
        outcome.latencies_ns.extend(r.latencies_ns);
        for (status, n) in r.errors {
            *outcome.errors.entry(status).or_default() += n;
        }
        outcome.warmup_errors += r.warmup_errors;
    }
    outcome.wall = start.elapsed();
    interrupt.abort();
    outcome.interrupted = shared.interrupted.load(Ordering::Relaxed);
    outcome.first_error = shared
        .first_error
        .lock()
        .expect("no holder panics; this is a bug")
        .clone();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))?;
        cli.args.plan()
    }

    #[test]
    fn url_defaults_follow_the_protocol() {
        assert_eq!(
            plan(&["--model", "m"]).unwrap().url,
            "http://127.0.0.1:8001"
        );
        assert_eq!(
            plan(&["--model", "m", "--protocol", "http"]).unwrap().url,
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            plan(&["--model", "m", "--protocol", "http-binary"])
                .unwrap()
                .url,
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            plan(&["--model", "m", "--url", "http://h:1"]).unwrap().url,
            "http://h:1"
        );
    }

    #[test]
    fn requests_take_precedence_over_duration() {
        assert_eq!(
            plan(&["--model", "m"]).unwrap().stop,
            Stop::After(Duration::from_secs(10))
        );
        assert_eq!(
            plan(&["--model", "m", "--duration", "0.5"]).unwrap().stop,
            Stop::After(Duration::from_millis(500))
        );
        assert_eq!(
            plan(&["--model", "m", "--duration", "3", "--requests", "7"])
                .unwrap()
                .stop,
            Stop::Requests(7)
        );
        assert!(plan(&["--model", "m", "--duration", "0"]).is_err());
        assert!(plan(&["--model", "m", "--requests", "0"]).is_err());
        assert!(plan(&["--model", "m", "--concurrency", "0"]).is_err());
    }

    #[test]
    fn shapes_and_inputs_are_parsed_and_checked() {
        let p = plan(&[
            "--model",
            "m",
            "--shape",
            "x=1,3,224,224",
            "--shape",
            "y=2",
            "--input",
            "z=z.npy",
        ])
        .unwrap();
        assert_eq!(
            p.shapes,
            vec![
                ("x".to_string(), vec![1, 3, 224, 224]),
                ("y".to_string(), vec![2])
            ]
        );
        assert_eq!(p.files, vec![("z".to_string(), PathBuf::from("z.npy"))]);
        let err = |argv: &[&str]| plan(argv).unwrap_err().to_string();
        assert!(
            err(&["--model", "m", "--shape", "x=1", "--shape", "x=2"]).contains("more than once")
        );
        assert!(err(&["--model", "m", "--shape", "x=1", "--input", "x=x.npy"]).contains("both"));
        assert!(err(&["--model", "m", "--input", "x.npy"]).contains("NAME=FILE"));
    }

    #[test]
    fn every_flag_has_a_bench_env_var_and_shows_its_default() {
        use clap::CommandFactory;
        for arg in Cli::command()
            .get_arguments()
            .filter(|a| !a.is_positional() && a.get_id() != "help")
        {
            let id = arg.get_id().as_str();
            let env = arg
                .get_env()
                .unwrap_or_else(|| panic!("--{id} has no env var"));
            assert!(
                env.to_string_lossy().starts_with("ANEMONE_BENCH_"),
                "--{id}: {env:?}"
            );
            let documented = matches!(arg.get_action(), clap::ArgAction::Append)
                || !arg.get_default_values().is_empty()
                || arg
                    .get_help()
                    .is_some_and(|h| h.to_string().contains("default"));
            assert!(documented, "--{id} shows no default");
        }
    }
}
