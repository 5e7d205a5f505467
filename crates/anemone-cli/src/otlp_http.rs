//! The HTTP client of the OTLP/HTTP exporter (`--otlp-protocol
//! http/protobuf`, and Triton's `--trace-config mode=opentelemetry`).
//!
//! The OpenTelemetry SDK's batch processor exports from a thread of its own,
//! outside any Tokio runtime, so each request is sent on the exporter's
//! runtime (`anemone-otlp`) and awaited from there. One connection per
//! export (every 5 s by default), HTTP/1.1, over TLS for an `https://` URL
//! (the system's CA certificates and `--otlp-ca-cert`'s).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// How long one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of a collector's answer read (the SDK's own clients' bound).
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Sends the exporter's requests on `handle`'s runtime; `tls` is the
/// client configuration for `https://` URLs.
#[derive(Debug)]
pub struct OtlpHttpClient {
    handle: tokio::runtime::Handle,
    tls: Arc<rustls::ClientConfig>,
}

impl OtlpHttpClient {
    pub fn new(handle: tokio::runtime::Handle, tls: Arc<rustls::ClientConfig>) -> OtlpHttpClient {
        OtlpHttpClient { handle, tls }
    }
}

/// The certificates of a PEM file: at least one, every block readable.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file of certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// The TLS client configuration of an https:// collector: the system's CA
/// certificates, and those of `extra` (PEM, `--otlp-ca-cert`).
pub fn tls_config(extra: Option<&[u8]>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("OTLP TLS: a system CA certificate could not be read: {e}");
    }
    let (_, unusable) = roots.add_parsable_certificates(native.certs);
    if unusable > 0 {
        tracing::debug!("OTLP TLS: {unusable} system CA certificate(s) could not be used");
    }
    if let Some(pem) = extra {
        for cert in certificates(pem).map_err(|e| anyhow::anyhow!("--otlp-ca-cert: {e}"))? {
            roots.add(cert).map_err(|e| {
                anyhow::anyhow!("--otlp-ca-cert: a certificate rustls cannot use: {e}")
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("OTLP TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The timer too is made on the runtime: this thread has none.
        let tls = self.tls.clone();
        let sent = self
            .handle
            .spawn(async move { tokio::time::timeout(EXPORT_TIMEOUT, send(request, tls)).await });
        let answer = match sent.await? {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {EXPORT_TIMEOUT:?}").into()),
        };
        if let Err(e) = &answer {
            // The SDK reports only "network error": keep the cause for the
            // warning (otlp_watch.rs).
            *LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
        answer
    }
}

static LAST_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Why the last export over HTTP failed, once (taken).
pub fn take_last_error() -> Option<String> {
    LAST_ERROR.lock().unwrap_or_else(|p| p.into_inner()).take()
}

async fn send(
    request: Request<Bytes>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    let https = match parts.uri.scheme_str() {
        Some("https") => true,
        Some("http") | None => false,
        Some(other) => return Err(format!("'{other}://' is not http:// or https://").into()),
    };
    let host = parts.uri.host().ok_or("the URL names no host")?.to_string();
    let port = parts.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let _ = stream.set_nodelay(true);
    let mut sender = match https {
        true => {
            // An IPv6 literal is named without its brackets.
            let name = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name = rustls::pki_types::ServerName::try_from(name)
                .map_err(|e| format!("'{host}' is not a name TLS can check: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, stream)
                .await
                .map_err(|e| {
                    format!(
                        "TLS with {host}: {e} (a collector's certificate must be signed by a CA \
                         this machine trusts; --otlp-ca-cert adds one)"
                    )
                })?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            sender
        }
        false => {
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            sender
        }
    };
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
