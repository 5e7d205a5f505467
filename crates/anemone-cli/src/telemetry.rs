//! `anemone serve --otlp-endpoint`: the flags that start tracing, and the
//! `tracing` layer that exports the request and stage spans over OTLP/gRPC.
//!
//! The exporter's gRPC channel runs on a small Tokio runtime of its own (one
//! thread, `anemone-otlp`), so the layer can be installed with the logging
//! before the server's runtime starts; spans are batched by the
//! OpenTelemetry SDK's batch processor on its own thread (its
//! `OTEL_BSP_*` variables apply). [`shutdown`] flushes what is left.

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
    /// Exports traces over OTLP/gRPC to this collector (an OpenTelemetry Collector,
    /// Jaeger, Tempo...), e.g. `http://localhost:4317`. By default, nothing is
    /// exported and no request is traced.
    #[arg(long, value_name = "URL", env = "ANEMONE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

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

    /// Triton's trace level: OFF, TIMESTAMPS (request and stage spans) or TENSORS
    /// (accepted; the same spans) [default: TIMESTAMPS with --otlp-endpoint, else OFF].
    /// Changed at run time through /v2/trace/setting.
    #[arg(long, value_name = "LEVEL", env = "ANEMONE_TRACE_LEVEL")]
    pub trace_level: Option<String>,

    /// Traces one request in N, as Triton's trace rate (1 traces every request; Triton's
    /// own default is 1000).
    #[arg(long, value_name = "N", env = "ANEMONE_TRACE_RATE", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub trace_rate: u32,

    /// Requests to trace before tracing stops, as Triton's trace count; -1: no limit.
    #[arg(long, value_name = "N", env = "ANEMONE_TRACE_COUNT", default_value_t = -1,
          allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1..))]
    pub trace_count: i32,
}

impl TracingArgs {
    /// The server's start-up trace settings.
    pub fn options(&self) -> anyhow::Result<TracingOptions> {
        let level = match &self.trace_level {
            None if self.otlp_endpoint.is_some() => TraceLevel::TIMESTAMPS,
            None => TraceLevel::OFF,
            Some(names) => {
                let names: Vec<&str> = names.split(',').collect();
                TraceLevel::parse(&names).map_err(|e| anyhow::anyhow!("--trace-level: {e}"))?
            }
        };
        if level.is_on() && self.otlp_endpoint.is_none() {
            anyhow::bail!(
                "--trace-level {} needs somewhere to send spans: add --otlp-endpoint URL (e.g. http://localhost:4317)",
                level.names().join(",")
            );
        }
        Ok(TracingOptions {
            endpoint: self.otlp_endpoint.clone(),
            level,
            rate: self.trace_rate,
            count: self.trace_count,
        })
    }
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
/// (and only those) to `--otlp-endpoint`; `None` without the flag.
pub fn layer(args: &TracingArgs) -> anyhow::Result<Option<BoxedLayer>> {
    let Some(endpoint) = &args.otlp_endpoint else {
        return Ok(None);
    };
    let mut attributes = Vec::new();
    for pair in &args.otlp_resource_attributes {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--otlp-resource-attribute '{pair}': expected KEY=VALUE, e.g. deployment.environment=staging"
                )
            })?;
        attributes.push(KeyValue::new(key.trim().to_string(), value.to_string()));
    }
    let service = args
        .otlp_service_name
        .clone()
        .or_else(|| {
            std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "anemone".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("anemone-otlp")
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the OTLP exporter's runtime: {e}"))?;
    let exporter = {
        use opentelemetry_otlp::WithExportConfig;
        let _inside = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| {
                anyhow::anyhow!(
                    "--otlp-endpoint '{endpoint}': {e}; give a URL such as http://localhost:4317"
                )
            })?
    };
    let resource = Resource::builder()
        .with_attributes(attributes)
        .with_service_name(service)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(crate::otlp_watch::Watched::new(exporter, endpoint.clone()))
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

/// Exports the spans not sent yet and stops the exporter; a no-op without
/// `--otlp-endpoint`. Call before the process exits.
pub fn shutdown() {
    let Some(exporting) = EXPORTING.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    if let Err(e) = exporting.provider.shutdown() {
        tracing::warn!("exporting the last spans failed: {e}");
    }
    exporting.runtime.shutdown_background();
}
