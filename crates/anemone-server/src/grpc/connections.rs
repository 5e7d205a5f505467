//! How the gRPC listener keeps its connections, with Triton's flags and
//! defaults: keep-alive pings (`--grpc-keepalive-time`,
//! `--grpc-keepalive-timeout`) and a connection's age
//! (`--grpc-max-connection-age`, `--grpc-max-connection-age-grace`).

use std::time::Duration;

/// Keep-alive pings and the connections' age on the gRPC listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcConnections {
    /// After this long without a frame from the client, the server pings it
    /// (an HTTP/2 PING), on a busy or an idle connection. By default 2
    /// hours, as Triton's.
    pub keepalive_time: Duration,
    /// How long the server waits for the client's answer to its ping; with
    /// none, it closes the connection (a client or a network that is gone
    /// does not hold it). By default 20 s, as Triton's.
    pub keepalive_timeout: Duration,
    /// How long a connection may live: then the server sends HTTP/2 GOAWAY,
    /// so the client opens a new connection for its next calls (behind a
    /// load balancer, new connections spread over new replicas), and the
    /// calls in flight finish. By default, no limit.
    pub max_age: Option<Duration>,
    /// How long the calls in flight get after `max_age` before the
    /// connection is closed under them. By default, no limit.
    pub max_age_grace: Option<Duration>,
}

impl Default for GrpcConnections {
    fn default() -> Self {
        GrpcConnections {
            keepalive_time: Duration::from_secs(2 * 60 * 60),
            keepalive_timeout: Duration::from_secs(20),
            max_age: None,
            max_age_grace: None,
        }
    }
}

impl GrpcConnections {
    /// `builder` with these settings (the grace apart: see
    /// [`GrpcConnections::aged`]).
    pub(crate) fn apply<L>(
        self,
        builder: tonic::transport::Server<L>,
    ) -> tonic::transport::Server<L> {
        let mut builder = builder
            .http2_keepalive_interval(Some(self.keepalive_time))
            .http2_keepalive_timeout(Some(self.keepalive_timeout));
        if let Some(age) = self.max_age {
            builder = builder.max_connection_age(age);
        }
        // The grace is kept by [`GrpcConnections::aged`].
        builder
    }
}

impl GrpcConnections {
    /// When a connection accepted now must be closed, whatever it is
    /// doing: its age and grace together, if both are set.
    fn close_at(&self) -> Option<Duration> {
        Some(self.max_age? + self.max_age_grace?)
    }

    /// `incoming`'s connections, each closed under its calls once its age
    /// and grace are over. tonic's own grace replaces the graceful close
    /// (no GOAWAY is sent at the age, the connection is dropped at age plus
    /// grace), so tonic gets the age alone and the grace is kept here.
    pub(crate) fn aged<S, T>(
        &self,
        incoming: S,
    ) -> impl futures_util::Stream<Item = std::io::Result<Aged<T>>>
    where
        S: futures_util::Stream<Item = std::io::Result<T>>,
    {
        use futures_util::StreamExt;
        let close_at = self.close_at();
        incoming.map(move |accepted| {
            accepted.map(|io| Aged {
                io,
                deadline: close_at.map(|after| Box::pin(tokio::time::sleep(after))),
            })
        })
    }
}

/// An accepted connection that fails every read and write once its
/// deadline has passed, which makes the HTTP/2 server drop it.
pub(crate) struct Aged<T> {
    io: T,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Aged<T> {
    fn over(&mut self, cx: &mut std::task::Context<'_>) -> std::io::Result<()> {
        use std::future::Future;
        let Some(deadline) = &mut self.deadline else {
            return Ok(());
        };
        if deadline.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the gRPC connection's max age and grace are over",
        ))
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Aged<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.over(cx)?;
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Aged<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.over(cx)?;
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.over(cx)?;
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.over(cx)?;
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Aged<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
