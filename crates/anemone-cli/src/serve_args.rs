//! `anemone serve`'s flags (and their environment variables).

use crate::backend_args::BackendArgs;
use std::path::PathBuf;

/// Arguments of `anemone serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The model repository: `<dir>/<model>/[config.pbtxt]` and `<dir>/<model>/<version>/model.onnx`,
    /// or the same layout in a bucket: `s3://bucket/prefix` (credentials, region and endpoint from
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL), Triton's
    /// `s3://host:port/bucket/prefix`. Repeat for several repositories (a model name may be in
    /// only one). See docs/DEPLOY.md. `--model-store` is the same flag, as in Triton.
    #[arg(
        long,
        visible_alias = "model-store",
        value_name = "DIR|URL",
        env = "ANEMONE_MODEL_REPOSITORY",
        required = true
    )]
    pub model_repository: Vec<String>,

    /// Address to listen on; 0.0.0.0 listens on every interface.
    #[arg(
        long,
        value_name = "ADDR",
        env = "ANEMONE_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,

    /// Address of the HTTP listener alone, as Triton's flag [default: --host].
    #[arg(long, value_name = "ADDR", env = "ANEMONE_HTTP_ADDRESS")]
    pub http_address: Option<String>,

    /// Address of the gRPC listener alone, as Triton's flag [default: --host].
    #[arg(long, value_name = "ADDR", env = "ANEMONE_GRPC_ADDRESS")]
    pub grpc_address: Option<String>,

    /// Address of the metrics listener alone, as Triton's flag [default: --host].
    #[arg(long, value_name = "ADDR", env = "ANEMONE_METRICS_ADDRESS")]
    pub metrics_address: Option<String>,

    /// HTTP port; 0 picks a free port (the bound address is printed).
    #[arg(
        long,
        value_name = "PORT",
        env = "ANEMONE_HTTP_PORT",
        default_value_t = 8000
    )]
    pub http_port: u16,

    /// gRPC port; 0 picks a free port (the bound address is printed).
    #[arg(
        long,
        value_name = "PORT",
        env = "ANEMONE_GRPC_PORT",
        default_value_t = 8001
    )]
    pub grpc_port: u16,

    /// Whether to serve HTTP, as Triton's flag (`--allow-http false`: no HTTP listener;
    /// gRPC and the metrics port still serve).
    #[arg(long, value_name = "BOOL", env = "ANEMONE_ALLOW_HTTP", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_http: bool,

    /// Whether to serve gRPC, as Triton's flag (`--allow-grpc false`: no gRPC listener).
    #[arg(long, value_name = "BOOL", env = "ANEMONE_ALLOW_GRPC", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_grpc: bool,

    /// Whether the HTTP port may be shared with other servers that ask the same, as Triton's
    /// flag (SO_REUSEPORT, Linux and macOS): the kernel spreads new connections over them.
    /// Every server sharing it must serve the same models.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_REUSE_HTTP_PORT", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub reuse_http_port: bool,

    /// As --reuse-http-port, for the gRPC port.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_REUSE_GRPC_PORT", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub reuse_grpc_port: bool,

    /// Triton's flag: only false (its default) is taken; anemone has no SageMaker endpoint.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_ALLOW_SAGEMAKER", default_value = "false",
          action = clap::ArgAction::Set,
          value_parser = |s: &str| crate::triton_flags::false_only(s, "anemone has no SageMaker endpoint"))]
    pub allow_sagemaker: bool,

    /// Triton's flag: only false (its default) is taken; anemone has no Vertex AI endpoint.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_ALLOW_VERTEX_AI", default_value = "false",
          action = clap::ArgAction::Set,
          value_parser = |s: &str| crate::triton_flags::false_only(s, "anemone has no Vertex AI endpoint"))]
    pub allow_vertex_ai: bool,

    /// Triton's metrics settings, repeatable: `summary_latencies=true` adds Triton's latency
    /// summaries (nv_inference_*_summary_us: quantiles of the last minute per model),
    /// `summary_quantiles=0.5:0.05,0.9:0.01,...` picks their quantiles (Triton's default:
    /// 0.5, 0.9, 0.95, 0.99, 0.999); `counter_latencies=true` and `histogram_latencies=false`
    /// are taken (anemone's values); others are refused. By default, none.
    #[arg(long, value_name = "SETTING=VALUE", env = "ANEMONE_METRICS_CONFIG",
          value_parser = crate::triton_flags::parse_metrics_config)]
    pub metrics_config: Vec<String>,

    /// How hard gRPC inference answers are compressed, as Triton's flag: none, low, medium
    /// or high (zlib levels 1, 6, 9), with gzip or deflate as the client accepts (off for a
    /// client that accepts neither). Worth it where the network, not the server, is slow.
    #[arg(long, value_name = "LEVEL", env = "ANEMONE_GRPC_INFER_RESPONSE_COMPRESSION_LEVEL",
          default_value = "none", value_parser = clap::builder::PossibleValuesParser::new(["none", "low", "medium", "high"]))]
    pub grpc_infer_response_compression_level: String,

    /// HTTP request headers that reach the models as string request parameters (a Python
    /// model's `request.parameters()`), as Triton's flag: those whose name matches this regular
    /// expression, anywhere in the name and ignoring case (`(?-i)` first to heed it); names
    /// reach the model in lowercase. A matched header named as a parameter the server reads
    /// (`priority`, `timeout`, `sequence_id`, ..., `triton_*`) fails its request with 400. By
    /// default, none.
    #[arg(
        long,
        value_name = "REGEX",
        env = "ANEMONE_HTTP_HEADER_FORWARD_PATTERN",
        default_value = ""
    )]
    pub http_header_forward_pattern: String,

    /// As --http-header-forward-pattern, for the metadata of gRPC calls and streams (not the
    /// transport's own: `te`, `content-type`, `grpc-*`). By default, none.
    #[arg(
        long,
        value_name = "REGEX",
        env = "ANEMONE_GRPC_HEADER_FORWARD_PATTERN",
        default_value = ""
    )]
    pub grpc_header_forward_pattern: String,

    /// The server's name in its metadata (`GET /v2` and gRPC ServerMetadata answer it as
    /// `name`), as Triton's flag.
    #[arg(
        long,
        value_name = "NAME",
        env = "ANEMONE_ID",
        default_value = "anemone"
    )]
    pub id: String,

    #[command(flatten)]
    pub repository: crate::repository_args::RepositoryArgs,

    /// On SIGINT/SIGTERM, seconds that requests in flight get to finish before exiting
    /// (a second SIGINT, Ctrl-C again, exits at once).
    #[arg(
        long,
        value_name = "SECS",
        env = "ANEMONE_EXIT_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub exit_timeout_secs: u64,

    /// Seconds an HTTP client may take to send a request's head; also how long an
    /// idle keep-alive connection is kept (slow or silent clients are disconnected).
    /// At most a year (31536000).
    #[arg(
        long,
        value_name = "SECS",
        env = "ANEMONE_HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=31_536_000)
    )]
    pub http_header_timeout_secs: u64,

    /// Seconds a request body may stall between two chunks. A stalled HTTP body is
    /// answered 408 and its connection closed; a gRPC ModelInfer message stalled
    /// between its HTTP/2 frames (or whose stream never ends) is answered
    /// DEADLINE_EXCEEDED, and the connection's other calls go on.
    #[arg(
        long,
        value_name = "SECS",
        env = "ANEMONE_HTTP_BODY_TIMEOUT_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub http_body_timeout_secs: u64,

    /// Largest request body (HTTP) or message (gRPC), in bytes or with a unit (80MiB); larger
    /// ones are refused (HTTP 413, gRPC RESOURCE_EXHAUSTED).
    #[arg(long, value_name = "BYTES", env = "ANEMONE_MAX_REQUEST_BYTES", default_value_t = 64 << 20,
          value_parser = crate::bytes::parse_positive_byte_size)]
    pub max_request_bytes: usize,

    /// Requests in flight across all models; more are refused at once with 429.
    #[arg(long, value_name = "N", env = "ANEMONE_MAX_CONCURRENCY", default_value_t = anemone_runtime::manager::DEFAULT_MAX_CONCURRENCY,
          value_parser = crate::bytes::parse_positive)]
    pub max_concurrency: usize,

    /// Bytes that loaded models may hold together, as a count or with a unit (`2GiB`,
    /// `512MiB`, `3GB`); a load that would exceed it fails, or evicts idle models with
    /// --eviction lru. By default there is no budget.
    #[arg(long, value_name = "BYTES", env = "ANEMONE_MEMORY_BUDGET", value_parser = crate::bytes::parse_positive_bytes)]
    pub memory_budget: Option<u64>,

    /// Triton's backend settings, repeatable: `onnxruntime,intra_op_thread_count=N` sizes the
    /// engine threads (as --threads, which wins); `onnxruntime,enable-global-threadpool=1`
    /// makes every ONNX Runtime session share one pool of them (for many models); settings
    /// that change nothing here (other backends', `onnxruntime,inter_op_thread_count`,
    /// `default-max-batch-size`) are named in one start-up warning; any other is refused.
    /// By default, none.
    #[arg(
        long,
        value_name = "BACKEND,SETTING=VALUE",
        env = "ANEMONE_BACKEND_CONFIG"
    )]
    pub backend_config: Vec<String>,

    /// Engine threads per inference [default: one per CPU core].
    #[arg(long, value_name = "N", env = "ANEMONE_THREADS", value_parser = crate::bytes::parse_threads)]
    pub threads: Option<usize>,

    /// Arenas of glibc's allocator (Linux). 0 (the default) leaves glibc's own (8 per core):
    /// request threads do not contend on one arena's lock. Fewer arenas hold less memory once
    /// models have served (five real models after requests: 5.4-6.0x their bytes with glibc's,
    /// about 4x with 2) at a cost in small-request throughput under concurrency (2: about 20%
    /// less, 1: 30-40% less); see docs/PERFORMANCE.md, "Memory per model".
    #[arg(
        long,
        value_name = "N",
        env = "ANEMONE_MALLOC_ARENAS",
        default_value_t = 0
    )]
    pub malloc_arenas: usize,

    /// While a model loads, allocations of at least this many bytes are mapped on their own
    /// (glibc's mmap threshold, Linux), so what the load frees goes back to the system at once
    /// (about 0.5x the model bytes less RSS on five real models, with no measurable cost in request
    /// throughput); once no load runs, the threshold goes to glibc's ceiling (32 MiB). Units
    /// such as `KiB` accepted; 0 leaves glibc's dynamic threshold alone. See
    /// docs/PERFORMANCE.md, "Memory per model".
    #[arg(
        long,
        value_name = "BYTES",
        env = "ANEMONE_MALLOC_LOAD_MMAP_THRESHOLD",
        default_value = "128KiB",
        value_parser = parse_mmap_threshold
    )]
    pub malloc_load_mmap_threshold: u64,

    /// Worker threads running engine calls [default: one per CPU core]. A
    /// model with dynamic_batching (a queue) runs its batches on one thread
    /// per instance of its own instead.
    #[arg(long, value_name = "N", env = "ANEMONE_WORKERS",
          value_parser = |s: &str| crate::bytes::parse_count_up_to(s, crate::bytes::MAX_WORKERS, "the most worker threads"))]
    pub workers: Option<usize>,

    #[command(flatten)]
    pub backend: BackendArgs,

    /// A response cache, as Triton's flag: `local,size=BYTES` (units such as
    /// `256MiB` accepted). Models whose config has `response_cache { enable: true }`
    /// then answer repeated identical requests from it. By default, no cache.
    #[arg(
        long = "cache-config",
        value_name = "local,size=BYTES",
        env = "ANEMONE_CACHE_CONFIG"
    )]
    pub cache_config: Vec<String>,

    /// Triton's older form of --cache-config local,size=BYTES (deprecated there); give one or
    /// the other. By default, none (no cache).
    #[arg(long, value_name = "BYTES", env = "ANEMONE_RESPONSE_CACHE_BYTE_SIZE",
          value_parser = crate::bytes::parse_positive_bytes)]
    pub response_cache_byte_size: Option<u64>,
    // --- evict ---
    /// What a load that would exceed --memory-budget does: `off` refuses it; `lru` unloads
    /// the least recently used idle models (never one with requests in flight or queued,
    /// nor one whose config sets parameter eviction=never) and loads an evicted model
    /// again when a request for it comes. See docs/EVICTION.md.
    #[arg(
        long,
        value_name = "POLICY",
        env = "ANEMONE_EVICTION",
        default_value = "off"
    )]
    pub eviction: anemone_runtime::EvictionPolicy,
    // --- tls ---
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    // --- guard ---
    /// Bytes of HTTP inference bodies decoded at one time, across all connections: a
    /// request whose body has arrived waits while others hold the rest (a body larger
    /// than this is decoded alone).
    #[arg(long, value_name = "BYTES", env = "ANEMONE_MAX_DECODING_BYTES", default_value_t = 128 << 20,
          value_parser = crate::bytes::parse_positive_bytes)]
    pub max_decoding_bytes: u64,

    /// Bytes of responses one streaming request (to a decoupled model) may have waiting
    /// for its client to read them, as a count or with a unit (`64MiB`); past it, the
    /// request ends with an overload error and its model sees its client gone
    /// (is_cancelled()), so a client that stops reading cannot grow the server.
    #[arg(long, value_name = "BYTES", env = "ANEMONE_MAX_STREAM_BUFFER_BYTES",
          default_value_t = anemone_runtime::manager::DEFAULT_STREAM_BUFFER_BYTES,
          value_parser = crate::bytes::parse_positive_bytes)]
    pub max_stream_buffer_bytes: u64,

    /// gRPC requests one connection may have open at once (HTTP/2's
    /// SETTINGS_MAX_CONCURRENT_STREAMS): a client with more waits for one to finish before
    /// it sends the next, instead of one connection holding any number.
    #[arg(long, value_name = "N", env = "ANEMONE_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_concurrent_streams: u32,

    /// Restricts HTTP API groups to requests that carry a header, as Triton:
    /// `<api>[,<api>...]:<key>=<value>`; others get 403. APIs: health, metadata, inference,
    /// shared-memory, model-config, model-repository, statistics, trace, logging, config. Repeat for
    /// more groups (each API in one group only). By default, nothing is restricted.
    #[arg(
        long,
        value_name = "APIS:KEY=VALUE",
        env = "ANEMONE_HTTP_RESTRICTED_API",
        hide_env_values = true
    )]
    pub http_restricted_api: Vec<String>,

    /// Web pages that may use the HTTP API, by origin (`https://ui.example.com`,
    /// `http://localhost:3000`; `null` for file:// pages; `*` for any page). Repeat or separate
    /// with commas. A request that carries an Origin header (browsers add it) from any other
    /// origin gets 403, so a page open in a browser cannot unload models or change settings;
    /// allowed ones get CORS headers. Clients that are not browsers send no Origin and are not
    /// affected. By default, no page.
    #[arg(
        long,
        value_name = "ORIGIN",
        env = "ANEMONE_HTTP_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub http_allow_origin: Vec<String>,

    /// Host names the HTTP and metrics ports answer to besides IP addresses, localhost and names
    /// of one label (`models.example.com`; `.example.com` for a domain and the names under it;
    /// `*` for any name). On a listener bound to a loopback address (the default), a request for
    /// another host (its Host header) gets 403, so a web page that points its own name at
    /// 127.0.0.1 (DNS rebinding) cannot read the server's answers; name here the hosts a proxy on
    /// this machine passes on. On other addresses, hosts are checked only when names are given.
    #[arg(
        long,
        value_name = "HOST",
        env = "ANEMONE_HTTP_ALLOW_HOST",
        value_delimiter = ','
    )]
    pub http_allow_host: Vec<String>,

    /// As --http-restricted-api, for gRPC: calls to the listed protocols need the metadata
    /// `triton-grpc-protocol-<key>: <value>`, or get PERMISSION_DENIED. By default, nothing is restricted.
    #[arg(
        long,
        value_name = "PROTOCOLS:KEY=VALUE",
        env = "ANEMONE_GRPC_RESTRICTED_PROTOCOL",
        hide_env_values = true
    )]
    pub grpc_restricted_protocol: Vec<String>,
    #[command(flatten)]
    pub grpc: crate::grpc_args::GrpcArgs,

    #[command(flatten)]
    pub rate_limit: crate::rate_limit_args::RateLimitArgs,
    // --- ops ---
    #[command(flatten)]
    pub ops: crate::ops_args::OpsArgs,
    // --- recover ---
    #[command(flatten)]
    pub health: crate::health_args::HealthArgs,
    // --- otel ---
    #[command(flatten)]
    pub tracing: crate::telemetry::TracingArgs,
    // --- compare ---
    /// Compare the CPU engines of the default order (at load, and when re-timing on real
    /// requests) in a child process, so the engine that loses never loads in the server and
    /// leaves no memory behind; `false` compares them in the server process.
    #[arg(long, value_name = "BOOL", env = "ANEMONE_COMPARE_IN_CHILD", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub compare_in_child: bool,

    /// Seconds a comparison child may run before it is killed and the engines are compared
    /// in the server process instead.
    #[arg(long, value_name = "SECS", env = "ANEMONE_COMPARE_TIMEOUT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub compare_timeout_secs: u64,
    // --- deploy ---
    /// Where models from a bucket are downloaded (and, with several --model-repository, where
    /// they are merged); kept across restarts, so an unchanged model is not downloaded again
    /// [default: $XDG_CACHE_HOME/anemone/models, else ~/.cache/anemone/models].
    #[arg(long, value_name = "DIR", env = "ANEMONE_MODEL_CACHE_DIR")]
    pub model_cache_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// The repositories, for messages.
    pub fn repository_label(&self) -> PathBuf {
        PathBuf::from(self.model_repository.join(", "))
    }
}

/// `--malloc-load-mmap-threshold`: a byte count glibc accepts (at most 32 MiB).
fn parse_mmap_threshold(text: &str) -> Result<u64, String> {
    let bytes = crate::bytes::parse_bytes(text)?;
    if bytes > 32 << 20 {
        return Err(format!(
            "{text} is above glibc's largest mmap threshold (32MiB); give 32MiB or less, or 0 to leave glibc's own"
        ));
    }
    Ok(bytes)
}
