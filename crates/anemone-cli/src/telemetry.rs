//! `anemone serve --otlp-endpoint`: the flags that start tracing (Triton's
//! `--trace-config` among them), and the `tracing` layer that exports the
//! request and stage spans over OTLP/gRPC or OTLP/HTTP.
//!
//! The exporter's gRPC channel (or HTTP requests) runs on a small Tokio
//! runtime of its own (one thread, `anemone-otlp`), so the layer can be
//! installed with the logging before the server's runtime starts; spans are
//! batched by the OpenTelemetry SDK's batch processor on its own thread (its
//! `OTEL_BSP_*` variables apply, and Triton's `opentelemetry,bsp_*`
//! settings over them). [`shutdown`] flushes what is left.

mod headers;

use anemone_server::telemetry::{TraceLevel, TracingOptions};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::Mutex;
use tracing_subscriber::Layer as _;

/// Tracing flags of `anemone serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct TracingArgs {
    /// Exports traces over OTLP to this collector (an OpenTelemetry Collector,
    /// Jaeger, Tempo...), e.g. `http://localhost:4317` (gRPC) or
    /// `http://localhost:4318` (with --otlp-protocol http/protobuf; `/v1/traces` is added
    /// when the URL has no path). By default, nothing is exported and no request is traced.
    #[arg(long, value_name = "URL", env = "ANEMONE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// How spans go to --otlp-endpoint: `grpc` (OTLP/gRPC, port 4317 by convention) or
    /// `http/protobuf` (OTLP/HTTP, port 4318; plain HTTP only).
    #[arg(long, value_name = "PROTOCOL", env = "ANEMONE_OTLP_PROTOCOL", default_value = "grpc",
          value_parser = clap::builder::PossibleValuesParser::new(["grpc", "http/protobuf"]))]
    pub otlp_protocol: String,

    /// Triton's trace settings, repeatable: `mode=opentelemetry`, `level=`, `rate=`,
    /// `count=`, `opentelemetry,url=HOST:PORT/v1/traces` (OTLP/HTTP, as Triton's; default
    /// localhost:4318/v1/traces), `opentelemetry,resource=KEY=VALUE`,
    /// `opentelemetry,bsp_schedule_delay=MS` and the other `bsp_*`; Triton's trace files:
    /// `mode=triton` (Triton's default mode), `triton,file=PATH`, `triton,log-frequency=N`.
    /// Triton's defaults then apply (level OFF, rate 1000). By default, none. See
    /// docs/FROM_TRITON.md.
    #[arg(long, value_name = "SETTING", env = "ANEMONE_TRACE_CONFIG")]
    pub trace_config: Vec<String>,

    /// The `service.name` of the exported spans [default: $OTEL_SERVICE_NAME, else anemone].
    #[arg(long, value_name = "NAME", env = "ANEMONE_OTLP_SERVICE_NAME")]
    pub otlp_service_name: Option<String>,

    /// A resource attribute of the exported spans, as KEY=VALUE; repeat for more. They
    /// add to (and override) those in $OTEL_RESOURCE_ATTRIBUTES.
    #[arg(
        long = "otlp-resource-attribute",
        value_name = "KEY=VALUE",
        env = "ANEMONE_OTLP_RESOURCE_ATTRIBUTE"
    )]
    pub otlp_resource_attributes: Vec<String>,

    /// A header sent with every export, as KEY=VALUE (a collector's API key, e.g.
    /// x-honeycomb-team=KEY); repeat for more. They add to (and override) those in
    /// $OTEL_EXPORTER_OTLP_HEADERS. Over gRPC they are the calls' metadata.
    #[arg(
        long = "otlp-header",
        value_name = "KEY=VALUE",
        env = "ANEMONE_OTLP_HEADER"
    )]
    pub otlp_headers: Vec<String>,

    /// CA certificates (PEM) trusted for an https:// --otlp-endpoint, beside the system's:
    /// a private CA, or a collector's own self-signed certificate. By default, the system's only.
    #[arg(long, value_name = "FILE", env = "ANEMONE_OTLP_CA_CERT")]
    pub otlp_ca_cert: Option<std::path::PathBuf>,

    /// Triton's trace level: OFF, TIMESTAMPS (request and stage spans) or TENSORS
    /// (accepted; the same spans) [default: TIMESTAMPS with --otlp-endpoint, else OFF].
    /// Changed at run time through /v2/trace/setting.
    #[arg(long, value_name = "LEVEL", env = "ANEMONE_TRACE_LEVEL")]
    pub trace_level: Option<String>,

    /// Traces one request in N, as Triton's trace rate (1 traces every request) [default: 1;
    /// with --trace-config or --trace-file, Triton's 1000].
    #[arg(long, value_name = "N", env = "ANEMONE_TRACE_RATE",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub trace_rate: Option<u32>,

    /// Requests to trace before tracing stops, as Triton's trace count; -1: no limit
    /// [default: -1].
    #[arg(long, value_name = "N", env = "ANEMONE_TRACE_COUNT",
          allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1..))]
    pub trace_count: Option<i32>,

    /// Writes traced requests to this file as Triton's trace files (JSON: each request's
    /// model and timestamps, REQUEST_START ... REQUEST_END, in monotonic nanoseconds), for
    /// Triton's tools, instead of exporting spans. Written at shutdown, or every
    /// --trace-log-frequency traces to FILE.0, FILE.1, ... Triton's defaults apply (level OFF:
    /// give --trace-level TIMESTAMPS; rate 1000). By default, none.
    #[arg(long, value_name = "FILE", env = "ANEMONE_TRACE_FILE")]
    pub trace_file: Option<std::path::PathBuf>,

    /// With --trace-file: write the traces every N traced requests, to FILE.0, FILE.1, ...
    /// (0: all of them to FILE at shutdown, Triton's default). Changed at run time through
    /// /v2/trace/setting's log_frequency.
    #[arg(long, value_name = "N", env = "ANEMONE_TRACE_LOG_FREQUENCY")]
    pub trace_log_frequency: Option<u32>,
}

