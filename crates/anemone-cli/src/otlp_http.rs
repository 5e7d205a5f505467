//! The HTTP client of the OTLP/HTTP exporter (`--otlp-protocol
//! http/protobuf`, and Triton's `--trace-config mode=opentelemetry`).
//!
//! The OpenTelemetry SDK's batch processor exports from a thread of its own,
//! outside any Tokio runtime, so each request is sent on the exporter's
//! runtime (`anemone-otlp`) and awaited from there. One connection per
//! export (every 5 s by default), plain HTTP/1.1.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use std::time::Duration;

/// How long one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of a collector's answer read (the SDK's own clients' bound).
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Sends the exporter's requests on `handle`'s runtime.
#[derive(Debug)]
pub struct OtlpHttpClient {
    handle: tokio::runtime::Handle,
}

impl OtlpHttpClient {
    pub fn new(handle: tokio::runtime::Handle) -> OtlpHttpClient {
        OtlpHttpClient { handle }
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The timer too is made on the runtime: this thread has none.
        let sent = self
            .handle
            .spawn(async move { tokio::time::timeout(EXPORT_TIMEOUT, send(request)).await });
        match sent.await? {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}").into()),
        }
    }
}

async fn send(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.scheme_str() == Some("https") {
        return Err(
            "OTLP/HTTP over TLS (https://) is not built in; export to a collector over \
                    plain HTTP on this host or network, or use --otlp-protocol grpc"
                .into(),
        );
    }
    let host = parts.uri.host().ok_or("the URL names no host")?.to_string();
    let port = parts.uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    // HTTP/1.1 wants the path in the request line and the host in a header.
    let authority = parts.uri.authority().map(|a| a.to_string());
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    parts.uri = path.parse()?;
    if let Some(authority) = authority {
        parts
            .headers
            .insert(hyper::header::HOST, authority.parse()?);
    }
    let answer = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = answer.into_parts();
    let body = Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}
