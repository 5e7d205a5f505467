//! The OTLP receivers the tests export to, from the official
//! opentelemetry-proto definitions, keeping every span they are sent: a
//! tonic server (OTLP/gRPC), and an HTTP/1.1 one (OTLP/HTTP, protobuf
//! bodies) that also keeps the paths it was sent to; either in plain text
//! or over TLS with a given certificate. Both keep the `x-api-key` header
//! (gRPC metadata) of each export.

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

/// Everything the receiver was sent (and, over HTTP, the paths; and the
/// `x-api-key` of each export, empty where none came).
#[derive(Clone, Default)]
pub(crate) struct Receiver(
    Arc<Mutex<Vec<Got>>>,
    Arc<Mutex<Vec<String>>>,
    Arc<Mutex<Vec<String>>>,
);

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
        let key = (request.metadata().get("x-api-key"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.2.lock().unwrap().push(key);
        self.record(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    fn record(&self, request: ExportTraceServiceRequest) {
        let mut got = self.0.lock().unwrap();
        for rs in request.resource_spans {
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
    }

    /// Starts an OTLP/HTTP receiver on a free loopback port: each POST's
    /// body is an `ExportTraceServiceRequest` in protobuf; the answer is an
    /// empty one, and the connection is closed.
    pub(crate) async fn start_http() -> (Receiver, SocketAddr) {
        Self::start_http_over(None).await
    }

    /// [`Receiver::start_http`] over TLS, with this certificate and key (PEM).
    pub(crate) async fn start_https(cert: &str, key: &str) -> (Receiver, SocketAddr) {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self::start_http_over(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_http_over(tls: Option<tokio_rustls::TlsAcceptor>) -> (Receiver, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let keep = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let keep = keep.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        // A handshake the client gives up (an unknown
                        // certificate) ends the connection, nothing else.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                keep.answer_http(stream).await
                            }
                        }
                        None => keep.answer_http(stream).await,
                    }
                });
            }
        });
        (receiver, addr)
    }

    /// Reads one OTLP/HTTP export from `stream`, keeps it, answers 200.
    async fn answer_http<S>(&self, mut stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the exporter closed before its request's head");
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("a content-length");
        while got.len() < head_end + length {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the exporter closed before its body's end");
            got.extend_from_slice(&buf[..n]);
        }
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let request = <ExportTraceServiceRequest as prost::Message>::decode(
            &got[head_end..head_end + length],
        )
        .expect("an OTLP protobuf body");
        self.1.lock().unwrap().push(path);
        self.2
            .lock()
            .unwrap()
            .push(header("x-api-key").unwrap_or_default());
        self.record(request);
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                  content-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await;
        let _ = stream.shutdown().await;
    }

    /// The `x-api-key` of each export received (empty where none came).
    pub(crate) fn api_keys(&self) -> Vec<String> {
        self.2.lock().unwrap().clone()
    }

    /// The paths the HTTP receiver was sent requests to.
    pub(crate) fn paths(&self) -> Vec<String> {
        self.1.lock().unwrap().clone()
    }

    /// Starts the receiver on a free loopback port.
    pub(crate) async fn start() -> (Receiver, SocketAddr) {
        Self::start_on("127.0.0.1:0").await
    }

    /// [`Receiver::start`] on a given address.
    pub(crate) async fn start_on(addr: &str) -> (Receiver, SocketAddr) {
        Self::start_grpc(addr, None).await
    }

    /// [`Receiver::start`] over TLS, with this certificate and key (PEM).
    pub(crate) async fn start_tls(cert: &str, key: &str) -> (Receiver, SocketAddr) {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        let tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        Self::start_grpc("127.0.0.1:0", Some(tls)).await
    }

    async fn start_grpc(
        addr: &str,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> (Receiver, SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let service = TraceServiceServer::new(receiver.clone());
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls).unwrap();
        }
        tokio::spawn(
            server
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

    /// Every span received so far.
    pub(crate) fn all(&self) -> Vec<Got> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn spans(&self, trace_id: &str) -> Vec<Got> {
        let got = self.0.lock().unwrap();
        got.iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}
