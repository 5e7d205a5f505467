//! `--trace-file`: the `tracing` layer that turns each traced request's
//! spans into Triton's timestamps and hands them to the server's
//! [`TraceFile`] when the request ends.
//!
//! The request span `infer` opens at `REQUEST_START` and closes at
//! `REQUEST_END`; its `queue` stage opens at `QUEUE_START`; the engine call
//! (`compute_infer`) opens at `COMPUTE_START` and, since anemone's engines
//! take their inputs inside that call, `COMPUTE_INPUT_END` is the same
//! instant; `compute_output` opens at `COMPUTE_OUTPUT_START` and closes at
//! `COMPUTE_END`. A request answered from the response cache has only its
//! request's two. Each step of an ensemble (its `ensemble_step` span) is a
//! trace of its own with the ensemble's trace as its `parent_id`, as
//! Triton writes them: its stages are stamped there, and the ensemble's
//! request keeps its own two timestamps.

use anemone_server::telemetry::trace_file::monotonic_ns;
use anemone_server::telemetry::{TraceFile, TraceRecord};
use std::fmt;
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Writes Triton's trace files from the request and stage spans.
pub struct TraceFileLayer {
    file: Arc<TraceFile>,
}

impl TraceFileLayer {
    /// A layer writing to `file`.
    pub fn new(file: Arc<TraceFile>) -> TraceFileLayer {
        TraceFileLayer { file }
    }
}

/// An open request's record, in its `infer` span's extensions.
struct Open(TraceRecord);

/// Marks a request span whose request failed (`otel.status_code` ERROR).
struct Failed;

/// Reads whether a request failed off its span.
struct Outcome(bool);

impl Visit for Outcome {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "otel.status_code" && value == "ERROR" {
            self.0 = true;
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

/// Reads `model`, `version` and `request_id` off the request span.
struct Fields<'a>(&'a mut TraceRecord);

impl Visit for Fields<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "version" {
            self.0.version = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "version" {
            self.0.version = u64::try_from(value).ok();
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "model" => self.0.model = value.to_string(),
            "request_id" => self.0.request_id = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "model" {
            self.0.model = format!("{value:?}");
        }
    }
}

impl TraceFileLayer {
    /// Adds `names` at `now` to the record of the request whose span is
    /// `stage`'s parent (an ensemble step's, for the stages of a step).
    fn stamp<S>(&self, stage: &tracing_subscriber::registry::SpanRef<'_, S>, names: &[&'static str])
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let now = monotonic_ns();
        let Some(parent) = stage.parent() else {
            return;
        };
        let mut extensions = parent.extensions_mut();
        if let Some(open) = extensions.get_mut::<Open>() {
            for name in names {
                open.0.timestamps.push((name, now));
            }
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for TraceFileLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        match span.name() {
            "infer" | "ensemble_step" => {
                let parent_id = match span.name() {
                    "ensemble_step" => span.parent().and_then(|p| {
                        let extensions = p.extensions();
                        extensions.get::<Open>().map(|open| open.0.id)
                    }),
                    _ => None,
                };
                let mut record = TraceRecord {
                    id: self.file.next_id(),
                    model: String::new(),
                    version: None,
                    request_id: None,
                    parent_id,
                    timestamps: vec![("REQUEST_START", monotonic_ns())],
                };
                attrs.record(&mut Fields(&mut record));
                span.extensions_mut().insert(Open(record));
                if span.name() == "infer" {
                    self.file.begin();
                }
            }
            "queue" => self.stamp(&span, &["QUEUE_START"]),
            "compute_infer" => self.stamp(&span, &["COMPUTE_START", "COMPUTE_INPUT_END"]),
            "compute_output" => self.stamp(&span, &["COMPUTE_OUTPUT_START"]),
            _ => {}
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(open) = extensions.get_mut::<Open>() {
            values.record(&mut Fields(&mut open.0));
            let mut failed = Outcome(false);
            values.record(&mut failed);
            if failed.0 {
                extensions.insert(Failed);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        match span.name() {
            "compute_output" => self.stamp(&span, &["COMPUTE_END"]),
            "infer" | "ensemble_step" => {
                let mut extensions = span.extensions_mut();
                let Some(Open(mut record)) = extensions.remove::<Open>() else {
                    return;
                };
                // A request refused before it reached a model (a wrong
                // shape, an unknown model) leaves no record, as in Triton:
                // it failed with no stage begun.
                let record = match extensions.get_mut::<Failed>().is_some()
                    && record.timestamps.len() == 1
                {
                    true => None,
                    false => {
                        record.timestamps.push(("REQUEST_END", monotonic_ns()));
                        Some(record)
                    }
                };
                match span.name() {
                    "infer" => self.file.end(record),
                    _ => record.into_iter().for_each(|r| self.file.record(r)),
                }
            }
            _ => {}
        }
    }
}
