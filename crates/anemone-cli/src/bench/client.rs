//! Connections to the server: one HTTP/1.1 keep-alive connection (hyper) or
//! one gRPC channel (tonic) per worker, and the prepared inference requests
//! each worker sends (the metadata request is in `metadata.rs`).

use super::encode;
use super::never_sent::{never_sent, NEVER_SENT_RETRIES};
use super::sequence::{self, SequenceId};
use super::tls::ClientTls;
use super::workload::Workload;
use super::Protocol;
use anemone_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use anemone_server::proto::ModelInferRequest;
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Method, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The header that gives the length of the JSON part of a binary body.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// Where the server is, for one protocol.
#[derive(Debug, Clone)]
pub struct Target {
    pub(super) protocol: Protocol,
    /// The URL with a scheme, as tonic takes it.
    pub(super) url: String,
    /// `host:port`, for TCP and the Host header.
    pub(super) authority: String,
    /// A path prefix from the URL, without its trailing `/`.
    pub(super) base: String,
    /// The host alone, for checking the server's certificate.
    host: String,
    /// TLS, for an `https://` URL.
    tls: Option<Arc<ClientTls>>,
}

impl Target {
    /// Whether the URL is `https://`.
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// What to check when a connection is made and then dropped without an
    /// answer: over TLS, the handshake's certificates; else the port (`port`,
    /// this protocol's default one, when `url` names the other protocol's)
    /// and the protocol, or TLS.
    pub(super) fn dropped_hint(&self, this_port: &str, other_protocol: &str) -> String {
        match self.is_tls() {
            true => "; the server refused the TLS handshake or closed the connection: if it asks \
                     for a client certificate, give --client-cert and --client-key"
                .to_string(),
            false => format!(
                "; is that the server's other port? give the {this_port}, or --protocol \
                 {other_protocol}; or, if the server uses TLS, an https:// URL with --ca-cert"
            ),
        }
    }

    /// Checks `url`: `http[s]://host[:port][/prefix]`, the scheme optional
    /// (`http`); `https` needs `tls`, and `tls` needs `https`.
    pub fn parse(
        protocol: Protocol,
        url: &str,
        tls: Option<Arc<ClientTls>>,
    ) -> anyhow::Result<Target> {
        let full = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let uri: Uri = full.parse().with_context(|| {
            format!("--url '{url}' is not a URL; use, for example, http://127.0.0.1:8001")
        })?;
        let default_port = match (uri.scheme_str(), &tls) {
            (Some("http"), None) => 80,
            (Some("https"), Some(_)) => 443,
            (Some("https"), None) => bail!(
                "--url '{url}' is https: give --ca-cert FILE, the CA that signed the server's \
                 certificate"
            ),
            (Some("http"), Some(_)) => bail!(
                "--ca-cert, --client-cert and --client-key are for TLS: give an https:// URL \
                 instead of '{url}'"
            ),
            _ => bail!("--url '{url}' must start with http:// or https://"),
        };
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            bail!("--url '{url}' has no host; use, for example, http://127.0.0.1:8001");
        };
        // A port that is not one (99999, 8001x) is refused, not replaced
        // by the scheme's default.
        let written = (uri.authority().map(|a| a.as_str()))
            .and_then(|a| a.rsplit_once(':'))
            .filter(|(_, port)| !port.contains(']'))
            .map(|(_, port)| port);
        let port = match written {
            None => default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .with_context(|| format!("--url '{url}': '{port}' is not a port (1 to 65535)"))?,
        };
        let authority = format!("{host}:{port}");
        let base = uri.path().trim_end_matches('/').to_string();
        Ok(Target {
            protocol,
            url: full.trim_end_matches('/').to_string(),
            authority,
            base,
            host: host.to_string(),
            tls,
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("{} ({})", self.url, self.protocol.name())
    }
}

/// The model path under `/v2`: `/v2/models/m[/versions/v]`.
pub(super) fn model_path(base: &str, model: &str, version: Option<&str>) -> String {
    let mut path = format!("{base}/v2/models/{}", escape(model));
    if let Some(v) = version {
        path.push_str(&format!("/versions/{}", escape(v)));
    }
    path
}

/// Percent-encodes what may not appear in a path segment as it is.
fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request that did not succeed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What kind of failure, for counting: `HTTP 429`, `gRPC Unavailable`, `connection`.
    pub status: String,
    /// The server's message, or the transport's.
    pub message: String,
}