/// Where and how spans are exported, and what is traced: the flags and
/// Triton's `--trace-config` together.
#[derive(Debug, Clone)]
struct Plan {
    /// With the protocol: `true` for OTLP/HTTP.
    endpoint: Option<(String, bool)>,
    level: TraceLevel,
    rate: u32,
    count: i32,
    /// Resource attributes, (key, value), checked.
    resources: Vec<(String, String)>,
    /// `--otlp-header`s, (name, value), checked.
    headers: Vec<(String, String)>,
    /// Triton's `--trace-config opentelemetry,url=`, as given.
    given_url: Option<String>,
    batch: crate::trace_config::BatchSettings,
    /// Triton's OpenTelemetry rule: a request with a sampled trace context
    /// is traced whatever the rate and the count.
    follow_context: bool,
    /// Triton's trace files: the file and the log frequency.
    file: Option<(std::path::PathBuf, u32)>,
}

/// Refuses a setting given both as `flag` and in `--trace-config`.
fn one_of<T>(flag: Option<T>, triton: Option<T>, name: &str) -> anyhow::Result<Option<T>> {
    let setting = match name {
        "file" | "log-frequency" => format!("triton,{name}"),
        _ => name.to_string(),
    };
    match (flag, triton) {
        (Some(_), Some(_)) => Err(crate::output::mistake(format!(
            "the trace {name} is given twice, by --trace-{name} and by --trace-config {setting}=; give one"
        ))),
        (flag, triton) => Ok(flag.or(triton)),
    }
}

impl TracingArgs {
    /// [`TracingArgs::plan`], whose refusals are flag mistakes (exit 2).
    fn checked_plan(&self) -> anyhow::Result<Plan> {
        self.plan()
            .map_err(|e| match e.downcast_ref::<crate::output::FlagMistake>() {
                Some(_) => e,
                None => crate::output::mistake(crate::output::error_chain(&e)),
            })
    }

