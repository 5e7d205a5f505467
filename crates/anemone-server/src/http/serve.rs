//! Serving the HTTP router on a listener with hyper directly, because
//! `axum::serve` gives hyper no timer, and so no timeout ever applies: a
//! client that sends half a request head (slow-loris), idles on a
//! keep-alive connection, or stalls in the middle of a body would hold its
//! connection (and file descriptor) forever.
//!
//! Here every connection gets hyper's header read timeout (which also
//! bounds how long an idle keep-alive connection is kept, since hyper waits
//! for the next request head from the moment the last answer is sent), and
//! every request body an idle timeout between its chunks: a stalled body is
//! answered 408. Accepted sockets get `TCP_NODELAY`. With TLS, each
//! connection first completes its handshake within the header timeout (a
//! plain HTTP request gets 400 saying to use https), and the timeouts above
//! then apply to the decrypted stream as they do without TLS. On shutdown the
//! listener closes, each connection finishes the request it is serving and
//! closes, and [`serve`] returns once all have.

use super::wake::SelfWaking;
use axum::body::{Body, Bytes, HttpBody};
use axum::Router;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt;

/// How long an HTTP client may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// To send a request's head, counted from when the server starts
    /// waiting for it: also how long an idle keep-alive connection is kept.
    pub header: Duration,
    /// Between two chunks of a request body (and before its first one,
    /// counted from when the handler starts reading it).
    pub body: Duration,
}

/// A request body stalled longer than [`HttpTimeouts::body`].
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no request body data arrived for {} s (--http-body-timeout-secs)",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
/// With `tls`, serves HTTPS (HTTP/1.1 over TLS) instead of plain HTTP.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: HttpTimeouts,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let failures = crate::accept::AcceptFailures::new("HTTP");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was accepted: wait a little rather than spin, and say so.
                failures.back_off(&e).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on an HTTP connection: {e}");
        }
        let (router, closing) = (router.clone(), closing.clone());
        match &tls {
            // A connection that wakes itself (every request with a body
            // does) is polled again in place rather than rescheduled.
            None => connections.spawn(SelfWaking::new(connection(tcp, router, timeouts, closing))),
            Some(config) => {
                let config = Arc::clone(config);
                connections.spawn(SelfWaking::new(async move {
                    // A handshake still going at shutdown is dropped.
                    let mut shut = closing.clone();
                    let stream = tokio::select! {
                        stream = super::tls::accept(tcp, config, timeouts.header) => stream,
                        _ = async { shut.wait_for(|c| *c).await.map(drop) } => None,
                    };
                    if let Some(stream) = stream {
                        connection(stream, router, timeouts, closing).await;
                    }
                }))
            }
        };
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    router: Router,
    timeouts: HttpTimeouts,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        if let Some(refused) = host_refusal(&request) {
            return futures_util::future::Either::Left(std::future::ready(Ok(refused)));
        }
        let request = request.map(|b| Body::new(IdleTimeoutBody::new(b, timeouts.body)));
        futures_util::future::Either::Right(router.clone().oneshot(request))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let closed = async move {
        // The guard `wait_for` returns is not Send: drop it before any await.
        let _ = closing.wait_for(|c| *c).await.map(drop);
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = closed => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("HTTP connection ended: {e}");
    }
}

/// RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status
/// code to any HTTP/1.1 request message that lacks a Host header field and
/// to any that contains more than one Host header field line". HTTP/1.0
/// needs none.
fn host_refusal<B>(request: &hyper::Request<B>) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    if request.version() != hyper::Version::HTTP_11 {
        return None;
    }
    let hosts = request
        .headers()
        .get_all(hyper::header::HOST)
        .iter()
        .count();
    (hosts != 1).then(|| {
        crate::errors::ApiError::invalid(format!(
            "an HTTP/1.1 request carries exactly one Host header (RFC 9112 3.2); this one has {hosts}: \
             send Host: <server's host and port>"
        ))
        .into_response()
    })
}

/// A request body that fails with [`BodyTimeout`] when no chunk comes for
/// its timeout while it is being read.
struct IdleTimeoutBody {
    inner: Incoming,
    timeout: Duration,
    /// Armed at the second pending read (see `poll_frame`), so time spent
    /// before the handler reads does not count.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether a read was pending already.
    asked: bool,
}

impl IdleTimeoutBody {
    fn new(inner: Incoming, timeout: Duration) -> IdleTimeoutBody {
        IdleTimeoutBody {
            inner,
            timeout,
            sleep: None,
            asked: false,
        }
    }
}

impl HttpBody for IdleTimeoutBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            // hyper fills the body's channel only once the handler asks, so
            // the first read of nearly every body is pending, and the data is
            // there by the next poll of the connection: wake it at once
            // (`SelfWaking` polls again in place) rather than register a
            // timer per request. The timer starts at the second pending read.
            Poll::Pending if !this.asked => {
                this.asked = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::host_refusal;
    use hyper::{Request, Version};

    #[test]
    fn http_1_1_takes_exactly_one_host_and_http_1_0_none() {
        let request = |version, hosts: &[&str]| {
            let mut r = Request::get("/v2/health/live").version(version);
            for h in hosts {
                r = r.header("host", *h);
            }
            r.body(()).unwrap()
        };
        assert!(host_refusal(&request(Version::HTTP_11, &["a"])).is_none());
        assert!(host_refusal(&request(Version::HTTP_10, &[])).is_none());
        for hosts in [&[][..], &["a", "b"][..]] {
            let refused = host_refusal(&request(Version::HTTP_11, hosts)).unwrap();
            assert_eq!(refused.status(), 400);
        }
    }
}