impl Failure {
    /// Whether the connection failed, rather than the server answering with an error.
    pub fn is_connection(&self) -> bool {
        self.status == "connection"
    }

    /// No answer within `limit` (`--request-timeout`).
    pub(super) fn timed_out(limit: Duration) -> Failure {
        Failure {
            status: "timeout".into(),
            message: format!(
                "no answer within {} s (--request-timeout)",
                limit.as_secs_f64()
            ),
        }
    }

    fn connection(e: impl std::fmt::Display) -> Failure {
        Failure {
            status: "connection".into(),
            message: e.to_string(),
        }
    }
}

/// One HTTP/1.1 connection; reopened when the server closes it.
pub struct HttpConn {
    authority: String,
    /// The host and TLS, for an `https://` URL.
    tls: Option<(String, Arc<ClientTls>)>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    pub(super) fn new(target: &Target) -> HttpConn {
        HttpConn {
            authority: target.authority.clone(),
            tls: target
                .tls
                .as_ref()
                .map(|t| (target.host.clone(), Arc::clone(t))),
            sender: None,
        }
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let authority = self.authority.as_str();
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
                .await
                .map_err(|_| {
                    Failure::connection(format!(
                        "connecting to {authority} timed out after {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(|e| Failure::connection(format!("connecting to {authority}: {e}")))?;
        stream.set_nodelay(true).map_err(Failure::connection)?;
        match &self.tls {
            None => handshake(stream).await,
            Some((host, tls)) => {
                let stream = tls
                    .connect(host, stream)
                    .await
                    .map_err(Failure::connection)?;
                handshake(stream).await
            }
        }
    }

    /// Sends one request and reads the whole response.
    pub(super) async fn send(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Bytes>, Failure> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.open().await?);
        }
        let sender = self
            .sender
            .as_mut()
            .expect("a sender was just opened; this is a bug");
        let result = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            Ok::<_, hyper::Error>(hyper::Response::from_parts(
                parts,
                body.collect().await?.to_bytes(),
            ))
        }
        .await;
        result.map_err(|e| {
            self.sender = None;
            Failure::connection(error_text(&e))
        })
    }
}

/// HTTP/1.1 on an open connection, plain or TLS.
async fn handshake(
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(Failure::connection)?;
    // The connection task ends when the sender is dropped or the server closes.
    tokio::spawn(connection);
    Ok(sender)
}

/// An error and its causes, joined by `: `, skipping a cause already said.
fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    chain_text(e.to_string(), e.source())
}

/// `text` followed by the causes from `source` on that it does not already contain.
fn chain_text(mut text: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// GETs `path` (a model's metadata or configuration) on a connection of its
/// own: the body of a 200 answer, or the failure.
pub(super) async fn get(target: &Target, path: String) -> Result<Bytes, Failure> {
    // One request on a connection of its own, which the server closes once
    // it has answered: none is left open beside the workers' (the bench
    // promises one connection a worker).
    let request = hyper::Request::get(path)
        .header(HOST, &target.authority)
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::new()))
        .map_err(|e| Failure {
            status: "request".into(),
            message: e.to_string(),
        })?;
    let response = HttpConn::new(target).send(request).await?;
    match response.status() {
        StatusCode::OK => Ok(response.into_body()),
        status => Err(http_failure(status, response.body())),
    }
}

/// A failure from an HTTP error response: its status and `{"error": ...}` message.
pub(super) fn http_failure(status: StatusCode, body: &[u8]) -> Failure {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned());
    Failure {
        status: format!("HTTP {}", status.as_u16()),
        message,
    }
}

