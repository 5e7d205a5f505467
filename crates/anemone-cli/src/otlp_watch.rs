//! The OTLP exporter, watched: the OpenTelemetry SDK drops a batch it cannot
//! send without a word (its internal logs are off here), so a collector that
//! is down, or an endpoint with a typo, would lose every span silently. This
//! wrapper says so once when exports start failing, and once when they work
//! again; requests are never slowed or failed by it (the SDK's batch
//! processor exports on its own thread).

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Wraps an exporter and reports changes between "exporting" and "failing".
#[derive(Debug)]
pub struct Watched<E> {
    inner: E,
    endpoint: String,
    failing: AtomicBool,
    /// Spans dropped since exports started failing.
    dropped: AtomicU64,
}

impl<E> Watched<E> {
    /// Watches `inner`, which exports to `endpoint` (named in the messages).
    pub fn new(inner: E, endpoint: String) -> Self {
        Self {
            inner,
            endpoint,
            failing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    /// Records the outcome of one export of `spans` spans.
    fn outcome(&self, spans: usize, result: &OTelSdkResult) {
        match result {
            Err(e) => {
                let dropped = self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
                let e = match crate::otlp_http::take_last_error() {
                    Some(cause) => format!("{e}: {cause}"),
                    None => e.to_string(),
                };
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "OTLP export to {} failed: {e}; spans are dropped until the collector \
                         answers (check --otlp-endpoint and that the collector is up; \
                         requests are served as usual)",
                        self.endpoint
                    );
                } else {
                    tracing::debug!(
                        dropped = dropped + spans as u64,
                        "OTLP export failed again: {e}"
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    let dropped = self.dropped.swap(0, Ordering::Relaxed);
                    tracing::warn!(
                        "OTLP export to {} works again; {dropped} span(s) were dropped meanwhile",
                        self.endpoint
                    );
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.outcome(spans, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;

    #[test]
    fn counts_dropped_spans_and_clears_on_recovery() {
        let w = Watched::new((), "http://x:4317".into());
        w.outcome(3, &Err(OTelSdkError::InternalFailure("down".into())));
        w.outcome(2, &Err(OTelSdkError::InternalFailure("down".into())));
        assert!(w.failing.load(Ordering::Relaxed));
        assert_eq!(w.dropped.load(Ordering::Relaxed), 5);
        w.outcome(1, &Ok(()));
        assert!(!w.failing.load(Ordering::Relaxed));
        assert_eq!(w.dropped.load(Ordering::Relaxed), 0);
    }
}