    /// The flags and `--trace-config` together, checked.
    fn plan(&self) -> anyhow::Result<Plan> {
        let triton =
            crate::trace_config::parse(&self.trace_config).map_err(crate::output::mistake)?;
        let file = one_of(self.trace_file.clone(), triton.file.clone(), "file")?;
        let log_frequency = one_of(
            self.trace_log_frequency,
            triton.log_frequency,
            "log-frequency",
        )?;
        if log_frequency.is_some() && file.is_none() {
            anyhow::bail!(
                "--trace-log-frequency says how often Triton's trace files are written: give \
                 the file too (--trace-file PATH or --trace-config triton,file=PATH)"
            );
        }
        if file.is_some() && (self.otlp_endpoint.is_some() || triton.opentelemetry) {
            anyhow::bail!(
                "traces go either to Triton's trace file (--trace-file) or to an OpenTelemetry \
                 collector (--otlp-endpoint, --trace-config mode=opentelemetry); give one"
            );
        }
        // Triton's modes, with their defaults (level OFF, rate 1000).
        let tritons = triton.opentelemetry || triton.triton || file.is_some();
        let endpoint = match (&self.otlp_endpoint, &triton.url) {
            (Some(_), Some(_)) => anyhow::bail!(
                "the collector is given twice, by --otlp-endpoint and by --trace-config \
                 opentelemetry,url=; give one"
            ),
            (Some(url), None) if self.otlp_protocol == "http/protobuf" => {
                Some((crate::trace_config::http_traces_url(url), true))
            }
            (Some(url), None) => Some((url.clone(), false)),
            // Triton's OpenTelemetry mode exports over OTLP/HTTP.
            (None, url) if triton.opentelemetry => Some((
                crate::trace_config::http_traces_url(
                    url.as_deref()
                        .unwrap_or(crate::trace_config::TRITON_OTLP_URL),
                ),
                true,
            )),
            (None, _) => None,
        };
        let triton_levels = (!triton.levels.is_empty()).then(|| triton.levels.join(","));
        let level = match one_of(self.trace_level.clone(), triton_levels, "level")? {
            Some(names) => {
                let names: Vec<&str> = names.split(',').collect();
                // Named as the user gave it: a flag of its own, or Triton's.
                let given = match self.trace_level.is_some() {
                    true => "--trace-level",
                    false => "--trace-config level=...",
                };
                TraceLevel::parse(&names).map_err(|e| anyhow::anyhow!("{given}: {e}"))?
            }
            // Triton's default level is OFF (set it at run time through
            // the trace extension); anemone's, with an endpoint, TIMESTAMPS.
            None if tritons => TraceLevel::OFF,
            None if endpoint.is_some() => TraceLevel::TIMESTAMPS,
            None => TraceLevel::OFF,
        };
        if level.is_on() && endpoint.is_none() && file.is_none() {
            anyhow::bail!(
                "--trace-level {} needs somewhere to send traces: add --otlp-endpoint URL (e.g. \
                 http://localhost:4317) for OpenTelemetry, or --trace-file PATH for Triton's trace files",
                level.names().join(",")
            );
        }
        let rate = one_of(self.trace_rate, triton.rate, "rate")?;
        let rate = rate.unwrap_or(match tritons {
            true => crate::trace_config::TRITON_TRACE_RATE,
            false => 1,
        });
        // Triton's rate=0: only the requests that carry a sampled trace
        // context (its OpenTelemetry mode traces those whatever the rate).
        if rate == 0 && !triton.opentelemetry {
            anyhow::bail!("--trace-rate 0: the rate is one request in N, at least 1");
        }
        let count = one_of(self.trace_count, triton.count, "count")?.unwrap_or(-1);
        if count < -1 {
            anyhow::bail!("--trace-config count={count}: give -1 (no limit) or a count");
        }
        let mut resources = self.otlp_resource_attributes.clone();
        resources.extend(triton.resources);
        let resources = resource_attributes(&resources)?;
        let headers = otlp_headers(&self.otlp_headers)?;
        Ok(Plan {
            file: file.map(|f| (f, log_frequency.unwrap_or(0))),
            follow_context: triton.opentelemetry,
            endpoint,
            level,
            rate,
            count,
            resources,
            headers,
            given_url: triton.url.clone(),
            batch: triton.batch,
        })
    }

    /// The server's start-up trace settings.
    pub fn options(&self) -> anyhow::Result<TracingOptions> {
        let plan = self.checked_plan()?;
        let shown = plan.follow_context.then(|| opentelemetry_shown(&plan));
        Ok(TracingOptions {
            endpoint: plan.endpoint.map(|(url, _)| url),
            level: plan.level,
            rate: plan.rate,
            count: plan.count,
            follow_context: plan.follow_context,
            trace_file: match &plan.file {
                Some((path, frequency)) => Some(trace_file(path, *frequency)?),
                None => None,
            },
            shown,
        })
    }
}

