//! The server's listeners: bound at start, listening at once, or, on a
//! port shared with other servers (`SO_REUSEPORT`), once the start-up
//! loads have ended.

use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Which listeners share their port with other processes that ask the same
/// (`SO_REUSEPORT`, Triton's `--reuse-http-port`, `--reuse-grpc-port`): the
/// kernel then spreads new connections over the processes. Each must serve
/// the same models. By default, neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReusePorts {
    /// The HTTP listener's.
    pub http: bool,
    /// The gRPC listener's.
    pub grpc: bool,
}

/// A bound listener: listening at once, or, on a port shared with other
/// servers, once the start-up loads have ended (as Triton starts its
/// endpoints after loading): until then the kernel hands the port's new
/// connections to the servers already serving, not to one that would
/// answer 503 "loading".
pub(crate) enum Listener {
    /// Listening.
    Now(TcpListener),
    /// Bound, not listening yet.
    #[cfg(unix)]
    AfterLoads(tokio::net::TcpSocket),
}

impl Listener {
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Listener::Now(l) => l.local_addr(),
            #[cfg(unix)]
            Listener::AfterLoads(s) => s.local_addr(),
        }
    }

    /// The listener, once `loaded` resolves where it waits for the loads;
    /// `None` when `stopped` resolves first, or listening fails (logged).
    pub(crate) async fn open(
        self,
        loaded: impl Future<Output = ()>,
        stopped: impl Future<Output = ()>,
    ) -> Option<TcpListener> {
        match self {
            Listener::Now(l) => Some(l),
            #[cfg(unix)]
            Listener::AfterLoads(socket) => {
                tokio::select! {
                    () = loaded => {}
                    () = stopped => return None,
                }
                let at = socket.local_addr();
                socket
                    .listen(1024)
                    .map_err(|e| tracing::error!("cannot listen on {at:?}: {e}"))
                    .ok()
            }
        }
    }
}

/// Binds `addr` (a host name is resolved: its first address that binds),
/// sharing the port with `reuse_port` (then listening only once the
/// start-up loads have ended: [`Listener::AfterLoads`]).
pub(crate) async fn listen(addr: &str, reuse_port: bool) -> std::io::Result<Listener> {
    if !reuse_port {
        return TcpListener::bind(addr).await.map(Listener::Now);
    }
    #[cfg(unix)]
    {
        let mut last = None;
        for at in tokio::net::lookup_host(addr).await? {
            let socket = match at {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            // SO_REUSEPORT alone: with SO_REUSEADDR too, a server that does
            // not share the port could bind it while this one is bound but
            // not listening yet, and take it.
            socket.set_reuseport(true)?;
            match socket.bind(at) {
                Ok(()) => return Ok(Listener::AfterLoads(socket)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
        }))
    }
    #[cfg(not(unix))]
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "sharing a port (--reuse-http-port, --reuse-grpc-port) needs SO_REUSEPORT, which this system lacks",
    ))
}