pub(super) async fn grpc_client(
    target: &Target,
) -> anyhow::Result<GrpcInferenceServiceClient<Channel>> {
    let mut endpoint = Endpoint::from_shared(target.url.clone())
        .with_context(|| format!("--url '{}' is not a gRPC endpoint", target.url))?;
    if let Some(tls) = &target.tls {
        endpoint = endpoint
            .tls_config(tls.tonic(&target.host))
            .context("cannot set up TLS for gRPC")?;
    }
    let channel = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot connect to {}; is the server running?",
                target.describe()
            )
        })?;
    Ok(GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

/// An inference request, encoded once and sent many times.
pub enum Prepared {
    Http {
        path: String,
        host: HeaderValue,
        body: Bytes,
        /// The JSON header's length, for a binary body.
        header_len: Option<usize>,
    },
    Grpc(ModelInferRequest),
}

impl Prepared {
    pub fn new(
        protocol: Protocol,
        target: &Target,
        model: &str,
        version: Option<&str>,
        w: &Workload,
        step: Option<&sequence::Step>,
    ) -> anyhow::Result<Prepared> {
        let path = format!("{}/infer", model_path(&target.base, model, version));
        let host = HeaderValue::from_str(&target.authority).with_context(|| {
            format!(
                "--url host '{}' is not a valid Host header",
                target.authority
            )
        })?;
        Ok(match protocol {
            Protocol::Http => Prepared::Http {
                path,
                host,
                body: encode::json_body(w, step).into(),
                header_len: None,
            },
            Protocol::HttpBinary => {
                let (body, header_len) = encode::binary_body(w, step);
                Prepared::Http {
                    path,
                    host,
                    body: body.into(),
                    header_len: Some(header_len),
                }
            }
            Protocol::Grpc => Prepared::Grpc(encode::grpc_request(model, version, w, step)),
        })
    }
}

/// What a worker sends: the same request every time, or, to a sequence
/// model, sequences of `length` requests under the worker's own ID.
pub struct Script {
    /// One request, or [`sequence::steps`]' four.
    requests: Vec<Prepared>,
    /// Requests in a sequence (1 when the model takes no sequences).
    length: u64,
}

impl Script {
    /// The same request for every send.
    pub fn single(request: Prepared) -> Script {
        Script {
            requests: vec![request],
            length: 1,
        }
    }

    /// Sequences of `length` requests under `id`, built by `prepare`.
    pub fn sequences(
        id: &SequenceId,
        length: u64,
        prepare: impl Fn(&sequence::Step) -> anyhow::Result<Prepared>,
    ) -> anyhow::Result<Script> {
        let requests = sequence::steps(id)
            .iter()
            .map(prepare)
            .collect::<anyhow::Result<_>>()?;
        Ok(Script {
            requests,
            length: length.max(1),
        })
    }

    /// The `k`-th request (from 0).
    fn request(&self, k: u64) -> &Prepared {
        match self.requests.len() {
            1 => &self.requests[0],
            _ => &self.requests[sequence::variant(k, self.length)],
        }
    }

    /// The request to send after request `k`: the next, or after a failure
    /// (the server may have closed the sequence) the next sequence's first.
    fn after(&self, k: u64, ok: bool) -> u64 {
        match ok || self.requests.len() == 1 {
            true => k + 1,
            false => sequence::next_start(k, self.length),
        }
    }
}

/// One worker's connection, what it sends, and how many it sent.
pub struct Client {
    link: Link,
    script: Arc<Script>,
    sent: u64,
    /// How long an answer may take.
    timeout: Duration,
}

/// A worker's connection.
enum Link {
    Http(HttpConn),
    Grpc(GrpcInferenceServiceClient<Channel>),
}

impl Client {
    /// Opens a connection of its own.
    pub async fn connect(
        target: &Target,
        script: Arc<Script>,
        timeout: Duration,
    ) -> anyhow::Result<Client> {
        let link = match target.protocol {
            Protocol::Grpc => Link::Grpc(grpc_client(target).await?),
            Protocol::Http | Protocol::HttpBinary => {
                let mut conn = HttpConn::new(target);
                let sender = conn.open().await.map_err(|f| {
                    anyhow::anyhow!("cannot connect to {}: {}", target.describe(), f.message)
                })?;
                conn.sender = Some(sender);
                Link::Http(conn)
            }
        };
        Ok(Client {
            link,
            script,
            sent: 0,
            timeout,
        })
    }

    /// Sends the next request and waits for the whole answer, for at most
    /// the timeout: then the request counts as failed, and an HTTP
    /// connection, whose answer might still come, is closed.
    pub async fn infer(&mut self) -> Result<(), Failure> {
        let sent = send(&mut self.link, self.script.request(self.sent));
        let result = match tokio::time::timeout(self.timeout, sent).await {
            Ok(result) => result,
            Err(_) => {
                if let Link::Http(conn) = &mut self.link {
                    conn.sender = None;
                }
                Err(Failure::timed_out(self.timeout))
            }
        };
        self.sent = self.script.after(self.sent, result.is_ok());
        result
    }
}

/// Sends `request` on `link` and waits for the whole answer.
async fn send(link: &mut Link, request: &Prepared) -> Result<(), Failure> {
    match link {
        Link::Http(conn) => {
            let Prepared::Http {
                path,
                host,
                body,
                header_len,
            } = request
            else {
                unreachable!("an HTTP client gets an HTTP request; this is a bug")
            };
            let mut builder = hyper::Request::builder()
                .method(Method::POST)
                .uri(path.as_str())
                .header(HOST, host);
            builder = match header_len {
                Some(n) => builder
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(HEADER_LENGTH, *n),
                None => builder.header(CONTENT_TYPE, "application/json"),
            };
            let request = builder.body(Full::new(body.clone())).map_err(|e| Failure {
                status: "request".into(),
                message: e.to_string(),
            })?;
            let response = conn.send(request).await?;
            if response.status() != StatusCode::OK {
                return Err(http_failure(response.status(), response.body()));
            }
            if header_len.is_some() {
                check_binary_response(&response)?;
            }
            Ok(())
        }
        Link::Grpc(client) => {
            let Prepared::Grpc(message) = request else {
                unreachable!("a gRPC client gets a gRPC request; this is a bug")
            };
            // As grpc-core does (perf_analyzer's transport): a call the
            // channel never sent, queued on a connection that the server
            // closed after its GOAWAY (`--grpc-max-connection-age`), goes
            // out again on the next connection instead of counting as failed.
            let mut answer = client.model_infer(message.clone()).await;
            for _ in 0..NEVER_SENT_RETRIES {
                match &answer {
                    Err(s) if never_sent(s) => answer = client.model_infer(message.clone()).await,
                    _ => break,
                }
            }
            answer
                .map(drop)
                .map_err(|s| match std::error::Error::source(&s) {
                    // A status with a source was made by the transport, not sent by the server.
                    Some(cause) => {
                        Failure::connection(chain_text(s.message().to_string(), Some(cause)))
                    }
                    None => Failure {
                        status: format!("gRPC {:?}", s.code()),
                        message: s.message().to_string(),
                    },
                })
        }
    }
}

/// A binary answer names the length of its JSON part, within the body.
fn check_binary_response(response: &hyper::Response<Bytes>) -> Result<(), Failure> {
    let bad = |why: String| Failure {
        status: "bad response".into(),
        message: why,
    };
    let Some(value) = response.headers().get(HEADER_LENGTH) else {
        return Err(bad(format!(
            "the answer to a binary request has no {HEADER_LENGTH} header"
        )));
    };
    let len = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok());
    match len {
        Some(n) if n <= response.body().len() => Ok(()),
        _ => Err(bad(format!(
            "{HEADER_LENGTH} is {value:?}, but the body has {} bytes",
            response.body().len()
        ))),
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
