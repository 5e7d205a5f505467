//! The OTLP/gRPC receiver the tests export to: a tonic server from the
//! official opentelemetry-proto definitions that keeps every span it is sent.

use super::*;

/// A span as it arrived, with its resource's attributes.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub(crate) trace_id: String,
    pub(crate) span_id: String,
    pub(crate) parent: String,
    pub(crate) name: String,
    pub(crate) kind: i32,
    pub(crate) trace_state: String,
    /// The OpenTelemetry status code: 0 unset, 1 OK, 2 ERROR.
    pub(crate) status: i32,
    pub(crate) attributes: HashMap<String, String>,
    pub(crate) resource: HashMap<String, String>,
}

/// Everything the receiver was sent.
#[derive(Clone, Default)]
pub(crate) struct Receiver(Arc<Mutex<Vec<Got>>>);

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = attributes(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(Got {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    trace_state: span.trace_state,
                    status: span.status.map_or(0, |s| s.code),
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Starts the receiver on a free loopback port.
    pub(crate) async fn start() -> (Receiver, SocketAddr) {
        Self::start_on("127.0.0.1:0").await
    }

    /// [`Receiver::start`] on a given address.
    pub(crate) async fn start_on(addr: &str) -> (Receiver, SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (receiver, addr)
    }

    /// The spans of trace `trace_id` once its request span and `children`
    /// stage spans have all arrived (at most 30 s).
    pub(crate) async fn trace(&self, trace_id: &str, children: usize) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans: Vec<Got> = self.spans(trace_id);
            let request = spans.iter().find(|s| s.name == "infer");
            if let Some(r) = request {
                if spans.iter().filter(|s| s.parent == r.span_id).count() >= children {
                    return spans;
                }
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} did not arrive whole; got {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn spans(&self, trace_id: &str) -> Vec<Got> {
        let got = self.0.lock().unwrap();
        got.iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}