/// What Triton's OpenTelemetry mode shows in the trace settings beside
/// the level, rate and count: the `url` as it was given (none when it was
/// not) and the batch processor's settings, as they apply (given, else the
/// OpenTelemetry environment's `OTEL_BSP_*`, else the SDK's defaults).
fn opentelemetry_shown(plan: &Plan) -> Vec<(&'static str, String)> {
    let env_or = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default)
    };
    let batch = &plan.batch;
    let mut shown: Vec<(&'static str, String)> = Vec::new();
    if let Some(url) = &plan.given_url {
        shown.push(("url", url.clone()));
    }
    shown.extend([
        (
            "bsp_max_export_batch_size",
            batch
                .max_export_batch_size
                .map_or_else(
                    || env_or("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
                    |n| n as u64,
                )
                .to_string(),
        ),
        (
            "bsp_schedule_delay",
            batch
                .schedule_delay
                .map_or_else(
                    || env_or("OTEL_BSP_SCHEDULE_DELAY", 5000),
                    |d| d.as_millis() as u64,
                )
                .to_string(),
        ),
        (
            "bsp_max_queue_size",
            batch
                .max_queue_size
                .map_or_else(|| env_or("OTEL_BSP_MAX_QUEUE_SIZE", 2048), |n| n as u64)
                .to_string(),
        ),
    ]);
    shown
}

/// The one trace file of the process (the layer writing it and the
/// server's trace settings share it), made at its first use; [`shutdown`]
/// writes it out.
static TRACE_FILE: Mutex<Option<std::sync::Arc<anemone_server::telemetry::TraceFile>>> =
    Mutex::new(None);

/// [`TRACE_FILE`], made on the first call.
fn trace_file(
    path: &std::path::Path,
    log_frequency: u32,
) -> anyhow::Result<std::sync::Arc<anemone_server::telemetry::TraceFile>> {
    let mut file = TRACE_FILE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(file) = &*file {
        return Ok(file.clone());
    }
    let made = std::sync::Arc::new(
        anemone_server::telemetry::TraceFile::new(path, log_frequency)
            .map_err(anyhow::Error::msg)?,
    );
    *file = Some(made.clone());
    Ok(made)
}

/// A layer for the process's subscriber.
pub type BoxedLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// What [`shutdown`] flushes and stops.
struct Exporting {
    provider: SdkTracerProvider,
    runtime: tokio::runtime::Runtime,
}

static EXPORTING: Mutex<Option<Exporting>> = Mutex::new(None);

/// The layer exporting spans of target [`anemone_runtime::trace::TARGET`]
/// (and only those) to `--otlp-endpoint` (or Triton's `--trace-config
/// opentelemetry,url=`); `None` without either.
pub fn layer(args: &TracingArgs) -> anyhow::Result<Option<BoxedLayer>> {
    let plan = args.checked_plan()?;
    if let Some((path, frequency)) = &plan.file {
        let layer = crate::trace_file_layer::TraceFileLayer::new(trace_file(path, *frequency)?);
        let only_ours = tracing_subscriber::filter::Targets::new()
            .with_target(anemone_runtime::trace::TARGET, tracing::Level::TRACE);
        return Ok(Some(layer.with_filter(only_ours).boxed()));
    }
    let Some((endpoint, http)) = &plan.endpoint else {
        return Ok(None);
    };
    let mut attributes = Vec::new();
    let mut named = None;
    for (key, value) in &plan.resources {
        if key == "service.name" {
            named = Some(value.clone());
        }
        attributes.push(KeyValue::new(key.clone(), value.clone()));
    }
    let service = args
        .otlp_service_name
        .clone()
        .or(named)
        .or_else(|| {
            std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "anemone".into());
    let headers = plan.headers;
    // Before the exporter's thread starts: it sets a variable.
    headers::put_flags_over_environment(&headers);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("anemone-otlp")
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the OTLP exporter's runtime: {e}"))?;
    let https = endpoint.starts_with("https://");
    if args.otlp_ca_cert.is_some() && !https {
        anyhow::bail!(
            "--otlp-ca-cert is for an https:// collector, and the endpoint is {endpoint}; \
             give an https:// URL, or leave the certificate out"
        );
    }
    let ca = match &args.otlp_ca_cert {
        Some(path) => {
            let pem = anemone_server::tls::read_pem_file(path)
                .and_then(|pem| crate::otlp_http::certificates(&pem).map(|_| pem))
                .map_err(|e| anyhow::anyhow!("--otlp-ca-cert {}: {e}", path.display()))?;
            Some(pem)
        }
        None => None,
    };
    let exporter = {
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
        let _inside = runtime.enter();
        let built = match http {
            true => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(crate::otlp_http::OtlpHttpClient::new(
                    runtime.handle().clone(),
                    crate::otlp_http::tls_config(ca.as_deref())?,
                ))
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_headers(headers.into_iter().collect())
                .build(),
            false => {
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (key, value) in &headers {
                    let key = tonic::metadata::MetadataKey::from_bytes(key.as_bytes())
                        .map_err(|_| anyhow::anyhow!("--otlp-header {key}: not a header name"))?;
                    let value = value.parse().map_err(|_| {
                        anyhow::anyhow!("--otlp-header {key}: the value is not a header value")
                    })?;
                    metadata.insert(key, value);
                }
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .with_metadata(metadata);
                if https {
                    let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
                    if let Some(pem) = &ca {
                        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                    }
                    builder = builder.with_tls_config(tls);
                }
                builder.build()
            }
        };
        built.map_err(|e| {
            anyhow::anyhow!(
                "OTLP endpoint '{endpoint}': {e}; give a URL such as http://localhost:4317 \
                 (gRPC) or http://localhost:4318/v1/traces (HTTP)"
            )
        })?
    };
    let resource = Resource::builder()
        .with_attributes(attributes)
        .with_service_name(service)
        .build();
    let mut batch = opentelemetry_sdk::trace::BatchConfigBuilder::default();
    if let Some(n) = plan.batch.max_queue_size {
        batch = batch.with_max_queue_size(n);
    }
    if let Some(delay) = plan.batch.schedule_delay {
        batch = batch.with_scheduled_delay(delay);
    }
    if let Some(n) = plan.batch.max_export_batch_size {
        batch = batch.with_max_export_batch_size(n);
    }
    let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(
        crate::otlp_watch::Watched::new(exporter, endpoint.clone()),
    )
    .with_batch_config(batch.build())
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        // The server already chose the request (the trace settings); a
        // client's `traceparent` that says "not sampled" is honoured.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .build();
    let tracer = provider.tracer("anemone");
    *EXPORTING.lock().unwrap_or_else(|e| e.into_inner()) = Some(Exporting { provider, runtime });
    let only_ours = tracing_subscriber::filter::Targets::new()
        .with_target(anemone_runtime::trace::TARGET, tracing::Level::TRACE);
    Ok(Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_filter(only_ours)
            .boxed(),
    ))
}

/// `pair` as (KEY with its spaces trimmed, VALUE); `what` and `example` say
/// in the refusal what was given and what it should look like.
fn key_value<'a>(pair: &'a str, what: &str, example: &str) -> anyhow::Result<(&'a str, &'a str)> {
    pair.split_once('=')
        .map(|(k, v)| (k.trim(), v))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{what} '{pair}': expected KEY=VALUE, e.g. {example}"))
}

