//! The TLS handshake of an HTTPS connection, bounded in time, and a clear
//! answer to a client that speaks plain HTTP to the HTTPS port.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

/// The first byte of every TLS record that opens a connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// What a plain-HTTP client gets from the HTTPS port.
const PLAIN_HTTP_ANSWER: &str = "{\"error\":\"this port serves HTTPS: use an https:// URL \
(the server was started with --http-tls-cert)\"}";

/// Completes the TLS handshake on `tcp` within `timeout` (counted from the
/// accept, so a silent client is dropped), or answers a plain HTTP request
/// with 400 and closes. `None` when the connection is not to be served.
pub(super) async fn accept(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    let handshake = async {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(1) if first[0] != TLS_HANDSHAKE => {
                refuse_plain_http(tcp).await;
                return None;
            }
            Ok(1) => {}
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!("HTTPS connection ended before its handshake: {e}");
                return None;
            }
        }
        match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                // A client without a (valid) certificate under mTLS ends here.
                tracing::debug!("TLS handshake failed: {e}");
                None
            }
        }
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(stream) => stream,
        Err(_) => {
            tracing::debug!("TLS handshake not finished within {timeout:?}; closing");
            None
        }
    }
}

/// Answers 400 with a JSON error saying to use https, then closes.
async fn refuse_plain_http(mut tcp: TcpStream) {
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_ANSWER}",
        PLAIN_HTTP_ANSWER.len()
    );
    if tcp.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = tcp.shutdown().await;
    // Read what the client sent until it closes (bounded): closing with
    // unread data would reset the connection, and the client could lose
    // the answer.
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}