/// Resource attributes (`--otlp-resource-attribute`, `--trace-config
/// opentelemetry,resource=`) as (key, value), checked.
fn resource_attributes(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) =
                key_value(pair, "resource attribute", "deployment.environment=staging")?;
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

/// `--otlp-header` values as (name, value), checked: a header name (lower
/// case, as HTTP/2 and gRPC metadata want) and a printable value.
fn otlp_headers(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = key_value(pair, "--otlp-header", "x-api-key=SECRET")?;
            let key = key.to_ascii_lowercase();
            if hyper::header::HeaderName::from_bytes(key.as_bytes()).is_err() {
                anyhow::bail!("--otlp-header '{key}': not a header name (letters, digits, '-')");
            }
            if hyper::header::HeaderValue::from_str(value).is_err() {
                anyhow::bail!(
                    "--otlp-header {key}: the value is not a header value (printable ASCII)"
                );
            }
            Ok((key, value.to_string()))
        })
        .collect()
}

/// Exports the spans not sent yet and stops the exporter, and writes out
/// Triton's trace file; a no-op without `--otlp-endpoint` or
/// `--trace-file`. Call before the process exits.
pub fn shutdown() {
    if let Some(file) = TRACE_FILE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        file.flush();
    }
    let Some(exporting) = EXPORTING.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    if let Err(e) = exporting.provider.shutdown() {
        tracing::warn!("exporting the last spans failed: {e}");
    }
    exporting.runtime.shutdown_background();
}
